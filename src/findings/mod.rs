//! Findings: rules that turn observed flows (plus the cluster's objects) into security findings,
//! and a baseline diff.
//!
//! Pure and deterministic: [`evaluate`] reads only its arguments (no I/O, no clock; time is the
//! packets'), and the same flows, cluster, rules and baseline give the same findings in the same
//! order with the same ids. A finding's id is `PW-<KIND>-<8 hex>`, a 32-bit FNV-1a hash of the
//! kind and the edge or subject it is about (never of serials or times), so it stays the same
//! across captures of the same behaviour. Every string in a finding is sanitized; credential
//! findings carry only the redacted prefix the dissector kept, never the secret.
//!
//! The rules (see `docs/findings.md`): cleartext between pods / leaving the cluster, cleartext
//! credentials, cloud metadata access, kubelet / etcd / API server / node SSH access from pods,
//! scan-like fan-out, cross-namespace connections no policy allows, enforcement gaps (denied
//! flows that carried data), workloads no policy selects, DNS to foreign resolvers, and new
//! edges versus a baseline.

pub mod baseline;
pub mod commands;
pub mod party;
pub mod rules;
pub mod sarif;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cluster::model::ClusterState;
use crate::dissect::{App, Encryption, Facts};
use crate::policy::{DirectionVerdict, Verdict};
use crate::sanitize::sanitize;
use crate::summary::FlowSummary;

pub use baseline::{Baseline, Edge};
pub use party::{Party, PartyKind, parties};
pub use rules::{DEFAULT_RULES_TOML, RulesConfig};

/// How bad a finding is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    #[default]
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// One level up, at most `cap`.
    pub fn bump(self, cap: Severity) -> Severity {
        let up = match self {
            Severity::Info => Severity::Low,
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        };
        up.min(cap).max(self)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity {other:?} (expected info, low, medium, high, critical)"
            )),
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An unencrypted protocol between pods.
    CleartextInternal,
    /// An unencrypted protocol from a pod to outside the cluster.
    CleartextExternal,
    /// A credential crossed the wire in clear.
    CleartextCredentials,
    /// A pod talked to the cloud instance metadata service.
    CloudMetadata,
    /// A pod talked to a kubelet API port.
    KubeletAccess,
    /// A pod talked to etcd.
    EtcdAccess,
    /// A workload not on the allow-list called the API server.
    ApiServerAccess,
    /// A pod opened SSH to a node.
    NodeSsh,
    /// One source touched many ports or peers in a short time, mostly refused.
    Scan,
    /// A connection across namespaces that no policy explicitly allows.
    CrossNamespace,
    /// A flow the NetworkPolicies deny was observed carrying data.
    EnforcementGap,
    /// A workload takes part in traffic while no NetworkPolicy selects it.
    UnselectedWorkload,
    /// A pod used a DNS resolver other than the cluster's.
    ForeignDns,
    /// An edge not in the baseline.
    NewEdge,
}

impl FindingKind {
    /// Every kind, in report order.
    pub const ALL: [FindingKind; 14] = [
        FindingKind::CleartextCredentials,
        FindingKind::CloudMetadata,
        FindingKind::KubeletAccess,
        FindingKind::EtcdAccess,
        FindingKind::ApiServerAccess,
        FindingKind::NodeSsh,
        FindingKind::Scan,
        FindingKind::EnforcementGap,
        FindingKind::CrossNamespace,
        FindingKind::CleartextExternal,
        FindingKind::CleartextInternal,
        FindingKind::ForeignDns,
        FindingKind::UnselectedWorkload,
        FindingKind::NewEdge,
    ];

