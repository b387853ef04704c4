//! Verification of suggested policies against the observed flows, per-rule breadth, the diff
//! against the cluster's policies, and what-if verdict changes.
//!
//! Pure: everything is evaluated with [`PolicyEngine`] over the given state and policies.
//! Guarantees checked here (and by tests): under existing + suggested policies every kept flow
//! is allowed and every excluded flow is denied; a failure is reported with the verdict's
//! explanation, never hidden.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Classified, Decision, Suggestion};
use crate::cluster::model::{ClusterState, Protocol};
use crate::findings::parties;
use crate::policy::types::{Direction, NetworkPolicy, Peer, PortSpec};
use crate::policy::{DirectionVerdict, EndpointRef, PolicyEngine, Verdict};
use crate::summary::FlowSummary;

/// A flow whose verdict is not what the suggestion promises.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Flow serial.
    pub serial: u64,
    /// `src → dst port/proto`.
    pub edge: String,
    /// "kept flow denied" or "excluded flow allowed".
    pub problem: &'static str,
    /// The verdict, explained.
    pub verdict: String,
}

/// How much one suggested rule admits versus what was observed through it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleBreadth {
    /// `namespace/name` of the policy.
    pub policy: String,
    /// Direction.
    pub direction: Direction,
    /// Rule index.
    pub rule: usize,
    /// Pods the policy selects.
    pub selected_pods: usize,
    /// (selected pod, peer pod) pairs the rule admits.
    pub admitted_pod_pairs: usize,
    /// Port entries of the rule.
    pub ports: usize,
    /// Addresses admitted by ipBlock peers.
    pub admitted_addresses: u128,
    /// Distinct (source pod, destination pod or address) pairs observed through the rule.
    pub observed_pairs: usize,
    /// Distinct (pair, port, protocol) observed through the rule.
    pub observed_connections: usize,
}

impl RuleBreadth {
    /// (pod pairs + selected pods × ipBlock addresses) × ports: the connections the rule admits.
    pub fn admitted_connections(&self) -> u128 {
        let addr_pairs = (self.selected_pods as u128).saturating_mul(self.admitted_addresses);
        (self.admitted_pod_pairs as u128)
            .saturating_add(addr_pairs)
            .saturating_mul(self.ports.max(1) as u128)
    }
}

/// A flow whose verdict differs between two policy sets.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Flow serial.
    pub serial: u64,
    /// `src → dst port/proto`.
    pub edge: String,
    /// Allowed before.
    pub before_allowed: bool,
    /// Allowed after.
    pub after_allowed: bool,
    /// Verdict before, explained.
    pub before: String,
    /// Verdict after, explained.
    pub after: String,
}

/// The verification report.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Kept flows.
    pub kept: usize,
    /// Kept flows allowed under existing + suggested.
    pub kept_allowed: usize,
    /// Excluded flows.
    pub excluded: usize,
    /// Excluded flows denied under existing + suggested.
    pub excluded_denied: usize,
    /// Everything that is not as promised.
    pub failures: Vec<Failure>,
    /// Breadth per suggested rule.
    pub breadth: Vec<RuleBreadth>,
    /// Existing policies per namespace (names).
    pub existing: BTreeMap<String, Vec<String>>,
    /// Verdicts that change from existing to existing + suggested.
    pub changes: Vec<Change>,
}

