//! Baselines: the set of communication edges seen in a capture, saved and compared later.
//!
//! Pure. An [`Edge`] is (source workload, destination workload or external DNS name, port,
//! protocol); sources and destinations use [`super::party::Party::display`]-style names, so an
//! edge survives pod restarts. [`Baseline`] serializes as sorted JSON (same flows → same bytes).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::party::{PartyKind, parties};
use crate::summary::FlowSummary;

/// One communication edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    /// Source: `namespace/workload`, `node:NAME`, `external:IP`…
    pub src: String,
    /// Destination: `namespace/workload`, an external DNS name, `external:IP`…
    pub dst: String,
    /// Destination port (0 for port-less protocols).
    pub port: u16,
    /// Protocol name (`tcp`, `udp`…).
    pub proto: String,
}

/// The saved edge set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// Format version (1).
    pub version: u32,
    /// Edges, sorted.
    pub edges: BTreeSet<Edge>,
}

/// Edge of a flow, or `None` for flows that never got an answer (scans, refused attempts),
/// which are not part of how the system normally talks.
pub fn edge_of(flow: &FlowSummary) -> Option<Edge> {
    if !flow.carried_data() || flow.outer {
        return None;
    }
    let (src, dst) = parties(flow);
    let dst_name = match (dst.kind, &dst.dns_name) {
        (PartyKind::External, Some(name)) => name.clone(),
        _ => dst.display.clone(),
    };
    Some(Edge {
        src: src.display,
        dst: dst_name,
        port: flow.dst.port,
        proto: flow.proto_name().into_owned(),
    })
}

/// Every edge of the flows, with the serials of the flows that make each.
pub fn edges(flows: &[FlowSummary]) -> BTreeMap<Edge, Vec<u64>> {
    let mut out: BTreeMap<Edge, Vec<u64>> = BTreeMap::new();
    for f in flows {
        if let Some(e) = edge_of(f) {
            out.entry(e).or_default().push(f.serial);
        }
    }
    out
}

impl Baseline {
    /// The baseline of a capture.
    pub fn from_flows(flows: &[FlowSummary]) -> Baseline {
        Baseline {
            version: 1,
            edges: edges(flows).into_keys().collect(),
        }
    }

    /// Pretty JSON, stable.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a saved baseline.
    pub fn parse(text: &str) -> Result<Baseline, serde_json::Error> {
        serde_json::from_str(text)
    }
}
