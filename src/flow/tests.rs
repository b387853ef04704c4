use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;
use crate::decode::TcpMeta;

fn ep(last: u8, port: u16) -> Endpoint {
    Endpoint {
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
        port,
    }
}

fn tcp(flags: u8, seq: u32, ack: u32) -> Option<TcpMeta> {
    Some(TcpMeta { seq, ack, flags })
}

proptest! {
    #[test]
    fn key_is_symmetric(a in any::<[u8; 4]>(), ap in any::<u16>(), b in any::<[u8; 4]>(), bp in any::<u16>(), proto in any::<u8>()) {
        let x = Endpoint { addr: IpAddr::from(a), port: ap };
        let y = Endpoint { addr: IpAddr::from(b), port: bp };
        let (k1, d1) = FlowKey::from_packet(proto, x, y, false);
        let (k2, d2) = FlowKey::from_packet(proto, y, x, false);
        prop_assert_eq!(k1, k2);
        prop_assert!(d1 != d2 || x == y);
    }

    /// The canonical order is `Endpoint`'s derived order (address, then port) for IPv4,
    /// IPv6 and mixed pairs, so keys match tshark's endpoint order.
    #[test]
    fn key_orders_endpoints_like_their_derived_order(
        a in any::<[u8; 16]>(), ap in any::<u16>(), b in any::<[u8; 16]>(), bp in any::<u16>(),
        a_v4 in any::<bool>(), b_v4 in any::<bool>(), same_addr in any::<bool>(),
    ) {
        let addr = |bytes: [u8; 16], v4: bool| if v4 {
            IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            IpAddr::from(bytes)
        };
        let x = Endpoint { addr: addr(a, a_v4), port: ap };
        let y = Endpoint { addr: if same_addr { x.addr } else { addr(b, b_v4) }, port: bp };
        let (key, from_a) = FlowKey::from_packet(6, x, y, false);
        prop_assert_eq!((key.a, key.b), (x.min(y), x.max(y)));
        prop_assert_eq!(from_a, x <= y);
    }
}

#[test]
fn handshake_sets_initiator_state_and_rtt() {
    let mut table = FlowTable::new(FlowTableConfig::default());
    let (client, server) = (ep(2, 40000), ep(1, 80));
    let (key, from_a) = FlowKey::from_packet(6, client, server, false);
    table.packet(key, from_a, 1_000, 74, tcp(TcpMeta::SYN, 100, 0));
    table.packet(
        key,
        !from_a,
        1_500,
        74,
        tcp(TcpMeta::SYN | TcpMeta::ACK, 500, 101),
    );
    let (flow, fwd) = table.packet(key, from_a, 2_000, 66, tcp(TcpMeta::ACK, 101, 501));
    assert!(fwd);
    assert_eq!(
        flow.src(),
        client,
        "the SYN sender initiates even though it sorts second"
    );
    let tracker = flow.tcp.unwrap();
    assert_eq!(tracker.state, TcpState::Established);
    assert!(tracker.handshake && !tracker.midstream);
    assert_eq!(tracker.rtt_ns, Some(1_000));
    assert_eq!(
        (
            flow.fwd.packets,
            flow.fwd.bytes,
            flow.rev.packets,
            flow.rev.bytes
        ),
        (2, 140, 1, 74)
    );
}

#[test]
fn syn_ack_first_makes_its_receiver_the_initiator() {
    let mut table = FlowTable::new(FlowTableConfig::default());
    let (client, server) = (ep(2, 40000), ep(1, 80));
    let (key, from_a) = FlowKey::from_packet(6, server, client, false);
    let (flow, _) = table.packet(key, from_a, 1, 60, tcp(TcpMeta::SYN | TcpMeta::ACK, 1, 1));
    assert_eq!(flow.src(), client);
}

