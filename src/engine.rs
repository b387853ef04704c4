//! The one owner of analysis state: frames in, flows and statistics out.
//!
//! `Engine::ingest` runs decode → de-duplication → fragment attribution → flow table for
//! one frame; `Engine::ingest_run` does the same for consecutive frames while working a few
//! frames ahead (decoding, cache prefetches), with the same results. It is pure (no I/O, no
//! clock, no threads): the same frames in the same order always give the same flows and
//! statistics. Finished flows queue up until the caller drains them, so a headless run can
//! stream records and keep memory bounded.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cluster::identity::{Identity, IdentityIndex, IdentityOptions};
use crate::cluster::model::{ClusterDelta, ClusterState, Protocol};
use crate::decode::{self, DecodeError, Decoded, Fragment, Packet, TcpMeta, ipproto};
use crate::dissect::{App, Budget, Dir, DnsNames, Facts, Limits, Segment};
use crate::flow::{
    DedupVerdict, Deduplicator, Endpoint, Flow, FlowKey, FlowTable, FlowTableConfig,
    FragmentTracker, TableCounters, iface_bit,
};
use crate::frame::{IfaceId, RawFrame, TimestampNs, linktype};
use crate::policy::{EndpointRef, PolicyEngine, Verdict};

/// Tunables of the engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub table: FlowTableConfig,
    /// Two sightings of a packet on different interfaces within this window are one packet.
    pub dedup_window_ns: u64,
    /// Most packet signatures remembered for de-duplication.
    pub dedup_capacity: usize,
    /// Most fragmented datagrams remembered for attributing later fragments.
    pub fragment_capacity: usize,
    /// Stream-buffer caps of the dissectors.
    pub dissect: Limits,
    /// Most addresses remembered from DNS answers.
    pub dns_names: usize,
    /// Run the protocol dissectors (off: flow accounting only, for raw speed).
    pub dissect_enabled: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            table: FlowTableConfig::default(),
            dedup_window_ns: 50_000_000,
            dedup_capacity: 1 << 16,
            fragment_capacity: 8192,
            dissect: Limits::default(),
            dns_names: 65_536,
            dissect_enabled: true,
        }
    }
}

/// An interface as the capture described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceInfo {
    /// The capture's interface number (pcapng IDB index, live interface number).
    pub capture_id: IfaceId,
    /// Interface index from a Linux cooked v2 header, when frames carry one.
    pub ifindex: Option<u32>,
    pub link: u32,
    pub name: Option<String>,
}

/// Per-interface counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InterfaceStats {
    pub info: Option<InterfaceInfo>,
    pub packets: u64,
    pub bytes: u64,
    pub duplicates: u64,
}

/// Everything counted while ingesting.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub frames: u64,
    pub bytes: u64,
    pub first_ns: Option<TimestampNs>,
    pub last_ns: Option<TimestampNs>,
    /// Frames per link type name.
    pub link_types: BTreeMap<String, u64>,
    /// Frames that could not be decoded to an IP packet, per kind.
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub duplicates_removed: u64,
    /// Later fragments whose first fragment was not seen (kept in a port-less flow).
    pub unattributed_fragments: u64,
    /// Flows created, per protocol name (tunnel carrier flows included).
    pub flows_by_proto: BTreeMap<String, u64>,
    pub tunnelled_packets: u64,
    pub table: TableCounters,
    /// Interfaces in the order first seen.
    pub interfaces: Vec<InterfaceStats>,
}

/// Handshake round-trip times of all TCP flows. (Per-flow RTTs are in each flow's
/// `TcpTracker`; a histogram per responder endpoint, 10 KiB each, was kept until no consumer
/// read it: 5 MiB and ~2 % of a run on the benchmark capture.)
#[derive(Debug)]
pub struct RttStats {
    pub overall: Histogram<u32>,
}

impl RttStats {
    fn new() -> RttStats {
        RttStats {
            overall: new_rtt_histogram(),
        }
    }

    fn record(&mut self, rtt_ns: u64) {
        let micros = (rtt_ns / 1_000).clamp(1, RTT_MAX_MICROS);
        let _ = self.overall.record(micros);
    }
}

