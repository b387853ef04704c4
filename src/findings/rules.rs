//! The rules file: thresholds, severities and suppressions for the findings engine.
//!
//! Pure: [`RulesConfig::parse`] turns TOML text into a config (unknown keys are errors, so a
//! typo never silently disables a rule); [`DEFAULT_RULES_TOML`] is the documented default file
//! (`podwire rules --print-defaults`) and parses to exactly [`RulesConfig::default`] (tested).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{FindingKind, Severity};

/// The default rules file, with every knob documented.
pub const DEFAULT_RULES_TOML: &str = r#"# podwire findings rules (TOML). Every key is optional; omitted keys keep these defaults.
# Use: podwire findings CAPTURE --cluster SNAP --rules THIS_FILE

# Severity override per finding kind (info, low, medium, high, critical), e.g.
#   scan = "critical"
[severity]

# Turn single rules off, e.g. new-edge = false
[enabled]

[cleartext]
# Severity of an unencrypted protocol between pods (cleartext-internal) unless listed below.
internal = "low"
# Severity of an unencrypted protocol leaving the cluster (cleartext-external) unless listed below.
external = "medium"
# Per-protocol severity for cleartext-internal; cleartext-external uses one level higher
# (at most high). DNS is never reported as cleartext.
[cleartext.protocols]
telnet = "high"
ftp = "high"
pop3 = "medium"
imap = "medium"
smtp = "medium"
ldap = "medium"
http = "low"
redis = "medium"
postgres = "medium"
mysql = "medium"
mongodb = "medium"
memcached = "medium"
kafka = "low"
amqp = "low"
mqtt = "low"

[control_plane]
# Workloads expected to call the API server: "namespace/workload", "namespace/*" or "*".
api_server_allow = ["kube-system/*"]
kubelet_ports = [10250, 10255]
etcd_ports = [2379, 2380]
ssh_ports = [22]

[scan]
# One source touching at least min_ports ports of one peer, or at least min_peers peers,
# within window_seconds of packet time, with at least min_refused_ratio of those attempts
# refused or unanswered.
window_seconds = 60
min_ports = 10
min_peers = 20
min_refused_ratio = 0.5

[enforcement_gap]
# Node-local sources (kubelet probes, host-network pods) pass most CNIs' enforcement by
# design; report them too when true.
include_node_sources = false

[dns]
# Resolvers besides the cluster's that pods may use (IP addresses).
allowed_resolvers = []

# Suppressions: a finding is dropped when every field given matches (namespace and workload
# match either end of the finding). Example:
# [[suppress]]
# kind = "cleartext-internal"
# namespace = "shop"
# workload = "frontend"
# reason = "mTLS rollout tracked in JIRA-123"
"#;

/// Cleartext thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleartextRules {
    /// Default severity between pods.
    pub internal: Severity,
    /// Default severity leaving the cluster.
    pub external: Severity,
    /// Per application protocol (as named in flow records).
    pub protocols: BTreeMap<String, Severity>,
}

impl Default for CleartextRules {
    fn default() -> Self {
        let protocols = [
            ("telnet", Severity::High),
            ("ftp", Severity::High),
            ("pop3", Severity::Medium),
            ("imap", Severity::Medium),
            ("smtp", Severity::Medium),
            ("ldap", Severity::Medium),
            ("http", Severity::Low),
            ("redis", Severity::Medium),
            ("postgres", Severity::Medium),
            ("mysql", Severity::Medium),
            ("mongodb", Severity::Medium),
            ("memcached", Severity::Medium),
            ("kafka", Severity::Low),
            ("amqp", Severity::Low),
            ("mqtt", Severity::Low),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        CleartextRules {
            internal: Severity::Low,
            external: Severity::Medium,
            protocols,
        }
    }
}

/// Control-plane access rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneRules {
    /// `namespace/workload`, `namespace/*` or `*`.
    pub api_server_allow: Vec<String>,
    /// Kubelet ports.
    pub kubelet_ports: Vec<u16>,
    /// etcd ports.
    pub etcd_ports: Vec<u16>,
    /// SSH ports on nodes.
    pub ssh_ports: Vec<u16>,
}

impl Default for ControlPlaneRules {
    fn default() -> Self {
        ControlPlaneRules {
            api_server_allow: vec!["kube-system/*".to_string()],
            kubelet_ports: vec![10250, 10255],
            etcd_ports: vec![2379, 2380],
            ssh_ports: vec![22],
        }
    }
}

impl ControlPlaneRules {
    /// True when `namespace/workload` may call the API server.
    pub fn api_server_allowed(&self, namespace: &str, workload: &str) -> bool {
        self.api_server_allow.iter().any(|p| {
            p == "*"
                || match p.split_once('/') {
                    Some((ns, w)) => ns == namespace && (w == "*" || w == workload),
                    None => false,
                }
        })
    }
}

