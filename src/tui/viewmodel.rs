//! The pure view-model: from [`App`] state to what each screen shows.
//!
//! Nothing here draws or does I/O. [`sort_all`], [`filter_sorted`] and the aggregations ([`service_edges`],
//! [`findings`], [`policy_table`]) run when their inputs change (the App caches them);
//! [`screen`] formats only the rows that fit on screen, so building a frame costs the same
//! with 100 or 1 000 000 flows. Every string that came off the wire or out of the cluster is
//! passed through [`sanitize`] (or [`identity_label`], which sanitizes) here, before it can
//! reach the renderer.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ratatui::layout::Rect;

use crate::cluster::identity::Identity;
use crate::cluster::model::ClusterState;
use crate::decode::ipproto;
use crate::dissect::Encryption;
use crate::findings::{Finding, Severity};
use crate::policy::DirectionVerdict;
use crate::report::{clock, human_bytes, identity_label, server_name};
use crate::sanitize::{sanitize, sanitize_capped};
use crate::summary::FlowSummary;
use crate::tui::app::{App, EdgeCol, FlowCol, Mode, Sort, View};
use crate::tui::config::Action;
use crate::tui::filter::index::SearchIndex;
use crate::tui::filter::{
    End, Expr, Filter, Key, Rx, Term, Value, identity_namespace, identity_workload,
};
use crate::tui::findings::SnapshotFindings;
use crate::tui::source::{ClusterOrigin, FlowRows, SourceKind};

mod edges;
mod order;
pub use edges::EdgeCache;
pub use order::SortCache;

// ---------------------------------------------------------------------------------------
// Layout (shared by the renderer and by mouse handling)

/// Screen areas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub tabs: Rect,
    pub body: Rect,
    /// The table part of the body (header row first).
    pub table: Rect,
    /// Below the table: graph (Services) or details (Policies).
    pub lower: Rect,
    pub input: Rect,
    pub status: Rect,
}

impl Areas {
    /// Data rows that fit in the table.
    pub fn table_rows(&self) -> usize {
        self.table.height.saturating_sub(1) as usize
    }

    /// Which visible data row (0-based) a screen row is.
    pub fn row_at(&self, y: u16) -> Option<usize> {
        let first = self.table.y + 1;
        (y >= first && y < self.table.y + self.table.height).then(|| (y - first) as usize)
    }
}

pub fn areas(area: Rect, view: View) -> Areas {
    let h = area.height;
    let tabs = Rect::new(area.x, area.y, area.width, h.min(1));
    let status = Rect::new(area.x, area.y + h.saturating_sub(1), area.width, h.min(1));
    let input = Rect::new(
        area.x,
        area.y + h.saturating_sub(2),
        area.width,
        h.saturating_sub(1).min(1),
    );
    let body = Rect::new(area.x, area.y + 1, area.width, h.saturating_sub(3));
    let (table, lower) = match view {
        View::Services | View::Policies => {
            let top = (body.height / 2)
                .max(body.height.saturating_sub(12))
                .min(body.height);
            let top = if view == View::Services {
                body.height.saturating_sub(body.height * 2 / 5)
            } else {
                top
            };
            (
                Rect::new(body.x, body.y, body.width, top),
                Rect::new(body.x, body.y + top, body.width, body.height - top),
            )
        }
        _ => (body, Rect::new(body.x, body.y + body.height, body.width, 0)),
    };
    Areas {
        tabs,
        body,
        table,
        lower,
        input,
        status,
    }
}

/// Tab titles as drawn (`1 Flows`), with their x ranges.
pub fn tab_spans() -> Vec<(View, String, u16, u16)> {
    let mut x = 1u16;
    View::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let text = format!(" {} {} ", i + 1, v.title());
            let w = text.chars().count() as u16;
            let span = (*v, text, x, x + w);
            x += w + 1;
            span
        })
        .collect()
}

pub fn tab_at(x: u16) -> Option<View> {
    tab_spans()
        .into_iter()
        .find(|(_, _, a, b)| x >= *a && x < *b)
        .map(|(v, ..)| v)
}

// ---------------------------------------------------------------------------------------
// Filtering and sorting

fn endpoint_text(flow: &FlowSummary, src: bool, names: bool) -> String {
    let addr = if src { flow.src.addr } else { flow.dst.addr };
    match (&flow.enrichment, names) {
        (Some(e), true) => identity_label(
            if src {
                &e.src_identity
            } else {
                &e.dst_identity
            },
            addr,
        ),
        _ => addr.to_string(),
    }
}

fn has_ports(flow: &FlowSummary) -> bool {
    matches!(flow.proto, ipproto::TCP | ipproto::UDP | ipproto::SCTP)
}

fn verdict_rank(flow: &FlowSummary) -> u64 {
    match flow.enrichment.as_ref().and_then(|e| e.verdict.as_ref()) {
        Some(v) if !v.allowed => 2,
        Some(_) => 1,
        None => 0,
    }
}

fn enc_rank(e: Encryption) -> u64 {
    match e {
        Encryption::Plaintext => 2,
        Encryption::Unknown => 1,
        Encryption::Encrypted => 0,
    }
}

/// Keeps the rows of an already sorted index that match `filter`, in order. Changing the
/// filter costs no sort: the filter is evaluated through the snapshot's [`SearchIndex`]
/// (once per distinct value, then integer lookups per row) into a row set, and the sorted
/// index is walked once.
pub fn filter_sorted(
    index: &SearchIndex,
    findings: &SnapshotFindings,
    sorted: &[u32],
    filter: &Filter,
) -> Vec<u32> {
    let Some(expr) = &filter.expr else {
        return sorted.to_vec();
    };
    let matching = index.matching(expr, findings);
    sorted
        .iter()
        .copied()
        .filter(|&i| matching.contains(i as usize))
        .collect()
}

/// Whether `column` sorts by text ([`text_key`]) rather than by a number ([`numeric_key`]).
fn is_text_column(column: FlowCol) -> bool {
    matches!(
        column,
        FlowCol::Source | FlowCol::Destination | FlowCol::App | FlowCol::Server
    )
}

/// The sort key of a numeric column (0 for the text columns).
fn numeric_key(f: &FlowSummary, column: FlowCol, findings: &SnapshotFindings) -> u64 {
    match column {
        FlowCol::Time => f.first_ns,
        FlowCol::Port => u64::from(f.dst.port),
        FlowCol::Enc => enc_rank(f.app.encryption),
        FlowCol::Packets => f.packets(),
        FlowCol::Bytes => f.bytes(),
        FlowCol::Verdict => verdict_rank(f),
        FlowCol::Findings => u64::from(findings.count(f.serial)),
        _ => 0,
    }
}

/// The sort key of a text column (empty for the numeric columns).
fn text_key(f: &FlowSummary, column: FlowCol, names: bool) -> String {
    match column {
        FlowCol::Source => endpoint_text(f, true, names),
        FlowCol::Destination => endpoint_text(f, false, names),
        FlowCol::App => f.app.app.name().to_string(),
        FlowCol::Server => server_name(&f.app).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Every row's index, sorted by `sort` (ties: first packet, serial).
pub fn sort_all(
    rows: &FlowRows,
    findings: &SnapshotFindings,
    sort: Sort<FlowCol>,
    names: bool,
) -> Vec<u32> {
    if is_text_column(sort.column) {
        let mut keyed: Vec<(String, u64, u64, u32)> = rows
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    text_key(f, sort.column, names),
                    f.first_ns,
                    f.serial,
                    i as u32,
                )
            })
            .collect();
        if sort.descending {
            keyed.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        } else {
            keyed.sort_unstable();
        }
        keyed.into_iter().map(|k| k.3).collect()
    } else {
        let mut keyed: Vec<(u64, u64, u64, u32)> = rows
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let key = numeric_key(f, sort.column, findings);
                (key, f.first_ns, f.serial, i as u32)
            })
            .collect();
        if sort.descending {
            keyed.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        } else {
            keyed.sort_unstable();
        }
        keyed.into_iter().map(|k| k.3).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Services

