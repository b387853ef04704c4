//! Compact, owned model of the cluster objects podwire needs, and the [`ClusterState`] they live in.
//!
//! Pure: no I/O, no clock. Objects are converted from the `k8s-openapi` types (the
//! `ClusterObject::from_*` constructors) into small structs that keep only what identity mapping and
//! NetworkPolicy evaluation use. State changes only through [`ClusterState::apply`] with a
//! [`ClusterDelta`], so a snapshot loader and a live watcher feed it the same way.
//!
//! Guarantees:
//! - Iteration order over every collection is deterministic (sorted by namespace/name).
//! - Conversion never panics on odd input: a malformed field yields a [`ConvertError`] naming it.
//! - A deleted pod is kept (bounded) in [`ClusterState::departed_pods`] so a flow captured
//!   before the deletion can still be attributed to it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core, discovery::v1 as discovery,
    networking::v1 as networking,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::policy::types::NetworkPolicy;

/// Labels (or a selector's matchLabels): sorted, so output is stable.
pub type Labels = BTreeMap<String, String>;

/// Nanoseconds since the Unix epoch (the timeline podwire uses everywhere).
pub type TimestampNs = i64;

/// How many deleted pods [`ClusterState`] remembers for late attribution.
pub const DEPARTED_POD_MEMORY: usize = 4096;

/// Label the API server puts on every namespace (Kubernetes ≥ 1.21); podwire adds it when absent.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Transport protocol of a port. Kubernetes defaults to TCP where it is omitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Upper-case name as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    /// Accepts TCP/UDP/SCTP in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(format!(
                "unknown protocol {s:?} (expected TCP, UDP or SCTP)"
            )),
        }
    }
}

/// A field of a cluster object that could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct ConvertError {
    /// Dotted path of the field, e.g. `status.podIPs[1].ip`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConvertError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConvertError {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub(crate) fn parse_ip(field: &str, raw: &str) -> Result<IpAddr, ConvertError> {
    raw.trim()
        .parse()
        .map_err(|_| ConvertError::new(field, format!("not an IP address: {raw:?}")))
}

pub(crate) fn parse_port(field: &str, raw: i32) -> Result<u16, ConvertError> {
    u16::try_from(raw)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ConvertError::new(field, format!("port out of range 1-65535: {raw}")))
}

pub(crate) fn parse_protocol(field: &str, raw: Option<&String>) -> Result<Protocol, ConvertError> {
    match raw {
        None => Ok(Protocol::Tcp),
        Some(s) => s.parse().map_err(|m: String| ConvertError::new(field, m)),
    }
}

fn time_ns(t: &Option<Time>) -> Option<TimestampNs> {
    t.as_ref()
        .and_then(|t| i64::try_from(t.0.as_nanosecond()).ok())
}

/// Kind of the workload that ultimately owns a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "PascalCase")]
pub enum WorkloadKind {
    /// apps/v1 Deployment (pod → ReplicaSet → Deployment).
    Deployment,
    /// A ReplicaSet not owned by a Deployment.
    ReplicaSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 Job not owned by a CronJob.
    Job,
    /// batch/v1 CronJob (pod → Job → CronJob).
    CronJob,
    /// A pod with no controller (a "bare" pod); the workload name is the pod's.
    Pod,
    /// A static/mirror pod owned by its Node.
    Node,
    /// Any other controller kind (custom resources).
    #[serde(untagged)]
    Other(String),
}

impl WorkloadKind {
    fn from_kind(kind: &str) -> Self {
        match kind {
            "Deployment" => WorkloadKind::Deployment,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "Job" => WorkloadKind::Job,
            "CronJob" => WorkloadKind::CronJob,
            "Pod" => WorkloadKind::Pod,
            "Node" => WorkloadKind::Node,
            other => WorkloadKind::Other(other.to_string()),
        }
    }

    /// Name as Kubernetes spells the kind.
    pub fn as_str(&self) -> &str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Node => "Node",
            WorkloadKind::Other(s) => s,
        }
    }
}

/// The workload (top of the owner chain) a pod belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Workload {
    /// Controller kind.
    pub kind: WorkloadKind,
    /// Controller name (in the pod's namespace).
    pub name: String,
}

/// A port a container declares (`spec.containers[].ports[]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ContainerPort {
    /// IANA_SVC_NAME of the port, used by named ports in policies and services.
    pub name: Option<String>,
    /// Container port number.
    pub port: u16,
    /// Protocol (default TCP).
    pub protocol: Protocol,
}

