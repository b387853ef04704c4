//! Fuzzes the frame decoder on every link type it knows, plus the engine on the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwire::engine::{Engine, EngineConfig};
use podwire::frame::RawFrame;

const LINKS: [u32; 16] = [0, 1, 9, 12, 50, 51, 101, 104, 105, 108, 113, 127, 192, 228, 229, 276];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else { return };
    let link = LINKS[usize::from(selector) % LINKS.len()];
    let _ = podwire::decode::decode(link, frame);
    let mut engine = Engine::new(EngineConfig::default());
    engine.ingest(&RawFrame { ts_ns: 1, iface: u32::from(selector >> 7), link, orig_len: frame.len() as u32, data: frame });
    engine.ingest(&RawFrame { ts_ns: 2, iface: 0, link, orig_len: frame.len() as u32, data: frame });
});
