//! Renders findings as text: a table, JSON lines, or SARIF 2.1.0 for code-scanning tools.
//!
//! Pure: every function returns a `String` built only from its arguments; output order is the
//! report's, so equal input gives byte-identical output. SARIF output carries one rule per
//! finding kind (with its MITRE technique as a tag and a `security-severity` score) and one
//! result per finding, fingerprinted by the finding's stable id.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Finding, FindingKind, FindingsReport, Severity};
use crate::sanitize::sanitize_capped;

/// SARIF `level` for a severity.
pub fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub's `security-severity` score (0.0–10.0) for a severity.
pub fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

fn default_severity(kind: FindingKind) -> Severity {
    match kind {
        FindingKind::CleartextCredentials => Severity::Critical,
        FindingKind::CloudMetadata
        | FindingKind::KubeletAccess
        | FindingKind::EtcdAccess
        | FindingKind::NodeSsh
        | FindingKind::Scan
        | FindingKind::EnforcementGap => Severity::High,
        FindingKind::ApiServerAccess
        | FindingKind::CrossNamespace
        | FindingKind::ForeignDns
        | FindingKind::UnselectedWorkload
        | FindingKind::CleartextExternal => Severity::Medium,
        FindingKind::CleartextInternal | FindingKind::NewEdge => Severity::Low,
    }
}

/// SARIF 2.1.0 log: `artifact` names the capture the findings came from.
pub fn to_sarif(report: &FindingsReport, artifact: &str) -> String {
    let rules: Vec<Value> = FindingKind::ALL
        .iter()
        .map(|k| {
            let mut tags = vec![json!("security"), json!("network")];
            if let Some(m) = k.mitre() {
                tags.push(json!(format!("mitre-attack:{m}")));
            }
            json!({
                "id": k.as_str(),
                "name": k.as_str(),
                "shortDescription": {"text": k.description()},
                "fullDescription": {"text": k.description()},
                "help": {"text": format!("{} — see docs/findings.md#{}", k.description(), k.as_str())},
                "defaultConfiguration": {"level": sarif_level(default_severity(*k))},
                "properties": {
                    "tags": tags,
                    "security-severity": security_severity(default_severity(*k)),
                },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let index = FindingKind::ALL
                .iter()
                .position(|k| *k == f.kind)
                .unwrap_or(0);
            json!({
                "ruleId": f.kind.as_str(),
                "ruleIndex": index,
                "level": sarif_level(f.severity),
                "message": {"text": format!("{} [{}]", f.title, f.id)},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": artifact}},
                    "logicalLocations": [{"name": f.source, "kind": "module"}],
                }],
                "partialFingerprints": {"podwireFindingId/v1": f.id},
                "properties": {
                    "id": f.id,
                    "severity": f.severity.as_str(),
                    "security-severity": security_severity(f.severity),
                    "source": f.source,
                    "destination": f.destination,
                    "flows": f.flows,
                    "evidence": f.evidence,
                    "firstNs": f.first_ns,
                    "lastNs": f.last_ns,
                    "mitre": f.mitre,
                },
            })
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "podwire",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/podwire/podwire",
                "rules": rules,
            }},
            "results": results,
            "columnKind": "unicodeCodePoints",
        }],
    });
    serde_json::to_string_pretty(&log).unwrap_or_default() + "\n"
}

/// One JSON object per line.
pub fn to_jsonl(report: &FindingsReport) -> String {
    let mut out = String::new();
    for f in &report.findings {
        out.push_str(&serde_json::to_string(f).unwrap_or_default());
        out.push('\n');
    }
    out
}

fn time_of_day(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let ms = (ns / 1_000_000) % 1000;
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

fn evidence_line(f: &Finding) -> String {
    let parts: Vec<String> = f
        .evidence
        .iter()
        .map(|(k, v)| format!("{k}={}", sanitize_capped(v, 120)))
        .collect();
    parts.join("; ")
}

/// A human table: one finding per block.
pub fn to_table(report: &FindingsReport) -> String {
    let mut out = String::new();
    if report.findings.is_empty() {
        out.push_str("no findings\n");
    }
    for f in &report.findings {
        let _ = writeln!(
            out,
            "{:<8} {:<21} {} {}",
            f.severity.as_str().to_uppercase(),
            f.id,
            time_of_day(f.first_ns),
            f.title
        );
        let flows: Vec<String> = f.flows.iter().take(12).map(|s| s.to_string()).collect();
        let more = if f.flows.len() > 12 {
            format!(" (+{})", f.flows.len() - 12)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "         kind={} flows={}{more}{}",
            f.kind,
            flows.join(","),
            f.mitre
                .map(|m| format!(" mitre=\"{m}\""))
                .unwrap_or_default()
        );
        let _ = writeln!(out, "         {}", evidence_line(f));
    }
    let mut counts = [0usize; 5];
    for f in &report.findings {
        counts[f.severity as usize] += 1;
    }
    let _ = writeln!(
        out,
        "{} findings: {} critical, {} high, {} medium, {} low, {} info; {} suppressed",
        report.findings.len(),
        counts[4],
        counts[3],
        counts[2],
        counts[1],
        counts[0],
        report.suppressed.len()
    );
    out
}