impl Verification {
    /// True when every promise holds.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// (policy, direction, rule index).
type RuleKey = (String, Direction, usize);
/// (source pod or address, destination pod or address, port, protocol).
type Connection = (String, String, u16, Protocol);

fn endpoints(engine: &PolicyEngine, c: &Classified) -> (EndpointRef, EndpointRef) {
    let src = engine.endpoint_for_ip(c.src.ip);
    let dst = match (&c.dst.namespace, &c.dst.pod) {
        (Some(ns), Some(pod)) => engine
            .endpoint_for_pod(ns, pod)
            .unwrap_or(EndpointRef::Ip(c.dst.ip)),
        _ => engine.endpoint_for_ip(c.dst.ip),
    };
    (src, dst)
}

fn edge_text(c: &Classified) -> String {
    format!(
        "{} → {} {}/{}",
        c.src.display,
        c.dst.display,
        c.port,
        c.protocol.map_or("-", |p| p.as_str())
    )
}

/// Verifies a suggestion against the flows it was made from.
pub fn verify(state: &ClusterState, suggestion: &Suggestion) -> Verification {
    let suggested = suggestion.network_policies();
    let mut after = PolicyEngine::new(state, &suggested);
    let mut before = PolicyEngine::new(state, &[]);
    let mut v = Verification {
        kept: 0,
        kept_allowed: 0,
        excluded: 0,
        excluded_denied: 0,
        failures: Vec::new(),
        breadth: Vec::new(),
        existing: BTreeMap::new(),
        changes: Vec::new(),
    };
    // (policy, direction, rule) → observed (pair, port) set
    let mut observed: BTreeMap<RuleKey, BTreeSet<Connection>> = BTreeMap::new();
    let ours: BTreeSet<String> = suggested
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    for c in &suggestion.flows {
        let Some(proto) = c.protocol else { continue };
        let (src, dst) = endpoints(&after, c);
        let verdict = after.verdict(src, dst, c.port, proto).clone();
        match &c.decision {
            Decision::Kept { .. } => {
                v.kept += 1;
                if verdict.allowed {
                    v.kept_allowed += 1;
                } else {
                    v.failures.push(Failure {
                        serial: c.serial,
                        edge: edge_text(c),
                        problem: "kept flow denied",
                        verdict: verdict.to_string(),
                    });
                }
                for d in [&verdict.egress, &verdict.ingress] {
                    if let DirectionVerdict::Allowed { by } = d {
                        for m in by.iter().filter(|m| ours.contains(&m.policy)) {
                            observed
                                .entry((m.policy.clone(), m.direction, m.rule))
                                .or_default()
                                .insert((
                                    c.src.pod.clone().unwrap_or_else(|| c.src.ip.to_string()),
                                    c.dst.pod.clone().unwrap_or_else(|| c.dst.ip.to_string()),
                                    c.port,
                                    proto,
                                ));
                        }
                    }
                }
            }
            Decision::Excluded { .. } => {
                v.excluded += 1;
                if verdict.allowed {
                    v.failures.push(Failure {
                        serial: c.serial,
                        edge: edge_text(c),
                        problem: "excluded flow allowed",
                        verdict: verdict.to_string(),
                    });
                } else {
                    v.excluded_denied += 1;
                }
            }
            Decision::Ignored { .. } => continue,
        }
        let (bs, bd) = endpoints(&before, c);
        let old = before.verdict(bs, bd, c.port, proto).clone();
        if old.allowed != verdict.allowed {
            v.changes.push(Change {
                serial: c.serial,
                edge: edge_text(c),
                before_allowed: old.allowed,
                after_allowed: verdict.allowed,
                before: old.to_string(),
                after: verdict.to_string(),
            });
        }
    }
    for p in state.network_policies.values() {
        v.existing
            .entry(p.namespace.clone())
            .or_default()
            .push(p.name.clone());
    }
    for p in &suggested {
        for dir in [Direction::Ingress, Direction::Egress] {
            for (ri, _) in p.rules(dir).iter().enumerate() {
                let key = format!("{}/{}", p.namespace, p.name);
                let obs = observed.get(&(key.clone(), dir, ri));
                let (selected, pairs, addresses, ports) = admitted(state, &after, p, dir, ri);
                let observed_pairs = obs
                    .map(|s| {
                        s.iter()
                            .map(|(a, b, _, _)| (a, b))
                            .collect::<BTreeSet<_>>()
                            .len()
                    })
                    .unwrap_or(0);
                v.breadth.push(RuleBreadth {
                    policy: key,
                    direction: dir,
                    rule: ri,
                    selected_pods: selected,
                    admitted_pod_pairs: pairs,
                    ports,
                    admitted_addresses: addresses,
                    observed_pairs,
                    observed_connections: obs.map_or(0, |s| s.len()),
                });
            }
        }
    }
    v
}

/// (selected pods, pod pairs, ipBlock addresses, port entries) a rule admits.
pub fn admitted(
    state: &ClusterState,
    engine: &PolicyEngine,
    p: &NetworkPolicy,
    dir: Direction,
    ri: usize,
) -> (usize, usize, u128, usize) {
    let Some(rule) = p.rules(dir).get(ri) else {
        return (0, 0, 0, 0);
    };
    let pods = engine.pods();
    let selected: Vec<usize> = pods
        .iter()
        .enumerate()
        .filter(|(_, pod)| {
            !pod.host_network && pod.namespace == p.namespace && p.pod_selector.matches(&pod.labels)
        })
        .map(|(i, _)| i)
        .collect();
    let mut peer_pods: BTreeSet<usize> = BTreeSet::new();
    let mut addresses: u128 = 0;
    for peer in &rule.peers {
        match peer {
            Peer::IpBlock { cidr, .. } => {
                let bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
                addresses = addresses.saturating_add(1u128.checked_shl(bits).unwrap_or(u128::MAX));
            }
            Peer::Pods {
                pod_selector,
                namespace_selector,
            } => {
                for (i, pod) in pods.iter().enumerate() {
                    if pod.host_network {
                        continue;
                    }
                    let ns_ok = match namespace_selector {
                        None => pod.namespace == p.namespace,
                        Some(sel) => sel.matches(&state.namespace_labels(&pod.namespace)),
                    };
                    if ns_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&pod.labels)) {
                        peer_pods.insert(i);
                    }
                }
            }
        }
    }
    if rule.peers.is_empty() {
        peer_pods.extend(0..pods.len());
    }
    let pairs = selected
        .iter()
        .map(|s| peer_pods.iter().filter(|p| *p != s).count())
        .sum();
    let ports = rule
        .ports
        .iter()
        .map(|pp| match (&pp.port, pp.end_port) {
            (Some(PortSpec::Number(a)), Some(b)) => usize::from(b.saturating_sub(*a)) + 1,
            (None, _) => 65_535,
            _ => 1,
        })
        .sum::<usize>()
        .max(if rule.ports.is_empty() { 65_535 } else { 0 });
    (selected.len(), pairs, addresses, ports)
}