/// Pod lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub enum PodPhase {
    /// Accepted, not all containers running yet.
    Pending,
    /// Bound to a node, containers running.
    #[default]
    Running,
    /// All containers terminated successfully (its IP may be reused).
    Succeeded,
    /// All containers terminated, at least one failed (its IP may be reused).
    Failed,
    /// State could not be obtained.
    Unknown,
}

impl PodPhase {
    /// True when the pod's containers have all terminated (its IP is free for reuse).
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// A pod (only the fields podwire uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// All pod IPs (dual-stack: `status.podIPs`, falling back to `status.podIP`).
    pub ips: Vec<IpAddr>,
    /// Node the pod is scheduled on.
    pub node: Option<String>,
    /// `spec.hostNetwork`: the pod uses its node's addresses.
    pub host_network: bool,
    /// Declared container ports (init containers included, as Kubernetes resolves named ports).
    pub ports: Vec<ContainerPort>,
    /// Workload at the top of the owner chain.
    pub workload: Workload,
    /// Direct controller (kind, name), e.g. ("ReplicaSet", "web-6d4cf56db6").
    pub controller: Option<(String, String)>,
    /// Service account name.
    pub service_account: Option<String>,
    /// Phase.
    pub phase: PodPhase,
    /// `metadata.creationTimestamp` in ns.
    pub created_ns: Option<TimestampNs>,
    /// `metadata.deletionTimestamp` in ns (set when deletion started).
    pub deleted_ns: Option<TimestampNs>,
}

impl Pod {
    /// A minimal running pod (for tests and synthetic clusters).
    pub fn new(namespace: &str, name: &str, labels: Labels, ips: Vec<IpAddr>) -> Self {
        Pod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            labels,
            ips,
            node: None,
            host_network: false,
            ports: Vec::new(),
            workload: Workload {
                kind: WorkloadKind::Pod,
                name: name.to_string(),
            },
            controller: None,
            service_account: None,
            phase: PodPhase::Running,
            created_ns: None,
            deleted_ns: None,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// True if the pod existed (created, not yet deleted) at `ts`. Unknown times count as "yes".
    pub fn alive_at(&self, ts: TimestampNs) -> bool {
        self.created_ns.is_none_or(|c| c <= ts) && self.deleted_ns.is_none_or(|d| ts < d)
    }
}

/// A namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// Name.
    pub name: String,
    /// Labels (always including `kubernetes.io/metadata.name`).
    pub labels: Labels,
}

impl Namespace {
    /// A namespace with the given labels plus the automatic name label.
    pub fn new(name: &str, mut labels: Labels) -> Self {
        labels
            .entry(NAMESPACE_NAME_LABEL.to_string())
            .or_insert_with(|| name.to_string());
        Namespace {
            name: name.to_string(),
            labels,
        }
    }
}

/// A Service's `targetPort`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum TargetPort {
    /// A port number on the pod.
    Number(u16),
    /// A named container port.
    Name(String),
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    /// Port name (required when there are several).
    pub name: Option<String>,
    /// Service (VIP) port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Pod port the traffic is sent to (defaults to `port`).
    pub target_port: TargetPort,
    /// NodePort, for NodePort/LoadBalancer services.
    pub node_port: Option<u16>,
}

/// Service type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum ServiceType {
    /// Virtual IP inside the cluster.
    #[default]
    ClusterIP,
    /// ClusterIP plus a port on every node.
    NodePort,
    /// NodePort plus an external load balancer.
    LoadBalancer,
    /// A DNS CNAME, no proxying.
    ExternalName,
}

/// A Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Type.
    pub service_type: ServiceType,
    /// ClusterIPs (one per family); empty for headless services.
    pub cluster_ips: Vec<IpAddr>,
    /// `clusterIP: None`.
    pub headless: bool,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpAddr>,
    /// Pod selector; `None` for services whose endpoints are managed by hand.
    pub selector: Option<Labels>,
    /// Ports.
    pub ports: Vec<ServicePort>,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Addresses (usually one).
    pub addresses: Vec<IpAddr>,
    /// Backing pod name (from `targetRef` when it is a Pod).
    pub pod: Option<String>,
    /// Node hosting the endpoint.
    pub node: Option<String>,
    /// `conditions.ready` (absent means ready).
    pub ready: bool,
}

