//! IP (+ port, protocol, time) → who it is: pod, host-network pod, service, node, API server,
//! cluster DNS, cloud metadata, external, or unknown — with provenance (how sure we are).
//!
//! Pure: [`IdentityIndex::new`] indexes a [`ClusterState`] (hash maps from IP to candidates,
//! longest-prefix match over node podCIDRs) and [`IdentityIndex::identify`] answers in O(1)
//! expected time. Time is always the caller's (packet timestamps, ns since the Unix epoch).
//!
//! Stable JSON shape (`serde::Serialize`), tagged by `kind`:
//! ```json
//! {"kind":"pod","namespace":"shop","name":"web-1","workload":{"kind":"Deployment","name":"web"},
//!  "labels":{"app":"web"},"node":"n1","provenance":{"basis":"exact_pod_ip","uncertain":false,"stale":false}}
//! {"kind":"host_network","node":"n1","pod":{"namespace":..,"name":..,"workload":{..}}|null,"provenance":..}
//! {"kind":"service","namespace":..,"name":..,"via":"cluster_ip"|"external_ip"|"load_balancer"|"node_port",
//!  "backends":[{"namespace":..,"name":..,"workload":{..}}],"provenance":..}
//! {"kind":"node","name":..,"provenance":..}
//! {"kind":"api_server","via":"service_vip"|"endpoint","node":..|null,"provenance":..}
//! {"kind":"cluster_dns","via":"service_vip"|"pod","pod":{..}|null,"provenance":..}
//! {"kind":"cloud_metadata","provenance":..}
//! {"kind":"external","name":null,"provenance":..}
//! {"kind":"unknown","node":"n1"|null,"provenance":..}
//! ```
//! `provenance.basis` is one of `exact_pod_ip`, `pod_ip_reused` (with `candidates`),
//! `pod_not_yet_created`, `pod_already_deleted`, `service_vip`, `service_external_ip`,
//! `load_balancer_ip`, `node_port`, `node_address`, `host_network_port`, `api_server_endpoint`,
//! `well_known_address`, `pod_cidr`, `no_match`. `uncertain` is true when the answer is a guess
//! (pod outside its lifetime at `ts`, several live candidates, an IP in a podCIDR with no pod);
//! `stale` is true when `ts` is further than [`IdentityOptions::stale_after_ns`] from the
//! snapshot time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Serialize;

use crate::cluster::model::{ClusterState, Labels, Node, Pod, Protocol, Service, TimestampNs};
use crate::sanitize::sanitize;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// AWS/GCP/Azure/OpenStack instance metadata address.
pub const CLOUD_METADATA_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));
/// AWS IPv6 instance metadata address (fd00:ec2::254).
pub const CLOUD_METADATA_V6: IpAddr =
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254));

/// Knobs for attribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityOptions {
    /// A lookup more than this far (either way) from the snapshot time is marked stale.
    pub stale_after_ns: i64,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        // One hour: pods churn, but most live longer than that.
        IdentityOptions {
            stale_after_ns: 3_600_000_000_000,
        }
    }
}

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The only pod with this IP, alive at the time.
    ExactPodIp,
    /// Several pods had this IP; the one alive at the time was chosen.
    PodIpReused,
    /// The only matching pod was created after the time.
    PodNotYetCreated,
    /// The only matching pod was deleted before the time.
    PodAlreadyDeleted,
    /// A Service ClusterIP.
    ServiceVip,
    /// A Service `externalIPs` entry.
    ServiceExternalIp,
    /// A Service load-balancer ingress IP.
    LoadBalancerIp,
    /// A node address plus a Service NodePort.
    NodePort,
    /// A node InternalIP/ExternalIP.
    NodeAddress,
    /// A node address plus a port declared by a host-network pod on that node.
    HostNetworkPort,
    /// An address of the `default/kubernetes` endpoints.
    ApiServerEndpoint,
    /// A fixed, well-known address (cloud metadata).
    WellKnownAddress,
    /// Inside a node's podCIDR, but no pod has it.
    PodCidr,
    /// Nothing in the cluster matches.
    NoMatch,
}

/// Basis plus confidence flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Provenance {
    /// How the identity was established.
    pub basis: Basis,
    /// Number of pods that had the IP (only for `pod_ip_reused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<u32>,
    /// The answer is a best guess.
    pub uncertain: bool,
    /// The cluster data is far from the lookup time.
    pub stale: bool,
}

