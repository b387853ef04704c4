//! Cross-interface de-duplication: the same packet seen on several interfaces counts once.
//!
//! A packet's signature hashes its IP header and the start of its payload with the fields a
//! forwarding hop may change (TTL / hop limit, IPv4 header checksum) masked out, so a packet
//! seen on a pod's veth and again on the bridge or node NIC matches. A signature seen again on
//! the *same* interface is a retransmission and is never removed. State is bounded by a
//! capacity and a retention period of packet time. Sightings are matched when their
//! timestamps differ by at most the window in either direction, because multi-interface
//! captures (dumpcap, `tcpdump -i any`) write each interface's packets in batches, so a
//! copy can appear in the file long after later packets of another interface.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

use crate::frame::TimestampNs;

/// How many bytes from the IP header on are hashed (headers plus the transport checksum).
const SIGNATURE_BYTES: usize = 128;

/// How long (packet time) signatures are kept for out-of-order batches.
const RETENTION_NS: u64 = 10_000_000_000;

/// Outcome for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupVerdict {
    /// First sighting (or a retransmission on an interface that already saw it).
    Unique,
    /// The same packet was already counted from another interface.
    Duplicate,
}

#[derive(Debug)]
pub struct Deduplicator {
    window_ns: u64,
    capacity: usize,
    seen: HashMap<u64, (TimestampNs, u64), foldhash::fast::FixedState>,
    order: VecDeque<(TimestampNs, u64)>,
    hasher: foldhash::fast::FixedState,
    newest_ns: TimestampNs,
    pub duplicates: u64,
}

impl Deduplicator {
    pub fn new(window_ns: u64, capacity: usize) -> Deduplicator {
        Deduplicator {
            window_ns,
            capacity: capacity.max(1),
            seen: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x5eed)),
            order: VecDeque::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x9d0d),
            newest_ns: 0,
            duplicates: 0,
        }
    }

    /// Checks a packet (its bytes from the outermost IP header on) seen on interface bit `iface_bit`.
    pub fn check(&mut self, ts: TimestampNs, iface_bit: u64, l3: &[u8]) -> DedupVerdict {
        if l3.is_empty() {
            return DedupVerdict::Unique;
        }
        self.newest_ns = self.newest_ns.max(ts);
        self.expire(
            self.newest_ns
                .saturating_sub(RETENTION_NS.max(self.window_ns)),
        );
        let signature = self.signature(l3);
        match self.seen.get_mut(&signature) {
            Some((first_ts, ifaces)) if ts.abs_diff(*first_ts) <= self.window_ns => {
                if *ifaces & iface_bit == 0 {
                    *ifaces |= iface_bit;
                    self.duplicates += 1;
                    DedupVerdict::Duplicate
                } else {
                    // Seen again where it was already seen: a retransmission, which counts.
                    *first_ts = ts;
                    *ifaces = iface_bit;
                    self.order.push_back((ts, signature));
                    DedupVerdict::Unique
                }
            }
            _ => {
                self.seen.insert(signature, (ts, iface_bit));
                self.order.push_back((ts, signature));
                while self.order.len() > self.capacity {
                    self.pop_oldest();
                }
                DedupVerdict::Unique
            }
        }
    }

    /// Forgets signatures first seen before `horizon` (in insertion order, which is close
    /// enough to time order; the capacity bound catches the rest).
    fn expire(&mut self, horizon: TimestampNs) {
        while let Some(&(ts, _)) = self.order.front() {
            if ts >= horizon {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((ts, signature)) = self.order.pop_front() {
            // Only remove the entry if it was not refreshed by a later sighting.
            if self
                .seen
                .get(&signature)
                .is_some_and(|&(seen_ts, _)| seen_ts == ts)
            {
                self.seen.remove(&signature);
            }
        }
    }

    fn signature(&self, l3: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        let head = &l3[..l3.len().min(SIGNATURE_BYTES)];
        match head.first().map(|b| b >> 4) {
            Some(4) if head.len() >= 20 => {
                hasher.write(&head[..8]);
                hasher.write_u8(head[9]); // protocol; skip TTL (8) and checksum (10..12)
                hasher.write(&head[12..]);
            }
            Some(6) if head.len() >= 40 => {
                hasher.write(&head[..7]); // skip hop limit (7)
                hasher.write(&head[8..]);
            }
            _ => hasher.write(head),
        }
        hasher.write_usize(l3.len());
        hasher.finish()
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
