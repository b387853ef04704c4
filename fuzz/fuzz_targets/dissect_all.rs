//! Fuzzes every dissector through the public per-flow API: the input is split into packets
//! (TCP with arbitrary, possibly overlapping/wrapping sequence numbers, UDP datagrams and raw
//! ESP), fed in both directions, and the result is serialized. Checks: no panic, the budget
//! returns to zero when the flow is dropped, and no more than the cap is ever buffered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwire::dissect::{Budget, Dir, FlowDissector, Limits, Segment, Transport};

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let transport = match data[0] % 4 {
        0 | 1 => Transport::Tcp,
        2 => Transport::Udp,
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
        d.on_packet(dir, Segment { seq: s, syn, fin, payload }, t, &mut budget);
        if syn {
            seq[i] = seq[i].wrapping_add(1);
        }
        seq[i] = seq[i].wrapping_add(n as u32);
        t += 1;
        assert!(budget.in_use() <= 4096);
    }
    let _ = serde_json::to_string(d.result());
    drop(d);
    assert_eq!(budget.in_use(), 0);
});