const RTT_MAX_MICROS: u64 = 60_000_000;

fn new_rtt_histogram() -> Histogram<u32> {
    // Microseconds, 1 µs … 60 s, two significant digits: a few KiB per histogram.
    Histogram::new_with_bounds(1, RTT_MAX_MICROS, 2)
        .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable!()))
}

/// Which flows counted a frame: the flow of its (inner) packet and, for a tunnelled frame,
/// the carrier flow between the nodes. Serials are [`Flow::serial`]s (what rows refer to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attribution {
    pub flow: Option<u64>,
    pub carrier: Option<u64>,
}

impl Attribution {
    /// True when no flow counted the frame.
    pub fn is_none(&self) -> bool {
        self.flow.is_none() && self.carrier.is_none()
    }
}

pub struct Engine {
    config: EngineConfig,
    table: FlowTable,
    dedup: Deduplicator,
    fragments: FragmentTracker,
    stats: Stats,
    rtt: RttStats,
    /// (capture interface, SLL2 ifindex) → index into `stats.interfaces`.
    iface_index: HashMap<(IfaceId, Option<u32>), u32>,
    last_iface: Option<((IfaceId, Option<u32>), u32)>,
    declared: Vec<InterfaceInfo>,
    dedup_enabled: bool,
    link_counts: Vec<(u32, u64)>,
    budget: Budget,
    dns: DnsNames,
    cluster: Option<ClusterContext>,
}

/// The cluster's objects and the indexes built from them.
struct ClusterContext {
    state: ClusterState,
    /// Rebuilt lazily after deltas change the state.
    indexes: Option<(IdentityIndex, PolicyEngine)>,
}

/// Who a flow's endpoints are and what the NetworkPolicies say about it.
#[derive(Debug, Clone, Serialize)]
pub struct Enrichment {
    pub src_identity: Identity,
    pub dst_identity: Identity,
    /// `None` for protocols NetworkPolicy cannot name (ICMP and others).
    pub verdict: Option<Verdict>,
    /// When the destination is a Service address, the backend pod the verdict was evaluated
    /// for (policies apply after the Service's address translation).
    pub verdict_target: Option<String>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            table: FlowTable::new(config.table),
            dedup: Deduplicator::new(config.dedup_window_ns, config.dedup_capacity),
            fragments: FragmentTracker::new(config.fragment_capacity, 30_000_000_000),
            stats: Stats::default(),
            rtt: RttStats::new(),
            iface_index: HashMap::new(),
            last_iface: None,
            declared: Vec::new(),
            dedup_enabled: false,
            link_counts: Vec::new(),
            budget: Budget::new(config.dissect),
            dns: DnsNames::new(config.dns_names),
            cluster: None,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Declares an interface the capture described. With more than one, de-duplication is on.
    pub fn add_interface(&mut self, info: InterfaceInfo) {
        if !self
            .declared
            .iter()
            .any(|d| d.capture_id == info.capture_id)
        {
            self.declared.push(info);
        }
        if self.declared.len() > 1 {
            self.dedup_enabled = true;
        }
    }

    /// The interfaces declared with [`Engine::add_interface`], in order.
    pub fn declared_interfaces(&self) -> &[InterfaceInfo] {
        &self.declared
    }

    /// Ingests one frame and says which flows counted it (nothing for undecodable frames
    /// and de-duplicated copies).
    pub fn ingest(&mut self, frame: &RawFrame<'_>) -> Attribution {
        let decoded = decode::decode(frame.link, frame.data);
        self.ingest_decoded(frame, &decoded, None)
    }