impl Provenance {
    fn new(basis: Basis) -> Self {
        Provenance {
            basis,
            candidates: None,
            uncertain: false,
            stale: false,
        }
    }
    fn uncertain(basis: Basis) -> Self {
        Provenance {
            basis,
            candidates: None,
            uncertain: true,
            stale: false,
        }
    }
}

/// Workload reference in identities.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WorkloadRef {
    /// Kind (`Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet`, `Pod`…).
    pub kind: String,
    /// Name.
    pub name: String,
}

/// A pod reference in identities.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Owning workload.
    pub workload: WorkloadRef,
}

impl PodRef {
    fn of(p: &Pod) -> Self {
        PodRef {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            workload: WorkloadRef {
                kind: p.workload.kind.as_str().to_string(),
                name: p.workload.name.clone(),
            },
        }
    }
}

/// Which address of a Service was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceVia {
    /// ClusterIP.
    ClusterIp,
    /// externalIPs.
    ExternalIp,
    /// Load-balancer ingress IP.
    LoadBalancer,
    /// Node address + NodePort.
    NodePort,
}

/// How the API server / cluster DNS was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The Service VIP.
    ServiceVip,
    /// An endpoint address.
    Endpoint,
    /// A backing pod.
    Pod,
}

/// Who an address is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identity {
    /// A (non-host-network) pod.
    Pod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Owning workload.
        workload: WorkloadRef,
        /// Labels.
        labels: Labels,
        /// Node.
        node: Option<String>,
        /// Provenance.
        provenance: Provenance,
    },
    /// A node address used by a host-network pod.
    HostNetwork {
        /// Node.
        node: String,
        /// The host-network pod that declares the port, if any.
        pod: Option<PodRef>,
        /// Provenance.
        provenance: Provenance,
    },
    /// A Service address.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Which address.
        via: ServiceVia,
        /// Backing pods (EndpointSlices, else the selector).
        backends: Vec<PodRef>,
        /// Provenance.
        provenance: Provenance,
    },
    /// A node.
    Node {
        /// Name.
        name: String,
        /// Provenance.
        provenance: Provenance,
    },
    /// The Kubernetes API server (`default/kubernetes`).
    ApiServer {
        /// VIP or endpoint.
        via: Via,
        /// Node owning the endpoint address, if known.
        node: Option<String>,
        /// Provenance.
        provenance: Provenance,
    },
    /// Cluster DNS (`kube-system/kube-dns` service and its pods).
    ClusterDns {
        /// VIP or pod.
        via: Via,
        /// The DNS pod, when reached directly.
        pod: Option<PodRef>,
        /// Provenance.
        provenance: Provenance,
    },
    /// Cloud instance metadata (169.254.169.254 / fd00:ec2::254).
    CloudMetadata {
        /// Provenance.
        provenance: Provenance,
    },
    /// Outside the cluster.
    External {
        /// A DNS name, when one was learnt (filled by later stages).
        name: Option<String>,
        /// Provenance.
        provenance: Provenance,
    },
    /// Inside the cluster's ranges, but no object matches.
    Unknown {
        /// Node whose podCIDR contains the address.
        node: Option<String>,
        /// Provenance.
        provenance: Provenance,
    },
}

impl Identity {
    /// Provenance of any identity.
    pub fn provenance(&self) -> &Provenance {
        match self {
            Identity::Pod { provenance, .. }
            | Identity::HostNetwork { provenance, .. }
            | Identity::Service { provenance, .. }
            | Identity::Node { provenance, .. }
            | Identity::ApiServer { provenance, .. }
            | Identity::ClusterDns { provenance, .. }
            | Identity::CloudMetadata { provenance }
            | Identity::External { provenance, .. }
            | Identity::Unknown { provenance, .. } => provenance,
        }
    }

    fn provenance_mut(&mut self) -> &mut Provenance {
        match self {
            Identity::Pod { provenance, .. }
            | Identity::HostNetwork { provenance, .. }
            | Identity::Service { provenance, .. }
            | Identity::Node { provenance, .. }
            | Identity::ApiServer { provenance, .. }
            | Identity::ClusterDns { provenance, .. }
            | Identity::CloudMetadata { provenance }
            | Identity::External { provenance, .. }
            | Identity::Unknown { provenance, .. } => provenance,
        }
    }

