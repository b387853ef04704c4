//! Incremental Services aggregation: each finished chunk of rows is aggregated into partial
//! edges once (per grouping and per set of kept rows), and every snapshot only merges the
//! cached partials with the live rows' edges.
//!
//! Groups and edges are small integers: a group key is interned once (its name formatted
//! then), an edge is an interned (source group, destination group) pair. Indexed chunks
//! (the search index's per-row records, `filter/index.rs`) are aggregated with table
//! lookups only: an endpoint id maps to its group once per grouping (or per endpoint and
//! address, for the identities whose group is their address), a (protocol, application,
//! encryption, verdict) combination id to how the row counts. Chunks the index has not
//! indexed (the live rows) are grouped by hashing their strings, into the same ids.
//!
//! The running total over the leading chunks is updated, not rebuilt, when chunks leave at
//! the front: counters and per-application counts are subtracted; an edge's first flow
//! (its filter) and first ports cannot be, so only the edges the evicted chunks held have
//! them recomputed, from the remaining partials in row order.
//!
//! Guarantees: [`EdgeCache::edges`] gives exactly the edges [`service_edges`] computes from
//! scratch (a property test checks it on random rows and identities split into random
//! chunks, partly indexed, over filter and grouping changes, appends and evictions):
//! counters add up, applications add up, the kept ports are the first [`MAX_EDGE_PORTS`]
//! distinct ones in row order and the edge's filter comes from its first flow, because
//! partials keep ports in first-seen order and are merged in row order. Two endpoints with
//! the same index id (same kind and identity strings) fall in the same group, except for the
//! kinds [`group_uses_addr`] names, grouped per address. A partial is reused only for the
//! very same chunk (pointer identity, the cache holds the `Arc` so the address cannot be
//! reused) with the same grouping and the same kept rows; partials of chunks no longer in
//! the snapshot are dropped, and the interned ids start over when they outgrow the rows, so
//! memory follows the rows. Pure: no I/O, no clock, no threads.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use foldhash::fast::FixedState;

use super::{
    Edge, EdgeCol, Endpoint, Group, GroupKey, MAX_EDGE_PORTS, Sort, TermsKey, count_flow,
    finish_edge, flow_endpoints, group_key, has_ports, join_terms, kept_rows, sort_edges, terms,
    terms_key,
};
use crate::cluster::identity::Identity;
use crate::summary::FlowSummary;
use crate::tui::filter::End;
use crate::tui::filter::index::{RowRec, SearchIndex};
use crate::tui::source::FlowRows;

#[cfg(test)]
use super::service_edges;

/// Not looked up yet.
const UNSET: u32 = u32::MAX;
/// The endpoint's group depends on its address (looked up per endpoint and address).
const BY_ADDR: u32 = u32::MAX - 1;
/// Groups whose edges are found in a flat table (1 MiB) rather than a hash map.
const DENSE_GROUPS: u32 = 512;

/// An edge's counters: flows, bytes, encrypted, plaintext, allowed, denied, no verdict, and
/// flows of unknown encryption (not shown; a slot so every row adds to one).
type Counters = [u64; 8];
const FLOWS: usize = 0;
const BYTES: usize = 1;
const ENCRYPTED: usize = 2;
const PLAINTEXT: usize = 3;
const ALLOWED: usize = 4;
const DENIED: usize = 5;
const NO_VERDICT: usize = 6;
const UNKNOWN_ENCRYPTION: usize = 7;

/// A [`GroupKey`] that owns its strings, so it outlives the rows it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OwnedGroupKey {
    Pair(Box<str>, Box<str>),
    One(Box<str>),
    Owned(Box<str>),
}

impl OwnedGroupKey {
    fn new(key: &GroupKey<'_>) -> OwnedGroupKey {
        match key {
            GroupKey::Pair(a, b) => OwnedGroupKey::Pair((*a).into(), (*b).into()),
            GroupKey::One(a) => OwnedGroupKey::One((*a).into()),
            GroupKey::Owned(s) => OwnedGroupKey::Owned(s.as_str().into()),
        }
    }
}

/// A [`TermsKey`] that owns its strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OwnedTermsKey {
    Workload(Box<str>, Box<str>),
    Ip(std::net::IpAddr),
    Namespace(Box<str>),
    Nothing,
}

impl OwnedTermsKey {
    fn new(key: TermsKey<'_>) -> OwnedTermsKey {
        match key {
            TermsKey::Workload(ns, w) => OwnedTermsKey::Workload(ns.into(), w.into()),
            TermsKey::Ip(addr) => OwnedTermsKey::Ip(addr),
            TermsKey::Namespace(ns) => OwnedTermsKey::Namespace(ns.into()),
            TermsKey::Nothing => OwnedTermsKey::Nothing,
        }
    }
}

/// Whether an endpoint's group is named after its address rather than its identity's
/// strings (then endpoints with the same index id can fall in different groups). An
/// exhaustive match, so a new identity kind has to be decided here.
fn group_uses_addr(identity: Option<&Identity>, group: Group) -> bool {
    let Some(identity) = identity else {
        return true;
    };
    match group {
        Group::Namespace => false,
        Group::Workload => match identity {
            Identity::CloudMetadata { .. }
            | Identity::External { .. }
            | Identity::Unknown { .. } => true,
            Identity::Pod { .. }
            | Identity::HostNetwork { .. }
            | Identity::Service { .. }
            | Identity::Node { .. }
            | Identity::ApiServer { .. }
            | Identity::ClusterDns { .. } => false,
        },
    }
}

