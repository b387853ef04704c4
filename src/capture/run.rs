//! `podwire capture`: live capture on a node or inside one pod's network namespace.
//!
//! Wiring only: resolves the namespace (`--netns`, `--pod`), checks privileges, starts one
//! capture thread per interface (plus interface discovery for `--all`), and runs the one
//! engine thread: it merges the interfaces' batches in timestamp order (holding frames
//! [`HOLD_NS`] so a late interface cannot reorder a handshake), feeds the engine, writes the
//! pcapng evidence, streams finished flows (and updates of long flows) to stdout, and reports
//! capture health. Guarantees: a slow stdout or disk never blocks a capture thread (their
//! queue is bounded and drops are counted); every flow is printed exactly once as a final
//! record (updates carry `"update": true`); the run ends on `--duration`, `--count`,
//! SIGINT/SIGTERM, or when every fixed interface has gone, and then flushes everything.
//!
//! On a terminal (without `--headless`) the same engine loop runs on the TUI source's thread
//! and feeds the TUI's [`Feeder`] instead of printing records (`run_tui`).

#![allow(clippy::disallowed_methods)] // a shell: threads, clocks, files, /proc

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use caps::Capability;
use serde::Serialize;

use super::filter::Filter;
use super::live::{
    self, Batch, CaptureConfig, CaptureContext, CaptureHandle, Control, CounterValues, Counters,
    IfaceRegistry, Netns,
};
use super::pcapng_writer::{InterfaceTotals, RotatingPcapng, RotationConfig};
use crate::engine::{Engine, EngineConfig, InterfaceInfo};
use crate::flow::{Flow, FlowKey};
use crate::frame::{IfaceId, TimestampNs};
use crate::report::{FlowFormat, FlowRecord, FlowWriter};
use crate::tui::source::{CaptureInterface, ClusterOrigin, Feeder, Source, SourceKind};

/// Frames are held this long (wall time) before the engine sees them, so the batches of
/// several interfaces can be merged in timestamp order.
pub const HOLD_NS: u64 = 250_000_000;

/// Output format of `podwire capture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LiveFormat {
    Table,
    Jsonl,
}