    /// Ingests consecutive frames exactly as [`Engine::ingest`] would one by one, but works
    /// ahead: each frame is decoded and its flow's memory requested a few frames before the
    /// frame is counted, so the cache misses of the flow lookup (~0.1 µs each, one per
    /// packet on a large table) overlap with the work on the frames before it.
    pub fn ingest_run(&mut self, frames: &[RawFrame<'_>]) {
        /// Frames decoded ahead of the one being counted (a power of two).
        const AHEAD: usize = 4;
        /// Of those, the frames whose flows are already requested.
        const REQUESTED: usize = 2;
        // Slots are overwritten in place: a `Lookahead` is ~250 bytes, and moving it in and
        // out of an `Option` per frame cost more than the misses it hides.
        let mut ahead: [Lookahead<'_>; AHEAD] = std::array::from_fn(|_| Lookahead {
            decoded: Err(DecodeError::NotIp),
            key: None,
        });
        for i in 0..frames.len() + AHEAD {
            // Frame i − AHEAD is counted first: frame i reuses its slot.
            if let Some(j) = i.checked_sub(AHEAD)
                && let Some(frame) = frames.get(j)
            {
                let slot = &ahead[j % AHEAD];
                self.ingest_decoded(frame, &slot.decoded, slot.key);
            }
            if let Some(frame) = frames.get(i) {
                let slot = &mut ahead[i % AHEAD];
                decode::decode_into(frame.link, frame.data, &mut slot.decoded);
                slot.key = slot
                    .decoded
                    .as_ref()
                    .ok()
                    .and_then(plain_key)
                    .map(|(key, from_a)| {
                        let hash = self.table.hash(&key);
                        (key, from_a, hash)
                    });
            }
            // The flow of frame i − (AHEAD − REQUESTED) is requested.
            if let Some(j) = i.checked_sub(AHEAD - REQUESTED)
                && j < frames.len()
                && let Some((_, _, hash)) = ahead[j % AHEAD].key
            {
                self.table.prefetch_flow(hash);
            }
        }
    }

    /// The rest of [`Engine::ingest`] for a decoded frame; `plain` is its [`plain_key`] and
    /// the key's hash when the caller already computed them.
    fn ingest_decoded(
        &mut self,
        frame: &RawFrame<'_>,
        decoded: &Result<Decoded<'_>, DecodeError>,
        plain: Option<(FlowKey, bool, u64)>,
    ) -> Attribution {
        let mut attribution = Attribution::default();
        let stats = &mut self.stats;
        stats.frames += 1;
        stats.bytes += u64::from(frame.orig_len);
        stats.first_ns = Some(stats.first_ns.map_or(frame.ts_ns, |t| t.min(frame.ts_ns)));
        stats.last_ns = Some(stats.last_ns.map_or(frame.ts_ns, |t| t.max(frame.ts_ns)));

        let ifindex = decoded.as_ref().ok().and_then(|d| d.sll2_ifindex);
        let iface = self.interface(frame, ifindex);
        if frame.link == linktype::LINUX_SLL2 {
            self.dedup_enabled = true;
        }
        let entry = &mut self.stats.interfaces[iface as usize];
        entry.packets += 1;
        entry.bytes += u64::from(frame.orig_len);

        let decoded = match decoded {
            Ok(d) => d,
            Err(error) => {
                self.count_link(frame.link);
                *self.stats.decode_errors.entry(error.as_str()).or_default() += 1;
                return attribution;
            }
        };
        self.count_link(frame.link);
        let bit = iface_bit(iface);
        if self.dedup_enabled
            && self.dedup.check(frame.ts_ns, bit, decoded.l3) == DedupVerdict::Duplicate
        {
            self.stats.duplicates_removed += 1;
            self.stats.interfaces[iface as usize].duplicates += 1;
            if let Some(key) = self.inner_key(decoded, frame.ts_ns)
                && let Some(flow) = self.table.get_mut(&key.0)
            {
                flow.ifaces |= bit;
            }
            return attribution;
        }
        if let Some(outer) = decoded.outer {
            self.stats.tunnelled_packets += 1;
            let (key, from_a) = key_of(&outer, outer.src_port, outer.dst_port, true);
            let (flow, _) = self
                .table
                .packet(key, from_a, frame.ts_ns, frame.orig_len, outer.tcp);
            flow.ifaces |= bit;
            flow.tunnel = decoded.tunnel;
            attribution.carrier = Some(flow.serial);
        }
        if decoded.carrier_only {
            return attribution;
        }
        // An unfragmented packet's key needs no fragment tracking: `plain` is what
        // `inner_key` would compute.
        let (key, from_a, hash) = match plain {
            Some(plain) => plain,
            None => {
                let Some((key, from_a)) = self.inner_key(decoded, frame.ts_ns) else {
                    return attribution;
                };
                (key, from_a, self.table.hash(&key))
            }
        };
        let created_before = self.table.counters.created;
        let inner = &decoded.inner;
        let (flow, fwd) =
            self.table
                .packet_hashed(key, hash, from_a, frame.ts_ns, frame.orig_len, inner.tcp);
        flow.ifaces |= bit;
        attribution.flow = Some(flow.serial);
        if flow.tunnel.is_none() {
            flow.tunnel = decoded.tunnel;
        }
        // Dissection stops as soon as the verdict is final, so most packets skip this.
        if self.config.dissect_enabled
            && flow.app.wants_more()
            && !matches!(inner.fragment, Fragment::Later { .. })
        {
            let dir = if fwd {
                Dir::ToResponder
            } else {
                Dir::ToInitiator
            };
            let segment = Segment {
                seq: inner.tcp.map(|t| t.seq),
                syn: inner.tcp.is_some_and(|t| t.has(TcpMeta::SYN)),
                fin: inner.tcp.is_some_and(|t| t.has(TcpMeta::FIN)),
                payload: inner.payload,
            };
            flow.app
                .on_packet(dir, segment, frame.ts_ns, &mut self.budget);
            let result = flow.app.result();
            if result.app == App::Dns
                && let Some(Facts::Dns(facts)) = &result.facts
            {
                self.dns.observe(facts);
            }
        }
        let new_rtt = flow.tcp.as_mut().and_then(|t| t.take_new_rtt());
        if let Some(rtt) = new_rtt {
            self.rtt.record(rtt);
        }
        if self.table.counters.created != created_before {
            // Look up before inserting: the name is allocated once per protocol, not per flow.
            let name = ipproto::name(key.proto);
            match self.stats.flows_by_proto.get_mut(name.as_ref()) {
                Some(count) => *count += 1,
                None => {
                    self.stats.flows_by_proto.insert(name.into_owned(), 1);
                }
            }
        }
        attribution
    }

