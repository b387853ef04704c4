//! NetworkPolicy (networking.k8s.io/v1) evaluation with explanations, indexed and cached.
//!
//! Pure and deterministic: the same state and policies give the same [`Verdict`], down to the
//! order of the rules it cites. Semantics implemented (see `docs/policy.md`):
//! - a pod is isolated in a direction iff some policy in its namespace selects it and has that
//!   policy type; policies are unioned (any matching rule of any selecting policy allows);
//! - a connection is allowed iff the source's egress AND the destination's ingress allow it;
//! - peers: podSelector / namespaceSelector (both in one peer = AND; separate peers = OR),
//!   ipBlock with except; a rule with no peers matches every peer, with no ports every port;
//! - ports by number, by name (resolved against the *destination* pod's container ports, for
//!   ingress and egress alike), `endPort` ranges, TCP/UDP/SCTP;
//! - host-network pods and non-pod addresses are never selected by a policy and only match
//!   ipBlock peers (and peer-less rules).
//!
//! Speed: policies are indexed by namespace, the policies selecting each pod are computed once,
//! and verdicts are cached per (source, destination, port, protocol).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::cluster::model::{ClusterState, ContainerPort, Labels, Protocol};
use crate::policy::types::{Direction, NetworkPolicy, Peer, PolicyPort, PortSpec, Rule};
use crate::sanitize::sanitize;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Index of a pod inside a [`PolicyEngine`].
pub type PodId = u32;

/// Most verdicts the cache keeps before it is cleared (bounds memory on hostile input).
pub const CACHE_LIMIT: usize = 1 << 20;

/// One side of a connection, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointRef {
    /// A pod known to the engine; `ip` is the address seen in the flow (None: any of its IPs).
    Pod {
        /// Pod index.
        id: PodId,
        /// Address used by the flow.
        ip: Option<IpAddr>,
    },
    /// Anything that is not a (non-host-network) pod: external hosts, nodes, host-network pods.
    Ip(IpAddr),
}

/// A rule that allowed a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// `namespace/name` of the policy (raw; sanitized when displayed).
    pub policy: String,
    /// Direction of the rule.
    pub direction: Direction,
    /// Index of the rule in the policy's `ingress` or `egress` list.
    pub rule: usize,
    /// Index of the matching peer in `from`/`to`; `None` when the rule has no peers (all).
    pub peer: Option<usize>,
    /// Index of the matching entry in `ports`; `None` when the rule has no ports (all).
    pub port: Option<usize>,
}

impl fmt::Display for RuleMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = self
            .peer
            .map_or("any peer".to_string(), |p| format!("peer #{p}"));
        let port = self
            .port
            .map_or("any port".to_string(), |p| format!("port #{p}"));
        write!(
            f,
            "{} {} rule #{} ({peer}, {port})",
            sanitize(&self.policy),
            self.direction,
            self.rule
        )
    }
}

/// Verdict for one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DirectionVerdict {
    /// No policy selects the pod for this direction (or the endpoint is not a pod).
    NotIsolated,
    /// Allowed; every matching rule, in stable order (policies by namespace/name, then rule,
    /// peer and port index). Never empty.
    Allowed {
        /// Matching rules.
        by: Vec<RuleMatch>,
    },
    /// The pod is isolated and no rule of the isolating policies matches.
    Denied {
        /// `namespace/name` of every policy that isolates the pod in this direction.
        isolated_by: Vec<String>,
    },
}

impl DirectionVerdict {
    /// True unless denied.
    pub fn allows(&self) -> bool {
        !matches!(self, DirectionVerdict::Denied { .. })
    }
}

