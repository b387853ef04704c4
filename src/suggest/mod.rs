//! Policy synthesis: NetworkPolicies a reviewer would accept for the traffic a capture shows,
//! verified against that traffic.
//!
//! Pure and deterministic ([`suggest`] reads only its arguments; same input → same policies,
//! names, order and YAML bytes). What it guarantees, and checks in [`verify`] with the same
//! evaluator `podwire policy check` uses (`PolicyEngine::new(state, &suggested)`):
//! - every *kept* observed flow is allowed under existing + suggested policies;
//! - every *excluded* flow (behind an attack-like finding: scan, cloud metadata, kubelet/etcd/API
//!   server/node SSH access, unexpected cross-namespace, enforcement gap, foreign DNS) is denied;
//! - each rule's breadth (pod pairs × ports it admits) is reported next to what was observed.
//!
//! Shape of the output: one policy per workload (selected by its stable labels, never
//! `pod-template-hash` and friends), peers named by workload labels plus a
//! `kubernetes.io/metadata.name` namespace selector, exact ports (named where the destination's
//! containers name them), a default-deny per namespace that lets pods reach cluster DNS on
//! 53/UDP+TCP and nothing else, external peers as /32 (/128) ipBlocks (or a CIDR the user names).
//! System namespaces (`kube-system`, `kube-public`, `kube-node-lease`) are never newly isolated:
//! podwire only adds rules there for kept flows that existing policies already deny.

pub mod commands;
pub mod render;
pub mod verify;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::cluster::model::{ClusterState, Labels, NAMESPACE_NAME_LABEL, Pod, Protocol};
use crate::findings::{Finding, Party, PartyKind, parties};
use crate::policy::types::{LabelSelector, NetworkPolicy, Peer, PolicyPort, PortSpec, Rule};
use crate::policy::{EndpointRef, PolicyEngine};
use crate::summary::FlowSummary;

/// Labels that differ between pods of one workload or between its revisions.
pub const VOLATILE_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/job-completion-index",
];

/// Namespaces podwire never newly isolates.
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// Name of the per-namespace default-deny policy.
pub const DEFAULT_DENY: &str = "podwire-default-deny";

/// Knobs.
#[derive(Debug, Clone, Default)]
pub struct SuggestOptions {
    /// Keep traffic behind attack-like findings too.
    pub include_flagged: bool,
    /// External addresses inside one of these become one ipBlock for the CIDR.
    pub cidrs: Vec<IpNet>,
}

/// What happened to an observed flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Admitted by the suggestions; `weaknesses` are non-attack findings about it.
    Kept {
        /// Finding ids (cleartext, credentials…).
        weaknesses: Vec<String>,
    },
    /// Left out, so the policies block it.
    Excluded {
        /// Attack-like finding ids behind it.
        findings: Vec<String>,
    },
    /// Not something a NetworkPolicy rule should be written for.
    Ignored {
        /// Why.
        reason: &'static str,
    },
}

/// An observed flow and its decision.
#[derive(Debug, Clone, Serialize)]
pub struct Classified {
    /// Flow serial.
    pub serial: u64,
    /// Initiator.
    pub src: Party,
    /// Responder (a Service resolved to its backend workload).
    pub dst: Party,
    /// Destination port.
    pub port: u16,
    /// Protocol (`None` for protocols NetworkPolicy cannot name).
    pub protocol: Option<Protocol>,
    /// Decision.
    pub decision: Decision,
}

/// Where a peer of a rule is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PeerKey {
    /// A workload: namespace, kind, name.
    Workload(String, String, String),
    /// An address block.
    Block(IpNet),
}

/// A suggested policy with the provenance of each rule.
#[derive(Debug, Clone, Serialize)]
pub struct SuggestedPolicy {
    /// The policy (compact form, as the evaluator reads it).
    pub policy: NetworkPolicy,
    /// Comment for the whole policy.
    pub comment: String,
    /// One comment per ingress rule.
    pub ingress_comments: Vec<String>,
    /// One comment per egress rule.
    pub egress_comments: Vec<String>,
    /// Workload (kind, name) it is for; `None` for the default-deny.
    pub workload: Option<(String, String)>,
    /// External DNS names per egress ipBlock (for comments and `toFQDNs`).
    pub fqdns: BTreeMap<IpNet, Vec<String>>,
}

/// The result of [`suggest`].
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    /// Policies in stable order (namespace, default-deny first, then name).
    pub policies: Vec<SuggestedPolicy>,
    /// Every observed flow with its decision, by serial.
    pub flows: Vec<Classified>,
    /// Things the reviewer should know (selectors that also match other pods…).
    pub notes: Vec<String>,
}

