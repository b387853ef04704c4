//! Attributes non-first IP fragments to the flow of their first fragment, with bounded state.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::frame::TimestampNs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

/// Remembers (src, dst, proto, id) → ports of first fragments for a while.
///
/// Guarantees: at most `capacity` datagrams are remembered; older ones are forgotten first;
/// entries older than `max_age_ns` are ignored. Later fragments whose first fragment was not
/// seen (or was forgotten) stay unattributed and are counted by the caller.
#[derive(Debug)]
pub struct FragmentTracker {
    map: HashMap<FragKey, (u16, u16, TimestampNs)>,
    order: VecDeque<FragKey>,
    capacity: usize,
    max_age_ns: u64,
    pub forgotten: u64,
}

impl FragmentTracker {
    pub fn new(capacity: usize, max_age_ns: u64) -> FragmentTracker {
        FragmentTracker {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            max_age_ns,
            forgotten: 0,
        }
    }

    /// Records the ports a first fragment carried.
    pub fn first(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        id: u32,
        ports: (u16, u16),
        ts: TimestampNs,
    ) {
        let key = FragKey {
            src,
            dst,
            proto,
            id,
        };
        if self.map.insert(key, (ports.0, ports.1, ts)).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                    self.forgotten += 1;
                }
            }
        }
    }

    /// Ports for a later fragment, if its first fragment was seen recently.
    pub fn later(
        &self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        id: u32,
        ts: TimestampNs,
    ) -> Option<(u16, u16)> {
        let key = FragKey {
            src,
            dst,
            proto,
            id,
        };
        let &(sport, dport, first_ts) = self.map.get(&key)?;
        (ts.saturating_sub(first_ts) <= self.max_age_ns).then_some((sport, dport))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
