//! A compact search index over a snapshot's rows, so applying a filter to a million rows
//! costs one evaluation per *distinct* value plus integer lookups per row.
//!
//! Every identity string (namespace, pod, workload, service, node, external name) and every
//! SNI/Host is interned once; an endpoint is its identity's kind and the tuple of its
//! identity strings' ids; the small per-flow facts (protocol, application, service,
//! encryption, verdict) form a "combo"; addresses are interned too. Each row becomes a
//! 28-byte [`RowRec`] of ids and ports (the Services aggregation, `viewmodel/edges.rs`,
//! groups rows through them too). A filter is compiled into a `Plan`: each term is evaluated once per distinct
//! string, endpoint, address or combo (into a table of booleans), then every row is tested
//! with table lookups into a bit set, and `!`/`and`/`or` combine the bit sets word by word.
//!
//! Guarantees: [`SearchIndex::matching`] gives exactly the rows [`Expr::matches_in`] accepts
//! (a property test checks it on random rows and filters, partly indexed or not); indexing
//! is incremental per shared chunk of rows (a chunk already indexed is not indexed again;
//! chunks left unindexed are evaluated row by row), and the tables are
//! rebuilt from scratch when distinct values pile up beyond what the current rows need,
//! so memory stays proportional to the rows held. Ids only ever mean one value within a
//! [`SearchIndex::generation`] (a rebuilt or another index has a new one). Pure: no I/O,
//! no clock, no threads (the generation counter is a process-wide atomic).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::fast::FixedState;

use super::{
    AddrBuf, End, Expr, Key, Term, Value, encryption_name, identity_external_name,
    identity_namespace, identity_node, identity_pod, identity_service, identity_workload, on_ends,
    server_name_ref, text_matches,
};
use crate::cluster::identity::Identity;
use crate::decode::ipproto;
use crate::dissect::{App, Encryption};
use crate::findings::FindingKind;
use crate::summary::FlowSummary;
use crate::tui::findings::{SnapshotFindings, kind_alias, kind_bit};
use crate::tui::source::FlowRows;

/// Id of "no such string".
const NONE: u32 = u32::MAX;

/// Values interned once, with ids in insertion order.
#[derive(Debug)]
struct Interner<K> {
    ids: HashMap<K, u32, FixedState>,
    values: Vec<K>,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Interner {
            ids: HashMap::with_hasher(FixedState::with_seed(0x1d3a)),
            values: Vec::new(),
        }
    }
}

impl<K> Interner<K> {
    fn len(&self) -> usize {
        self.values.len()
    }
}

impl<K: Hash + Eq + Copy> Interner<K> {
    fn intern(&mut self, value: K) -> u32 {
        let next = self.values.len() as u32;
        match self.ids.entry(value) {
            std::collections::hash_map::Entry::Occupied(o) => *o.get(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(next);
                self.values.push(value);
                next
            }
        }
    }
}

impl Interner<Box<str>> {
    fn intern_str(&mut self, value: Option<&str>) -> u32 {
        let Some(value) = value else {
            return NONE;
        };
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(Box::from(value));
        self.ids.insert(Box::from(value), id);
        id
    }
}

/// The identity strings of one endpoint, as string ids ([`NONE`] when absent), and its
/// kind ([`identity_kind`]): endpoints with equal keys group alike in the Services view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EndpointKey {
    kind: u8,
    ns: u32,
    pod: u32,
    workload: u32,
    svc: u32,
    node: u32,
    external: u32,
}

/// The per-flow facts few distinct values cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Combo {
    proto: u8,
    app: App,
    service: Option<&'static str>,
    enc: u8,
    /// 0 none, 1 allowed, 2 denied.
    verdict: u8,
}

const ENCRYPTIONS: [Encryption; 3] = [
    Encryption::Unknown,
    Encryption::Encrypted,
    Encryption::Plaintext,
];

fn enc_code(e: Encryption) -> u8 {
    ENCRYPTIONS.iter().position(|x| *x == e).unwrap_or(0) as u8
}

impl Combo {
    fn of(flow: &FlowSummary) -> Combo {
        Combo {
            proto: flow.proto,
            app: flow.app.app,
            service: flow.app.service,
            enc: enc_code(flow.app.encryption),
            verdict: match flow.enrichment.as_ref().and_then(|e| e.verdict.as_ref()) {
                Some(v) if v.allowed => 1,
                Some(_) => 2,
                None => 0,
            },
        }
    }