impl Suggestion {
    /// The compact policies.
    pub fn network_policies(&self) -> Vec<NetworkPolicy> {
        self.policies.iter().map(|p| p.policy.clone()).collect()
    }
}

fn protocol_of(proto: u8) -> Option<Protocol> {
    match proto {
        6 => Some(Protocol::Tcp),
        17 => Some(Protocol::Udp),
        132 => Some(Protocol::Sctp),
        _ => None,
    }
}

/// Decides, for each flow, whether it is kept, excluded or ignored.
pub fn classify(
    flows: &[FlowSummary],
    findings: &[Finding],
    options: &SuggestOptions,
) -> Vec<Classified> {
    let mut attack: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut weak: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for f in findings {
        let target = if f.kind.attack_like() {
            &mut attack
        } else {
            &mut weak
        };
        for s in &f.flows {
            target.entry(*s).or_default().insert(f.id.clone());
        }
    }
    let mut out = Vec::new();
    for flow in flows.iter().filter(|f| !f.outer) {
        let (src, dst) = parties(flow);
        let protocol = protocol_of(flow.proto);
        let flagged: Vec<String> = attack
            .get(&flow.serial)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let weaknesses: Vec<String> = weak
            .get(&flow.serial)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let decision = if protocol.is_none() {
            Decision::Ignored {
                reason: "NetworkPolicy cannot name this protocol",
            }
        } else if !flagged.is_empty() && !options.include_flagged {
            Decision::Excluded { findings: flagged }
        } else if !src.is_pod() && !dst.is_pod() {
            Decision::Ignored {
                reason: "neither end is a pod",
            }
        } else if src.kind == PartyKind::Node && dst.is_pod() {
            Decision::Ignored {
                reason: "node-local traffic (probes, host-network) is not subject to NetworkPolicy on most CNIs",
            }
        } else if !flow.carried_data() {
            Decision::Ignored {
                reason: "never answered: nothing to allow",
            }
        } else if matches!(src.kind, PartyKind::Unknown)
            || matches!(dst.kind, PartyKind::Unknown | PartyKind::Address)
        {
            Decision::Ignored {
                reason: "an end could not be identified",
            }
        } else {
            let mut w = weaknesses;
            if options.include_flagged {
                w.extend(flagged);
            }
            Decision::Kept { weaknesses: w }
        };
        out.push(Classified {
            serial: flow.serial,
            src,
            dst,
            port: flow.dst.port,
            protocol,
            decision,
        });
    }
    out
}

fn is_system(ns: &str) -> bool {
    SYSTEM_NAMESPACES.contains(&ns)
}

/// Pods of a workload (running or pending) in the state.
fn workload_pods<'a>(state: &'a ClusterState, ns: &str, kind: &str, name: &str) -> Vec<&'a Pod> {
    state
        .pods
        .values()
        .filter(|p| {
            p.namespace == ns && p.workload.kind.as_str() == kind && p.workload.name == name
        })
        .collect()
}