/// How the Services view groups endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Workload,
    Namespace,
}

/// Traffic between two groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edge {
    pub src: String,
    pub dst: String,
    pub flows: u64,
    pub bytes: u64,
    pub encrypted: u64,
    pub plaintext: u64,
    pub allowed: u64,
    pub denied: u64,
    pub no_verdict: u64,
    /// Application protocols with flow counts, most common first.
    pub apps: Vec<(String, u64)>,
    /// Destination ports seen (at most 16 kept).
    pub ports: Vec<u16>,
    /// A filter that shows exactly the edge's flows in the Flows view: the source group's
    /// terms on `src.`, the destination group's on `dst.`.
    pub filter: String,
}

/// A group key borrowed from the rows (formatted once per distinct group).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey<'a> {
    Pair(&'a str, &'a str),
    One(&'a str),
    Owned(String),
}

impl GroupKey<'_> {
    fn name(&self) -> String {
        match self {
            GroupKey::Pair(a, b) => sanitize(&format!("{a}/{b}")),
            GroupKey::One(a) => sanitize(a),
            GroupKey::Owned(s) => s.clone(),
        }
    }
}

fn group_key(identity: Option<&Identity>, addr: std::net::IpAddr, group: Group) -> GroupKey<'_> {
    let Some(identity) = identity else {
        return GroupKey::Owned(addr.to_string());
    };
    match group {
        Group::Workload => match (identity_namespace(identity), identity_workload(identity)) {
            (Some(ns), Some((_, w))) => GroupKey::Pair(ns, w),
            _ => GroupKey::Owned(identity_label(identity, addr)),
        },
        Group::Namespace => match identity_namespace(identity) {
            Some(ns) => GroupKey::One(ns),
            None => GroupKey::One(match identity {
                Identity::Node { .. } | Identity::HostNetwork { .. } => "(nodes)",
                Identity::CloudMetadata { .. } => "(cloud-metadata)",
                Identity::External { .. } => "(external)",
                _ => "(unknown)",
            }),
        },
    }
}

/// The group (sanitized) an endpoint belongs to.
pub fn group_of(identity: Option<&Identity>, addr: std::net::IpAddr, group: Group) -> String {
    group_key(identity, addr, group).name()
}

/// What an endpoint's filter terms ([`group_terms`]) are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TermsKey<'a> {
    Workload(&'a str, &'a str),
    Ip(std::net::IpAddr),
    Namespace(&'a str),
    Nothing,
}

fn terms_key(identity: Option<&Identity>, addr: std::net::IpAddr, group: Group) -> TermsKey<'_> {
    let ns = identity.and_then(identity_namespace);
    match (group, ns, identity.and_then(identity_workload)) {
        (Group::Workload, Some(ns), Some((_, w))) => TermsKey::Workload(ns, w),
        (Group::Workload, ..) => TermsKey::Ip(addr),
        (Group::Namespace, Some(ns), _) => TermsKey::Namespace(ns),
        (Group::Namespace, None, _) => TermsKey::Nothing,
    }
}

/// The filter terms for `key` on one end of the flow (`src.` or `dst.`), printed by the
/// filter's own printer so they parse back to what was meant (a workload's name is an
/// anchored regex: compiling it is what makes terms worth caching, see
/// `viewmodel/edges.rs`).
fn terms(key: TermsKey<'_>, end: End) -> String {
    let field = |key: Key, value: Value| Expr::Term(Term::Sided(end, key, value)).to_string();
    match key {
        TermsKey::Workload(ns, w) => {
            let workload = match Rx::new(&format!("^{}$", regex::escape(w))) {
                Ok(rx) => Value::Regex(rx),
                Err(_) => Value::text(w),
            };
            format!(
                "{} {}",
                field(Key::Ns, Value::text(ns)),
                field(Key::Workload, workload)
            )
        }
        TermsKey::Ip(addr) => field(Key::Ip, Value::Net(ipnet::IpNet::from(addr))),
        TermsKey::Namespace(ns) => field(Key::Ns, Value::text(ns)),
        TermsKey::Nothing => String::new(),
    }
}

/// Filter terms naming an endpoint's group on one end (empty for buckets such as
/// `(external)`).
fn group_terms(
    identity: Option<&Identity>,
    addr: std::net::IpAddr,
    group: Group,
    end: End,
) -> String {
    terms(terms_key(identity, addr, group), end)
}

struct EdgeAgg<'a> {
    edge: Edge,
    /// The first flow's endpoints (they name the groups in the edge's filter).
    src: Endpoint<'a>,
    dst: Endpoint<'a>,
    apps: BTreeMap<&'static str, u64>,
    ports: BTreeSet<u16>,
}

/// Aggregates the filtered flows into edges between groups, from scratch (the App uses
/// [`EdgeCache`], which gives the same edges and aggregates each finished chunk once).
pub fn service_edges(
    rows: &FlowRows,
    index: &[u32],
    group: Group,
    sort: Sort<EdgeCol>,
) -> Vec<Edge> {
    let mut map: HashMap<(GroupKey<'_>, GroupKey<'_>), EdgeAgg<'_>> = HashMap::new();
    // Rows are visited in row order, whatever the Flows view's sort: memory is read
    // sequentially, and the edges (e.g. which ports are kept) do not depend on that sort.
    let keep = kept_rows(rows.len(), index);
    let kept = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| keep.as_ref().is_none_or(|k| k[*i]));
    for (_, f) in kept {
        if f.outer {
            continue;
        }
        let (src, dst) = flow_endpoints(f);
        let key = (
            group_key(src.0, src.1, group),
            group_key(dst.0, dst.1, group),
        );
        let agg = map.entry(key).or_insert_with(|| EdgeAgg {
            edge: Edge::default(),
            src,
            dst,
            apps: BTreeMap::new(),
            ports: BTreeSet::new(),
        });
        let app = count_flow(&mut agg.edge, f);
        *agg.apps.entry(app).or_default() += 1;
        if has_ports(f) && (agg.ports.len() < MAX_EDGE_PORTS || agg.ports.contains(&f.dst.port)) {
            agg.ports.insert(f.dst.port);
        }
    }
    let mut edges: Vec<Edge> = map
        .into_iter()
        .map(|((src, dst), agg)| {
            finish_edge(
                agg.edge,
                (src.name(), dst.name()),
                agg.apps,
                agg.ports.into_iter().collect(),
                edge_filter((agg.src, agg.dst), group),
            )
        })
        .collect();
    sort_edges(&mut edges, sort);
    edges
}

/// Which rows the filtered index holds (`None`: all of them).
fn kept_rows(rows: usize, index: &[u32]) -> Option<Vec<bool>> {
    (index.len() < rows).then(|| {
        let mut keep = vec![false; rows];
        for &i in index {
            if let Some(k) = keep.get_mut(i as usize) {
                *k = true;
            }
        }
        keep
    })
}

