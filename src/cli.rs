//! Command-line interface: argument parsing and wiring of shells to the engine.
//!
//! Exit codes: 0 success; 1 error (nothing could be read); 2 usage error; 3 the capture is
//! truncated or corrupt — everything before the damage was processed and printed.

#![allow(clippy::disallowed_methods)] // a shell: reads files, times progress output

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::capture::{EngineFeed, ReadSummary, read_capture_into};
use crate::engine::{Engine, EngineConfig};
use crate::report::{FlowFormat, FlowWriter, RttSummary, StatsReport};
use crate::summary::FlowSummary;
use crate::tui::filter::Filter;

/// Exit code when the capture was damaged but what could be read was processed.
pub const EXIT_DAMAGED: i32 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "podwire",
    version,
    about = "What Kubernetes pods and nodes say to each other on the wire"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every flow in a capture file (pcap, pcapng, optionally gzip-compressed).
    Flows {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Cluster snapshot (`kubectl get … -o yaml|json` List or multi-document manifests):
        /// adds identities and NetworkPolicy verdicts to every flow.
        #[arg(long)]
        cluster: Option<PathBuf>,
        /// Only the flows this filter keeps (the TUI's language, docs/filter.md), e.g.
        /// `enc:plaintext !ns:kube-system` or `src.ns:shop dst.port:6379`.
        #[arg(long, value_parser = Filter::from_arg)]
        filter: Option<Filter>,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Summarise a capture: packets, bytes, duration, link types, interfaces, errors, flows.
    Stats {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = StatsFormat::Text)]
        format: StatsFormat,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Capture live on this node or inside one pod's network namespace (needs CAP_NET_RAW).
    Capture(Box<crate::capture::run::CaptureArgs>),
    /// Run the main job on the bundled demo capture and its cluster snapshot (the interactive
    /// UI when stdout is a terminal, else a table).
    Demo {
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Open the interactive UI even when stdout is not a terminal.
        #[arg(long, conflicts_with = "format")]
        tui: bool,
        #[command(flatten)]
        ring: crate::tui::RingArgs,
    },
    /// Replay a capture in the interactive terminal UI, paced by its timestamps.
    Replay(crate::tui::ReplayArgs),
    /// Ask the NetworkPolicies questions without traffic.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Write the cluster's objects (read-only list) to a snapshot file.
    Snapshot(crate::cluster::watch::SnapshotArgs),
    /// Security findings of a capture (cleartext, credentials, metadata, scans, gaps…).
    Findings(crate::findings::commands::FindingsArgs),
    /// NetworkPolicies that admit the observed legitimate traffic, verified.
    Suggest(crate::suggest::commands::SuggestArgs),
    /// Flows whose NetworkPolicy verdict would change under new policies.
    Whatif(crate::suggest::commands::WhatifArgs),
    /// The findings rules file: print the documented defaults or check a file.
    Rules(crate::findings::commands::RulesArgs),
    /// Save the communication edges of a capture (compare later with `findings --baseline`).
    Baseline(crate::findings::commands::BaselineArgs),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Would a connection from one pod to another on a port be allowed, and why?
    Check {
        #[arg(long)]
        cluster: PathBuf,
        /// Extra NetworkPolicy files applied on top of the snapshot's (what-if).
        #[arg(long)]
        policy: Vec<PathBuf>,
        /// Source as NAMESPACE/POD (or an IP address).
        #[arg(long)]
        from: String,
        /// Destination as NAMESPACE/POD (or an IP address).
        #[arg(long)]
        to: String,
        /// Destination port as PORT/PROTOCOL (e.g. 80/TCP) or a named port of the destination.
        #[arg(long)]
        port: String,
        #[arg(long, value_enum, default_value_t = StatsFormat::Text)]
        format: StatsFormat,
    },
    /// Reachability truth table between all pods on one port.
    Matrix {
        #[arg(long)]
        cluster: PathBuf,
        #[arg(long)]
        policy: Vec<PathBuf>,
        /// PORT/PROTOCOL, e.g. 80/TCP.
        #[arg(long)]
        port: String,
        #[arg(long, value_enum, default_value_t = MatrixFormat::Table)]
        format: MatrixFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MatrixFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Jsonl,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatsFormat {
    Text,
    Json,
}

/// Flow-table limits shared by the capture-reading commands.
#[derive(Debug, Clone, clap::Args)]
pub struct Tuning {
    /// Most flows tracked at once; the least recently seen are evicted (and still reported).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_flows: usize,
    /// Idle timeout in seconds for open TCP connections.
    #[arg(long, default_value_t = 300)]
    pub tcp_idle: u64,
    /// Idle timeout in seconds for UDP and other flows.
    #[arg(long, default_value_t = 60)]
    pub udp_idle: u64,
    /// How long (seconds) a closed or reset TCP connection lingers before it is reported.
    #[arg(long, default_value_t = 5)]
    pub tcp_closed_idle: u64,
    /// Never show a progress indicator.
    #[arg(long)]
    pub no_progress: bool,
    /// Skip protocol dissection (flow accounting only): faster, but no app, encryption or SNI.
    #[arg(long)]
    pub no_dissect: bool,
}

impl Tuning {
    fn engine_config(&self) -> EngineConfig {
        let mut config = EngineConfig::default();
        config.table.capacity = self.max_flows.max(1);
        config.table.tcp_idle_ns = self.tcp_idle.saturating_mul(1_000_000_000);
        config.table.other_idle_ns = self.udp_idle.saturating_mul(1_000_000_000);
        config.table.tcp_closed_idle_ns = self.tcp_closed_idle.saturating_mul(1_000_000_000);
        config.dissect_enabled = !self.no_dissect;
        config
    }
}

/// Runs the parsed command and returns the process exit code.
/// No transparent huge pages for this process: mimalloc asks for them on its arena, and a
/// 2 MiB page is resident (and zeroed) as a whole however little of it is used. Only live
/// capture turns them off: it runs for hours on a node where its resident memory matters.
/// The offline commands keep them, because they make dissection faster (fewer TLB misses
/// over many small per-flow allocations): on the 1.5 M-packet benchmark `flows` takes
/// 756 ms with them and 801 ms without (interleaved runs), for 78 instead of 59 MB peak RSS;
/// `--no-dissect` is the same speed either way (35 → 48 MB). Affects later page faults
/// only; failure just keeps the default.
pub fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Flows {
            file,
            format,
            cluster,
            filter,
            tuning,
        } => flows(&file, format, cluster.as_deref(), filter.as_ref(), &tuning),
        Command::Stats {
            file,
            format,
            tuning,
        } => stats(&file, format, &tuning),
        Command::Capture(args) => {
            disable_transparent_huge_pages();
            crate::capture::run::run_capture(&args)
        }
        Command::Demo { format, tui, ring } => {
            let path = demo_capture()?;
            let cluster = path.with_file_name("demo-cluster.yaml");
            if tui || (format.is_none() && io::stdout().is_terminal()) {
                return crate::tui::demo(
                    &path,
                    cluster.is_file().then_some(cluster.as_path()),
                    ring,
                );
            }
            let format = format.unwrap_or(Format::Table);
            let tuning = Tuning {
                max_flows: 1 << 20,
                tcp_idle: 300,
                udp_idle: 60,
                tcp_closed_idle: 5,
                no_progress: true,
                no_dissect: false,
            };
            let cluster = path.with_file_name("demo-cluster.yaml");
            flows(
                &path,
                format,
                cluster.is_file().then_some(cluster.as_path()),
                None,
                &tuning,
            )
        }
        Command::Policy(command) => policy(command),
        Command::Snapshot(args) => crate::cluster::watch::run_snapshot(&args),
        Command::Findings(args) => crate::findings::commands::run_findings(&args),
        Command::Suggest(args) => crate::suggest::commands::run_suggest(&args),
        Command::Whatif(args) => crate::suggest::commands::run_whatif(&args),
        Command::Rules(args) => crate::findings::commands::run_rules(&args),
        Command::Baseline(args) => crate::findings::commands::run_baseline(&args),
        Command::Replay(args) => crate::tui::replay(&args),
    }
}

