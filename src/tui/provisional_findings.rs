//! Provisional findings for the TUI's Findings view, until the real rules engine
//! (`src/findings`) lands.
//!
//! This module derives only the obvious findings straight from [`FlowSummary`] rows:
//! cleartext credentials on a plaintext flow, flows that NetworkPolicy would deny but that
//! were observed anyway, and connections to the cloud metadata address (169.254.169.254).
//! It is pure and deterministic (rows come out in a stable order), and it is the one place to
//! swap: replace [`findings`] and [`flow_kinds`] with adapters over the rules engine's
//! `Finding { id, kind, severity, title, flows, evidence, … }` and nothing else changes.

use std::collections::BTreeMap;

use crate::cluster::identity::{CLOUD_METADATA_V4, CLOUD_METADATA_V6, Identity};
use crate::dissect::Encryption;
use crate::report::identity_label;
use crate::summary::FlowSummary;

/// How bad a finding is (ordered: `Info` < `Low` < `Medium` < `High`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// The provisional finding kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// A credential crossed the wire in clear.
    CleartextCredentials,
    /// NetworkPolicy denies the flow, yet it was observed.
    DeniedObserved,
    /// A pod talked to the cloud instance metadata service.
    CloudMetadata,
}

impl FindingKind {
    pub const ALL: [FindingKind; 3] = [
        FindingKind::CleartextCredentials,
        FindingKind::DeniedObserved,
        FindingKind::CloudMetadata,
    ];

    /// Stable, filterable name (`finding:credentials`).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::CleartextCredentials => "credentials",
            FindingKind::DeniedObserved => "denied",
            FindingKind::CloudMetadata => "metadata",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            FindingKind::CleartextCredentials => Severity::High,
            FindingKind::DeniedObserved => Severity::Medium,
            FindingKind::CloudMetadata => Severity::High,
        }
    }
}

/// One row of the Findings view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    pub severity: Severity,
    pub kind: FindingKind,
    /// Sanitized, ready to display.
    pub title: String,
    /// Flows that show the finding.
    pub flows: usize,
    /// Packet time (ns) of the earliest flow.
    pub first_seen_ns: u64,
    /// Serial of the earliest flow (to jump to it).
    pub first_serial: u64,
}

/// The kinds of finding one flow shows, as a bit set in declaration order of
/// [`FindingKind::ALL`]; cheap enough for per-row filtering.
pub fn flow_kinds(flow: &FlowSummary) -> u8 {
    let mut bits = 0u8;
    if flow.app.encryption == Encryption::Plaintext && !flow.app.credentials.is_empty() {
        bits |= 1;
    }
    if let Some(e) = &flow.enrichment {
        if e.verdict.as_ref().is_some_and(|v| !v.allowed) {
            bits |= 2;
        }
        if matches!(e.dst_identity, Identity::CloudMetadata { .. }) {
            bits |= 4;
        }
    }
    if flow.dst.addr == CLOUD_METADATA_V4 || flow.dst.addr == CLOUD_METADATA_V6 {
        bits |= 4;
    }
    bits
}

/// Number of findings a flow shows.
pub fn flow_finding_count(flow: &FlowSummary) -> u32 {
    flow_kinds(flow).count_ones()
}

/// True when the flow shows a finding of `kind`.
pub fn has_kind(flow: &FlowSummary, kind: FindingKind) -> bool {
    let index = FindingKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0);
    flow_kinds(flow) & (1 << index) != 0
}

/// Findings over a set of flows: one row per (kind, subject), highest severity first, then
/// earliest, then title.
pub fn findings<'a>(flows: impl IntoIterator<Item = &'a FlowSummary>) -> Vec<FindingRow> {
    let mut rows: BTreeMap<(FindingKind, String), FindingRow> = BTreeMap::new();
    for flow in flows {
        let bits = flow_kinds(flow);
        if bits == 0 {
            continue;
        }
        for (i, kind) in FindingKind::ALL.iter().enumerate() {
            if bits & (1 << i) == 0 {
                continue;
            }
            let title = title(*kind, flow);
            let row = rows
                .entry((*kind, title.clone()))
                .or_insert_with(|| FindingRow {
                    severity: kind.severity(),
                    kind: *kind,
                    title,
                    flows: 0,
                    first_seen_ns: flow.first_ns,
                    first_serial: flow.serial,
                });
            row.flows += 1;
            if (flow.first_ns, flow.serial) < (row.first_seen_ns, row.first_serial) {
                row.first_seen_ns = flow.first_ns;
                row.first_serial = flow.serial;
            }
        }
    }
    let mut out: Vec<FindingRow> = rows.into_values().collect();
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.first_seen_ns.cmp(&b.first_seen_ns))
            .then_with(|| a.title.cmp(&b.title))
    });
    out
}

fn endpoint_names(flow: &FlowSummary) -> (String, String) {
    match &flow.enrichment {
        Some(e) => (
            identity_label(&e.src_identity, flow.src.addr),
            identity_label(&e.dst_identity, flow.dst.addr),
        ),
        None => (flow.src.addr.to_string(), flow.dst.addr.to_string()),
    }
}

fn title(kind: FindingKind, flow: &FlowSummary) -> String {
    let (src, dst) = endpoint_names(flow);
    let port = flow.dst.port;
    match kind {
        FindingKind::CleartextCredentials => {
            let mut kinds: Vec<String> = flow
                .app
                .credentials
                .iter()
                .map(|c| format!("{:?}", c.kind))
                .collect();
            kinds.sort();
            kinds.dedup();
            format!(
                "cleartext {} credentials ({}) {src} → {dst}:{port}",
                flow.app.app.name(),
                kinds.join(", ")
            )
        }
        FindingKind::DeniedObserved => {
            format!("policy denies but traffic seen: {src} → {dst}")
        }
        FindingKind::CloudMetadata => format!("cloud metadata reached by {src}"),
    }
}
