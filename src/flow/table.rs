//! The bounded flow table: lookup, creation, idle expiry, eviction and port reuse.
//!
//! Guarantees: at most `capacity` flows are live; when full, the least recently seen
//! sixteenth is evicted at once (amortised O(1) per insert). Flows leave the table only into
//! the `finished` queue, so every packet is reported in exactly one flow record; the counters
//! say how many flows left by idle expiry, eviction or port reuse. Which flows expire or are
//! evicted depends only on packet timestamps, never on hash order, so output is deterministic.

use serde::Serialize;

use super::store::FlowStore;
use super::{EndReason, Flow, FlowKey, TcpTracker};
use crate::decode::{TcpMeta, ipproto};
use crate::frame::TimestampNs;

const SECOND: u64 = 1_000_000_000;

/// Limits and timeouts of the flow table.
#[derive(Debug, Clone, Copy)]
pub struct FlowTableConfig {
    /// Most flows kept live at once.
    pub capacity: usize,
    /// Idle timeout for open TCP connections.
    pub tcp_idle_ns: u64,
    /// Idle timeout for TCP connections that closed or were reset.
    pub tcp_closed_idle_ns: u64,
    /// Idle timeout for UDP, ICMP and other flows.
    pub other_idle_ns: u64,
    /// How often (in packet time) idle flows are swept out.
    pub sweep_interval_ns: u64,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            capacity: 1 << 20,
            tcp_idle_ns: 300 * SECOND,
            // Like Zeek's tcp_close_delay: a closed connection lingers briefly for stray
            // retransmissions, then leaves the table (a new SYN starts a new flow anyway).
            tcp_closed_idle_ns: 5 * SECOND,
            other_idle_ns: 60 * SECOND,
            // Sweeping every 2 s of packet time keeps expiry within a few seconds of its
            // timeout while keeping the full-table scan rare.
            sweep_interval_ns: 2 * SECOND,
        }
    }
}

/// What happened to flows over the table's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableCounters {
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
    pub reused: u64,
    pub peak_live: u64,
}

#[derive(Debug)]
pub struct FlowTable {
    config: FlowTableConfig,
    flows: FlowStore,
    finished: Vec<Flow>,
    /// After [`FlowTable::finish`]: the flows still to hand out, sorted, in chunks; they join
    /// `finished` a few chunks at a time, so the end of a run never holds a second copy.
    ending: std::collections::VecDeque<Vec<Flow>>,
    scratch_keys: Vec<FlowKey>,
    next_serial: u64,
    now_ns: TimestampNs,
    next_sweep_ns: TimestampNs,
    pub counters: TableCounters,
}

impl FlowTable {
    pub fn new(config: FlowTableConfig) -> FlowTable {
        FlowTable {
            config: FlowTableConfig {
                capacity: config.capacity.max(1),
                ..config
            },
            flows: FlowStore::default(),
            finished: Vec::new(),
            ending: std::collections::VecDeque::new(),
            scratch_keys: Vec::new(),
            next_serial: 0,
            now_ns: 0,
            next_sweep_ns: 0,
            counters: TableCounters::default(),
        }
    }

    pub fn config(&self) -> &FlowTableConfig {
        &self.config
    }

    /// Accounts one packet and returns its flow plus whether it travelled initiator → responder.
    pub fn packet(
        &mut self,
        key: FlowKey,
        from_a: bool,
        ts: TimestampNs,
        wire_len: u32,
        tcp: Option<TcpMeta>,
    ) -> (&mut Flow, bool) {
        let hash = self.hash(&key);
        self.packet_hashed(key, hash, from_a, ts, wire_len, tcp)
    }

