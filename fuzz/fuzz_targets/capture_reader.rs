//! Fuzzes the capture-file reader (pcap / pcapng) and the whole engine behind it, and checks
//! that feeding runs of frames (`Engine::ingest_run`, as `podwire flows` does) gives exactly
//! the flows and statistics of feeding them one by one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwire::capture::{CaptureEvent, EngineFeed, file::read_stream};
use podwire::engine::{Engine, EngineConfig};

/// Everything observable about a run: each finished flow, then the statistics.
fn outcome(mut engine: Engine) -> Vec<String> {
    engine.finish();
    let mut seen: Vec<String> = engine.drain_finished().iter().map(|f| format!("{f:?}")).collect();
    seen.push(format!("{:?}", engine.stats()));
    seen
}

fn config() -> EngineConfig {
    // A tiny flow table so eviction, retirement and the store's swap-remove run constantly.
    let mut config = EngineConfig::default();
    config.table.capacity = 8;
    config
}

fuzz_target!(|data: &[u8]| {
    let mut one_by_one = Engine::new(config());
    let source = Box::new(std::io::Cursor::new(data.to_vec()));
    let _ = read_stream(source, "fuzz", false, &mut |event: CaptureEvent<'_>| match event {
        CaptureEvent::Interface(info) => one_by_one.add_interface(info),
        CaptureEvent::Frame(frame) => {
            one_by_one.ingest(&frame);
        }
        CaptureEvent::Comment(_) => {}
    });

    let mut in_runs = Engine::new(config());
    let mut nothing = |_: &mut Engine, _: u64| {};
    let source = Box::new(std::io::Cursor::new(data.to_vec()));
    let _ = read_stream(
        source,
        "fuzz",
        false,
        &mut EngineFeed::new(&mut in_runs, u64::MAX, &mut nothing),
    );
    assert_eq!(outcome(one_by_one), outcome(in_runs));
});
