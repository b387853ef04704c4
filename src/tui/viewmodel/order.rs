//! The Flows order kept across snapshots: a new snapshot that appends finished chunks, drops
//! the oldest ones and replaces the live rows costs work proportional to the rows that
//! changed plus one copy of the row indexes, not a sort of every row.
//!
//! Why: re-sorting 1 M rows on every snapshot of a live capture cost 0.09–0.3 s of the UI
//! thread, and merging 32-byte sort keys of every row still 29–38 ms. Finished chunks are
//! immutable and shared by identity (`Arc`), so their order stays valid. The cache keeps
//! that order as bare row indexes (4 B a row) plus *fences*: the full sort key of about one
//! row in [`FENCE_GAP`], with the position it splits the order at (fences are added where
//! two drift more than `2 * FENCE_GAP` rows apart, and thinned where eviction crowds them).
//! New rows are sorted; each one's fence is found by galloping from the previous row's, then
//! its place by a binary search over the at most `2 * FENCE_GAP` rows between two fences
//! (reading their keys from the rows); the new rows are inserted with one `memmove`, the
//! live rows are merged into the copy that is returned (written into the caller's previous
//! allocation). Evicting the oldest chunks is one compaction pass over the indexes.
//!
//! Text columns (source, destination, app, SNI/Host) are keyed by an id in the cache's own
//! interner (each finished row's string is formatted once, when its chunk arrives); ids are
//! compared by their string's rank, which is updated by a merge when new strings appear.
//! Each known row's id is kept (4 B a row), so placing a row reads another row only when
//! their strings are equal.
//! The interner keeps strings of evicted rows, so it is rebuilt from scratch once it holds
//! more than twice as many strings as there are rows.
//!
//! The finding count depends on the snapshot's findings, not on the row. While the findings
//! are the same `Arc` nothing changes. New findings (the source recomputes them now and then)
//! are compared with the previous ones flow by flow ([`SnapshotFindings::changed_counts`]:
//! one merge of two lists sorted by serial, proportional to the flows they name); the known rows whose count changed are
//! found through their chunks' serial ranges, taken out of the order (located with the old
//! counts) and inserted again with the new ones. When those rows are spread over more than
//! a quarter of the chunks, the order is rebuilt from scratch instead (cheaper than scanning
//! them).
//!
//! Guarantee: the result is exactly [`super::sort_all`]'s (same key, same tie-breaks: first
//! packet, then serial); a property test checks it over appends, evictions, live rows,
//! findings that change few or many counts, and every sortable column. Pure: no I/O, no
//! clock, no threads.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::FixedState;

use crate::summary::FlowSummary;
use crate::tui::app::{FlowCol, Sort};
use crate::tui::findings::SnapshotFindings;
use crate::tui::source::{CHUNK_ROWS, FlowRows};

/// Rows between two fences (about; new rows become fences where they are sparser).
const FENCE_GAP: usize = 16;

/// A row's sort key: the column key (a number, or a text id), then the tie-breaks.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u64,
    first_ns: u64,
    serial: u64,
}

/// A split of the order: every row before `pos` sorts before `entry`, none after it does.
#[derive(Debug, Clone, Copy)]
struct Fence {
    entry: Entry,
    pos: usize,
}

/// Text keys interned once, with their rank in string order.
#[derive(Debug)]
struct TextKeys {
    ids: HashMap<Arc<str>, u32, FixedState>,
    values: Vec<Arc<str>>,
    /// Ids in string order (only the ids ranked so far).
    by_value: Vec<u32>,
    /// Id → position in `by_value`.
    rank: Vec<u64>,
}

impl Default for TextKeys {
    fn default() -> Self {
        TextKeys {
            ids: HashMap::with_hasher(FixedState::with_seed(0x50c7)),
            values: Vec::new(),
            by_value: Vec::new(),
            rank: Vec::new(),
        }
    }
}

impl TextKeys {
    fn intern(&mut self, value: String) -> u64 {
        if let Some(&id) = self.ids.get(value.as_str()) {
            return u64::from(id);
        }
        let id = self.values.len() as u32;
        let value: Arc<str> = Arc::from(value);
        self.values.push(value.clone());
        self.ids.insert(value, id);
        u64::from(id)
    }

