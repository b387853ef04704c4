//! Capture-file handling end to end: formats, gzip, truncation, exit codes, de-duplication.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

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

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("podwire-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    let (code, out, err) = podwire(&["flows", "--format", "jsonl", path.to_str().unwrap()]);
    assert!(code == 0 || code == 3, "exit {code}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn jsonl_records_have_the_documented_keys() {
    let records = jsonl(&common::corpus().join("tcpdump/tests/ssh.pcap"));
    assert_eq!(records.len(), 1);
    let r = &records[0];
    for key in [
        "proto",
        "src",
        "src_port",
        "dst",
        "dst_port",
        "packets_fwd",
        "bytes_fwd",
        "packets_rev",
        "bytes_rev",
        "start_ns",
        "end_ns",
        "tunnel",
        "outer",
        "tcp_state",
    ] {
        assert!(r.get(key).is_some(), "missing key {key} in {r}");
    }
    assert_eq!(r["proto"], "tcp");
    assert_eq!(r["src"], "202.108.87.165", "the SYN sender is the source");
    assert_eq!(r["dst_port"], 22);
    assert_eq!(
        (r["packets_fwd"].as_u64(), r["bytes_fwd"].as_u64()),
        (Some(30), Some(7021))
    );
    assert_eq!(
        (r["packets_rev"].as_u64(), r["bytes_rev"].as_u64()),
        (Some(24), Some(4939))
    );
    assert_eq!(r["tcp_state"], "closed");
    assert_eq!(r["tunnel"], serde_json::Value::Null);
    assert_eq!(r["tcp"]["handshake"], true);
}

#[test]
fn gzip_capture_reads_like_the_plain_file() {
    let plain = common::corpus().join("tcpdump/tests/dns_tcp.pcap");
    let gz = scratch("dns_tcp.pcap.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    encoder.finish().unwrap();
    assert_eq!(jsonl(&plain), jsonl(&gz));
}

#[test]
fn nanosecond_and_big_endian_pcaps_give_exact_timestamps() {
    let nano = jsonl(&common::corpus().join("tcpdump/tests/tcp-handshake-nano.pcap"));
    assert!(!nano.is_empty());
    assert!(
        nano.iter()
            .all(|r| r["start_ns"].as_u64().unwrap() % 1000 != 0
                || r["end_ns"].as_u64().unwrap() % 1000 != 0),
        "nanosecond digits must survive: {nano:?}"
    );
    let big_endian = jsonl(&common::corpus().join("tcpdump/tests/pptp.pcap"));
    assert!(
        big_endian.iter().any(|r| r["dst_port"] == 1723),
        "{big_endian:?}"
    );
}

#[test]
fn truncated_capture_keeps_what_was_read_and_exits_3() {
    let original = std::fs::read(common::corpus().join("tcpdump/tests/ssh.pcap")).unwrap();
    // Cut in the middle of a record, 1000 bytes before the end.
    let cut = scratch("ssh-truncated.pcap");
    std::fs::write(&cut, &original[..original.len() - 1000]).unwrap();
    let (code, out, err) = podwire(&["flows", "--format", "jsonl", cut.to_str().unwrap()]);
    assert_eq!(code, 3, "stderr: {err}");
    assert!(
        err.contains("damaged") && err.contains("byte"),
        "names the offset: {err}"
    );
    let record: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("a flow")).unwrap();
    let packets = record["packets_fwd"].as_u64().unwrap() + record["packets_rev"].as_u64().unwrap();
    assert!(packets > 40 && packets < 54, "most packets kept: {packets}");

    let ng = std::fs::read(common::corpus().join("tcpdump/tests/bgp-orf.pcapng")).unwrap();
    let cut_ng = scratch("bgp-truncated.pcapng");
    std::fs::write(&cut_ng, &ng[..ng.len() - 7]).unwrap();
    let (code, _, err) = podwire(&["stats", cut_ng.to_str().unwrap()]);
    assert_eq!(code, 3, "stderr: {err}");
}

#[test]
fn garbage_and_missing_files_are_clear_errors() {
    let garbage = scratch("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture at all").unwrap();
    let (code, _, err) = podwire(&["flows", garbage.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a pcap or pcapng"), "{err}");
    let (code, _, err) = podwire(&["flows", "/nonexistent/file.pcap"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot open"), "{err}");
    let empty = scratch("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let (code, _, err) = podwire(&["flows", empty.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn demo_capture_is_deduplicated_across_its_two_interfaces() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/demo.pcapng");
    let (flows, stats, summary) = common::analyse(&demo).expect("demo capture reads");
    assert!(summary.damage.is_none());
    assert_eq!(stats.interfaces.len(), 2);
    assert_eq!(
        stats.duplicates_removed, 61,
        "every IP packet of pwv-frontend is also on pw-br0"
    );
    // The frontend's HTTP connection: tshark counts 20 frames over both interfaces, i.e. 10 packets.
    let http = flows
        .iter()
        .find(|f| f.src().port == 41080 && f.dst().port == 8080)
        .expect("frontend → catalogue flow");
    assert_eq!(http.packets(), 17);
    assert_eq!(
        http.iface_list(),
        vec![0, 1],
        "seen on the bridge and the pod's veth"
    );
    assert!(
        flows
            .iter()
            .all(|f| f.end != podwire::flow::EndReason::Reused),
        "no spurious port reuse"
    );
}

#[test]
fn demo_command_prints_the_flow_table() {
    let (code, out, err) = podwire(&["demo"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("START"), "{out}");
    // Identities from the bundled snapshot, protocols from the dissectors, verdicts from policy.
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {out}"))
    };
    let tls = line("payment.shop.svc.cluster.lo");
    assert!(
        tls.contains("shop/frontend")
            && tls.contains("tls")
            && tls.contains("encrypted")
            && tls.contains("allowed"),
        "{tls}"
    );
    let metadata = line("cloud-metadata(169.254.169.254):80");
    assert!(
        metadata.contains("monitoring/debug-toolbox") && metadata.contains("PLAINTEXT"),
        "{metadata}"
    );
    let lateral = line("catalogue.shop.svc.cluster");
    assert!(
        out.lines().any(|l| l.contains("monitoring/debug-toolbox")
            && l.contains(":8080")
            && l.contains("DENIED")),
        "{lateral}"
    );
    assert!(line(":6379").contains("redis"));
}

/// `flows --filter` keeps exactly the flows the filter language selects, `src.`/`dst.`
/// pinned to their end; bad filters are usage errors that say where.
#[test]
fn flows_filter_keeps_the_matching_flows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = root.join("captures/demo.pcapng");
    let cluster = root.join("captures/demo-cluster.yaml");
    let (demo, cluster) = (demo.to_str().unwrap(), cluster.to_str().unwrap());
    let run = |filter: &[&str]| {
        let base = ["flows", "--format", "jsonl", demo, "--cluster", cluster];
        common::podwire_jsonl(&[&base[..], filter].concat())
    };
    let all = run(&[]);
    let ns = |r: &serde_json::Value, end: &str| r[end]["namespace"].as_str().map(str::to_string);
    let expect = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        all.iter().filter(|r| pred(r)).cloned().collect::<Vec<_>>()
    };
    let from_shop_to_redis = run(&["--filter", "src.ns:shop dst.port:6379"]);
    assert!(!from_shop_to_redis.is_empty());
    assert_eq!(
        from_shop_to_redis,
        expect(&|r| ns(r, "src_identity").as_deref() == Some("shop") && r["dst_port"] == 6379)
    );
    // Either end without a prefix, only the responder with `dst.`.
    let any_shop = run(&["--filter", "ns:shop"]);
    let into_shop = run(&["--filter", "dst.ns:shop"]);
    assert_eq!(
        any_shop,
        expect(&|r| {
            ns(r, "src_identity").as_deref() == Some("shop")
                || ns(r, "dst_identity").as_deref() == Some("shop")
        })
    );
    assert_eq!(
        into_shop,
        expect(&|r| ns(r, "dst_identity").as_deref() == Some("shop"))
    );
    assert!(
        into_shop.len() < any_shop.len(),
        "some shop flows leave the namespace"
    );
    let plaintext = run(&["--filter", "enc:plaintext !app:dns"]);
    assert_eq!(
        plaintext,
        expect(&|r| r["encryption"] == "plaintext" && r["app"] != "dns")
    );
    // Usage errors: exit 2 with the offset, or a pointer to where `finding:` works.
    let (code, _, err) = podwire(&["flows", demo, "--filter", "ns:shop dst.app:tls"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("at 8") && err.contains("endpoint key"),
        "{err}"
    );
    let (code, _, err) = podwire(&["flows", demo, "--filter", "finding:any"]);
    assert_ne!(code, 0);
    assert!(err.contains("podwire findings --filter"), "{err}");
}