/// Destination ports an edge keeps (the first distinct ones in row order).
const MAX_EDGE_PORTS: usize = 16;

type Endpoint<'a> = (Option<&'a Identity>, std::net::IpAddr);

/// Adds one flow to an edge's counters; returns the application it is counted under.
fn count_flow(e: &mut Edge, f: &FlowSummary) -> &'static str {
    e.flows += 1;
    e.bytes += f.bytes();
    match f.app.encryption {
        Encryption::Encrypted => e.encrypted += 1,
        Encryption::Plaintext => e.plaintext += 1,
        Encryption::Unknown => {}
    }
    match f.enrichment.as_ref().and_then(|x| x.verdict.as_ref()) {
        Some(v) if v.allowed => e.allowed += 1,
        Some(_) => e.denied += 1,
        None => e.no_verdict += 1,
    }
    if f.app.app == crate::dissect::App::Unknown {
        match f.proto {
            ipproto::TCP => "tcp",
            ipproto::UDP => "udp",
            ipproto::SCTP => "sctp",
            _ => "ip",
        }
    } else {
        f.app.app.name()
    }
}

/// The flow's two endpoints as the Services view groups them.
fn flow_endpoints(f: &FlowSummary) -> (Endpoint<'_>, Endpoint<'_>) {
    match &f.enrichment {
        Some(e) => (
            (Some(&e.src_identity), f.src.addr),
            (Some(&e.dst_identity), f.dst.addr),
        ),
        None => ((None, f.src.addr), (None, f.dst.addr)),
    }
}

/// Completes an edge from its counters: names, applications (most common first), sorted
/// ports and its filter ([`edge_filter`]).
fn finish_edge(
    mut e: Edge,
    (src, dst): (String, String),
    apps: BTreeMap<&'static str, u64>,
    mut ports: Vec<u16>,
    filter: String,
) -> Edge {
    e.src = src;
    e.dst = dst;
    let mut apps: Vec<(String, u64)> = apps.into_iter().map(|(a, n)| (a.to_string(), n)).collect();
    apps.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    e.apps = apps;
    ports.sort_unstable();
    e.ports = ports;
    e.filter = filter;
    e
}

/// The filter showing an edge's flows, from its first flow's endpoints.
fn edge_filter(first: (Endpoint<'_>, Endpoint<'_>), group: Group) -> String {
    join_terms(
        &group_terms(first.0.0, first.0.1, group, End::Src),
        &group_terms(first.1.0, first.1.1, group, End::Dst),
    )
}

/// An edge's filter from its two endpoints' terms.
fn join_terms(src: &str, dst: &str) -> String {
    [src, dst]
        .iter()
        .filter(|t| !t.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

fn sort_edges(edges: &mut [Edge], sort: Sort<EdgeCol>) {
    edges.sort_by(|a, b| {
        let ord = match sort.column {
            EdgeCol::Bytes => a.bytes.cmp(&b.bytes),
            EdgeCol::Flows => a.flows.cmp(&b.flows),
            EdgeCol::Source => a.src.cmp(&b.src),
            EdgeCol::Destination => a.dst.cmp(&b.dst),
            EdgeCol::Plaintext => a.plaintext.cmp(&b.plaintext),
        };
        let ord = if sort.descending { ord.reverse() } else { ord };
        ord.then_with(|| a.src.cmp(&b.src))
            .then_with(|| a.dst.cmp(&b.dst))
    });
}

// ---------------------------------------------------------------------------------------
// Findings and policies

/// The Findings view's rows: indexes into `findings.findings` (engine order: most severe
/// first). With a filter, only findings that name at least one of the filtered flows.
pub fn findings(
    findings: &SnapshotFindings,
    rows: &FlowRows,
    index: &[u32],
    filtered: bool,
) -> Vec<u32> {
    if !filtered {
        return (0..findings.findings.len() as u32).collect();
    }
    let serials: std::collections::HashSet<u64> = index
        .iter()
        .filter_map(|&i| rows.get(i as usize).map(|f| f.serial))
        .collect();
    findings
        .findings
        .iter()
        .enumerate()
        .filter(|(_, f)| f.flows.iter().any(|s| serials.contains(s)))
        .map(|(i, _)| i as u32)
        .collect()
}

/// One NetworkPolicy and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyRow {
    /// `namespace/name`, sanitized.
    pub name: String,
    pub types: String,
    /// Pods it selects (`namespace/name`, sanitized).
    pub pods: Vec<String>,
    pub ingress_rules: usize,
    pub egress_rules: usize,
    /// Filtered flows one of its rules allowed.
    pub allowed_flows: u64,
    /// A few of those flows (`src → dst:port`).
    pub examples: Vec<String>,
}

/// The Policies view's data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyTable {
    pub rows: Vec<PolicyRow>,
    /// Pods no policy selects (sanitized), host-network pods excluded.
    pub unselected: Vec<String>,
    pub has_cluster: bool,
}

pub fn policy_table(cluster: Option<&ClusterState>, rows: &FlowRows, index: &[u32]) -> PolicyTable {
    let Some(cluster) = cluster else {
        return PolicyTable::default();
    };
    let mut selected_any: BTreeSet<(String, String)> = BTreeSet::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut out: Vec<PolicyRow> = Vec::new();
    for ((ns, name), policy) in &cluster.network_policies {
        let mut pods = Vec::new();
        for ((pns, pname), pod) in &cluster.pods {
            if pns == ns
                && !pod.host_network
                && !pod.phase.is_terminal()
                && policy.pod_selector.matches(&pod.labels)
            {
                pods.push(sanitize(&format!("{pns}/{pname}")));
                selected_any.insert((pns.clone(), pname.clone()));
            }
        }
        let mut types = Vec::new();
        if policy.affects_ingress {
            types.push("ingress");
        }
        if policy.affects_egress {
            types.push("egress");
        }
        by_name.insert(format!("{ns}/{name}"), out.len());
        out.push(PolicyRow {
            name: sanitize(&format!("{ns}/{name}")),
            types: types.join("+"),
            pods,
            ingress_rules: policy.ingress.len(),
            egress_rules: policy.egress.len(),
            allowed_flows: 0,
            examples: Vec::new(),
        });
    }
    for &i in index {
        let Some(f) = rows.get(i as usize) else {
            continue;
        };
        let Some(v) = f.enrichment.as_ref().and_then(|e| e.verdict.as_ref()) else {
            continue;
        };
        let mut seen: BTreeSet<usize> = BTreeSet::new();
        for dir in [&v.egress, &v.ingress] {
            if let DirectionVerdict::Allowed { by } = dir {
                for m in by {
                    if let Some(&row) = by_name.get(&m.policy) {
                        seen.insert(row);
                    }
                }
            }
        }
        for row in seen {
            let r = &mut out[row];
            r.allowed_flows += 1;
            if r.examples.len() < 5 {
                r.examples.push(format!(
                    "{} → {}:{}",
                    endpoint_text(f, true, true),
                    endpoint_text(f, false, true),
                    f.dst.port
                ));
            }
        }
    }
    let unselected = cluster
        .pods
        .iter()
        .filter(|(k, p)| !p.host_network && !p.phase.is_terminal() && !selected_any.contains(*k))
        .map(|((ns, n), _)| sanitize(&format!("{ns}/{n}")))
        .collect();
    PolicyTable {
        rows: out,
        unselected,
        has_cluster: true,
    }
}