fn grouping(group: Group) -> usize {
    match group {
        Group::Workload => 0,
        Group::Namespace => 1,
    }
}

/// How one row counts, apart from its bytes (a function of its protocol, application,
/// encryption and verdict, so of its index combination).
#[derive(Debug, Clone, Copy)]
struct RowClass {
    /// Counter slots: encryption, verdict.
    encryption: u8,
    verdict: u8,
    /// The application label's id ([`Ids::labels`]).
    label: u16,
    /// Whether the destination port counts (TCP, UDP, SCTP).
    ports: bool,
}

/// Values interned once, ids in insertion order.
#[derive(Debug)]
struct Interner<K> {
    ids: HashMap<K, u32, FixedState>,
    len: u32,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Interner {
            ids: HashMap::with_hasher(FixedState::with_seed(0x5e71)),
            len: 0,
        }
    }
}

impl<K: Hash + Eq> Interner<K> {
    /// The value's id, and whether it is new.
    fn intern(&mut self, value: K) -> (u32, bool) {
        let next = self.len;
        match self.ids.entry(value) {
            std::collections::hash_map::Entry::Occupied(o) => (*o.get(), false),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(next);
                self.len += 1;
                (next, true)
            }
        }
    }
}

/// The cache's ids: groups, edges, application labels, and the tables from the search
/// index's ids to them.
#[derive(Debug, Default)]
struct Ids {
    groups: Interner<OwnedGroupKey>,
    /// Sanitized group names, by group id.
    group_names: Vec<String>,
    /// (source group, destination group) → edge id.
    edges: Interner<u64>,
    /// (source group, destination group), by edge id.
    edge_groups: Vec<(u32, u32)>,
    /// Edge ids of the pairs of the first [`DENSE_GROUPS`] groups (`src * DENSE_GROUPS +
    /// dst`; [`UNSET`] until seen), allocated on first use.
    pairs: Vec<u32>,
    labels: Vec<&'static str>,
    /// The search index generation the tables below refer to.
    generation: u64,
    /// Per grouping: endpoint id → group id ([`UNSET`], [`BY_ADDR`]).
    endpoint_groups: [Vec<u32>; 2],
    /// Per grouping: (endpoint id, address id) → group id, for [`BY_ADDR`] endpoints.
    addr_groups: [HashMap<u64, u32, FixedState>; 2],
    /// Combination id → how its rows count.
    classes: Vec<Option<RowClass>>,
    /// Filter terms by what they are made of (a workload's terms compile a regex).
    terms: HashMap<(End, OwnedTermsKey), String, FixedState>,
}

impl Ids {
    /// Values interned beyond what the tables from the index need.
    fn len(&self) -> usize {
        self.group_names.len()
            + self.edge_groups.len()
            + self.terms.len()
            + self.addr_groups.iter().map(HashMap::len).sum::<usize>()
    }

    /// Forgets the tables keyed by another index generation's ids.
    fn follow(&mut self, generation: u64) {
        if self.generation != generation {
            self.generation = generation;
            self.endpoint_groups = Default::default();
            self.addr_groups = Default::default();
            self.classes.clear();
        }
    }

    fn group(&mut self, key: &GroupKey<'_>) -> u32 {
        let owned = OwnedGroupKey::new(key);
        if let Some(&id) = self.groups.ids.get(&owned) {
            return id;
        }
        let (id, _) = self.groups.intern(owned);
        self.group_names.push(key.name());
        id
    }