/// Finds the bundled demo capture next to the binary's source tree or the working directory.
fn demo_capture() -> Result<PathBuf> {
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/demo.pcapng"),
        PathBuf::from("captures/demo.pcapng"),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().context(
        "the demo capture captures/demo.pcapng was not found (run from the podwire checkout)",
    )
}

/// Reads a capture through an engine, calling `each_batch` with finished flows as they come.
fn process(
    path: &Path,
    engine: &mut Engine,
    show_progress: bool,
    mut each_batch: impl FnMut(&mut Engine) -> io::Result<()>,
) -> Result<ReadSummary> {
    let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let read_bytes = Arc::new(AtomicU64::new(0));
    let mut progress = show_progress.then(|| Progress::new(path, total, read_bytes.clone()));
    let mut write_error: Option<io::Error> = None;
    // Every 4,096 frames: write what finished (output streams, memory stays bounded).
    let mut between_batches = |engine: &mut Engine, frames: u64| {
        if write_error.is_none()
            && let Err(e) = each_batch(engine)
        {
            write_error = Some(e);
        }
        if let Some(p) = progress.as_mut() {
            p.tick(frames);
        }
    };
    let summary = read_capture_into(
        path,
        Some(read_bytes),
        &mut EngineFeed::new(engine, 4096, &mut between_batches),
    )
    .with_context(|| format!("reading {}", path.display()))?;
    if let Some(p) = progress.as_mut() {
        p.clear();
    }
    if let Some(e) = write_error {
        return Err(e.into());
    }
    engine.finish();
    // The table's last flows come out a few thousand at a time.
    loop {
        each_batch(engine)?;
        if !engine.has_finished() {
            break;
        }
    }
    Ok(summary)
}

