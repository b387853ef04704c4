//! Findings on the demo capture: every planted behaviour produces its finding, legitimate flows
//! produce none of the attack-like kinds, ids are stable, outputs (JSON, SARIF) are well-formed,
//! and the CLI gates CI with its exit code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use podwire::cli::Tuning;
use podwire::findings::commands::{Captured, summarize_capture};
use podwire::findings::{
    Baseline, Finding, FindingKind, Inputs, RulesConfig, Severity, evaluate, sarif,
};

pub fn demo_paths() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    (root.join("demo.pcapng"), root.join("demo-cluster.yaml"))
}

pub fn tuning() -> Tuning {
    Tuning {
        max_flows: 1 << 20,
        tcp_idle: 300,
        udp_idle: 60,
        tcp_closed_idle: 5,
        no_progress: true,
        no_dissect: false,
    }
}

pub fn demo() -> Captured {
    let (pcap, cluster) = demo_paths();
    summarize_capture(&pcap, Some(&cluster), &tuning()).expect("demo capture reads")
}

fn run(c: &Captured, rules: &RulesConfig, baseline: Option<&Baseline>) -> Vec<Finding> {
    evaluate(Inputs {
        flows: &c.flows,
        cluster: c.cluster.as_ref(),
        baseline,
        rules,
    })
    .findings
}

/// Serial of the flow with this source port.
fn serial(c: &Captured, src_port: u16) -> u64 {
    c.flows
        .iter()
        .find(|f| f.src.port == src_port)
        .map(|f| f.serial)
        .unwrap_or_else(|| panic!("no flow from port {src_port}"))
}

fn of_kind(f: &[Finding], kind: FindingKind) -> Vec<&Finding> {
    f.iter().filter(|x| x.kind == kind).collect()
}

#[test]
fn every_planted_behaviour_has_its_finding() {
    let c = demo();
    let f = run(&c, &RulesConfig::default(), None);
    let http = serial(&c, 41080);
    let redis = serial(&c, 41379);
    let admin = serial(&c, 50080);
    let imds = serial(&c, 50169);
    let redis_scan_open = serial(&c, 51000 + 16);

    // Cleartext between pods: HTTP and Redis.
    let clear = of_kind(&f, FindingKind::CleartextInternal);
    assert!(
        clear
            .iter()
            .any(|x| x.flows.contains(&http) && x.evidence["app"] == "http")
    );
    assert!(
        clear
            .iter()
            .any(|x| x.flows.contains(&redis) && x.evidence["app"] == "redis")
    );

    // Redis AUTH: critical, only the redacted prefix.
    let creds = of_kind(&f, FindingKind::CleartextCredentials);
    let auth = creds
        .iter()
        .find(|x| x.evidence["credential"] == "redis_auth")
        .expect("redis AUTH finding");
    assert_eq!(auth.severity, Severity::Critical);
    assert_eq!(auth.evidence["redacted"], "cart…");
    let json = serde_json::to_string(&f).unwrap();
    assert!(!json.contains("carts-redis-pass"), "secret leaked");
    assert!(!json.contains("s3cr3t"), "secret leaked");

    // Cloud metadata, with the credential path: critical, T1552.005.
    let md = of_kind(&f, FindingKind::CloudMetadata);
    assert_eq!(md.len(), 1);
    assert!(md[0].flows.contains(&imds));
    assert_eq!(md[0].severity, Severity::Critical);
    assert_eq!(md[0].mitre, Some("T1552.005 Cloud Instance Metadata API"));

    // Scan: 20 ports on carts-redis, 19 refused.
    let scan = of_kind(&f, FindingKind::Scan);
    assert_eq!(scan.len(), 1);
    assert_eq!(scan[0].flows.len(), 20);
    assert_eq!(scan[0].evidence["refused"], "19");
    assert_eq!(scan[0].evidence["open"], "6379/tcp");
    assert_eq!(scan[0].source, "monitoring/debug-toolbox");

    // Cross-namespace lateral: debug-toolbox → catalogue and → carts-redis.
    let lateral = of_kind(&f, FindingKind::CrossNamespace);
    let dsts: BTreeSet<&str> = lateral
        .iter()
        .filter_map(|x| x.destination.as_deref())
        .collect();
    assert_eq!(dsts, BTreeSet::from(["shop/catalogue", "shop/carts-redis"]));

    // Enforcement gap: exactly the denied flows that carried data (not the node's probe).
    let gaps: BTreeSet<u64> = of_kind(&f, FindingKind::EnforcementGap)
        .iter()
        .flat_map(|x| x.flows.iter().copied())
        .collect();
    assert_eq!(gaps, BTreeSet::from([admin, redis_scan_open]));

    // Unselected workload in monitoring.
    let unsel = of_kind(&f, FindingKind::UnselectedWorkload);
    assert_eq!(unsel.len(), 1);
    assert_eq!(unsel[0].source, "monitoring/debug-toolbox");
}