/// Arguments of `podwire capture`.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    /// Capture on this interface (repeatable).
    #[arg(short = 'i', long = "interface", value_name = "IF")]
    pub interfaces: Vec<String>,
    /// Capture on every interface but loopback (node NICs, veth*/cali*/lxc*, bridges,
    /// overlays), following interfaces that appear and disappear.
    #[arg(long)]
    pub all: bool,
    /// Capture inside this network namespace (/var/run/netns/NAME, /proc/PID/ns/net).
    #[arg(long, value_name = "PATH", conflicts_with = "pod")]
    pub netns: Option<PathBuf>,
    /// Capture inside this pod's network namespace (needs --cluster for its IP); defaults to
    /// all of the pod's interfaces.
    #[arg(long, value_name = "NS/NAME", requires = "cluster")]
    pub pod: Option<String>,
    /// Cluster snapshot (YAML): resolves --pod and records pod identities in --write files.
    #[arg(long, value_name = "SNAP")]
    pub cluster: Option<PathBuf>,
    /// Watch the cluster live through the API server (read-only get/list/watch; kubeconfig,
    /// --kubeconfig, --context or in-cluster config): identities and verdicts follow pods as
    /// they come and go, and capture health says how stale the state is when the API server
    /// is unreachable.
    #[arg(long, conflicts_with = "cluster")]
    pub kube: bool,
    #[command(flatten)]
    pub kube_options: crate::cluster::watch::KubeOptions,
    /// No TUI: stream flow records to stdout.
    #[arg(long)]
    pub headless: bool,
    /// With --headless: only the flow records this filter keeps (the TUI's language,
    /// docs/filter.md, e.g. `enc:plaintext !ns:kube-system`; `--filter` is the capture
    /// filter, applied to packets before anything else).
    #[arg(long, value_name = "EXPR", requires = "headless", value_parser = crate::tui::filter::Filter::from_arg)]
    pub flow_filter: Option<crate::tui::filter::Filter>,
    #[arg(long, value_enum, default_value_t = LiveFormat::Table)]
    pub format: LiveFormat,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Stop after this many frames were captured (after the filter, before de-duplication).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Capture filter (host, net, port, portrange, tcp, udp, …, and/or/not; see
    /// docs/capture.md), applied in the capture threads before queueing.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Write what was captured (after the filter) to this pcapng file.
    #[arg(short = 'w', long = "write", value_name = "FILE.pcapng")]
    pub write: Option<PathBuf>,
    /// Start a new --write file after this many MB (10^6 bytes).
    #[arg(long, value_name = "MB", requires = "write")]
    pub rotate_size: Option<u64>,
    /// Start a new --write file after this many seconds of capture.
    #[arg(long, value_name = "N", requires = "write")]
    pub rotate_seconds: Option<u64>,
    /// Do not put interfaces in promiscuous mode.
    #[arg(long)]
    pub no_promiscuous: bool,
    /// Largest frame captured whole, in KiB (GRO/TSO frames on veths reach 64 KiB, BIG TCP
    /// more); longer frames are cut and counted as truncated.
    #[arg(long, value_name = "KiB", default_value_t = 256)]
    pub read_buffer_kib: usize,
    /// Kernel socket receive buffer per interface, in MiB.
    #[arg(long, value_name = "MiB", default_value_t = 32)]
    pub socket_buffer_mib: usize,
    /// Batches (of up to 256 frames) queued between the capture threads and the engine.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub queue_batches: usize,
    /// Emit an update record for flows still open every this many seconds (jsonl; 0 = off).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub update_interval: u64,
    /// Append capture-health snapshots (JSON lines) to this file ("-" = stderr).
    #[arg(long, value_name = "FILE")]
    pub health_file: Option<PathBuf>,
    /// Seconds between capture-health snapshots.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub health_interval: u64,
    /// Most flows tracked at once.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_flows: usize,
    /// Idle timeout in seconds for open TCP connections.
    #[arg(long, default_value_t = 300)]
    pub tcp_idle: u64,
    /// Seconds a closed TCP connection lingers before its record is printed.
    #[arg(long, default_value_t = 5)]
    pub tcp_closed_idle: u64,
    /// Idle timeout in seconds for UDP and other flows.
    #[arg(long, default_value_t = 60)]
    pub udp_idle: u64,
    /// The TUI's packet ring (`e` / `:export`); unused with --headless.
    #[command(flatten)]
    pub ring: crate::tui::RingArgs,
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The error for missing privileges, with how to get them.
fn privilege_help(missing: &[Capability]) -> String {
    let names: Vec<String> = missing.iter().map(|c| c.to_string()).collect();
    format!(
        "podwire capture needs {} (missing). Run it as root (`sudo podwire capture …`), or give \
         the binary the capabilities once: `sudo setcap cap_net_raw,cap_net_admin{}=eip $(command -v podwire)`; \
         on a Kubernetes node: `kubectl debug node/NODE -it --image=IMAGE --profile=sysadmin -- podwire capture --all` \
         (see docs/deploy/node.md)",
        names.join(" and "),
        if missing.contains(&Capability::CAP_SYS_ADMIN) {
            ",cap_sys_admin"
        } else {
            ""
        }
    )
}

/// Where the capture happens.
struct Target {
    netns: Option<Arc<Netns>>,
    /// Human explanation of how the namespace was chosen.
    explanation: Option<String>,
}

fn resolve_target(args: &CaptureArgs, cluster: Option<&ClusterInfo>) -> Result<Target> {
    if let Some(path) = &args.netns {
        let ns = Netns::open(path).context("--netns")?;
        return Ok(Target {
            netns: Some(Arc::new(ns)),
            explanation: None,
        });
    }
    let Some(pod) = &args.pod else {
        return Ok(Target {
            netns: None,
            explanation: None,
        });
    };
    let Some(cluster) = cluster else {
        bail!("--pod needs --cluster SNAPSHOT to find the pod's IP");
    };
    match find_pod_netns(pod, cluster)? {
        PodNetns::Host(why) => Ok(Target {
            netns: None,
            explanation: Some(why),
        }),
        PodNetns::Found { path, why } => {
            let ns = Netns::open(&path).with_context(|| format!("opening {}", path.display()))?;
            Ok(Target {
                netns: Some(Arc::new(ns)),
                explanation: Some(why),
            })
        }
    }
}

/// Pods of the snapshot, as much as capture needs.
struct ClusterInfo {
    pods: Vec<(String, Vec<std::net::IpAddr>, bool, Option<String>)>,
    source: String,
}

fn load_cluster(path: &Path) -> Result<ClusterInfo> {
    let snapshot = crate::cluster::snapshot::load_snapshot(path)
        .with_context(|| format!("loading cluster snapshot {}", path.display()))?;
    let state = snapshot.into_state();
    let pods = state
        .pods
        .values()
        .map(|p| (p.key(), p.ips.clone(), p.host_network, p.node.clone()))
        .collect();
    Ok(ClusterInfo {
        pods,
        source: path.display().to_string(),
    })
}

enum PodNetns {
    /// Capture in podwire's own namespace (hostNetwork pod, or podwire runs in the pod).
    Host(String),
    Found {
        path: PathBuf,
        why: String,
    },
}

/// Finds the network namespace that has the pod's IP as a local address by scanning
/// `/proc/*/net/fib_trie` (IPv4) and `/proc/*/net/if_inet6` (IPv6), one process per namespace.
fn find_pod_netns(pod: &str, cluster: &ClusterInfo) -> Result<PodNetns> {
    let Some((key, ips, host_network, node)) = cluster.pods.iter().find(|p| p.0 == pod) else {
        bail!(
            "--pod {pod}: no such pod in the cluster snapshot {} (expected NAMESPACE/NAME)",
            cluster.source
        );
    };
    if *host_network {
        return Ok(PodNetns::Host(format!(
            "pod {key} uses hostNetwork: it shares the node's network namespace, so podwire \
             captures in its own namespace (give --all or --interface)"
        )));
    }
    if ips.is_empty() {
        bail!("--pod {key}: the snapshot has no IP for this pod (not running yet?)");
    }
    let own = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut seen: HashMap<String, (u32, String)> = HashMap::new();
    let mut hits: Vec<(String, u32, String, std::net::IpAddr)> = Vec::new();
    let entries = std::fs::read_dir("/proc").context("reading /proc")?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        let ns = ns.display().to_string();
        if seen.contains_key(&ns) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        seen.insert(ns.clone(), (pid, comm.clone()));
        let locals = local_addresses(pid);
        if let Some(ip) = ips.iter().find(|ip| locals.contains(ip)) {
            hits.push((ns, pid, comm, *ip));
        }
    }
    let ip_list: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    match hits.as_slice() {
        [] => bail!(
            "--pod {key}: no network namespace on this host has the pod's IP {} as a local \
             address ({} namespaces checked via /proc/*/net/fib_trie and if_inet6). The snapshot \
             places the pod on node {}, this host is {here:?}; run podwire on that node with \
             hostPID (kubectl debug node/… --profile=sysadmin), or pass --netns /proc/PID/ns/net",
            ip_list.join(", "),
            seen.len(),
            node.as_deref().unwrap_or("(unknown)")
        ),
        [(ns, pid, comm, ip)] if *ns == own => Ok(PodNetns::Host(format!(
            "pod {key}: its IP {ip} is local to podwire's own network namespace {ns} (pid {pid} \
             {comm:?}): podwire runs inside the pod or the pod uses the host network"
        ))),
        [(ns, pid, comm, ip)] => Ok(PodNetns::Found {
            path: PathBuf::from(format!("/proc/{pid}/ns/net")),
            why: format!(
                "pod {key} (IPs {}) → network namespace {ns}: process {pid} ({comm}) there has \
                 {ip} as a local address",
                ip_list.join(", ")
            ),
        }),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|(ns, pid, comm, ip)| format!("{ns} (pid {pid} {comm}, {ip})"))
                .collect();
            bail!(
                "--pod {key}: several network namespaces have the pod's IP: {}; pass --netns \
                 /proc/PID/ns/net to choose",
                list.join("; ")
            )
        }
    }
}

/// Local addresses of the network namespace of `pid`.
fn local_addresses(pid: u32) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")) {
        out.extend(parse_fib_trie_locals(&trie));
    }
    if let Ok(v6) = std::fs::read_to_string(format!("/proc/{pid}/net/if_inet6")) {
        for line in v6.lines() {
            let Some(hex) = line.split_whitespace().next() else {
                continue;
            };
            if let Ok(v) = u128::from_str_radix(hex, 16) {
                out.push(std::net::IpAddr::V6(v.into()));
            }
        }
    }
    out
}