/// Loads a cluster snapshot into the engine and tells the user what was skipped.
fn load_cluster(engine: &mut Engine, path: &Path) -> Result<()> {
    let snapshot = crate::cluster::snapshot::load_snapshot(path)
        .with_context(|| format!("loading the cluster snapshot {}", path.display()))?;
    let skipped: usize = snapshot.skipped.values().sum();
    if skipped > 0 {
        let kinds: Vec<String> = snapshot
            .skipped
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect();
        eprintln!(
            "podwire: note: {}: ignored {skipped} objects podwire does not need ({})",
            path.display(),
            crate::sanitize::sanitize(&kinds.join(", "))
        );
    }
    engine.set_cluster(snapshot.into_state());
    Ok(())
}

fn flows(
    path: &Path,
    format: Format,
    cluster: Option<&Path>,
    filter: Option<&Filter>,
    tuning: &Tuning,
) -> Result<i32> {
    if let Some(filter) = filter {
        filter.without_findings().map_err(anyhow::Error::msg)?;
    }
    let mut engine = Engine::new(tuning.engine_config());
    if let Some(cluster) = cluster {
        load_cluster(&mut engine, cluster)?;
    }
    let stdout = io::stdout();
    let format = match format {
        Format::Table => FlowFormat::Table,
        Format::Jsonl => FlowFormat::Jsonl,
    };
    let mut writer = FlowWriter::new(io::BufWriter::with_capacity(1 << 16, stdout.lock()), format);
    let show_progress = !tuning.no_progress && io::stderr().is_terminal();
    let mut batch = Vec::new();
    let summary = process(path, &mut engine, show_progress, |engine| {
        engine.take_finished(&mut batch);
        for (i, flow) in batch.iter().enumerate() {
            // Finished flows' results are cold: request two flows ahead, one level per flow.
            if let Some(later) = batch.get(i + 2) {
                later.app.prefetch_result(false);
            }
            if let Some(next) = batch.get(i + 1) {
                next.app.prefetch_result(true);
            }
            let enrichment = engine.enrich(flow);
            // The filter reads the same summary the TUI shows (built only when filtering).
            if let Some(filter) = filter
                && !filter.matches(&FlowSummary::new(flow, enrichment.clone()))
            {
                continue;
            }
            writer.write(flow, enrichment.as_ref())?;
        }
        Ok(())
    })?;
    writer.flush()?;
    Ok(report_damage(path, &summary))
}

