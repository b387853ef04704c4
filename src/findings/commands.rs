//! Shell for `podwire findings`, `podwire rules` and `podwire baseline`: reads the capture,
//! snapshot, rules file and baseline, runs the pure rules engine and writes the result.
//!
//! Exit codes of `findings`: 0 no finding at or above `--fail-on`; 5 at least one; 3 the
//! capture was damaged (and nothing reached the threshold); 1 an error.

#![allow(clippy::disallowed_methods)] // a shell: reads capture, snapshot, rules and baseline files

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use super::{Baseline, FindingsReport, Inputs, RulesConfig, Severity, evaluate, sarif};
use crate::capture::{EngineFeed, ReadSummary, read_capture_into};
use crate::cli::{EXIT_DAMAGED, Tuning};
use crate::cluster::model::ClusterState;
use crate::engine::{Engine, EngineConfig};
use crate::summary::FlowSummary;
use crate::tui::filter::Filter;
use crate::tui::findings::SnapshotFindings;

/// Exit code when a finding at or above `--fail-on` exists.
pub const EXIT_FINDINGS: i32 = 5;

/// Output format of `podwire findings`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FindingsFormat {
    /// Human-readable blocks.
    Table,
    /// One JSON object per finding.
    Jsonl,
    /// SARIF 2.1.0 (GitHub code scanning and other CI tools).
    Sarif,
}

/// `podwire findings`.
#[derive(Debug, Args)]
pub struct FindingsArgs {
    /// Capture file (pcap, pcapng, optionally gzip-compressed).
    pub file: PathBuf,
    /// Cluster snapshot; without it only address-based rules run.
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    pub format: FindingsFormat,
    /// Rules file (TOML); see `podwire rules --print-defaults`.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Baseline written by `podwire baseline save`: report edges not in it.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Exit with code 5 when a finding at or above this severity exists.
    #[arg(long, value_parser = parse_severity)]
    pub fail_on: Option<Severity>,
    /// Only the findings naming at least one flow this filter keeps (the TUI's language,
    /// docs/filter.md; `finding:` terms see these findings), as the TUI's Findings view.
    /// `--fail-on` then looks at those only.
    #[arg(long, value_parser = Filter::from_arg)]
    pub filter: Option<Filter>,
    #[command(flatten)]
    pub tuning: Tuning,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
}

/// `podwire rules`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Print the default rules file, with every knob documented.
    #[arg(long)]
    pub print_defaults: bool,
    /// Check a rules file and print it back as understood (JSON).
    #[arg(long, conflicts_with = "print_defaults")]
    pub check: Option<PathBuf>,
}

/// `podwire baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(subcommand)]
    pub action: BaselineAction,
}

/// Baseline actions.
#[derive(Debug, Subcommand)]
pub enum BaselineAction {
    /// Write the edge set (source, destination, port, protocol) of a capture as JSON.
    Save {
        /// Capture file.
        file: PathBuf,
        /// Cluster snapshot (edges name workloads instead of addresses).
        #[arg(long)]
        cluster: Option<PathBuf>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        tuning: Tuning,
    },
}

/// A capture read into flow summaries.
pub struct Captured {
    /// Every flow, ordered by first packet then serial.
    pub flows: Vec<FlowSummary>,
    /// What the reader saw (damage included).
    pub read: ReadSummary,
    /// The cluster snapshot, when one was given.
    pub cluster: Option<ClusterState>,
    /// Names learnt from DNS answers for every address a flow talked to (sanitized, sorted).
    pub dns: BTreeMap<IpAddr, Vec<String>>,
}

fn engine_config(t: &Tuning) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.table.capacity = t.max_flows.max(1);
    config.table.tcp_idle_ns = t.tcp_idle.saturating_mul(1_000_000_000);
    config.table.other_idle_ns = t.udp_idle.saturating_mul(1_000_000_000);
    config.dissect_enabled = !t.no_dissect;
    config
}

/// Loads a cluster snapshot, noting skipped objects on stderr.
pub fn load_cluster_state(path: &Path) -> Result<ClusterState> {
    let snapshot = crate::cluster::snapshot::load_snapshot(path)
        .with_context(|| format!("loading the cluster snapshot {}", path.display()))?;
    Ok(snapshot.into_state())
}