// ---------------------------------------------------------------------------------------
// The screen view-model

/// What a piece of text means (the renderer maps roles to the palette).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Normal,
    Accent,
    Header,
    Plaintext,
    Encrypted,
    Denied,
    Allowed,
    Warn,
    Dim,
    Valid,
    Invalid,
    High,
    Medium,
    Low,
}

/// A piece of text with a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub role: Role,
}

impl Cell {
    pub fn new(text: impl Into<String>, role: Role) -> Cell {
        Cell {
            text: text.into(),
            role,
        }
    }

    pub fn plain(text: impl Into<String>) -> Cell {
        Cell::new(text, Role::Normal)
    }
}

/// A line of cells.
pub type Line = Vec<Cell>;

/// Column width: fixed or a share of what remains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    Fixed(u16),
    Fill(u16),
}

/// A table, visible rows only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableVm {
    pub headers: Vec<(String, Width)>,
    pub rows: Vec<Vec<Cell>>,
    /// Selected row among `rows`.
    pub selected: Option<usize>,
    /// Shown when there are no rows.
    pub empty: String,
}

/// The neighbours of one group: in → center → out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphVm {
    pub center: String,
    pub ins: Vec<Line>,
    pub outs: Vec<Line>,
}

/// The body of the current view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Table(TableVm),
    /// A table with a graph below (Services).
    TableGraph(TableVm, GraphVm),
    /// A table with text below (Policies).
    TableText(TableVm, Vec<Line>),
    /// Scrollable text with a title (details, Suggest).
    Text {
        title: String,
        lines: Vec<Line>,
        scroll: u16,
    },
    Stats {
        lines: Vec<Line>,
        packets: Vec<u64>,
        bytes: Vec<u64>,
    },
}

/// The help overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpVm {
    pub lines: Vec<Line>,
    pub scroll: u16,
}

/// Help lines visible at once on a terminal `height` rows tall (the overlay leaves a row
/// above and below and has a border).
pub fn help_rows(height: u16) -> usize {
    height.saturating_sub(4) as usize
}

/// Everything one frame shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    pub tabs: Vec<(String, bool)>,
    pub body: Body,
    pub input: Line,
    pub status: Line,
    /// Help overlay: its lines and the first one shown.
    pub help: Option<HelpVm>,
}

fn enc_cell(e: Encryption) -> Cell {
    match e {
        Encryption::Encrypted => Cell::new("• enc", Role::Encrypted),
        Encryption::Plaintext => Cell::new("⚠ PLAIN", Role::Plaintext),
        Encryption::Unknown => Cell::new("? unk", Role::Dim),
    }
}

fn verdict_cell(flow: &FlowSummary) -> Cell {
    match flow.enrichment.as_ref().and_then(|e| e.verdict.as_ref()) {
        Some(v) if v.allowed => Cell::new("✓ allow", Role::Allowed),
        Some(_) => Cell::new("✗ DENY", Role::Denied),
        None => Cell::new("-", Role::Dim),
    }
}

fn flow_columns(width: u16, wide: bool) -> Vec<FlowCol> {
    let mut cols = vec![
        FlowCol::Time,
        FlowCol::Source,
        FlowCol::Destination,
        FlowCol::Port,
        FlowCol::App,
        FlowCol::Enc,
    ];
    if wide || width >= 110 {
        cols.push(FlowCol::Server);
    }
    if wide || width >= 140 {
        cols.push(FlowCol::Packets);
    }
    if wide || width >= 100 {
        cols.push(FlowCol::Bytes);
    }
    cols.push(FlowCol::Verdict);
    if wide || width >= 120 {
        cols.push(FlowCol::Findings);
    }
    cols
}

fn col_width(c: FlowCol, narrow: bool) -> Width {
    match c {
        FlowCol::Time if narrow => Width::Fixed(8),
        FlowCol::Time => Width::Fixed(12),
        FlowCol::Source | FlowCol::Destination => Width::Fill(2),
        FlowCol::Port => Width::Fixed(5),
        FlowCol::App => Width::Fixed(7),
        FlowCol::Enc => Width::Fixed(7),
        FlowCol::Server => Width::Fill(1),
        FlowCol::Packets => Width::Fixed(6),
        FlowCol::Bytes => Width::Fixed(9),
        FlowCol::Verdict => Width::Fixed(7),
        FlowCol::Findings => Width::Fixed(4),
    }
}

fn flow_cell(
    f: &FlowSummary,
    findings: &SnapshotFindings,
    c: FlowCol,
    names: bool,
    narrow: bool,
) -> Cell {
    match c {
        FlowCol::Time if narrow => {
            Cell::plain(clock(f.first_ns).get(..8).unwrap_or_default().to_string())
        }
        FlowCol::Time => Cell::plain(clock(f.first_ns)),
        FlowCol::Source => Cell::plain(endpoint_text(f, true, names)),
        FlowCol::Destination => Cell::plain(endpoint_text(f, false, names)),
        FlowCol::Port => Cell::plain(if has_ports(f) {
            f.dst.port.to_string()
        } else {
            "-".into()
        }),
        FlowCol::App => Cell::plain(if f.app.app == crate::dissect::App::Unknown {
            f.proto_name().into_owned()
        } else {
            f.app.app.name().to_string()
        }),
        FlowCol::Enc => enc_cell(f.app.encryption),
        FlowCol::Server => Cell::plain(
            server_name(&f.app)
                .map(|s| sanitize(&s))
                .unwrap_or_else(|| "-".into()),
        ),
        FlowCol::Packets => Cell::plain(f.packets().to_string()),
        FlowCol::Bytes => Cell::plain(human_bytes(f.bytes())),
        FlowCol::Verdict => verdict_cell(f),
        FlowCol::Findings => match findings.count(f.serial) {
            0 => Cell::new("", Role::Dim),
            n => Cell::new(format!("!{n}"), Role::Warn),
        },
    }
}

fn flows_table(app: &App, areas: &Areas) -> TableVm {
    let cols = flow_columns(areas.table.width, app.wide);
    let narrow = areas.table.width < 100;
    let headers = cols
        .iter()
        .map(|c| {
            let mut t = c.title().to_string();
            if *c == app.flow_sort.column {
                t.push(if app.flow_sort.descending {
                    '▼'
                } else {
                    '▲'
                });
            }
            (t, col_width(*c, narrow))
        })
        .collect();
    let nav = app.nav[View::Flows.index()];
    let height = areas.table_rows();
    let rows: Vec<Vec<Cell>> = app
        .derived
        .flow_index
        .iter()
        .skip(nav.offset)
        .take(height)
        .filter_map(|&i| app.snapshot.rows.get(i as usize))
        .map(|f| {
            cols.iter()
                .map(|c| flow_cell(f, &app.snapshot.findings, *c, app.names, narrow))
                .collect()
        })
        .collect();
    let selected = (!rows.is_empty()).then(|| nav.selected.saturating_sub(nav.offset));
    TableVm {
        headers,
        rows,
        selected,
        empty: if app.filter.is_empty() {
            "no flows yet".into()
        } else {
            "no flow matches the filter (Esc clears it)".into()
        },
    }
}