/// Addresses marked `/32 host LOCAL` in a `/proc/net/fib_trie` dump.
fn parse_fib_trie_locals(text: &str) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<std::net::IpAddr> = None;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if let Ok(ip) = t.parse::<std::net::IpAddr>() {
            last = Some(ip);
        } else if t.contains("/32 host LOCAL")
            && let Some(ip) = last
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// Per-interface state on the engine thread.
struct Iface {
    name: String,
    kind: &'static str,
    status: String,
    counters: Option<Arc<Counters>>,
    recycle: Option<SyncSender<Batch>>,
    pcap_id: Option<IfaceId>,
    declared: bool,
    failures: u32,
    pending: VecDeque<(Batch, usize)>,
}

impl Iface {
    fn new(name: String) -> Iface {
        Iface {
            kind: live::interface_kind(&name),
            name,
            status: "starting".into(),
            counters: None,
            recycle: None,
            pcap_id: None,
            declared: false,
            failures: 0,
            pending: VecDeque::new(),
        }
    }

    fn head_ts(&self) -> Option<TimestampNs> {
        let (b, i) = self.pending.front()?;
        b.frames.get(*i).map(|f| f.ts_ns)
    }
}

#[derive(Debug, Serialize)]
struct IfaceHealth<'a> {
    id: IfaceId,
    name: &'a str,
    kind: &'a str,
    status: &'a str,
    #[serde(flatten)]
    counters: CounterValues,
    /// Frames removed by de-duplication (seen first on another interface).
    duplicates: u64,
}

#[derive(Debug, Serialize)]
struct Health<'a> {
    r#type: &'static str,
    ts_ns: u64,
    elapsed_s: f64,
    interfaces: Vec<IfaceHealth<'a>>,
    received: u64,
    filtered: u64,
    queue_drops: u64,
    kernel_drops: Option<u64>,
    truncated: u64,
    /// Frames that reached the engine after frames with later timestamps had been processed.
    late_frames: u64,
    engine_frames: u64,
    duplicates_removed: u64,
    live_flows: usize,
    flows_reported: u64,
    /// CPU time of the engine thread (decode, flows, output), in microseconds.
    engine_cpu_us: u64,
    /// The TUI's packet ring (absent with --headless).
    #[serde(skip_serializing_if = "Option::is_none")]
    packet_ring: Option<RingHealth>,
}

/// The TUI's packet ring in a health record.
#[derive(Debug, Serialize)]
struct RingHealth {
    frames: usize,
    bytes: usize,
    cap_bytes: usize,
    cap_frames: usize,
    evicted_frames: u64,
    too_large: u64,
}

