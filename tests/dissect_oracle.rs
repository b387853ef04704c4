//! Corpus agreement: podwire's dissection vs the tshark oracle (and Suricata's expectations).
//!
//! For every capture of the shared corpora that has a tshark oracle file, flows are rebuilt
//! by the small helper in `dissect_pcap.rs` (no tunnels, no IP reassembly) and compared:
//!
//! * SNI: for every TCP flow where tshark saw a ClientHello SNI, ours must be one of tshark's.
//! * App: for every flow whose tshark `app` is a protocol podwire dissects, ours must match
//!   (after a STARTTLS-style upgrade tshark says "tls"; we say the base protocol with an
//!   accepted upgrade, which counts as "tls" here).
//!
//! Known, explained disagreements are listed in `app_exception` below; the assertion is on
//! agreement ratios so the report stays informative while the corpus grows.

#[path = "dissect_pcap.rs"]
mod pcap;

use std::collections::BTreeMap;

use podwire::dissect::{App, AppInfo};
use serde_json::Value;

/// tshark app names podwire also produces.
const COMPARABLE: &[&str] = &[
    "tls", "http", "http2", "grpc", "dns", "ssh", "postgres", "mysql", "redis", "mongodb",
    "kafka", "amqp", "mqtt", "memcached", "ldap", "smtp", "imap", "pop3", "ftp", "telnet",
    "quic", "dtls", "wireguard", "ike",
];

fn our_app(info: &AppInfo) -> &'static str {
    if info.upgrade.as_ref().is_some_and(|u| u.accepted) {
        return "tls";
    }
    info.app.name()
}

#[derive(Default, Debug)]
struct Score {
    agree: u32,
    disagree: u32,
}

impl Score {
    fn ratio(&self) -> f64 {
        let n = self.agree + self.disagree;
        if n == 0 { 1.0 } else { self.agree as f64 / n as f64 }
    }
}

#[test]
fn oracle_agreement() {
    let Some(root) = pcap::corpora() else {
        eprintln!("corpora not found: skipping (set PODWIRE_CORPORA)");
        return;
    };
    let oracle_root = root.join("oracle/tshark");
    let mut sni = Score::default();
    let mut app = Score::default();
    let mut per_app: BTreeMap<String, Score> = BTreeMap::new();
    let mut sni_misses = Vec::new();
    let mut app_misses = Vec::new();
    let mut files = 0;
    for path in pcap::captures(&root.join("pcap")) {
        let rel = path.strip_prefix(root.join("pcap")).unwrap_or(&path);
        let oracle_path = oracle_root.join(format!("{}.json", rel.display()));
        let Ok(text) = std::fs::read_to_string(&oracle_path) else {
            continue;
        };
        let Ok(oracle) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        // Fragmented captures: tshark reassembles, our helper skips fragments.
        if oracle["has_fragments"].as_bool() == Some(true) {
            continue;
        }
        files += 1;
        let (flows, _budget) = pcap::dissect_file(&path);
        let Some(oflows) = oracle["flows"].as_array() else {
            continue;
        };
        for of in oflows {
            if of["tunnel_outer"].as_bool() == Some(true) {
                continue;
            }
            let key = (
                if of["proto"] == "tcp" { "tcp" } else { "udp" },
                of["a"].as_str().unwrap_or("").to_string(),
                of["a_port"].as_u64().unwrap_or(0) as u16,
                of["b"].as_str().unwrap_or("").to_string(),
                of["b_port"].as_u64().unwrap_or(0) as u16,
            );
            let Some(ours) = flows.get(&key) else {
                continue; // tunnelled / not decoded by the helper
            };
            let info = ours.dissector.result();
            // SNI.
            let osni: Vec<&str> = of["sni"]
                .as_array()
                .map(|v| v.iter().filter_map(|s| s.as_str()).collect())
                .unwrap_or_default();
            if !osni.is_empty() && key.0 == "tcp" {
                let got = info
                    .sni
                    .as_deref()
                    .or_else(|| info.upgrade.as_ref().and(info.sni.as_deref()));
                if got.is_some_and(|g| osni.contains(&g)) {
                    sni.agree += 1;
                } else {
                    sni.disagree += 1;
                    sni_misses.push(format!("{} {:?}: tshark {:?}, ours {:?}", rel.display(), key, osni, got));
                }
            }
            // App.
            let Some(oapp) = of["app"].as_str() else {
                continue;
            };
            if !COMPARABLE.contains(&oapp) {
                continue;
            }
            let mine = our_app(info);
            let ok = mine == oapp || app_exception(oapp, info);
            let s = per_app.entry(oapp.to_string()).or_default();
            if ok {
                app.agree += 1;
                s.agree += 1;
            } else {
                app.disagree += 1;
                s.disagree += 1;
                app_misses.push(format!(
                    "{} {:?}: tshark {oapp}, ours {mine} (pkts {}, hint {:?}, port_hint {:?})",
                    rel.display(),
                    key,
                    ours.packets,
                    info.hint,
                    info.port_hint.map(App::name)
                ));
            }
        }
    }
    println!("files compared: {files}");
    println!(
        "SNI agreement: {}/{} ({:.1}%)",
        sni.agree,
        sni.agree + sni.disagree,
        sni.ratio() * 100.0
    );
    println!(
        "app agreement: {}/{} ({:.1}%)",
        app.agree,
        app.agree + app.disagree,
        app.ratio() * 100.0
    );
    for (a, s) in &per_app {
        println!("  {a:10} {}/{}", s.agree, s.agree + s.disagree);
    }
    for m in sni_misses.iter().take(40) {
        println!("SNI miss: {m}");
    }
    for m in app_misses.iter().take(200) {
        println!("app miss: {m}");
    }
    assert!(sni.ratio() >= 0.95, "SNI agreement too low: {sni:?}");
    assert!(app.ratio() >= 0.85, "app agreement too low: {app:?}");
}

/// Disagreements that are tshark's labelling choice, not a podwire error.
fn app_exception(oapp: &str, info: &AppInfo) -> bool {
    match (oapp, info.app) {
        // tshark labels gRPC streams "grpc" only with its heuristics on; h2c without gRPC
        // markers we call http2.
        ("grpc", App::Http2) | ("http2", App::Grpc) => true,
        _ => false,
    }
}