impl fmt::Display for DirectionVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectionVerdict::NotIsolated => f.write_str("not isolated"),
            DirectionVerdict::Allowed { by } => {
                match by.first() {
                    Some(first) => write!(f, "allowed by {first}")?,
                    None => f.write_str("allowed")?,
                }
                if by.len() > 1 {
                    write!(f, " (+{} more)", by.len() - 1)?;
                }
                Ok(())
            }
            DirectionVerdict::Denied { isolated_by } => {
                let names: Vec<String> = isolated_by.iter().map(|n| sanitize(n)).collect();
                write!(
                    f,
                    "denied: isolated by {}, no rule matches",
                    names.join(", ")
                )
            }
        }
    }
}

/// Verdict for a connection: the source's egress and the destination's ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True iff both directions allow.
    pub allowed: bool,
    /// Source pod's egress.
    pub egress: DirectionVerdict,
    /// Destination pod's ingress.
    pub ingress: DirectionVerdict,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: egress {}; ingress {}",
            if self.allowed { "ALLOWED" } else { "DENIED" },
            self.egress,
            self.ingress
        )
    }
}

/// What the engine keeps about a pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    ns_idx: u32,
    /// Labels.
    pub labels: Labels,
    /// Pod IPs.
    pub ips: Vec<IpAddr>,
    /// Declared container ports.
    pub ports: Vec<ContainerPort>,
    /// Host network pod (never selected, matched only by ipBlock).
    pub host_network: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey {
    src: EndpointRef,
    dst: EndpointRef,
    port: u16,
    proto: Protocol,
}

/// Indexed, caching NetworkPolicy evaluator over one cluster state (plus what-if policies).
#[derive(Debug, Clone)]
pub struct PolicyEngine {
    pods: Vec<PodInfo>,
    pod_by_key: FastMap<(String, String), PodId>,
    pod_by_ip: FastMap<IpAddr, PodId>,
    ns_labels: Vec<Labels>,
    ns_by_name: FastMap<String, u32>,
    policies: Vec<NetworkPolicy>,
    by_namespace: FastMap<String, Vec<u32>>,
    selecting_ingress: Vec<Vec<u32>>,
    selecting_egress: Vec<Vec<u32>>,
    cache: FastMap<CacheKey, Verdict>,
    hits: u64,
    misses: u64,
}

impl PolicyEngine {
    /// Builds the engine from the state's pods, namespaces and policies plus `extra` policies
    /// (what-if: an extra policy with the same namespace/name replaces the cluster's).
    pub fn new(state: &ClusterState, extra: &[NetworkPolicy]) -> Self {
        let mut policies: std::collections::BTreeMap<(String, String), NetworkPolicy> =
            state.network_policies.clone();
        for p in extra {
            policies.insert((p.namespace.clone(), p.name.clone()), p.clone());
        }
        let policies: Vec<NetworkPolicy> = policies.into_values().collect();

        let mut engine = PolicyEngine {
            pods: Vec::new(),
            pod_by_key: FastMap::default(),
            pod_by_ip: FastMap::default(),
            ns_labels: Vec::new(),
            ns_by_name: FastMap::default(),
            policies,
            by_namespace: FastMap::default(),
            selecting_ingress: Vec::new(),
            selecting_egress: Vec::new(),
            cache: FastMap::default(),
            hits: 0,
            misses: 0,
        };
        for ns in state.namespaces.keys() {
            engine.ns_index(state, ns);
        }
        for pod in state.pods.values() {
            let ns_idx = engine.ns_index(state, &pod.namespace);
            let id = engine.pods.len() as PodId;
            engine
                .pod_by_key
                .insert((pod.namespace.clone(), pod.name.clone()), id);
            if !pod.host_network && !pod.phase.is_terminal() {
                for ip in &pod.ips {
                    engine.pod_by_ip.insert(*ip, id);
                }
            }
            engine.pods.push(PodInfo {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ns_idx,
                labels: pod.labels.clone(),
                ips: pod.ips.clone(),
                ports: pod.ports.clone(),
                host_network: pod.host_network,
            });
        }
        for (i, p) in engine.policies.iter().enumerate() {
            engine
                .by_namespace
                .entry(p.namespace.clone())
                .or_default()
                .push(i as u32);
        }
        engine.selecting_ingress = vec![Vec::new(); engine.pods.len()];
        engine.selecting_egress = vec![Vec::new(); engine.pods.len()];
        for (id, pod) in engine.pods.iter().enumerate() {
            if pod.host_network {
                continue;
            }
            let Some(list) = engine.by_namespace.get(&pod.namespace) else {
                continue;
            };
            for &pi in list {
                let p = &engine.policies[pi as usize];
                if p.pod_selector.matches(&pod.labels) {
                    if p.affects_ingress {
                        engine.selecting_ingress[id].push(pi);
                    }
                    if p.affects_egress {
                        engine.selecting_egress[id].push(pi);
                    }
                }
            }
        }
        engine
    }