    /// The filter of an edge whose first flow is `first` (as [`super::edge_filter`]).
    fn edge_filter(&mut self, first: &FlowSummary, group: Group) -> String {
        let (src, dst) = flow_endpoints(first);
        let mut side = |(identity, addr): Endpoint<'_>, end: End| {
            let key = terms_key(identity, addr, group);
            self.terms
                .entry((end, OwnedTermsKey::new(key)))
                .or_insert_with(|| terms(key, end))
                .clone()
        };
        let src = side(src, End::Src);
        let dst = side(dst, End::Dst);
        join_terms(&src, &dst)
    }

    fn edge(&mut self, src: u32, dst: u32) -> u32 {
        // The first groups' pairs in a flat table: one load per row instead of a hash.
        let slot =
            (src < DENSE_GROUPS && dst < DENSE_GROUPS).then(|| (src * DENSE_GROUPS + dst) as usize);
        if let Some(slot) = slot {
            if self.pairs.is_empty() {
                self.pairs = vec![UNSET; (DENSE_GROUPS * DENSE_GROUPS) as usize];
            }
            if self.pairs[slot] != UNSET {
                return self.pairs[slot];
            }
        }
        let (id, new) = self.edges.intern(u64::from(src) << 32 | u64::from(dst));
        if new {
            self.edge_groups.push((src, dst));
        }
        if let Some(slot) = slot {
            self.pairs[slot] = id;
        }
        id
    }

    fn label(&mut self, label: &'static str) -> u16 {
        match self.labels.iter().position(|l| *l == label) {
            Some(i) => i as u16,
            None => {
                self.labels.push(label);
                (self.labels.len() - 1) as u16
            }
        }
    }

    /// How `f` counts, by the very function the from-scratch aggregation counts with.
    fn class_of(&mut self, f: &FlowSummary) -> RowClass {
        let mut e = Edge::default();
        let label = count_flow(&mut e, f);
        RowClass {
            encryption: if e.encrypted > 0 {
                ENCRYPTED as u8
            } else if e.plaintext > 0 {
                PLAINTEXT as u8
            } else {
                UNKNOWN_ENCRYPTION as u8
            },
            verdict: if e.allowed > 0 {
                ALLOWED as u8
            } else if e.denied > 0 {
                DENIED as u8
            } else {
                NO_VERDICT as u8
            },
            label: self.label(label),
            ports: has_ports(f),
        }
    }

    /// The class of combination `combo`, `f` being one of its rows.
    fn class(&mut self, combo: u32, f: &FlowSummary) -> RowClass {
        if let Some(Some(c)) = self.classes.get(combo as usize) {
            return *c;
        }
        let class = self.class_of(f);
        let at = combo as usize;
        if self.classes.len() <= at {
            self.classes.resize(at + 1, None);
        }
        self.classes[at] = Some(class);
        class
    }

    /// The group of endpoint `endpoint` at address `addr`, `side` giving that endpoint of
    /// one of its rows (only called on a table miss: it reads the row's identity).
    fn endpoint_group<'a>(
        &mut self,
        endpoint: u32,
        addr: u32,
        side: impl FnOnce() -> Endpoint<'a>,
        group: Group,
    ) -> u32 {
        let g = grouping(group);
        let known = self.endpoint_groups[g]
            .get(endpoint as usize)
            .copied()
            .unwrap_or(UNSET);
        if known < BY_ADDR {
            return known;
        }
        if known == BY_ADDR {
            let key = u64::from(endpoint) << 32 | u64::from(addr);
            if let Some(&id) = self.addr_groups[g].get(&key) {
                return id;
            }
            let side = side();
            let id = self.group(&group_key(side.0, side.1, group));
            self.addr_groups[g].insert(key, id);
            return id;
        }
        let side = side();
        let uses_addr = group_uses_addr(side.0, group);
        let id = self.group(&group_key(side.0, side.1, group));
        let table = &mut self.endpoint_groups[g];
        if table.len() <= endpoint as usize {
            table.resize(endpoint as usize + 1, UNSET);
        }
        if uses_addr {
            table[endpoint as usize] = BY_ADDR;
            let key = u64::from(endpoint) << 32 | u64::from(addr);
            self.addr_groups[g].insert(key, id);
        } else {
            table[endpoint as usize] = id;
        }
        id
    }
}

/// One edge's aggregate over one chunk's kept rows (applications and ports are ranges of
/// the chunk's [`Partials`] lists).
#[derive(Debug, Clone)]
struct PartialEdge {
    edge: u32,
    /// The chunk-local row of the edge's first flow.
    first_row: u32,
    counts: Counters,
    apps: (u32, u32),
    ports: (u32, u32),
}

/// The partial edges of one chunk.
#[derive(Debug, Default)]
struct Partials {
    edges: Vec<PartialEdge>,
    /// (label id, flows) of every partial, each partial's a range.
    apps: Vec<(u16, u64)>,
    /// Distinct destination ports in first-seen order (at most [`MAX_EDGE_PORTS`]) of every
    /// partial, each partial's a range.
    ports: Vec<u16>,
}

impl Partials {
    fn apps(&self, p: &PartialEdge) -> &[(u16, u64)] {
        self.apps
            .get(p.apps.0 as usize..p.apps.1 as usize)
            .unwrap_or(&[])
    }

    fn ports(&self, p: &PartialEdge) -> &[u16] {
        self.ports
            .get(p.ports.0 as usize..p.ports.1 as usize)
            .unwrap_or(&[])
    }
}

/// One edge's counts, applications and first ports over some rows.
#[derive(Debug, Clone, Default)]
struct Tally {
    counts: Counters,
    apps: Vec<(u16, u64)>,
    /// Distinct destination ports in first-seen order, at most [`MAX_EDGE_PORTS`].
    ports: Vec<u16>,
}

impl Tally {
    fn add_row(&mut self, class: RowClass, bytes: u64, port: u16) {
        self.counts[FLOWS] += 1;
        self.counts[BYTES] += bytes;
        self.counts[usize::from(class.encryption)] += 1;
        self.counts[usize::from(class.verdict)] += 1;
        match self.apps.iter_mut().find(|(l, _)| *l == class.label) {
            Some((_, n)) => *n += 1,
            None => self.apps.push((class.label, 1)),
        }
        if class.ports {
            self.add_ports(&[port]);
        }
    }

    /// Adds later ports: the first distinct ones in row order stay.
    fn add_ports(&mut self, ports: &[u16]) {
        for &port in ports {
            if self.ports.len() >= MAX_EDGE_PORTS {
                return;
            }
            if !self.ports.contains(&port) {
                self.ports.push(port);
            }
        }
    }

    /// Adds a later partial: counters and applications add up, ports keep the first
    /// distinct ones in row order.
    fn merge(&mut self, part: &PartialEdge, partials: &Partials) {
        self.merge_counts(part, partials);
        self.add_ports(partials.ports(part));
    }

    /// Adds a partial's counters and applications only.
    fn merge_counts(&mut self, part: &PartialEdge, partials: &Partials) {
        for (a, b) in self.counts.iter_mut().zip(part.counts) {
            *a += b;
        }
        for &(label, n) in partials.apps(part) {
            match self.apps.iter_mut().find(|(l, _)| *l == label) {
                Some((_, m)) => *m += n,
                None => self.apps.push((label, n)),
            }
        }
    }