    /// The inner packet's flow key, resolving later fragments through the fragment tracker.
    fn inner_key(&mut self, decoded: &Decoded<'_>, ts: TimestampNs) -> Option<(FlowKey, bool)> {
        let inner = &decoded.inner;
        let (sport, dport) = match inner.fragment {
            Fragment::None => (inner.src_port, inner.dst_port),
            Fragment::First { id } => {
                self.fragments.first(
                    inner.src,
                    inner.dst,
                    inner.proto,
                    id,
                    (inner.src_port, inner.dst_port),
                    ts,
                );
                (inner.src_port, inner.dst_port)
            }
            Fragment::Later { id } => {
                match self
                    .fragments
                    .later(inner.src, inner.dst, inner.proto, id, ts)
                {
                    Some(ports) => ports,
                    None => {
                        self.stats.unattributed_fragments += 1;
                        (0, 0)
                    }
                }
            }
        };
        Some(key_of(inner, sport, dport, false))
    }

    fn count_link(&mut self, link: u32) {
        // A linear scan over the (one or two) link types seen: cheaper than a map per packet.
        match self.link_counts.iter_mut().find(|(l, _)| *l == link) {
            Some((_, count)) => *count += 1,
            None => self.link_counts.push((link, 1)),
        }
    }

    fn interface(&mut self, frame: &RawFrame<'_>, ifindex: Option<u32>) -> u32 {
        let id = (frame.iface, ifindex);
        if let Some((last, index)) = self.last_iface
            && last == id
        {
            return index;
        }
        let next = self.stats.interfaces.len() as u32;
        let index = *self.iface_index.entry(id).or_insert(next);
        if index == next {
            let declared = self
                .declared
                .iter()
                .find(|d| d.capture_id == frame.iface)
                .cloned();
            let info = InterfaceInfo {
                capture_id: frame.iface,
                ifindex,
                link: frame.link,
                name: declared.and_then(|d| d.name),
            };
            self.stats.interfaces.push(InterfaceStats {
                info: Some(info),
                ..InterfaceStats::default()
            });
        }
        self.last_iface = Some((id, index));
        index
    }

