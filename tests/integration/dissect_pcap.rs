//! Test helper (not a test by itself): runs a capture through the real pipeline (capture
//! reader → decode → de-duplication → flow table → dissectors) and hands back each TCP/UDP
//! pod flow keyed like the tshark oracle, with its dissector.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use podwire::capture::{CaptureEvent, read_capture};
use podwire::dissect::{Budget, FlowDissector};
use podwire::engine::{Engine, EngineConfig};

/// Root of the shared corpora (`$PODWIRE_CORPORA`, else `../shared/corpora`).
pub fn corpora() -> Option<PathBuf> {
    let p = std::env::var_os("PODWIRE_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"));
    p.is_dir().then_some(p)
}

/// One flow: canonical key plus the dissector.
pub struct TestFlow {
    pub proto: &'static str,
    pub a: (IpAddr, u16),
    pub b: (IpAddr, u16),
    pub initiator_is_a: bool,
    pub dissector: FlowDissector,
    pub packets: u32,
}

pub type FlowKey = (&'static str, String, u16, String, u16);

/// The pipeline's engine must outlive the flows for budget accounting: both are returned.
pub struct Dissected {
    pub flows: BTreeMap<FlowKey, TestFlow>,
    pub engine: Engine,
}

impl Dissected {
    pub fn budget(&self) -> &Budget {
        self.engine.dissect_budget()
    }
}

/// Dissects every TCP/UDP pod flow of a capture (tunnel outer flows left out). When a
/// 5-tuple was reused (a refused attempt, then a real connection), the first connection
/// whose protocol was recognised is kept, as tshark labels the whole tuple.
pub fn dissect_file(path: &Path) -> Dissected {
    let mut engine = Engine::new(EngineConfig::default());
    let _ = read_capture(path, None, |event| match event {
        CaptureEvent::Interface(info) => engine.add_interface(info),
        CaptureEvent::Frame(frame) => {
            engine.ingest(&frame);
        }
        CaptureEvent::Comment(_) => {}
    });
    engine.finish();
    let mut flows: BTreeMap<FlowKey, TestFlow> = BTreeMap::new();
    let mut finished = engine.drain_finished();
    finished.sort_by_key(|f| (f.first_ns, f.serial));
    for flow in finished {
        let proto = match flow.key.proto {
            6 => "tcp",
            17 => "udp",
            _ => continue,
        };
        if flow.key.outer {
            continue;
        }
        let (a, b) = (flow.key.a, flow.key.b);
        let key = (
            proto,
            oracle_addr(a.addr),
            a.port,
            oracle_addr(b.addr),
            b.port,
        );
        let packets = flow.packets() as u32;
        match flows.get_mut(&key) {
            Some(existing) => {
                existing.packets += packets;
                let known = |d: &FlowDissector| d.result().app != podwire::dissect::App::Unknown;
                if !known(&existing.dissector) && known(&flow.app) {
                    existing.dissector = flow.app;
                    existing.initiator_is_a = flow.initiator_is_a;
                }
            }
            None => {
                flows.insert(
                    key,
                    TestFlow {
                        proto,
                        a: (a.addr, a.port),
                        b: (b.addr, b.port),
                        initiator_is_a: flow.initiator_is_a,
                        dissector: flow.app,
                        packets,
                    },
                );
            }
        }
    }
    Dissected { flows, engine }
}

/// tshark prints IPv4-mapped IPv6 addresses as `::ffff:102:304`; Rust as `::ffff:1.2.3.4`.
fn oracle_addr(addr: IpAddr) -> String {
    match addr {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            let s = v6.segments();
            format!("::ffff:{:x}:{:x}", s[6], s[7])
        }
        other => other.to_string(),
    }
}

/// True when the file starts like a pcap, pcapng or gzip file.
fn looks_like_capture(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if file.read_exact(&mut magic).is_err() {
        return false;
    }
    matches!(
        magic,
        [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x0a, 0x0d, 0x0d, 0x0a]
    ) || magic[..2] == [0x1f, 0x8b]
}

/// Every capture file below `dir`, sorted.
pub fn captures(dir: &Path) -> Vec<PathBuf> {
    crate::common::files_below(dir)
        .into_iter()
        .filter(|p| looks_like_capture(p))
        .collect()
}