#[test]
fn midstream_and_teardown_states() {
    let mut table = FlowTable::new(FlowTableConfig::default());
    let (key, from_a) = FlowKey::from_packet(6, ep(1, 1), ep(2, 2), false);
    let (flow, _) = table.packet(key, from_a, 1, 60, tcp(TcpMeta::ACK | TcpMeta::PSH, 1, 1));
    assert!(flow.tcp.unwrap().midstream);
    assert_eq!(flow.tcp.unwrap().state, TcpState::Established);
    table.packet(key, from_a, 2, 60, tcp(TcpMeta::FIN | TcpMeta::ACK, 2, 1));
    assert_eq!(
        table.get_mut(&key).unwrap().tcp.unwrap().state,
        TcpState::Closing
    );
    table.packet(key, !from_a, 3, 60, tcp(TcpMeta::FIN | TcpMeta::ACK, 1, 3));
    assert_eq!(
        table.get_mut(&key).unwrap().tcp.unwrap().state,
        TcpState::Closed
    );
}

#[test]
fn new_syn_after_close_starts_a_new_flow() {
    let mut table = FlowTable::new(FlowTableConfig::default());
    let (key, from_a) = FlowKey::from_packet(6, ep(1, 1000), ep(2, 80), false);
    table.packet(key, from_a, 1, 60, tcp(TcpMeta::SYN, 1, 0));
    table.packet(key, !from_a, 2, 60, tcp(TcpMeta::RST | TcpMeta::ACK, 0, 2));
    // A retransmitted RST stays in the old flow; a new SYN starts a new one.
    table.packet(key, !from_a, 3, 60, tcp(TcpMeta::RST | TcpMeta::ACK, 0, 2));
    table.packet(key, from_a, 4, 60, tcp(TcpMeta::SYN, 99, 0));
    let finished: Vec<Flow> = table.drain_finished().collect();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].end, EndReason::Reused);
    assert_eq!(finished[0].packets(), 3);
    assert!(finished[0].tcp.unwrap().refused());
    assert_eq!(table.counters.reused, 1);
    assert_eq!(table.live(), 1);
}

#[test]
fn full_table_evicts_the_least_recent_and_counts_it() {
    let config = FlowTableConfig {
        capacity: 16,
        ..FlowTableConfig::default()
    };
    let mut table = FlowTable::new(config);
    for i in 0..40u16 {
        let (key, from_a) = FlowKey::from_packet(17, ep(1, 1000 + i), ep(2, 53), false);
        table.packet(key, from_a, u64::from(i), 80, None);
        assert!(table.live() <= 16);
    }
    let finished: Vec<Flow> = table.drain_finished().collect();
    assert_eq!(table.counters.evicted as usize, finished.len());
    assert!(finished.iter().all(|f| f.end == EndReason::Evicted));
    // The evicted flows are the oldest ones.
    let newest_evicted = finished.iter().map(|f| f.last_ns).max().unwrap();
    assert!(table.iter().all(|f| f.last_ns > newest_evicted));
    assert_eq!(finished.len() + table.live(), 40, "no packet lost");
}

/// After `finish`, `swap_finished` hands the remaining flows out a few thousand at a time,
/// each exactly once, ordered by first packet (ties by serial), after what was queued.
#[test]
fn finish_hands_out_the_table_in_order_a_few_thousand_at_a_time() {
    let mut table = FlowTable::new(FlowTableConfig {
        capacity: 12_000,
        ..FlowTableConfig::default()
    });
    // First packets out of serial order: timestamps cycle, so sorting really moves flows.
    for i in 0..10_000u32 {
        let src = Endpoint {
            addr: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            port: 1000,
        };
        let (key, from_a) = FlowKey::from_packet(17, src, ep(2, 53), false);
        table.packet(
            key,
            from_a,
            1 + u64::from(i * 7919 % 10_000) % 5_000,
            80,
            None,
        );
    }
    table.finish();
    assert_eq!(table.live(), 0);
    let mut all = Vec::new();
    let mut out = Vec::new();
    let mut calls = 0;
    while table.has_finished() {
        table.swap_finished(&mut out);
        assert!(!out.is_empty() && out.len() <= 4096 + 1024, "{}", out.len());
        all.append(&mut out);
        calls += 1;
    }
    assert!(calls >= 3, "handed out gradually: {calls} calls");
    assert_eq!(all.len(), 10_000);
    assert!(
        all.windows(2)
            .all(|w| (w[0].first_ns, w[0].serial) < (w[1].first_ns, w[1].serial)),
        "ordered by first packet, then serial"
    );
}