    fn encryption(self) -> Encryption {
        ENCRYPTIONS[usize::from(self.enc).min(2)]
    }

    fn verdict_name(self) -> &'static str {
        match self.verdict {
            1 => "allowed",
            2 => "denied",
            _ => "none",
        }
    }
}

/// One row as ids and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRec {
    // (Read by the Services aggregation, `viewmodel/edges.rs`, through the accessors.)
    src_ep: u32,
    dst_ep: u32,
    src_addr: u32,
    dst_addr: u32,
    /// SNI or HTTP Host ([`NONE`] when neither).
    server: u32,
    combo: u32,
    src_port: u16,
    dst_port: u16,
}

impl RowRec {
    /// The source endpoint's id (equal ids: equal kind and identity strings).
    pub(crate) fn src_endpoint(&self) -> u32 {
        self.src_ep
    }

    pub(crate) fn dst_endpoint(&self) -> u32 {
        self.dst_ep
    }

    /// The source address's id.
    pub(crate) fn src_addr(&self) -> u32 {
        self.src_addr
    }

    pub(crate) fn dst_addr(&self) -> u32 {
        self.dst_addr
    }

    /// The id of the row's (protocol, application, service, encryption, verdict).
    pub(crate) fn combo(&self) -> u32 {
        self.combo
    }

    pub(crate) fn dst_port(&self) -> u16 {
        self.dst_port
    }
}

/// The kind of an identity as a number (`u8::MAX`: no identity).
fn identity_kind(identity: Option<&Identity>) -> u8 {
    match identity {
        None => u8::MAX,
        Some(Identity::Pod { .. }) => 0,
        Some(Identity::HostNetwork { .. }) => 1,
        Some(Identity::Service { .. }) => 2,
        Some(Identity::Node { .. }) => 3,
        Some(Identity::ApiServer { .. }) => 4,
        Some(Identity::ClusterDns { .. }) => 5,
        Some(Identity::CloudMetadata { .. }) => 6,
        Some(Identity::External { .. }) => 7,
        Some(Identity::Unknown { .. }) => 8,
    }
}

/// Identifies one index's ids: a new index, or a rebuilt one, has a new generation, so
/// tables keyed by its ids elsewhere know when to start over.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

/// A chunk of the rows (kept so the pointer stays unique) and, once indexed, its records.
#[derive(Debug)]
struct IndexedChunk {
    rows: Arc<[FlowSummary]>,
    recs: Option<Vec<RowRec>>,
}

/// The index of one snapshot's rows (see the module doc).
#[derive(Debug)]
pub struct SearchIndex {
    /// Which ids these are (see [`SearchIndex::generation`]).
    generation: u64,
    strings: Interner<Box<str>>,
    endpoints: Interner<EndpointKey>,
    addrs: Interner<IpAddr>,
    combos: Interner<Combo>,
    chunks: Vec<IndexedChunk>,
    rows: usize,
    /// Full rebuilds because distinct values piled up (for the Stats view and tests).
    pub rebuilds: u64,
}

impl Default for SearchIndex {
    fn default() -> Self {
        SearchIndex {
            generation: next_generation(),
            strings: Interner::default(),
            endpoints: Interner::default(),
            addrs: Interner::default(),
            combos: Interner::default(),
            chunks: Vec::new(),
            rows: 0,
            rebuilds: 0,
        }
    }
}

impl SearchIndex {
    /// Unique to this index's ids: two indexes, or one index before and after a rebuild,
    /// never share a generation, while ids of the same generation always mean the same
    /// values (ids are only ever added).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The records of the `position`-th chunk of the rows last synced, if that chunk is
    /// `chunk` (the same allocation) and is indexed.
    pub(crate) fn records(&self, position: usize, chunk: &Arc<[FlowSummary]>) -> Option<&[RowRec]> {
        self.chunks
            .get(position)
            .filter(|c| Arc::ptr_eq(&c.rows, chunk))
            .and_then(|c| c.recs.as_deref())
    }

    /// An index of all of `rows`.
    pub fn new(rows: &FlowRows) -> SearchIndex {
        let mut index = SearchIndex::default();
        index.sync(rows, rows.len());
        index
    }