/// A port of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointPort {
    /// Name (matches the service port name).
    pub name: Option<String>,
    /// Port on the endpoint.
    pub port: Option<u16>,
    /// Protocol.
    pub protocol: Protocol,
}

/// A discovery.k8s.io/v1 EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointSlice {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Owning service (`kubernetes.io/service-name` label).
    pub service: Option<String>,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Ports.
    pub ports: Vec<EndpointPort>,
}

/// A Node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// InternalIP addresses.
    pub internal_ips: Vec<IpAddr>,
    /// ExternalIP addresses.
    pub external_ips: Vec<IpAddr>,
    /// `spec.podCIDRs` (falling back to `spec.podCIDR`).
    pub pod_cidrs: Vec<IpNet>,
}

/// An owner link for intermediate controllers (ReplicaSet, Job), used to walk pod → workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerLink {
    /// Kind of this object (`ReplicaSet` or `Job`, or a workload kind).
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its own controller (kind, name), e.g. ("Deployment", "web").
    pub owner: Option<(String, String)>,
}

/// Kinds of object the model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ObjectKind {
    /// v1 Namespace.
    Namespace,
    /// v1 Pod.
    Pod,
    /// v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// v1 Node.
    Node,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
    /// apps/v1 ReplicaSet, batch/v1 Job and other controllers (owner chain only).
    Owner,
}

/// One object of any supported kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterObject {
    /// Namespace.
    Namespace(Namespace),
    /// Pod.
    Pod(Box<Pod>),
    /// Service.
    Service(Box<Service>),
    /// EndpointSlice.
    EndpointSlice(Box<EndpointSlice>),
    /// Node.
    Node(Box<Node>),
    /// NetworkPolicy.
    NetworkPolicy(Box<NetworkPolicy>),
    /// Controller in an owner chain.
    Owner(OwnerLink),
}

impl ClusterObject {
    /// Kind of this object.
    pub fn kind(&self) -> ObjectKind {
        match self {
            ClusterObject::Namespace(_) => ObjectKind::Namespace,
            ClusterObject::Pod(_) => ObjectKind::Pod,
            ClusterObject::Service(_) => ObjectKind::Service,
            ClusterObject::EndpointSlice(_) => ObjectKind::EndpointSlice,
            ClusterObject::Node(_) => ObjectKind::Node,
            ClusterObject::NetworkPolicy(_) => ObjectKind::NetworkPolicy,
            ClusterObject::Owner(_) => ObjectKind::Owner,
        }
    }
}

/// A change to the cluster state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterDelta {
    /// Create or replace an object.
    Apply(ClusterObject),
    /// Delete an object (namespace is empty for cluster-scoped kinds; for `Owner`, name is
    /// `Kind/name`).
    Delete {
        /// Kind.
        kind: ObjectKind,
        /// Namespace ("" for cluster-scoped).
        namespace: String,
        /// Name.
        name: String,
    },
}

type Key = (String, String);

/// Everything podwire knows about the cluster at one moment.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Pods by (namespace, name).
    pub pods: BTreeMap<Key, Pod>,
    /// Recently deleted pods, oldest first (at most [`DEPARTED_POD_MEMORY`]).
    pub departed_pods: VecDeque<Pod>,
    /// Services by (namespace, name).
    pub services: BTreeMap<Key, Service>,
    /// EndpointSlices by (namespace, name).
    pub endpoint_slices: BTreeMap<Key, EndpointSlice>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// NetworkPolicies by (namespace, name).
    pub network_policies: BTreeMap<Key, NetworkPolicy>,
    /// Owner links by (namespace, "Kind/name").
    pub owners: BTreeMap<Key, OwnerLink>,
    /// When the snapshot was taken (ns since the epoch), if known.
    pub snapshot_time_ns: Option<TimestampNs>,
    /// Incremented by every [`ClusterState::apply`] that changed something.
    pub generation: u64,
}