    /// Removes a partial's counters and applications (its ports are recomputed by the
    /// caller: first ports cannot be subtracted).
    fn subtract(&mut self, part: &PartialEdge, partials: &Partials) {
        for (a, b) in self.counts.iter_mut().zip(part.counts) {
            *a = a.saturating_sub(b);
        }
        for &(label, n) in partials.apps(part) {
            if let Some((_, m)) = self.apps.iter_mut().find(|(l, _)| *l == label) {
                *m = m.saturating_sub(n);
            }
        }
        self.apps.retain(|(_, n)| *n > 0);
    }
}

/// One chunk of finished rows, with its partial edges and what they were computed from.
#[derive(Debug)]
struct ChunkEdges {
    rows: Arc<[FlowSummary]>,
    /// Per row: its bytes, and whether it is an outer (tunnel) flow, never counted.
    bytes: Box<[u64]>,
    outer: Box<[bool]>,
    group: Group,
    /// The chunk's slice of the kept-row mask (`None`: every row kept).
    keep: Option<Box<[bool]>>,
    partials: Partials,
}

impl ChunkEdges {
    fn new(rows: &Arc<[FlowSummary]>, group: Group) -> ChunkEdges {
        ChunkEdges {
            rows: rows.clone(),
            bytes: rows.iter().map(FlowSummary::bytes).collect(),
            outer: rows.iter().map(|f| f.outer).collect(),
            group,
            keep: None,
            partials: Partials::default(),
        }
    }
}

/// Per-edge accumulators for aggregating one chunk, indexed by edge id (reused).
#[derive(Debug, Default)]
struct Scratch {
    tallies: Vec<Tally>,
    first_rows: Vec<u32>,
    /// Edges touched by the current chunk, in first-touch order.
    touched: Vec<u32>,
}

impl Scratch {
    fn add(&mut self, edge: u32, row: usize, class: RowClass, bytes: u64, port: u16) {
        let e = edge as usize;
        if self.tallies.len() <= e {
            self.tallies.resize_with(e + 1, Tally::default);
            self.first_rows.resize(e + 1, UNSET);
        }
        if self.first_rows[e] == UNSET {
            self.first_rows[e] = row as u32;
            self.touched.push(edge);
        }
        self.tallies[e].add_row(class, bytes, port);
    }

    /// The touched edges as partials, into `out` (cleared; its allocations are reused); the
    /// accumulators are reset for the next chunk.
    fn drain(&mut self, out: &mut Partials) {
        out.edges.clear();
        out.apps.clear();
        out.ports.clear();
        for &edge in &self.touched {
            let e = edge as usize;
            let tally = &mut self.tallies[e];
            let apps = (
                out.apps.len() as u32,
                (out.apps.len() + tally.apps.len()) as u32,
            );
            out.apps.extend_from_slice(&tally.apps);
            let ports = (
                out.ports.len() as u32,
                (out.ports.len() + tally.ports.len()) as u32,
            );
            out.ports.extend_from_slice(&tally.ports);
            out.edges.push(PartialEdge {
                edge,
                first_row: self.first_rows[e],
                counts: tally.counts,
                apps,
                ports,
            });
            tally.counts = Counters::default();
            tally.apps.clear();
            tally.ports.clear();
            self.first_rows[e] = UNSET;
        }
        self.touched.clear();
    }
}

/// Aggregates one chunk's kept rows into `out`: through the index's records when it has
/// them (table lookups), else by the rows' strings.
fn aggregate_chunk<'a>(
    ids: &mut Ids,
    scratch: &mut Scratch,
    chunk: &'a ChunkEdges,
    records: Option<&[RowRec]>,
    group: Group,
    out: &mut Partials,
) {
    let rows = &chunk.rows;
    let counted = |i: usize| !chunk.outer[i] && chunk.keep.as_ref().is_none_or(|k| k[i]);
    match records.filter(|r| r.len() == rows.len()) {
        Some(records) => {
            for (i, r) in records.iter().enumerate() {
                if !counted(i) {
                    continue;
                }
                let f = &rows[i];
                let s = ids.endpoint_group(
                    r.src_endpoint(),
                    r.src_addr(),
                    || flow_endpoints(f).0,
                    group,
                );
                let d = ids.endpoint_group(
                    r.dst_endpoint(),
                    r.dst_addr(),
                    || flow_endpoints(f).1,
                    group,
                );
                let edge = ids.edge(s, d);
                let class = ids.class(r.combo(), f);
                scratch.add(edge, i, class, chunk.bytes[i], r.dst_port());
            }
        }
        None => {
            // Group keys hashed per row, interned once per distinct key in this chunk.
            let mut local: HashMap<GroupKey<'a>, u32> = HashMap::new();
            for (i, f) in rows.iter().enumerate() {
                if !counted(i) {
                    continue;
                }
                let (src, dst) = flow_endpoints(f);
                let mut id = |key: GroupKey<'a>| match local.get(&key) {
                    Some(&id) => id,
                    None => {
                        let id = ids.group(&key);
                        local.insert(key, id);
                        id
                    }
                };
                let s = id(group_key(src.0, src.1, group));
                let d = id(group_key(dst.0, dst.1, group));
                let edge = ids.edge(s, d);
                let class = ids.class_of(f);
                scratch.add(edge, i, class, chunk.bytes[i], f.dst.port);
            }
        }
    }
    scratch.drain(out);
}