fn kv(key: &str, value: impl Into<String>) -> Line {
    vec![
        Cell::new(format!("  {key:<14}"), Role::Dim),
        Cell::plain(value),
    ]
}

fn section(title: &str) -> Line {
    vec![Cell::new(title.to_string(), Role::Header)]
}

fn provenance_text(identity: &Identity) -> String {
    let p = identity.provenance();
    let mut text = format!("{:?}", p.basis);
    if let Some(c) = p.candidates {
        text.push_str(&format!(", {c} candidates"));
    }
    if p.uncertain {
        text.push_str(", uncertain");
    }
    if p.stale {
        text.push_str(", stale cluster data");
    }
    text
}

fn json_lines(prefix: &str, value: &serde_json::Value, out: &mut Vec<Line>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                json_lines(&key, v, out);
            }
        }
        serde_json::Value::Null | serde_json::Value::Bool(false) => {}
        serde_json::Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
            if !items.is_empty() {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                out.push(kv(
                    &sanitize_capped(prefix, 24),
                    sanitize(&parts.join(", ")),
                ));
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                json_lines(&format!("{prefix}[{i}]"), v, out);
            }
        }
        serde_json::Value::String(s) => out.push(kv(&sanitize_capped(prefix, 24), sanitize(s))),
        other => out.push(kv(&sanitize_capped(prefix, 24), other.to_string())),
    }
}

fn direction_lines(label: &str, v: &DirectionVerdict, out: &mut Vec<Line>) {
    match v {
        DirectionVerdict::NotIsolated => out.push(kv(label, "not isolated (no policy selects it)")),
        DirectionVerdict::Allowed { by } => {
            out.push(vec![
                Cell::new(format!("  {label:<15} "), Role::Dim),
                Cell::new("✓ allowed by", Role::Allowed),
            ]);
            for m in by {
                out.push(vec![Cell::plain(format!("      {m}"))]);
            }
        }
        DirectionVerdict::Denied { .. } => out.push(vec![
            Cell::new(format!("  {label:<15} "), Role::Dim),
            Cell::new(format!("✗ {v}"), Role::Denied),
        ]),
    }
}

/// The detail pane of one flow.
pub fn flow_detail(f: &FlowSummary, findings: &SnapshotFindings) -> Vec<Line> {
    let mut out = Vec::new();
    out.push(section("Flow"));
    out.push(kv("protocol", f.proto_name().into_owned()));
    out.push(kv("source", format!("{} port {}", f.src.addr, f.src.port)));
    out.push(kv(
        "destination",
        format!("{} port {}", f.dst.addr, f.dst.port),
    ));
    out.push(kv(
        "packets",
        format!(
            "{} → {} pkts / {} ; ← {} pkts / {}",
            "",
            f.fwd.packets,
            human_bytes(f.fwd.bytes),
            f.rev.packets,
            human_bytes(f.rev.bytes)
        ),
    ));
    if let Some(t) = f.tunnel {
        out.push(kv(
            "tunnel",
            format!("{}{}", t.as_str(), if f.outer { " (carrier)" } else { "" }),
        ));
    }
    out.push(kv("interfaces", format!("{:?}", f.interfaces)));
    let info = &f.app;
    out.push(kv(
        "app",
        format!("{} ({})", info.app.name(), enc_cell(info.encryption).text),
    ));
    out.push(section("Endpoints"));
    match &f.enrichment {
        Some(e) => {
            out.push(kv("source", e.src_identity.to_string()));
            out.push(kv("  provenance", provenance_text(&e.src_identity)));
            out.push(kv("destination", e.dst_identity.to_string()));
            out.push(kv("  provenance", provenance_text(&e.dst_identity)));
            if let Some(t) = &e.verdict_target {
                out.push(kv("  backend", sanitize(t)));
            }
        }
        None => out.push(kv("identities", "no cluster data (use --cluster)")),
    }
    out.push(section("NetworkPolicy"));
    match f.enrichment.as_ref().and_then(|e| e.verdict.as_ref()) {
        Some(v) => {
            out.push(if v.allowed {
                vec![Cell::new("  ✓ ALLOWED", Role::Allowed)]
            } else {
                vec![Cell::new("  ✗ DENIED (yet observed)", Role::Denied)]
            });
            direction_lines("egress (src)", &v.egress, &mut out);
            direction_lines("ingress (dst)", &v.ingress, &mut out);
        }
        None => out.push(kv(
            "verdict",
            "none (no cluster data, or a protocol policies cannot name)",
        )),
    }
    out.push(section("Credentials seen (redacted)"));
    if info.credentials.is_empty() {
        out.push(kv("none", ""));
    }
    for c in &info.credentials {
        out.push(vec![
            Cell::new(format!("  ⚠ {:?}", c.kind), Role::Plaintext),
            Cell::plain(format!(
                " {} at {} value {}",
                match c.dir {
                    crate::dissect::Dir::ToResponder => "→",
                    crate::dissect::Dir::ToInitiator => "←",
                },
                clock(c.ts_ns),
                sanitize(&c.redacted)
            )),
        ]);
    }
    let mut of_flow = findings.of_flow(f.serial).peekable();
    if of_flow.peek().is_some() {
        out.push(section("Findings"));
        for finding in of_flow {
            out.push(vec![
                severity_cell(finding.severity),
                Cell::plain(format!(" {} {}", finding.kind.as_str(), finding.id)),
            ]);
        }
    }
    out.push(section("TCP and timing"));
    out.push(kv("first packet", clock(f.first_ns)));
    out.push(kv("last packet", clock(f.last_ns)));
    out.push(kv(
        "duration",
        format!("{:.3} s", f.last_ns.saturating_sub(f.first_ns) as f64 / 1e9),
    ));
    match &f.tcp {
        Some(t) => {
            out.push(kv("state", t.state.as_str()));
            out.push(kv(
                "handshake",
                if t.handshake {
                    "seen"
                } else if t.midstream {
                    "not seen (joined mid-stream)"
                } else {
                    "incomplete"
                },
            ));
            out.push(kv(
                "handshake RTT",
                t.rtt_ns
                    .map_or("-".into(), |r| format!("{:.3} ms", r as f64 / 1e6)),
            ));
        }
        None => out.push(kv("state", "-")),
    }
    out.push(kv("ended", format!("{:?}", f.end)));
    out.push(section("Protocol"));
    out.push(kv("app", info.app.name()));
    let enc = enc_cell(info.encryption);
    out.push(vec![
        Cell::new(format!("  {:<14}", "encryption"), Role::Dim),
        enc,
    ]);
    if let Some(s) = server_name(info) {
        out.push(kv("server name", sanitize(&s)));
    }
    if let Some(s) = info.service {
        out.push(kv("service", s));
    }
    if let Some(h) = info.port_hint {
        out.push(kv("port hint", h.name()));
    }
    if let Some(h) = info.hint {
        out.push(kv("byte hint", format!("{h:?}")));
    }
    if let Some(u) = &info.upgrade {
        out.push(kv(
            "upgrade",
            format!(
                "{} ({})",
                u.via,
                if u.accepted { "accepted" } else { "refused" }
            ),
        ));
    }
    if let Some(facts) = &info.facts
        && let Ok(value) = serde_json::to_value(facts)
    {
        json_lines("", &value, &mut out);
    }
    out
}

