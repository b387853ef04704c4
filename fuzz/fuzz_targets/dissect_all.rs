//! Fuzzes every dissector through the public per-flow API: the input is split into packets
//! (TCP with arbitrary, possibly overlapping/wrapping sequence numbers, UDP datagrams and raw
//! ESP, and QUIC client Initials sealed around fuzzed frames), fed in both directions, and the
//! result is serialized. Checks: no panic, the budget returns to zero when the flow is dropped,
//! and no more than the cap is ever buffered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwire::dissect::{Budget, Dir, FlowDissector, Limits, Segment, Transport};

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    // Mode 7: QUIC. Random bytes can never forge an Initial's AEAD tag, so each packet's bytes
    // become the plaintext frames of a properly sealed client Initial (v1, v2 or draft-29,
    // DCID from the input): the frame walk, CRYPTO reassembly and ClientHello/JA4 paths run.
    let quic = data[0] % 8 == 7;
    let transport = match data[0] % 8 {
        0..=2 => Transport::Tcp,
        3 | 4 | 7 => Transport::Udp,
        _ => Transport::Other(50),
    };
    let ports = [80u16, 443, 22, 5432, 3306, 6379, 25, 21, 53, 389, 1883, 4500, 500, 9092, 11211, 31337];
    let rport = ports[(data[1] % 16) as usize];
    let mut budget = Budget::new(Limits { per_direction: 512, total: 4096, max_packets: 24 });
    let mut d = FlowDissector::new(transport, 40000, rport);
    let mut rest = &data[2..];
    let mut seq = [u32::from(data[2]) << 24, 0xffff_ff00u32];
    let mut t = 0u64;
    while rest.len() >= 2 {
        let ctl = rest[0];
        let n = (rest[1] as usize).min(rest.len() - 2);
        let payload = &rest[2..2 + n];
        rest = &rest[2 + n..];
        let dir = if ctl & 1 == 0 { Dir::ToResponder } else { Dir::ToInitiator };
        let i = (ctl & 1) as usize;
        // Occasionally jump or rewind the sequence number to create gaps and overlaps.
        if ctl & 0x30 == 0x30 {
            seq[i] = seq[i].wrapping_add(u32::from(ctl) * 7);
        } else if ctl & 0x30 == 0x20 {
            seq[i] = seq[i].wrapping_sub(u32::from(ctl));
        }
        let syn = ctl & 0x40 != 0;
        let fin = ctl & 0x80 != 0 && ctl & 0x04 != 0;
        let s = if transport == Transport::Tcp { Some(seq[i]) } else { None };
        let sealed;
        let payload = if quic {
            let version = [1u32, 0x6b33_43cf, 0xff00_001d][(ctl >> 1) as usize % 3];
            let dcid = &data[1..1 + (ctl as usize >> 3).min(data.len() - 1)];
            sealed = podwire::dissect::quic::seal_client_initial(version, dcid, u32::from(ctl), payload);
            // Sometimes cut the sealed datagram short, or send the raw bytes as they are.
            match &sealed {
                Some(p) if ctl & 0x04 != 0 => &p[..p.len() - usize::from(ctl) % 64],
                Some(p) => &p[..],
                None => payload,
            }
        } else {
            payload
        };
        d.on_packet(dir, Segment { seq: s, syn, fin, payload }, t, &mut budget);
        if syn {
            seq[i] = seq[i].wrapping_add(1);
        }
        seq[i] = seq[i].wrapping_add(n as u32);
        t += 1;
        assert!(budget.in_use() <= 4096);
        if ctl & 0x08 != 0 {
            // A live view's preview must leave the flow exactly as it was.
            let (pending, before) = (d.is_pending(), serde_json::to_string(d.result()).ok());
            let _ = d.preview(&budget);
            assert_eq!(pending, d.is_pending());
            assert_eq!(before, serde_json::to_string(d.result()).ok());
        }
    }
    // A deferred one-sided analysis runs here (as when the engine retires the flow).
    d.settle(&mut budget);
    let _ = serde_json::to_string(d.result());
    drop(d);
    assert_eq!(budget.in_use(), 0);
});
