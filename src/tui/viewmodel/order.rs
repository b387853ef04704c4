//! The Flows order kept across snapshots: a new snapshot that only appends finished chunks,
//! drops the oldest ones and replaces the live rows is sorted by merging, not from scratch.
//!
//! Why: re-sorting 1 M rows on every snapshot of a live capture cost 0.09–0.3 s of the UI
//! thread. Finished chunks are immutable and shared by identity (`Arc`), so their sorted keys
//! stay valid; only the new chunks and the live rows are sorted, then merged in one pass.
//!
//! Guarantee: the result is exactly [`super::sort_all`]'s (same key, same tie-breaks: first
//! packet, then serial). Columns whose key is not a function of the row alone (the finding
//! count, the text columns, which depend on `names`) always use `sort_all`.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::summary::FlowSummary;
use crate::tui::app::{FlowCol, Sort};
use crate::tui::findings::SnapshotFindings;
use crate::tui::source::FlowRows;

/// (column key, first packet, serial, row index): a total order, serials being unique.
type Keyed = (u64, u64, u64, u32);

/// Sorted keys of the finished rows of the last snapshot, with the chunks they cover.
#[derive(Default)]
pub struct SortCache {
    sort: Option<Sort<FlowCol>>,
    chunks: Vec<Arc<[FlowSummary]>>,
    keyed: Vec<Keyed>,
}

impl std::fmt::Debug for SortCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortCache")
            .field("sort", &self.sort)
            .field("chunks", &self.chunks.len())
            .field("rows", &self.keyed.len())
            .finish()
    }
}

/// The key of a column whose value comes from the row alone, or None.
fn row_key(column: FlowCol) -> Option<fn(&FlowSummary) -> u64> {
    match column {
        FlowCol::Time => Some(|f| f.first_ns),
        FlowCol::Port => Some(|f| u64::from(f.dst.port)),
        FlowCol::Enc => Some(|f| super::enc_rank(f.app.encryption)),
        FlowCol::Packets => Some(|f| f.packets()),
        FlowCol::Bytes => Some(|f| f.bytes()),
        FlowCol::Verdict => Some(super::verdict_rank),
        _ => None,
    }
}

fn compare(descending: bool) -> impl Fn(&Keyed, &Keyed) -> Ordering {
    move |a, b| {
        let primary = if descending {
            b.0.cmp(&a.0)
        } else {
            a.0.cmp(&b.0)
        };
        primary.then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    }
}

fn merge(a: &[Keyed], b: &[Keyed], cmp: &impl Fn(&Keyed, &Keyed) -> Ordering) -> Vec<Keyed> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if cmp(&a[i], &b[j]) != Ordering::Greater {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

impl SortCache {
    /// Every row's index in `sort` order; `live_rows` trailing rows are the live ones.
    pub fn sorted(
        &mut self,
        rows: &FlowRows,
        live_rows: usize,
        findings: &SnapshotFindings,
        sort: Sort<FlowCol>,
        names: bool,
    ) -> Vec<u32> {
        let Some(key) = row_key(sort.column) else {
            *self = SortCache::default();
            return super::sort_all(rows, findings, sort, names);
        };
        let cmp = compare(sort.descending);
        let chunks = rows.chunks();
        let live_chunks = usize::from(live_rows > 0);
        let finished_chunks = &chunks[..chunks.len().saturating_sub(live_chunks)];
        let finished_rows: usize = finished_chunks.iter().map(|c| c.len()).sum();
        let keyed_range = |from: usize, to: usize| -> Vec<Keyed> {
            let mut keyed: Vec<Keyed> = (from..to)
                .filter_map(|i| {
                    rows.get(i)
                        .map(|f| (key(f), f.first_ns, f.serial, i as u32))
                })
                .collect();
            keyed.sort_unstable_by(&cmp);
            keyed
        };

        // How many of the cached chunks were dropped from the front, if the rest is still
        // the start of this snapshot's finished chunks.
        let dropped = (self.sort == Some(sort))
            .then(|| {
                let kept = match finished_chunks.first() {
                    Some(first) => self.chunks.iter().position(|c| Arc::ptr_eq(c, first))?,
                    None => self.chunks.len(),
                };
                let rest = &self.chunks[kept..];
                (rest.len() <= finished_chunks.len()
                    && rest
                        .iter()
                        .zip(finished_chunks)
                        .all(|(a, b)| Arc::ptr_eq(a, b)))
                .then_some(kept)
            })
            .flatten();
        self.keyed = match dropped {
            Some(kept) => {
                let dropped_rows: usize = self.chunks[..kept].iter().map(|c| c.len()).sum();
                let retained_rows: usize = self.chunks[kept..].iter().map(|c| c.len()).sum();
                let retained: Vec<Keyed> = self
                    .keyed
                    .iter()
                    .filter(|k| k.3 as usize >= dropped_rows)
                    .map(|&(a, b, c, i)| (a, b, c, i - dropped_rows as u32))
                    .collect();
                let added = keyed_range(retained_rows, finished_rows);
                merge(&retained, &added, &cmp)
            }
            None => keyed_range(0, finished_rows),
        };
        self.sort = Some(sort);
        self.chunks = finished_chunks.to_vec();
        let live = keyed_range(finished_rows, rows.len());
        merge(&self.keyed, &live, &cmp)
            .into_iter()
            .map(|k| k.3)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::tui::synthetic;

    const COLUMNS: [FlowCol; 7] = [
        FlowCol::Time,
        FlowCol::Port,
        FlowCol::Enc,
        FlowCol::Packets,
        FlowCol::Bytes,
        FlowCol::Verdict,
        FlowCol::Source,
    ];

    proptest! {
        /// Snapshots that append chunks, drop the oldest and replace the live rows are
        /// ordered exactly as a from-scratch sort orders them.
        #[test]
        fn incremental_equals_from_scratch(
            steps in proptest::collection::vec((0usize..4, 0usize..3, 0usize..40), 1..12),
            column in 0usize..COLUMNS.len(),
            descending in any::<bool>(),
        ) {
            let pool = synthetic::flows(4000);
            let mut next = 0usize;
            let mut take = |n: usize| -> Arc<[FlowSummary]> {
                let chunk: Vec<FlowSummary> = pool[next..next + n].to_vec();
                next += n;
                Arc::from(chunk)
            };
            let sort = Sort { column: COLUMNS[column], descending };
            let findings = SnapshotFindings::default();
            let mut cache = SortCache::default();
            let mut finished: Vec<Arc<[FlowSummary]>> = Vec::new();
            for (append, drop, live) in steps {
                for _ in 0..append {
                    finished.push(take(50));
                }
                let dropped = drop.min(finished.len());
                finished.drain(..dropped);
                let mut chunks = finished.clone();
                if live > 0 {
                    chunks.push(take(live));
                }
                let rows = FlowRows::from_chunks(chunks);
                let got = cache.sorted(&rows, live, &findings, sort, false);
                let want = super::super::sort_all(&rows, &findings, sort, false);
                prop_assert_eq!(got, want);
            }
        }
    }
}
