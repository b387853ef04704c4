//! Checks the NetworkPolicy engine against every case with an expected answer in
//! `../shared/corpora/netpol` (paths relative to the crate root):
//! - `ahmetb-recipes/recipes-oracle.yaml`: flows with `allowed: true|false` per recipe;
//! - `cyclonus/examples/cyclonus-output/analyze-probe.txt` (policies `networkpolicies/simple-example`,
//!   pods `examples/probe.json`): Ingress/Egress/Combined truth tables per probe port;
//! - `…/analyze-query-traffic.txt` (+ `examples/traffic.json`): "IS ALLOWED?" per traffic entry;
//! - `…/analyze-all-five.txt` (pods `probe-example.json`, traffic `traffic-example.json`): its
//!   policies are cyclonus built-ins not in the corpus, so they are reconstructed from the run's
//!   own "explained policies" table in `tests/fixtures/cyclonus-all-five-reconstructed.yaml`;
//! - the same outputs copied under `policy-assistant/cmd/policy-assistant/examples/archived/`.
//!
//! Cells marked `N`/`?` (no container serves that port, so cyclonus has no verdict) are not
//! cases. Cases that need AdminNetworkPolicy (policy-assistant walkthrough, conformance) are
//! listed as skipped with the reason.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use podwire::cluster::model::{
    ClusterDelta, ClusterObject, ClusterState, ContainerPort, Labels, Namespace, Pod, Protocol,
};
use podwire::cluster::snapshot::parse_snapshot;
use podwire::policy::eval::{EndpointRef, PolicyEngine};
use podwire::policy::types::NetworkPolicy;
use serde_json::Value;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/netpol")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn policies_from(path: &Path) -> Vec<NetworkPolicy> {
    let text = read(path);
    parse_snapshot(&text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{e}"))
        .network_policies()
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    skipped: Vec<String>,
    by_source: BTreeMap<String, usize>,
}

impl Tally {
    fn check(&mut self, source: &str, what: String, want: bool, got: bool, explain: String) {
        *self.by_source.entry(source.to_string()).or_default() += 1;
        if want == got {
            self.passed += 1;
        } else {
            self.failed.push(format!(
                "{source}: {what}: want allowed={want}, got {got} ({explain})"
            ));
        }
    }
}