    /// Rows the index covers (indexed or not).
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Rows whose chunk is not indexed yet (filters evaluate them one by one).
    pub fn pending_rows(&self) -> usize {
        self.chunks
            .iter()
            .filter(|c| c.recs.is_none())
            .map(|c| c.rows.len())
            .sum()
    }

    /// Re-targets the index at `rows`: chunks indexed before are reused; new chunks that lie
    /// within the first `index_rows` rows are indexed now, the others never (filters
    /// evaluate their rows one by one: the TUI indexes finished rows as they arrive, not the
    /// live rows that every snapshot replaces).
    pub fn sync(&mut self, rows: &FlowRows, index_rows: usize) {
        let distinct = self.strings.len() + self.endpoints.len() + self.addrs.len();
        if distinct > 8 * rows.len() + (1 << 16) {
            // Evicted rows left their values behind: start over so memory follows the rows.
            let rebuilds = self.rebuilds + 1;
            *self = SearchIndex::default();
            self.rebuilds = rebuilds;
        }
        let mut old: HashMap<*const FlowSummary, IndexedChunk> = std::mem::take(&mut self.chunks)
            .into_iter()
            .map(|c| (c.rows.as_ptr(), c))
            .collect();
        let mut chunks = Vec::with_capacity(rows.chunks().len());
        let mut end = 0;
        for chunk in rows.chunks() {
            end += chunk.len();
            let mut entry = old
                .remove(&chunk.as_ptr())
                .filter(|c| c.rows.len() == chunk.len())
                .unwrap_or_else(|| IndexedChunk {
                    rows: chunk.clone(),
                    recs: None,
                });
            if entry.recs.is_none() && end <= index_rows {
                entry.recs = Some(chunk.iter().map(|f| self.record(f)).collect());
            }
            chunks.push(entry);
        }
        self.chunks = chunks;
        self.rows = rows.len();
    }

    fn endpoint(&mut self, identity: Option<&Identity>) -> u32 {
        let key = match identity {
            None => EndpointKey {
                kind: identity_kind(None),
                ns: NONE,
                pod: NONE,
                workload: NONE,
                svc: NONE,
                node: NONE,
                external: NONE,
            },
            Some(i) => EndpointKey {
                kind: identity_kind(Some(i)),
                ns: self.strings.intern_str(identity_namespace(i)),
                pod: self.strings.intern_str(identity_pod(i)),
                workload: self.strings.intern_str(identity_workload(i).map(|w| w.1)),
                svc: self.strings.intern_str(identity_service(i)),
                node: self.strings.intern_str(identity_node(i)),
                external: self.strings.intern_str(identity_external_name(i)),
            },
        };
        self.endpoints.intern(key)
    }

    fn record(&mut self, flow: &FlowSummary) -> RowRec {
        let (src, dst) = match &flow.enrichment {
            Some(e) => (Some(&e.src_identity), Some(&e.dst_identity)),
            None => (None, None),
        };
        RowRec {
            src_ep: self.endpoint(src),
            dst_ep: self.endpoint(dst),
            src_addr: self.addrs.intern(flow.src.addr),
            dst_addr: self.addrs.intern(flow.dst.addr),
            server: self.strings.intern_str(server_name_ref(flow)),
            combo: self.combos.intern(Combo::of(flow)),
            src_port: flow.src.port,
            dst_port: flow.dst.port,
        }
    }

    /// Which rows match `expr` (`finding:` terms looked up in `findings`), as one bit per
    /// row in row order. Each term is one tight pass over the records (64 rows per word);
    /// `!`, `and` and `or` combine whole words.
    pub fn matching(&self, expr: &Expr, findings: &SnapshotFindings) -> RowSet {
        let plan = self.compile(expr, findings);
        let mut set = self.eval(&plan);
        // Chunks not indexed yet: row by row.
        let mut start = 0;
        for c in &self.chunks {
            if c.recs.is_none() {
                for (j, f) in c.rows.iter().enumerate() {
                    set.assign(start + j, expr.matches_in(f, findings));
                }
            }
            start += c.rows.len();
        }
        set
    }