fn stats(path: &Path, format: StatsFormat, tuning: &Tuning) -> Result<i32> {
    let mut engine = Engine::new(tuning.engine_config());
    let show_progress = !tuning.no_progress && io::stderr().is_terminal();
    let summary = process(path, &mut engine, show_progress, |engine| {
        engine.drain_finished();
        Ok(())
    })?;
    let stats = engine.stats();
    let duration_ns = match (stats.first_ns, stats.last_ns) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    let file = path.display().to_string();
    let report = StatsReport {
        file: &file,
        capture: &summary,
        stats: &stats,
        duration_ns,
        handshake_rtt_us: RttSummary::from(engine.rtt()),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match format {
        StatsFormat::Text => report.write_text(&mut out)?,
        StatsFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(report_damage(path, &summary))
}

fn policy(command: PolicyCommand) -> Result<i32> {
    use crate::cluster::snapshot::{load_policies, load_snapshot};
    let load = |cluster: &Path, extra: &[PathBuf]| -> Result<_> {
        let state = load_snapshot(cluster)
            .with_context(|| format!("loading the cluster snapshot {}", cluster.display()))?
            .into_state();
        let mut policies = Vec::new();
        for file in extra {
            policies.extend(
                load_policies(file).with_context(|| format!("loading {}", file.display()))?,
            );
        }
        Ok((state, policies))
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match command {
        PolicyCommand::Check {
            cluster,
            policy,
            from,
            to,
            port,
            format,
        } => {
            let (state, extra) = load(&cluster, &policy)?;
            let report = crate::policy::policy_check(&state, &extra, &from, &to, &port)?;
            match format {
                StatsFormat::Text => writeln!(out, "{report}")?,
                StatsFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
            }
            // Scripts can branch on the answer: 0 allowed, 4 denied.
            Ok(if report.verdict.allowed { 0 } else { 4 })
        }
        PolicyCommand::Matrix {
            cluster,
            policy,
            port,
            format,
        } => {
            let (state, extra) = load(&cluster, &policy)?;
            let port: crate::policy::PortProto = port
                .parse()
                .map_err(|e| anyhow::anyhow!("--port {port}: {e}"))?;
            let report = crate::policy::policy_matrix(&state, &extra, port);
            match format {
                MatrixFormat::Table => write!(out, "{report}")?,
                MatrixFormat::Json => writeln!(out, "{}", serde_json::to_string(&report)?)?,
            }
            Ok(0)
        }
    }
}

/// Tells the user about a damaged capture on stderr and picks the exit code.
fn report_damage(path: &Path, summary: &ReadSummary) -> i32 {
    match &summary.damage {
        Some(damage) => {
            eprintln!(
                "podwire: {} is damaged: {} — the {} frames before it were processed",
                path.display(),
                damage.message,
                summary.frames
            );
            EXIT_DAMAGED
        }
        None => 0,
    }
}

/// A one-line progress indicator on stderr, redrawn at most 4 times a second.
struct Progress {
    name: String,
    total: u64,
    read: Arc<AtomicU64>,
    started: Instant,
    last_draw: Instant,
}

impl Progress {
    fn new(path: &Path, total: u64, read: Arc<AtomicU64>) -> Progress {
        let now = Instant::now();
        Progress {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            total,
            read,
            started: now,
            last_draw: now,
        }
    }

    fn tick(&mut self, frames: u64) {
        let now = Instant::now();
        if now.duration_since(self.last_draw) < Duration::from_millis(250) {
            return;
        }
        self.last_draw = now;
        let read = self.read.load(Ordering::Relaxed);
        let percent = if self.total > 0 {
            read as f64 * 100.0 / self.total as f64
        } else {
            0.0
        };
        let elapsed = now.duration_since(self.started).as_secs_f64().max(1e-3);
        eprint!(
            "\r\x1b[2Kreading {}: {:5.1}% {} frames ({:.2} M frames/s)",
            crate::sanitize::sanitize(&self.name),
            percent.min(100.0),
            frames,
            frames as f64 / elapsed / 1e6
        );
    }

    fn clear(&mut self) {
        eprint!("\r\x1b[2K");
    }
}