    /// kebab-case name (as in rules files and JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::CleartextInternal => "cleartext-internal",
            FindingKind::CleartextExternal => "cleartext-external",
            FindingKind::CleartextCredentials => "cleartext-credentials",
            FindingKind::CloudMetadata => "cloud-metadata",
            FindingKind::KubeletAccess => "kubelet-access",
            FindingKind::EtcdAccess => "etcd-access",
            FindingKind::ApiServerAccess => "api-server-access",
            FindingKind::NodeSsh => "node-ssh",
            FindingKind::Scan => "scan",
            FindingKind::CrossNamespace => "cross-namespace",
            FindingKind::EnforcementGap => "enforcement-gap",
            FindingKind::UnselectedWorkload => "unselected-workload",
            FindingKind::ForeignDns => "foreign-dns",
            FindingKind::NewEdge => "new-edge",
        }
    }

    /// Id prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            FindingKind::CleartextInternal => "PW-CLEAR",
            FindingKind::CleartextExternal => "PW-CLEAREXT",
            FindingKind::CleartextCredentials => "PW-CRED",
            FindingKind::CloudMetadata => "PW-IMDS",
            FindingKind::KubeletAccess => "PW-KUBELET",
            FindingKind::EtcdAccess => "PW-ETCD",
            FindingKind::ApiServerAccess => "PW-APISERVER",
            FindingKind::NodeSsh => "PW-NODESSH",
            FindingKind::Scan => "PW-SCAN",
            FindingKind::CrossNamespace => "PW-LATERAL",
            FindingKind::EnforcementGap => "PW-GAP",
            FindingKind::UnselectedWorkload => "PW-NOPOLICY",
            FindingKind::ForeignDns => "PW-DNS",
            FindingKind::NewEdge => "PW-NEWEDGE",
        }
    }

    /// One-line description (SARIF rule text, docs).
    pub fn description(self) -> &'static str {
        match self {
            FindingKind::CleartextInternal => "Unencrypted application protocol between pods",
            FindingKind::CleartextExternal => {
                "Unencrypted application protocol from a pod to outside the cluster"
            }
            FindingKind::CleartextCredentials => "Credentials sent in cleartext",
            FindingKind::CloudMetadata => "Pod accessed the cloud instance metadata service",
            FindingKind::KubeletAccess => "Pod connected to a kubelet API port",
            FindingKind::EtcdAccess => "Pod connected to etcd",
            FindingKind::ApiServerAccess => {
                "Workload not expected to call the Kubernetes API server called it"
            }
            FindingKind::NodeSsh => "Pod opened SSH to a node",
            FindingKind::Scan => "Scan-like fan-out: many ports or peers, mostly refused",
            FindingKind::CrossNamespace => {
                "Cross-namespace connection that no NetworkPolicy explicitly allows"
            }
            FindingKind::EnforcementGap => {
                "Flow denied by NetworkPolicy was observed carrying data (enforcement gap)"
            }
            FindingKind::UnselectedWorkload => {
                "Workload takes part in traffic while no NetworkPolicy selects it"
            }
            FindingKind::ForeignDns => "Pod used a DNS resolver other than the cluster's",
            FindingKind::NewEdge => "Communication edge not present in the baseline",
        }
    }

    /// MITRE ATT&CK (Containers matrix) technique where one fits.
    pub fn mitre(self) -> Option<&'static str> {
        match self {
            FindingKind::CleartextInternal
            | FindingKind::CleartextExternal
            | FindingKind::CleartextCredentials => Some("T1040 Network Sniffing"),
            FindingKind::CloudMetadata => Some("T1552.005 Cloud Instance Metadata API"),
            FindingKind::KubeletAccess => Some("T1609 Container Administration Command"),
            FindingKind::EtcdAccess => Some("T1552.007 Container API"),
            FindingKind::ApiServerAccess => Some("T1613 Container and Resource Discovery"),
            FindingKind::NodeSsh => Some("T1021.004 Remote Services: SSH"),
            FindingKind::Scan => Some("T1046 Network Service Discovery"),
            FindingKind::ForeignDns => Some("T1071.004 Application Layer Protocol: DNS"),
            FindingKind::CrossNamespace
            | FindingKind::EnforcementGap
            | FindingKind::UnselectedWorkload
            | FindingKind::NewEdge => None,
        }
    }

    /// True for kinds that describe traffic an attacker makes (suggestions leave it out),
    /// as opposed to a weakness of legitimate traffic.
    pub fn attack_like(self) -> bool {
        matches!(
            self,
            FindingKind::CloudMetadata
                | FindingKind::KubeletAccess
                | FindingKind::EtcdAccess
                | FindingKind::ApiServerAccess
                | FindingKind::NodeSsh
                | FindingKind::Scan
                | FindingKind::CrossNamespace
                | FindingKind::EnforcementGap
                | FindingKind::ForeignDns
        )
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable id, e.g. `PW-CLEAR-3f9a1c2e`.
    pub id: String,
    /// Kind.
    pub kind: FindingKind,
    /// Severity (after the rules file's overrides).
    pub severity: Severity,
    /// One line for humans (sanitized).
    pub title: String,
    /// Source party (sanitized display name).
    pub source: String,
    /// Destination party, when the finding is about an edge.
    pub destination: Option<String>,
    /// Serials of the flows behind it, ascending.
    pub flows: Vec<u64>,
    /// Structured evidence (sanitized strings).
    pub evidence: BTreeMap<String, String>,
    /// First packet of the first flow (ns since the epoch).
    pub first_ns: u64,
    /// Last packet of the last flow.
    pub last_ns: u64,
    /// MITRE ATT&CK technique.
    pub mitre: Option<&'static str>,
    /// Namespaces of the ends (for suppressions).
    #[serde(skip)]
    pub namespaces: Vec<String>,
    /// Workload names of the ends (for suppressions).
    #[serde(skip)]
    pub workloads: Vec<String>,
}

impl Finding {
    /// A low-severity finding with only an id, a kind and its flows, everything else empty:
    /// for tests and benchmarks of code that only reads which flows findings name.
    pub fn naming_flows(id: String, kind: FindingKind, flows: Vec<u64>) -> Finding {
        Finding {
            id,
            kind,
            severity: Severity::Low,
            title: String::new(),
            source: String::new(),
            destination: None,
            flows,
            evidence: BTreeMap::new(),
            first_ns: 0,
            last_ns: 0,
            mitre: None,
            namespaces: Vec::new(),
            workloads: Vec::new(),
        }
    }
}

