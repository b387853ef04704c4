//! Incremental Services aggregation: each finished chunk of rows is aggregated into partial
//! edges once (per grouping and per set of kept rows), and every snapshot only merges the
//! cached partials with the live rows' edges.
//!
//! Guarantees: [`EdgeCache::edges`] gives exactly the edges [`service_edges`] computes from
//! scratch (a property test checks it on random rows split into random chunks, filtered or
//! not): counters add up, applications add up, the kept ports are the first
//! [`MAX_EDGE_PORTS`] distinct ones in row order and the edge's filter comes from its first
//! flow, because partials keep ports in first-seen order and are merged in row order.
//! A partial is reused only for the very same chunk (pointer identity, the cache holds the
//! `Arc` so the address cannot be reused) with the same grouping and the same kept rows;
//! partials of chunks no longer in the snapshot are dropped, so memory follows the rows.
//! Pure: no I/O, no clock, no threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{
    Edge, EdgeCol, Group, GroupKey, MAX_EDGE_PORTS, Sort, count_flow, edge_filter, finish_edge,
    flow_endpoints, group_key, has_ports, kept_rows, sort_edges,
};
use crate::summary::FlowSummary;
use crate::tui::source::FlowRows;

#[cfg(test)]
use super::service_edges;

/// A [`GroupKey`] that owns its strings, so partials outlive the borrow of their rows.
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

    fn name(&self) -> String {
        match self {
            OwnedGroupKey::Pair(a, b) => GroupKey::Pair(a, b).name(),
            OwnedGroupKey::One(a) => GroupKey::One(a).name(),
            OwnedGroupKey::Owned(s) => s.to_string(),
        }
    }
}

type EdgeKey = (OwnedGroupKey, OwnedGroupKey);

/// One edge's aggregate over one chunk's kept rows.
#[derive(Debug)]
struct PartialEdge {
    /// Counters only (names, applications, ports and filter are filled in when finished).
    counts: Edge,
    /// The chunk-local row of the edge's first flow.
    first_row: usize,
    apps: BTreeMap<&'static str, u64>,
    /// Distinct destination ports in first-seen order, at most [`MAX_EDGE_PORTS`].
    ports: Vec<u16>,
}

/// The partial edges of one chunk, with what they were computed from.
#[derive(Debug)]
struct ChunkEdges {
    rows: Arc<[FlowSummary]>,
    group: Group,
    /// The chunk's slice of the kept-row mask (`None`: every row kept).
    keep: Option<Box<[bool]>>,
    edges: Vec<(EdgeKey, PartialEdge)>,
}

/// One edge's aggregate over the leading cached chunks, with its labels (they come from
/// the first flow, which later chunks cannot change, so they are formatted once).
#[derive(Debug, Clone)]
struct TotalEdge {
    counts: Edge,
    apps: BTreeMap<&'static str, u64>,
    ports: Vec<u16>,
    names: (String, String),
    filter: String,
}

/// Per-chunk partial Services aggregates of the finished rows (see the module doc).
#[derive(Debug, Default)]
pub struct EdgeCache {
    /// The finished chunks' partials, in row order.
    chunks: Vec<ChunkEdges>,
    /// The merge of the first `covered` chunks' partials (a new snapshot that only appends
    /// chunks merges just those; any other change rebuilds it from the partials).
    total: HashMap<EdgeKey, TotalEdge>,
    covered: usize,
    /// Chunks aggregated (not found in the cache) since the cache was created.
    aggregated: u64,
}

fn aggregate_chunk(
    rows: &[FlowSummary],
    keep: Option<&[bool]>,
    group: Group,
) -> Vec<(EdgeKey, PartialEdge)> {
    let mut map: HashMap<(GroupKey<'_>, GroupKey<'_>), PartialEdge> = HashMap::new();
    for (i, f) in rows.iter().enumerate() {
        if f.outer || keep.is_some_and(|k| !k[i]) {
            continue;
        }
        let (src, dst) = flow_endpoints(f);
        let key = (
            group_key(src.0, src.1, group),
            group_key(dst.0, dst.1, group),
        );
        let part = map.entry(key).or_insert_with(|| PartialEdge {
            counts: Edge::default(),
            first_row: i,
            apps: BTreeMap::new(),
            ports: Vec::new(),
        });
        let app = count_flow(&mut part.counts, f);
        *part.apps.entry(app).or_default() += 1;
        let port = f.dst.port;
        if has_ports(f) && part.ports.len() < MAX_EDGE_PORTS && !part.ports.contains(&port) {
            part.ports.push(port);
        }
    }
    map.into_iter()
        .map(|((s, d), part)| ((OwnedGroupKey::new(&s), OwnedGroupKey::new(&d)), part))
        .collect()
}