fn labels_of(v: Option<&Value>) -> Labels {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Small builder for synthetic clusters.
#[derive(Default)]
struct Cluster {
    state: ClusterState,
    n: u32,
}

impl Cluster {
    fn ns(&mut self, name: &str, labels: Labels) {
        if !self.state.namespaces.contains_key(name) {
            self.state
                .apply(ClusterDelta::Apply(ClusterObject::Namespace(
                    Namespace::new(name, labels),
                )));
        }
    }
    fn pod(
        &mut self,
        ns: &str,
        name: &str,
        labels: Labels,
        ip: Option<IpAddr>,
        ports: Vec<ContainerPort>,
    ) -> (String, String) {
        self.ns(ns, Labels::new());
        self.n += 1;
        let ip = ip.unwrap_or_else(|| IpAddr::from([10, 200, (self.n >> 8) as u8, self.n as u8]));
        let mut p = Pod::new(ns, name, labels, vec![ip]);
        p.ports = ports;
        self.state
            .apply(ClusterDelta::Apply(ClusterObject::Pod(Box::new(p))));
        (ns.to_string(), name.to_string())
    }
}

fn verdict(
    state: &ClusterState,
    policies: &[NetworkPolicy],
    src: &Side,
    dst: &Side,
    port: u16,
    proto: Protocol,
) -> podwire::policy::Verdict {
    let engine = PolicyEngine::new(state, policies);
    let ep = |s: &Side| match s {
        Side::Pod(ns, name) => engine
            .endpoint_for_pod(ns, name)
            .unwrap_or_else(|| panic!("pod {ns}/{name} missing")),
        Side::Ip(ip) => EndpointRef::Ip(*ip),
    };
    engine.verdict_uncached(ep(src), ep(dst), port, proto)
}

enum Side {
    Pod(String, String),
    Ip(IpAddr),
}

// ------------------------------------------------------------------------------------------
// ahmetb recipes
// ------------------------------------------------------------------------------------------

fn ahmetb(t: &mut Tally) {
    let dir = corpus().join("ahmetb-recipes");
    let oracle: Value =
        serde_yaml::from_str(&read(&dir.join("recipes-oracle.yaml"))).expect("oracle yaml");
    let cluster = &oracle["cluster"];
    let ports_of = |v: &Value| -> Vec<ContainerPort> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|p| ContainerPort {
                name: p["name"].as_str().map(str::to_string),
                port: p["port"].as_u64().expect("port") as u16,
                protocol: p["protocol"]
                    .as_str()
                    .unwrap_or("TCP")
                    .parse()
                    .expect("protocol"),
            })
            .collect()
    };
    let cases = oracle["cases"].as_array().expect("cases");
    for case in cases {
        let recipe = case["recipe"].as_str().expect("recipe");
        // Variants pick one YAML document of the recipe's policy file.
        let mut runs: Vec<(Vec<NetworkPolicy>, &Value)> = Vec::new();
        if let Some(variants) = case["variants"].as_array() {
            let all = policies_from(&dir.join(format!("{recipe}.policy.yaml")));
            for v in variants {
                let i = v["policy_doc_index"].as_u64().expect("policy_doc_index") as usize;
                runs.push((vec![all[i].clone()], &v["flows"]));
            }
        } else {
            let mut pols =
                policies_from(&dir.join(case["policy_file"].as_str().expect("policy_file")));
            for extra in case["extra_policies"].as_array().into_iter().flatten() {
                pols.extend(policies_from(&dir.join(extra.as_str().expect("extra"))));
            }
            runs.push((pols, &case["flows"]));
        }
        for (pols, flows) in runs {
            for (fi, flow) in flows.as_array().expect("flows").iter().enumerate() {
                let mut c = Cluster::default();
                for (ns, l) in cluster["namespaces"].as_object().expect("namespaces") {
                    c.ns(ns, labels_of(Some(l)));
                }
                let mut dns = None;
                for p in cluster["pods"].as_array().into_iter().flatten() {
                    let ns = p["ns"].as_str().expect("ns");
                    let labels = labels_of(p.get("labels"));
                    let key = c.pod(
                        ns,
                        p["name"].as_str().expect("name"),
                        labels.clone(),
                        None,
                        ports_of(&p["ports"]),
                    );
                    dns = Some((ns.to_string(), labels, key));
                }
                let mut side = |v: &Value, role: &str| -> Side {
                    if let Some(ip) = v["external"].as_str() {
                        return Side::Ip(ip.parse().expect("external ip"));
                    }
                    let ns = v["ns"].as_str().expect("ns");
                    let labels = labels_of(v.get("labels"));
                    if let Some((dns_ns, dns_labels, key)) = &dns
                        && dns_ns == ns
                        && *dns_labels == labels
                    {
                        return Side::Pod(key.0.clone(), key.1.clone());
                    }
                    let mut ports = Vec::new();
                    let tp = &case["target_pod"];
                    if tp["ns"].as_str() == Some(ns) && labels_of(tp.get("labels")) == labels {
                        ports = ports_of(&tp["ports"]);
                    }
                    let (a, b) = c.pod(ns, role, labels, None, ports);
                    Side::Pod(a, b)
                };
                let src = side(&flow["from"], "src");
                let dst = side(&flow["to"], "dst");
                let port = flow["dport"].as_u64().expect("dport") as u16;
                let proto: Protocol = flow["proto"]
                    .as_str()
                    .unwrap_or("TCP")
                    .parse()
                    .expect("proto");
                let want = flow["allowed"].as_bool().expect("allowed");
                let v = verdict(&c.state, &pols, &src, &dst, port, proto);
                t.check(
                    "ahmetb-recipes",
                    format!("{recipe} flow #{fi}"),
                    want,
                    v.allowed,
                    v.to_string(),
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// cyclonus / policy-assistant probe tables and traffic queries
// ------------------------------------------------------------------------------------------

struct ProbeCluster {
    state: ClusterState,
    ns_labels: BTreeMap<String, Labels>,
}

fn probe_cluster(probe: &Value) -> ProbeCluster {
    let mut c = Cluster::default();
    let mut ns_labels = BTreeMap::new();
    for (ns, l) in probe["Resources"]["Namespaces"]
        .as_object()
        .expect("Namespaces")
    {
        c.ns(ns, labels_of(Some(l)));
        ns_labels.insert(ns.clone(), labels_of(Some(l)));
    }
    for p in probe["Resources"]["Pods"].as_array().expect("Pods") {
        let ports = p["Containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|ct| ContainerPort {
                name: ct["PortName"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                port: ct["Port"].as_u64().expect("Port") as u16,
                protocol: ct["Protocol"]
                    .as_str()
                    .unwrap_or("tcp")
                    .parse()
                    .expect("Protocol"),
            })
            .collect();
        c.pod(
            p["Namespace"].as_str().expect("Namespace"),
            p["Name"].as_str().expect("Name"),
            labels_of(p.get("Labels")),
            p["IP"].as_str().and_then(|s| s.parse().ok()),
            ports,
        );
    }
    ProbeCluster {
        state: c.state,
        ns_labels,
    }
}

struct Table {
    kind: String,
    cols: Vec<String>,
    rows: Vec<(String, Vec<String>)>,
}

/// Parses the cyclonus probe tables after the `probe:` line.
fn probe_tables(text: &str) -> Vec<Table> {
    let mut tables: Vec<Table> = Vec::new();
    let mut started = false;
    for line in text.lines() {
        let l = line.trim();
        if l == "probe:" {
            started = true;
            continue;
        }
        if !started {
            continue;
        }
        if let Some(kind) = l
            .strip_suffix(':')
            .filter(|k| ["Ingress", "Egress", "Combined"].contains(k))
        {
            tables.push(Table {
                kind: kind.to_string(),
                cols: Vec::new(),
                rows: Vec::new(),
            });
            continue;
        }
        if !l.starts_with('|') {
            continue;
        }
        let Some(t) = tables.last_mut() else { continue };
        let cells: Vec<String> = l
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if t.cols.is_empty() {
            t.cols = cells
                .into_iter()
                .skip(1)
                .map(|c| c.to_lowercase())
                .collect();
        } else if let Some((head, rest)) = cells.split_first() {
            t.rows.push((head.clone(), rest.to_vec()));
        }
    }
    tables
}

fn split_pod(s: &str) -> (String, String) {
    let (a, b) = s.split_once('/').expect("ns/pod");
    (a.to_string(), b.to_string())
}

fn probe_cases(
    t: &mut Tally,
    source: &str,
    probe: &Value,
    policies: &[NetworkPolicy],
    output: &str,
) {
    let pc = probe_cluster(probe);
    let probes = probe["Probes"].as_array().expect("Probes");
    let tables = probe_tables(output);
    assert!(
        tables.len() >= 3 && tables.len().is_multiple_of(3),
        "{source}: unexpected table layout"
    );
    let mut no_verdict = 0;
    let engine = PolicyEngine::new(&pc.state, policies);
    for (i, table) in tables.iter().enumerate() {
        if table.rows.is_empty() {
            continue;
        }
        let p = probes
            .get(i / 3)
            .unwrap_or_else(|| panic!("{source}: table #{i} has no probe"));
        let port = p["Port"].as_u64().expect("Port") as u16;
        let proto: Protocol = p["Protocol"]
            .as_str()
            .expect("Protocol")
            .parse()
            .expect("proto");
        for (from, cells) in &table.rows {
            for (to, cell) in table.cols.iter().zip(cells) {
                let want = match cell.as_str() {
                    "." => true,
                    "X" => false,
                    _ => {
                        no_verdict += 1;
                        continue;
                    }
                };
                let (fns, fname) = split_pod(from);
                let (tns, tname) = split_pod(to);
                let src = engine.endpoint_for_pod(&fns, &fname).expect("src pod");
                let dst = engine.endpoint_for_pod(&tns, &tname).expect("dst pod");
                let v = engine.verdict_uncached(src, dst, port, proto);
                let got = match table.kind.as_str() {
                    "Ingress" => v.ingress.allows(),
                    "Egress" => v.egress.allows(),
                    _ => v.allowed,
                };
                t.check(
                    source,
                    format!("{} {from} -> {to} {port}/{proto}", table.kind),
                    want,
                    got,
                    v.to_string(),
                );
            }
        }
    }
    println!(
        "{source}: {no_verdict} probe cells without a verdict (N/? = no container serves that port) not counted"
    );
}

fn traffic_cases(
    t: &mut Tally,
    source: &str,
    probe: &Value,
    traffic: &Value,
    policies: &[NetworkPolicy],
    output: &str,
) {
    let section = output
        .split("query traffic:")
        .nth(1)
        .map(|s| s.split("\nprobe:").next().unwrap_or(s))
        .unwrap_or(output);
    let answers: Vec<bool> = section
        .lines()
        .filter(|l| l.contains("IS ALLOWED?"))
        .map(|l| l.contains("TRUE"))
        .collect();
    let entries = traffic.as_array().expect("traffic");
    assert!(
        !answers.is_empty() && answers.len() <= entries.len(),
        "{source}: answers/entries mismatch"
    );
    let base = probe_cluster(probe);
    for (i, (entry, want)) in entries.iter().zip(answers).enumerate() {
        let mut c = Cluster {
            state: ClusterState::new(),
            n: 0,
        };
        let mut side = |v: &Value, role: &str| -> Side {
            match v.get("Internal") {
                Some(int) => {
                    let ns = int["Namespace"].as_str().expect("Namespace");
                    let nsl = int.get("NamespaceLabels").map(|l| labels_of(Some(l)));
                    c.ns(
                        ns,
                        nsl.or_else(|| base.ns_labels.get(ns).cloned())
                            .unwrap_or_default(),
                    );
                    let ip = v["IP"].as_str().and_then(|s| s.parse().ok());
                    let (a, b) = c.pod(ns, role, labels_of(int.get("PodLabels")), ip, Vec::new());
                    Side::Pod(a, b)
                }
                None => Side::Ip(v["IP"].as_str().expect("IP").parse().expect("ip")),
            }
        };
        let src = side(&entry["Source"], "src");
        let dst = side(&entry["Destination"], "dst");
        let port = entry["ResolvedPort"].as_u64().expect("ResolvedPort") as u16;
        let proto: Protocol = entry["Protocol"]
            .as_str()
            .expect("Protocol")
            .parse()
            .expect("proto");
        let v = verdict(&c.state, policies, &src, &dst, port, proto);
        t.check(
            source,
            format!("traffic #{i}"),
            want,
            v.allowed,
            v.to_string(),
        );
    }
}

fn cyclonus_like(t: &mut Tally, label: &str, examples: &Path, outputs: &Path) {
    let simple = corpus().join("cyclonus/networkpolicies/simple-example");
    let mut simple_pols = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&simple)
        .expect("simple-example")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for f in files {
        simple_pols.extend(policies_from(&f));
    }
    let json = |name: &str| -> Value {
        serde_json::from_str(&read(&examples.join(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let probe = json("probe.json");
    probe_cases(
        t,
        &format!("{label} analyze-probe"),
        &probe,
        &simple_pols,
        &read(&outputs.join("analyze-probe.txt")),
    );
    traffic_cases(
        t,
        &format!("{label} analyze-query-traffic"),
        &probe,
        &json("traffic.json"),
        &simple_pols,
        &read(&outputs.join("analyze-query-traffic.txt")),
    );
    let five = read(&outputs.join("analyze-all-five.txt"));
    let five_pols = policies_from(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cyclonus-all-five-reconstructed.yaml"),
    );
    let probe_ex = json("probe-example.json");
    probe_cases(
        t,
        &format!("{label} analyze-all-five probe"),
        &probe_ex,
        &five_pols,
        &five,
    );
    traffic_cases(
        t,
        &format!("{label} analyze-all-five traffic"),
        &probe_ex,
        &json("traffic-example.json"),
        &five_pols,
        &five,
    );
}

#[test]
fn netpol_corpus_verdicts() {
    let mut t = Tally::default();
    ahmetb(&mut t);
    let c = corpus().join("cyclonus/examples");
    cyclonus_like(&mut t, "cyclonus", &c, &c.join("cyclonus-output"));
    let pa = corpus().join("policy-assistant/cmd/policy-assistant/examples");
    cyclonus_like(
        &mut t,
        "policy-assistant",
        &pa,
        &pa.join("archived/cyclonus-output"),
    );

    t.skipped.push(
        "policy-assistant demos/walkthrough/README.md: 3 traffic verdicts decided by AdminNetworkPolicy / \
         BaselineAdminNetworkPolicy tiers (ANP is out of scope: podwire evaluates networking.k8s.io/v1 only)"
            .into(),
    );
    t.skipped.push(
        "policy-assistant conformance/base/**: ANP/BANP conformance manifests; their expected results live \
         in Go test code that is not in the corpus (no truth table to check)"
            .into(),
    );
    t.skipped.push(
        "policy-assistant examples/traffic.json entries #4-#9 (Workload-based): no expected answer in any output file"
            .into(),
    );

    for (src, n) in &t.by_source {
        println!("{n:5} cases  {src}");
    }
    println!(
        "netpol corpus: {} checked, {} passed, {} failed; skipped sources:",
        t.passed + t.failed.len(),
        t.passed,
        t.failed.len()
    );
    for s in &t.skipped {
        println!("  skipped: {s}");
    }
    for f in &t.failed {
        println!("FAIL {f}");
    }
    assert!(
        t.failed.is_empty(),
        "{} corpus cases failed",
        t.failed.len()
    );
    assert!(
        t.passed >= 1000,
        "suspiciously few corpus cases: {}",
        t.passed
    );
}