#[test]
fn idle_flows_expire_by_packet_time() {
    let mut table = FlowTable::new(FlowTableConfig::default());
    let (key, from_a) = FlowKey::from_packet(17, ep(1, 1), ep(2, 2), false);
    table.packet(key, from_a, 1_000_000_000, 80, None);
    table.advance(30_000_000_000);
    assert_eq!(table.live(), 1);
    table.advance(70_000_000_000);
    table.advance(72_000_000_000);
    assert_eq!(table.live(), 0);
    assert_eq!(table.counters.expired, 1);
    assert_eq!(table.drain_finished().next().unwrap().end, EndReason::Idle);
}

#[test]
fn dedup_counts_other_interfaces_once_and_keeps_retransmissions() {
    let mut dedup = Deduplicator::new(50_000_000, 1024);
    let mut packet = vec![
        0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    packet.extend_from_slice(&[0; 20]);
    assert_eq!(
        dedup.check(1_000, iface_bit(0), &packet),
        DedupVerdict::Unique
    );
    // Same packet, one hop later (TTL and checksum changed), on another interface.
    let mut routed = packet.clone();
    routed[8] = 63;
    routed[10] = 0xaa;
    assert_eq!(
        dedup.check(2_000, iface_bit(1), &routed),
        DedupVerdict::Duplicate
    );
    // Same interface again: a retransmission, which counts.
    assert_eq!(
        dedup.check(3_000, iface_bit(0), &packet),
        DedupVerdict::Unique
    );
    // A copy written earlier in time (batched multi-interface capture) still matches.
    assert_eq!(
        dedup.check(2_500, iface_bit(2), &packet),
        DedupVerdict::Duplicate
    );
    assert_eq!(dedup.duplicates, 2);
}

#[test]
fn fragments_follow_their_first_fragment_with_bounded_state() {
    let mut tracker = FragmentTracker::new(2, 1_000);
    let (a, b) = (ep(1, 0).addr, ep(2, 0).addr);
    tracker.first(a, b, 17, 7, (5000, 53), 0);
    assert_eq!(tracker.later(a, b, 17, 7, 10), Some((5000, 53)));
    assert_eq!(tracker.later(a, b, 17, 7, 5_000), None, "too old");
    tracker.first(a, b, 17, 8, (1, 2), 0);
    tracker.first(a, b, 17, 9, (3, 4), 0);
    assert_eq!(tracker.len(), 2);
    assert_eq!(tracker.forgotten, 1);
    assert_eq!(
        tracker.later(a, b, 17, 7, 10),
        None,
        "the oldest was forgotten"
    );
}

#[test]
fn per_flow_state_stays_small() {
    // The flow table's memory per live flow is dominated by this struct plus its key.
    let per_entry = std::mem::size_of::<Flow>() + std::mem::size_of::<FlowKey>();
    println!(
        "Flow {} bytes, FlowKey {} bytes",
        std::mem::size_of::<Flow>(),
        std::mem::size_of::<FlowKey>()
    );
    assert!(per_entry <= 320, "{per_entry} bytes per table entry");
}

#[test]
fn a_late_copy_of_the_syn_after_close_does_not_start_a_new_flow() {
    let mut table = FlowTable::new(FlowTableConfig::default());
    let (key, from_a) = FlowKey::from_packet(6, ep(1, 1000), ep(2, 80), false);
    table.packet(key, from_a, 1, 60, tcp(TcpMeta::SYN, 7, 0));
    table.packet(key, !from_a, 2, 60, tcp(TcpMeta::RST | TcpMeta::ACK, 0, 8));
    // The same SYN again (seen late on another interface): still the same connection.
    table.packet(key, from_a, 3, 60, tcp(TcpMeta::SYN, 7, 0));
    assert_eq!(table.counters.reused, 0);
    assert_eq!(table.live(), 1);
}
