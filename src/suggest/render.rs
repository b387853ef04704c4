//! Renders suggestions: NetworkPolicy YAML (`kubectl apply -f` ready, one comment per rule),
//! optional CiliumNetworkPolicies with `toFQDNs`, and the human report (kept / excluded /
//! ignored flows, verification, breadth, diff).
//!
//! Pure and deterministic: output depends only on the arguments, in their (stable) order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::verify::Verification;
use super::yaml::{Y, document};
use super::{Decision, SuggestedPolicy, Suggestion};
use crate::policy::types::{LabelSelector, NetworkPolicy, Peer, PolicyPort, PortSpec, SelectorOp};

fn selector(sel: &LabelSelector) -> Y {
    let mut entries = Vec::new();
    if !sel.match_labels.is_empty() {
        entries.push((
            "matchLabels".to_string(),
            Y::map(
                sel.match_labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Y::s(v.clone()))),
            ),
            None,
        ));
    }
    if !sel.match_expressions.is_empty() {
        let exprs = sel.match_expressions.iter().map(|r| {
            let op = match r.op {
                SelectorOp::In => "In",
                SelectorOp::NotIn => "NotIn",
                SelectorOp::Exists => "Exists",
                SelectorOp::DoesNotExist => "DoesNotExist",
            };
            let mut e = vec![("key", Y::s(r.key.clone())), ("operator", Y::s(op))];
            if !r.values.is_empty() {
                e.push(("values", Y::seq(r.values.iter().map(|v| Y::s(v.clone())))));
            }
            Y::map(e)
        });
        entries.push(("matchExpressions".to_string(), Y::seq(exprs), None));
    }
    Y::Map(entries)
}

fn peer(p: &Peer) -> Y {
    match p {
        Peer::IpBlock { cidr, except } => {
            let mut block = vec![("cidr", Y::s(cidr.to_string()))];
            if !except.is_empty() {
                block.push(("except", Y::seq(except.iter().map(|e| Y::s(e.to_string())))));
            }
            Y::map([("ipBlock", Y::map(block))])
        }
        Peer::Pods {
            pod_selector,
            namespace_selector,
        } => {
            let mut e = Vec::new();
            if let Some(s) = pod_selector {
                e.push(("podSelector", selector(s)));
            }
            if let Some(s) = namespace_selector {
                e.push(("namespaceSelector", selector(s)));
            }
            Y::map(e)
        }
    }
}

fn port(p: &PolicyPort) -> Y {
    let mut e = vec![("protocol", Y::s(p.protocol.as_str()))];
    match &p.port {
        Some(PortSpec::Number(n)) => e.push(("port", Y::Int(i64::from(*n)))),
        Some(PortSpec::Name(n)) => e.push(("port", Y::s(n.clone()))),
        None => {}
    }
    if let Some(end) = p.end_port {
        e.push(("endPort", Y::Int(i64::from(end))));
    }
    Y::map(e)
}

/// The YAML tree of one NetworkPolicy, with per-rule comments.
pub fn policy_tree(
    p: &NetworkPolicy,
    ingress_comments: &[String],
    egress_comments: &[String],
) -> Y {
    let mut types = Vec::new();
    if p.affects_ingress {
        types.push(Y::s("Ingress"));
    }
    if p.affects_egress {
        types.push(Y::s("Egress"));
    }
    let mut spec = vec![
        ("podSelector".to_string(), selector(&p.pod_selector), None),
        ("policyTypes".to_string(), Y::seq(types), None),
    ];
    let rules = |rules: &[crate::policy::types::Rule], key: &str, comments: &[String]| {
        Y::Seq(
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut e = Vec::new();
                    if !r.peers.is_empty() {
                        e.push((key, Y::seq(r.peers.iter().map(peer))));
                    }
                    if !r.ports.is_empty() {
                        e.push(("ports", Y::seq(r.ports.iter().map(port))));
                    }
                    (Y::map(e), comments.get(i).cloned())
                })
                .collect(),
        )
    };
    if p.affects_ingress {
        spec.push((
            "ingress".to_string(),
            rules(&p.ingress, "from", ingress_comments),
            None,
        ));
    }
    if p.affects_egress {
        spec.push((
            "egress".to_string(),
            rules(&p.egress, "to", egress_comments),
            None,
        ));
    }
    Y::map([
        ("apiVersion", Y::s("networking.k8s.io/v1")),
        ("kind", Y::s("NetworkPolicy")),
        (
            "metadata",
            Y::map([
                ("name", Y::s(p.name.clone())),
                ("namespace", Y::s(p.namespace.clone())),
                (
                    "labels",
                    Y::map([("app.kubernetes.io/managed-by", Y::s("podwire"))]),
                ),
            ]),
        ),
        ("spec", Y::Map(spec)),
    ])
}

