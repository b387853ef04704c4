//! NetworkPolicy verdict throughput: 1 M flow lookups against 1,000 policies over 10,000 pods
//! (100 namespaces × 100 pods, 10 policies per namespace mixing default-deny, podSelector,
//! namespaceSelector, matchExpressions, named ports, endPort ranges and ipBlocks).
//!
//! Run: `cargo bench --bench policy`.

#![allow(clippy::disallowed_methods)] // benches read fixtures

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podwire::cluster::model::{
    ClusterDelta, ClusterObject, ClusterState, ContainerPort, Labels, Namespace, Pod, Protocol,
};
use podwire::cluster::snapshot::parse_snapshot;
use podwire::policy::eval::{EndpointRef, PolicyEngine};
use podwire::policy::types::NetworkPolicy;

const NAMESPACES: usize = 100;
const PODS_PER_NS: usize = 100;
const POLICIES_PER_NS: usize = 10;
const FLOWS: usize = 1_000_000;

fn lbl(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn cluster() -> ClusterState {
    let mut st = ClusterState::new();
    for n in 0..NAMESPACES {
        let ns = format!("ns{n}");
        let tier = if n % 2 == 0 { "prod" } else { "dev" };
        st.apply(ClusterDelta::Apply(ClusterObject::Namespace(
            Namespace::new(
                &ns,
                lbl(&[("env", tier.into()), ("team", format!("t{}", n % 10))]),
            ),
        )));
        for p in 0..PODS_PER_NS {
            let i = n * PODS_PER_NS + p;
            let ip: IpAddr = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)
                .parse()
                .unwrap();
            let mut pod = Pod::new(
                &ns,
                &format!("pod{p}"),
                lbl(&[
                    ("app", format!("app{}", p % 10)),
                    ("role", format!("r{}", p % 3)),
                ]),
                vec![ip],
            );
            pod.ports = vec![
                ContainerPort {
                    name: Some("http".into()),
                    port: 8080,
                    protocol: Protocol::Tcp,
                },
                ContainerPort {
                    name: Some("metrics".into()),
                    port: 9090,
                    protocol: Protocol::Tcp,
                },
            ];
            st.apply(ClusterDelta::Apply(ClusterObject::Pod(Box::new(pod))));
        }
    }
    st
}

fn policies() -> Vec<NetworkPolicy> {
    let mut yaml = String::new();
    for n in 0..NAMESPACES {
        for k in 0..POLICIES_PER_NS {
            let body = match k {
                0 => "podSelector: {}\n  policyTypes: [Ingress, Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}]\n    ports: [{port: 53, protocol: UDP}]".to_string(),
                1 => format!("podSelector: {{matchLabels: {{app: app{k}}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: app{}}}}}}}]\n    ports: [{{port: http}}]", (k + 1) % 10),
                2 => format!("podSelector: {{matchExpressions: [{{key: app, operator: In, values: [app1, app2, app3]}}]}}\n  ingress:\n  - from: [{{namespaceSelector: {{matchLabels: {{env: prod}}}}, podSelector: {{matchLabels: {{role: r{}}}}}}}]\n    ports: [{{port: 8000, endPort: 8100}}]", n % 3),
                3 => "podSelector: {matchLabels: {role: r0}}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/16]}}]".to_string(),
                4 => format!("podSelector: {{matchLabels: {{app: app4}}}}\n  egress:\n  - to: [{{namespaceSelector: {{matchLabels: {{team: t{}}}}}}}]", n % 10),
                _ => format!("podSelector: {{matchLabels: {{app: app{k}}}}}\n  ingress:\n  - from: [{{namespaceSelector: {{}}, podSelector: {{matchExpressions: [{{key: role, operator: NotIn, values: [r2]}}]}}}}]\n    ports: [{{port: metrics}}, {{port: 8080, protocol: TCP}}]"),
            };
            yaml.push_str(&format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: pol{k}, namespace: ns{n}}}\nspec:\n  {body}\n"
            ));
        }
    }
    parse_snapshot(&yaml, "bench")
        .expect("bench policies")
        .network_policies()
}

/// Deterministic flows: 1 M lookups over ~20,000 distinct (src, dst, port) keys, the way a
/// capture repeats the same conversations.
fn flows(pods: u32) -> Vec<(EndpointRef, EndpointRef, u16)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let distinct: Vec<_> = (0..20_000)
        .map(|_| {
            let s = (next() % pods as u64) as u32;
            let d = (next() % pods as u64) as u32;
            let port = [8080u16, 9090, 8050, 53, 443][(next() % 5) as usize];
            (
                EndpointRef::Pod { id: s, ip: None },
                EndpointRef::Pod { id: d, ip: None },
                port,
            )
        })
        .collect();
    (0..FLOWS)
        .map(|_| distinct[(next() % distinct.len() as u64) as usize])
        .collect()
}

fn bench(c: &mut Criterion) {
    let st = cluster();
    let pols = policies();
    assert_eq!(pols.len(), NAMESPACES * POLICIES_PER_NS);
    let engine = PolicyEngine::new(&st, &pols);
    let flows = flows(engine.pods().len() as u32);

    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.bench_function("engine_build_10k_pods_1k_policies", |b| {
        b.iter(|| black_box(PolicyEngine::new(black_box(&st), black_box(&pols))))
    });
    g.throughput(Throughput::Elements(FLOWS as u64));
    g.bench_function("1M_verdicts_cached", |b| {
        b.iter(|| {
            let mut e = engine.clone();
            let mut allowed = 0usize;
            for (s, d, p) in &flows {
                allowed += e.verdict(*s, *d, *p, Protocol::Tcp).allowed as usize;
            }
            black_box(allowed)
        })
    });
    let sample = &flows[..100_000];
    g.throughput(Throughput::Elements(sample.len() as u64));
    g.bench_function("100k_verdicts_uncached", |b| {
        b.iter(|| {
            let mut allowed = 0usize;
            for (s, d, p) in sample {
                allowed += engine.verdict_uncached(*s, *d, *p, Protocol::Tcp).allowed as usize;
            }
            black_box(allowed)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