/// Runs `podwire capture`; returns the exit code.
pub fn run_capture(args: &CaptureArgs) -> Result<i32> {
    if !args.all && args.interfaces.is_empty() && args.pod.is_none() {
        bail!(
            "choose what to capture: --interface IF (repeatable) or --all (every interface; \
             with --netns/--pod, every interface of that namespace)"
        );
    }
    if let Some(filter) = &args.flow_filter {
        filter.without_findings().map_err(anyhow::Error::msg)?;
    }
    let use_tui = !args.headless && io::stdout().is_terminal();
    let format = if args.headless || use_tui {
        args.format
    } else {
        eprintln!(
            "podwire: standard output is not a terminal, so no TUI; showing headless {} output \
             instead (pass --headless to silence this message)",
            match args.format {
                LiveFormat::Table => "table",
                LiveFormat::Jsonl => "JSON lines",
            }
        );
        args.format
    };
    let filter = match &args.filter {
        Some(text) => Some(Arc::new(Filter::parse(text)?)),
        None => None,
    };
    let cluster = match &args.cluster {
        Some(path) => Some(load_cluster(path)?),
        None => None,
    };

    // Privileges first: a clear message beats a failing socket() per interface.
    let mut needed = vec![Capability::CAP_NET_RAW];
    if args.netns.is_some() || args.pod.is_some() {
        needed.push(Capability::CAP_SYS_ADMIN);
    }
    let missing = live::missing_capabilities(&needed);
    if !missing.is_empty() {
        bail!("{}", privilege_help(&missing));
    }
    let target = resolve_target(args, cluster.as_ref())?;
    if let Some(why) = &target.explanation {
        eprintln!("podwire: {why}");
    }
    let follow = args.all || (args.pod.is_some() && args.interfaces.is_empty());

    // Which interfaces exist where we capture.
    let netns = target.netns.clone();
    let links = live::in_netns(netns.clone(), live::list_interfaces)
        .context("listing the interfaces of the capture namespace")?;
    for name in &args.interfaces {
        if !links.iter().any(|l| &l.name == name) {
            let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            bail!(
                "no interface {name:?} {} (available: {})",
                match &netns {
                    Some(ns) => format!("in network namespace {}", ns.path.display()),
                    None => "on this host".into(),
                },
                names.join(", ")
            );
        }
    }

    let (data_tx, data_rx) = mpsc::sync_channel::<Batch>(args.queue_batches.max(1));
    let (ctl_tx, ctl_rx) = mpsc::channel::<Control>();
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = CaptureContext {
        config: Arc::new(CaptureConfig {
            read_buffer: args.read_buffer_kib.clamp(2, 64 * 1024) * 1024,
            socket_buffer: args.socket_buffer_mib.clamp(1, 2048) << 20,
            promiscuous: !args.no_promiscuous,
            filter: filter.clone(),
            keep_caps: Vec::new(),
        }),
        netns: netns.clone(),
        data: data_tx,
        control: ctl_tx,
        stop: stop.clone(),
    };
    install_signal_handlers();

    let mut registry = IfaceRegistry::default();
    let mut handles: Vec<CaptureHandle> = Vec::new();
    let mut wanted: Vec<&live::LinkInfo> = links
        .iter()
        .filter(|l| args.interfaces.contains(&l.name))
        .collect();
    if follow {
        for l in links.iter().filter(|l| live::selected_by_all(l)) {
            if !wanted.iter().any(|w| w.name == l.name) {
                wanted.push(l);
            }
        }
    }
    if wanted.is_empty() {
        bail!("no interface to capture on (only loopback or unsupported link types found)");
    }
    for link in &wanted {
        let id = registry.id(&link.name);
        handles.push(
            live::spawn_capture(id, &link.name, Some(link.index), &ctx)
                .context("starting a capture thread")?,
        );
    }

    // Wait until every initial interface opened or failed, so permission errors are clear.
    let mut state = EngineThread::new(args, format, filter.as_deref(), cluster.as_ref())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut reported = 0;
    while reported < handles.len() && Instant::now() < deadline {
        match ctl_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(msg) => {
                if matches!(msg, Control::Opened { .. } | Control::Failed { .. }) {
                    reported += 1;
                }
                state.control(msg)?;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let opened: Vec<&str> = state
        .ifaces
        .iter()
        .flatten()
        .filter(|i| i.declared)
        .map(|i| i.name.as_str())
        .collect();
    if !opened.is_empty() {
        eprintln!(
            "podwire: capturing on {}{}{}",
            opened.join(", "),
            match &netns {
                Some(ns) => format!(" in network namespace {}", ns.path.display()),
                None => String::new(),
            },
            if follow {
                " (following interfaces that appear)"
            } else {
                ""
            }
        );
    }
    state.announce = true;
    if opened.is_empty() && !follow {
        stop.store(true, Ordering::Relaxed);
        live::join_all(handles);
        if state.permission_failures > 0 {
            bail!("{}", privilege_help(&[Capability::CAP_NET_RAW]));
        }
        bail!("no interface could be opened");
    }

    // Interface discovery keeps what it needs to open sockets later; everyone else drops all.
    let discovery = if follow {
        let mut keep = vec![Capability::CAP_NET_RAW, Capability::CAP_NET_ADMIN];
        if netns.is_some() {
            keep.push(Capability::CAP_SYS_ADMIN);
        }
        Some(
            live::spawn_discovery(
                ctx.clone(),
                registry,
                std::mem::take(&mut handles),
                Duration::from_secs(1),
                keep,
            )
            .context("starting interface discovery")?,
        )
    } else {
        None
    };
    let main_keep: Vec<Capability> = if args.write.is_some() {
        vec![Capability::CAP_DAC_OVERRIDE]
    } else {
        Vec::new()
    };
    if let Err(e) = live::drop_thread_capabilities(&main_keep) {
        eprintln!("podwire: could not drop capabilities of the output thread: {e}");
    }

    if use_tui {
        return run_tui(
            args, state, data_rx, ctl_rx, follow, stop, handles, discovery, &target,
        );
    }

    let result = state.run(&data_rx, &ctl_rx, follow);
    stop.store(true, Ordering::Relaxed);
    live::join_all(handles);
    if let Some(d) = discovery {
        let _ = d.join();
    }
    // Everything the capture threads sent is in the channels now.
    let finish = state.finish(&data_rx, &ctl_rx);
    result?;
    finish
}

/// Runs the TUI on the live capture: the TUI source's engine thread merges the same bounded
/// channel of captured batches as the headless engine thread (same ordering, filter already
/// applied, same pcapng writer) and feeds them to the TUI's engine; capture health goes to
/// the Stats view. Messages for stderr wait until the terminal is restored.
#[allow(clippy::too_many_arguments)]
fn run_tui(
    args: &CaptureArgs,
    state: EngineThread<'static>,
    data_rx: Receiver<Batch>,
    ctl_rx: Receiver<Control>,
    follow: bool,
    stop: Arc<AtomicBool>,
    handles: Vec<CaptureHandle>,
    discovery: Option<std::thread::JoinHandle<()>>,
    target: &Target,
) -> Result<i32> {
    let label = {
        let names: Vec<&str> = state
            .ifaces
            .iter()
            .flatten()
            .filter(|i| i.declared)
            .map(|i| i.name.as_str())
            .collect();
        let mut label = if follow && args.interfaces.is_empty() {
            "all interfaces".to_string()
        } else {
            names.join(",")
        };
        if let Some(ns) = &target.netns {
            label.push_str(&format!(" in {}", ns.path.display()));
        }
        label
    };
    let cluster = match &args.cluster {
        Some(path) => Some(crate::findings::commands::load_cluster_state(path)?),
        None => None,
    };
    let (report_tx, report_rx) = mpsc::channel::<(Vec<String>, Result<i32>)>();
    let mut source = Source::new(label, SourceKind::Live, move |feeder: &mut Feeder| {
        let mut state: EngineThread<'_> = state;
        state.attach(feeder);
        let result = state.run(&data_rx, &ctl_rx, follow);
        stop.store(true, Ordering::Relaxed);
        live::join_all(handles);
        if let Some(d) = discovery {
            let _ = d.join();
        }
        let finish = state.finish(&data_rx, &ctl_rx);
        let outcome = match result {
            Err(e) => Err(e),
            Ok(()) => finish,
        };
        let error = outcome.as_ref().err().map(|e| anyhow::anyhow!("{e:#}"));
        let _ = report_tx.send((std::mem::take(&mut state.notes), outcome));
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
    .with_engine_config(engine_config(args))
    .with_packet_ring(args.ring.caps());
    if let (Some(state), Some(path)) = (cluster, &args.cluster) {
        source = source.with_cluster(
            state.clone(),
            ClusterOrigin::SnapshotFile {
                path: path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                taken_at_ns: state.snapshot_time_ns,
            },
        );
    }
    let ui = crate::tui::run(source);
    // The source thread has finished (run() waits for it): print what it kept for stderr.
    let (notes, outcome) = report_rx.recv().unwrap_or_else(|_| (Vec::new(), Ok(0)));
    for n in notes {
        eprintln!("{n}");
    }
    ui?;
    outcome
}

/// The one engine thread's state.
struct EngineThread<'a> {
    args: CaptureArgs,
    /// The engine (headless); with the TUI, frames go to `tui` and the TUI's engine instead.
    engine: Engine,
    /// The TUI's feeder, when the TUI shows the capture.
    tui: Option<&'a mut Feeder>,
    /// Live cluster watch (`--kube`): its events and how fresh the state is.
    watch: Option<(
        crate::cluster::watch::LiveWatch,
        Receiver<crate::cluster::WatchEvent>,
    )>,
    staleness: crate::cluster::Staleness,
    /// Messages kept for after the TUI closed (stderr would garble the screen).
    notes: Vec<String>,
    format: LiveFormat,
    table: Option<FlowWriter<io::BufWriter<io::Stdout>>>,
    out: io::BufWriter<io::Stdout>,
    pcap: Option<RotatingPcapng>,
    ifaces: Vec<Option<Iface>>,
    heap: BinaryHeap<Reverse<(TimestampNs, IfaceId)>>,
    in_heap: Vec<bool>,
    processed_ns: TimestampNs,
    late_frames: u64,
    frames: u64,
    flows_reported: u64,
    updates: HashMap<FlowKey, u64>,
    health_out: Option<Box<dyn Write + Send>>,
    started: Instant,
    permission_failures: u32,
    /// The TUI asked to stop.
    quit: bool,
    stderr_tty: bool,
    /// Announce each interface opened (after the initial set was announced together).
    announce: bool,
}

/// The engine settings of `podwire capture` (headless and TUI alike).
fn engine_config(args: &CaptureArgs) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.table.capacity = args.max_flows.max(1);
    config.table.tcp_idle_ns = args.tcp_idle.saturating_mul(1_000_000_000);
    config.table.tcp_closed_idle_ns = args.tcp_closed_idle.saturating_mul(1_000_000_000);
    config.table.other_idle_ns = args.udp_idle.saturating_mul(1_000_000_000);
    config.table.sweep_interval_ns = 1_000_000_000;
    // Live timestamps come from each capture thread when it receives a frame: on a busy node
    // the copies of one packet on a veth and on the bridge can be stamped far apart.
    config.dedup_window_ns = 500_000_000;
    config
}

impl<'a> EngineThread<'a> {
    fn new(
        args: &CaptureArgs,
        format: LiveFormat,
        filter: Option<&Filter>,
        cluster: Option<&ClusterInfo>,
    ) -> Result<EngineThread<'a>> {
        let config = engine_config(args);
        let pcap = match &args.write {
            Some(path) => {
                let comments = pcap_comments(args, filter, cluster);
                Some(
                    RotatingPcapng::create(
                        RotationConfig {
                            path: path.clone(),
                            max_bytes: args.rotate_size.map(|mb| mb.saturating_mul(1_000_000)),
                            max_ns: args.rotate_seconds.map(|s| s.saturating_mul(1_000_000_000)),
                        },
                        comments,
                    )
                    .context("--write")?,
                )
            }
            None => None,
        };
        let health_out: Option<Box<dyn Write + Send>> = match &args.health_file {
            Some(p) if p.as_os_str() == "-" => Some(Box::new(io::stderr())),
            Some(p) => Some(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("--health-file {}", p.display()))?,
            )),
            None => None,
        };
        let table = (format == LiveFormat::Table).then(|| {
            FlowWriter::new(
                io::BufWriter::with_capacity(1 << 16, io::stdout()),
                FlowFormat::Table,
            )
        });
        let mut engine = Engine::new(config);
        if let Some(path) = &args.cluster {
            // Identities and verdicts for every record, as `podwire flows --cluster` gives.
            let snapshot = crate::cluster::snapshot::load_snapshot(path)
                .with_context(|| format!("loading cluster snapshot {}", path.display()))?;
            engine.set_cluster(snapshot.into_state());
        }
        let watch = if args.kube {
            let (sender, receiver) = std::sync::mpsc::sync_channel(4096);
            let live = crate::cluster::watch::LiveWatch::start(&args.kube_options, sender)
                .context("starting the live cluster watch (--kube)")?;
            Some((live, receiver))
        } else {
            None
        };
        Ok(EngineThread {
            args: args.clone(),
            engine,
            tui: None,
            watch,
            staleness: crate::cluster::Staleness::new(),
            notes: Vec::new(),
            format,
            table,
            out: io::BufWriter::with_capacity(1 << 16, io::stdout()),
            pcap,
            ifaces: Vec::new(),
            heap: BinaryHeap::new(),
            in_heap: Vec::new(),
            processed_ns: 0,
            late_frames: 0,
            frames: 0,
            flows_reported: 0,
            updates: HashMap::new(),
            health_out,
            started: Instant::now(),
            permission_failures: 0,
            quit: false,
            stderr_tty: io::stderr().is_terminal(),
            announce: false,
        })
    }

    /// A message for stderr: now when headless, after the TUI closed otherwise.
    fn say(&mut self, message: String) {
        if self.tui.is_some() {
            if self.notes.len() < 1000 {
                self.notes.push(message);
            }
        } else {
            eprintln!("{message}");
        }
    }

    /// Hands the capture to the TUI: frames, interfaces and ticks go to `feeder` from now on.
    fn attach(&mut self, feeder: &'a mut Feeder) {
        // The interfaces opened so far were declared to the headless engine before any frame
        // arrived: declare them to the TUI's engine too (de-duplication across them, and
        // their names in exports).
        for info in self.engine.declared_interfaces() {
            feeder.interface(info.clone());
        }
        for info in self
            .engine
            .stats()
            .interfaces
            .iter()
            .filter_map(|s| s.info.clone())
        {
            feeder.interface(info);
        }
        self.table = None;
        self.tui = Some(feeder);
    }

    fn iface_mut(&mut self, id: IfaceId, name: &str) -> &mut Iface {
        let i = id as usize;
        if self.ifaces.len() <= i {
            self.ifaces.resize_with(i + 1, || None);
            self.in_heap.resize(i + 1, false);
        }
        self.ifaces[i].get_or_insert_with(|| Iface::new(name.to_string()))
    }

    fn control(&mut self, msg: Control) -> Result<()> {
        match msg {
            Control::Opened {
                id,
                name,
                ifindex,
                link,
                counters,
                recycle,
                caps_dropped,
                rcvbuf,
            } => {
                let first = !self.iface_mut(id, &name).declared;
                if first {
                    let info = InterfaceInfo {
                        capture_id: id,
                        ifindex: Some(ifindex),
                        link,
                        name: Some(name.clone()),
                    };
                    match self.tui.as_mut() {
                        Some(feeder) => feeder.interface(info),
                        None => self.engine.add_interface(info),
                    }
                }
                let pcap_id = match (&mut self.pcap, first) {
                    (Some(p), true) => Some(p.add_interface(&name, link).context("--write")?),
                    _ => None,
                };
                let iface = self.iface_mut(id, &name);
                if let Some(p) = pcap_id {
                    iface.pcap_id = Some(p);
                }
                iface.declared = true;
                iface.status = "capturing".into();
                iface.counters = Some(counters);
                iface.recycle = Some(recycle);
                if let Err(e) = caps_dropped {
                    self.say(format!("podwire: {name}: could not drop capabilities: {e}"));
                }
                if self.announce {
                    self.say(format!(
                        "podwire: capturing on {name} (ifindex {ifindex}{})",
                        rcvbuf
                            .map(|b| format!(", socket buffer {} KiB", b / 1024))
                            .unwrap_or_default()
                    ));
                }
            }
            Control::Failed {
                id,
                name,
                error,
                permission,
            } => {
                if permission {
                    self.permission_failures += 1;
                }
                let iface = self.iface_mut(id, &name);
                iface.failures += 1;
                iface.status = format!("failed: {error}");
                if iface.failures == 1 {
                    self.say(format!("podwire: cannot capture on {name}: {error}"));
                }
            }
            Control::Closed { id, name, reason } => {
                let iface = self.iface_mut(id, &name);
                iface.status = reason.clone();
                if reason != "capture stopped" {
                    self.say(format!("podwire: stopped capturing on {name}: {reason}"));
                }
            }
            Control::DiscoveryError(e) => self.say(format!("podwire: interface discovery: {e}")),
        }
        Ok(())
    }

    fn push(&mut self, batch: Batch, ctl_rx: &Receiver<Control>) -> Result<()> {
        let id = batch.iface as usize;
        if self.ifaces.get(id).and_then(|i| i.as_ref()).is_none() {
            // Opened was sent before this batch: it is in the control channel.
            while let Ok(msg) = ctl_rx.try_recv() {
                self.control(msg)?;
            }
        }
        let name = format!("if{id}");
        let iface = self.iface_mut(batch.iface, &name);
        if batch.frames.is_empty() {
            return Ok(());
        }
        let was_empty = iface.pending.is_empty();
        iface.pending.push_back((batch, 0));
        if was_empty {
            self.schedule(id as IfaceId);
        }
        Ok(())
    }

    fn schedule(&mut self, id: IfaceId) {
        let i = id as usize;
        if self.in_heap.get(i).copied().unwrap_or(true) {
            return;
        }
        if let Some(ts) = self.ifaces[i].as_ref().and_then(Iface::head_ts) {
            self.heap.push(Reverse((ts, id)));
            self.in_heap[i] = true;
        }
    }

    /// Feeds every queued frame with a timestamp ≤ `watermark`, in timestamp order.
    fn ingest_until(&mut self, watermark: TimestampNs) -> Result<()> {
        while let Some(&Reverse((ts, id))) = self.heap.peek() {
            if ts > watermark {
                break;
            }
            self.heap.pop();
            let i = id as usize;
            self.in_heap[i] = false;
            let limit = self
                .heap
                .peek()
                .map_or(watermark, |Reverse((t, _))| (*t).min(watermark));
            let Some(iface) = self.ifaces[i].as_mut() else {
                continue;
            };
            let pcap_id = iface.pcap_id;
            // Frames of this interface until another interface's head is older.
            'frames: while let Some((batch, pos)) = iface.pending.front_mut() {
                while let Some(frame) = batch.frame(*pos) {
                    if frame.ts_ns > limit || self.args.count.is_some_and(|c| self.frames >= c) {
                        break 'frames;
                    }
                    if frame.ts_ns < self.processed_ns {
                        self.late_frames += 1;
                    }
                    self.processed_ns = self.processed_ns.max(frame.ts_ns);
                    match self.tui.as_mut() {
                        Some(feeder) => {
                            if feeder.frame(&frame).is_break() {
                                self.quit = true;
                            }
                        }
                        None => {
                            self.engine.ingest(&frame);
                        }
                    }
                    self.frames += 1;
                    if let (Some(p), Some(pid)) = (self.pcap.as_mut(), pcap_id) {
                        p.packet(pid, frame.ts_ns, frame.orig_len, frame.data)
                            .context("writing the pcapng file")?;
                    }
                    *pos += 1;
                }
                if let Some((done, _)) = iface.pending.pop_front()
                    && let Some(r) = &iface.recycle
                {
                    let _ = r.try_send(done);
                }
            }
            self.schedule(id);
            if self.args.count.is_some_and(|c| self.frames >= c) {
                break;
            }
        }
        Ok(())
    }

    fn emit_finished(&mut self) -> Result<()> {
        if self.tui.is_some() {
            return Ok(()); // the TUI's feeder collects finished flows itself
        }
        let flows = self.engine.drain_finished();
        for flow in &flows {
            self.updates.remove(&flow.key);
            self.write_flow(flow)?;
        }
        self.flows_reported += flows.len() as u64;
        Ok(())
    }

    /// Writes a flow's final record (update records of long flows come from
    /// `emit_updates`, built from summaries).
    fn write_flow(&mut self, flow: &Flow) -> Result<()> {
        let enrichment = self.engine.enrich(flow);
        if let Some(filter) = &self.args.flow_filter
            && !filter.matches(&crate::summary::FlowSummary::new(flow, enrichment.clone()))
        {
            return Ok(());
        }
        let enrichment = enrichment.as_ref();
        match (self.format, self.table.as_mut()) {
            (LiveFormat::Table, Some(t)) => t.write(flow, enrichment)?,
            _ => {
                let mut record = Vec::with_capacity(1024);
                crate::report::jsonl::write_flow_record(
                    &mut self.out,
                    &mut record,
                    flow,
                    enrichment,
                )?;
            }
        }
        Ok(())
    }

    fn flush_output(&mut self) -> Result<()> {
        if let Some(t) = self.table.as_mut() {
            t.flush()?;
        }
        self.out.flush()?;
        if let Some(p) = self.pcap.as_mut() {
            p.flush().context("writing the pcapng file")?;
        }
        Ok(())
    }

    /// Update records for flows open longer than the update interval whose counters moved.
    fn emit_updates(&mut self, now: TimestampNs) -> Result<()> {
        let interval = self.args.update_interval.saturating_mul(1_000_000_000);
        if interval == 0 || self.format != LiveFormat::Jsonl || self.tui.is_some() {
            return Ok(());
        }
        let updates = &self.updates;
        let due = self.engine.summarize_live(|f| {
            now.saturating_sub(f.first_ns) >= interval && updates.get(&f.key) != Some(&f.packets())
        });
        let filter = self.args.flow_filter.as_ref();
        for summary in due.iter().filter(|s| filter.is_none_or(|f| f.matches(s))) {
            let (key, _) = crate::flow::FlowKey::from_packet(
                summary.proto,
                summary.src,
                summary.dst,
                summary.outer,
            );
            self.updates.insert(key, summary.packets());
            #[derive(Serialize)]
            struct Update<'a> {
                update: bool,
                #[serde(flatten)]
                flow: FlowRecord<'a>,
            }
            serde_json::to_writer(
                &mut self.out,
                &Update {
                    update: true,
                    flow: FlowRecord::from_summary(summary),
                },
            )?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn health(&mut self) -> (Health<'_>, Vec<InterfaceTotals>) {
        let (stats, live_count) = match self.tui.as_mut() {
            Some(feeder) => (feeder.engine().stats(), feeder.engine().live_count()),
            None => (self.engine.stats(), self.engine.live_count()),
        };
        let packet_ring = self.tui.as_ref().map(|feeder| {
            let ring = feeder.packet_ring();
            let caps = ring.caps.unwrap_or_default();
            RingHealth {
                frames: ring.frames,
                bytes: ring.bytes,
                cap_bytes: caps.bytes,
                cap_frames: caps.frames,
                evicted_frames: ring.evicted_frames,
                too_large: ring.too_large,
            }
        });
        let mut dups: HashMap<IfaceId, u64> = HashMap::new();
        for s in &stats.interfaces {
            if let Some(info) = &s.info {
                *dups.entry(info.capture_id).or_default() += s.duplicates;
            }
        }
        let mut interfaces = Vec::new();
        let mut totals = Vec::new();
        let (mut received, mut filtered, mut queue_drops, mut truncated) = (0, 0, 0, 0);
        let mut kernel_drops: Option<u64> = None;
        for (id, iface) in self.ifaces.iter().enumerate() {
            let Some(iface) = iface else { continue };
            let c = iface
                .counters
                .as_ref()
                .map(|c| c.load())
                .unwrap_or_default();
            received += c.received;
            filtered += c.filtered;
            queue_drops += c.queue_drops;
            truncated += c.truncated;
            if let Some(k) = c.kernel_drops {
                kernel_drops = Some(kernel_drops.unwrap_or(0) + k);
            }
            if let Some(pid) = iface.pcap_id {
                let pid = pid as usize;
                if totals.len() <= pid {
                    totals.resize(pid + 1, InterfaceTotals::default());
                }
                totals[pid] = InterfaceTotals {
                    received: c.received,
                    dropped: c.kernel_drops.unwrap_or(0) + c.queue_drops,
                    delivered: 0,
                };
            }
            interfaces.push(IfaceHealth {
                id: id as IfaceId,
                name: &iface.name,
                kind: iface.kind,
                status: &iface.status,
                counters: c,
                duplicates: dups.get(&(id as IfaceId)).copied().unwrap_or(0),
            });
        }
        let health = Health {
            r#type: "capture_health",
            ts_ns: now_ns(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            interfaces,
            received,
            filtered,
            queue_drops,
            kernel_drops,
            truncated,
            late_frames: self.late_frames,
            engine_frames: stats.frames,
            duplicates_removed: stats.duplicates_removed,
            live_flows: live_count,
            flows_reported: self.flows_reported,
            engine_cpu_us: live::thread_cpu_us(),
            packet_ring,
        };
        (health, totals)
    }

    /// Applies what the live cluster watch reported since the last call (bounded per call so
    /// a relist cannot starve packet processing).
    fn apply_cluster_events(&mut self) {
        let Some((_, events)) = &self.watch else {
            return;
        };
        for _ in 0..4096 {
            match events.try_recv() {
                Ok(crate::cluster::WatchEvent::Delta(delta)) => match self.tui.as_mut() {
                    Some(feeder) => feeder.apply(delta, Some(now_ns())),
                    None => self.engine.apply(delta),
                },
                Ok(crate::cluster::WatchEvent::Status(status)) => self.staleness.update(&status),
                Err(_) => break,
            }
        }
    }

    fn write_health(&mut self, final_report: bool) -> Result<()> {
        let cluster_state = self.watch.as_ref().map(|_| {
            self.staleness
                .describe(now_ns().min(i64::MAX as u64) as i64)
        });
        let (health, totals) = self.health();
        let line = serde_json::to_string(&health)?;
        let summary = format!(
            "podwire: {:.1} s, {} frames received, {} filtered out, {} dropped in podwire's queue, \
             kernel drops {}, {} truncated, {} duplicates removed, {} late, {} flows reported, {} live",
            health.elapsed_s,
            health.received,
            health.filtered,
            health.queue_drops,
            health
                .kernel_drops
                .map_or("unknown".to_string(), |k| k.to_string()),
            health.truncated,
            health.duplicates_removed,
            health.late_frames,
            health.flows_reported,
            health.live_flows
        );
        // With --kube, say how fresh the cluster state is (e.g. "API server unreachable for 42 s").
        let summary = match cluster_state {
            Some(state) => format!("{summary}; cluster: {state}"),
            None => summary,
        };
        let per_iface: Vec<String> = health
            .interfaces
            .iter()
            .map(|i| {
                format!(
                    "  {:<16} {:<8} {:>10} received {:>8} queue drops {:>8} kernel drops {:>8} duplicates  {}",
                    i.name,
                    i.kind,
                    i.counters.received,
                    i.counters.queue_drops,
                    i.counters
                        .kernel_drops
                        .map_or("?".to_string(), |k| k.to_string()),
                    i.duplicates,
                    i.status
                )
            })
            .collect();
        let tui_health: Vec<CaptureInterface> = health
            .interfaces
            .iter()
            .map(|i| CaptureInterface {
                name: i.name.to_string(),
                kind: i.kind.to_string(),
                status: i.status.to_string(),
                received: i.counters.received,
                filtered: i.counters.filtered,
                queue_drops: i.counters.queue_drops,
                kernel_drops: i.counters.kernel_drops,
                truncated: i.counters.truncated,
            })
            .collect();
        let drops = health.queue_drops + health.kernel_drops.unwrap_or(0);
        drop(health);
        if let Some(feeder) = self.tui.as_mut() {
            feeder.set_capture_drops(drops);
            feeder.set_capture_interfaces(tui_health);
        }
        if let Some(p) = self.pcap.as_mut() {
            p.set_totals(totals);
        }
        if let Some(out) = self.health_out.as_mut() {
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        if final_report {
            self.say(summary);
            for l in per_iface {
                self.say(l);
            }
        } else if self.stderr_tty && self.tui.is_none() {
            eprintln!("{summary}");
        }
        Ok(())
    }

    fn run(
        &mut self,
        data_rx: &Receiver<Batch>,
        ctl_rx: &Receiver<Control>,
        follow: bool,
    ) -> Result<()> {
        let deadline = self
            .args
            .duration
            .map(|d| self.started + Duration::from_secs_f64(d.max(0.0)));
        let mut last_tick = Instant::now();
        let mut last_health = Instant::now();
        let mut last_update = Instant::now();
        loop {
            match data_rx.recv_timeout(Duration::from_millis(10)) {
                Ok(batch) => {
                    self.push(batch, ctl_rx)?;
                    for _ in 0..4096 {
                        match data_rx.try_recv() {
                            Ok(b) => self.push(b, ctl_rx)?,
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(msg) = ctl_rx.try_recv() {
                self.control(msg)?;
            }
            self.apply_cluster_events();
            let watermark = now_ns().saturating_sub(HOLD_NS);
            self.ingest_until(watermark)?;
            // The TUI ticks often: its feeder polls the UI's stop request and publishes.
            let tick_every = if self.tui.is_some() { 100 } else { 500 };
            if last_tick.elapsed() >= Duration::from_millis(tick_every) {
                last_tick = Instant::now();
                let now = watermark.max(self.processed_ns);
                match self.tui.as_mut() {
                    Some(feeder) => {
                        if feeder.tick(now).is_break() {
                            self.quit = true;
                        }
                    }
                    None => self.engine.tick(now),
                }
                self.emit_finished()?;
                if last_update.elapsed() >= Duration::from_secs(self.args.update_interval.max(1)) {
                    last_update = Instant::now();
                    self.emit_updates(watermark)?;
                }
                self.flush_output()?;
            }
            let health_every = if self.tui.is_some() {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(self.args.health_interval.max(1))
            };
            if last_health.elapsed() >= health_every {
                last_health = Instant::now();
                self.write_health(false)?;
            }
            if SIGNALLED.load(Ordering::Relaxed)
                || self.quit
                || deadline.is_some_and(|d| Instant::now() >= d)
                || self.args.count.is_some_and(|c| self.frames >= c)
            {
                break;
            }
            let all_gone =
                self.ifaces.iter().flatten().all(|i| {
                    i.status != "capturing" && i.status != "starting" && i.pending.is_empty()
                });
            if !follow && all_gone {
                self.say("podwire: no interface left to capture on".into());
                break;
            }
        }
        Ok(())
    }

    /// Drains the channels, processes everything left, and prints the final records.
    fn finish(&mut self, data_rx: &Receiver<Batch>, ctl_rx: &Receiver<Control>) -> Result<i32> {
        while let Ok(msg) = ctl_rx.try_recv() {
            self.control(msg)?;
        }
        while let Ok(batch) = data_rx.try_recv() {
            self.push(batch, ctl_rx)?;
        }
        while let Ok(msg) = ctl_rx.try_recv() {
            self.control(msg)?;
        }
        // Everything captured (up to --count frames).
        self.ingest_until(u64::MAX)?;
        if self.tui.is_none() {
            self.engine.finish(); // the TUI's source finishes its engine when we return
        }
        self.emit_finished()?;
        self.flush_output()?;
        self.write_health(true)?;
        if let Some(p) = self.pcap.take() {
            let files = p
                .finish(self.processed_ns.max(1))
                .context("closing the pcapng file")?;
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            self.say(format!("podwire: wrote {}", names.join(", ")));
        }
        Ok(0)
    }
}

/// SHB comments: what was captured, how, and the pods known at capture time.
fn pcap_comments(
    args: &CaptureArgs,
    filter: Option<&Filter>,
    cluster: Option<&ClusterInfo>,
) -> Vec<String> {
    let mut comments = vec![format!(
        "Captured by podwire {} at {} ns since the epoch; interfaces: {}{}; filter: {}",
        env!("CARGO_PKG_VERSION"),
        now_ns(),
        if args.all {
            "all".to_string()
        } else {
            args.interfaces.join(", ")
        },
        match (&args.netns, &args.pod) {
            (Some(p), _) => format!(" in network namespace {}", p.display()),
            (None, Some(p)) => format!(" in pod {p}'s network namespace"),
            _ => String::new(),
        },
        filter.map_or("none".to_string(), |f| f.to_string())
    )];
    if let Some(c) = cluster {
        let mut lines = vec![format!(
            "podwire cluster identities (snapshot {}): pod -> IPs",
            c.source
        )];
        for (key, ips, host_network, _) in &c.pods {
            let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            lines.push(format!(
                "{key} {}{}",
                ips.join(","),
                if *host_network { " (hostNetwork)" } else { "" }
            ));
        }
        comments.push(lines.join("\n"));
    }
    comments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_trie_locals() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 10.244.9.0/24 2 0 2\n        |-- 10.244.9.0\n           /24 link UNICAST\n        |-- 10.244.9.11\n           /32 host LOCAL\n";
        assert_eq!(
            parse_fib_trie_locals(trie),
            vec![
                "10.244.9.11"
                    .parse::<std::net::IpAddr>()
                    .unwrap_or_else(|e| panic!("{e}"))
            ]
        );
    }

    #[test]
    fn privilege_message_says_how() {
        let m = privilege_help(&[Capability::CAP_NET_RAW, Capability::CAP_SYS_ADMIN]);
        assert!(m.contains("CAP_NET_RAW"));
        assert!(m.contains("setcap cap_net_raw,cap_net_admin,cap_sys_admin=eip"));
        assert!(m.contains("kubectl debug node/"));
    }
}