    /// Ranks the strings interned since the last call (a sort of the new ones and a merge).
    fn rank_new(&mut self) {
        let ranked = self.by_value.len();
        if ranked == self.values.len() {
            return;
        }
        let values = &self.values;
        let mut new: Vec<u32> = (ranked as u32..values.len() as u32).collect();
        new.sort_unstable_by(|&a, &b| values[a as usize].cmp(&values[b as usize]));
        let old = std::mem::take(&mut self.by_value);
        let mut merged = Vec::with_capacity(values.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() && j < new.len() {
            if values[old[i] as usize] <= values[new[j] as usize] {
                merged.push(old[i]);
                i += 1;
            } else {
                merged.push(new[j]);
                j += 1;
            }
        }
        merged.extend_from_slice(&old[i..]);
        merged.extend_from_slice(&new[j..]);
        self.rank.resize(values.len(), 0);
        for (rank, &id) in merged.iter().enumerate() {
            self.rank[id as usize] = rank as u64;
        }
        self.by_value = merged;
    }
}

/// How entries compare: the column key (descending or not, through the text ranks for a
/// text column), then first packet and serial ascending, as [`super::sort_all`] does.
struct Comparator<'a> {
    descending: bool,
    ranks: Option<&'a [u64]>,
}

impl Comparator<'_> {
    fn primary(&self, key: u64) -> u64 {
        match self.ranks {
            Some(ranks) => ranks.get(key as usize).copied().unwrap_or(u64::MAX),
            None => key,
        }
    }

    fn primary_cmp(&self, a: u64, b: u64) -> Ordering {
        let (x, y) = (self.primary(a), self.primary(b));
        if self.descending {
            y.cmp(&x)
        } else {
            x.cmp(&y)
        }
    }

    fn cmp(&self, a: &Entry, b: &Entry) -> Ordering {
        self.primary_cmp(a.key, b.key)
            .then(a.first_ns.cmp(&b.first_ns))
            .then(a.serial.cmp(&b.serial))
    }
}

/// What the order is computed from (besides the rows).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Params {
    sort: Sort<FlowCol>,
    /// Only for the endpoint columns (the others do not depend on it).
    names: bool,
}

/// The order of the finished rows of the last snapshot, with the chunks it covers.
#[derive(Default)]
pub struct SortCache {
    params: Option<Params>,
    /// The findings the order was computed with (Findings column only).
    findings: Option<Arc<SnapshotFindings>>,
    chunks: Vec<Arc<[FlowSummary]>>,
    /// First row of each chunk in `chunks`.
    starts: Vec<usize>,
    /// Lowest and highest serial of each chunk in `chunks`.
    serial_ranges: Vec<(u64, u64)>,
    /// Text columns: each chunk's rows' text ids.
    text_ids: Vec<Vec<u32>>,
    texts: TextKeys,
    /// Finished rows' indexes, in order.
    order: Vec<u32>,
    /// Sorted by entry and by position.
    fences: Vec<Fence>,
    /// The previous fences' allocation, reused.
    spare_fences: Vec<Fence>,
}

impl std::fmt::Debug for SortCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortCache")
            .field("params", &self.params)
            .field("chunks", &self.chunks.len())
            .field("rows", &self.order.len())
            .field("fences", &self.fences.len())
            .field("texts", &self.texts.values.len())
            .finish()
    }
}

/// Where each of `adds` (sorted) goes in `order`: (position before insertion, index of the
/// first fence that sorts after it). Positions never decrease.
fn positions(
    order: &[u32],
    fences: &[Fence],
    adds: &[(Entry, u32)],
    cmp: &Comparator<'_>,
    row_sorts_before: impl Fn(u32, &Entry) -> bool,
) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(adds.len());
    let (mut first_fence, mut lowest) = (0, 0);
    for (entry, _) in adds {
        // Gallop from the previous row's fence (the rows are sorted, usually a few fences
        // apart), then binary search the last doubling.
        let before = |f: &Fence| cmp.cmp(&f.entry, entry) == Ordering::Less;
        let rest = &fences[first_fence..];
        let mut bound = 1;
        while bound <= rest.len() && before(&rest[bound - 1]) {
            bound *= 2;
        }
        let (known_before, upto) = (bound / 2, bound.min(rest.len()));
        let fence =
            first_fence + known_before + rest[known_before..upto].partition_point(|f| before(f));
        let hi = fences.get(fence).map_or(order.len(), |f| f.pos);
        let lo = match fence {
            0 => 0,
            _ => fences[fence - 1].pos,
        }
        .max(lowest)
        .min(hi);
        let pos = lo + order[lo..hi].partition_point(|&i| row_sorts_before(i, entry));
        out.push((pos, fence));
        (first_fence, lowest) = (fence, pos);
    }
    out
}