/// The stable labels of a workload and the smallest selector among them that picks exactly its
/// pods in its namespace (preferring `app.kubernetes.io/name`, `app`, `name`, `k8s-app`).
/// Returns the selector and whether it also selects pods of other workloads.
pub fn workload_selector(
    state: &ClusterState,
    ns: &str,
    kind: &str,
    name: &str,
) -> Option<(LabelSelector, bool)> {
    let pods = workload_pods(state, ns, kind, name);
    let first = pods.first()?;
    let mut common: Labels = first
        .labels
        .iter()
        .filter(|(k, _)| !VOLATILE_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for p in &pods[1..] {
        common.retain(|k, v| p.labels.get(k) == Some(v));
    }
    if common.is_empty() {
        return None;
    }
    let others: Vec<&Pod> = state
        .pods
        .values()
        .filter(|p| {
            p.namespace == ns && !(p.workload.kind.as_str() == kind && p.workload.name == name)
        })
        .filter(|p| !p.phase.is_terminal())
        .collect();
    let exact = |sel: &LabelSelector| !others.iter().any(|p| sel.matches(&p.labels));
    let preferred = [
        "app.kubernetes.io/name",
        "app",
        "name",
        "k8s-app",
        "app.kubernetes.io/instance",
    ];
    let mut keys: Vec<&String> = common.keys().collect();
    keys.sort_by_key(|k| {
        (
            preferred
                .iter()
                .position(|p| p == k)
                .unwrap_or(preferred.len()),
            (*k).clone(),
        )
    });
    for k in keys {
        let sel = LabelSelector::labels([(k.as_str(), common[k].as_str())]);
        if exact(&sel) {
            return Some((sel, false));
        }
    }
    let sel = LabelSelector {
        match_labels: common,
        match_expressions: Vec::new(),
    };
    let broad = !exact(&sel);
    Some((sel, broad))
}

fn ns_selector(ns: &str) -> LabelSelector {
    LabelSelector::labels([(NAMESPACE_NAME_LABEL, ns)])
}

/// The port entry for `port/proto` on pods of a workload: named when all its pods name it alike.
fn port_entry(pods: &[&Pod], port: u16, proto: Protocol) -> PolicyPort {
    let mut name: Option<&str> = None;
    let mut all = !pods.is_empty();
    for p in pods {
        match p
            .ports
            .iter()
            .find(|cp| cp.port == port && cp.protocol == proto)
            .and_then(|cp| cp.name.as_deref())
        {
            Some(n) if name.is_none_or(|m| m == n) => name = Some(n),
            _ => all = false,
        }
    }
    let spec = match (all, name) {
        (true, Some(n)) => PortSpec::Name(n.to_string()),
        _ => PortSpec::Number(port),
    };
    PolicyPort {
        protocol: proto,
        port: Some(spec),
        end_port: None,
    }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// Ports and flow serials seen with one peer.
type PeerTraffic = (BTreeSet<(u16, Protocol)>, BTreeSet<u64>);

/// Accumulated rules of one workload.
#[derive(Default)]
struct Draft {
    ingress: BTreeMap<PeerKey, PeerTraffic>,
    egress: BTreeMap<PeerKey, PeerTraffic>,
    weaknesses: BTreeMap<PeerKey, BTreeSet<String>>,
    egress_weaknesses: BTreeMap<PeerKey, BTreeSet<String>>,
}

/// Synthesises policies for the kept flows.
pub fn suggest(
    state: &ClusterState,
    flows: &[FlowSummary],
    findings: &[Finding],
    dns: &BTreeMap<IpAddr, Vec<String>>,
    options: &SuggestOptions,
) -> Suggestion {
    let classified = classify(flows, findings, options);
    let existing = PolicyEngine::new(state, &[]);
    let mut notes = Vec::new();
    // (ns, kind, name) → draft
    let mut drafts: BTreeMap<(String, String, String), Draft> = BTreeMap::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    let peer_of = |p: &Party| -> PeerKey {
        match (&p.namespace, &p.workload_kind, &p.workload) {
            (Some(ns), Some(k), Some(w)) if p.is_pod() => {
                PeerKey::Workload(ns.clone(), k.clone(), w.clone())
            }
            _ => PeerKey::Block(
                options
                    .cidrs
                    .iter()
                    .find(|c| c.contains(&p.ip))
                    .copied()
                    .unwrap_or_else(|| host_net(p.ip)),
            ),
        }
    };
    let mut existing = existing;
    for c in &classified {
        let Decision::Kept { weaknesses } = &c.decision else {
            continue;
        };
        let Some(proto) = c.protocol else { continue };
        // Would the existing policies already allow each direction?
        let src_ep = existing.endpoint_for_ip(c.src.ip);
        let dst_ep = match (&c.dst.namespace, &c.dst.pod) {
            (Some(ns), Some(pod)) => existing
                .endpoint_for_pod(ns, pod)
                .unwrap_or(EndpointRef::Ip(c.dst.ip)),
            _ => existing.endpoint_for_ip(c.dst.ip),
        };
        let v = existing.verdict(src_ep, dst_ep, c.port, proto).clone();
        let is_dns = c.dst.kind == PartyKind::ClusterDns && c.port == 53;
        // Egress side: the source workload.
        if let PeerKey::Workload(ns, kind, name) = peer_of(&c.src) {
            let system = is_system(&ns);
            let dns_by_default = is_dns && !system;
            if !system {
                namespaces.insert(ns.clone());
            }
            let write = if system {
                !v.egress.allows()
            } else {
                !dns_by_default
            };
            if write {
                let d = drafts
                    .entry((ns.clone(), kind.clone(), name.clone()))
                    .or_default();
                let key = peer_of(&c.dst);
                let e = d.egress.entry(key.clone()).or_default();
                e.0.insert((c.port, proto));
                if is_dns {
                    e.0.insert((53, Protocol::Udp));
                    e.0.insert((53, Protocol::Tcp));
                }
                e.1.insert(c.serial);
                d.egress_weaknesses
                    .entry(key)
                    .or_default()
                    .extend(weaknesses.iter().cloned());
            } else {
                drafts.entry((ns, kind, name)).or_default();
            }
        }
        // Ingress side: the destination workload.
        if let PeerKey::Workload(ns, kind, name) = peer_of(&c.dst) {
            let system = is_system(&ns);
            if !system {
                namespaces.insert(ns.clone());
            }
            let write = if system { !v.ingress.allows() } else { true };
            if write {
                let d = drafts.entry((ns, kind, name)).or_default();
                let key = peer_of(&c.src);
                let e = d.ingress.entry(key.clone()).or_default();
                e.0.insert((c.port, proto));
                if is_dns {
                    e.0.insert((53, Protocol::Udp));
                    e.0.insert((53, Protocol::Tcp));
                }
                e.1.insert(c.serial);
                d.weaknesses
                    .entry(key)
                    .or_default()
                    .extend(weaknesses.iter().cloned());
            }
        }
    }
    // Every namespace whose pods appear in excluded traffic also gets a default-deny, so the
    // excluded flows are blocked.
    for c in &classified {
        if let Decision::Excluded { .. } = c.decision {
            for p in [&c.src, &c.dst] {
                if let Some(ns) = &p.namespace
                    && p.is_pod()
                    && !is_system(ns)
                {
                    namespaces.insert(ns.clone());
                }
            }
        }
    }

    let dns_peer = cluster_dns_peer(state);
    let mut policies = Vec::new();
    for ns in &namespaces {
        policies.push(SuggestedPolicy {
            policy: NetworkPolicy {
                namespace: ns.clone(),
                name: DEFAULT_DENY.to_string(),
                pod_selector: LabelSelector::default(),
                affects_ingress: true,
                affects_egress: true,
                ingress: Vec::new(),
                egress: vec![Rule {
                    peers: vec![dns_peer.clone()],
                    ports: vec![
                        PolicyPort { protocol: Protocol::Udp, port: Some(PortSpec::Number(53)), end_port: None },
                        PolicyPort { protocol: Protocol::Tcp, port: Some(PortSpec::Number(53)), end_port: None },
                    ],
                }],
            },
            comment: format!(
                "Default deny for namespace {ns}: no ingress, and egress only to cluster DNS (53/UDP+TCP). \
                 Pods in {ns} not seen in the capture lose all other traffic."
            ),
            ingress_comments: Vec::new(),
            egress_comments: vec!["cluster DNS for every pod in the namespace".to_string()],
            workload: None,
            fqdns: BTreeMap::new(),
        });
    }
    // Policy names: podwire-<workload>, with the kind appended on a clash.
    let mut name_count: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (ns, _, name) in drafts.keys() {
        *name_count.entry((ns.clone(), name.clone())).or_default() += 1;
    }
    for ((ns, kind, name), d) in &drafts {
        if d.ingress.is_empty() && d.egress.is_empty() {
            continue;
        }
        let Some((selector, broad)) = workload_selector(state, ns, kind, name) else {
            notes.push(format!(
                "{ns}/{name} ({kind}) has no stable labels to select it by: no policy written for it"
            ));
            continue;
        };
        if broad {
            notes.push(format!(
                "the selector {selector} for {ns}/{name} also selects pods of other workloads"
            ));
        }
        let own_pods = workload_pods(state, ns, kind, name);
        let mut ingress = Vec::new();
        let mut ingress_comments = Vec::new();
        for (key, (ports, serials)) in &d.ingress {
            let Some(peer) = peer_for(state, key, &mut notes) else {
                continue;
            };
            let ports = ports
                .iter()
                .map(|(p, pr)| port_entry(&own_pods, *p, *pr))
                .collect();
            ingress.push(Rule {
                peers: vec![peer],
                ports,
            });
            ingress_comments.push(rule_comment(
                "from",
                key,
                serials,
                d.weaknesses.get(key),
                dns,
            ));
        }
        let mut egress = Vec::new();
        let mut egress_comments = Vec::new();
        let mut fqdns = BTreeMap::new();
        for (key, (ports, serials)) in &d.egress {
            let Some(peer) = peer_for(state, key, &mut notes) else {
                continue;
            };
            let peer_pods = match key {
                PeerKey::Workload(pns, pk, pn) => workload_pods(state, pns, pk, pn),
                PeerKey::Block(_) => Vec::new(),
            };
            let ports = ports
                .iter()
                .map(|(p, pr)| port_entry(&peer_pods, *p, *pr))
                .collect();
            egress.push(Rule {
                peers: vec![peer],
                ports,
            });
            egress_comments.push(rule_comment(
                "to",
                key,
                serials,
                d.egress_weaknesses.get(key),
                dns,
            ));
            if let PeerKey::Block(net) = key {
                let names: BTreeSet<String> = dns
                    .iter()
                    .filter(|(ip, _)| net.contains(*ip))
                    .flat_map(|(_, n)| n.iter().cloned())
                    .collect();
                if !names.is_empty() {
                    fqdns.insert(*net, names.into_iter().collect());
                }
            }
        }
        let clash = name_count
            .get(&(ns.clone(), name.clone()))
            .copied()
            .unwrap_or(0)
            > 1;
        let policy_name = if clash {
            format!("podwire-{name}-{}", kind.to_ascii_lowercase())
        } else {
            format!("podwire-{name}")
        };
        let system = is_system(ns);
        policies.push(SuggestedPolicy {
            policy: NetworkPolicy {
                namespace: ns.clone(),
                name: policy_name,
                pod_selector: selector,
                affects_ingress: !ingress.is_empty(),
                affects_egress: !egress.is_empty(),
                ingress,
                egress,
            },
            comment: if system {
                format!(
                    "{kind} {ns}/{name}: adds rules for observed flows that existing policies deny \
                     ({ns} is a system namespace: podwire does not newly isolate it)"
                )
            } else {
                format!("{kind} {ns}/{name}: the traffic observed in the capture")
            },
            ingress_comments,
            egress_comments,
            workload: Some((kind.clone(), name.clone())),
            fqdns,
        });
    }
    policies.sort_by(|a, b| {
        (&a.policy.namespace, a.workload.is_some(), &a.policy.name).cmp(&(
            &b.policy.namespace,
            b.workload.is_some(),
            &b.policy.name,
        ))
    });
    notes.sort();
    notes.dedup();
    Suggestion {
        policies,
        flows: classified,
        notes,
    }
}

/// The cluster DNS peer: the `kube-system/kube-dns` Service's selector, else `k8s-app=kube-dns`.
fn cluster_dns_peer(state: &ClusterState) -> Peer {
    let selector = state
        .services
        .get(&("kube-system".to_string(), "kube-dns".to_string()))
        .and_then(|s| s.selector.clone())
        .map(|labels| LabelSelector {
            match_labels: labels,
            match_expressions: Vec::new(),
        })
        .unwrap_or_else(|| LabelSelector::labels([("k8s-app", "kube-dns")]));
    Peer::Pods {
        pod_selector: Some(selector),
        namespace_selector: Some(ns_selector("kube-system")),
    }
}

fn peer_for(state: &ClusterState, key: &PeerKey, notes: &mut Vec<String>) -> Option<Peer> {
    match key {
        PeerKey::Block(net) => Some(Peer::IpBlock {
            cidr: *net,
            except: Vec::new(),
        }),
        PeerKey::Workload(ns, kind, name) => match workload_selector(state, ns, kind, name) {
            Some((sel, _)) => Some(Peer::Pods {
                pod_selector: Some(sel),
                namespace_selector: Some(ns_selector(ns)),
            }),
            None => {
                notes.push(format!(
                    "peer {ns}/{name} ({kind}) has no stable labels: its rule was left out"
                ));
                None
            }
        },
    }
}

fn rule_comment(
    dir: &str,
    key: &PeerKey,
    serials: &BTreeSet<u64>,
    weaknesses: Option<&BTreeSet<String>>,
    dns: &BTreeMap<IpAddr, Vec<String>>,
) -> String {
    let peer = match key {
        PeerKey::Workload(ns, kind, name) => format!("{ns}/{name} ({kind})"),
        PeerKey::Block(net) => {
            let names: BTreeSet<&String> = dns
                .iter()
                .filter(|(ip, _)| net.contains(*ip))
                .flat_map(|(_, n)| n.iter())
                .collect();
            if names.is_empty() {
                net.to_string()
            } else {
                let n: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                format!("{net} (DNS: {})", n.join(", "))
            }
        }
    };
    let list: Vec<String> = serials.iter().take(16).map(|s| s.to_string()).collect();
    let more = if serials.len() > 16 {
        format!(" (+{})", serials.len() - 16)
    } else {
        String::new()
    };
    let mut text = format!("{dir} {peer}: flows {}{more}", list.join(", "));
    if let Some(w) = weaknesses.filter(|w| !w.is_empty()) {
        let w: Vec<&str> = w.iter().map(|s| s.as_str()).collect();
        text.push_str(&format!("; kept despite {}", w.join(", ")));
    }
    text
}