    /// Gives the engine the cluster's objects (from a snapshot or a live watch).
    pub fn set_cluster(&mut self, state: ClusterState) {
        self.cluster = Some(ClusterContext {
            state,
            indexes: None,
        });
    }

    /// Applies one change from a live watch; indexes are rebuilt before the next lookup.
    pub fn apply(&mut self, delta: ClusterDelta) {
        let context = self.cluster.get_or_insert_with(|| ClusterContext {
            state: ClusterState::new(),
            indexes: None,
        });
        if context.state.apply(delta) {
            context.indexes = None;
        }
    }

    pub fn cluster(&self) -> Option<&ClusterState> {
        self.cluster.as_ref().map(|c| &c.state)
    }

    /// The dissectors' shared stream-buffer budget and its counters.
    pub fn dissect_budget(&self) -> &Budget {
        &self.budget
    }

    /// Names learnt from DNS answers seen in the traffic.
    pub fn dns_names(&self) -> &DnsNames {
        &self.dns
    }

    /// Identities of a flow's endpoints (at its first packet) and its NetworkPolicy verdict.
    /// `None` without cluster data.
    pub fn enrich(&mut self, flow: &Flow) -> Option<Enrichment> {
        enrich_with(&mut self.cluster, &self.dns, flow)
    }

    /// Summaries (with identities and verdicts) of the live flows `pick` selects, for
    /// periodic updates of long flows and for UI snapshots.
    pub fn summarize_live(
        &mut self,
        mut pick: impl FnMut(&Flow) -> bool,
    ) -> Vec<crate::summary::FlowSummary> {
        let (table, cluster, dns, budget) =
            (&self.table, &mut self.cluster, &self.dns, &self.budget);
        table
            .iter()
            .filter(|f| pick(f))
            .map(|f| crate::summary::FlowSummary::live(f, enrich_with(cluster, dns, f), budget))
            .collect()
    }

    /// Moves packet time forward without a packet (live captures' idle periods).
    pub fn tick(&mut self, now_ns: TimestampNs) {
        self.table.advance(now_ns);
    }

    /// Flows that ended since the last call, settled (their results read every byte).
    pub fn drain_finished(&mut self) -> Vec<Flow> {
        let mut out = Vec::new();
        self.table.swap_all_finished(&mut out);
        self.settle_all(&mut out);
        out
    }

    /// Like [`Engine::drain_finished`] without allocating: the finished flows are swapped
    /// into `out` (cleared first), whose buffer the engine keeps for the next batch. After
    /// [`Engine::finish`], one call hands out at most ~4,096 flows (so the end of a run never
    /// holds a second copy of the table): call until [`Engine::has_finished`] is false.
    pub fn take_finished(&mut self, out: &mut Vec<Flow>) {
        out.clear();
        self.table.swap_finished(out);
        self.settle_all(out);
    }

    /// Runs the deferred analyses of flows that left the table.
    fn settle_all(&mut self, flows: &mut [Flow]) {
        for flow in flows {
            settle(flow, &mut self.budget, &mut self.dns);
        }
    }

    /// Finished flows are waiting to be taken.
    pub fn has_finished(&self) -> bool {
        self.table.has_finished()
    }

    /// Ends the input: all live flows become finished (ordered by first packet).
    pub fn finish(&mut self) {
        self.table.finish();
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.table = self.table.counters;
        for &(link, count) in &self.link_counts {
            *stats.link_types.entry(linktype::name(link)).or_default() += count;
        }
        stats
    }

    pub fn rtt(&self) -> &RttStats {
        &self.rtt
    }

    pub fn live_flows(&self) -> impl Iterator<Item = &Flow> {
        self.table.iter()
    }

    pub fn live_count(&self) -> usize {
        self.table.live()
    }
}

/// Runs a flow's deferred analysis and feeds the DNS names it found (as `ingest` does after
/// each analysis).
fn settle(flow: &mut Flow, budget: &mut Budget, dns: &mut DnsNames) {
    if !flow.app.is_pending() {
        return;
    }
    flow.app.settle(budget);
    if let Some(Facts::Dns(facts)) = &flow.app.result().facts {
        dns.observe(facts);
    }
}