/// One edge of the running total: its tally and its filter (from its first flow; `None`
/// while it has no flow, or while it is being recomputed after an eviction).
#[derive(Debug, Clone, Default)]
struct TotalEdge {
    tally: Tally,
    filter: Option<String>,
    /// Held rows of an evicted chunk: first flow and ports to be recomputed.
    dirty: bool,
}

/// Per-chunk partial Services aggregates of the finished rows (see the module doc).
#[derive(Debug, Default)]
pub struct EdgeCache {
    ids: Ids,
    scratch: Scratch,
    /// The finished chunks' partials, in row order.
    chunks: Vec<ChunkEdges>,
    /// The merge of the first `covered` chunks' partials, by edge id, for grouping
    /// `total_group` (a snapshot that appends chunks merges just those, one that drops
    /// chunks at the front subtracts them; any other change rebuilds it from the partials).
    total: Vec<TotalEdge>,
    covered: usize,
    total_group: Option<Group>,
    /// Chunks aggregated (not found in the cache) since the cache was created.
    aggregated: u64,
    /// Times the total was rebuilt from every partial (not updated).
    rebuilds: u64,
    /// Times the ids were dropped because they outgrew the rows.
    resets: u64,
}

impl EdgeCache {
    /// Chunks aggregated so far (a chunk found in the cache is not counted again).
    pub fn chunks_aggregated(&self) -> u64 {
        self.aggregated
    }

    /// Times the running total was rebuilt from every cached partial (the first call, and
    /// after a grouping or filter change or a change other than appending chunks and
    /// dropping the oldest ones).
    pub fn total_rebuilds(&self) -> u64 {
        self.rebuilds
    }

    fn total_edge(&mut self, edge: u32) -> &mut TotalEdge {
        let e = edge as usize;
        if self.total.len() <= e {
            self.total.resize_with(e + 1, TotalEdge::default);
        }
        &mut self.total[e]
    }

    /// The Services edges of the rows `index` keeps, like [`super::service_edges`]. Chunks
    /// lying entirely within the first `finished` rows are immutable: their partials are
    /// cached and reused; the other (live) rows are aggregated anew on every call. `search`
    /// is the index of `rows` (its records make aggregating a chunk table lookups; chunks
    /// it has not indexed are aggregated from their strings).
    pub fn edges(
        &mut self,
        rows: &FlowRows,
        finished: usize,
        index: &[u32],
        search: &SearchIndex,
        group: Group,
        sort: Sort<EdgeCol>,
    ) -> Vec<Edge> {
        if self.ids.len() > 8 * rows.len() + (1 << 16) {
            // Evicted and live rows left their groups and edges behind: start over.
            *self = EdgeCache {
                aggregated: self.aggregated,
                rebuilds: self.rebuilds,
                resets: self.resets + 1,
                ..EdgeCache::default()
            };
        }
        self.ids.follow(search.generation());
        let keep = kept_rows(rows.len(), index);
        let previous = std::mem::take(&mut self.chunks);
        let covered: Vec<*const FlowSummary> = previous
            .iter()
            .take(self.covered)
            .map(|c| c.rows.as_ptr())
            .collect();
        let mut old: HashMap<*const FlowSummary, ChunkEdges> =
            previous.into_iter().map(|c| (c.rows.as_ptr(), c)).collect();
        let mut live: Vec<ChunkEdges> = Vec::new();
        // Per finished chunk: whether its partials are the cached ones.
        let mut reused: Vec<bool> = Vec::new();
        let mut start = 0;
        for (position, chunk) in rows.chunks().iter().enumerate() {
            let end = start + chunk.len();
            // A chunk whose rows are all kept is the same chunk with or without a filter.
            let chunk_keep = keep
                .as_ref()
                .map(|k| &k[start..end])
                .filter(|k| k.contains(&false));
            let cached = old
                .remove(&chunk.as_ptr())
                .filter(|c| c.rows.len() == chunk.len());
            let (entry, was_cached) = match cached {
                Some(c) if c.group == group && c.keep.as_deref() == chunk_keep => (c, true),
                cached => {
                    self.aggregated += 1;
                    let mut c = cached.unwrap_or_else(|| ChunkEdges::new(chunk, group));
                    c.group = group;
                    match (&mut c.keep, chunk_keep) {
                        (Some(k), Some(new)) if k.len() == new.len() => k.copy_from_slice(new),
                        (k, new) => *k = new.map(Box::from),
                    }
                    let records = search.records(position, chunk);
                    let mut partials = std::mem::take(&mut c.partials);
                    aggregate_chunk(
                        &mut self.ids,
                        &mut self.scratch,
                        &c,
                        records,
                        group,
                        &mut partials,
                    );
                    c.partials = partials;
                    (c, false)
                }
            };
            // Finished chunks come first, so the cached ones and then the live ones are
            // in row order.
            if end <= finished {
                self.chunks.push(entry);
                reused.push(was_cached);
            } else {
                live.push(entry);
            }
            start = end;
        }
        let evicted = self.update_total(&covered, &old, &reused, group);
        if !evicted {
            self.rebuild_total(group);
        }
        self.covered = self.chunks.len();
        self.total_group = Some(group);
        self.finish(&live, group, sort)
    }