    fn ns_index(&mut self, state: &ClusterState, ns: &str) -> u32 {
        if let Some(i) = self.ns_by_name.get(ns) {
            return *i;
        }
        let i = self.ns_labels.len() as u32;
        self.ns_labels.push(state.namespace_labels(ns));
        self.ns_by_name.insert(ns.to_string(), i);
        i
    }

    /// Policies in stable order (namespace, name).
    pub fn policies(&self) -> &[NetworkPolicy] {
        &self.policies
    }

    /// Pods in stable order (namespace, name).
    pub fn pods(&self) -> &[PodInfo] {
        &self.pods
    }

    /// Pod by id.
    pub fn pod(&self, id: PodId) -> Option<&PodInfo> {
        self.pods.get(id as usize)
    }

    /// Endpoint for a pod by namespace/name (host-network pods become IP endpoints).
    pub fn endpoint_for_pod(&self, namespace: &str, name: &str) -> Option<EndpointRef> {
        let id = *self
            .pod_by_key
            .get(&(namespace.to_string(), name.to_string()))?;
        let pod = &self.pods[id as usize];
        if pod.host_network {
            return pod.ips.first().map(|ip| EndpointRef::Ip(*ip));
        }
        Some(EndpointRef::Pod { id, ip: None })
    }

    /// Endpoint for an address: the running pod that has it, or a plain IP endpoint.
    /// (Time-aware attribution lives in `cluster::identity`; this is the fast path.)
    pub fn endpoint_for_ip(&self, ip: IpAddr) -> EndpointRef {
        match self.pod_by_ip.get(&ip) {
            Some(id) => EndpointRef::Pod {
                id: *id,
                ip: Some(ip),
            },
            None => EndpointRef::Ip(ip),
        }
    }

    /// (cache hits, cache misses) so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Verdict for `src` → `dst` on `port`/`proto` (destination port), cached.
    pub fn verdict(
        &mut self,
        src: EndpointRef,
        dst: EndpointRef,
        port: u16,
        proto: Protocol,
    ) -> &Verdict {
        let key = CacheKey {
            src,
            dst,
            port,
            proto,
        };
        if self.cache.contains_key(&key) {
            self.hits += 1;
        } else {
            self.misses += 1;
            if self.cache.len() >= CACHE_LIMIT {
                self.cache.clear();
            }
            let v = self.verdict_uncached(src, dst, port, proto);
            self.cache.insert(key, v);
        }
        &self.cache[&key]
    }

    /// Verdict without touching the cache.
    pub fn verdict_uncached(
        &self,
        src: EndpointRef,
        dst: EndpointRef,
        port: u16,
        proto: Protocol,
    ) -> Verdict {
        let dst_ports: &[ContainerPort] = match dst {
            EndpointRef::Pod { id, .. } => self.pods.get(id as usize).map_or(&[], |p| &p.ports),
            EndpointRef::Ip(_) => &[],
        };
        let egress = match src {
            EndpointRef::Pod { id, .. } => {
                self.direction(Direction::Egress, id, &dst, dst_ports, port, proto)
            }
            EndpointRef::Ip(_) => DirectionVerdict::NotIsolated,
        };
        let ingress = match dst {
            EndpointRef::Pod { id, .. } => {
                self.direction(Direction::Ingress, id, &src, dst_ports, port, proto)
            }
            EndpointRef::Ip(_) => DirectionVerdict::NotIsolated,
        };
        Verdict {
            allowed: egress.allows() && ingress.allows(),
            egress,
            ingress,
        }
    }