/// Scan detection thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanRules {
    /// Sliding window in seconds of packet time.
    pub window_seconds: u64,
    /// Distinct ports on one peer.
    pub min_ports: usize,
    /// Distinct peers.
    pub min_peers: usize,
    /// Share of attempts refused or unanswered.
    pub min_refused_ratio: f64,
}

impl Default for ScanRules {
    fn default() -> Self {
        ScanRules {
            window_seconds: 60,
            min_ports: 10,
            min_peers: 20,
            min_refused_ratio: 0.5,
        }
    }
}

/// Enforcement-gap options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GapRules {
    /// Report node-local sources too.
    pub include_node_sources: bool,
}

/// DNS options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsRules {
    /// Extra resolvers pods may use.
    pub allowed_resolvers: Vec<std::net::IpAddr>,
}

/// One suppression.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// Finding kind.
    pub kind: Option<FindingKind>,
    /// Namespace of either end.
    pub namespace: Option<String>,
    /// Workload name of either end.
    pub workload: Option<String>,
    /// Why (for the reader of the file).
    pub reason: Option<String>,
}

/// The whole rules file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Severity overrides per kind.
    pub severity: BTreeMap<FindingKind, Severity>,
    /// Rules switched on/off per kind (absent: on).
    pub enabled: BTreeMap<FindingKind, bool>,
    /// Cleartext.
    pub cleartext: CleartextRules,
    /// Control plane.
    pub control_plane: ControlPlaneRules,
    /// Scan.
    pub scan: ScanRules,
    /// Enforcement gap.
    pub enforcement_gap: GapRules,
    /// DNS.
    pub dns: DnsRules,
    /// Suppressions.
    pub suppress: Vec<Suppression>,
}

/// A rules file that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid rules file: {0}")]
pub struct RulesError(String);

impl RulesConfig {
    /// Parses a rules file.
    pub fn parse(text: &str) -> Result<RulesConfig, RulesError> {
        let config: RulesConfig = toml::from_str(text).map_err(|e| RulesError(e.to_string()))?;
        if !(0.0..=1.0).contains(&config.scan.min_refused_ratio) {
            return Err(RulesError(
                "scan.min_refused_ratio must be between 0 and 1".to_string(),
            ));
        }
        Ok(config)
    }

    /// Whether a kind is switched on.
    pub fn is_enabled(&self, kind: FindingKind) -> bool {
        self.enabled.get(&kind).copied().unwrap_or(true)
    }

    /// The severity to report: the override if any, else the rule's own.
    pub fn severity(&self, kind: FindingKind, computed: Severity) -> Severity {
        self.severity.get(&kind).copied().unwrap_or(computed)
    }

    /// The first suppression matching a finding.
    pub fn suppressed_by(&self, f: &super::Finding) -> Option<&Suppression> {
        self.suppress.iter().find(|s| {
            s.kind.is_none_or(|k| k == f.kind)
                && s.namespace
                    .as_ref()
                    .is_none_or(|ns| f.namespaces.iter().any(|n| n == ns))
                && s.workload
                    .as_ref()
                    .is_none_or(|w| f.workloads.iter().any(|n| n == w))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_are_the_defaults() {
        let parsed = RulesConfig::parse(DEFAULT_RULES_TOML).unwrap();
        assert_eq!(parsed, RulesConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(RulesConfig::parse("[scan]\nwindow_secs = 5\n").is_err());
        assert!(RulesConfig::parse("[severity]\nscan = \"urgent\"\n").is_err());
        assert!(RulesConfig::parse("[severity]\nnot-a-kind = \"high\"\n").is_err());
        assert!(RulesConfig::parse("[scan]\nmin_refused_ratio = 2.0\n").is_err());
    }

    #[test]
    fn overrides_and_suppressions_parse() {
        let c = RulesConfig::parse(
            "[severity]\nscan = \"critical\"\n[enabled]\nnew-edge = false\n\
             [[suppress]]\nkind = \"cleartext-internal\"\nnamespace = \"shop\"\n",
        )
        .unwrap();
        assert_eq!(
            c.severity(FindingKind::Scan, Severity::High),
            Severity::Critical
        );
        assert!(!c.is_enabled(FindingKind::NewEdge));
        assert_eq!(c.suppress.len(), 1);
    }

    #[test]
    fn api_server_allow_patterns() {
        let c = ControlPlaneRules {
            api_server_allow: vec!["kube-system/*".into(), "ops/argo".into()],
            ..Default::default()
        };
        assert!(c.api_server_allowed("kube-system", "coredns"));
        assert!(c.api_server_allowed("ops", "argo"));
        assert!(!c.api_server_allowed("ops", "other"));
    }
}