/// Identities and verdict for one flow (see [`Engine::enrich`]).
fn enrich_with(
    cluster: &mut Option<ClusterContext>,
    dns: &DnsNames,
    flow: &Flow,
) -> Option<Enrichment> {
    let context = cluster.as_mut()?;
    let (identities, policies) = context.indexes.get_or_insert_with(|| {
        (
            IdentityIndex::new(&context.state, IdentityOptions::default()),
            PolicyEngine::new(&context.state, &[]),
        )
    });
    let (src, dst) = (flow.src(), flow.dst());
    let protocol = match flow.key.proto {
        ipproto::TCP => Some(Protocol::Tcp),
        ipproto::UDP => Some(Protocol::Udp),
        ipproto::SCTP => Some(Protocol::Sctp),
        _ => None,
    };
    let port = protocol.map(|p| (dst.port, p));
    let mut src_identity =
        identities.identify(src.addr, None, flow.first_ns.min(i64::MAX as u64) as i64);
    let mut dst_identity =
        identities.identify(dst.addr, port, flow.first_ns.min(i64::MAX as u64) as i64);
    for (identity, addr) in [(&mut src_identity, src.addr), (&mut dst_identity, dst.addr)] {
        if let Identity::External { name, .. } = identity
            && name.is_none()
        {
            *name = dns.names_for(addr).first().cloned();
        }
    }
    // Policies act after Service address translation: judge the first backend.
    let (target, verdict_target) = match &dst_identity {
        Identity::Service { backends, .. } if !backends.is_empty() => {
            let backend = &backends[0];
            (
                policies
                    .endpoint_for_pod(&backend.namespace, &backend.name)
                    .unwrap_or(EndpointRef::Ip(dst.addr)),
                Some(format!("{}/{}", backend.namespace, backend.name)),
            )
        }
        _ => (policies.endpoint_for_ip(dst.addr), None),
    };
    let verdict = protocol.map(|p| {
        let source = policies.endpoint_for_ip(src.addr);
        policies.verdict(source, target, dst.port, p).clone()
    });
    Some(Enrichment {
        src_identity,
        dst_identity,
        verdict,
        verdict_target,
    })
}

/// A frame decoded ahead by [`Engine::ingest_run`].
struct Lookahead<'a> {
    decoded: Result<Decoded<'a>, DecodeError>,
    /// Its [`plain_key`] and that key's hash.
    key: Option<(FlowKey, bool, u64)>,
}

/// The inner flow key of a packet that needs no fragment tracking and is not a tunnel's
/// carrier-only frame: exactly what `Engine::inner_key` returns for it, without state.
fn plain_key(decoded: &Decoded<'_>) -> Option<(FlowKey, bool)> {
    let inner = &decoded.inner;
    (matches!(inner.fragment, Fragment::None) && !decoded.carrier_only)
        .then(|| key_of(inner, inner.src_port, inner.dst_port, false))
}

fn key_of(packet: &Packet<'_>, sport: u16, dport: u16, outer: bool) -> (FlowKey, bool) {
    let (sport, dport) = match packet.proto {
        ipproto::TCP | ipproto::UDP | ipproto::SCTP => (sport, dport),
        _ => (0, 0),
    };
    FlowKey::from_packet(
        packet.proto,
        Endpoint {
            addr: packet.src,
            port: sport,
        },
        Endpoint {
            addr: packet.dst,
            port: dport,
        },
        outer,
    )
}