/// The planted Basic credentials travel in the second request of the keep-alive connection,
/// after a 401 challenge: the HTTP dissector keeps a challenged connection open until the
/// next request is read.
#[test]
fn basic_auth_in_second_request_is_found() {
    let c = demo();
    let f = run(&c, &RulesConfig::default(), None);
    assert!(
        of_kind(&f, FindingKind::CleartextCredentials)
            .iter()
            .any(|x| x.evidence["credential"] == "http_basic")
    );
}

#[test]
fn legitimate_flows_raise_no_attack_findings() {
    let c = demo();
    let f = run(&c, &RulesConfig::default(), None);
    let legit: BTreeSet<u64> = [40053, 41080, 41379, 41443, 50053]
        .iter()
        .map(|p| serial(&c, *p))
        .collect();
    for x in &f {
        if matches!(
            x.kind,
            FindingKind::CrossNamespace
                | FindingKind::Scan
                | FindingKind::CloudMetadata
                | FindingKind::EnforcementGap
                | FindingKind::ForeignDns
                | FindingKind::KubeletAccess
                | FindingKind::EtcdAccess
                | FindingKind::NodeSsh
                | FindingKind::ApiServerAccess
        ) {
            let hit: Vec<&u64> = x.flows.iter().filter(|s| legit.contains(s)).collect();
            assert!(hit.is_empty(), "{} covers legitimate flows {hit:?}", x.id);
        }
    }
    // TLS to payment is encrypted: no cleartext finding names it.
    let tls = serial(&c, 41443);
    assert!(
        !f.iter()
            .any(|x| x.kind == FindingKind::CleartextInternal && x.flows.contains(&tls))
    );
}

#[test]
fn findings_are_deterministic_and_snapshotted() {
    let a = run(&demo(), &RulesConfig::default(), None);
    let b = run(&demo(), &RulesConfig::default(), None);
    let ja = serde_json::to_string_pretty(&a).unwrap();
    assert_eq!(ja, serde_json::to_string_pretty(&b).unwrap());
    for x in &a {
        assert!(x.id.starts_with(x.kind.prefix()), "{}", x.id);
    }
    insta::assert_snapshot!("demo_findings", ja);
}

#[test]
fn suppressions_and_overrides_apply() {
    let c = demo();
    let rules = RulesConfig::parse(
        "[severity]\ncleartext-internal = \"high\"\n[enabled]\nunselected-workload = false\n\
         [[suppress]]\nkind = \"scan\"\nnamespace = \"monitoring\"\nreason = \"pentest\"\n",
    )
    .unwrap();
    let report = evaluate(Inputs {
        flows: &c.flows,
        cluster: c.cluster.as_ref(),
        baseline: None,
        rules: &rules,
    });
    assert!(of_kind(&report.findings, FindingKind::Scan).is_empty());
    assert_eq!(report.suppressed.len(), 1);
    assert_eq!(report.suppressed[0].reason.as_deref(), Some("pentest"));
    assert!(of_kind(&report.findings, FindingKind::UnselectedWorkload).is_empty());
    assert!(
        of_kind(&report.findings, FindingKind::CleartextInternal)
            .iter()
            .all(|x| x.severity == Severity::High)
    );
}

#[test]
fn baseline_diff() {
    let c = demo();
    let base = Baseline::from_flows(&c.flows);
    let again = Baseline::parse(&base.to_json()).unwrap();
    assert_eq!(base, again);
    let none = run(&c, &RulesConfig::default(), Some(&base));
    assert!(of_kind(&none, FindingKind::NewEdge).is_empty());
    let mut partial = base.clone();
    partial
        .edges
        .retain(|e| e.src != "monitoring/debug-toolbox");
    let new = run(&c, &RulesConfig::default(), Some(&partial));
    let news = of_kind(&new, FindingKind::NewEdge);
    assert!(!news.is_empty());
    assert!(news.iter().all(|x| x.source == "monitoring/debug-toolbox"));
}

