//! Synthetic, deterministic flow rows for tests and benchmarks of the TUI (no capture
//! needed): `n` rows spread over namespaces, workloads, applications, encryption states and
//! verdicts, with identities and verdicts filled as the engine would.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::cluster::identity::{Basis, Identity, PodRef, Provenance, ServiceVia, Via, WorkloadRef};
use crate::dissect::{App, AppInfo, CredKind, Credential, Dir, Encryption};
use crate::engine::Enrichment;
use crate::flow::{DirCounters, EndReason, Endpoint};
use crate::policy::{Direction, DirectionVerdict, RuleMatch, Verdict};
use crate::summary::FlowSummary;

fn exact() -> Provenance {
    Provenance {
        basis: Basis::ExactPodIp,
        candidates: None,
        uncertain: false,
        stale: false,
    }
}

/// An identity of kind `kind % 9` (every `Identity` variant), its names picked by `i` from
/// small pools: endpoints of different rows share names (and the search index's ids), and
/// the names overlap the synthetic rows' and differ in case (`Data`, `Cache`) for the
/// case-insensitive filter. For property tests of the filter index and the Services edges.
pub fn identity_of_kind(kind: u64, i: u64) -> Identity {
    let provenance = exact();
    let name = |pool: &[&str]| pool[(i % pool.len() as u64) as usize].to_string();
    let pod = || PodRef {
        namespace: name(&["kube-system", "shop", "Data"]),
        name: name(&["coredns-1", "web-2", "Frontend-3"]),
        workload: WorkloadRef {
            kind: "Deployment".into(),
            name: name(&["coredns", "web", "Frontend"]),
        },
    };
    match kind % 9 {
        0 => Identity::Service {
            namespace: name(&["shop", "payments", "kube-system"]),
            name: name(&["catalogue", "kube-dns", "api-gw", "Cache"]),
            via: ServiceVia::ClusterIp,
            backends: Vec::new(),
            provenance,
        },
        1 => Identity::External {
            name: (!i.is_multiple_of(3))
                .then(|| name(&["api.example.com", "shop.io", "10.244.0.1"])),
            provenance,
        },
        2 => Identity::Node {
            name: name(&["node-1", "node-2", "worker-a"]),
            provenance,
        },
        3 => Identity::HostNetwork {
            node: name(&["node-0", "node-2"]),
            pod: i.is_multiple_of(2).then(pod),
            provenance,
        },
        4 => Identity::ClusterDns {
            via: Via::Pod,
            pod: i.is_multiple_of(2).then(pod),
            provenance,
        },
        5 => Identity::ApiServer {
            via: Via::ServiceVip,
            node: i.is_multiple_of(2).then(|| name(&["node-1", "cp-0"])),
            provenance,
        },
        6 => Identity::CloudMetadata { provenance },
        7 => Identity::Unknown {
            node: i.is_multiple_of(2).then(|| name(&["node-1", "node-2"])),
            provenance,
        },
        _ if i.is_multiple_of(2) => Identity::Pod {
            namespace: name(&["shop", "data"]),
            name: name(&["db-0", "db-1"]),
            workload: WorkloadRef {
                kind: "StatefulSet".into(),
                name: "db".into(),
            },
            labels: BTreeMap::new(),
            node: Some(name(&["node-1", "node-2"])),
            provenance,
        },
        _ => flow(i)
            .enrichment
            .map_or(Identity::CloudMetadata { provenance }, |e| e.src_identity),
    }
}

fn pod(i: u64, ns: &str, workload: &str) -> Identity {
    Identity::Pod {
        namespace: ns.to_string(),
        name: format!("{workload}-{:05x}", i % 4096),
        workload: WorkloadRef {
            kind: "Deployment".into(),
            name: workload.to_string(),
        },
        labels: BTreeMap::new(),
        node: Some(format!("node-{}", i % 3)),
        provenance: exact(),
    }
}