impl SortCache {
    /// Every row's index in `sort` order; the rows after the last finished chunk (the
    /// trailing `live_rows`) are the live ones, new in every snapshot.
    pub fn sorted(
        &mut self,
        rows: &FlowRows,
        live_rows: usize,
        findings: &Arc<SnapshotFindings>,
        sort: Sort<FlowCol>,
        names: bool,
    ) -> Vec<u32> {
        let mut out = Vec::new();
        self.sort_into(&mut out, rows, live_rows, findings, sort, names);
        out
    }

    /// [`SortCache::sorted`] into `out`, whose allocation is reused (the previous
    /// snapshot's order: a million-row order in fresh memory costs its page faults).
    pub fn sort_into(
        &mut self,
        out: &mut Vec<u32>,
        rows: &FlowRows,
        live_rows: usize,
        findings: &Arc<SnapshotFindings>,
        sort: Sort<FlowCol>,
        names: bool,
    ) {
        let params = Params {
            sort,
            names: names && matches!(sort.column, FlowCol::Source | FlowCol::Destination),
        };
        let chunks = rows.chunks();
        let live_chunks = usize::from(live_rows > 0).min(chunks.len());
        let finished = &chunks[..chunks.len() - live_chunks];

        let texts_bounded = self.texts.values.len() <= 2 * rows.len() + CHUNK_ROWS;
        let dropped = (self.params == Some(params) && texts_bounded)
            .then(|| self.dropped_chunks(finished))
            .flatten();
        let by_findings = sort.column == FlowCol::Findings;
        match dropped {
            Some(dropped) => {
                self.evict(dropped);
                let moved = match by_findings {
                    true => self.take_changed_rows(findings, params),
                    false => Some(Vec::new()),
                };
                self.findings = by_findings.then(|| findings.clone());
                match moved {
                    Some(moved) => {
                        let known = self.chunks.len();
                        self.insert_rows(&finished[known..], &moved, params);
                        self.split_large_gaps(params);
                    }
                    None => self.rebuild(finished, params),
                }
            }
            None => {
                self.findings = by_findings.then(|| findings.clone());
                self.rebuild(finished, params);
            }
        }

        let live_start =
            self.starts.last().copied().unwrap_or(0) + self.chunks.last().map_or(0, |c| c.len());
        let mut live: Vec<(Entry, u32)> = chunks[self.chunks.len()..]
            .iter()
            .flat_map(|c| c.iter())
            .enumerate()
            .map(|(i, f)| {
                let key = self.key_of(f, params);
                (entry(key, f), (live_start + i) as u32)
            })
            .collect();
        self.texts.rank_new();
        self.merge_into(out, &mut live, params);
    }

    /// How many cached chunks were dropped from the front, if the rest is still the start
    /// of `finished`.
    fn dropped_chunks(&self, finished: &[Arc<[FlowSummary]>]) -> Option<usize> {
        let kept = match finished.first() {
            Some(first) => self.chunks.iter().position(|c| Arc::ptr_eq(c, first))?,
            None => self.chunks.len(),
        };
        let rest = &self.chunks[kept..];
        (rest.len() <= finished.len() && rest.iter().zip(finished).all(|(a, b)| Arc::ptr_eq(a, b)))
            .then_some(kept)
    }

    fn key_of(&mut self, f: &FlowSummary, params: Params) -> u64 {
        if super::is_text_column(params.sort.column) {
            self.texts
                .intern(super::text_key(f, params.sort.column, params.names))
        } else {
            let findings = self.findings.as_deref();
            super::numeric_key(f, params.sort.column, findings.unwrap_or(&NO_FINDINGS))
        }
    }