    /// The (namespace, name) of the non-host-network pod this identity is, if it is one —
    /// what NetworkPolicy evaluation needs.
    pub fn pod_key(&self) -> Option<(&str, &str)> {
        match self {
            Identity::Pod {
                namespace, name, ..
            } => Some((namespace, name)),
            Identity::ClusterDns { pod: Some(p), .. } => Some((&p.namespace, &p.name)),
            _ => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = sanitize;
        match self {
            Identity::Pod {
                namespace,
                name,
                workload,
                ..
            } => write!(
                f,
                "pod {}/{} ({} {})",
                s(namespace),
                s(name),
                s(&workload.kind),
                s(&workload.name)
            )?,
            Identity::HostNetwork { node, pod, .. } => match pod {
                Some(p) => write!(
                    f,
                    "host-network pod {}/{} on node {}",
                    s(&p.namespace),
                    s(&p.name),
                    s(node)
                )?,
                None => write!(f, "host network of node {}", s(node))?,
            },
            Identity::Service {
                namespace, name, ..
            } => write!(f, "service {}/{}", s(namespace), s(name))?,
            Identity::Node { name, .. } => write!(f, "node {}", s(name))?,
            Identity::ApiServer { .. } => f.write_str("kubernetes API server")?,
            Identity::ClusterDns { pod, .. } => match pod {
                Some(p) => write!(f, "cluster DNS pod {}/{}", s(&p.namespace), s(&p.name))?,
                None => f.write_str("cluster DNS service")?,
            },
            Identity::CloudMetadata { .. } => f.write_str("cloud metadata service")?,
            Identity::External { name, .. } => match name {
                Some(n) => write!(f, "external {}", s(n))?,
                None => f.write_str("external")?,
            },
            Identity::Unknown { node, .. } => match node {
                Some(n) => write!(f, "unknown (pod CIDR of node {})", s(n))?,
                None => f.write_str("unknown")?,
            },
        }
        let p = self.provenance();
        if p.uncertain {
            f.write_str(" [uncertain]")?;
        }
        if p.stale {
            f.write_str(" [stale]")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct SvcInfo {
    namespace: String,
    name: String,
    backends: Vec<PodRef>,
    ports: Vec<(u16, Protocol)>,
}

/// Index over a [`ClusterState`] for fast IP → identity lookups.
#[derive(Debug, Clone)]
pub struct IdentityIndex {
    pods: Vec<Pod>,
    current: Vec<bool>,
    pod_by_ip: FastMap<IpAddr, Vec<u32>>,
    host_ports: FastMap<(String, u16, Protocol), u32>,
    services: Vec<SvcInfo>,
    svc_by_ip: FastMap<IpAddr, Vec<(u32, ServiceVia)>>,
    node_ports: FastMap<(u16, Protocol), u32>,
    node_by_ip: FastMap<IpAddr, String>,
    cidrs: Vec<(u8, FastMap<IpNet, String>)>,
    api_endpoints: FastMap<IpAddr, Vec<u16>>,
    dns_pods: FastMap<(String, String), ()>,
    snapshot_time_ns: Option<TimestampNs>,
    options: IdentityOptions,
}

const API_NS: &str = "default";
const API_SVC: &str = "kubernetes";
const DNS_NS: &str = "kube-system";
const DNS_SVC: &str = "kube-dns";

impl IdentityIndex {
    /// Indexes `state`.
    pub fn new(state: &ClusterState, options: IdentityOptions) -> Self {
        let mut idx = IdentityIndex {
            pods: Vec::new(),
            current: Vec::new(),
            pod_by_ip: FastMap::default(),
            host_ports: FastMap::default(),
            services: Vec::new(),
            svc_by_ip: FastMap::default(),
            node_ports: FastMap::default(),
            node_by_ip: FastMap::default(),
            cidrs: Vec::new(),
            api_endpoints: FastMap::default(),
            dns_pods: FastMap::default(),
            snapshot_time_ns: state.snapshot_time_ns,
            options,
        };
        let all = state
            .pods
            .values()
            .map(|p| (p, true))
            .chain(state.departed_pods.iter().map(|p| (p, false)));
        for (pod, current) in all {
            let id = idx.pods.len() as u32;
            if pod.host_network {
                if current && let Some(node) = &pod.node {
                    for cp in &pod.ports {
                        idx.host_ports
                            .entry((node.clone(), cp.port, cp.protocol))
                            .or_insert(id);
                    }
                }
            } else {
                for ip in &pod.ips {
                    idx.pod_by_ip.entry(*ip).or_default().push(id);
                }
            }
            idx.pods.push(pod.clone());
            idx.current.push(current);
        }
        for node in state.nodes.values() {
            idx.add_node(node);
        }
        idx.cidrs.sort_by_key(|c| std::cmp::Reverse(c.0));
        for svc in state.services.values() {
            idx.add_service(state, svc);
        }
        // API server endpoints.
        for es in state.endpoint_slices.values() {
            if es.namespace == API_NS && es.service.as_deref() == Some(API_SVC) {
                let ports: Vec<u16> = es.ports.iter().filter_map(|p| p.port).collect();
                for ep in &es.endpoints {
                    for a in &ep.addresses {
                        idx.api_endpoints
                            .entry(*a)
                            .or_default()
                            .extend(ports.iter().copied());
                    }
                }
            }
        }
        idx
    }

    fn add_node(&mut self, node: &Node) {
        for ip in node.internal_ips.iter().chain(&node.external_ips) {
            self.node_by_ip
                .entry(*ip)
                .or_insert_with(|| node.name.clone());
        }
        for cidr in &node.pod_cidrs {
            let len = cidr.prefix_len();
            // IPv4 and IPv6 nets never collide as keys, so one map per length suffices.
            match self.cidrs.iter_mut().find(|(l, _)| *l == len) {
                Some((_, m)) => {
                    m.insert(cidr.trunc(), node.name.clone());
                }
                None => {
                    let mut m = FastMap::default();
                    m.insert(cidr.trunc(), node.name.clone());
                    self.cidrs.push((len, m));
                }
            }
        }
    }

    fn add_service(&mut self, state: &ClusterState, svc: &Service) {
        let id = self.services.len() as u32;
        // Backends: EndpointSlices first, then the selector.
        let mut backends: BTreeMap<(String, String), PodRef> = BTreeMap::new();
        for es in state.endpoint_slices.values() {
            if es.namespace == svc.namespace && es.service.as_deref() == Some(svc.name.as_str()) {
                for ep in &es.endpoints {
                    if let Some(name) = &ep.pod
                        && let Some(p) = state.pod(&svc.namespace, name)
                    {
                        backends.insert((p.namespace.clone(), p.name.clone()), PodRef::of(p));
                    }
                }
            }
        }
        if backends.is_empty()
            && let Some(sel) = &svc.selector
        {
            for p in state.pods.values() {
                if p.namespace == svc.namespace
                    && !p.phase.is_terminal()
                    && sel.iter().all(|(k, v)| p.labels.get(k) == Some(v))
                {
                    backends.insert((p.namespace.clone(), p.name.clone()), PodRef::of(p));
                }
            }
        }
        let backends: Vec<PodRef> = backends.into_values().collect();
        if svc.namespace == DNS_NS && svc.name == DNS_SVC {
            for b in &backends {
                self.dns_pods
                    .insert((b.namespace.clone(), b.name.clone()), ());
            }
        }
        for ip in &svc.cluster_ips {
            self.svc_by_ip
                .entry(*ip)
                .or_default()
                .push((id, ServiceVia::ClusterIp));
        }
        for ip in &svc.external_ips {
            self.svc_by_ip
                .entry(*ip)
                .or_default()
                .push((id, ServiceVia::ExternalIp));
        }
        for ip in &svc.load_balancer_ips {
            self.svc_by_ip
                .entry(*ip)
                .or_default()
                .push((id, ServiceVia::LoadBalancer));
        }
        for p in &svc.ports {
            if let Some(np) = p.node_port {
                self.node_ports.entry((np, p.protocol)).or_insert(id);
            }
        }
        self.services.push(SvcInfo {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            backends,
            ports: svc.ports.iter().map(|p| (p.port, p.protocol)).collect(),
        });
    }

    /// Who `ip` is at `ts` (ns since the epoch); `port` is the port on that address (e.g. the
    /// destination port when `ip` is the destination), used for NodePorts and host-network pods.
    pub fn identify(&self, ip: IpAddr, port: Option<(u16, Protocol)>, ts: TimestampNs) -> Identity {
        let mut id = self.identify_inner(ip, port, ts);
        if let Some(snap) = self.snapshot_time_ns
            && ts.abs_diff(snap) > self.options.stale_after_ns.unsigned_abs()
        {
            id.provenance_mut().stale = true;
        }
        id
    }

    fn identify_inner(
        &self,
        ip: IpAddr,
        port: Option<(u16, Protocol)>,
        ts: TimestampNs,
    ) -> Identity {
        if ip == CLOUD_METADATA_V4 || ip == CLOUD_METADATA_V6 {
            return Identity::CloudMetadata {
                provenance: Provenance::new(Basis::WellKnownAddress),
            };
        }
        if let Some(list) = self.svc_by_ip.get(&ip) {
            let chosen = port
                .and_then(|(p, proto)| {
                    list.iter()
                        .find(|(s, _)| self.services[*s as usize].ports.contains(&(p, proto)))
                })
                .or_else(|| list.first());
            if let Some((sid, via)) = chosen {
                return self.service_identity(*sid, *via);
            }
        }
        if let Some(ports) = self.api_endpoints.get(&ip)
            && port.is_none_or(|(p, _)| ports.is_empty() || ports.contains(&p))
        {
            return Identity::ApiServer {
                via: Via::Endpoint,
                node: self.node_by_ip.get(&ip).cloned(),
                provenance: Provenance::new(Basis::ApiServerEndpoint),
            };
        }
        if let Some(node) = self.node_by_ip.get(&ip) {
            if let Some((p, proto)) = port {
                if let Some(pid) = self.host_ports.get(&(node.clone(), p, proto)) {
                    return Identity::HostNetwork {
                        node: node.clone(),
                        pod: Some(PodRef::of(&self.pods[*pid as usize])),
                        provenance: Provenance::new(Basis::HostNetworkPort),
                    };
                }
                if let Some(sid) = self.node_ports.get(&(p, proto)) {
                    let mut id = self.service_identity(*sid, ServiceVia::NodePort);
                    id.provenance_mut().basis = Basis::NodePort;
                    return id;
                }
            }
            return Identity::Node {
                name: node.clone(),
                provenance: Provenance::new(Basis::NodeAddress),
            };
        }
        if let Some(cands) = self.pod_by_ip.get(&ip) {
            let (pid, prov) = self.choose_pod(cands, ts);
            let pod = &self.pods[pid as usize];
            if self
                .dns_pods
                .contains_key(&(pod.namespace.clone(), pod.name.clone()))
            {
                return Identity::ClusterDns {
                    via: Via::Pod,
                    pod: Some(PodRef::of(pod)),
                    provenance: prov,
                };
            }
            return Identity::Pod {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                workload: PodRef::of(pod).workload,
                labels: pod.labels.clone(),
                node: pod.node.clone(),
                provenance: prov,
            };
        }
        for (len, map) in &self.cidrs {
            if let Ok(net) = IpNet::new(ip, *len)
                && let Some(node) = map.get(&net.trunc())
            {
                return Identity::Unknown {
                    node: Some(node.clone()),
                    provenance: Provenance::uncertain(Basis::PodCidr),
                };
            }
        }
        Identity::External {
            name: None,
            provenance: Provenance::new(Basis::NoMatch),
        }
    }

    fn service_identity(&self, sid: u32, via: ServiceVia) -> Identity {
        let s = &self.services[sid as usize];
        let basis = match via {
            ServiceVia::ClusterIp => Basis::ServiceVip,
            ServiceVia::ExternalIp => Basis::ServiceExternalIp,
            ServiceVia::LoadBalancer => Basis::LoadBalancerIp,
            ServiceVia::NodePort => Basis::NodePort,
        };
        if s.namespace == API_NS && s.name == API_SVC {
            return Identity::ApiServer {
                via: Via::ServiceVip,
                node: None,
                provenance: Provenance::new(basis),
            };
        }
        if s.namespace == DNS_NS && s.name == DNS_SVC {
            return Identity::ClusterDns {
                via: Via::ServiceVip,
                pod: None,
                provenance: Provenance::new(basis),
            };
        }
        Identity::Service {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            via,
            backends: s.backends.clone(),
            provenance: Provenance::new(basis),
        }
    }

    /// Picks the pod that had the IP at `ts` among `cands` (never empty).
    fn choose_pod(&self, cands: &[u32], ts: TimestampNs) -> (u32, Provenance) {
        let n = cands.len() as u32;
        let alive: Vec<u32> = cands
            .iter()
            .copied()
            .filter(|&c| self.pods[c as usize].alive_at(ts))
            .collect();
        // Prefer pods still holding their IP (not terminated), then current over departed,
        // then the most recently created.
        let rank = |c: u32| {
            let p = &self.pods[c as usize];
            (
                !p.phase.is_terminal(),
                self.current[c as usize],
                p.created_ns.unwrap_or(i64::MIN),
                c,
            )
        };
        if let Some(best) = alive.iter().copied().max_by_key(|&c| rank(c)) {
            let best_rank = rank(best);
            let ties = alive
                .iter()
                .filter(|&&c| {
                    let r = rank(c);
                    r.0 == best_rank.0 && r.1 == best_rank.1
                })
                .count();
            let prov = if n == 1 {
                Provenance::new(Basis::ExactPodIp)
            } else {
                Provenance {
                    basis: Basis::PodIpReused,
                    candidates: Some(n),
                    uncertain: ties > 1,
                    stale: false,
                }
            };
            return (best, prov);
        }
        // Nobody alive: the candidate nearest in time.
        let dist = |c: u32| {
            let p = &self.pods[c as usize];
            match (p.created_ns, p.deleted_ns) {
                (Some(cr), _) if ts < cr => (cr.abs_diff(ts), Basis::PodNotYetCreated),
                (_, Some(d)) => (ts.abs_diff(d), Basis::PodAlreadyDeleted),
                _ => (u64::MAX, Basis::PodAlreadyDeleted),
            }
        };
        let best = cands
            .iter()
            .copied()
            .min_by_key(|&c| (dist(c).0, c))
            .unwrap_or(cands[0]);
        let mut prov = Provenance::uncertain(dist(best).1);
        if n > 1 {
            prov.candidates = Some(n);
        }
        (best, prov)
    }

    /// Number of pods indexed (current and departed).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::{
        ClusterDelta, ClusterObject, ContainerPort, Endpoint, EndpointPort, EndpointSlice,
        ObjectKind, PodPhase, ServicePort, ServiceType, TargetPort,
    };

    const S: i64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pod(ns: &str, name: &str, addr: &str, created: i64, deleted: Option<i64>) -> Pod {
        let mut p = Pod::new(ns, name, Labels::new(), vec![ip(addr)]);
        p.created_ns = Some(created);
        p.deleted_ns = deleted;
        p
    }

    fn apply(st: &mut ClusterState, o: ClusterObject) {
        st.apply(ClusterDelta::Apply(o));
    }

    #[test]
    fn ip_reuse_picks_pod_alive_at_ts() {
        let mut st = ClusterState::new();
        apply(
            &mut st,
            ClusterObject::Pod(Box::new(pod(
                "a",
                "old",
                "10.1.0.5",
                100 * S,
                Some(200 * S),
            ))),
        );
        apply(
            &mut st,
            ClusterObject::Pod(Box::new(pod("a", "new", "10.1.0.5", 250 * S, None))),
        );
        let idx = IdentityIndex::new(&st, IdentityOptions::default());
        let at = |t: i64| idx.identify(ip("10.1.0.5"), None, t);
        match at(150 * S) {
            Identity::Pod {
                name, provenance, ..
            } => {
                assert_eq!(name, "old");
                assert_eq!(provenance.basis, Basis::PodIpReused);
                assert_eq!(provenance.candidates, Some(2));
                assert!(!provenance.uncertain);
            }
            other => panic!("{other:?}"),
        }
        match at(300 * S) {
            Identity::Pod { name, .. } => assert_eq!(name, "new"),
            other => panic!("{other:?}"),
        }
        // Between deletion of old and creation of new: nearest in time, uncertain.
        match at(240 * S) {
            Identity::Pod {
                name, provenance, ..
            } => {
                assert_eq!(name, "new");
                assert_eq!(provenance.basis, Basis::PodNotYetCreated);
                assert!(provenance.uncertain);
            }
            other => panic!("{other:?}"),
        }
        match at(210 * S) {
            Identity::Pod {
                name, provenance, ..
            } => {
                assert_eq!(name, "old");
                assert_eq!(provenance.basis, Basis::PodAlreadyDeleted);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn departed_pod_still_attributed_before_deletion() {
        let mut st = ClusterState::new();
        apply(
            &mut st,
            ClusterObject::Pod(Box::new(pod("a", "gone", "10.1.0.9", 10 * S, Some(50 * S)))),
        );
        st.apply(ClusterDelta::Delete {
            kind: ObjectKind::Pod,
            namespace: "a".into(),
            name: "gone".into(),
        });
        let idx = IdentityIndex::new(&st, IdentityOptions::default());
        match idx.identify(ip("10.1.0.9"), None, 20 * S) {
            Identity::Pod {
                name, provenance, ..
            } => {
                assert_eq!(name, "gone");
                assert_eq!(provenance.basis, Basis::ExactPodIp);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn terminated_pod_loses_to_running_one() {
        let mut st = ClusterState::new();
        let mut done = pod("a", "job", "10.1.0.7", 10 * S, None);
        done.phase = PodPhase::Succeeded;
        apply(&mut st, ClusterObject::Pod(Box::new(done)));
        apply(
            &mut st,
            ClusterObject::Pod(Box::new(pod("a", "web", "10.1.0.7", 20 * S, None))),
        );
        let idx = IdentityIndex::new(&st, IdentityOptions::default());
        assert!(
            matches!(idx.identify(ip("10.1.0.7"), None, 30 * S), Identity::Pod { ref name, .. } if name == "web")
        );
    }

    fn cluster() -> ClusterState {
        let mut st = ClusterState::new();
        apply(
            &mut st,
            ClusterObject::Node(Box::new(Node {
                name: "n1".into(),
                labels: Labels::new(),
                internal_ips: vec![ip("192.168.0.10")],
                external_ips: vec![],
                pod_cidrs: vec![
                    "10.1.0.0/24".parse().unwrap(),
                    "fd00:1::/64".parse().unwrap(),
                ],
            })),
        );
        let mut hn = Pod::new(
            "kube-system",
            "node-exporter-x",
            Labels::new(),
            vec![ip("192.168.0.10")],
        );
        hn.host_network = true;
        hn.node = Some("n1".into());
        hn.ports = vec![ContainerPort {
            name: Some("metrics".into()),
            port: 9100,
            protocol: Protocol::Tcp,
        }];
        hn.controller = Some(("DaemonSet".into(), "node-exporter".into()));
        apply(&mut st, ClusterObject::Pod(Box::new(hn)));
        let mut web = Pod::new(
            "shop",
            "web-1",
            [("app".to_string(), "web".to_string())].into(),
            vec![ip("10.1.0.4"), ip("fd00:1::4")],
        );
        web.node = Some("n1".into());
        apply(&mut st, ClusterObject::Pod(Box::new(web)));
        let mut dns = Pod::new(
            "kube-system",
            "coredns-1",
            [("k8s-app".to_string(), "kube-dns".to_string())].into(),
            vec![ip("10.1.0.53")],
        );
        dns.node = Some("n1".into());
        apply(&mut st, ClusterObject::Pod(Box::new(dns)));
        let svc =
            |ns: &str, name: &str, vip: &str, sel: Option<(&str, &str)>, node_port: Option<u16>| {
                Service {
                    namespace: ns.into(),
                    name: name.into(),
                    service_type: if node_port.is_some() {
                        ServiceType::NodePort
                    } else {
                        ServiceType::ClusterIP
                    },
                    cluster_ips: vec![ip(vip)],
                    headless: false,
                    external_ips: vec![],
                    load_balancer_ips: vec![],
                    selector: sel.map(|(k, v)| [(k.to_string(), v.to_string())].into()),
                    ports: vec![ServicePort {
                        name: None,
                        port: 80,
                        protocol: Protocol::Tcp,
                        target_port: TargetPort::Number(8080),
                        node_port,
                    }],
                }
            };
        apply(
            &mut st,
            ClusterObject::Service(Box::new(svc(
                "shop",
                "web",
                "10.96.0.20",
                Some(("app", "web")),
                Some(30080),
            ))),
        );
        apply(
            &mut st,
            ClusterObject::Service(Box::new(svc(
                "kube-system",
                "kube-dns",
                "10.96.0.10",
                Some(("k8s-app", "kube-dns")),
                None,
            ))),
        );
        apply(
            &mut st,
            ClusterObject::Service(Box::new(svc(
                "default",
                "kubernetes",
                "10.96.0.1",
                None,
                None,
            ))),
        );
        apply(
            &mut st,
            ClusterObject::EndpointSlice(Box::new(EndpointSlice {
                namespace: "default".into(),
                name: "kubernetes".into(),
                service: Some("kubernetes".into()),
                endpoints: vec![Endpoint {
                    addresses: vec![ip("192.168.0.2")],
                    pod: None,
                    node: None,
                    ready: true,
                }],
                ports: vec![EndpointPort {
                    name: Some("https".into()),
                    port: Some(6443),
                    protocol: Protocol::Tcp,
                }],
            })),
        );
        st
    }

    #[test]
    fn identities_of_every_kind() {
        let idx = IdentityIndex::new(&cluster(), IdentityOptions::default());
        let t = 0;
        let j = |i: IpAddr, p: Option<(u16, Protocol)>| {
            serde_json::to_value(idx.identify(i, p, t)).unwrap()
        };
        let v = j(ip("10.1.0.4"), None);
        assert_eq!(v["kind"], "pod");
        assert_eq!(v["workload"]["kind"], "Pod");
        assert_eq!(v["provenance"]["basis"], "exact_pod_ip");
        assert_eq!(j(ip("fd00:1::4"), None)["name"], "web-1");
        let v = j(ip("10.96.0.20"), Some((80, Protocol::Tcp)));
        assert_eq!(v["kind"], "service");
        assert_eq!(v["via"], "cluster_ip");
        assert_eq!(v["backends"][0]["name"], "web-1");
        let v = j(ip("192.168.0.10"), Some((30080, Protocol::Tcp)));
        assert_eq!(
            (v["kind"].as_str(), v["via"].as_str()),
            (Some("service"), Some("node_port"))
        );
        let v = j(ip("192.168.0.10"), Some((9100, Protocol::Tcp)));
        assert_eq!(v["kind"], "host_network");
        assert_eq!(v["pod"]["workload"]["kind"], "DaemonSet");
        assert_eq!(
            j(ip("192.168.0.10"), Some((22, Protocol::Tcp)))["kind"],
            "node"
        );
        assert_eq!(
            j(ip("10.96.0.1"), Some((443, Protocol::Tcp)))["kind"],
            "api_server"
        );
        let v = j(ip("192.168.0.2"), Some((6443, Protocol::Tcp)));
        assert_eq!(
            (v["kind"].as_str(), v["via"].as_str()),
            (Some("api_server"), Some("endpoint"))
        );
        assert_eq!(
            j(ip("10.96.0.10"), Some((53, Protocol::Udp)))["kind"],
            "cluster_dns"
        );
        let v = j(ip("10.1.0.53"), None);
        assert_eq!(
            (v["kind"].as_str(), v["via"].as_str()),
            (Some("cluster_dns"), Some("pod"))
        );
        assert_eq!(j(ip("169.254.169.254"), None)["kind"], "cloud_metadata");
        assert_eq!(j(ip("fd00:ec2::254"), None)["kind"], "cloud_metadata");
        let v = j(ip("10.1.0.99"), None);
        assert_eq!(
            (v["kind"].as_str(), v["node"].as_str()),
            (Some("unknown"), Some("n1"))
        );
        assert_eq!(j(ip("fd00:1::99"), None)["node"], "n1");
        assert_eq!(j(ip("8.8.8.8"), None)["kind"], "external");
    }

    #[test]
    fn stale_snapshot_is_flagged() {
        let mut st = cluster();
        st.snapshot_time_ns = Some(1000 * S);
        let idx = IdentityIndex::new(
            &st,
            IdentityOptions {
                stale_after_ns: 60 * S,
            },
        );
        assert!(
            !idx.identify(ip("10.1.0.4"), None, 1030 * S)
                .provenance()
                .stale
        );
        assert!(
            idx.identify(ip("10.1.0.4"), None, 2000 * S)
                .provenance()
                .stale
        );
    }
}
