//! Whole-pipeline throughput on a generated Kubernetes-style capture: reader → decode →
//! flow table (→ dissectors), in packets per second on one core.
//!
//! The capture comes from `../shared/tools/pcapgen` (deterministic: same arguments, same
//! bytes); it is generated once into `target/bench-data/` and read into memory so the
//! benchmark measures podwire, not the disk.
#![allow(clippy::disallowed_methods)] // benches read and generate their input

use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podwire::capture::EngineFeed;
use podwire::capture::file::read_stream;
use podwire::engine::{Engine, EngineConfig};

const PACKETS: u64 = 200_000;

// Same allocator as the podwire binary, so the numbers compare with whole-command timings.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn capture() -> Option<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-data");
    let path: PathBuf = dir.join(format!("k8s-{PACKETS}.pcap"));
    if !path.is_file() {
        std::fs::create_dir_all(&dir).ok()?;
        let generator = root.join("../shared/tools/pcapgen/Cargo.toml");
        let status = Command::new("cargo")
            .args(["run", "--release", "--quiet", "--manifest-path"])
            .arg(&generator)
            .arg("--target-dir")
            .arg(dir.join("pcapgen-target"))
            .arg("--")
            .arg(&path)
            .arg(PACKETS.to_string())
            .arg("2000")
            .arg("1")
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
    }
    std::fs::read(&path).ok()
}

fn run(bytes: &'static [u8], config: EngineConfig) -> u64 {
    let mut engine = Engine::new(config);
    // The same feed as `podwire flows`: runs of frames, drained every 4,096 frames.
    let mut drain = |engine: &mut Engine, _frames: u64| drop(engine.drain_finished());
    let mut feed = EngineFeed::new(&mut engine, 4096, &mut drain);
    let _ = read_stream(
        // The leaked capture itself: copying it here (120 MB per iteration, plus faulting in
        // the fresh pages) was a quarter of the flows_only time, a cost no real run has.
        Box::new(std::io::Cursor::new(bytes)),
        "bench",
        false,
        &mut feed,
    );
    let frames = feed.frames();
    engine.finish();
    drop(engine.drain_finished());
    frames
}

fn pipeline(c: &mut Criterion) {
    let Some(bytes) = capture() else {
        eprintln!(
            "pipeline bench skipped: could not generate the capture with ../shared/tools/pcapgen"
        );
        return;
    };
    // Leaked once so every iteration reads the same bytes without copying them.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PACKETS));
    group.bench_function("flows_only", |b| {
        let config = EngineConfig {
            dissect_enabled: false,
            ..EngineConfig::default()
        };
        b.iter(|| run(bytes, config))
    });
    group.bench_function("flows_and_dissection", |b| {
        b.iter(|| run(bytes, EngineConfig::default()))
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