    /// Registers `chunks` as known (text ids interned) and returns their rows' entries.
    fn register(&mut self, chunks: &[Arc<[FlowSummary]>], params: Params) -> Vec<(Entry, u32)> {
        let text = super::is_text_column(params.sort.column);
        let mut next =
            self.starts.last().copied().unwrap_or(0) + self.chunks.last().map_or(0, |c| c.len());
        let mut out = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
        for chunk in chunks {
            let keys: Vec<u64> = chunk.iter().map(|f| self.key_of(f, params)).collect();
            out.extend(
                chunk
                    .iter()
                    .zip(&keys)
                    .enumerate()
                    .map(|(i, (f, &key))| (entry(key, f), (next + i) as u32)),
            );
            let serials = chunk.iter().map(|f| f.serial);
            let range = (
                serials.clone().min().unwrap_or(u64::MAX),
                serials.max().unwrap_or(0),
            );
            self.serial_ranges.push(range);
            self.starts.push(next);
            self.chunks.push(chunk.clone());
            self.text_ids.push(match text {
                true => keys.iter().map(|&k| k as u32).collect(),
                false => Vec::new(),
            });
            next += chunk.len();
        }
        out
    }

    /// The chunk and offset of finished row `index` (a row of a known chunk).
    fn locate(&self, index: u32) -> (usize, usize) {
        let index = index as usize;
        let chunk = self
            .starts
            .partition_point(|&s| s <= index)
            .saturating_sub(1);
        (chunk, index - self.starts[chunk])
    }

    /// Whether finished row `index` sorts before `entry`. A text column's rank decides
    /// without reading the row (its text id is in the compact per-chunk list) unless the
    /// strings are equal.
    fn row_sorts_before(
        &self,
        index: u32,
        entry: &Entry,
        cmp: &Comparator<'_>,
        params: Params,
    ) -> bool {
        if cmp.ranks.is_some() {
            let (chunk, offset) = self.locate(index);
            let key = u64::from(self.text_ids[chunk][offset]);
            match cmp.primary_cmp(key, entry.key) {
                Ordering::Equal => {}
                primary => return primary == Ordering::Less,
            }
        }
        cmp.cmp(&self.entry_at(index, params), entry) == Ordering::Less
    }

    /// The entry of finished row `index` (a row of a known chunk).
    fn entry_at(&self, index: u32, params: Params) -> Entry {
        let (chunk, offset) = self.locate(index);
        let f = &self.chunks[chunk][offset];
        let key = if super::is_text_column(params.sort.column) {
            u64::from(self.text_ids[chunk][offset])
        } else {
            let findings = self.findings.as_deref().unwrap_or(&NO_FINDINGS);
            super::numeric_key(f, params.sort.column, findings)
        };
        entry(key, f)
    }