/// Flows whose verdict (allowed or denied) changes when `extra` policies are added to (or
/// replace) the cluster's.
pub fn verdict_changes(
    state: &ClusterState,
    flows: &[FlowSummary],
    extra: &[NetworkPolicy],
) -> Vec<Change> {
    let mut before = PolicyEngine::new(state, &[]);
    let mut after = PolicyEngine::new(state, extra);
    let mut out = Vec::new();
    for f in flows.iter().filter(|f| !f.outer) {
        let Some(proto) = super::protocol_of(f.proto) else {
            continue;
        };
        let (src, dst) = parties(f);
        let c = Classified {
            serial: f.serial,
            src,
            dst,
            port: f.dst.port,
            protocol: Some(proto),
            decision: Decision::Ignored { reason: "" },
        };
        let (bs, bd) = endpoints(&before, &c);
        let (as_, ad) = endpoints(&after, &c);
        let old: Verdict = before.verdict(bs, bd, c.port, proto).clone();
        let new: Verdict = after.verdict(as_, ad, c.port, proto).clone();
        if old.allowed != new.allowed {
            out.push(Change {
                serial: c.serial,
                edge: edge_text(&c),
                before_allowed: old.allowed,
                after_allowed: new.allowed,
                before: old.to_string(),
                after: new.to_string(),
            });
        }
    }
    out
}