impl ClusterState {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change. Returns whether anything changed.
    pub fn apply(&mut self, delta: ClusterDelta) -> bool {
        let changed = match delta {
            ClusterDelta::Apply(obj) => {
                self.apply_object(obj);
                true
            }
            ClusterDelta::Delete {
                kind,
                namespace,
                name,
            } => {
                let key = (namespace, name);
                match kind {
                    ObjectKind::Namespace => self.namespaces.remove(&key.1).is_some(),
                    ObjectKind::Pod => match self.pods.remove(&key) {
                        Some(pod) => {
                            if self.departed_pods.len() >= DEPARTED_POD_MEMORY {
                                self.departed_pods.pop_front();
                            }
                            self.departed_pods.push_back(pod);
                            true
                        }
                        None => false,
                    },
                    ObjectKind::Service => self.services.remove(&key).is_some(),
                    ObjectKind::EndpointSlice => self.endpoint_slices.remove(&key).is_some(),
                    ObjectKind::Node => self.nodes.remove(&key.1).is_some(),
                    ObjectKind::NetworkPolicy => self.network_policies.remove(&key).is_some(),
                    ObjectKind::Owner => self.owners.remove(&key).is_some(),
                }
            }
        };
        if changed {
            self.generation += 1;
        }
        changed
    }

    fn apply_object(&mut self, obj: ClusterObject) {
        match obj {
            ClusterObject::Namespace(ns) => {
                let ns = Namespace::new(&ns.name, ns.labels);
                self.namespaces.insert(ns.name.clone(), ns);
            }
            ClusterObject::Pod(pod) => {
                let mut pod = *pod;
                self.resolve_workload(&mut pod);
                self.pods
                    .insert((pod.namespace.clone(), pod.name.clone()), pod);
            }
            ClusterObject::Service(s) => {
                self.services
                    .insert((s.namespace.clone(), s.name.clone()), *s);
            }
            ClusterObject::EndpointSlice(s) => {
                self.endpoint_slices
                    .insert((s.namespace.clone(), s.name.clone()), *s);
            }
            ClusterObject::Node(n) => {
                self.nodes.insert(n.name.clone(), *n);
            }
            ClusterObject::NetworkPolicy(p) => {
                self.network_policies
                    .insert((p.namespace.clone(), p.name.clone()), *p);
            }
            ClusterObject::Owner(o) => {
                let key = (o.namespace.clone(), format!("{}/{}", o.kind, o.name));
                let namespace = o.namespace.clone();
                self.owners.insert(key, o);
                // Owner links may arrive after the pods they explain: re-resolve that namespace.
                let pods: Vec<Key> = self
                    .pods
                    .range((namespace.clone(), String::new())..)
                    .take_while(|(k, _)| k.0 == namespace)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in pods {
                    if let Some(mut pod) = self.pods.remove(&k) {
                        self.resolve_workload(&mut pod);
                        self.pods.insert(k, pod);
                    }
                }
            }
        }
    }

    /// Walks the owner chain of `pod` (ReplicaSet→Deployment, Job→CronJob) and sets its workload.
    /// Without the intermediate objects, a ReplicaSet named `<deploy>-<pod-template-hash>` is
    /// attributed to Deployment `<deploy>` (what the Deployment controller names it).
    pub fn resolve_workload(&self, pod: &mut Pod) {
        let Some((kind, name)) = pod.controller.clone() else {
            pod.workload = Workload {
                kind: WorkloadKind::Pod,
                name: pod.name.clone(),
            };
            return;
        };
        let (mut kind, mut name) = (kind, name);
        for _ in 0..4 {
            let key = (pod.namespace.clone(), format!("{kind}/{name}"));
            match self.owners.get(&key).and_then(|o| o.owner.clone()) {
                Some((k, n)) => {
                    kind = k;
                    name = n;
                }
                None => break,
            }
        }
        if kind == "ReplicaSet"
            && let Some(hash) = pod.labels.get("pod-template-hash")
            && let Some(base) = name.strip_suffix(&format!("-{hash}"))
            && !self
                .owners
                .contains_key(&(pod.namespace.clone(), format!("ReplicaSet/{name}")))
        {
            kind = "Deployment".to_string();
            name = base.to_string();
        }
        pod.workload = Workload {
            kind: WorkloadKind::from_kind(&kind),
            name,
        };
    }

    /// Labels of a namespace; a namespace missing from the state gets only its name label.
    pub fn namespace_labels(&self, ns: &str) -> Labels {
        match self.namespaces.get(ns) {
            Some(n) => n.labels.clone(),
            None => Namespace::new(ns, Labels::new()).labels,
        }
    }

    /// Looks up a pod by `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods.get(&(namespace.to_string(), name.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Conversion from k8s-openapi types.
// ---------------------------------------------------------------------------------------------

fn meta_name(meta: &ObjectMeta) -> Result<String, ConvertError> {
    meta.name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ConvertError::new("metadata.name", "missing"))
}