    fn comparator(&self, params: Params) -> Comparator<'_> {
        Comparator {
            descending: params.sort.descending,
            ranks: super::is_text_column(params.sort.column).then_some(&self.texts.rank[..]),
        }
    }

    /// Sorts the finished rows from scratch.
    fn rebuild(&mut self, finished: &[Arc<[FlowSummary]>], params: Params) {
        let findings = self.findings.take();
        *self = SortCache {
            params: Some(params),
            findings,
            ..SortCache::default()
        };
        let mut all = self.register(finished, params);
        self.texts.rank_new();
        let cmp = self.comparator(params);
        all.sort_unstable_by(|a, b| cmp.cmp(&a.0, &b.0));
        self.fences = all
            .iter()
            .enumerate()
            .step_by(FENCE_GAP)
            .map(|(pos, &(entry, _))| Fence { entry, pos })
            .collect();
        self.order = all.into_iter().map(|(_, i)| i).collect();
    }

    /// Forgets the first `dropped` chunks: their rows leave the order (one compaction pass
    /// that also renumbers the rest), fences move with the rows they split.
    fn evict(&mut self, dropped: usize) {
        if dropped == 0 {
            return;
        }
        let dropped_rows = self.starts.get(dropped).copied().unwrap_or_else(|| {
            self.starts.last().copied().unwrap_or(0) + self.chunks.last().map_or(0, |c| c.len())
        });
        self.chunks.drain(..dropped);
        self.starts.drain(..dropped);
        self.text_ids.drain(..dropped);
        self.serial_ranges.drain(..dropped);
        for start in &mut self.starts {
            *start -= dropped_rows;
        }
        let threshold = dropped_rows as u32;
        self.compact(|_, index| index.checked_sub(threshold));
    }

    /// Keeps the rows of the order `keep` maps to an index (renumbered to it), in one pass;
    /// fences move with the rows they split, and those crowded together are dropped (fewer
    /// fences are still valid splits).
    fn compact(&mut self, mut keep: impl FnMut(usize, u32) -> Option<u32>) {
        let (mut kept, mut fence) = (0, 0);
        for read in 0..self.order.len() {
            while fence < self.fences.len() && self.fences[fence].pos == read {
                self.fences[fence].pos = kept;
                fence += 1;
            }
            if let Some(index) = keep(read, self.order[read]) {
                self.order[kept] = index;
                kept += 1;
            }
        }
        for f in &mut self.fences[fence..] {
            f.pos = kept;
        }
        self.order.truncate(kept);
        let mut last: Option<usize> = None;
        self.fences.retain(|f| {
            let keep = last.is_none_or(|l| f.pos >= l + FENCE_GAP / 2);
            if keep {
                last = Some(f.pos);
            }
            keep
        });
    }

    /// Findings column, new findings: takes the known rows whose finding count changed out
    /// of the order (found with the old counts) and returns them, to be inserted again with
    /// the new counts. None when the order must be rebuilt instead: no old findings, or the
    /// changed rows are spread over more than a quarter of the chunks.
    fn take_changed_rows(
        &mut self,
        findings: &Arc<SnapshotFindings>,
        params: Params,
    ) -> Option<Vec<u32>> {
        let old = self.findings.clone()?;
        if Arc::ptr_eq(&old, findings) {
            return Some(Vec::new());
        }
        let changed = old.changed_counts(findings);
        if changed.is_empty() {
            return Some(Vec::new());
        }
        let mut moved = Vec::new();
        let mut scanned = 0;
        for (c, chunk) in self.chunks.iter().enumerate() {
            let (low, high) = self.serial_ranges[c];
            let first = changed.partition_point(|&s| s < low);
            if changed.get(first).is_none_or(|&s| s > high) {
                continue;
            }
            scanned += 1;
            if scanned > self.chunks.len() / 4 + 1 {
                return None;
            }
            let start = self.starts[c];
            moved.extend(
                chunk
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| changed.binary_search(&f.serial).is_ok())
                    .map(|(i, _)| (start + i) as u32),
            );
        }
        if moved.is_empty() {
            return Some(moved);
        }
        let cmp = self.comparator(params);
        let mut located: Vec<(Entry, u32)> = moved
            .iter()
            .map(|&i| (self.entry_at(i, params), i))
            .collect();
        located.sort_unstable_by(|a, b| cmp.cmp(&a.0, &b.0));
        let found = positions(&self.order, &self.fences, &located, &cmp, |i, e| {
            self.row_sorts_before(i, e, &cmp, params)
        });
        let mut at: Vec<usize> = Vec::with_capacity(found.len());
        for (&(pos, _), &(_, index)) in found.iter().zip(&located) {
            if self.order.get(pos) != Some(&index) {
                return None;
            }
            at.push(pos);
        }
        let mut next = 0;
        self.compact(|pos, index| {
            if at.get(next) == Some(&pos) {
                next += 1;
                None
            } else {
                Some(index)
            }
        });
        Some(moved)
    }

    /// Inserts the rows of newly finished `chunks`, and the known rows `moved`, into the
    /// order.
    fn insert_rows(&mut self, chunks: &[Arc<[FlowSummary]>], moved: &[u32], params: Params) {
        if chunks.is_empty() && moved.is_empty() {
            return;
        }
        let mut adds: Vec<(Entry, u32)> = moved
            .iter()
            .map(|&i| (self.entry_at(i, params), i))
            .collect();
        adds.extend(self.register(chunks, params));
        self.texts.rank_new();
        let cmp = self.comparator(params);
        adds.sort_unstable_by(|a, b| cmp.cmp(&a.0, &b.0));
        let found = positions(&self.order, &self.fences, &adds, &cmp, |i, e| {
            self.row_sorts_before(i, e, &cmp, params)
        });

        // Move the old rows up, from the back, to open a slot for each new one.
        let (n, k) = (self.order.len(), adds.len());
        self.order.resize(n + k, 0);
        let mut end = n;
        for (j, (&(pos, _), &(_, index))) in found.iter().zip(&adds).enumerate().rev() {
            self.order.copy_within(pos..end, pos + j + 1);
            self.order[pos + j] = index;
            end = pos;
        }

        // Old fences move up by the new rows sorting before them.
        let mut j = 0;
        for (g, fence) in self.fences.iter_mut().enumerate() {
            while j < k && found[j].1 <= g {
                j += 1;
            }
            fence.pos += j;
        }
    }

    /// Adds fences (read from the rows) where two are more than `2 * FENCE_GAP` rows apart,
    /// so finding a new row's place reads at most that many rows' keys.
    fn split_large_gaps(&mut self, params: Params) {
        let n = self.order.len();
        let gaps = self.fences.len() + 1;
        let too_far = |a: usize, b: usize| b - a > 2 * FENCE_GAP;
        let bounds = |g: usize, fences: &[Fence]| -> (usize, usize) {
            let lo = if g == 0 { 0 } else { fences[g - 1].pos };
            (lo, fences.get(g).map_or(n, |f| f.pos))
        };
        if !(0..gaps).any(|g| {
            let (lo, hi) = bounds(g, &self.fences);
            too_far(lo, hi)
        }) {
            return;
        }
        let mut fences = std::mem::take(&mut self.spare_fences);
        fences.clear();
        for g in 0..gaps {
            let (lo, hi) = bounds(g, &self.fences);
            if too_far(lo, hi) {
                let first = if g == 0 { 0 } else { lo + FENCE_GAP };
                for pos in (first..hi.saturating_sub(FENCE_GAP / 2)).step_by(FENCE_GAP) {
                    let entry = self.entry_at(self.order[pos], params);
                    fences.push(Fence { entry, pos });
                }
            }
            if let Some(&fence) = self.fences.get(g) {
                fences.push(fence);
            }
        }
        self.spare_fences = std::mem::replace(&mut self.fences, fences);
    }

    /// The order of every row: the finished rows' order with `live` merged in.
    fn merge_into(&self, out: &mut Vec<u32>, live: &mut [(Entry, u32)], params: Params) {
        let cmp = self.comparator(params);
        live.sort_unstable_by(|a, b| cmp.cmp(&a.0, &b.0));
        let found = positions(&self.order, &self.fences, live, &cmp, |i, e| {
            self.row_sorts_before(i, e, &cmp, params)
        });
        out.clear();
        out.reserve(self.order.len() + live.len());
        let mut from = 0;
        for (&(pos, _), &(_, index)) in found.iter().zip(live.iter()) {
            out.extend_from_slice(&self.order[from..pos]);
            out.push(index);
            from = pos;
        }
        out.extend_from_slice(&self.order[from..]);
    }
}