    fn eval(&self, plan: &Plan) -> RowSet {
        match plan {
            Plan::Not(p) => {
                let mut set = self.eval(p);
                set.complement(self.rows);
                set
            }
            Plan::And(a, b) => {
                let mut set = self.eval(a);
                if !set.is_empty() {
                    set.intersect(&self.eval(b));
                }
                set
            }
            Plan::Or(a, b) => {
                let mut set = self.eval(a);
                set.union(&self.eval(b));
                set
            }
            Plan::Rows(set) => set.clone(),
            Plan::Const(b) => {
                let mut set = RowSet::new(self.rows);
                if *b {
                    set.complement(self.rows);
                }
                set
            }
            leaf => {
                let mut set = RowSet::new(self.rows);
                let mut start = 0;
                for c in &self.chunks {
                    if let Some(recs) = &c.recs {
                        leaf.test_into(recs, start, &mut set);
                    }
                    start += c.rows.len();
                }
                set
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Compilation: each term into tables over distinct values.

    fn compile(&self, expr: &Expr, findings: &SnapshotFindings) -> Plan {
        match expr {
            Expr::Term(t) => self.compile_term(t, findings),
            Expr::Not(e) => Plan::Not(Box::new(self.compile(e, findings))),
            Expr::And(a, b) => Plan::And(
                Box::new(self.compile(a, findings)),
                Box::new(self.compile(b, findings)),
            ),
            Expr::Or(a, b) => Plan::Or(
                Box::new(self.compile(a, findings)),
                Box::new(self.compile(b, findings)),
            ),
        }
    }

    /// Which interned strings match `value`.
    fn string_table(&self, value: &Value, exact: bool) -> Vec<bool> {
        self.strings
            .values
            .iter()
            .map(|s| text_matches(value, s, exact))
            .collect()
    }

    /// Which endpoints have a field (picked by `field`) whose string is in `strings`.
    fn endpoint_table(&self, strings: &[bool], fields: &[fn(&EndpointKey) -> u32]) -> Vec<bool> {
        let hit = |id: u32| id != NONE && strings.get(id as usize).copied().unwrap_or(false);
        self.endpoints
            .values
            .iter()
            .map(|ep| fields.iter().any(|f| hit(f(ep))))
            .collect()
    }

    fn addr_table(&self, test: impl Fn(IpAddr) -> bool) -> Vec<bool> {
        self.addrs.values.iter().map(|a| test(*a)).collect()
    }

    fn combo_table(&self, test: impl Fn(Combo) -> bool) -> Vec<bool> {
        self.combos.values.iter().map(|c| test(*c)).collect()
    }

    fn compile_term(&self, term: &Term, findings: &SnapshotFindings) -> Plan {
        let (end, key, value) = match term {
            Term::Field(k, v) => (None, *k, v),
            Term::Sided(e, k, v) => (Some(*e), *k, v),
            Term::Any(v) => return self.compile_free_text(v),
        };
        let endpoint = |exact: bool, field: fn(&EndpointKey) -> u32| {
            Plan::Endpoint(
                end,
                self.endpoint_table(&self.string_table(value, exact), &[field]),
            )
        };
        match key {
            Key::Ns => endpoint(true, |e| e.ns),
            Key::Pod => endpoint(false, |e| e.pod),
            Key::Workload => endpoint(false, |e| e.workload),
            Key::Svc => endpoint(false, |e| e.svc),
            Key::Node => endpoint(false, |e| e.node),
            Key::Ip => Plan::Addr(
                end,
                match value {
                    Value::Net(net) => self.addr_table(|a| net.contains(&a)),
                    other => {
                        self.addr_table(|a| text_matches(other, AddrBuf::of(a).as_str(), false))
                    }
                },
            ),
            Key::Port => match value {
                Value::Ports(lo, hi) => Plan::PortRange(end, *lo, *hi),
                other => Plan::PortTable(
                    end,
                    (0..=u16::MAX)
                        .map(|p| {
                            let mut b = AddrBuf::empty();
                            let _ = std::fmt::Write::write_fmt(&mut b, format_args!("{p}"));
                            text_matches(other, b.as_str(), true)
                        })
                        .collect(),
                ),
            },
            Key::Proto => Plan::Combo(
                self.combo_table(|c| text_matches(value, &ipproto::name(c.proto), true)),
            ),
            Key::App => Plan::Combo(self.combo_table(|c| {
                text_matches(value, c.app.name(), true)
                    || c.service.is_some_and(|s| text_matches(value, s, true))
            })),
            Key::Sni => Plan::Server(self.string_table(value, false)),
            Key::Enc => Plan::Combo(
                self.combo_table(|c| text_matches(value, encryption_name(c.encryption()), true)),
            ),
            Key::Verdict => {
                Plan::Combo(self.combo_table(|c| text_matches(value, c.verdict_name(), true)))
            }
            Key::Finding => self.compile_finding(value, findings),
        }
    }

    fn compile_finding(&self, value: &Value, findings: &SnapshotFindings) -> Plan {
        let accepts = |bits: u16| match value {
            Value::Text { lower, .. } if lower == "any" => bits != 0,
            _ => FindingKind::ALL.iter().any(|k| {
                bits & kind_bit(*k) != 0
                    && (text_matches(value, k.as_str(), true)
                        || kind_alias(*k).is_some_and(|a| text_matches(value, a, true)))
            }),
        };
        if findings.findings.is_empty() {
            return Plan::Const(accepts(0));
        }
        // Few flows have findings: decide per distinct kind set, then per row by serial.
        let mut by_bits: HashMap<u16, bool> = HashMap::new();
        let mut set = RowSet::new(self.rows);
        let rows = self.chunks.iter().flat_map(|c| c.rows.iter());
        for (i, flow) in rows.enumerate() {
            let bits = findings.kinds(flow.serial);
            if *by_bits.entry(bits).or_insert_with(|| accepts(bits)) {
                set.insert(i);
            }
        }
        Plan::Rows(set)
    }

    fn compile_free_text(&self, value: &Value) -> Plan {
        let strings = self.string_table(value, false);
        let endpoint = self.endpoint_table(
            &strings,
            &[
                |e| e.ns,
                |e| e.pod,
                |e| e.workload,
                |e| e.svc,
                |e| e.node,
                |e| e.external,
            ],
        );
        let combo = self.combo_table(|c| {
            text_matches(value, c.app.name(), false)
                || text_matches(value, &ipproto::name(c.proto), false)
                || text_matches(value, encryption_name(c.encryption()), false)
        });
        // Text that cannot occur in an address spares formatting every address.
        let addr_possible = match value {
            Value::Text { lower, .. } => lower
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':'),
            _ => true,
        };
        let addr = if addr_possible {
            self.addr_table(|a| text_matches(value, AddrBuf::of(a).as_str(), false))
        } else {
            vec![false; self.addrs.len()]
        };
        Plan::Any {
            endpoint,
            server: strings,
            combo,
            addr,
        }
    }
}

/// A set of row indexes (one bit per row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSet {
    words: Vec<u64>,
}

impl RowSet {
    fn new(rows: usize) -> RowSet {
        RowSet {
            words: vec![0; rows.div_ceil(64)],
        }
    }