/// The `i`-th synthetic row (deterministic).
pub fn flow(i: u64) -> FlowSummary {
    const NS: [&str; 5] = ["shop", "payments", "monitoring", "kube-system", "data"];
    const WL: [&str; 7] = [
        "frontend",
        "catalogue",
        "carts",
        "api",
        "worker",
        "db",
        "cache",
    ];
    const APPS: [(App, Encryption, u16); 6] = [
        (App::Tls, Encryption::Encrypted, 443),
        (App::Http, Encryption::Plaintext, 8080),
        (App::Dns, Encryption::Plaintext, 53),
        (App::Redis, Encryption::Plaintext, 6379),
        (App::Postgres, Encryption::Plaintext, 5432),
        (App::Unknown, Encryption::Unknown, 9000),
    ];
    let (app, encryption, port) = APPS[(i % 6) as usize];
    let src_ns = NS[(i % 5) as usize];
    let dst_ns = NS[((i / 5) % 5) as usize];
    let src_wl = WL[(i % 7) as usize];
    let dst_wl = WL[((i / 7) % 7) as usize];
    let a = IpAddr::V4(Ipv4Addr::new(
        10,
        244,
        ((i >> 8) & 0xff) as u8,
        (i & 0xff) as u8,
    ));
    let b = IpAddr::V4(Ipv4Addr::new(
        10,
        245,
        ((i >> 16) & 0xff) as u8,
        ((i >> 3) & 0xff) as u8,
    ));
    let allowed = !i.is_multiple_of(11);
    let verdict = Verdict {
        allowed,
        egress: DirectionVerdict::NotIsolated,
        ingress: if allowed {
            DirectionVerdict::Allowed {
                by: vec![RuleMatch {
                    policy: format!("{dst_ns}/allow-{dst_wl}"),
                    direction: Direction::Ingress,
                    rule: 0,
                    peer: Some(0),
                    port: Some(0),
                }],
            }
        } else {
            DirectionVerdict::Denied {
                isolated_by: vec![format!("{dst_ns}/default-deny")],
            }
        },
    };
    let mut info = AppInfo {
        app,
        encryption,
        ..AppInfo::UNKNOWN
    };
    if app == App::Tls {
        info.sni = Some(format!("{dst_wl}.{dst_ns}.svc"));
    }
    if app == App::Redis && i.is_multiple_of(13) {
        info.credentials.push(Credential {
            kind: CredKind::RedisAuth,
            dir: Dir::ToResponder,
            ts_ns: 1_700_000_000_000_000_000 + i * 1_000_000,
            redacted: "s3cr…".into(),
        });
    }
    let first = 1_700_000_000_000_000_000 + i * 1_000_000;
    FlowSummary {
        serial: i,
        proto: if app == App::Dns { 17 } else { 6 },
        src: Endpoint {
            addr: a,
            port: 30_000 + (i % 30_000) as u16,
        },
        dst: Endpoint { addr: b, port },
        fwd: DirCounters {
            packets: 3 + i % 17,
            bytes: 300 + (i * 37) % 100_000,
        },
        rev: DirCounters {
            packets: 2 + i % 13,
            bytes: 200 + (i * 91) % 1_000_000,
        },
        first_ns: first,
        last_ns: first + 5_000_000 + (i % 1000) * 1_000_000,
        tunnel: None,
        outer: false,
        tcp: None,
        interfaces: vec![0],
        end: EndReason::Idle,
        app: info,
        enrichment: Some(Box::new(Enrichment {
            src_identity: pod(i, src_ns, src_wl),
            dst_identity: pod(i / 3, dst_ns, dst_wl),
            verdict: Some(verdict),
            verdict_target: None,
        })),
    }
}

/// `n` synthetic rows, serials `0..n`.
pub fn flows(n: u64) -> Vec<FlowSummary> {
    (0..n).map(flow).collect()
}