    fn direction(
        &self,
        dir: Direction,
        target: PodId,
        peer: &EndpointRef,
        dst_ports: &[ContainerPort],
        port: u16,
        proto: Protocol,
    ) -> DirectionVerdict {
        let selecting = match dir {
            Direction::Ingress => self.selecting_ingress.get(target as usize),
            Direction::Egress => self.selecting_egress.get(target as usize),
        };
        let Some(selecting) = selecting.filter(|s| !s.is_empty()) else {
            return DirectionVerdict::NotIsolated;
        };
        let mut by = Vec::new();
        for &pi in selecting {
            let policy = &self.policies[pi as usize];
            for (ri, rule) in policy.rules(dir).iter().enumerate() {
                let Some(port_idx) = match_ports(&rule.ports, dst_ports, port, proto) else {
                    continue;
                };
                let Some(peer_idx) = self.match_peers(policy, rule, peer) else {
                    continue;
                };
                by.push(RuleMatch {
                    policy: format!("{}/{}", policy.namespace, policy.name),
                    direction: dir,
                    rule: ri,
                    peer: peer_idx,
                    port: port_idx,
                });
            }
        }
        if by.is_empty() {
            DirectionVerdict::Denied {
                isolated_by: selecting
                    .iter()
                    .map(|&pi| {
                        let p = &self.policies[pi as usize];
                        format!("{}/{}", p.namespace, p.name)
                    })
                    .collect(),
            }
        } else {
            DirectionVerdict::Allowed { by }
        }
    }

    /// `Some(None)`: rule has no peers (matches all); `Some(Some(j))`: peer j matches.
    fn match_peers(
        &self,
        policy: &NetworkPolicy,
        rule: &Rule,
        peer: &EndpointRef,
    ) -> Option<Option<usize>> {
        if rule.peers.is_empty() {
            return Some(None);
        }
        rule.peers
            .iter()
            .position(|p| self.peer_matches(policy, p, peer))
            .map(Some)
    }

    fn peer_matches(&self, policy: &NetworkPolicy, peer: &Peer, ep: &EndpointRef) -> bool {
        match (peer, ep) {
            (Peer::IpBlock { .. }, EndpointRef::Ip(ip)) => peer.matches_ip(*ip),
            (Peer::IpBlock { .. }, EndpointRef::Pod { id, ip }) => match ip {
                Some(ip) => peer.matches_ip(*ip),
                None => self
                    .pods
                    .get(*id as usize)
                    .is_some_and(|p| p.ips.iter().any(|ip| peer.matches_ip(*ip))),
            },
            (Peer::Pods { .. }, EndpointRef::Ip(_)) => false,
            (
                Peer::Pods {
                    pod_selector,
                    namespace_selector,
                },
                EndpointRef::Pod { id, .. },
            ) => {
                let Some(pod) = self.pods.get(*id as usize) else {
                    return false;
                };
                if pod.host_network {
                    return false;
                }
                let ns_ok = match namespace_selector {
                    None => pod.namespace == policy.namespace,
                    Some(sel) => self
                        .ns_labels
                        .get(pod.ns_idx as usize)
                        .is_some_and(|l| sel.matches(l)),
                };
                ns_ok && pod_selector.as_ref().is_none_or(|s| s.matches(&pod.labels))
            }
        }
    }
}