/// All suggested NetworkPolicies as one multi-document YAML stream.
pub fn policies_yaml(s: &Suggestion) -> String {
    let mut out = String::new();
    for (i, sp) in s.policies.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&document(
            std::slice::from_ref(&sp.comment),
            &policy_tree(&sp.policy, &sp.ingress_comments, &sp.egress_comments),
        ));
    }
    out
}

/// CiliumNetworkPolicies allowing each workload's external egress by DNS name (`toFQDNs`),
/// plus the DNS-proxy rule Cilium needs to learn those names. Empty when no name was seen.
pub fn cilium_yaml(s: &Suggestion) -> String {
    let mut docs = Vec::new();
    for sp in s.policies.iter().filter(|p| !p.fqdns.is_empty()) {
        docs.push(cilium_policy(sp));
    }
    docs.join("---\n")
}

fn cilium_policy(sp: &SuggestedPolicy) -> String {
    let p = &sp.policy;
    let mut by_ports: BTreeMap<Vec<(String, String)>, Vec<String>> = BTreeMap::new();
    for rule in &p.egress {
        for pe in &rule.peers {
            if let Peer::IpBlock { cidr, .. } = pe
                && let Some(names) = sp.fqdns.get(cidr)
            {
                let ports: Vec<(String, String)> = rule
                    .ports
                    .iter()
                    .map(|pp| {
                        let n = match &pp.port {
                            Some(PortSpec::Number(n)) => n.to_string(),
                            Some(PortSpec::Name(n)) => n.clone(),
                            None => "0".to_string(),
                        };
                        (n, pp.protocol.as_str().to_string())
                    })
                    .collect();
                by_ports
                    .entry(ports)
                    .or_default()
                    .extend(names.iter().cloned());
            }
        }
    }
    let dns_rule = Y::map([
        (
            "toEndpoints",
            Y::seq([Y::map([(
                "matchLabels",
                Y::map([
                    ("k8s:io.kubernetes.pod.namespace", Y::s("kube-system")),
                    ("k8s-app", Y::s("kube-dns")),
                ]),
            )])]),
        ),
        (
            "toPorts",
            Y::seq([Y::map([
                (
                    "ports",
                    Y::seq([Y::map([("port", Y::s("53")), ("protocol", Y::s("ANY"))])]),
                ),
                (
                    "rules",
                    Y::map([("dns", Y::seq([Y::map([("matchPattern", Y::s("*"))])]))]),
                ),
            ])]),
        ),
    ]);
    let mut egress = vec![(
        dns_rule,
        Some("DNS through Cilium's proxy, so toFQDNs can learn addresses".to_string()),
    )];
    for (ports, mut names) in by_ports {
        names.sort();
        names.dedup();
        let fq = Y::seq(
            names
                .iter()
                .map(|n| Y::map([("matchName", Y::s(n.clone()))])),
        );
        let tp = Y::seq([Y::map([(
            "ports",
            Y::seq(ports.iter().map(|(n, pr)| {
                Y::map([("port", Y::s(n.clone())), ("protocol", Y::s(pr.clone()))])
            })),
        )])]);
        egress.push((
            Y::map([("toFQDNs", fq), ("toPorts", tp)]),
            Some(format!("names seen in DNS answers: {}", names.join(", "))),
        ));
    }
    let tree = Y::map([
        ("apiVersion", Y::s("cilium.io/v2")),
        ("kind", Y::s("CiliumNetworkPolicy")),
        (
            "metadata",
            Y::map([
                ("name", Y::s(format!("{}-fqdn", p.name))),
                ("namespace", Y::s(p.namespace.clone())),
                (
                    "labels",
                    Y::map([("app.kubernetes.io/managed-by", Y::s("podwire"))]),
                ),
            ]),
        ),
        (
            "spec",
            Y::map([
                ("endpointSelector", selector(&p.pod_selector)),
                ("egress", Y::Seq(egress)),
            ]),
        ),
    ]);
    document(
        &[format!(
            "Cilium: {}/{} egress by DNS name (alternative to its /32 ipBlocks)",
            p.namespace, p.name
        )],
        &tree,
    )
}