    /// Updates the total when the chunks it covered, minus some dropped at the front, still
    /// lead the finished chunks with their cached partials: subtracts the dropped ones,
    /// merges the new ones and recomputes the first flow and ports of the edges the dropped
    /// chunks held. Returns `false` (nothing changed) when the total has to be rebuilt.
    fn update_total(
        &mut self,
        covered: &[*const FlowSummary],
        old: &HashMap<*const FlowSummary, ChunkEdges>,
        reused: &[bool],
        group: Group,
    ) -> bool {
        if self.total_group != Some(group) {
            return false;
        }
        let dropped = match self.chunks.first() {
            Some(first) => covered
                .iter()
                .position(|&p| p == first.rows.as_ptr())
                .unwrap_or(covered.len()),
            None => covered.len(),
        };
        let still = &covered[dropped..];
        let leading_unchanged = self.chunks.len() >= still.len()
            && still
                .iter()
                .zip(&self.chunks)
                .zip(reused)
                .all(|((&p, c), &r)| r && p == c.rows.as_ptr());
        let dropped_chunks: Option<Vec<&ChunkEdges>> =
            covered[..dropped].iter().map(|p| old.get(p)).collect();
        let (true, Some(dropped_chunks)) = (leading_unchanged, dropped_chunks) else {
            return false;
        };
        let mut dirty: Vec<u32> = Vec::new();
        for chunk in dropped_chunks {
            for part in &chunk.partials.edges {
                let total = self.total_edge(part.edge);
                total.tally.subtract(part, &chunk.partials);
                if !total.dirty {
                    total.dirty = true;
                    dirty.push(part.edge);
                }
            }
        }
        for &edge in &dirty {
            let total = &mut self.total[edge as usize];
            total.filter = None;
            total.tally.ports.clear();
            if total.tally.counts[FLOWS] == 0 {
                // No flow left: nothing to recompute.
                total.tally = Tally::default();
                total.dirty = false;
            }
        }
        self.merge_chunks(still.len(), group);
        // The dirty edges' first flow and ports, from the partials in row order; an edge is
        // done once its ports are full (its first flow comes with its first partial).
        let mut pending = dirty
            .iter()
            .filter(|&&e| self.total[e as usize].dirty)
            .count();
        for chunk in &self.chunks {
            if pending == 0 {
                break;
            }
            for part in &chunk.partials.edges {
                let total = &mut self.total[part.edge as usize];
                if !total.dirty {
                    continue;
                }
                if total.filter.is_none() {
                    let first = &chunk.rows[part.first_row as usize];
                    total.filter = Some(self.ids.edge_filter(first, group));
                }
                total.tally.add_ports(chunk.partials.ports(part));
                if total.tally.ports.len() >= MAX_EDGE_PORTS {
                    total.dirty = false;
                    pending -= 1;
                }
            }
        }
        for &edge in &dirty {
            self.total[edge as usize].dirty = false;
        }
        true
    }

    fn rebuild_total(&mut self, group: Group) {
        self.rebuilds += 1;
        for total in &mut self.total {
            // Emptied in place: the allocations serve the next total.
            total.tally.counts = Counters::default();
            total.tally.apps.clear();
            total.tally.ports.clear();
            total.filter = None;
            total.dirty = false;
        }
        self.merge_chunks(0, group);
    }

    /// Merges the partials of the finished chunks from `from` on into the total.
    fn merge_chunks(&mut self, from: usize, group: Group) {
        let chunks = std::mem::take(&mut self.chunks);
        for chunk in chunks.iter().skip(from) {
            for part in &chunk.partials.edges {
                let e = part.edge as usize;
                if self.total.len() <= e {
                    self.total.resize_with(e + 1, TotalEdge::default);
                }
                let total = &mut self.total[e];
                if total.dirty {
                    // First flow and ports recomputed from all partials in row order after.
                    total.tally.merge_counts(part, &chunk.partials);
                    continue;
                }
                if total.filter.is_none() {
                    let first = &chunk.rows[part.first_row as usize];
                    total.filter = Some(self.ids.edge_filter(first, group));
                }
                total.tally.merge(part, &chunk.partials);
            }
        }
        self.chunks = chunks;
    }