/// `Some(None)`: rule has no ports; `Some(Some(k))`: entry k matches; `None`: no match.
/// Named ports resolve against the destination pod's declared container ports.
pub fn match_ports(
    ports: &[PolicyPort],
    dst_ports: &[ContainerPort],
    port: u16,
    proto: Protocol,
) -> Option<Option<usize>> {
    if ports.is_empty() {
        return Some(None);
    }
    ports
        .iter()
        .position(|p| {
            p.protocol == proto
                && match &p.port {
                    None => true,
                    Some(PortSpec::Number(start)) => match p.end_port {
                        Some(end) => (*start..=end).contains(&port),
                        None => *start == port,
                    },
                    Some(PortSpec::Name(name)) => dst_ports.iter().any(|cp| {
                        cp.name.as_deref() == Some(name.as_str())
                            && cp.protocol == proto
                            && cp.port == port
                    }),
                }
        })
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::{ClusterDelta, ClusterObject, Namespace, Pod};
    use crate::policy::types::LabelSelector;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn state() -> ClusterState {
        let mut st = ClusterState::new();
        st.apply(ClusterDelta::Apply(ClusterObject::Namespace(
            Namespace::new("shop", l(&[("team", "shop")])),
        )));
        st.apply(ClusterDelta::Apply(ClusterObject::Namespace(
            Namespace::new("ops", l(&[])),
        )));
        let mut web = Pod::new(
            "shop",
            "web",
            l(&[("app", "web")]),
            vec!["10.0.0.1".parse().unwrap()],
        );
        web.ports = vec![
            ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp,
            },
            ContainerPort {
                name: Some("dns".into()),
                port: 5353,
                protocol: Protocol::Udp,
            },
        ];
        let fe = Pod::new(
            "shop",
            "fe",
            l(&[("app", "fe")]),
            vec!["10.0.0.2".parse().unwrap()],
        );
        let mon = Pod::new(
            "ops",
            "mon",
            l(&[("app", "fe")]),
            vec!["10.0.1.1".parse().unwrap()],
        );
        for p in [web, fe, mon] {
            st.apply(ClusterDelta::Apply(ClusterObject::Pod(Box::new(p))));
        }
        st
    }

    fn policy(ingress: Vec<Rule>) -> NetworkPolicy {
        NetworkPolicy {
            namespace: "shop".into(),
            name: "p".into(),
            pod_selector: LabelSelector::labels([("app", "web")]),
            affects_ingress: true,
            affects_egress: false,
            ingress,
            egress: vec![],
        }
    }

    fn port(p: Option<PortSpec>, end: Option<u16>, proto: Protocol) -> PolicyPort {
        PolicyPort {
            protocol: proto,
            port: p,
            end_port: end,
        }
    }

    fn check(
        st: &ClusterState,
        pol: &NetworkPolicy,
        from: (&str, &str),
        port: u16,
        proto: Protocol,
    ) -> Verdict {
        let e = PolicyEngine::new(st, std::slice::from_ref(pol));
        let src = e.endpoint_for_pod(from.0, from.1).unwrap();
        let dst = e.endpoint_for_pod("shop", "web").unwrap();
        e.verdict_uncached(src, dst, port, proto)
    }

    #[test]
    fn named_port_resolves_on_destination() {
        let st = state();
        let pol = policy(vec![Rule {
            peers: vec![],
            ports: vec![port(
                Some(PortSpec::Name("http".into())),
                None,
                Protocol::Tcp,
            )],
        }]);
        assert!(check(&st, &pol, ("shop", "fe"), 8080, Protocol::Tcp).allowed);
        assert!(!check(&st, &pol, ("shop", "fe"), 80, Protocol::Tcp).allowed);
        assert!(!check(&st, &pol, ("shop", "fe"), 8080, Protocol::Udp).allowed);
        let pol = policy(vec![Rule {
            peers: vec![],
            ports: vec![port(
                Some(PortSpec::Name("dns".into())),
                None,
                Protocol::Udp,
            )],
        }]);
        assert!(check(&st, &pol, ("shop", "fe"), 5353, Protocol::Udp).allowed);
        assert!(!check(&st, &pol, ("shop", "fe"), 5353, Protocol::Tcp).allowed);
    }

    #[test]
    fn end_port_range_inclusive() {
        let st = state();
        let pol = policy(vec![Rule {
            peers: vec![],
            ports: vec![port(
                Some(PortSpec::Number(8000)),
                Some(8080),
                Protocol::Tcp,
            )],
        }]);
        for (p, want) in [
            (7999, false),
            (8000, true),
            (8040, true),
            (8080, true),
            (8081, false),
        ] {
            assert_eq!(
                check(&st, &pol, ("shop", "fe"), p, Protocol::Tcp).allowed,
                want,
                "port {p}"
            );
        }
        let pol = policy(vec![Rule {
            peers: vec![],
            ports: vec![port(None, None, Protocol::Sctp)],
        }]);
        assert!(check(&st, &pol, ("shop", "fe"), 9, Protocol::Sctp).allowed);
        assert!(!check(&st, &pol, ("shop", "fe"), 9, Protocol::Tcp).allowed);
    }

    #[test]
    fn and_versus_or_peers() {
        let st = state();
        let ns = Some(LabelSelector::labels([(
            "kubernetes.io/metadata.name",
            "ops",
        )]));
        let pods = Some(LabelSelector::labels([("app", "fe")]));
        let and = policy(vec![Rule {
            peers: vec![Peer::Pods {
                pod_selector: pods.clone(),
                namespace_selector: ns.clone(),
            }],
            ports: vec![],
        }]);
        assert!(check(&st, &and, ("ops", "mon"), 80, Protocol::Tcp).allowed);
        assert!(!check(&st, &and, ("shop", "fe"), 80, Protocol::Tcp).allowed);
        let or = policy(vec![Rule {
            peers: vec![
                Peer::Pods {
                    pod_selector: None,
                    namespace_selector: ns,
                },
                Peer::Pods {
                    pod_selector: pods,
                    namespace_selector: None,
                },
            ],
            ports: vec![],
        }]);
        let v = check(&st, &or, ("shop", "fe"), 80, Protocol::Tcp);
        assert!(v.allowed);
        assert_eq!(
            v.ingress.to_string(),
            "allowed by shop/p ingress rule #0 (peer #1, any port)"
        );
        let v = check(&st, &or, ("ops", "mon"), 80, Protocol::Tcp);
        assert_eq!(
            v.ingress.to_string(),
            "allowed by shop/p ingress rule #0 (peer #0, any port)"
        );
    }

    #[test]
    fn ipblock_except_and_denied_text() {
        let st = state();
        let pol = policy(vec![Rule {
            peers: vec![Peer::IpBlock {
                cidr: "203.0.113.0/24".parse().unwrap(),
                except: vec!["203.0.113.128/25".parse().unwrap()],
            }],
            ports: vec![],
        }]);
        let e = PolicyEngine::new(&st, std::slice::from_ref(&pol));
        let dst = e.endpoint_for_pod("shop", "web").unwrap();
        let ok = e.verdict_uncached(
            EndpointRef::Ip("203.0.113.5".parse().unwrap()),
            dst,
            80,
            Protocol::Tcp,
        );
        assert!(ok.allowed);
        let no = e.verdict_uncached(
            EndpointRef::Ip("203.0.113.200".parse().unwrap()),
            dst,
            80,
            Protocol::Tcp,
        );
        assert!(!no.allowed);
        assert_eq!(
            no.ingress.to_string(),
            "denied: isolated by shop/p, no rule matches"
        );
        assert_eq!(no.egress, DirectionVerdict::NotIsolated);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::cluster::model::{ClusterDelta, ClusterObject, Namespace, Pod};
    use crate::policy::types::{LabelSelector, Requirement, SelectorOp};
    use proptest::prelude::*;

    const NS: [&str; 2] = ["a", "b"];

    fn labels() -> impl Strategy<Value = Labels> {
        (prop::option::of(0..3u8), prop::option::of(0..2u8)).prop_map(|(app, tier)| {
            let mut l = Labels::new();
            if let Some(a) = app {
                l.insert("app".into(), format!("v{a}"));
            }
            if let Some(t) = tier {
                l.insert("tier".into(), format!("t{t}"));
            }
            l
        })
    }

    fn selector() -> impl Strategy<Value = LabelSelector> {
        (labels(), prop::option::of((0..4u8, 0..3u8))).prop_map(|(ml, expr)| LabelSelector {
            match_labels: ml,
            match_expressions: expr
                .map(|(op, v)| {
                    let op = [
                        SelectorOp::In,
                        SelectorOp::NotIn,
                        SelectorOp::Exists,
                        SelectorOp::DoesNotExist,
                    ][op as usize];
                    let values = match op {
                        SelectorOp::In | SelectorOp::NotIn => vec![format!("v{v}")],
                        _ => vec![],
                    };
                    vec![Requirement {
                        key: "app".into(),
                        op,
                        values,
                    }]
                })
                .unwrap_or_default(),
        })
    }

    fn peer() -> impl Strategy<Value = Peer> {
        prop_oneof![
            (prop::option::of(selector()), prop::option::of(selector()))
                .prop_filter("peer needs a selector", |(p, n)| p.is_some() || n.is_some())
                .prop_map(|(pod_selector, namespace_selector)| Peer::Pods {
                    pod_selector,
                    namespace_selector
                }),
            (0..4u8, prop::bool::ANY).prop_map(|(n, exc)| Peer::IpBlock {
                cidr: format!("10.0.{n}.0/24").parse().unwrap(),
                except: if exc {
                    vec![format!("10.0.{n}.0/30").parse().unwrap()]
                } else {
                    vec![]
                },
            }),
        ]
    }

    fn rule() -> impl Strategy<Value = Rule> {
        let port = (
            prop::option::of(prop_oneof![
                (79..82u16).prop_map(PortSpec::Number),
                Just(PortSpec::Name("http".into())),
            ]),
            prop::bool::ANY,
            0..2u8,
        )
            .prop_map(|(port, range, proto)| PolicyPort {
                protocol: if proto == 0 {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                },
                end_port: match (&port, range) {
                    (Some(PortSpec::Number(p)), true) => Some(p + 1),
                    _ => None,
                },
                port,
            });
        (
            prop::collection::vec(peer(), 0..3),
            prop::collection::vec(port, 0..2),
        )
            .prop_map(|(peers, ports)| Rule { peers, ports })
    }

    fn policy() -> impl Strategy<Value = NetworkPolicy> {
        (
            0..2usize,
            selector(),
            prop::bool::ANY,
            prop::bool::ANY,
            prop::collection::vec(rule(), 0..3),
            prop::collection::vec(rule(), 0..3),
        )
            .prop_map(
                |(ns, pod_selector, ing, eg, ingress, egress)| NetworkPolicy {
                    namespace: NS[ns].into(),
                    name: format!("p-{ns}"),
                    pod_selector,
                    affects_ingress: ing || !eg,
                    affects_egress: eg,
                    ingress,
                    egress,
                },
            )
    }

    fn cluster() -> impl Strategy<Value = ClusterState> {
        (
            prop::collection::vec((0..2usize, labels()), 2..6),
            labels(),
            labels(),
        )
            .prop_map(|(pods, l0, l1)| {
                let mut st = ClusterState::new();
                for (ns, l) in NS.iter().zip([l0, l1]) {
                    st.apply(ClusterDelta::Apply(ClusterObject::Namespace(
                        Namespace::new(ns, l),
                    )));
                }
                for (i, (ns, l)) in pods.into_iter().enumerate() {
                    let mut p = Pod::new(
                        NS[ns],
                        &format!("p{i}"),
                        l,
                        vec![format!("10.0.{}.{}", i % 4, i).parse().unwrap()],
                    );
                    p.ports = vec![ContainerPort {
                        name: Some("http".into()),
                        port: 80,
                        protocol: Protocol::Tcp,
                    }];
                    st.apply(ClusterDelta::Apply(ClusterObject::Pod(Box::new(p))));
                }
                st
            })
    }

    fn named(mut pols: Vec<NetworkPolicy>) -> Vec<NetworkPolicy> {
        for (i, p) in pols.iter_mut().enumerate() {
            p.name = format!("p{i}");
        }
        pols
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn adding_an_allow_rule_never_denies(
            st in cluster(),
            pols in prop::collection::vec(policy(), 0..4),
            extra in rule(),
            which in 0..4usize,
            egress_side in prop::bool::ANY,
            src in 0..6usize, dst in 0..6usize, port in 79..83u16, udp in prop::bool::ANY,
        ) {
            let pols = named(pols);
            prop_assume!(!pols.is_empty());
            let n = st.pods.len();
            let proto = if udp { Protocol::Udp } else { Protocol::Tcp };
            let before = PolicyEngine::new(&st, &pols);
            let (s, d) = (EndpointRef::Pod { id: (src % n) as u32, ip: None }, EndpointRef::Pod { id: (dst % n) as u32, ip: None });
            let v0 = before.verdict_uncached(s, d, port, proto);
            let mut more = pols.clone();
            let target = &mut more[which % pols.len()];
            if egress_side { target.egress.push(extra) } else { target.ingress.push(extra) }
            let v1 = PolicyEngine::new(&st, &more).verdict_uncached(s, d, port, proto);
            prop_assert!(!v0.allowed || v1.allowed, "before {v0} after {v1}");
            prop_assert!(!v0.ingress.allows() || v1.ingress.allows());
            prop_assert!(!v0.egress.allows() || v1.egress.allows());
        }

        #[test]
        fn unselected_pod_is_never_isolated(
            st in cluster(),
            pols in prop::collection::vec(policy(), 0..4),
            peer in 0..6usize, port in 79..83u16,
        ) {
            let pols = named(pols);
            let e = PolicyEngine::new(&st, &pols);
            let n = e.pods().len();
            for (id, pod) in e.pods().iter().enumerate() {
                let selected = pols.iter().any(|p| p.namespace == pod.namespace && p.pod_selector.matches(&pod.labels));
                if selected { continue; }
                let me = EndpointRef::Pod { id: id as u32, ip: None };
                let other = EndpointRef::Pod { id: (peer % n) as u32, ip: None };
                let out = e.verdict_uncached(me, other, port, Protocol::Tcp);
                prop_assert_eq!(out.egress, DirectionVerdict::NotIsolated);
                let inbound = e.verdict_uncached(other, me, port, Protocol::Tcp);
                prop_assert_eq!(inbound.ingress, DirectionVerdict::NotIsolated);
            }
        }

        #[test]
        fn cache_agrees_with_uncached(
            st in cluster(),
            pols in prop::collection::vec(policy(), 0..4),
            flows in prop::collection::vec((0..6usize, 0..6usize, 79..83u16), 1..20),
        ) {
            let mut e = PolicyEngine::new(&st, &named(pols));
            let n = e.pods().len();
            for (s, d, port) in flows {
                let (s, d) = (EndpointRef::Pod { id: (s % n) as u32, ip: None }, EndpointRef::Pod { id: (d % n) as u32, ip: None });
                let fresh = e.verdict_uncached(s, d, port, Protocol::Tcp);
                prop_assert_eq!(e.verdict(s, d, port, Protocol::Tcp), &fresh);
            }
        }
    }
}
