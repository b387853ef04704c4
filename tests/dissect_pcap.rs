//! Test helper (not a test by itself): a deliberately small pcap/pcapng → per-flow dissection
//! driver, used until the real decode + flow table pipeline is wired to `dissect`.
//! Handles Ethernet (with VLAN), Linux SLL, raw IP and BSD loopback; no tunnels, no IP
//! reassembly (fragments are skipped). The other engineer will switch callers to the real
//! pipeline.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_parser::{Block, PcapBlockOwned, PcapError};
use podwire::dissect::{Budget, Dir, FlowDissector, Segment, Transport};

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

/// Raw packets of one capture: (linktype, ts_ns, data).
pub fn read_packets(path: &Path) -> Vec<(i32, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(file) = std::fs::File::open(path) else {
        return out;
    };
    let Ok(mut reader) = pcap_parser::create_reader(1 << 20, file) else {
        return out;
    };
    let mut linktypes: Vec<i32> = Vec::new();
    let mut legacy_lt = 1;
    let mut ts_res_ns: u64 = 1000;
    loop {
        match reader.next() {
            Ok((off, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy_lt = h.network.0;
                        ts_res_ns = if h.is_nanosecond_precision() { 1 } else { 1000 };
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let ts = (b.ts_sec as u64)
                            .wrapping_mul(1_000_000_000)
                            .wrapping_add((b.ts_usec as u64).wrapping_mul(ts_res_ns));
                        out.push((legacy_lt, ts, b.data.to_vec()));
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => linktypes.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        linktypes.push(idb.linktype.0)
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let lt = linktypes.get(epb.if_id as usize).copied().unwrap_or(1);
                        let ts =
                            ((epb.ts_high as u64) << 32 | epb.ts_low as u64).wrapping_mul(1000);
                        let len = (epb.caplen as usize).min(epb.data.len());
                        out.push((lt, ts, epb.data[..len].to_vec()));
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let lt = linktypes.first().copied().unwrap_or(1);
                        out.push((lt, 0, spb.data.to_vec()));
                    }
                    _ => {}
                }
                reader.consume(off);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.refill().is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
        if out.len() > 200_000 {
            break;
        }
    }
    out
}

fn slice(lt: i32, data: &[u8]) -> Option<SlicedPacket<'_>> {
    match lt {
        1 => SlicedPacket::from_ethernet(data).ok(),
        113 => SlicedPacket::from_linux_sll(data).ok(),
        12 | 14 | 101 | 228 | 229 => SlicedPacket::from_ip(data).ok(),
        0 | 108 => SlicedPacket::from_ip(data.get(4..)?).ok(),
        276 => SlicedPacket::from_ether_type(
            etherparse::EtherType(u16::from_be_bytes([*data.first()?, *data.get(1)?])),
            data.get(20..)?,
        )
        .ok(),
        _ => None,
    }
}

/// Dissects every TCP/UDP flow of a capture. Returns flows keyed like the tshark oracle.
pub fn dissect_file(path: &Path) -> (BTreeMap<FlowKey, TestFlow>, Budget) {
    let mut budget = Budget::default();
    let mut flows: BTreeMap<FlowKey, TestFlow> = BTreeMap::new();
    for (lt, ts, data) in read_packets(path) {
        let Some(p) = slice(lt, &data) else { continue };
        let (src, dst, frag, ipproto) = match &p.net {
            Some(NetSlice::Ipv4(v4)) => (
                IpAddr::V4(v4.header().source_addr()),
                IpAddr::V4(v4.header().destination_addr()),
                v4.header().is_fragmenting_payload(),
                v4.payload_ip_number().0,
            ),
            Some(NetSlice::Ipv6(v6)) => (
                IpAddr::V6(v6.header().source_addr()),
                IpAddr::V6(v6.header().destination_addr()),
                v6.is_payload_fragmented(),
                v6.payload().ip_number.0,
            ),
            _ => continue,
        };
        if frag {
            continue;
        }
        let (proto, sport, dport, seq, syn, ack, fin, payload): (_, _, _, _, _, _, _, &[u8]) =
            match &p.transport {
                Some(TransportSlice::Tcp(t)) => (
                    "tcp",
                    t.source_port(),
                    t.destination_port(),
                    Some(t.sequence_number()),
                    t.syn(),
                    t.ack(),
                    t.fin(),
                    t.payload(),
                ),
                Some(TransportSlice::Udp(u)) => (
                    "udp",
                    u.source_port(),
                    u.destination_port(),
                    None,
                    false,
                    false,
                    false,
                    u.payload(),
                ),
                _ => {
                    let _ = ipproto;
                    continue;
                }
            };
        let (s, d) = ((src, sport), (dst, dport));
        let (a, b) = if s <= d { (s, d) } else { (d, s) };
        let key: FlowKey = (proto, a.0.to_string(), a.1, b.0.to_string(), b.1);
        let flow = flows.entry(key).or_insert_with(|| {
            // Initiator: the SYN (without ACK) sender, else the first sender; SYN-ACK first
            // means the responder sent it.
            let initiator_is_a = if syn && ack { s != a } else { s == a };
            let (ip, rp) = if initiator_is_a == (s == a) {
                (sport, dport)
            } else {
                (dport, sport)
            };
            TestFlow {
                proto,
                a,
                b,
                initiator_is_a,
                dissector: FlowDissector::new(
                    if proto == "tcp" {
                        Transport::Tcp
                    } else {
                        Transport::Udp
                    },
                    ip,
                    rp,
                ),
                packets: 0,
            }
        });
        flow.packets += 1;
        let dir = if (s == flow.a) == flow.initiator_is_a {
            Dir::ToResponder
        } else {
            Dir::ToInitiator
        };
        if flow.dissector.wants_more() {
            flow.dissector.on_packet(
                dir,
                Segment {
                    seq,
                    syn,
                    fin,
                    payload,
                },
                ts,
                &mut budget,
            );
        }
    }
    (flows, budget)
}

/// Every capture file under `dir` (recursively), sorted, by magic bytes.
pub fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if is_capture(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn is_capture(p: &Path) -> bool {
    use std::io::Read;
    let mut m = [0u8; 4];
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    if f.read_exact(&mut m).is_err() {
        return false;
    }
    matches!(
        m,
        [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x0a, 0x0d, 0x0d, 0x0a]
    )
}
