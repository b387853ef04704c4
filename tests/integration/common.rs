//! Helpers shared by the integration tests: paths to the shared corpora and running the engine.

use std::path::{Path, PathBuf};

use podwire::capture::{CaptureEvent, ReadSummary, read_capture};
use podwire::engine::{Engine, EngineConfig, Stats};
use podwire::flow::Flow;

/// `../shared` next to the crate (as in CI's clean clone).
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

pub fn corpus() -> PathBuf {
    shared().join("corpora/pcap")
}

/// Every regular file below `dir`, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Runs a capture through the engine and returns all flows, the stats and the read summary.
pub fn analyse(path: &Path) -> Option<(Vec<Flow>, Stats, ReadSummary)> {
    let mut engine = Engine::new(EngineConfig::default());
    let mut flows = Vec::new();
    let summary = read_capture(path, None, |event| match event {
        CaptureEvent::Interface(info) => engine.add_interface(info),
        CaptureEvent::Frame(frame) => {
            engine.ingest(&frame);
        }
        CaptureEvent::Comment(_) => {}
    })
    .ok()?;
    engine.finish();
    flows.extend(engine.drain_finished());
    Some((flows, engine.stats(), summary))
}

/// Runs the podwire binary with `args`, asserts it exits 0 and parses its JSON lines.
pub fn podwire_jsonl(args: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_podwire"))
        .args(args)
        .output()
        .expect("run podwire");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