/// A finding dropped by a suppression.
#[derive(Debug, Clone, Serialize)]
pub struct Suppressed {
    /// The finding.
    pub finding: Finding,
    /// The suppression's reason.
    pub reason: Option<String>,
}

/// Everything [`evaluate`] produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FindingsReport {
    /// Findings, most severe first (then by first packet, then id).
    pub findings: Vec<Finding>,
    /// Findings a suppression dropped.
    pub suppressed: Vec<Suppressed>,
}

impl FindingsReport {
    /// Highest severity among the (unsuppressed) findings.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// 32-bit FNV-1a: small, dependency-free and stable across platforms and releases.
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The stable id of a finding of `kind` about `subject`.
pub fn finding_id(kind: FindingKind, subject: &str) -> String {
    let h = fnv1a32(format!("{}|{subject}", kind.as_str()).as_bytes());
    format!("{}-{h:08x}", kind.prefix())
}

/// A finding being assembled from one or more flows.
struct Draft {
    kind: FindingKind,
    severity: Severity,
    title: String,
    source: String,
    destination: Option<String>,
    flows: BTreeSet<u64>,
    evidence: BTreeMap<String, BTreeSet<String>>,
    first_ns: u64,
    last_ns: u64,
    namespaces: BTreeSet<String>,
    workloads: BTreeSet<String>,
}

#[derive(Default)]
struct Collector {
    drafts: BTreeMap<(FindingKind, String), Draft>,
}

impl Collector {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kind: FindingKind,
        subject: String,
        severity: Severity,
        title: impl FnOnce() -> String,
        src: &Party,
        dst: Option<&Party>,
        flow: &FlowSummary,
        evidence: &[(&str, String)],
    ) {
        let draft = self.drafts.entry((kind, subject)).or_insert_with(|| Draft {
            kind,
            severity,
            title: title(),
            source: src.display.clone(),
            destination: dst.map(|d| d.display.clone()),
            flows: BTreeSet::new(),
            evidence: BTreeMap::new(),
            first_ns: flow.first_ns,
            last_ns: flow.last_ns,
            namespaces: BTreeSet::new(),
            workloads: BTreeSet::new(),
        });
        draft.severity = draft.severity.max(severity);
        draft.flows.insert(flow.serial);
        draft.first_ns = draft.first_ns.min(flow.first_ns);
        draft.last_ns = draft.last_ns.max(flow.last_ns);
        for p in std::iter::once(src).chain(dst) {
            if let Some(ns) = &p.namespace {
                draft.namespaces.insert(ns.clone());
            }
            if let Some(w) = &p.workload {
                draft.workloads.insert(w.clone());
            }
        }
        for (k, v) in evidence {
            if !v.is_empty() {
                draft
                    .evidence
                    .entry((*k).to_string())
                    .or_default()
                    .insert(sanitize(v));
            }
        }
    }

    fn finish(self, rules: &RulesConfig) -> FindingsReport {
        let mut report = FindingsReport::default();
        for ((kind, subject), d) in self.drafts {
            let evidence = d
                .evidence
                .into_iter()
                .map(|(k, vs)| {
                    let n = vs.len();
                    let mut list: Vec<String> = vs.into_iter().take(32).collect();
                    if n > 32 {
                        list.push(format!("(+{} more)", n - 32));
                    }
                    (k, list.join(", "))
                })
                .collect();
            let finding = Finding {
                id: finding_id(kind, &subject),
                kind,
                severity: rules.severity(kind, d.severity),
                title: d.title,
                source: d.source,
                destination: d.destination,
                flows: d.flows.into_iter().collect(),
                evidence,
                first_ns: d.first_ns,
                last_ns: d.last_ns,
                mitre: kind.mitre(),
                namespaces: d.namespaces.into_iter().collect(),
                workloads: d.workloads.into_iter().collect(),
            };
            debug_assert_eq!(finding.kind, d.kind);
            match rules.suppressed_by(&finding) {
                Some(s) => report.suppressed.push(Suppressed {
                    finding,
                    reason: s.reason.clone(),
                }),
                None => report.findings.push(finding),
            }
        }
        let order = |a: &Finding, b: &Finding| {
            b.severity
                .cmp(&a.severity)
                .then(a.first_ns.cmp(&b.first_ns))
                .then(a.id.cmp(&b.id))
        };
        report.findings.sort_by(order);
        report
            .suppressed
            .sort_by(|a, b| order(&a.finding, &b.finding));
        report
    }
}

/// What the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Observed flows.
    pub flows: &'a [FlowSummary],
    /// The cluster's objects, when known (needed by the unselected-workload rule).
    pub cluster: Option<&'a ClusterState>,
    /// A saved baseline (enables the new-edge rule).
    pub baseline: Option<&'a Baseline>,
    /// Thresholds, severities, suppressions.
    pub rules: &'a RulesConfig,
}