fn severity_cell(s: Severity) -> Cell {
    match s {
        Severity::Critical => Cell::new("!!!! crit", Role::High),
        Severity::High => Cell::new("!!! high", Role::High),
        Severity::Medium => Cell::new("!!  medium", Role::Medium),
        Severity::Low => Cell::new("!   low", Role::Low),
        Severity::Info => Cell::new("    info", Role::Dim),
    }
}

fn share(part: u64, whole: u64) -> String {
    (part * 100)
        .checked_div(whole)
        .map_or_else(|| "-".into(), |p| format!("{p}%"))
}

/// The detail pane of one Services edge.
pub fn edge_detail(e: &Edge, group: Group) -> Vec<Line> {
    let mut out = vec![section("Edge")];
    let by = match group {
        Group::Workload => "workload",
        Group::Namespace => "namespace",
    };
    out.push(kv("source", format!("{} (by {by})", e.src)));
    out.push(kv("destination", e.dst.clone()));
    out.push(kv("flows", e.flows.to_string()));
    out.push(kv("bytes", human_bytes(e.bytes)));
    out.push(section("Protocols"));
    for (app, n) in &e.apps {
        out.push(kv(
            &format!("  {app}"),
            format!("{n} flows ({})", share(*n, e.flows)),
        ));
    }
    let ports: Vec<String> = e.ports.iter().map(|p| p.to_string()).collect();
    out.push(kv(
        "ports",
        if ports.is_empty() {
            "-".to_string()
        } else {
            ports.join(", ")
        },
    ));
    out.push(section("Encryption"));
    let unknown = e.flows.saturating_sub(e.encrypted + e.plaintext);
    out.push(vec![
        Cell::new(format!("  {:<14}", "encrypted"), Role::Dim),
        Cell::new(
            format!("{} ({})", e.encrypted, share(e.encrypted, e.flows)),
            Role::Encrypted,
        ),
    ]);
    out.push(vec![
        Cell::new(format!("  {:<14}", "plaintext"), Role::Dim),
        Cell::new(
            format!("{} ({})", e.plaintext, share(e.plaintext, e.flows)),
            if e.plaintext > 0 {
                Role::Plaintext
            } else {
                Role::Normal
            },
        ),
    ]);
    out.push(kv(
        "unknown",
        format!("{unknown} ({})", share(unknown, e.flows)),
    ));
    out.push(section("NetworkPolicy verdicts"));
    out.push(vec![
        Cell::new(format!("  {:<14}", "allowed"), Role::Dim),
        Cell::new(e.allowed.to_string(), Role::Allowed),
    ]);
    out.push(vec![
        Cell::new(format!("  {:<14}", "denied"), Role::Dim),
        Cell::new(
            e.denied.to_string(),
            if e.denied > 0 {
                Role::Denied
            } else {
                Role::Normal
            },
        ),
    ]);
    out.push(kv("no verdict", e.no_verdict.to_string()));
    out.push(section("Flows"));
    if e.filter.is_empty() {
        out.push(kv("filter", "none names these groups"));
    } else {
        out.push(vec![Cell::new(
            "  Enter shows them in Flows with the filter",
            Role::Dim,
        )]);
        out.push(vec![Cell::new(
            format!("    {}", sanitize(&e.filter)),
            Role::Accent,
        )]);
    }
    out
}

/// The edge whose detail pane is open, if it still exists.
pub fn open_edge(app: &App) -> Option<&Edge> {
    let (src, dst) = app.edge_detail.as_ref()?;
    app.derived
        .edges
        .iter()
        .find(|e| &e.src == src && &e.dst == dst)
}

fn services_body(app: &App, areas: &Areas) -> Body {
    if let Some(e) = open_edge(app) {
        return Body::Text {
            title: format!("{} → {} (Esc back, Enter: its flows)", e.src, e.dst),
            lines: edge_detail(e, app.group),
            scroll: app.detail_scroll,
        };
    }
    let nav = app.nav[View::Services.index()];
    let edges = &app.derived.edges;
    let headers = vec![
        ("SOURCE".to_string(), Width::Fill(1)),
        ("DESTINATION".to_string(), Width::Fill(1)),
        ("PROTOCOL".to_string(), Width::Fixed(10)),
        ("ENC%".to_string(), Width::Fixed(5)),
        ("VERDICTS".to_string(), Width::Fixed(11)),
        ("FLOWS".to_string(), Width::Fixed(6)),
        ("BYTES".to_string(), Width::Fixed(9)),
    ];
    let rows: Vec<Vec<Cell>> = edges
        .iter()
        .skip(nav.offset)
        .take(areas.table_rows())
        .map(|e| {
            let proto = e.apps.first().map(|a| a.0.clone()).unwrap_or_default();
            let enc = if e.plaintext > 0 {
                Cell::new(format!("⚠{}", share(e.encrypted, e.flows)), Role::Plaintext)
            } else {
                Cell::new(share(e.encrypted, e.flows), Role::Encrypted)
            };
            let verdicts = if e.denied > 0 {
                Cell::new(format!("✗{} ✓{}", e.denied, e.allowed), Role::Denied)
            } else if e.allowed > 0 {
                Cell::new(format!("✓{}", e.allowed), Role::Allowed)
            } else {
                Cell::new("-", Role::Dim)
            };
            vec![
                Cell::plain(e.src.clone()),
                Cell::plain(e.dst.clone()),
                Cell::plain(proto),
                enc,
                verdicts,
                Cell::plain(e.flows.to_string()),
                Cell::plain(human_bytes(e.bytes)),
            ]
        })
        .collect();
    let selected = (!rows.is_empty()).then(|| nav.selected.saturating_sub(nav.offset));
    let mut graph = GraphVm::default();
    if let Some(edge) = edges.get(nav.selected) {
        let center = edge.src.clone();
        graph.center = center.clone();
        for e in edges.iter().filter(|e| e.dst == center) {
            graph
                .ins
                .push(vec![Cell::plain(e.src.clone()), edge_tag(e)]);
        }
        for e in edges.iter().filter(|e| e.src == center) {
            graph
                .outs
                .push(vec![Cell::plain(e.dst.clone()), edge_tag(e)]);
        }
    }
    Body::TableGraph(
        TableVm {
            headers,
            rows,
            selected,
            empty: "no traffic between groups (yet)".into(),
        },
        graph,
    )
}

fn edge_tag(e: &Edge) -> Cell {
    let proto = e.apps.first().map(|a| a.0.as_str()).unwrap_or("");
    let ports: Vec<String> = e.ports.iter().take(3).map(|p| p.to_string()).collect();
    let mut text = format!(" {proto}:{}", ports.join(","));
    if e.plaintext > 0 {
        text.push_str(" ⚠plain");
    }
    if e.denied > 0 {
        text.push_str(" ✗denied");
    }
    let role = if e.denied > 0 {
        Role::Denied
    } else if e.plaintext > 0 {
        Role::Plaintext
    } else {
        Role::Dim
    };
    Cell::new(text, role)
}

