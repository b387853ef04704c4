//! Who is on each end of a flow, in the terms findings and suggestions speak: a workload
//! (`namespace/name`), a node, the API server, cluster DNS, cloud metadata, an external address.
//!
//! Pure. A [`Party`] is derived only from a [`FlowSummary`]'s addresses and enrichment; a
//! Service address is resolved to the workload of the backend the verdict was evaluated for, so
//! edges are stable across pod restarts and replicas. Every string is sanitized.

use std::net::IpAddr;

use serde::Serialize;

use crate::cluster::identity::{CLOUD_METADATA_V4, CLOUD_METADATA_V6, Identity, PodRef};
use crate::sanitize::sanitize;
use crate::summary::FlowSummary;

/// What kind of thing a party is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartyKind {
    /// A (non-host-network) pod's workload.
    Workload,
    /// A node address or a host-network pod.
    Node,
    /// The Kubernetes API server.
    ApiServer,
    /// Cluster DNS (the kube-dns Service or its pods).
    ClusterDns,
    /// 169.254.169.254 / fd00:ec2::254.
    CloudMetadata,
    /// Outside the cluster.
    External,
    /// A Service without known backends, or an address in the cluster's ranges nobody has.
    Unknown,
    /// No cluster data: only the address is known.
    Address,
}

/// One end of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Party {
    /// Sanitized display name: `shop/frontend`, `node:node-1`, `external:203.0.113.10`…
    pub display: String,
    /// Kind.
    pub kind: PartyKind,
    /// Namespace (workloads, cluster DNS pods).
    pub namespace: Option<String>,
    /// Workload name (workloads, cluster DNS pods).
    pub workload: Option<String>,
    /// Workload kind (`Deployment`…).
    pub workload_kind: Option<String>,
    /// Pod name (`namespace/name` lookup in the cluster state).
    pub pod: Option<String>,
    /// Address seen on the wire.
    pub ip: IpAddr,
    /// DNS name learnt for an external address.
    pub dns_name: Option<String>,
}

impl Party {
    fn address(ip: IpAddr, kind: PartyKind, display: String) -> Party {
        Party {
            display,
            kind,
            namespace: None,
            workload: None,
            workload_kind: None,
            pod: None,
            ip,
            dns_name: None,
        }
    }

    fn of_pod(ip: IpAddr, kind: PartyKind, pod: &PodRef) -> Party {
        Party {
            display: format!(
                "{}/{}",
                sanitize(&pod.namespace),
                sanitize(&pod.workload.name)
            ),
            kind,
            namespace: Some(pod.namespace.clone()),
            workload: Some(pod.workload.name.clone()),
            workload_kind: Some(pod.workload.kind.clone()),
            pod: Some(pod.name.clone()),
            ip,
            dns_name: None,
        }
    }

    /// True for a pod workload (cluster DNS pods included).
    pub fn is_pod(&self) -> bool {
        self.pod.is_some()
    }

    /// `namespace/workload` when a pod.
    pub fn workload_key(&self) -> Option<(String, String)> {
        Some((self.namespace.clone()?, self.workload.clone()?))
    }
}

/// True for the cloud instance metadata addresses.
pub fn is_metadata_ip(ip: IpAddr) -> bool {
    ip == CLOUD_METADATA_V4 || ip == CLOUD_METADATA_V6
}

fn from_identity(identity: &Identity, ip: IpAddr, verdict_target: Option<&str>) -> Party {
    match identity {
        Identity::Pod {
            namespace,
            name,
            workload,
            ..
        } => Party::of_pod(
            ip,
            PartyKind::Workload,
            &PodRef {
                namespace: namespace.clone(),
                name: name.clone(),
                workload: workload.clone(),
            },
        ),
        Identity::HostNetwork { node, .. } | Identity::Node { name: node, .. } => {
            Party::address(ip, PartyKind::Node, format!("node:{}", sanitize(node)))
        }
        Identity::Service {
            namespace,
            name,
            backends,
            ..
        } => {
            let chosen = verdict_target
                .and_then(|t| {
                    backends
                        .iter()
                        .find(|b| format!("{}/{}", b.namespace, b.name) == t)
                })
                .or(backends.first());
            match chosen {
                Some(b) => Party::of_pod(ip, PartyKind::Workload, b),
                None => Party::address(
                    ip,
                    PartyKind::Unknown,
                    format!("svc:{}/{}", sanitize(namespace), sanitize(name)),
                ),
            }
        }
        Identity::ApiServer { .. } => {
            Party::address(ip, PartyKind::ApiServer, "kube-apiserver".to_string())
        }
        Identity::ClusterDns { pod, .. } => match pod {
            Some(p) => Party::of_pod(ip, PartyKind::ClusterDns, p),
            None => Party::address(ip, PartyKind::ClusterDns, "cluster-dns".to_string()),
        },
        Identity::CloudMetadata { .. } => {
            Party::address(ip, PartyKind::CloudMetadata, format!("cloud-metadata:{ip}"))
        }
        Identity::External { name, .. } => {
            let mut p = Party::address(ip, PartyKind::External, format!("external:{ip}"));
            p.dns_name = name.as_deref().map(sanitize);
            p
        }
        Identity::Unknown { .. } => Party::address(ip, PartyKind::Unknown, format!("unknown:{ip}")),
    }
}

/// The initiator and responder of a flow.
pub fn parties(flow: &FlowSummary) -> (Party, Party) {
    match &flow.enrichment {
        Some(e) => (
            from_identity(&e.src_identity, flow.src.addr, None),
            from_identity(&e.dst_identity, flow.dst.addr, e.verdict_target.as_deref()),
        ),
        None => {
            let raw = |ip: IpAddr| {
                if is_metadata_ip(ip) {
                    Party::address(ip, PartyKind::CloudMetadata, format!("cloud-metadata:{ip}"))
                } else {
                    Party::address(ip, PartyKind::Address, ip.to_string())
                }
            };
            (raw(flow.src.addr), raw(flow.dst.addr))
        }
    }
}