/// The human report.
pub fn report(s: &Suggestion, v: &Verification) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Suggested {} NetworkPolicies.", s.policies.len());
    let mut kept = Vec::new();
    let mut excluded = Vec::new();
    let mut ignored: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for c in &s.flows {
        match &c.decision {
            Decision::Kept { weaknesses } => kept.push((c, weaknesses)),
            Decision::Excluded { findings } => excluded.push((c, findings)),
            Decision::Ignored { reason } => ignored.entry(reason).or_default().push(c.serial),
        }
    }
    let _ = writeln!(
        out,
        "\nKept (allowed by the suggestions): {} flows",
        kept.len()
    );
    for (c, w) in &kept {
        if !w.is_empty() {
            let _ = writeln!(
                out,
                "  flow {} {} → {} {}: allowed despite {}",
                c.serial,
                c.src.display,
                c.dst.display,
                c.port,
                w.join(", ")
            );
        }
    }
    let _ = writeln!(
        out,
        "\nExcluded (the suggestions block them): {} flows",
        excluded.len()
    );
    for (c, f) in &excluded {
        let _ = writeln!(
            out,
            "  flow {} {} → {} {}/{}: {}",
            c.serial,
            c.src.display,
            c.dst.display,
            c.port,
            c.protocol.map_or("-", |p| p.as_str()),
            f.join(", ")
        );
    }
    let _ = writeln!(out, "\nIgnored:");
    for (reason, serials) in &ignored {
        let list: Vec<String> = serials.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(out, "  {reason}: flows {}", list.join(", "));
    }
    let _ = writeln!(
        out,
        "\nVerification (existing + suggested policies): {}/{} kept flows allowed, {}/{} excluded flows denied{}",
        v.kept_allowed,
        v.kept,
        v.excluded_denied,
        v.excluded,
        if v.ok() { " — OK" } else { " — FAILED" }
    );
    for f in &v.failures {
        let _ = writeln!(
            out,
            "  flow {} {}: {} ({})",
            f.serial, f.edge, f.problem, f.verdict
        );
    }
    let _ = writeln!(
        out,
        "\nBreadth per rule: connections admitted ((pod pairs + pods x ipBlock addresses) x ports) / observed:"
    );
    for b in &v.breadth {
        let _ = writeln!(
            out,
            "  {} {} #{}: admits {} ({} pod pairs + {} pods x {} addresses, {} ports) / observed {} ({} pairs)",
            b.policy,
            b.direction,
            b.rule,
            b.admitted_connections(),
            b.admitted_pod_pairs,
            b.selected_pods,
            b.admitted_addresses,
            b.ports,
            b.observed_connections,
            b.observed_pairs
        );
    }
    let _ = writeln!(out, "\nExisting policies:");
    if v.existing.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for (ns, names) in &v.existing {
        let _ = writeln!(out, "  {ns}: {}", names.join(", "));
    }
    let _ = writeln!(
        out,
        "\nVerdict changes versus the existing policies: {}",
        v.changes.len()
    );
    for c in &v.changes {
        let _ = writeln!(
            out,
            "  flow {} {}: {} → {}",
            c.serial,
            c.edge,
            if c.before_allowed {
                "allowed"
            } else {
                "denied"
            },
            if c.after_allowed { "allowed" } else { "denied" }
        );
    }
    if !s.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &s.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    out
}