/// True when a NetworkPolicy rule names the connection (in either direction) and it is allowed.
pub fn explicitly_allowed(v: &Verdict) -> bool {
    v.allowed
        && (matches!(v.egress, DirectionVerdict::Allowed { .. })
            || matches!(v.ingress, DirectionVerdict::Allowed { .. }))
}

fn subject(parts: &[&str]) -> String {
    parts.join("|")
}

fn edge_subject(src: &Party, dst: &Party, flow: &FlowSummary) -> String {
    subject(&[
        &src.display,
        &dst.display,
        &flow.dst.port.to_string(),
        &flow.proto_name(),
    ])
}

fn port_str(flow: &FlowSummary) -> String {
    format!("{}/{}", flow.dst.port, flow.proto_name())
}

/// Runs every enabled rule.
pub fn evaluate(inputs: Inputs<'_>) -> FindingsReport {
    let rules = inputs.rules;
    let mut c = Collector::default();
    let on = |k: FindingKind| rules.is_enabled(k);
    for flow in inputs.flows.iter().filter(|f| !f.outer) {
        let (src, dst) = parties(flow);
        cleartext(&mut c, rules, flow, &src, &dst);
        if on(FindingKind::CleartextCredentials) {
            credentials(&mut c, flow, &src, &dst);
        }
        if on(FindingKind::CloudMetadata) {
            metadata(&mut c, flow, &src, &dst);
        }
        control_plane(&mut c, rules, flow, &src, &dst);
        if on(FindingKind::CrossNamespace) {
            cross_namespace(&mut c, flow, &src, &dst);
        }
        if on(FindingKind::EnforcementGap) {
            enforcement_gap(&mut c, rules, flow, &src, &dst);
        }
        if on(FindingKind::ForeignDns) {
            foreign_dns(&mut c, rules, flow, &src, &dst);
        }
        if on(FindingKind::NewEdge)
            && let Some(base) = inputs.baseline
            && let Some(edge) = baseline::edge_of(flow)
            && !base.edges.contains(&edge)
        {
            c.add(
                FindingKind::NewEdge,
                subject(&[&edge.src, &edge.dst, &edge.port.to_string(), &edge.proto]),
                Severity::Low,
                || {
                    format!(
                        "new edge {} → {} {}/{}",
                        edge.src,
                        sanitize(&edge.dst),
                        edge.port,
                        edge.proto
                    )
                },
                &src,
                Some(&dst),
                flow,
                &[
                    ("edge_destination", edge.dst.clone()),
                    ("port", port_str(flow)),
                ],
            );
        }
    }
    if on(FindingKind::Scan) {
        scans(&mut c, rules, inputs.flows);
    }
    if on(FindingKind::UnselectedWorkload)
        && let Some(state) = inputs.cluster
    {
        unselected(&mut c, state, inputs.flows);
    }
    c.finish(rules)
}

fn cleartext(c: &mut Collector, rules: &RulesConfig, flow: &FlowSummary, src: &Party, dst: &Party) {
    let app = flow.app.app;
    if flow.app.encryption != Encryption::Plaintext || app == App::Dns || !flow.carried_data() {
        return;
    }
    if !src.is_pod() {
        return;
    }
    let listed = rules.cleartext.protocols.get(app.name()).copied();
    let (kind, severity) = match dst.kind {
        PartyKind::Workload | PartyKind::ClusterDns if dst.is_pod() => (
            FindingKind::CleartextInternal,
            listed.unwrap_or(rules.cleartext.internal),
        ),
        PartyKind::External => (
            FindingKind::CleartextExternal,
            listed.map_or(rules.cleartext.external, |s| s.bump(Severity::High)),
        ),
        _ => return,
    };
    if !rules.is_enabled(kind) {
        return;
    }
    let mut evidence = vec![("app", app.name().to_string()), ("port", port_str(flow))];
    if let Some(Facts::Http(h)) = &flow.app.facts
        && let Some(host) = &h.host
    {
        evidence.push(("http_host", host.clone()));
    }
    if let Some(name) = &dst.dns_name {
        evidence.push(("dns_name", name.clone()));
    }
    let where_ = if kind == FindingKind::CleartextExternal {
        " leaving the cluster"
    } else {
        ""
    };
    c.add(
        kind,
        subject(&[&edge_subject(src, dst, flow), app.name()]),
        severity,
        || {
            format!(
                "cleartext {}{where_}: {} → {} {}",
                app.name(),
                src.display,
                dst.display,
                port_str(flow)
            )
        },
        src,
        Some(dst),
        flow,
        &evidence,
    );
}

