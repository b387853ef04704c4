//! The Findings view's data: the rules engine's findings ([`crate::findings::evaluate`] with
//! the default rules, as `podwire findings` runs it) over a snapshot's flows, plus a per-flow
//! index (serial → findings) for the flow table's `!N` column, the detail panel and the
//! `finding:` filter.
//!
//! [`SnapshotFindings::compute`] is pure and deterministic. The source thread runs it when it
//! publishes a snapshot (never the render path) and shares the result with every snapshot
//! until the flows change; see `source.rs` for how often it is recomputed.

use std::collections::HashMap;

use crate::cluster::model::ClusterState;
use crate::findings::{Finding, FindingKind, Inputs, RulesConfig, evaluate};
use crate::summary::FlowSummary;
use crate::tui::source::FlowRows;

/// Findings over a snapshot's flows and which flows each one names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotFindings {
    /// Most severe first (then first packet, then id), exactly as `podwire findings`.
    pub findings: Vec<Finding>,
    /// Flow serial → indexes into `findings`.
    by_flow: HashMap<u64, Vec<u32>>,
    /// (flow serial, number of findings naming it), by serial: two snapshots' findings are
    /// compared by merging these ([`SnapshotFindings::changed_counts`]).
    counts: Vec<(u64, u32)>,
    /// How many flows the findings were computed over.
    pub flows_evaluated: usize,
}

/// Bit of `kind` in a per-flow kind set (position in [`FindingKind::ALL`]).
pub fn kind_bit(kind: FindingKind) -> u16 {
    let index = FindingKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0);
    1 << index
}

/// What `finding:` accepts: `any`, every kind's name, and the short aliases.
pub const FILTER_VALUES: &[&str] = &[
    "any",
    "cleartext-credentials",
    "cloud-metadata",
    "kubelet-access",
    "etcd-access",
    "api-server-access",
    "node-ssh",
    "scan",
    "enforcement-gap",
    "cross-namespace",
    "cleartext-external",
    "cleartext-internal",
    "foreign-dns",
    "unselected-workload",
    "new-edge",
    "credentials",
    "denied",
    "metadata",
];

/// Short names the `finding:` filter also accepts (earlier releases' names).
pub fn kind_alias(kind: FindingKind) -> Option<&'static str> {
    match kind {
        FindingKind::CleartextCredentials => Some("credentials"),
        FindingKind::CloudMetadata => Some("metadata"),
        FindingKind::EnforcementGap => Some("denied"),
        _ => None,
    }
}

impl SnapshotFindings {
    /// Runs the rules engine (default rules) over `rows` and `cluster`, like
    /// `podwire findings` (flows ordered by first packet, then serial).
    pub fn compute(rows: &FlowRows, cluster: Option<&ClusterState>) -> SnapshotFindings {
        let mut flows: Vec<FlowSummary> = rows.iter().cloned().collect();
        flows.sort_by_key(|f| (f.first_ns, f.serial));
        SnapshotFindings::from_flows(&flows, cluster, &RulesConfig::default())
    }

    /// Runs the rules engine over flows already in order.
    pub fn from_flows(
        flows: &[FlowSummary],
        cluster: Option<&ClusterState>,
        rules: &RulesConfig,
    ) -> SnapshotFindings {
        let report = evaluate(Inputs {
            flows,
            cluster,
            baseline: None,
            rules,
        });
        let mut out = SnapshotFindings::from_findings(report.findings);
        out.flows_evaluated = flows.len();
        out
    }

    /// Indexes a list of findings.
    pub fn from_findings(findings: Vec<Finding>) -> SnapshotFindings {
        let mut by_flow: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, f) in findings.iter().enumerate() {
            for &serial in &f.flows {
                by_flow.entry(serial).or_default().push(i as u32);
            }
        }
        let mut counts: Vec<(u64, u32)> = by_flow
            .iter()
            .map(|(&serial, v)| (serial, v.len() as u32))
            .collect();
        counts.sort_unstable();
        SnapshotFindings {
            findings,
            by_flow,
            counts,
            flows_evaluated: 0,
        }
    }

    /// The findings that name the flow.
    pub fn of_flow(&self, serial: u64) -> impl Iterator<Item = &Finding> + '_ {
        self.by_flow
            .get(&serial)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.findings.get(i as usize))
    }

    /// Number of findings that name the flow.
    pub fn count(&self, serial: u64) -> u32 {
        self.by_flow.get(&serial).map_or(0, |v| v.len() as u32)
    }

    /// Serials of the flows `self` and `other` name a different number of times (what the
    /// `!N` column shows and sorts by), ascending: one merge of the two per-flow count lists.
    pub fn changed_counts(&self, other: &SnapshotFindings) -> Vec<u64> {
        let (a, b) = (&self.counts, &other.counts);
        let (mut i, mut j) = (0, 0);
        let mut changed = Vec::new();
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => {
                    changed.push(a[i].0);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    changed.push(b[j].0);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if a[i].1 != b[j].1 {
                        changed.push(a[i].0);
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        changed.extend(a[i..].iter().map(|c| c.0));
        changed.extend(b[j..].iter().map(|c| c.0));
        changed
    }

    /// The kinds of finding that name the flow, as a bit set (see [`kind_bit`]).
    pub fn kinds(&self, serial: u64) -> u16 {
        self.of_flow(serial)
            .fold(0, |bits, f| bits | kind_bit(f.kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_cover_every_kind() {
        for k in FindingKind::ALL {
            assert!(FILTER_VALUES.contains(&k.as_str()), "{k}");
            if let Some(a) = kind_alias(k) {
                assert!(FILTER_VALUES.contains(&a), "{a}");
            }
        }
    }

    fn naming(flows: &[&[u64]]) -> SnapshotFindings {
        let findings = flows
            .iter()
            .enumerate()
            .map(|(n, serials)| {
                Finding::naming_flows(format!("PW-TEST-{n}"), FindingKind::Scan, serials.to_vec())
            })
            .collect();
        SnapshotFindings::from_findings(findings)
    }

    #[test]
    fn changed_counts_lists_flows_named_a_different_number_of_times() {
        let before = naming(&[&[1, 2, 3, 9], &[9]]);
        let after = naming(&[&[2, 3, 4, 9], &[2, 9]]);
        assert_eq!(before.changed_counts(&after), vec![1, 2, 4]);
        assert_eq!(after.changed_counts(&before), vec![1, 2, 4]);
        assert!(after.changed_counts(&after.clone()).is_empty());
        assert_eq!(
            SnapshotFindings::default().changed_counts(&before),
            vec![1, 2, 3, 9]
        );
    }
}