    /// The total plus the live rows' partials, as sorted edges.
    fn finish(&mut self, live: &[ChunkEdges], group: Group, sort: Sort<EdgeCol>) -> Vec<Edge> {
        let mut extra: HashMap<u32, TotalEdge> = HashMap::new();
        for chunk in live {
            for part in &chunk.partials.edges {
                let edge = extra.entry(part.edge).or_insert_with(|| {
                    match self.total.get(part.edge as usize) {
                        Some(t) if t.filter.is_some() => t.clone(),
                        _ => {
                            let first = &chunk.rows[part.first_row as usize];
                            TotalEdge {
                                filter: Some(self.ids.edge_filter(first, group)),
                                ..TotalEdge::default()
                            }
                        }
                    }
                });
                edge.tally.merge(part, &chunk.partials);
            }
        }
        let finish = |edge: u32, t: &TotalEdge| {
            let c = t.tally.counts;
            let counts = Edge {
                flows: c[FLOWS],
                bytes: c[BYTES],
                encrypted: c[ENCRYPTED],
                plaintext: c[PLAINTEXT],
                allowed: c[ALLOWED],
                denied: c[DENIED],
                no_verdict: c[NO_VERDICT],
                ..Edge::default()
            };
            let (src, dst) = self
                .ids
                .edge_groups
                .get(edge as usize)
                .copied()
                .unwrap_or((UNSET, UNSET));
            let name = |g: u32| {
                self.ids
                    .group_names
                    .get(g as usize)
                    .cloned()
                    .unwrap_or_default()
            };
            let apps: BTreeMap<&'static str, u64> = t
                .tally
                .apps
                .iter()
                .map(|&(l, n)| {
                    (
                        self.ids.labels.get(usize::from(l)).copied().unwrap_or("?"),
                        n,
                    )
                })
                .collect();
            finish_edge(
                counts,
                (name(src), name(dst)),
                apps,
                t.tally.ports.clone(),
                t.filter.clone().unwrap_or_default(),
            )
        };
        let mut edges: Vec<Edge> = self
            .total
            .iter()
            .enumerate()
            .filter(|(e, t)| t.tally.counts[FLOWS] > 0 && !extra.contains_key(&(*e as u32)))
            .map(|(e, t)| finish(e as u32, t))
            .collect();
        edges.extend(extra.iter().map(|(&e, t)| finish(e, t)));
        sort_edges(&mut edges, sort);
        edges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::synthetic;
    use proptest::prelude::*;

    /// Edges in a total order (edges with equal names may come in any order).
    fn canonical(mut edges: Vec<Edge>) -> Vec<Edge> {
        edges.sort_by(|a, b| {
            (&a.src, &a.dst, &a.filter, a.flows, a.bytes)
                .cmp(&(&b.src, &b.dst, &b.filter, b.flows, b.bytes))
        });
        edges
    }

    /// A synthetic row varied where the synthetic rows are uniform: many destination ports
    /// (beyond the kept maximum), outer (tunnel) rows, rows without enrichment, identities
    /// of every kind (grouped by address or not) and few distinct addresses.
    fn varied(seed: u64) -> FlowSummary {
        let mut f = synthetic::flow(seed);
        let mix = seed.wrapping_mul(0x9e37_79b9);
        f.dst.port = 8000 + (mix >> 7) as u16 % 40;
        f.outer = seed.is_multiple_of(17);
        if let Some(e) = f.enrichment.as_mut() {
            if mix.is_multiple_of(3) {
                e.src_identity = synthetic::identity_of_kind(mix >> 11, mix >> 17);
            }
            if mix % 5 < 2 {
                e.dst_identity = synthetic::identity_of_kind(mix >> 23, mix >> 29);
            }
        }
        if mix.is_multiple_of(4) {
            // Few addresses, so address-named groups hold several rows.
            f.src.addr = std::net::IpAddr::from([10, 9, 0, (mix >> 31) as u8 % 4]);
            f.dst.addr = std::net::IpAddr::from([10, 9, 1, (mix >> 35) as u8 % 4]);
        }
        if seed.is_multiple_of(13) {
            f.enrichment = None;
        }
        f
    }

    fn split(rows: &[FlowSummary], cuts: &[usize]) -> FlowRows {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (rows.len() + 1)).collect();
        cuts.push(0);
        cuts.push(rows.len());
        cuts.sort_unstable();
        cuts.dedup();
        FlowRows::from_chunks(
            cuts.windows(2)
                .map(|w| Arc::from(rows[w[0]..w[1]].to_vec()))
                .collect(),
        )
    }