/// Every decode error kind, for reports that list zero counts too.
pub fn decode_error_kinds() -> impl Iterator<Item = &'static str> {
    DecodeError::ALL.iter().map(|e| e.as_str())
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;
    use crate::frame::linktype;

    /// One Ethernet/IPv4/TCP frame between 10.244.1.10:40000 and 10.244.2.20:80.
    fn tcp(from_client: bool, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sport, dport) = if from_client {
            ([10, 244, 1, 10], [10, 244, 2, 20], 40000, 80)
        } else {
            ([10, 244, 2, 20], [10, 244, 1, 10], 80, 40000)
        };
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, seq, 64240);
        let builder = if syn { builder.syn() } else { builder.ack(1) };
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    fn ingest(engine: &mut Engine, ts_ns: u64, data: &[u8]) {
        engine.ingest(&RawFrame {
            ts_ns,
            iface: 0,
            link: linktype::ETHERNET,
            orig_len: data.len() as u32,
            data,
        });
    }

    /// A request the server never answered: live views preview it without changing the
    /// flow, and it is analysed for good when the flow leaves the table.
    #[test]
    fn a_deferred_analysis_is_previewed_live_and_settled_when_the_flow_leaves() {
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut engine = Engine::new(EngineConfig::default());
        ingest(&mut engine, 1, &tcp(true, 100, true, b""));
        ingest(&mut engine, 2, &tcp(false, 900, true, b""));
        ingest(&mut engine, 3, &tcp(true, 101, false, request));
        let summaries = engine.summarize_live(|_| true);
        assert_eq!(summaries[0].app.app, App::Http);
        let live = engine.live_flows().next().unwrap();
        assert!(live.app.is_pending(), "a preview changes nothing");
        assert_eq!(live.app.result().app, App::Unknown);
        engine.finish();
        let finished = engine.drain_finished();
        assert_eq!(finished.len(), 1);
        assert!(!finished[0].app.is_pending());
        assert_eq!(finished[0].app.result().app, App::Http);
    }

    /// `ingest_run` over any split of the same frames counts exactly what `ingest` one by one
    /// counts: many short flows (a 4-flow table evicts mid-run, so prefetched flows move),
    /// IPv4 fragments (tracked in order), an undecodable frame, and dissected payloads.
    #[test]
    fn runs_of_frames_count_exactly_like_single_frames() {
        let mut frames: Vec<Vec<u8>> = Vec::new();
        for n in 0..40u16 {
            let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
                .ipv4([10, 244, 1, (n % 7) as u8], [10, 96, 0, 10], 64)
                .udp(30000 + n % 5, 53);
            let mut frame = Vec::new();
            builder
                .write(
                    &mut frame,
                    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",
                )
                .unwrap();
            frames.push(frame);
            frames.push(tcp(
                n % 2 == 0,
                u32::from(n) * 10,
                n % 3 == 0,
                b"GET / HTTP/1.1\r\n\r\n",
            ));
        }
        frames.push(vec![0u8; 9]);
        // A first fragment (more-fragments set, offset 0) and a later one of the same datagram.
        let whole = tcp(true, 5, false, &[7u8; 64]);
        let mut first = whole[..14 + 20 + 24].to_vec();
        first[14 + 6] = 0x20;
        first[14 + 2..14 + 4].copy_from_slice(&44u16.to_be_bytes());
        let mut later = whole[..14 + 20].to_vec();
        later.extend_from_slice(&[9u8; 16]);
        later[14 + 6] = 0x00;
        later[14 + 7] = 3;
        later[14 + 2..14 + 4].copy_from_slice(&36u16.to_be_bytes());
        frames.push(first);
        frames.push(later);
        let raw: Vec<RawFrame<'_>> = frames
            .iter()
            .enumerate()
            .map(|(i, data)| RawFrame {
                ts_ns: i as u64 * 1_000_000_000,
                iface: 0,
                link: linktype::ETHERNET,
                orig_len: data.len() as u32,
                data,
            })
            .collect();
        let config = EngineConfig {
            table: FlowTableConfig {
                capacity: 4,
                ..FlowTableConfig::default()
            },
            ..EngineConfig::default()
        };
        let outcome = |mut engine: Engine| {
            engine.finish();
            let mut seen: Vec<String> = engine
                .drain_finished()
                .iter()
                .map(|f| format!("{f:?} {:?}", f.app.result()))
                .collect();
            seen.push(format!("{:?}", engine.stats()));
            seen
        };
        let mut one_by_one = Engine::new(config);
        for frame in &raw {
            one_by_one.ingest(frame);
        }
        let expected = outcome(one_by_one);
        assert!(expected.len() > 20, "many flows: {}", expected.len());
        for split in [1, 2, 3, 5, 8, raw.len()] {
            let mut in_runs = Engine::new(config);
            for run in raw.chunks(split) {
                in_runs.ingest_run(run);
            }
            assert_eq!(outcome(in_runs), expected, "runs of {split}");
        }
    }
}