fn meta_ns(meta: &ObjectMeta) -> String {
    meta.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn controller_of(meta: &ObjectMeta) -> Option<(String, String)> {
    let refs = meta.owner_references.as_ref()?;
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
        .map(|r| (r.kind.clone(), r.name.clone()))
}

fn parse_ips(field: &str, raw: &[String]) -> Result<Vec<IpAddr>, ConvertError> {
    raw.iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, s)| parse_ip(&format!("{field}[{i}]"), s))
        .collect()
}

impl ClusterObject {
    /// Converts a v1 Namespace.
    pub fn from_namespace(ns: &core::Namespace) -> Result<Self, ConvertError> {
        let name = meta_name(&ns.metadata)?;
        Ok(ClusterObject::Namespace(Namespace::new(
            &name,
            ns.metadata.labels.clone().unwrap_or_default(),
        )))
    }

    /// Converts a v1 Pod.
    pub fn from_pod(p: &core::Pod) -> Result<Self, ConvertError> {
        let meta = &p.metadata;
        let name = meta_name(meta)?;
        let namespace = meta_ns(meta);
        let mut ports = Vec::new();
        let mut host_network = false;
        let mut node = None;
        let mut service_account = None;
        if let Some(spec) = &p.spec {
            host_network = spec.host_network.unwrap_or(false);
            node = spec.node_name.clone();
            service_account = spec
                .service_account_name
                .clone()
                .or_else(|| spec.service_account.clone());
            let inits = spec.init_containers.iter().flatten();
            for (ci, c) in spec.containers.iter().chain(inits).enumerate() {
                for (pi, cp) in c.ports.iter().flatten().enumerate() {
                    let f = format!("spec.containers[{ci}].ports[{pi}]");
                    ports.push(ContainerPort {
                        name: cp.name.clone().filter(|n| !n.is_empty()),
                        port: parse_port(&format!("{f}.containerPort"), cp.container_port)?,
                        protocol: parse_protocol(&format!("{f}.protocol"), cp.protocol.as_ref())?,
                    });
                }
            }
        }
        let mut ips = Vec::new();
        let mut phase = PodPhase::Pending;
        if let Some(st) = &p.status {
            if let Some(list) = &st.pod_ips {
                let raw: Vec<String> = list.iter().map(|x| x.ip.clone()).collect();
                ips = parse_ips("status.podIPs", &raw)?;
            }
            if ips.is_empty()
                && let Some(ip) = st.pod_ip.as_ref().filter(|s| !s.is_empty())
            {
                ips.push(parse_ip("status.podIP", ip)?);
            }
            phase = match st.phase.as_deref() {
                Some("Running") => PodPhase::Running,
                Some("Succeeded") => PodPhase::Succeeded,
                Some("Failed") => PodPhase::Failed,
                Some("Unknown") => PodPhase::Unknown,
                _ => PodPhase::Pending,
            };
        }
        let controller = controller_of(meta);
        Ok(ClusterObject::Pod(Box::new(Pod {
            workload: Workload {
                kind: WorkloadKind::Pod,
                name: name.clone(),
            },
            namespace,
            name,
            labels: meta.labels.clone().unwrap_or_default(),
            ips,
            node,
            host_network,
            ports,
            controller,
            service_account,
            phase,
            created_ns: time_ns(&meta.creation_timestamp),
            deleted_ns: time_ns(&meta.deletion_timestamp),
        })))
    }

