//! `podwire flows` feeds pcap files to the engine in runs of frames (`EngineFeed` →
//! `Engine::ingest_run`, which works ahead on later frames). On every corpus capture, that
//! must give byte-identical flow records (drained at the same points) and statistics as
//! feeding the frames one by one.

use std::path::Path;

use podwire::capture::{CaptureEvent, EngineFeed, read_capture, read_capture_into};
use podwire::engine::{Engine, EngineConfig};
use podwire::report::jsonl::serde_flow_record;

use crate::dissect_pcap as pcap;

/// Every record in output order (drained every 64 frames, as the CLI drains every 4,096,
/// to exercise draining between runs), then the statistics.
fn records(engine: &mut Engine, out: &mut Vec<String>) {
    let mut batch = Vec::new();
    engine.take_finished(&mut batch);
    for flow in &batch {
        let record = serde_flow_record(flow, engine.enrich(flow).as_ref());
        out.push(String::from_utf8_lossy(&record).into_owned());
    }
}

fn one_by_one(path: &Path) -> Option<Vec<String>> {
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    let mut frames = 0u64;
    let summary = read_capture(path, None, |event| match event {
        CaptureEvent::Interface(info) => engine.add_interface(info),
        CaptureEvent::Frame(frame) => {
            engine.ingest(&frame);
            frames += 1;
            if frames.is_multiple_of(64) {
                records(&mut engine, &mut out);
            }
        }
        CaptureEvent::Comment(_) => {}
    })
    .ok()?;
    engine.finish();
    records(&mut engine, &mut out);
    out.push(format!("{:?} {:?}", engine.stats(), summary));
    Some(out)
}

fn in_runs(path: &Path) -> Option<Vec<String>> {
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    let mut drain = |engine: &mut Engine, _frames: u64| records(engine, &mut out);
    let summary = read_capture_into(
        path,
        None,
        &mut EngineFeed::new(&mut engine, 64, &mut drain),
    )
    .ok()?;
    engine.finish();
    records(&mut engine, &mut out);
    out.push(format!("{:?} {:?}", engine.stats(), summary));
    Some(out)
}

#[test]
fn runs_of_frames_give_the_same_records_as_single_frames_on_the_corpus() {
    let Some(root) = pcap::corpora() else {
        eprintln!("corpora not found: skipping (set PODWIRE_CORPORA)");
        return;
    };
    let mut compared = 0;
    let mut records_compared = 0;
    for path in pcap::captures(&root.join("pcap")) {
        let (Some(expected), Some(got)) = (one_by_one(&path), in_runs(&path)) else {
            continue;
        };
        assert_eq!(got, expected, "{}", path.display());
        compared += 1;
        records_compared += expected.len() - 1;
    }
    println!("{compared} captures, {records_compared} flow records identical in runs");
    assert!(compared > 500, "the corpus was read: {compared}");
}

#[test]
fn runs_of_frames_give_the_same_records_on_the_demo() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/demo.pcapng");
    let expected = one_by_one(&demo).expect("demo reads");
    assert!(expected.len() > 20);
    assert_eq!(in_runs(&demo), Some(expected));
}