    fn insert(&mut self, i: usize) {
        self.assign(i, true);
    }

    fn assign(&mut self, i: usize, value: bool) {
        if let Some(w) = self.words.get_mut(i / 64) {
            let bit = 1u64 << (i % 64);
            if value {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// How many rows are in the set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Complements within the first `rows` rows.
    fn complement(&mut self, rows: usize) {
        for w in &mut self.words {
            *w = !*w;
        }
        if !rows.is_multiple_of(64)
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << (rows % 64)) - 1;
        }
    }

    fn intersect(&mut self, other: &RowSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    fn union(&mut self, other: &RowSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
}

/// A compiled filter: tables over distinct values, tested per row.
enum Plan {
    Const(bool),
    /// The chosen endpoint's id (`None`: either's) is in the table.
    Endpoint(Option<End>, Vec<bool>),
    /// The chosen endpoint's address id (`None`: either's) is in the table.
    Addr(Option<End>, Vec<bool>),
    PortRange(Option<End>, u16, u16),
    /// The chosen endpoint's port (`None`: either's) is in the table (indexed by port).
    PortTable(Option<End>, Vec<bool>),
    Combo(Vec<bool>),
    /// The server-name string id is in the table.
    Server(Vec<bool>),
    /// Rows decided up front (by row index).
    Rows(RowSet),
    /// Free text: any of the tables.
    Any {
        endpoint: Vec<bool>,
        server: Vec<bool>,
        combo: Vec<bool>,
        addr: Vec<bool>,
    },
    Not(Box<Plan>),
    And(Box<Plan>, Box<Plan>),
    Or(Box<Plan>, Box<Plan>),
}

fn lookup(table: &[bool], id: u32) -> bool {
    table.get(id as usize).copied().unwrap_or(false)
}

impl Plan {
    /// Tests the records of rows `start..` into `set`, 64 rows per word where aligned.
    fn test_into(&self, recs: &[RowRec], start: usize, set: &mut RowSet) {
        let mut i = start;
        let mut recs = recs.iter();
        // Up to a word boundary one bit at a time, then whole words.
        while !i.is_multiple_of(64) {
            let Some(r) = recs.next() else { return };
            set.assign(i, self.test(r));
            i += 1;
        }
        let rest = recs.as_slice();
        for (w, block) in rest.chunks(64).enumerate() {
            let mut word = 0u64;
            for (b, r) in block.iter().enumerate() {
                word |= u64::from(self.test(r)) << b;
            }
            if let Some(slot) = set.words.get_mut(i / 64 + w) {
                *slot = word;
            }
        }
    }

    /// A leaf's test of one row (combinators are evaluated on whole row sets).
    fn test(&self, r: &RowRec) -> bool {
        match self {
            Plan::Endpoint(end, t) => on_ends(*end, [r.src_ep, r.dst_ep], |id| lookup(t, id)),
            Plan::Addr(end, t) => on_ends(*end, [r.src_addr, r.dst_addr], |id| lookup(t, id)),
            Plan::PortRange(end, lo, hi) => {
                on_ends(*end, [r.src_port, r.dst_port], |p| (*lo..=*hi).contains(&p))
            }
            Plan::PortTable(end, t) => {
                on_ends(*end, [r.src_port, r.dst_port], |p| lookup(t, u32::from(p)))
            }
            Plan::Combo(t) => lookup(t, r.combo),
            Plan::Server(t) => lookup(t, r.server),
            Plan::Any {
                endpoint,
                server,
                combo,
                addr,
            } => {
                lookup(endpoint, r.src_ep)
                    | lookup(endpoint, r.dst_ep)
                    | lookup(combo, r.combo)
                    | lookup(server, r.server)
                    | lookup(addr, r.src_addr)
                    | lookup(addr, r.dst_addr)
            }
            Plan::Const(b) => *b,
            Plan::Rows(_) | Plan::Not(_) | Plan::And(..) | Plan::Or(..) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::Facts;
    use crate::dissect::http::HttpFacts;
    use crate::findings::RulesConfig;
    use crate::tui::filter::parse;
    use crate::tui::synthetic;
    use proptest::prelude::*;

    #[test]
    fn record_is_compact() {
        assert_eq!(std::mem::size_of::<RowRec>(), 28);
    }

    #[test]
    fn reuses_indexed_chunks() {
        let rows = FlowRows::from_vec(synthetic::flows(10_000));
        let mut index = SearchIndex::new(&rows);
        let strings = index.strings.len();
        let recs = |i: &SearchIndex| i.chunks[0].recs.as_ref().map(|r| r.as_ptr());
        let first = recs(&index);
        index.sync(&rows, rows.len());
        assert!(first.is_some());
        assert_eq!(recs(&index), first);
        assert_eq!(index.strings.len(), strings);
        assert_eq!(index.len(), 10_000);
    }

    #[test]
    fn rebuilds_when_values_pile_up() {
        let big = FlowRows::from_vec(synthetic::flows(40_000));
        let mut index = SearchIndex::new(&big);
        let small = FlowRows::from_vec(synthetic::flows(10));
        index.sync(&small, small.len());
        assert_eq!(index.rebuilds, 1);
        assert_eq!(index.len(), 10);
        let expr = parse("ns:shop").unwrap().unwrap();
        let set = index.matching(&expr, &SnapshotFindings::default());
        let expected = small.iter().filter(|f| expr.matches(f)).count();
        assert_eq!(set.count(), expected);
        assert!(expected > 0);
    }

    /// A synthetic row, varied: other identity kinds, no cluster data, other protocols,
    /// SNI or HTTP Host, IPv6 addresses.
    fn row() -> impl Strategy<Value = FlowSummary> {
        (
            0u64..5000,
            any::<[u8; 8]>(),
            proptest::option::of("[a-zA-Z.-]{1,12}"),
        )
            .prop_map(|(i, v, host)| {
                let mut f = synthetic::flow(i);
                if let Some(e) = f.enrichment.as_mut() {
                    if v[0] % 3 == 0 {
                        e.src_identity =
                            synthetic::identity_of_kind(u64::from(v[1]), u64::from(v[2]));
                    }
                    if v[3] % 3 == 0 {
                        e.dst_identity =
                            synthetic::identity_of_kind(u64::from(v[4]), u64::from(v[2]));
                    }
                    if v[5] % 5 == 0 {
                        e.verdict = None;
                    }
                }
                if v[6] % 7 == 0 {
                    f.enrichment = None;
                }
                match v[7] % 8 {
                    0 => f.proto = 1,
                    1 => f.proto = 132,
                    2 => f.app.sni = host.clone(),
                    3 => {
                        f.app.sni = None;
                        f.app.facts = Some(Facts::Http(Box::new(HttpFacts {
                            host: host.clone(),
                            ..HttpFacts::default()
                        })));
                    }
                    4 => {
                        f.src.addr = "fd00::a:1".parse().unwrap_or(f.src.addr);
                        f.app.service = Some("etcd");
                    }
                    5 => f.app.encryption = crate::dissect::Encryption::Unknown,
                    _ => {}
                }
                f
            })
    }

    /// Terms likely to match some rows (the parser's own tests cover odd text).
    fn leaf() -> impl Strategy<Value = String> {
        let words = [
            "ns:shop",
            "ns:KUBE-SYSTEM",
            "ns:default",
            "ns:sho",
            "ns:/^kube/",
            "pod:front",
            "pod:coredns",
            "workload:api",
            "workload:/^c/",
            "svc:kube",
            "svc:kubernetes",
            "node:node-1",
            "node:/-[02]$/",
            "ip:10.244.0.0/20",
            "ip:10.245.0.0/16",
            "ip:fd00::/8",
            "ip:/\\.1$/",
            "port:443",
            "port:44",
            "port:5000-7000",
            "port:/^8/",
            "src.ns:shop",
            "dst.ns:shop",
            "dst.ns:KUBE-SYSTEM",
            "src.pod:front",
            "dst.workload:api",
            "src.svc:kube",
            "dst.svc:kube",
            "src.node:node-1",
            "src.ip:10.244.0.0/20",
            "dst.ip:10.244.0.0/20",
            "dst.ip:/\\.1$/",
            "dst.port:443",
            "src.port:5000-65535",
            "src.port:/^8/",
            "proto:udp",
            "proto:icmp",
            "proto:tc",
            "app:tls",
            "app:etcd",
            "app:tl",
            "app:/^(redis|dns)$/",
            "sni:cat",
            "sni:/shop/",
            "enc:plaintext",
            "enc:unknown",
            "verdict:denied",
            "verdict:none",
            "finding:any",
            "finding:credentials",
            "frontend",
            "PAYMENTS",
            "10.244.1",
            "fd00",
            "node",
            "tcp",
            "example",
            "/^api/",
            "/e\\.c/",
            "plain",
        ];
        proptest::sample::select(words.to_vec()).prop_map(str::to_string)
    }

    fn filter_text() -> impl Strategy<Value = String> {
        leaf().prop_recursive(4, 16, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|a| format!("!{a}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
                (inner.clone(), inner).prop_map(|(a, b)| format!("({a} or {b})")),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The index selects exactly the rows the straightforward evaluation selects.
        #[test]
        fn index_equals_per_row_evaluation(
            rows in proptest::collection::vec(row(), 1..80),
            texts in proptest::collection::vec(filter_text(), 1..6),
            indexed in 0usize..100,
        ) {
            let findings = SnapshotFindings::from_flows(&rows, None, &RulesConfig::default());
            // Small chunks, so rows are numbered across chunks as in a snapshot.
            let rows = FlowRows::from_chunks(
                rows.chunks(7).map(|c| Arc::from(c.to_vec())).collect(),
            );
            // Some chunks indexed, the rest evaluated row by row.
            let mut index = SearchIndex::default();
            index.sync(&rows, indexed);
            prop_assert!(index.pending_rows() <= rows.len());
            for text in &texts {
                let expr = parse(text).unwrap().unwrap();
                let set = index.matching(&expr, &findings);
                for (i, f) in rows.iter().enumerate() {
                    prop_assert_eq!(
                        set.contains(i),
                        expr.matches_in(f, &findings),
                        "row {} filter {}",
                        i,
                        text
                    );
                }
            }
        }
    }
}