    /// The hash the table files `key` under.
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.flows.hash(key)
    }

    /// Asks the CPU to start loading the flow of a key with this hash, so a `packet` call for
    /// it a little later finds it in cache. Changes nothing.
    pub fn prefetch_flow(&self, hash: u64) {
        self.flows.prefetch_flows(hash);
    }

    /// [`FlowTable::packet`] with the key's hash already computed.
    pub fn packet_hashed(
        &mut self,
        key: FlowKey,
        hash: u64,
        from_a: bool,
        ts: TimestampNs,
        wire_len: u32,
        tcp: Option<TcpMeta>,
    ) -> (&mut Flow, bool) {
        self.advance(ts);
        let mut found = self.flows.find(hash, &key);
        if found.is_none() && self.flows.len() >= self.config.capacity {
            self.evict_oldest();
            found = self.flows.find(hash, &key);
        }
        let fresh_syn = tcp.is_some_and(|t| t.has(TcpMeta::SYN) && !t.has(TcpMeta::ACK));
        let serial = self.next_serial;
        let new_flow = || {
            // Initiator: the SYN sender; for a SYN-ACK first, its receiver; else the sender.
            let sender_initiates = !tcp.is_some_and(|t| t.has(TcpMeta::SYN) && t.has(TcpMeta::ACK));
            let mut flow = Flow::new(key, serial, from_a == sender_initiates, ts);
            if key.proto == ipproto::TCP {
                flow.tcp = tcp.map(|t| TcpTracker::new(t, ts));
            }
            flow
        };
        // One hash lookup per packet: this is the hot path.
        let live = self.flows.len() as u64;
        let (flow, created) = match found {
            Some(index) => {
                let flow = self.flows.get_mut(index);
                let reused = fresh_syn
                    && flow.tcp.as_ref().is_some_and(|t| {
                        t.is_finished() && !tcp.is_some_and(|meta| t.is_own_syn(meta.seq))
                    });
                if reused {
                    let mut old = std::mem::replace(flow, new_flow());
                    old.end = EndReason::Reused;
                    self.counters.reused += 1;
                    self.finished.push(old);
                    (flow, true)
                } else {
                    (flow, false)
                }
            }
            None => {
                self.counters.peak_live = self.counters.peak_live.max(live + 1);
                let index = self.flows.insert(hash, new_flow());
                (self.flows.get_mut(index), true)
            }
        };
        let fwd = from_a == flow.initiator_is_a;
        if created {
            self.next_serial += 1;
            self.counters.created += 1;
        } else if let Some(meta) = tcp {
            match flow.tcp.as_mut() {
                Some(tracker) => tracker.update(fwd, meta, ts),
                None if key.proto == ipproto::TCP => flow.tcp = Some(TcpTracker::new(meta, ts)),
                None => {}
            }
        }
        let counters = if fwd { &mut flow.fwd } else { &mut flow.rev };
        counters.packets += 1;
        counters.bytes += u64::from(wire_len);
        flow.last_ns = flow.last_ns.max(ts);
        (flow, fwd)
    }

    /// Looks up a live flow.
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        let index = self.flows.find(self.flows.hash(key), key)?;
        Some(self.flows.get_mut(index))
    }

    /// Moves packet time forward (monotonic) and sweeps idle flows when due.
    pub fn advance(&mut self, ts: TimestampNs) {
        if ts > self.now_ns {
            self.now_ns = ts;
        }
        if self.now_ns >= self.next_sweep_ns {
            if self.next_sweep_ns != 0 {
                self.sweep();
            }
            self.next_sweep_ns = self.now_ns.saturating_add(self.config.sweep_interval_ns);
        }
    }

    fn idle_limit(&self, flow: &Flow) -> u64 {
        match &flow.tcp {
            Some(t) if t.is_finished() => self.config.tcp_closed_idle_ns,
            Some(_) => self.config.tcp_idle_ns,
            None if flow.key.proto == ipproto::TCP => self.config.tcp_idle_ns,
            None => self.config.other_idle_ns,
        }
    }

    fn sweep(&mut self) {
        let now = self.now_ns;
        // The scratch list is reused across sweeps: no allocation churn on the hot path.
        let mut expired = std::mem::take(&mut self.scratch_keys);
        expired.clear();
        expired.extend(
            self.flows
                .values()
                .filter(|f| now.saturating_sub(f.last_ns) > self.idle_limit(f))
                .map(|f| f.key),
        );
        self.retire(&expired, EndReason::Idle);
        self.scratch_keys = expired;
    }

    fn evict_oldest(&mut self) {
        let batch = (self.config.capacity / 16).max(1);
        let mut ages: Vec<(TimestampNs, u64, FlowKey)> = self
            .flows
            .values()
            .map(|f| (f.last_ns, f.serial, f.key))
            .collect();
        if ages.len() > batch {
            ages.select_nth_unstable(batch - 1);
            ages.truncate(batch);
        }
        let keys: Vec<FlowKey> = ages.into_iter().map(|(_, _, k)| k).collect();
        self.retire(&keys, EndReason::Evicted);
    }

    /// Moves flows to the finished queue in a deterministic order (last seen, then serial).
    fn retire(&mut self, keys: &[FlowKey], reason: EndReason) {
        let start = self.finished.len();
        for key in keys {
            if let Some(mut flow) = self.flows.remove(key) {
                flow.end = reason;
                self.finished.push(flow);
            }
        }
        let retired = &mut self.finished[start..];
        retired.sort_unstable_by_key(|f| (f.last_ns, f.serial));
        match reason {
            EndReason::Idle => self.counters.expired += retired.len() as u64,
            EndReason::Evicted => self.counters.evicted += retired.len() as u64,
            _ => {}
        }
    }

    /// Swaps the finished queue with `out` (which should be empty): the two buffers
    /// alternate, so steady-state draining allocates nothing. After `finish`, each call hands
    /// out at most ~4,096 of the remaining flows; call until [`FlowTable::has_finished`] is
    /// false.
    pub fn swap_finished(&mut self, out: &mut Vec<Flow>) {
        if self.finished.is_empty() {
            self.refill(4096);
        }
        std::mem::swap(&mut self.finished, out);
    }

    /// [`FlowTable::swap_finished`] for every finished flow, including all `finish` left.
    pub fn swap_all_finished(&mut self, out: &mut Vec<Flow>) {
        self.refill(usize::MAX);
        std::mem::swap(&mut self.finished, out);
    }

    /// Every finished flow, including all that `finish` left.
    pub fn drain_finished(&mut self) -> std::vec::Drain<'_, Flow> {
        self.refill(usize::MAX);
        self.finished.drain(..)
    }

    /// Flows are waiting to be taken.
    pub fn has_finished(&self) -> bool {
        !self.finished.is_empty() || !self.ending.is_empty()
    }

    /// Moves whole chunks of `ending` into the queue until it holds `at_least` flows.
    fn refill(&mut self, at_least: usize) {
        while self.finished.len() < at_least
            && let Some(chunk) = self.ending.pop_front()
        {
            self.finished.extend(chunk);
        }
    }

    /// Ends the input: every live flow becomes finished, ordered by first packet, after the
    /// flows already queued.
    ///
    /// The flows are sorted where they lie and leave their chunks a few at a time, so the end
    /// of a run holds one copy of the live flows (it once held three: table, temporary
    /// vector, queue).
    pub fn finish(&mut self) {
        // Serials are unique: the order is total and deterministic.
        let rest = self.flows.take_sorted(|f| (f.first_ns, f.serial));
        self.ending.extend(rest);
    }

    pub fn live(&self) -> usize {
        self.flows.len()
    }

    /// Live flows (unordered).
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.flows.values()
    }

    pub fn now_ns(&self) -> TimestampNs {
        self.now_ns
    }
}