#[test]
fn sarif_is_valid_2_1_0() {
    let c = demo();
    let report = evaluate(Inputs {
        flows: &c.flows,
        cluster: c.cluster.as_ref(),
        baseline: None,
        rules: &RulesConfig::default(),
    });
    let text = sarif::to_sarif(&report, "demo.pcapng");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), FindingKind::ALL.len());
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), report.findings.len());
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(r["message"]["text"].as_str().unwrap().len() > 5);
        assert!(r["partialFingerprints"]["podwireFindingId/v1"].is_string());
    }
}

fn podwire(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_podwire"))
        .args(args)
        .output()
        .expect("run podwire");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_gates_ci_and_prints_defaults() {
    let (pcap, cluster) = demo_paths();
    let (p, c) = (pcap.to_str().unwrap(), cluster.to_str().unwrap());
    let (code, out, _) = podwire(&["findings", p, "--cluster", c, "--fail-on", "high"]);
    assert_eq!(code, 5, "{out}");
    let (code, out, _) = podwire(&["findings", p, "--cluster", c, "--format", "sarif"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let (code, out, _) = podwire(&["findings", p, "--cluster", c, "--format", "jsonl"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
    let (code, out, _) = podwire(&["rules", "--print-defaults"]);
    assert_eq!(code, 0);
    assert_eq!(RulesConfig::parse(&out).unwrap(), RulesConfig::default());

    let dir = std::env::temp_dir().join(format!("podwire-findings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("base.json");
    let (code, _, err) = podwire(&[
        "baseline",
        "save",
        p,
        "--cluster",
        c,
        "-o",
        base.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = podwire(&[
        "findings",
        p,
        "--cluster",
        c,
        "--baseline",
        base.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert_eq!(code, 0);
    assert!(!out.contains("\"new-edge\""));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[scan]\nwindow = 3\n").unwrap();
    let (code, _, err) = podwire(&["findings", p, "--rules", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown field"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `findings --filter` keeps the findings naming at least one matching flow (the TUI's
/// Findings view), and `--fail-on` looks at those only.
#[test]
fn cli_filter_keeps_findings_of_matching_flows() {
    let (pcap, cluster) = demo_paths();
    let (p, c) = (pcap.to_str().unwrap(), cluster.to_str().unwrap());
    let findings = |extra: &[&str]| {
        let base = ["findings", p, "--cluster", c, "--format", "jsonl"];
        crate::common::podwire_jsonl(&[&base[..], extra].concat())
    };
    let captured = demo();
    let all = findings(&[]);
    for text in ["src.ns:shop", "dst.ns:monitoring", "app:redis", "!ns:shop"] {
        let filter = podwire::tui::filter::Filter::new(text).unwrap();
        let kept: BTreeSet<u64> = captured
            .flows
            .iter()
            .filter(|f| filter.matches(f))
            .map(|f| f.serial)
            .collect();
        let expected: Vec<_> = all
            .iter()
            .filter(|f| {
                f["flows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| kept.contains(&s.as_u64().unwrap()))
            })
            .cloned()
            .collect();
        assert_eq!(findings(&["--filter", text]), expected, "{text}");
    }
    let shop = findings(&["--filter", "src.ns:shop"]);
    assert!(!shop.is_empty() && shop.len() < all.len());
    // `finding:` terms see the report: flows named by a credential finding.
    let creds = findings(&["--filter", "finding:credentials"]);
    assert!(creds.iter().any(|f| f["kind"] == "cleartext-credentials"));
    // The gate looks at the filtered findings only.
    let (code, _, _) = podwire(&["findings", p, "--cluster", c, "--fail-on", "critical"]);
    assert_eq!(code, 5);
    let quiet = "dst.ns:shop !finding:credentials";
    let (code, out, err) = podwire(&[
        "findings",
        p,
        "--cluster",
        c,
        "--fail-on",
        "critical",
        "--filter",
        quiet,
    ]);
    assert_eq!(code, 0, "{out}{err}");
}