/// Adds a later partial to an edge: counters and applications add up, ports keep the
/// first distinct ones in row order.
fn merge_into(
    counts: &mut Edge,
    apps: &mut BTreeMap<&'static str, u64>,
    ports: &mut Vec<u16>,
    part: &PartialEdge,
) {
    let p = &part.counts;
    counts.flows += p.flows;
    counts.bytes += p.bytes;
    counts.encrypted += p.encrypted;
    counts.plaintext += p.plaintext;
    counts.allowed += p.allowed;
    counts.denied += p.denied;
    counts.no_verdict += p.no_verdict;
    for (app, n) in &part.apps {
        *apps.entry(app).or_default() += n;
    }
    for &port in &part.ports {
        if ports.len() < MAX_EDGE_PORTS && !ports.contains(&port) {
            ports.push(port);
        }
    }
}

fn new_total(key: &EdgeKey, first: &FlowSummary, group: Group) -> TotalEdge {
    TotalEdge {
        counts: Edge::default(),
        apps: BTreeMap::new(),
        ports: Vec::new(),
        names: (key.0.name(), key.1.name()),
        filter: edge_filter(flow_endpoints(first), group),
    }
}

impl EdgeCache {
    /// Chunks aggregated so far (a chunk found in the cache is not counted again).
    pub fn chunks_aggregated(&self) -> u64 {
        self.aggregated
    }

