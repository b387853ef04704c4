//! Fuzzes the capture-file reader (pcap / pcapng) and the whole engine behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwire::capture::{CaptureEvent, file::read_stream};
use podwire::engine::{Engine, EngineConfig};

fuzz_target!(|data: &[u8]| {
    // A tiny flow table so eviction, retirement and the store's swap-remove run constantly.
    let mut config = EngineConfig::default();
    config.table.capacity = 8;
    let mut engine = Engine::new(config);
    let source = Box::new(std::io::Cursor::new(data.to_vec()));
    let _ = read_stream(source, "fuzz", false, &mut |event| match event {
        CaptureEvent::Interface(info) => engine.add_interface(info),
        CaptureEvent::Frame(frame) => {
            engine.ingest(&frame);
        }
        CaptureEvent::Comment(_) => {}
    });
    engine.finish();
    let _ = engine.drain_finished();
});