    /// The rows of `rows` a filter keeps (all when `kept` is `None`); like a real filter it
    /// decides by the row's content (its serial), so a row stays kept when rows before it
    /// are evicted.
    fn index_of(rows: &FlowRows, kept: Option<&[bool]>) -> Vec<u32> {
        let keeps = |f: &FlowSummary| {
            kept.is_none_or(|k| k.is_empty() || k[(f.serial % k.len() as u64) as usize])
        };
        rows.iter()
            .enumerate()
            .filter(|(_, f)| keeps(f))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// `rows` without its first `n` chunks, plus `extra` as a new chunk.
    fn evict(rows: &FlowRows, n: usize, extra: Vec<FlowSummary>) -> FlowRows {
        let mut chunks: Vec<_> = rows.chunks().iter().skip(n).cloned().collect();
        chunks.push(Arc::from(extra));
        FlowRows::from_chunks(chunks)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// A cache taken through a filter change, a grouping change, an appended chunk and
        /// evictions at the front gives the from-scratch edges at every step, with chunks
        /// indexed or not.
        #[test]
        fn incremental_equals_from_scratch(
            seeds in proptest::collection::vec(0u64..100_000, 0..1500),
            cuts in proptest::collection::vec(0usize..1500, 0..8),
            kept in proptest::collection::vec(any::<bool>(), 1500),
            kept_after in proptest::collection::vec(any::<bool>(), 1500),
            filtered in any::<bool>(),
            namespace in any::<bool>(),
            finished_cut in 0usize..1800,
            indexed_cut in 0usize..1800,
            more in proptest::collection::vec(0u64..100_000, 0..40),
            evicted in 1usize..3,
        ) {
            let group = if namespace { Group::Namespace } else { Group::Workload };
            let other = if namespace { Group::Workload } else { Group::Namespace };
            let sort = Sort { column: EdgeCol::Bytes, descending: true };
            let rows: Vec<FlowSummary> = seeds.iter().map(|&s| varied(s)).collect();
            let flow_rows = split(&rows, &cuts);
            let mut search = SearchIndex::default();
            search.sync(&flow_rows, indexed_cut);
            let finished = finished_cut.min(rows.len());
            let mut cache = EdgeCache::default();
            let check = |cache: &mut EdgeCache,
                             rows: &FlowRows,
                             finished: usize,
                             index: &[u32],
                             search: &SearchIndex,
                             group: Group,
                             step: &str|
             -> Result<(), TestCaseError> {
                let got = cache.edges(rows, finished, index, search, group, sort);
                prop_assert_eq!(
                    canonical(got),
                    canonical(service_edges(rows, index, group, sort)),
                    "step {}",
                    step
                );
                Ok(())
            };
            let index = index_of(&flow_rows, filtered.then_some(&kept[..]));
            check(&mut cache, &flow_rows, finished, &index, &search, group, "first")?;
            // Filter changes, then the grouping: every partial recomputed.
            let index = index_of(&flow_rows, Some(&kept_after));
            check(&mut cache, &flow_rows, finished, &index, &search, group, "filter")?;
            check(&mut cache, &flow_rows, finished, &index, &search, other, "group")?;
            // A new snapshot: the same chunks plus one more; cached partials are reused.
            let mut chunks = flow_rows.chunks().to_vec();
            let extra: Vec<FlowSummary> = more.iter().map(|&s| varied(s)).collect();
            chunks.push(Arc::from(extra));
            let grown = FlowRows::from_chunks(chunks);
            search.sync(&grown, grown.len());
            let index = index_of(&grown, Some(&kept_after));
            let before = cache.chunks_aggregated();
            check(&mut cache, &grown, grown.len(), &index, &search, other, "append")?;
            let cached = flow_rows.chunks().iter().scan(0, |end, c| {
                *end += c.len();
                Some(*end <= finished)
            }).filter(|&c| c).count() as u64;
            let reaggregated = cache.chunks_aggregated() - before;
            prop_assert_eq!(reaggregated, flow_rows.chunks().len() as u64 - cached + 1);
            // The oldest chunks evicted, a new one live: the total is updated, not rebuilt.
            let rebuilds = cache.total_rebuilds();
            let newer: Vec<FlowSummary> = more.iter().map(|&s| varied(s + 7)).collect();
            let rest = evict(&grown, evicted, newer);
            search.sync(&rest, rest.len());
            let index = index_of(&rest, Some(&kept_after));
            let live_rows = rest.chunks().last().map_or(0, |c| c.len());
            let finished = rest.len() - live_rows;
            check(&mut cache, &rest, finished, &index, &search, other, "evict")?;
            // A capped ring: one chunk out, one in, every row finished.
            let newest: Vec<FlowSummary> = more.iter().map(|&s| varied(s + 11)).collect();
            let ring = evict(&rest, 1, newest);
            search.sync(&ring, ring.len());
            let index = index_of(&ring, Some(&kept_after));
            check(&mut cache, &ring, ring.len(), &index, &search, other, "ring")?;
            prop_assert_eq!(cache.total_rebuilds(), rebuilds, "evictions subtract");
        }
    }

    #[test]
    fn group_change_and_eviction_recompute_and_drop_partials() {
        let rows: Vec<FlowSummary> = (0..5000).map(varied).collect();
        let flow_rows = FlowRows::from_vec(rows);
        let search = SearchIndex::new(&flow_rows);
        let all: Vec<u32> = (0..flow_rows.len() as u32).collect();
        let sort = Sort {
            column: EdgeCol::Flows,
            descending: false,
        };
        let mut cache = EdgeCache::default();
        let len = flow_rows.len();
        cache.edges(&flow_rows, len, &all, &search, Group::Workload, sort);
        let n = flow_rows.chunks().len() as u64;
        assert_eq!(cache.chunks_aggregated(), n);
        cache.edges(&flow_rows, len, &all, &search, Group::Workload, sort);
        assert_eq!(
            cache.chunks_aggregated(),
            n,
            "same chunks: nothing re-aggregated"
        );
        assert_eq!(cache.total_rebuilds(), 1);
        let ns = cache.edges(&flow_rows, len, &all, &search, Group::Namespace, sort);
        assert_eq!(cache.chunks_aggregated(), 2 * n);
        assert_eq!(cache.total_rebuilds(), 2);
        assert_eq!(
            canonical(ns),
            canonical(service_edges(&flow_rows, &all, Group::Namespace, sort))
        );
        // The first chunk evicted: its partial is subtracted and dropped.
        let rest = FlowRows::from_chunks(flow_rows.chunks()[1..].to_vec());
        let mut search = search;
        search.sync(&rest, rest.len());
        let all: Vec<u32> = (0..rest.len() as u32).collect();
        let edges = cache.edges(&rest, rest.len(), &all, &search, Group::Namespace, sort);
        assert_eq!(cache.chunks.len(), rest.chunks().len());
        assert_eq!(cache.chunks_aggregated(), 2 * n);
        assert_eq!(cache.total_rebuilds(), 2);
        assert_eq!(
            canonical(edges),
            canonical(service_edges(&rest, &all, Group::Namespace, sort))
        );
    }

    #[test]
    fn a_new_index_generation_drops_the_tables_keyed_by_its_ids() {
        let first = FlowRows::from_vec((0..3000).map(varied).collect());
        let second = FlowRows::from_vec((3000..6000).map(|s| varied(s * 7)).collect());
        let sort = Sort {
            column: EdgeCol::Bytes,
            descending: true,
        };
        let mut cache = EdgeCache::default();
        for rows in [&first, &second, &first] {
            // A fresh index each time: the same ids mean other endpoints.
            let search = SearchIndex::new(rows);
            let all: Vec<u32> = (0..rows.len() as u32).collect();
            for group in [Group::Workload, Group::Namespace] {
                let got = cache.edges(rows, rows.len(), &all, &search, group, sort);
                assert_eq!(
                    canonical(got),
                    canonical(service_edges(rows, &all, group, sort))
                );
            }
        }
    }
}