    /// The Services edges of the rows `index` keeps, like [`super::service_edges`]. Chunks
    /// lying entirely within the first `finished` rows are immutable: their partials are
    /// cached and reused; the other (live) rows are aggregated anew on every call.
    pub fn edges(
        &mut self,
        rows: &FlowRows,
        finished: usize,
        index: &[u32],
        group: Group,
        sort: Sort<EdgeCol>,
    ) -> Vec<Edge> {
        let keep = kept_rows(rows.len(), index);
        let old_order: Vec<*const FlowSummary> =
            self.chunks.iter().map(|c| c.rows.as_ptr()).collect();
        let mut old: HashMap<*const FlowSummary, ChunkEdges> = std::mem::take(&mut self.chunks)
            .into_iter()
            .filter(|c| c.group == group)
            .map(|c| (c.rows.as_ptr(), c))
            .collect();
        let mut live: Vec<ChunkEdges> = Vec::new();
        // Whether the chunks the total covers are still the leading ones, unchanged.
        let mut total_valid = true;
        let mut start = 0;
        for chunk in rows.chunks() {
            let end = start + chunk.len();
            let chunk_keep = keep.as_ref().map(|k| &k[start..end]);
            let reusable = old
                .remove(&chunk.as_ptr())
                .filter(|c| c.rows.len() == chunk.len() && c.keep.as_deref() == chunk_keep);
            let position = self.chunks.len();
            if position < self.covered
                && (reusable.is_none() || end > finished || old_order[position] != chunk.as_ptr())
            {
                total_valid = false;
            }
            let entry = reusable.unwrap_or_else(|| {
                self.aggregated += 1;
                ChunkEdges {
                    rows: chunk.clone(),
                    group,
                    keep: chunk_keep.map(Box::from),
                    edges: aggregate_chunk(chunk, chunk_keep, group),
                }
            });
            // Finished chunks come first, so the cached ones and then the live ones are
            // in row order.
            if end <= finished {
                self.chunks.push(entry);
            } else {
                live.push(entry);
            }
            start = end;
        }
        if !total_valid || self.chunks.len() < self.covered {
            self.total.clear();
            self.covered = 0;
        }
        for chunk in &self.chunks[self.covered..] {
            for (key, part) in &chunk.edges {
                let total = match self.total.get_mut(key) {
                    Some(t) => t,
                    None => self
                        .total
                        .entry(key.clone())
                        .or_insert_with(|| new_total(key, &chunk.rows[part.first_row], group)),
                };
                merge_into(&mut total.counts, &mut total.apps, &mut total.ports, part);
            }
        }
        self.covered = self.chunks.len();
        // The live rows on top of the total, without changing it.
        let mut extra: HashMap<&EdgeKey, TotalEdge> = HashMap::new();
        for chunk in &live {
            for (key, part) in &chunk.edges {
                let edge = extra
                    .entry(key)
                    .or_insert_with(|| match self.total.get(key) {
                        Some(t) => t.clone(),
                        None => new_total(key, &chunk.rows[part.first_row], group),
                    });
                merge_into(&mut edge.counts, &mut edge.apps, &mut edge.ports, part);
            }
        }
        let finish = |t: TotalEdge| finish_edge(t.counts, t.names, t.apps, t.ports, t.filter);
        let mut edges: Vec<Edge> = self
            .total
            .iter()
            .filter(|(key, _)| !extra.contains_key(key))
            .map(|(_, t)| finish(t.clone()))
            .collect();
        edges.extend(extra.into_values().map(finish));
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
    /// (beyond the kept maximum), outer (tunnel) rows and rows without enrichment.
    fn varied(seed: u64) -> FlowSummary {
        let mut f = synthetic::flow(seed);
        f.dst.port = 8000 + (seed.wrapping_mul(0x9e37_79b9) >> 7) as u16 % 40;
        f.outer = seed.is_multiple_of(17);
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn incremental_equals_from_scratch(
            seeds in proptest::collection::vec(0u64..100_000, 0..2000),
            cuts in proptest::collection::vec(0usize..2000, 0..8),
            kept in proptest::collection::vec(any::<bool>(), 2000),
            filtered in any::<bool>(),
            namespace in any::<bool>(),
            finished_cut in 0usize..2400,
            more in proptest::collection::vec(0u64..100_000, 0..40),
        ) {
            let group = if namespace { Group::Namespace } else { Group::Workload };
            let sort = Sort { column: EdgeCol::Bytes, descending: true };
            let rows: Vec<FlowSummary> = seeds.iter().map(|&s| varied(s)).collect();
            let flow_rows = split(&rows, &cuts);
            let index: Vec<u32> = (0..rows.len() as u32)
                .filter(|&i| !filtered || kept[i as usize])
                .collect();
            let finished = finished_cut.min(rows.len());
            let mut cache = EdgeCache::default();
            let first = cache.edges(&flow_rows, finished, &index, group, sort);
            prop_assert_eq!(
                canonical(first),
                canonical(service_edges(&flow_rows, &index, group, sort))
            );
            // A new snapshot: the same chunks plus one more; cached partials are reused.
            let mut chunks = flow_rows.chunks().to_vec();
            let extra: Vec<FlowSummary> = more.iter().map(|&s| varied(s)).collect();
            chunks.push(Arc::from(extra));
            let grown = FlowRows::from_chunks(chunks);
            let index: Vec<u32> = index
                .into_iter()
                .chain((rows.len()..grown.len()).map(|i| i as u32))
                .collect();
            let before = cache.chunks_aggregated();
            let second = cache.edges(&grown, grown.len(), &index, group, sort);
            prop_assert_eq!(
                canonical(second),
                canonical(service_edges(&grown, &index, group, sort))
            );
            let cached = flow_rows.chunks().iter().scan(0, |end, c| {
                *end += c.len();
                Some(*end <= finished)
            }).filter(|&c| c).count() as u64;
            let reaggregated = cache.chunks_aggregated() - before;
            prop_assert_eq!(reaggregated, flow_rows.chunks().len() as u64 - cached + 1);
            // The oldest chunk evicted, the newest one live again.
            let rest = FlowRows::from_chunks(grown.chunks().iter().skip(1).cloned().collect());
            let first_len = grown.chunks().first().map_or(0, |c| c.len());
            let index: Vec<u32> = index
                .into_iter()
                .filter_map(|i| (i as usize).checked_sub(first_len).map(|i| i as u32))
                .collect();
            let live_rows = grown.chunks().last().map_or(0, |c| c.len());
            let third = cache.edges(&rest, rest.len().saturating_sub(live_rows), &index, group, sort);
            prop_assert_eq!(
                canonical(third),
                canonical(service_edges(&rest, &index, group, sort))
            );
        }
    }

    #[test]
    fn group_change_and_eviction_recompute_and_drop_partials() {
        let rows: Vec<FlowSummary> = (0..5000).map(varied).collect();
        let flow_rows = FlowRows::from_vec(rows);
        let all: Vec<u32> = (0..flow_rows.len() as u32).collect();
        let sort = Sort {
            column: EdgeCol::Flows,
            descending: false,
        };
        let mut cache = EdgeCache::default();
        cache.edges(&flow_rows, flow_rows.len(), &all, Group::Workload, sort);
        let n = flow_rows.chunks().len() as u64;
        assert_eq!(cache.chunks_aggregated(), n);
        cache.edges(&flow_rows, flow_rows.len(), &all, Group::Workload, sort);
        assert_eq!(
            cache.chunks_aggregated(),
            n,
            "same chunks: nothing re-aggregated"
        );
        let ns = cache.edges(&flow_rows, flow_rows.len(), &all, Group::Namespace, sort);
        assert_eq!(cache.chunks_aggregated(), 2 * n);
        assert_eq!(
            canonical(ns),
            canonical(service_edges(&flow_rows, &all, Group::Namespace, sort))
        );
        // The first chunk evicted: its partial is dropped.
        let rest = FlowRows::from_chunks(flow_rows.chunks()[1..].to_vec());
        let all: Vec<u32> = (0..rest.len() as u32).collect();
        let edges = cache.edges(&rest, rest.len(), &all, Group::Namespace, sort);
        assert_eq!(cache.chunks.len(), rest.chunks().len());
        assert_eq!(
            canonical(edges),
            canonical(service_edges(&rest, &all, Group::Namespace, sort))
        );
    }
}