fn credentials(c: &mut Collector, flow: &FlowSummary, src: &Party, dst: &Party) {
    for cred in &flow.app.credentials {
        let kind_name = serde_json::to_value(cred.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        c.add(
            FindingKind::CleartextCredentials,
            subject(&[&edge_subject(src, dst, flow), &kind_name]),
            Severity::Critical,
            || {
                format!(
                    "{kind_name} credentials in cleartext: {} → {} {}",
                    src.display,
                    dst.display,
                    port_str(flow)
                )
            },
            src,
            Some(dst),
            flow,
            &[
                ("credential", kind_name.clone()),
                ("redacted", cred.redacted.clone()),
                ("app", flow.app.app.name().to_string()),
                ("port", port_str(flow)),
            ],
        );
    }
}

fn metadata(c: &mut Collector, flow: &FlowSummary, src: &Party, dst: &Party) {
    let to_metadata = dst.kind == PartyKind::CloudMetadata || party::is_metadata_ip(dst.ip);
    let from_pod = src.is_pod() || src.kind == PartyKind::Address;
    if !to_metadata || !from_pod {
        return;
    }
    let mut severity = Severity::High;
    let mut evidence = vec![
        ("port", port_str(flow)),
        ("answered", flow.carried_data().to_string()),
    ];
    if let Some(Facts::Http(h)) = &flow.app.facts {
        if let Some(path) = &h.path {
            let lower = path.to_ascii_lowercase();
            if lower.contains("security-credentials")
                || lower.contains("/token")
                || lower.contains("service-accounts")
            {
                severity = Severity::Critical;
            }
            evidence.push(("http_path", path.clone()));
        }
        if let Some(status) = h.status {
            evidence.push(("http_status", status.to_string()));
        }
    }
    c.add(
        FindingKind::CloudMetadata,
        subject(&[&src.display, &dst.ip.to_string()]),
        severity,
        || format!("cloud metadata access from {} ({})", src.display, dst.ip),
        src,
        Some(dst),
        flow,
        &evidence,
    );
}

fn control_plane(
    c: &mut Collector,
    rules: &RulesConfig,
    flow: &FlowSummary,
    src: &Party,
    dst: &Party,
) {
    if !src.is_pod() {
        return;
    }
    let cp = &rules.control_plane;
    let port = flow.dst.port;
    let hit = if dst.kind == PartyKind::ApiServer {
        let allowed = src
            .workload_key()
            .is_some_and(|(ns, w)| cp.api_server_allowed(&ns, &w));
        (!allowed).then_some((
            FindingKind::ApiServerAccess,
            Severity::Medium,
            "the API server",
        ))
    } else if dst.kind == PartyKind::Node && cp.kubelet_ports.contains(&port) {
        Some((FindingKind::KubeletAccess, Severity::High, "a kubelet"))
    } else if dst.kind == PartyKind::Node && cp.ssh_ports.contains(&port) {
        Some((FindingKind::NodeSsh, Severity::High, "SSH on a node"))
    } else if cp.etcd_ports.contains(&port)
        && matches!(
            dst.kind,
            PartyKind::Node | PartyKind::Workload | PartyKind::Unknown
        )
        && dst.workload_key() != src.workload_key()
    {
        Some((FindingKind::EtcdAccess, Severity::High, "etcd"))
    } else {
        None
    };
    let Some((kind, severity, what)) = hit else {
        return;
    };
    if !rules.is_enabled(kind) {
        return;
    }
    c.add(
        kind,
        edge_subject(src, dst, flow),
        severity,
        || {
            format!(
                "{} connected to {what} ({} {})",
                src.display,
                dst.display,
                port_str(flow)
            )
        },
        src,
        Some(dst),
        flow,
        &[
            ("port", port_str(flow)),
            ("answered", flow.carried_data().to_string()),
            ("app", flow.app.app.name().to_string()),
        ],
    );
}

fn cross_namespace(c: &mut Collector, flow: &FlowSummary, src: &Party, dst: &Party) {
    if !src.is_pod() || !dst.is_pod() || dst.kind == PartyKind::ClusterDns {
        return;
    }
    if src.namespace == dst.namespace {
        return;
    }
    let Some(e) = &flow.enrichment else { return };
    let verdict_text = match &e.verdict {
        Some(v) if explicitly_allowed(v) => return,
        Some(v) => v.to_string(),
        None => "no verdict for this protocol".to_string(),
    };
    let severity = if flow.carried_data() {
        Severity::Medium
    } else {
        Severity::Low
    };
    c.add(
        FindingKind::CrossNamespace,
        subject(&[&src.display, &dst.display]),
        severity,
        || {
            format!(
                "cross-namespace connection no policy allows: {} → {}",
                src.display, dst.display
            )
        },
        src,
        Some(dst),
        flow,
        &[
            ("ports", port_str(flow)),
            ("verdict", verdict_text),
            ("answered", flow.carried_data().to_string()),
        ],
    );
}

fn enforcement_gap(
    c: &mut Collector,
    rules: &RulesConfig,
    flow: &FlowSummary,
    src: &Party,
    dst: &Party,
) {
    let Some(v) = flow.enrichment.as_ref().and_then(|e| e.verdict.as_ref()) else {
        return;
    };
    if v.allowed || !flow.carried_data() {
        return;
    }
    if src.kind == PartyKind::Node && !rules.enforcement_gap.include_node_sources {
        return;
    }
    let mut isolated = Vec::new();
    for d in [&v.egress, &v.ingress] {
        if let DirectionVerdict::Denied { isolated_by } = d {
            isolated.extend(isolated_by.iter().cloned());
        }
    }
    c.add(
        FindingKind::EnforcementGap,
        edge_subject(src, dst, flow),
        Severity::High,
        || {
            format!(
                "denied by NetworkPolicy but carried data: {} → {} {}",
                src.display,
                dst.display,
                port_str(flow)
            )
        },
        src,
        Some(dst),
        flow,
        &[
            ("port", port_str(flow)),
            ("isolated_by", isolated.join(", ")),
            ("verdict", v.to_string()),
        ],
    );
}

fn foreign_dns(
    c: &mut Collector,
    rules: &RulesConfig,
    flow: &FlowSummary,
    src: &Party,
    dst: &Party,
) {
    let dns = flow.app.app == App::Dns
        || (flow.dst.port == 53
            && matches!(flow.proto, 6 | 17)
            && flow.app.app == App::Unknown
            && flow.carried_data());
    if !dns || !src.is_pod() || src.kind == PartyKind::ClusterDns {
        return;
    }
    if matches!(dst.kind, PartyKind::ClusterDns | PartyKind::Address)
        || rules.dns.allowed_resolvers.contains(&dst.ip)
    {
        return;
    }
    let mut evidence = vec![("resolver", dst.ip.to_string()), ("port", port_str(flow))];
    if let Some(Facts::Dns(d)) = &flow.app.facts {
        for q in &d.queries {
            evidence.push(("queries", q.name.clone()));
        }
    }
    c.add(
        FindingKind::ForeignDns,
        subject(&[&src.display, &dst.ip.to_string()]),
        Severity::Medium,
        || {
            format!(
                "DNS to a non-cluster resolver: {} → {}",
                src.display, dst.display
            )
        },
        src,
        Some(dst),
        flow,
        &evidence,
    );
}

/// True when a flow's attempt was refused or never answered.
pub fn refused(flow: &FlowSummary) -> bool {
    match &flow.tcp {
        Some(t) => t.refused(),
        None => flow.rev.packets == 0,
    }
}

fn scans(c: &mut Collector, rules: &RulesConfig, flows: &[FlowSummary]) {
    let cfg = &rules.scan;
    let window = cfg.window_seconds.saturating_mul(1_000_000_000);
    let mut by_source: BTreeMap<Party, Vec<&FlowSummary>> = BTreeMap::new();
    for f in flows
        .iter()
        .filter(|f| !f.outer && matches!(f.proto, 6 | 17 | 132))
    {
        let (src, _) = parties(f);
        by_source.entry(src).or_default().push(f);
    }
    for (src, mut list) in by_source {
        list.sort_by_key(|f| (f.first_ns, f.serial));
        let mut hits: BTreeSet<usize> = BTreeSet::new();
        // Sliding window over first-packet times with incremental counts.
        let mut ports: HashMap<std::net::IpAddr, HashMap<(u16, u8), u32>> = HashMap::new();
        let mut refused_n = 0usize;
        let mut lo = 0usize;
        for hi in 0..list.len() {
            let f = list[hi];
            *ports
                .entry(f.dst.addr)
                .or_default()
                .entry((f.dst.port, f.proto))
                .or_default() += 1;
            refused_n += usize::from(refused(f));
            while list[hi].first_ns.saturating_sub(list[lo].first_ns) > window {
                let g = list[lo];
                if let Some(m) = ports.get_mut(&g.dst.addr) {
                    if let Some(n) = m.get_mut(&(g.dst.port, g.proto)) {
                        *n -= 1;
                        if *n == 0 {
                            m.remove(&(g.dst.port, g.proto));
                        }
                    }
                    if m.is_empty() {
                        ports.remove(&g.dst.addr);
                    }
                }
                refused_n -= usize::from(refused(g));
                lo += 1;
            }
            let attempts = hi - lo + 1;
            let many_ports = ports.get(&f.dst.addr).map_or(0, |m| m.len()) >= cfg.min_ports;
            let many_peers = ports.len() >= cfg.min_peers;
            let ratio = refused_n as f64 / attempts as f64;
            if (many_ports || many_peers) && ratio >= cfg.min_refused_ratio {
                // Port fan-out: the attempts on that peer; peer fan-out: every attempt.
                hits.extend((lo..=hi).filter(|&i| many_peers || list[i].dst.addr == f.dst.addr));
            }
        }
        if hits.is_empty() {
            continue;
        }
        let chosen: Vec<&FlowSummary> = hits.iter().map(|&i| list[i]).collect();
        let peers: BTreeSet<String> = chosen.iter().map(|f| parties(f).1.display).collect();
        let mut port_list: Vec<(u16, u8)> = chosen.iter().map(|f| (f.dst.port, f.proto)).collect();
        port_list.sort_unstable();
        port_list.dedup();
        let refused_count = chosen.iter().filter(|f| refused(f)).count();
        let open: BTreeSet<String> = chosen
            .iter()
            .filter(|f| !refused(f))
            .map(|f| port_str(f))
            .collect();
        let summary = [
            ("attempts", chosen.len().to_string()),
            ("refused", refused_count.to_string()),
            ("distinct_ports", port_list.len().to_string()),
            ("distinct_peers", peers.len().to_string()),
            ("open", open.iter().cloned().collect::<Vec<_>>().join(" ")),
        ];
        for (i, f) in chosen.iter().enumerate() {
            let (_, dst) = parties(f);
            let mut ev: Vec<(&str, String)> = vec![("peers", dst.display.clone())];
            ev.push(("ports", f.dst.port.to_string()));
            if i == 0 {
                ev.extend(summary.iter().cloned());
            }
            c.add(
                FindingKind::Scan,
                src.display.clone(),
                Severity::High,
                || {
                    format!(
                        "scan-like fan-out from {}: {} ports on {} peers, {} of {} refused",
                        src.display,
                        port_list.len(),
                        peers.len(),
                        refused_count,
                        chosen.len()
                    )
                },
                &src,
                None,
                f,
                &ev,
            );
        }
    }
}

fn unselected(c: &mut Collector, state: &ClusterState, flows: &[FlowSummary]) {
    // (namespace, workload) → (receives, sends, representative party, flows)
    type Activity<'a> = (bool, bool, Party, Vec<&'a FlowSummary>);
    let mut active: BTreeMap<(String, String), Activity<'_>> = BTreeMap::new();
    for f in flows.iter().filter(|f| !f.outer) {
        let (src, dst) = parties(f);
        for (p, receives) in [(src, false), (dst, true)] {
            if receives && !f.carried_data() {
                continue;
            }
            let Some(key) = p.workload_key() else {
                continue;
            };
            let e = active
                .entry(key)
                .or_insert_with(|| (false, false, p, Vec::new()));
            if receives {
                e.0 = true;
            } else {
                e.1 = true;
            }
            e.3.push(f);
        }
    }
    for ((ns, _), (receives, sends, party, list)) in active {
        let Some(pod) = party.pod.as_ref().and_then(|name| state.pod(&ns, name)) else {
            continue;
        };
        if pod.host_network {
            continue;
        }
        let (mut ing, mut eg) = (false, false);
        for p in state
            .network_policies
            .values()
            .filter(|p| p.namespace == ns)
        {
            if p.pod_selector.matches(&pod.labels) {
                ing |= p.affects_ingress;
                eg |= p.affects_egress;
            }
        }
        let flag_ingress = receives && !ing;
        let flag_any = sends && !ing && !eg;
        if !flag_ingress && !flag_any {
            continue;
        }
        let severity = if flag_ingress {
            Severity::Medium
        } else {
            Severity::Low
        };
        let mut directions = Vec::new();
        if flag_ingress {
            directions.push("ingress (receives traffic)");
        }
        if sends && !eg {
            directions.push("egress (sends traffic)");
        }
        for f in list {
            c.add(
                FindingKind::UnselectedWorkload,
                party.display.clone(),
                severity,
                || format!("{} is selected by no NetworkPolicy", party.display),
                &party,
                None,
                f,
                &[
                    ("unrestricted", directions.join(", ")),
                    (
                        "workload",
                        format!(
                            "{} {}",
                            party.workload_kind.clone().unwrap_or_default(),
                            party.display
                        ),
                    ),
                ],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_prefixed() {
        let a = finding_id(FindingKind::CleartextInternal, "a|b|80|tcp|http");
        assert_eq!(
            a,
            finding_id(FindingKind::CleartextInternal, "a|b|80|tcp|http")
        );
        assert!(a.starts_with("PW-CLEAR-"));
        assert_eq!(a.len(), "PW-CLEAR-".len() + 8);
        assert_ne!(
            a,
            finding_id(FindingKind::CleartextInternal, "a|b|81|tcp|http")
        );
        // FNV-1a reference values.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    }

    #[test]
    fn severity_order_bump_and_parse() {
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
        assert_eq!(Severity::Low.bump(Severity::High), Severity::Medium);
        assert_eq!(Severity::High.bump(Severity::High), Severity::High);
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert!("urgent".parse::<Severity>().is_err());
    }

    use crate::cluster::identity::{Basis, Identity, Provenance, Via, WorkloadRef};
    use crate::engine::Enrichment;
    use crate::flow::{DirCounters, EndReason, Endpoint};

    fn prov() -> Provenance {
        Provenance {
            basis: Basis::ExactPodIp,
            candidates: None,
            uncertain: false,
            stale: false,
        }
    }

    fn pod(ns: &str, workload: &str) -> Identity {
        Identity::Pod {
            namespace: ns.into(),
            name: format!("{workload}-abc"),
            workload: WorkloadRef {
                kind: "Deployment".into(),
                name: workload.into(),
            },
            labels: Default::default(),
            node: None,
            provenance: prov(),
        }
    }

    fn flow(
        serial: u64,
        src: Identity,
        dst: Identity,
        dst_ip: &str,
        port: u16,
        app: App,
    ) -> FlowSummary {
        let c = DirCounters {
            packets: 4,
            bytes: 400,
        };
        let info = crate::dissect::AppInfo {
            app,
            encryption: if app != App::Unknown && app != App::Tls {
                Encryption::Plaintext
            } else {
                Encryption::Unknown
            },
            ..Default::default()
        };
        FlowSummary {
            serial,
            proto: 6,
            src: Endpoint {
                addr: "10.0.0.5".parse().unwrap(),
                port: 40000,
            },
            dst: Endpoint {
                addr: dst_ip.parse().unwrap(),
                port,
            },
            fwd: c,
            rev: c,
            first_ns: serial * 1_000,
            last_ns: serial * 1_000 + 10,
            tunnel: None,
            outer: false,
            tcp: None,
            interfaces: vec![0],
            end: EndReason::Active,
            app: info,
            enrichment: Some(Box::new(Enrichment {
                src_identity: src,
                dst_identity: dst,
                verdict: None,
                verdict_target: None,
            })),
        }
    }

    fn kinds(flows: &[FlowSummary], rules: &RulesConfig) -> Vec<FindingKind> {
        let r = evaluate(Inputs {
            flows,
            cluster: None,
            baseline: None,
            rules,
        });
        let mut k: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
        k.sort();
        k
    }

    #[test]
    fn control_plane_rules() {
        let node = || Identity::Node {
            name: "n1".into(),
            provenance: prov(),
        };
        let api = Identity::ApiServer {
            via: Via::ServiceVip,
            node: None,
            provenance: prov(),
        };
        let rules = RulesConfig::default();
        let flows = vec![
            flow(
                1,
                pod("app", "web"),
                node(),
                "10.0.0.1",
                10250,
                App::Unknown,
            ),
            flow(2, pod("app", "web"), node(), "10.0.0.1", 22, App::Ssh),
            flow(3, pod("app", "web"), node(), "10.0.0.1", 2379, App::Unknown),
            flow(
                4,
                pod("app", "web"),
                api.clone(),
                "10.96.0.1",
                443,
                App::Tls,
            ),
            // kube-system is on the API server allow-list by default.
            flow(
                5,
                pod("kube-system", "coredns"),
                api,
                "10.96.0.1",
                443,
                App::Tls,
            ),
            // The node itself may use its kubelet.
            flow(6, node(), node(), "10.0.0.1", 10250, App::Unknown),
        ];
        assert_eq!(
            kinds(&flows, &rules),
            vec![
                FindingKind::KubeletAccess,
                FindingKind::EtcdAccess,
                FindingKind::ApiServerAccess,
                FindingKind::NodeSsh
            ]
        );
        let mut open = RulesConfig::default();
        open.control_plane.api_server_allow.push("app/web".into());
        assert!(!kinds(&flows, &open).contains(&FindingKind::ApiServerAccess));
    }

    #[test]
    fn foreign_dns_and_external_cleartext() {
        let ext = |_ip: &str| Identity::External {
            name: Some("example.org".into()),
            provenance: prov(),
        };
        let dns_pod = Identity::ClusterDns {
            via: Via::Pod,
            pod: None,
            provenance: prov(),
        };
        let rules = RulesConfig::default();
        let flows = vec![
            flow(
                1,
                pod("app", "web"),
                ext("8.8.8.8"),
                "8.8.8.8",
                53,
                App::Dns,
            ),
            flow(2, pod("app", "web"), dns_pod, "10.96.0.10", 53, App::Dns),
            flow(
                3,
                pod("app", "web"),
                ext("93.184.216.34"),
                "93.184.216.34",
                80,
                App::Http,
            ),
            flow(
                4,
                pod("app", "web"),
                ext("93.184.216.34"),
                "93.184.216.34",
                21,
                App::Ftp,
            ),
        ];
        let r = evaluate(Inputs {
            flows: &flows,
            cluster: None,
            baseline: None,
            rules: &rules,
        });
        let dns: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::ForeignDns)
            .collect();
        assert_eq!(dns.len(), 1);
        assert_eq!(dns[0].flows, vec![1]);
        let ext_clear: Vec<(Severity, &str)> = r
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::CleartextExternal)
            .map(|f| (f.severity, f.evidence["app"].as_str()))
            .collect();
        // http is "low" between pods, one level up leaving the cluster; ftp is high (capped).
        assert!(ext_clear.contains(&(Severity::Medium, "http")));
        assert!(ext_clear.contains(&(Severity::High, "ftp")));
        let mut allow = RulesConfig::default();
        allow.dns.allowed_resolvers.push("8.8.8.8".parse().unwrap());
        assert!(!kinds(&flows, &allow).contains(&FindingKind::ForeignDns));
    }

    #[test]
    fn kinds_round_trip_names() {
        for k in FindingKind::ALL {
            let v = serde_json::to_value(k).unwrap();
            assert_eq!(v.as_str(), Some(k.as_str()));
        }
    }
}
