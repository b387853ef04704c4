//! The hand-written JSON-lines writer (`podwire::report::jsonl`) must produce exactly the bytes
//! of the serde reference (`FlowRecord`): on the demo capture with its cluster snapshot
//! (identities, verdicts, verdict targets) and on every flow of every capture in the corpus
//! (odd protocols, wire strings that need escaping, every fact shape the dissectors produce).

use std::path::Path;

use podwire::capture::{CaptureEvent, read_capture};
use podwire::engine::{Engine, EngineConfig};
use podwire::report::jsonl::{push_flow_record, serde_flow_record};

use crate::dissect_pcap as pcap;

fn compare(path: &Path, cluster: Option<&Path>) -> (usize, bool) {
    let mut engine = Engine::new(EngineConfig::default());
    if let Some(cluster) = cluster {
        let snapshot = podwire::cluster::snapshot::load_snapshot(cluster).expect("snapshot loads");
        engine.set_cluster(snapshot.into_state());
    }
    if read_capture(path, None, |event| match event {
        CaptureEvent::Interface(info) => engine.add_interface(info),
        CaptureEvent::Frame(frame) => {
            engine.ingest(&frame);
        }
        CaptureEvent::Comment(_) => {}
    })
    .is_err()
    {
        return (0, false);
    }
    engine.finish();
    let flows = engine.drain_finished();
    let mut enriched = false;
    let mut fast = Vec::new();
    for flow in &flows {
        let enrichment = engine.enrich(flow);
        enriched |= enrichment.is_some();
        fast.clear();
        push_flow_record(&mut fast, flow, enrichment.as_ref());
        let reference = serde_flow_record(flow, enrichment.as_ref());
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&reference),
            "flow {:?} of {}",
            flow.key,
            path.display()
        );
    }
    (flows.len(), enriched)
}

#[test]
fn fast_writer_matches_serde_on_demo_with_cluster() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let (flows, enriched) = compare(
        &root.join("demo.pcapng"),
        Some(&root.join("demo-cluster.yaml")),
    );
    assert!(flows > 20, "demo has its flows: {flows}");
    assert!(enriched, "the snapshot enriched the demo's flows");
}

#[test]
fn fast_writer_matches_serde_on_corpus() {
    let Some(root) = pcap::corpora() else {
        eprintln!("corpora not found: skipping (set PODWIRE_CORPORA)");
        return;
    };
    let files = pcap::captures(&root.join("pcap"));
    let total: usize = files.iter().map(|p| compare(p, None).0).sum();
    println!("{} captures, {total} flow records identical", files.len());
    assert!(total > 2_000, "the corpus has its flows: {total}");
}