fn findings_body(app: &App, areas: &Areas) -> Body {
    let nav = app.nav[View::Findings.index()];
    let rows: Vec<Vec<Cell>> = app
        .derived
        .findings
        .iter()
        .skip(nav.offset)
        .take(areas.table_rows())
        .filter_map(|&i| app.snapshot.findings.findings.get(i as usize))
        .map(|f: &Finding| {
            vec![
                severity_cell(f.severity),
                Cell::plain(f.kind.as_str()),
                // Sanitized by the rules engine; sanitizing again is a no-op.
                Cell::plain(sanitize(&f.title)),
                Cell::plain(f.flows.len().to_string()),
                Cell::plain(clock(f.first_ns)),
            ]
        })
        .collect();
    let selected = (!rows.is_empty()).then(|| nav.selected.saturating_sub(nav.offset));
    Body::Table(TableVm {
        headers: vec![
            ("SEVERITY".into(), Width::Fixed(10)),
            ("KIND".into(), Width::Fixed(21)),
            ("TITLE".into(), Width::Fill(1)),
            ("FLOWS".into(), Width::Fixed(5)),
            ("FIRST SEEN".into(), Width::Fixed(12)),
        ],
        rows,
        selected,
        empty: "no findings (rules engine, default rules: see `podwire rules --print-defaults`)"
            .into(),
    })
}

fn policies_body(app: &App, areas: &Areas) -> Body {
    let nav = app.nav[View::Policies.index()];
    let t = &app.derived.policies;
    let rows: Vec<Vec<Cell>> = t
        .rows
        .iter()
        .skip(nav.offset)
        .take(areas.table_rows())
        .map(|p| {
            vec![
                Cell::plain(p.name.clone()),
                Cell::plain(p.types.clone()),
                Cell::plain(p.pods.len().to_string()),
                Cell::plain(format!("{}/{}", p.ingress_rules, p.egress_rules)),
                Cell::new(
                    p.allowed_flows.to_string(),
                    if p.allowed_flows > 0 {
                        Role::Allowed
                    } else {
                        Role::Dim
                    },
                ),
            ]
        })
        .collect();
    let selected = (!rows.is_empty()).then(|| nav.selected.saturating_sub(nav.offset));
    let mut lines = Vec::new();
    if let Some(p) = t.rows.get(nav.selected) {
        lines.push(vec![Cell::new(
            format!("{} selects:", p.name),
            Role::Header,
        )]);
        let pods = if p.pods.is_empty() {
            "(no pods)".to_string()
        } else {
            p.pods.join(", ")
        };
        lines.push(vec![Cell::plain(format!("  {pods}"))]);
        lines.push(vec![Cell::new(
            format!("allowed {} flows, e.g.:", p.allowed_flows),
            Role::Header,
        )]);
        for e in &p.examples {
            lines.push(vec![Cell::plain(format!("  ✓ {e}"))]);
        }
    }
    if t.has_cluster {
        lines.push(vec![Cell::new(
            format!("Pods selected by no policy ({}):", t.unselected.len()),
            Role::Warn,
        )]);
        lines.push(vec![Cell::plain(format!("  {}", t.unselected.join(", ")))]);
    }
    Body::TableText(
        TableVm {
            headers: vec![
                ("POLICY".into(), Width::Fill(2)),
                ("TYPES".into(), Width::Fixed(14)),
                ("PODS".into(), Width::Fixed(4)),
                ("RULES I/E".into(), Width::Fixed(9)),
                ("ALLOWED".into(), Width::Fixed(7)),
            ],
            rows,
            selected,
            empty: if t.has_cluster {
                "the cluster has no NetworkPolicies".into()
            } else {
                "no cluster data: pass --cluster SNAPSHOT".into()
            },
        },
        lines,
    )
}

fn suggest_body() -> Body {
    Body::Text {
        title: "Suggest".into(),
        lines: vec![
            vec![Cell::plain(
                "NetworkPolicy suggestions come from `podwire suggest`, which is being built.",
            )],
            vec![Cell::plain("")],
            vec![Cell::plain(
                "This view will show them for the flows you see here, with what each",
            )],
            vec![Cell::plain(
                "policy covers and why; `:save DIR` will write them as YAML.",
            )],
            vec![Cell::plain("")],
            vec![Cell::new("Nothing is suggested yet.", Role::Dim)],
        ],
        scroll: 0,
    }
}

fn rates(app: &App) -> (Vec<u64>, Vec<u64>) {
    let h: Vec<_> = app.history.iter().collect();
    let mut packets = Vec::new();
    let mut bytes = Vec::new();
    for w in h.windows(2) {
        let dt = w[1].position_ns.saturating_sub(w[0].position_ns);
        if dt == 0 {
            packets.push(0);
            bytes.push(0);
            continue;
        }
        packets.push(w[1].frames.saturating_sub(w[0].frames) * 1_000_000_000 / dt);
        bytes.push(w[1].bytes.saturating_sub(w[0].bytes) * 1_000_000_000 / dt);
    }
    (packets, bytes)
}

fn stats_body(app: &App) -> Body {
    let s = &app.snapshot;
    let st = &s.stats;
    let mut lines = Vec::new();
    let duration = match (st.first_ns, st.last_ns) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    let (p, b) = rates(app);
    let flows: u64 = st.flows_by_proto.values().sum();
    lines.push(kv(
        "packets",
        format!("{} ({} /s now)", st.frames, p.last().copied().unwrap_or(0)),
    ));
    lines.push(kv(
        "bytes",
        format!(
            "{} ({}/s now)",
            human_bytes(st.bytes),
            human_bytes(b.last().copied().unwrap_or(0))
        ),
    ));
    lines.push(kv(
        "duration",
        format!("{:.3} s of packet time", duration as f64 / 1e9),
    ));
    lines.push(kv(
        "flows",
        format!(
            "{flows} ({} live, {} rows kept)",
            s.live_flows,
            s.rows.len()
        ),
    ));
    let errors: u64 = st.decode_errors.values().sum();
    let mut err_line = kv("decode errors", errors.to_string());
    if errors > 0 {
        let kinds: Vec<String> = st
            .decode_errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        err_line.push(Cell::new(format!("  ({})", kinds.join(", ")), Role::Dim));
    }
    lines.push(err_line);
    lines.push(kv(
        "duplicates",
        format!(
            "{} removed (same packet on several interfaces)",
            st.duplicates_removed
        ),
    ));
    lines.push(kv(
        "evictions",
        format!(
            "{} rows dropped from the view's ring, {} flows evicted from the table",
            s.evicted_rows, st.table.evicted
        ),
    ));
    let ring = &s.packet_ring;
    let caps = ring.caps.unwrap_or_default();
    let mut ring_line = kv(
        "packet ring",
        format!(
            "{} frames ({} of {}), {} evicted, {} too large",
            ring.frames,
            human_bytes(ring.bytes as u64),
            human_bytes(caps.bytes as u64),
            ring.evicted_frames,
            ring.too_large
        ),
    );
    ring_line.push(Cell::new("  kept for e / :export", Role::Dim));
    lines.push(ring_line);
    let drops = if s.kind == SourceKind::Live {
        s.capture_drops.to_string()
    } else {
        "n/a (file)".into()
    };
    lines.push(kv("capture drops", drops));
    for i in &s.capture_interfaces {
        lines.push(kv(
            &format!("  {}", sanitize(&i.name)),
            format!(
                "{} {} received, {} filtered, {} kernel drops, {} queue drops, {} truncated — {}",
                i.kind,
                i.received,
                i.filtered,
                i.kernel_drops.map_or_else(|| "?".into(), |k| k.to_string()),
                i.queue_drops,
                i.truncated,
                sanitize(&i.status)
            ),
        ));
    }
    lines.push(kv(
        "ui skipped",
        format!("{} snapshots", s.snapshots_skipped),
    ));
    if let Some(r) = &s.rtt {
        lines.push(kv(
            "tcp rtt",
            format!("{} handshakes p50 {} µs p99 {} µs", r.samples, r.p50, r.p99),
        ));
    }
    let cluster = match &s.cluster_origin {
        ClusterOrigin::None => "none (no identities or verdicts)".to_string(),
        ClusterOrigin::SnapshotFile { path, taken_at_ns } => format!(
            "snapshot file {}, taken at {}",
            sanitize(path),
            taken_at_ns.map_or("an unknown time".into(), |t| format!(
                "{} UTC",
                clock(t.max(0) as u64)
            ))
        ),
        ClusterOrigin::ApiServer { last_update_ns } => format!(
            "API server watch, last update {}",
            last_update_ns.map_or("not yet".into(), clock)
        ),
    };
    lines.push(kv("cluster", cluster));
    Body::Stats {
        lines,
        packets: p,
        bytes: b,
    }
}