static NO_FINDINGS: std::sync::LazyLock<SnapshotFindings> =
    std::sync::LazyLock::new(SnapshotFindings::default);

fn entry(key: u64, f: &FlowSummary) -> Entry {
    Entry {
        key,
        first_ns: f.first_ns,
        serial: f.serial,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::findings::{Finding, FindingKind};
    use crate::tui::synthetic;

    /// Findings naming the flows with serials in `serials` (each `times` times).
    fn findings_naming(serials: &[u64], times: usize) -> Arc<SnapshotFindings> {
        let findings = (0..times)
            .map(|n| {
                Finding::naming_flows(
                    format!("PW-TEST-{n}"),
                    FindingKind::CleartextInternal,
                    serials.to_vec(),
                )
            })
            .collect();
        Arc::new(SnapshotFindings::from_findings(findings))
    }

    /// The snapshot's findings: kept (same `Arc`), recomputed with the same counts, or
    /// recomputed naming other flows.
    #[derive(Debug, Clone, Copy)]
    enum FindingsStep {
        Same,
        EqualCounts,
        /// Every `stride + 2`-th flow of the first `upto` (few or many rows change count).
        Changed {
            stride: u64,
            upto: u64,
        },
    }

    fn findings_step() -> impl Strategy<Value = FindingsStep> {
        prop_oneof![
            Just(FindingsStep::Same),
            Just(FindingsStep::EqualCounts),
            (0u64..40, prop_oneof![0u64..300, Just(6000)])
                .prop_map(|(stride, upto)| FindingsStep::Changed { stride, upto }),
        ]
    }

    proptest! {
        /// Snapshots that append chunks, drop the oldest, replace the live rows and change
        /// the findings are ordered exactly as a from-scratch sort orders them, for every
        /// sortable column, both directions and both `names` settings.
        #[test]
        fn incremental_equals_from_scratch(
            steps in proptest::collection::vec(
                (0usize..4, 0usize..3, 0usize..40, findings_step()),
                1..12,
            ),
            column in 0usize..FlowCol::SORTABLE.len(),
            descending in any::<bool>(),
            names in any::<bool>(),
            chunk_rows in 1usize..60,
        ) {
            let pool = synthetic::flows(6000);
            let mut next = 0usize;
            let mut take = |n: usize| -> Arc<[FlowSummary]> {
                let chunk: Vec<FlowSummary> = pool[next..next + n].to_vec();
                next += n;
                Arc::from(chunk)
            };
            let sort = Sort { column: FlowCol::SORTABLE[column], descending };
            let mut findings = findings_naming(&[], 0);
            let mut cache = SortCache::default();
            let mut finished: Vec<Arc<[FlowSummary]>> = Vec::new();
            for (append, drop, live, findings_change) in steps {
                for _ in 0..append {
                    finished.push(take(chunk_rows));
                }
                let dropped = drop.min(finished.len());
                finished.drain(..dropped);
                let mut chunks = finished.clone();
                if live > 0 {
                    chunks.push(take(live));
                }
                findings = match findings_change {
                    FindingsStep::Same => findings,
                    FindingsStep::EqualCounts => Arc::new((*findings).clone()),
                    FindingsStep::Changed { stride, upto } => {
                        let serials: Vec<u64> =
                            (0..upto).filter(|s| s % (stride + 2) == 0).collect();
                        findings_naming(&serials, 1 + stride as usize % 3)
                    }
                };
                let rows = FlowRows::from_chunks(chunks);
                let got = cache.sorted(&rows, live, &findings, sort, names);
                let want = super::super::sort_all(&rows, &findings, sort, names);
                prop_assert_eq!(got, want);
            }
        }
    }

    /// Many snapshots of a growing, evicting capture (more rows than one fence gap between
    /// most insertions) stay equal to the from-scratch order, and the fences stay sorted
    /// splits of the order.
    #[test]
    fn long_capture_keeps_fences_valid() {
        let pool = synthetic::flows(40_000);
        for column in [
            FlowCol::Time,
            FlowCol::Bytes,
            FlowCol::Source,
            FlowCol::Port,
        ] {
            let sort = Sort {
                column,
                descending: column == FlowCol::Bytes,
            };
            let findings = findings_naming(&[], 0);
            let mut cache = SortCache::default();
            let mut finished: Vec<Arc<[FlowSummary]>> = Vec::new();
            for (step, chunk) in pool.chunks(500).enumerate() {
                finished.push(Arc::from(chunk.to_vec()));
                if finished.len() > 20 {
                    finished.remove(0);
                }
                let rows = FlowRows::from_chunks(finished.clone());
                let got = cache.sorted(&rows, 0, &findings, sort, true);
                assert_eq!(
                    got,
                    super::super::sort_all(&rows, &findings, sort, true),
                    "{column:?} step {step}"
                );
                let cmp = cache.comparator(cache.params.expect("params"));
                for pair in cache.fences.windows(2) {
                    assert!(pair[0].pos <= pair[1].pos);
                    assert_eq!(cmp.cmp(&pair[0].entry, &pair[1].entry), Ordering::Less);
                }
                for fence in &cache.fences {
                    let params = cache.params.expect("params");
                    if let Some(&before) = cache.order[..fence.pos].last() {
                        let e = cache.entry_at(before, params);
                        assert_eq!(cmp.cmp(&e, &fence.entry), Ordering::Less);
                    }
                    if let Some(&at) = cache.order.get(fence.pos) {
                        let e = cache.entry_at(at, params);
                        assert_ne!(cmp.cmp(&e, &fence.entry), Ordering::Less);
                    }
                }
                let gaps = cache.fences.windows(2).map(|p| p[1].pos - p[0].pos);
                assert!(gaps.max().unwrap_or(0) <= 2 * FENCE_GAP, "{column:?}");
                assert!(cache.fences.len() <= cache.order.len() / (FENCE_GAP / 4) + 2);
            }
        }
    }
}