    /// Converts a v1 Service.
    pub fn from_service(s: &core::Service) -> Result<Self, ConvertError> {
        let meta = &s.metadata;
        let name = meta_name(meta)?;
        let namespace = meta_ns(meta);
        let spec = s.spec.clone().unwrap_or_default();
        let service_type = match spec.type_.as_deref() {
            None | Some("ClusterIP") => ServiceType::ClusterIP,
            Some("NodePort") => ServiceType::NodePort,
            Some("LoadBalancer") => ServiceType::LoadBalancer,
            Some("ExternalName") => ServiceType::ExternalName,
            Some(other) => {
                return Err(ConvertError::new(
                    "spec.type",
                    format!("unknown service type {other:?}"),
                ));
            }
        };
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let mut cluster_ips = Vec::new();
        if !headless {
            if let Some(list) = &spec.cluster_ips {
                let list: Vec<String> = list.iter().filter(|s| *s != "None").cloned().collect();
                cluster_ips = parse_ips("spec.clusterIPs", &list)?;
            }
            if cluster_ips.is_empty()
                && let Some(ip) = spec.cluster_ip.as_ref().filter(|s| !s.is_empty())
            {
                cluster_ips.push(parse_ip("spec.clusterIP", ip)?);
            }
        }
        let external_ips = parse_ips(
            "spec.externalIPs",
            spec.external_ips.as_deref().unwrap_or(&[]),
        )?;
        let mut load_balancer_ips = Vec::new();
        if let Some(ing) = s
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
        {
            for (i, e) in ing.iter().enumerate() {
                if let Some(ip) = e.ip.as_ref().filter(|s| !s.is_empty()) {
                    load_balancer_ips.push(parse_ip(
                        &format!("status.loadBalancer.ingress[{i}].ip"),
                        ip,
                    )?);
                }
            }
        }
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().flatten().enumerate() {
            let f = format!("spec.ports[{i}]");
            let port = parse_port(&format!("{f}.port"), p.port)?;
            let target_port = match &p.target_port {
                None => TargetPort::Number(port),
                Some(IntOrString::Int(n)) => {
                    TargetPort::Number(parse_port(&format!("{f}.targetPort"), *n)?)
                }
                Some(IntOrString::String(s)) => match s.parse::<i32>() {
                    Ok(n) => TargetPort::Number(parse_port(&format!("{f}.targetPort"), n)?),
                    Err(_) => TargetPort::Name(s.clone()),
                },
            };
            ports.push(ServicePort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol: parse_protocol(&format!("{f}.protocol"), p.protocol.as_ref())?,
                target_port,
                node_port: match p.node_port {
                    Some(n) => Some(parse_port(&format!("{f}.nodePort"), n)?),
                    None => None,
                },
            });
        }
        Ok(ClusterObject::Service(Box::new(Service {
            namespace,
            name,
            service_type,
            cluster_ips,
            headless,
            external_ips,
            load_balancer_ips,
            selector: spec.selector.clone().filter(|s| !s.is_empty()),
            ports,
        })))
    }

    /// Converts a discovery.k8s.io/v1 EndpointSlice.
    pub fn from_endpoint_slice(s: &discovery::EndpointSlice) -> Result<Self, ConvertError> {
        let meta = &s.metadata;
        let name = meta_name(meta)?;
        let namespace = meta_ns(meta);
        let service = meta
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .cloned();
        let mut endpoints = Vec::new();
        if s.address_type == "FQDN" {
            // FQDN endpoints carry no IPs.
        } else {
            for (i, e) in s.endpoints.iter().enumerate() {
                let pod = e
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone());
                endpoints.push(Endpoint {
                    addresses: parse_ips(&format!("endpoints[{i}].addresses"), &e.addresses)?,
                    pod,
                    node: e.node_name.clone(),
                    ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                });
            }
        }
        let mut ports = Vec::new();
        for (i, p) in s.ports.iter().flatten().enumerate() {
            let f = format!("ports[{i}]");
            ports.push(EndpointPort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port: match p.port {
                    Some(n) => Some(parse_port(&format!("{f}.port"), n)?),
                    None => None,
                },
                protocol: parse_protocol(&format!("{f}.protocol"), p.protocol.as_ref())?,
            });
        }
        Ok(ClusterObject::EndpointSlice(Box::new(EndpointSlice {
            namespace,
            name,
            service,
            endpoints,
            ports,
        })))
    }

    /// Converts a v1 Node.
    pub fn from_node(n: &core::Node) -> Result<Self, ConvertError> {
        let name = meta_name(&n.metadata)?;
        let mut internal_ips = Vec::new();
        let mut external_ips = Vec::new();
        if let Some(addrs) = n.status.as_ref().and_then(|s| s.addresses.as_ref()) {
            for (i, a) in addrs.iter().enumerate() {
                let f = format!("status.addresses[{i}].address");
                match a.type_.as_str() {
                    "InternalIP" => internal_ips.push(parse_ip(&f, &a.address)?),
                    "ExternalIP" => external_ips.push(parse_ip(&f, &a.address)?),
                    _ => {}
                }
            }
        }
        let mut pod_cidrs = Vec::new();
        if let Some(spec) = &n.spec {
            let mut raw: Vec<String> = spec.pod_cidrs.clone().unwrap_or_default();
            if raw.is_empty()
                && let Some(c) = &spec.pod_cidr
            {
                raw.push(c.clone());
            }
            for (i, c) in raw.iter().enumerate() {
                pod_cidrs.push(c.trim().parse::<IpNet>().map_err(|_| {
                    ConvertError::new(format!("spec.podCIDRs[{i}]"), format!("not a CIDR: {c:?}"))
                })?);
            }
        }
        Ok(ClusterObject::Node(Box::new(Node {
            name,
            labels: n.metadata.labels.clone().unwrap_or_default(),
            internal_ips,
            external_ips,
            pod_cidrs,
        })))
    }

    /// Converts a networking.k8s.io/v1 NetworkPolicy.
    pub fn from_network_policy(p: &networking::NetworkPolicy) -> Result<Self, ConvertError> {
        Ok(ClusterObject::NetworkPolicy(Box::new(
            NetworkPolicy::from_k8s(p)?,
        )))
    }

    fn owner_link(kind: &str, meta: &ObjectMeta) -> Result<Self, ConvertError> {
        Ok(ClusterObject::Owner(OwnerLink {
            kind: kind.to_string(),
            namespace: meta_ns(meta),
            name: meta_name(meta)?,
            owner: controller_of(meta),
        }))
    }

    /// Converts an apps/v1 ReplicaSet into an owner link.
    pub fn from_replica_set(r: &apps::ReplicaSet) -> Result<Self, ConvertError> {
        Self::owner_link("ReplicaSet", &r.metadata)
    }

    /// Converts a batch/v1 Job into an owner link.
    pub fn from_job(j: &batch::Job) -> Result<Self, ConvertError> {
        Self::owner_link("Job", &j.metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with_controller(kind: &str, name: &str, hash: Option<&str>) -> Pod {
        let mut labels = Labels::new();
        if let Some(h) = hash {
            labels.insert("pod-template-hash".into(), h.into());
        }
        let mut p = Pod::new("shop", "p1", labels, vec![]);
        p.controller = Some((kind.into(), name.into()));
        p
    }

    #[test]
    fn owner_chain_replicaset_to_deployment_by_hash() {
        let st = ClusterState::new();
        let mut p = pod_with_controller("ReplicaSet", "web-6d4cf56db6", Some("6d4cf56db6"));
        st.resolve_workload(&mut p);
        assert_eq!(
            p.workload,
            Workload {
                kind: WorkloadKind::Deployment,
                name: "web".into()
            }
        );
    }

    #[test]
    fn owner_chain_job_to_cronjob_via_owner_link() {
        let mut st = ClusterState::new();
        st.apply(ClusterDelta::Apply(ClusterObject::Owner(OwnerLink {
            kind: "Job".into(),
            namespace: "shop".into(),
            name: "backup-2890".into(),
            owner: Some(("CronJob".into(), "backup".into())),
        })));
        st.apply(ClusterDelta::Apply(ClusterObject::Pod(Box::new(
            pod_with_controller("Job", "backup-2890", None),
        ))));
        let p = st.pod("shop", "p1").map(|p| p.workload.clone());
        assert_eq!(
            p,
            Some(Workload {
                kind: WorkloadKind::CronJob,
                name: "backup".into()
            })
        );
    }

    #[test]
    fn bare_pod_and_statefulset() {
        let st = ClusterState::new();
        let mut p = Pod::new("a", "solo", Labels::new(), vec![]);
        st.resolve_workload(&mut p);
        assert_eq!(p.workload.kind, WorkloadKind::Pod);
        let mut p = pod_with_controller("StatefulSet", "db", None);
        st.resolve_workload(&mut p);
        assert_eq!(
            p.workload,
            Workload {
                kind: WorkloadKind::StatefulSet,
                name: "db".into()
            }
        );
    }

    #[test]
    fn delete_pod_keeps_it_departed() {
        let mut st = ClusterState::new();
        let p = Pod::new("a", "p", Labels::new(), vec!["10.0.0.1".parse().unwrap()]);
        assert!(st.apply(ClusterDelta::Apply(ClusterObject::Pod(Box::new(p)))));
        assert!(st.apply(ClusterDelta::Delete {
            kind: ObjectKind::Pod,
            namespace: "a".into(),
            name: "p".into()
        }));
        assert!(st.pods.is_empty());
        assert_eq!(st.departed_pods.len(), 1);
        assert_eq!(st.generation, 2);
    }
}