/// Help for the current view.
pub fn help(app: &App) -> Vec<Line> {
    let mut out = vec![section(&format!("{} — keys", app.view.title()))];
    let actions: &[Action] = match app.view {
        View::Flows => &[
            Action::Down,
            Action::Up,
            Action::PageDown,
            Action::Top,
            Action::Bottom,
            Action::Open,
            Action::Back,
            Action::Sort,
            Action::SortReverse,
            Action::Names,
            Action::Wide,
            Action::Export,
        ],
        View::Services => &[
            Action::Down,
            Action::Up,
            Action::PageDown,
            Action::Open,
            Action::Back,
            Action::Sort,
            Action::SortReverse,
            Action::Group,
        ],
        View::Findings => &[Action::Down, Action::Up, Action::Open],
        View::Policies => &[Action::Down, Action::Up],
        View::Suggest | View::Stats => &[],
    };
    let common = [
        Action::Filter,
        Action::Command,
        Action::Pause,
        Action::Faster,
        Action::Slower,
        Action::NextView,
        Action::PrevView,
        Action::Help,
        Action::Quit,
    ];
    for a in actions.iter().chain(common.iter()) {
        let keys = app.config.keys.keys_for(*a).join(" ");
        out.push(vec![
            Cell::new(format!(" {keys:<12} "), Role::Accent),
            Cell::plain(a.describe()),
        ]);
    }
    out.push(vec![
        Cell::new(format!(" {:<12} ", "1-6"), Role::Accent),
        Cell::plain("switch view"),
    ]);
    if app.view == View::Services {
        out.push(vec![Cell::plain(
            "  Enter on an edge: its details; Enter again: its flows",
        )]);
    }
    out.push(section(
        "Filter: key:value, !neg, and/or, ( ), /regex/, free text",
    ));
    out.push(vec![Cell::plain(
        "  ns pod workload svc node ip(CIDR) port(a-b) proto app sni",
    )]);
    out.push(vec![Cell::plain(
        "  src./dst. pick one end: src.ns:shop dst.port:6379",
    )]);
    out.push(vec![Cell::plain(
        "  enc:plaintext verdict:denied finding:credentials   (docs/filter.md)",
    )]);
    out
}

fn status_line(app: &App) -> Line {
    let s = &app.snapshot;
    let p = &s.progress;
    let mut out = Vec::new();
    let state = if p.done {
        Cell::new("■ done", Role::Accent)
    } else if app.paused {
        Cell::new(
            if s.kind == SourceKind::Live {
                "❚❚ frozen"
            } else {
                "❚❚ paused"
            },
            Role::Warn,
        )
    } else {
        Cell::new("▶", Role::Accent)
    };
    out.push(state);
    let kind = match s.kind {
        SourceKind::Replay => "replay",
        SourceKind::Live => "live",
    };
    out.push(Cell::plain(format!(
        " {kind} {}",
        sanitize_capped(&s.label, 24)
    )));
    if let Some(pos) = p.position_ns {
        let mut text = format!(" {}", clock(pos));
        if p.done {
            text.push_str(" 100%");
        } else if let Some(percent) =
            (p.bytes_read.min(p.bytes_total) * 100).checked_div(p.bytes_total)
        {
            text.push_str(&format!(" {percent}%"));
        }
        out.push(Cell::plain(text));
    }
    if s.kind == SourceKind::Replay {
        out.push(Cell::new(format!(" {}", app.speed.label()), Role::Accent));
    }
    out.push(Cell::plain(format!(
        " │ {}/{} flows",
        app.derived.flow_index.len(),
        s.rows.len()
    )));
    if let Some(e) = &p.error {
        out.push(Cell::new(
            format!(" │ ✗ {}", sanitize_capped(e, 60)),
            Role::Invalid,
        ));
    }
    if let Some(msg) = &app.status {
        out.push(Cell::new(format!(" │ {msg}"), Role::Warn));
    } else {
        out.push(Cell::new(" │ ? help", Role::Dim));
    }
    out
}

fn input_line(app: &App) -> Line {
    match &app.mode {
        Mode::Filter { input, error } => {
            let mut line = vec![
                Cell::new("/", Role::Accent),
                Cell::plain(format!("{}█", sanitize(input))),
            ];
            match error {
                None => line.push(Cell::new("  ✓ valid", Role::Valid)),
                Some(e) => line.push(Cell::new(
                    format!("  ✗ {}", sanitize(&e.to_string())),
                    Role::Invalid,
                )),
            }
            line
        }
        Mode::Command { input } => vec![
            Cell::new(":", Role::Accent),
            Cell::plain(format!("{}█", sanitize(input))),
            Cell::new("  (tab completes)", Role::Dim),
        ],
        Mode::ConfirmQuit => vec![Cell::new("Quit the live capture? (y/n)", Role::Warn)],
        _ if !app.filter.is_empty() => vec![
            Cell::new("filter ", Role::Dim),
            Cell::new(sanitize(&app.filter.text), Role::Accent),
            Cell::new("  (/ edit, esc clears)", Role::Dim),
        ],
        _ => vec![Cell::new(
            "/ filter  : command  ⏎ open  s sort  d names  space pause  ? help  q quit",
            Role::Dim,
        )],
    }
}

/// Builds the frame's view-model.
pub fn screen(app: &App) -> Screen {
    let areas = app.layout();
    let tabs = tab_spans()
        .into_iter()
        .map(|(v, text, ..)| (text, v == app.view))
        .collect();
    let body = match app.view {
        View::Flows => match app
            .detail
            .and_then(|serial| app.snapshot.rows.iter().find(|f| f.serial == serial))
        {
            Some(f) => Body::Text {
                title: format!(
                    "Flow {} → {} (Esc back)",
                    endpoint_text(f, true, true),
                    endpoint_text(f, false, true)
                ),
                lines: flow_detail(f, &app.snapshot.findings),
                scroll: app.detail_scroll,
            },
            None => Body::Table(flows_table(app, &areas)),
        },
        View::Services => services_body(app, &areas),
        View::Findings => findings_body(app, &areas),
        View::Policies => policies_body(app, &areas),
        View::Suggest => suggest_body(),
        View::Stats => stats_body(app),
    };
    Screen {
        tabs,
        body,
        input: input_line(app),
        status: status_line(app),
        help: (app.mode == Mode::Help).then(|| HelpVm {
            lines: help(app),
            scroll: app.help_scroll,
        }),
    }
}