/// Reads a capture (and optionally a snapshot) into enriched flow summaries.
pub fn summarize_capture(path: &Path, cluster: Option<&Path>, tuning: &Tuning) -> Result<Captured> {
    let mut engine = Engine::new(engine_config(tuning));
    let state = match cluster {
        Some(p) => Some(load_cluster_state(p)?),
        None => None,
    };
    if let Some(s) = &state {
        engine.set_cluster(s.clone());
    }
    let mut finished = Vec::new();
    let mut drain = |engine: &mut Engine, _frames: u64| finished.extend(engine.drain_finished());
    let read = read_capture_into(
        path,
        None,
        &mut EngineFeed::new(&mut engine, 4096, &mut drain),
    )
    .with_context(|| format!("reading {}", path.display()))?;
    engine.finish();
    finished.extend(engine.drain_finished());
    // Enrich after the whole capture so DNS answers seen late still name earlier flows.
    let mut flows: Vec<FlowSummary> = finished
        .iter()
        .map(|f| FlowSummary::enriched(&mut engine, f))
        .collect();
    flows.sort_by_key(|f| (f.first_ns, f.serial));
    let mut dns = BTreeMap::new();
    for f in &flows {
        for ip in [f.src.addr, f.dst.addr] {
            let names = engine.dns_names().names_for(ip);
            if !names.is_empty() {
                let mut v: Vec<String> =
                    names.iter().map(|n| crate::sanitize::sanitize(n)).collect();
                v.sort();
                v.dedup();
                dns.insert(ip, v);
            }
        }
    }
    Ok(Captured {
        flows,
        read,
        cluster: state,
        dns,
    })
}

/// Reads and parses a rules file (or the defaults).
pub fn load_rules(path: Option<&Path>) -> Result<RulesConfig> {
    match path {
        None => Ok(RulesConfig::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the rules file {}", p.display()))?;
            RulesConfig::parse(&text).with_context(|| format!("{}", p.display()))
        }
    }
}

/// Evaluates the findings of a capture.
pub fn findings_of(
    captured: &Captured,
    rules: &RulesConfig,
    baseline: Option<&Baseline>,
) -> FindingsReport {
    evaluate(Inputs {
        flows: &captured.flows,
        cluster: captured.cluster.as_ref(),
        baseline,
        rules,
    })
}

fn report_damage(path: &Path, read: &ReadSummary) -> bool {
    if let Some(damage) = &read.damage {
        eprintln!(
            "podwire: {} is damaged: {} — the {} frames before it were processed",
            path.display(),
            damage.message,
            read.frames
        );
        return true;
    }
    false
}

/// `podwire findings`.
pub fn run_findings(args: &FindingsArgs) -> Result<i32> {
    let rules = load_rules(args.rules.as_deref())?;
    let baseline = match &args.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the baseline {}", p.display()))?;
            Some(
                Baseline::parse(&text)
                    .with_context(|| format!("parsing the baseline {}", p.display()))?,
            )
        }
        None => None,
    };
    let captured = summarize_capture(&args.file, args.cluster.as_deref(), &args.tuning)?;
    let mut report = findings_of(&captured, &rules, baseline.as_ref());
    if let Some(filter) = &args.filter {
        keep_findings_of_matching_flows(&mut report, &captured.flows, filter);
    }
    let text = match args.format {
        FindingsFormat::Table => sarif::to_table(&report),
        FindingsFormat::Jsonl => sarif::to_jsonl(&report),
        FindingsFormat::Sarif => {
            let name = args
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            sarif::to_sarif(&report, &name)
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    let damaged = report_damage(&args.file, &captured.read);
    if let (Some(threshold), Some(max)) = (args.fail_on, report.max_severity())
        && max >= threshold
    {
        return Ok(EXIT_FINDINGS);
    }
    Ok(if damaged { EXIT_DAMAGED } else { 0 })
}

/// Keeps the findings that name at least one flow `filter` keeps (what the TUI's Findings
/// view lists under a filter); `finding:` terms are evaluated against the whole report.
fn keep_findings_of_matching_flows(
    report: &mut FindingsReport,
    flows: &[FlowSummary],
    filter: &Filter,
) {
    let index = SnapshotFindings::from_findings(report.findings.clone());
    let kept: HashSet<u64> = flows
        .iter()
        .filter(|f| filter.matches_in(f, &index))
        .map(|f| f.serial)
        .collect();
    report
        .findings
        .retain(|finding| finding.flows.iter().any(|s| kept.contains(s)));
}

/// `podwire rules`.
pub fn run_rules(args: &RulesArgs) -> Result<i32> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if let Some(path) = &args.check {
        let rules = load_rules(Some(path))?;
        writeln!(
            out,
            "{}: ok ({} severity overrides, {} rules switched, {} suppressions)",
            path.display(),
            rules.severity.len(),
            rules.enabled.len(),
            rules.suppress.len()
        )?;
        return Ok(0);
    }
    out.write_all(super::DEFAULT_RULES_TOML.as_bytes())?;
    Ok(0)
}

/// `podwire baseline`.
pub fn run_baseline(args: &BaselineArgs) -> Result<i32> {
    match &args.action {
        BaselineAction::Save {
            file,
            cluster,
            output,
            tuning,
        } => {
            let captured = summarize_capture(file, cluster.as_deref(), tuning)?;
            let text = Baseline::from_flows(&captured.flows).to_json() + "\n";
            match output {
                Some(p) => {
                    std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?
                }
                None => io::stdout().lock().write_all(text.as_bytes())?,
            }
            Ok(if report_damage(file, &captured.read) {
                EXIT_DAMAGED
            } else {
                0
            })
        }
    }
}
