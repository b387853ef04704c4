//! Sources: the engine thread that feeds frames into an [`Engine`] and publishes immutable
//! [`Snapshot`]s for the UI.
//!
//! A [`Source`] couples a *producer* (a closure that pushes frames into a [`Feeder`]: the
//! replay reader here, AF_PACKET for live capture) with an engine and a bounded ring of
//! finished flows. [`Source::spawn`] runs it on its own thread and returns a
//! [`SourceHandle`]: snapshots arrive on a bounded channel about 4 times a second, control
//! messages (pause, speed, stop, export) go the other way.
//!
//! The feeder also keeps a [`PacketRing`] of recent frames tagged with the flows that counted
//! them; [`Control::Export`] writes the frames of chosen flows to a pcapng file on this
//! thread (the UI never waits for it) and reports an [`ExportOutcome`] on the handle's
//! `exports` channel. The thread keeps serving exports after the input ended, until stopped.
//!
//! Guarantees:
//! - memory is bounded: finished flows live in a ring of at most `ring_rows` rows (plus one
//!   chunk of [`CHUNK_ROWS`]), the oldest are evicted and counted; live flows listed in a
//!   snapshot are capped at [`LIVE_ROWS_LISTED`]; recent frames are held only in the
//!   byte- and frame-capped [`PacketRing`] (evictions counted, shown in Stats);
//! - neither side blocks the other: a snapshot the UI has not taken yet is replaced (counted
//!   in `snapshots_skipped`), never queued without bound;
//! - snapshots are cheap to publish: finished rows are shared `Arc<[FlowSummary]>` chunks;
//! - a snapshot carries no wall-clock data, so the same capture gives the same final snapshot.

#![allow(clippy::disallowed_methods)] // a shell: owns a thread, reads a clock and files

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::capture::pcapng_writer::PcapngWriter;
use crate::capture::ring::{PacketRing, RingCaps, RingCounters, StoredFrame};
use crate::capture::{CaptureEvent, read_capture};
use crate::cluster::model::{ClusterDelta, ClusterState};
use crate::engine::{Engine, EngineConfig, InterfaceInfo, Stats};
use crate::frame::{IfaceId, RawFrame, TimestampNs};
use crate::report::RttSummary;
use crate::summary::FlowSummary;
use crate::tui::findings::SnapshotFindings;

/// How often a snapshot is published (wall clock).
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(250);
/// Default cap on finished rows kept for the UI.
pub const DEFAULT_RING_ROWS: usize = 200_000;
/// Finished rows are shared in chunks of at most this many rows (the eviction unit).
pub const CHUNK_ROWS: usize = 4096;
/// Most live (unfinished) flows listed in one snapshot.
pub const LIVE_ROWS_LISTED: usize = 50_000;
/// Most interface names remembered for export files (live captures follow interfaces that
/// come and go; later ones are named `ifN`).
const INTERFACE_NAMES: usize = 4096;
/// Most flows described one by one in an export file's comment.
pub const EXPORT_FLOWS_DESCRIBED: usize = 50;
/// Most numbered names tried for an export without a path.
const EXPORT_NAME_TRIES: u32 = 10_000;

/// Replay speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Speed {
    #[default]
    X1,
    X10,
    Max,
}

impl Speed {
    pub fn label(self) -> &'static str {
        match self {
            Speed::X1 => "1×",
            Speed::X10 => "10×",
            Speed::Max => "max",
        }
    }

    pub fn faster(self) -> Speed {
        match self {
            Speed::X1 => Speed::X10,
            _ => Speed::Max,
        }
    }

    pub fn slower(self) -> Speed {
        match self {
            Speed::Max => Speed::X10,
            _ => Speed::X1,
        }
    }

    fn factor(self) -> Option<u64> {
        match self {
            Speed::X1 => Some(1),
            Speed::X10 => Some(10),
            Speed::Max => None,
        }
    }
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Speed, String> {
        match s
            .trim()
            .trim_end_matches(['x', '×'])
            .to_ascii_lowercase()
            .as_str()
        {
            "1" => Ok(Speed::X1),
            "10" => Ok(Speed::X10),
            "max" => Ok(Speed::Max),
            _ => Err(format!("speed is 1, 10 or max, not {s:?}")),
        }
    }
}

/// What kind of input a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A capture file, paced by its timestamps.
    Replay,
    /// Live traffic: quitting asks for confirmation; pause freezes the display only.
    Live,
}

/// Where the cluster data came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClusterOrigin {
    #[default]
    None,
    /// A snapshot file and when it was taken (ns since the epoch), if it says.
    SnapshotFile {
        path: String,
        taken_at_ns: Option<i64>,
    },
    /// A live watch of the API server; packet time of the last update.
    ApiServer { last_update_ns: Option<u64> },
}

/// Finished rows (shared chunks) followed by a chunk of live rows; indexable as one list.
#[derive(Debug, Clone, Default)]
pub struct FlowRows {
    chunks: Vec<Arc<[FlowSummary]>>,
    /// Index of each chunk's first row.
    starts: Vec<usize>,
    len: usize,
}

/// Splits rows into shared chunks of at most [`CHUNK_ROWS`], moving them (a deep clone
/// would copy every identity string of every row).
fn into_chunks(rows: Vec<FlowSummary>) -> Vec<Arc<[FlowSummary]>> {
    let mut chunks = Vec::with_capacity(rows.len().div_ceil(CHUNK_ROWS));
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<FlowSummary> = rows.by_ref().take(CHUNK_ROWS).collect();
        if chunk.is_empty() {
            return chunks;
        }
        chunks.push(Arc::from(chunk));
    }
}

impl FlowRows {
    pub fn from_chunks(chunks: Vec<Arc<[FlowSummary]>>) -> FlowRows {
        let mut starts = Vec::with_capacity(chunks.len());
        let mut len = 0;
        for c in &chunks {
            starts.push(len);
            len += c.len();
        }
        FlowRows {
            chunks,
            starts,
            len,
        }
    }

    /// Rows from one vector (tests, benches).
    pub fn from_vec(rows: Vec<FlowSummary>) -> FlowRows {
        FlowRows::from_chunks(into_chunks(rows))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, index: usize) -> Option<&FlowSummary> {
        if index >= self.len {
            return None;
        }
        let chunk = self
            .starts
            .partition_point(|&s| s <= index)
            .checked_sub(1)?;
        self.chunks.get(chunk)?.get(index - self.starts[chunk])
    }

    pub fn iter(&self) -> impl Iterator<Item = &FlowSummary> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The shared chunks, in row order (the search index caches per chunk).
    pub fn chunks(&self) -> &[Arc<[FlowSummary]>] {
        &self.chunks
    }

    /// The chunk holding row `index`, and the row's offset in it.
    pub fn locate(&self, index: usize) -> Option<(&Arc<[FlowSummary]>, usize)> {
        let chunk = self
            .starts
            .partition_point(|&s| s <= index)
            .checked_sub(1)?;
        let offset = index - self.starts[chunk];
        let c = self.chunks.get(chunk)?;
        (offset < c.len()).then_some((c, offset))
    }

    /// The row index of `offset` in `chunk` when that very chunk (same allocation) is still
    /// held: finished chunks are shared between snapshots, so a row found once is found
    /// again in constant time per chunk, wherever evictions moved it.
    pub fn index_in(&self, chunk: &Arc<[FlowSummary]>, offset: usize) -> Option<usize> {
        let k = self.chunks.iter().position(|c| Arc::ptr_eq(c, chunk))?;
        (offset < chunk.len()).then(|| self.starts[k] + offset)
    }

    /// The row index of the flow with `serial`, searching from the newest rows back (live
    /// rows, then the most recently finished: where a flow that just finished lands).
    pub fn rfind_serial(&self, serial: u64) -> Option<usize> {
        self.chunks
            .iter()
            .zip(&self.starts)
            .rev()
            .find_map(|(c, &start)| {
                c.iter()
                    .rposition(|f| f.serial == serial)
                    .map(|o| start + o)
            })
    }
}

/// Capture health of one live interface (the producer reports it; see
/// [`Feeder::set_capture_interfaces`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureInterface {
    pub name: String,
    /// `veth`, `bridge`, `nic`, …
    pub kind: String,
    /// `capturing`, `interface removed`, `failed: …`
    pub status: String,
    /// Frames the socket returned.
    pub received: u64,
    /// Frames the capture filter rejected.
    pub filtered: u64,
    /// Frames dropped because the queue to the engine thread was full.
    pub queue_drops: u64,
    /// The kernel's drop counter (`None`: the kernel did not say).
    pub kernel_drops: Option<u64>,
    /// Frames that filled the read buffer (possibly cut).
    pub truncated: u64,
}

/// Progress of the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Packet time of the latest frame fed.
    pub position_ns: Option<TimestampNs>,
    /// For files: bytes read so far and the file's size.
    pub bytes_read: u64,
    pub bytes_total: u64,
    pub paused: bool,
    pub speed: Speed,
    /// The input ended (all flows are finished).
    pub done: bool,
    /// Why the input stopped early.
    pub error: Option<String>,
}

/// An immutable picture of everything the UI shows.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub seq: u64,
    pub label: String,
    pub kind: SourceKind,
    /// Finished flows (oldest first), then live flows.
    pub rows: FlowRows,
    /// How many of `rows` (at the end) are live flows.
    pub live_rows: usize,
    /// Live flows in the engine (can exceed those listed).
    pub live_flows: usize,
    pub stats: Stats,
    pub rtt: Option<RttSummary>,
    /// Finished rows dropped from the ring to bound memory.
    pub evicted_rows: u64,
    /// The packet ring's fill and evictions (frames kept for export).
    pub packet_ring: RingCounters,
    /// Frames the capture layer dropped (live), as reported by the producer.
    pub capture_drops: u64,
    /// Per-interface capture health (live sources that report it).
    pub capture_interfaces: Vec<CaptureInterface>,
    /// Snapshots replaced before the UI took them.
    pub snapshots_skipped: u64,
    pub cluster: Option<Arc<ClusterState>>,
    pub cluster_origin: ClusterOrigin,
    pub progress: Progress,
    /// The rules engine's findings over `rows` (shared between snapshots until the flows
    /// change; possibly a little older than `rows` on a busy live source, never in the
    /// final snapshot).
    pub findings: Arc<SnapshotFindings>,
}

impl Snapshot {
    /// An empty snapshot (before the first one arrives).
    pub fn empty(label: &str, kind: SourceKind) -> Snapshot {
        Snapshot {
            seq: 0,
            label: label.to_string(),
            kind,
            rows: FlowRows::default(),
            live_rows: 0,
            live_flows: 0,
            stats: Stats::default(),
            rtt: None,
            evicted_rows: 0,
            packet_ring: RingCounters::default(),
            capture_drops: 0,
            capture_interfaces: Vec::new(),
            snapshots_skipped: 0,
            cluster: None,
            cluster_origin: ClusterOrigin::None,
            progress: Progress::default(),
            findings: Arc::default(),
        }
    }
}

/// Control messages from the UI to the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Pause(bool),
    Speed(Speed),
    Stop,
    /// Write the frames of some flows from the packet ring to a pcapng file.
    Export(Box<ExportRequest>),
}

/// Where an export goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// This path (replaced if it exists).
    Path(PathBuf),
    /// `STEM-N.pcapng` in the current directory, with the first N that names no file yet.
    /// The stem must already be a safe file name (see [`crate::sanitize::file_name_part`]).
    Numbered { stem: String },
}

/// One flow to export, as the UI saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFlow {
    /// [`FlowSummary::serial`].
    pub serial: u64,
    /// Its packet count in the UI's snapshot (used when the source no longer knows the flow).
    pub packets: u64,
}

/// What to export: flows by serial, and words for the file's comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub target: ExportTarget,
    pub flows: Vec<ExportFlow>,
    /// What was chosen (`flow #12 …`, `flows matching filter app:tls`), for the comment.
    pub selection: String,
    /// One line per flow for the comment (at most [`EXPORT_FLOWS_DESCRIBED`] are used).
    pub flow_lines: Vec<String>,
}

/// The result of an export, reported back to the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    /// The file written (when one was).
    pub path: Option<PathBuf>,
    pub flows: usize,
    pub frames_written: u64,
    /// Frames the flows counted that the ring no longer held (evicted, or too large).
    pub frames_missing: u64,
    /// The ring's counters at the time of the export.
    pub ring: RingCounters,
    pub error: Option<String>,
}

/// What a snapshot's findings were computed from: rows in the ring, rows evicted, live rows
/// listed, packet position, cluster generation.
type FindingsInputs = (usize, u64, usize, Option<TimestampNs>, Option<u64>);

struct Pacing {
    anchor_wall: Instant,
    anchor_ts: TimestampNs,
}

/// The producer's side of a source: feed frames in, snapshots go out.
pub struct Feeder {
    engine: Engine,
    label: String,
    kind: SourceKind,
    ring: VecDeque<Arc<[FlowSummary]>>,
    ring_len: usize,
    ring_rows: usize,
    pending: Vec<FlowSummary>,
    evicted_rows: u64,
    tx: Option<SyncSender<Arc<Snapshot>>>,
    control: Option<Receiver<Control>>,
    last_publish: Option<Instant>,
    seq: u64,
    progress: Progress,
    stop: bool,
    capture_drops: u64,
    capture_interfaces: Vec<CaptureInterface>,
    snapshots_skipped: u64,
    cluster: Option<Arc<ClusterState>>,
    cluster_generation: Option<u64>,
    cluster_origin: ClusterOrigin,
    pacing: Option<Pacing>,
    frames_since_check: u32,
    file_progress: Option<Arc<AtomicU64>>,
    last: Option<Arc<Snapshot>>,
    findings: Arc<SnapshotFindings>,
    /// What the findings were computed from (rows in the ring, evicted, live, position).
    findings_inputs: Option<FindingsInputs>,
    /// When the findings were last computed and how long that took.
    findings_at: Option<Instant>,
    findings_cost: Duration,
    packets: PacketRing,
    /// Interface names by capture id, for the export files' IDBs.
    interface_names: std::collections::BTreeMap<IfaceId, String>,
    exports: Option<Sender<ExportOutcome>>,
}

impl Feeder {
    fn new(source: &SourceSettings) -> Feeder {
        let mut engine = Engine::new(source.config);
        if let Some(state) = &source.cluster {
            engine.set_cluster(state.clone());
        }
        Feeder {
            engine,
            label: source.label.clone(),
            kind: source.kind,
            ring: VecDeque::new(),
            ring_len: 0,
            ring_rows: source.ring_rows.max(1),
            pending: Vec::new(),
            evicted_rows: 0,
            tx: None,
            control: None,
            last_publish: None,
            seq: 0,
            progress: Progress {
                speed: source.speed,
                ..Progress::default()
            },
            stop: false,
            capture_drops: 0,
            capture_interfaces: Vec::new(),
            snapshots_skipped: 0,
            cluster: None,
            cluster_generation: None,
            cluster_origin: source.cluster_origin.clone(),
            pacing: None,
            frames_since_check: 0,
            file_progress: None,
            last: None,
            findings: Arc::default(),
            findings_inputs: None,
            findings_at: None,
            findings_cost: Duration::ZERO,
            packets: PacketRing::new(source.packet_ring),
            interface_names: std::collections::BTreeMap::new(),
            exports: None,
        }
    }

    /// The engine (for live-capture specifics such as `tick`).
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The packet ring's fill and evictions (also in every snapshot).
    pub fn packet_ring(&self) -> RingCounters {
        self.packets.counters()
    }

    /// True once the UI asked the source to stop: the producer should return.
    pub fn stopped(&self) -> bool {
        self.stop
    }

    pub fn interface(&mut self, info: InterfaceInfo) {
        if let Some(name) = &info.name
            && (self.interface_names.len() < INTERFACE_NAMES
                || self.interface_names.contains_key(&info.capture_id))
        {
            self.interface_names.insert(info.capture_id, name.clone());
        }
        self.engine.add_interface(info);
    }

    /// Feeds one frame; `Break` when the producer should stop.
    pub fn frame(&mut self, frame: &RawFrame<'_>) -> ControlFlow<()> {
        if self.stop {
            return ControlFlow::Break(());
        }
        if self.kind == SourceKind::Replay {
            self.pace(frame.ts_ns)?;
        }
        let counted_in = self.engine.ingest(frame);
        self.packets.push(frame, counted_in);
        self.progress.position_ns = Some(
            self.progress
                .position_ns
                .map_or(frame.ts_ns, |p| p.max(frame.ts_ns)),
        );
        self.frames_since_check += 1;
        if self.frames_since_check >= 256 {
            self.frames_since_check = 0;
            self.collect_finished();
            self.poll_control();
            self.maybe_publish();
        }
        if self.stop {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Moves packet time forward without a frame (live idle periods) and publishes if due.
    pub fn tick(&mut self, now_ns: TimestampNs) -> ControlFlow<()> {
        self.engine.tick(now_ns);
        self.collect_finished();
        self.poll_control();
        self.maybe_publish();
        if self.stop {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Reports the capture layer's drop counter (cumulative).
    pub fn set_capture_drops(&mut self, drops: u64) {
        self.capture_drops = drops;
    }

    /// Reports per-interface capture health (cumulative counters), shown in Stats.
    pub fn set_capture_interfaces(&mut self, interfaces: Vec<CaptureInterface>) {
        self.capture_interfaces = interfaces;
    }

    /// Applies a cluster change from a live watch.
    pub fn apply(&mut self, delta: ClusterDelta, now_ns: Option<u64>) {
        self.engine.apply(delta);
        self.cluster_origin = ClusterOrigin::ApiServer {
            last_update_ns: now_ns,
        };
    }

    fn collect_finished(&mut self) {
        let finished = self.engine.drain_finished();
        for flow in finished {
            let row = FlowSummary::enriched(&mut self.engine, &flow);
            self.pending.push(row);
        }
    }

    fn seal_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        for chunk in into_chunks(pending) {
            self.ring_len += chunk.len();
            self.ring.push_back(chunk);
        }
        while self.ring_len > self.ring_rows {
            let Some(oldest) = self.ring.pop_front() else {
                break;
            };
            self.ring_len -= oldest.len();
            self.evicted_rows += oldest.len() as u64;
        }
    }

    fn poll_control(&mut self) {
        let mut messages = Vec::new();
        if let Some(control) = &self.control {
            loop {
                match control.try_recv() {
                    Ok(message) => messages.push(message),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        messages.push(Control::Stop);
                        break;
                    }
                }
            }
        }
        for m in messages {
            self.handle(m);
        }
    }

    fn handle(&mut self, message: Control) {
        match message {
            Control::Pause(p) => {
                self.progress.paused = p;
                self.pacing = None;
            }
            Control::Speed(s) => {
                self.progress.speed = s;
                self.pacing = None;
            }
            Control::Stop => self.stop = true,
            Control::Export(request) => {
                let outcome = self.export(&request);
                if let Some(tx) = &self.exports {
                    let _ = tx.send(outcome);
                }
            }
        }
        // Publish promptly so the UI shows the new state.
        self.last_publish = None;
    }

    /// Replay pacing: waits until the frame is due at the current speed; handles pause.
    fn pace(&mut self, ts: TimestampNs) -> ControlFlow<()> {
        loop {
            self.poll_control();
            if self.stop {
                return ControlFlow::Break(());
            }
            if self.progress.paused {
                self.maybe_publish();
                if let Some(control) = &self.control {
                    match control.recv_timeout(Duration::from_millis(50)) {
                        Ok(m) => self.handle(m),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => self.stop = true,
                    }
                    continue;
                }
                return ControlFlow::Continue(());
            }
            let Some(factor) = self.progress.speed.factor() else {
                return ControlFlow::Continue(());
            };
            let now = Instant::now();
            let pacing = self.pacing.get_or_insert(Pacing {
                anchor_wall: now,
                anchor_ts: ts,
            });
            let offset_ns = ts.saturating_sub(pacing.anchor_ts) / factor;
            let due = pacing.anchor_wall + Duration::from_nanos(offset_ns);
            if due <= now {
                return ControlFlow::Continue(());
            }
            self.collect_finished();
            self.maybe_publish();
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
    }

    fn maybe_publish(&mut self) {
        let due = self
            .last_publish
            .is_none_or(|t| t.elapsed() >= SNAPSHOT_INTERVAL);
        if due {
            self.publish();
        }
    }

    /// Builds and sends a snapshot now.
    fn publish(&mut self) {
        self.last_publish = Some(Instant::now());
        let snapshot = Arc::new(self.build(false));
        self.last = Some(snapshot.clone());
        if let Some(tx) = &self.tx {
            match tx.try_send(snapshot) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => self.snapshots_skipped += 1,
                Err(TrySendError::Disconnected(_)) => self.stop = true,
            }
        }
    }

    fn build(&mut self, final_snapshot: bool) -> Snapshot {
        self.collect_finished();
        self.seal_pending();
        self.seq += 1;
        let generation = self.engine.cluster().map(|c| c.generation);
        if generation != self.cluster_generation || self.cluster.is_none() {
            self.cluster = self.engine.cluster().cloned().map(Arc::new);
            self.cluster_generation = generation;
        }
        let live_flows = self.engine.live_count();
        let mut live = self.live_rows();
        live.sort_by_key(|f| (f.first_ns, f.serial));
        let mut chunks: Vec<Arc<[FlowSummary]>> = self.ring.iter().cloned().collect();
        let live_rows = live.len();
        if !live.is_empty() {
            chunks.push(Arc::from(live));
        }
        if let Some(p) = &self.file_progress {
            self.progress.bytes_read = p.load(Ordering::Relaxed);
        }
        let rows = FlowRows::from_chunks(chunks);
        self.refresh_findings(&rows, live_rows, final_snapshot);
        Snapshot {
            seq: self.seq,
            label: self.label.clone(),
            kind: self.kind,
            rows,
            live_rows,
            live_flows,
            stats: self.engine.stats(),
            rtt: RttSummary::from(self.engine.rtt()),
            evicted_rows: self.evicted_rows,
            packet_ring: self.packets.counters(),
            capture_drops: self.capture_drops,
            capture_interfaces: self.capture_interfaces.clone(),
            snapshots_skipped: self.snapshots_skipped,
            cluster: self.cluster.clone(),
            cluster_origin: self.cluster_origin.clone(),
            progress: self.progress.clone(),
            findings: self.findings.clone(),
        }
    }

    /// Re-runs the rules engine when the flows changed: always for the final snapshot,
    /// otherwise at most once per [`SNAPSHOT_INTERVAL`] and at most a fifth of this
    /// thread's time (an evaluation that took 100 ms waits 400 ms before the next one).
    fn refresh_findings(&mut self, rows: &FlowRows, live_rows: usize, final_snapshot: bool) {
        let inputs = (
            self.ring_len,
            self.evicted_rows,
            live_rows,
            self.progress.position_ns,
            self.cluster_generation,
        );
        if self.findings_inputs == Some(inputs) && !final_snapshot {
            return;
        }
        let due = self
            .findings_at
            .is_none_or(|t| t.elapsed() >= SNAPSHOT_INTERVAL.max(self.findings_cost * 4));
        if !due && !final_snapshot {
            return;
        }
        let started = Instant::now();
        self.findings = Arc::new(SnapshotFindings::compute(rows, self.cluster.as_deref()));
        self.findings_cost = started.elapsed();
        self.findings_at = Some(Instant::now());
        self.findings_inputs = Some(inputs);
    }

    /// Summaries of (at most [`LIVE_ROWS_LISTED`]) live flows, enriched. Enrichment needs
    /// `&mut Engine` while the table is borrowed, so it runs on a key-only copy of each flow.
    fn live_rows(&mut self) -> Vec<FlowSummary> {
        let engine = &self.engine;
        let listed: Vec<(FlowSummary, crate::flow::FlowKey, bool)> = engine
            .live_flows()
            .take(LIVE_ROWS_LISTED)
            .map(|f| {
                let row = FlowSummary::live(f, None, engine.dissect_budget());
                (row, f.key, f.initiator_is_a)
            })
            .collect();
        let enrich = self.engine.cluster().is_some();
        listed
            .into_iter()
            .map(|(mut row, key, initiator_is_a)| {
                if enrich {
                    let shadow =
                        crate::flow::Flow::new(key, row.serial, initiator_is_a, row.first_ns);
                    row.enrichment = self.engine.enrich(&shadow).map(Box::new);
                }
                row
            })
            .collect()
    }

    /// Writes the ring's frames of the requested flows to a pcapng file (see [`Control::Export`]).
    pub fn export(&mut self, request: &ExportRequest) -> ExportOutcome {
        let mut outcome = ExportOutcome {
            path: None,
            flows: request.flows.len(),
            frames_written: 0,
            frames_missing: 0,
            ring: self.packets.counters(),
            error: None,
        };
        if let Err(e) = self.write_export(request, &mut outcome) {
            outcome.error = Some(format!("{e:#}"));
        }
        outcome
    }

    fn write_export(&mut self, request: &ExportRequest, outcome: &mut ExportOutcome) -> Result<()> {
        let wanted: std::collections::HashSet<u64> =
            request.flows.iter().map(|f| f.serial).collect();
        // First pass: how many frames of each flow the ring holds, and on which interfaces.
        let mut held: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        let mut interfaces: Vec<(IfaceId, u32)> = Vec::new();
        for frame in self.packets.frames_of(|s| wanted.contains(&s)) {
            let flows = frame.flows();
            for serial in [flows.flow, flows.carrier].into_iter().flatten() {
                if wanted.contains(&serial) {
                    *held.entry(serial).or_default() += 1;
                }
            }
            if !interfaces.contains(&(frame.iface, frame.link)) {
                interfaces.push((frame.iface, frame.link));
            }
        }
        interfaces.sort_unstable();
        let totals = self.packet_totals(&wanted);
        let missing: u64 = request
            .flows
            .iter()
            .map(|f| {
                let total = totals.get(&f.serial).copied().unwrap_or(f.packets);
                total.saturating_sub(held.get(&f.serial).copied().unwrap_or(0))
            })
            .sum();
        let written = self.packets.frames_of(|s| wanted.contains(&s)).count() as u64;
        outcome.frames_missing = missing;

        let ring = self.packets.counters();
        let caps = ring.caps.unwrap_or_default();
        let kind = match self.kind {
            SourceKind::Replay => "replay of",
            SourceKind::Live => "live capture on",
        };
        let mut comments = vec![
            crate::sanitize::sanitize(&format!("podwire export: {}", request.selection)),
            crate::sanitize::sanitize(&format!("source: {kind} {}", self.label)),
            format!(
                "flows: {}; frames written: {written}; {missing} frames of these flows were no \
                 longer in the packet ring (evicted to stay within {} / {} frames, or \
                 larger than the ring); the ring had evicted {} frames in all",
                request.flows.len(),
                crate::report::human_bytes(caps.bytes as u64),
                caps.frames,
                ring.evicted_frames
            ),
            "copies of one packet seen on several interfaces are written once: the copy \
             podwire counted"
                .to_string(),
        ];
        comments.extend(
            request
                .flow_lines
                .iter()
                .take(EXPORT_FLOWS_DESCRIBED)
                .map(|l| crate::sanitize::sanitize(l)),
        );
        if request.flows.len() > EXPORT_FLOWS_DESCRIBED {
            comments.push(format!(
                "… and {} more flows",
                request.flows.len() - EXPORT_FLOWS_DESCRIBED
            ));
        }

        let (file, path) = open_export(&request.target)?;
        outcome.path = Some(path.clone());
        let mut writer = PcapngWriter::new(std::io::BufWriter::new(file), &comments)
            .with_context(|| format!("writing {}", path.display()))?;
        let mut ids = std::collections::HashMap::new();
        for &(iface, link) in &interfaces {
            let name = self
                .interface_names
                .get(&iface)
                .cloned()
                .unwrap_or_else(|| format!("if{iface}"));
            let id = writer.add_interface(&name, link)?;
            ids.insert((iface, link), id);
        }
        let mut last_ts = 0;
        for frame in self.packets.frames_of(|s| wanted.contains(&s)) {
            let StoredFrame {
                ts_ns,
                iface,
                link,
                orig_len,
                data,
                ..
            } = frame;
            let id = ids.get(&(*iface, *link)).copied().unwrap_or_default();
            writer
                .packet(id, *ts_ns, *orig_len, data)
                .with_context(|| format!("writing {}", path.display()))?;
            last_ts = last_ts.max(*ts_ns);
            outcome.frames_written += 1;
        }
        writer
            .finish(last_ts, &[])
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The current packet counts of the wanted flows this thread still knows (live in the
    /// engine, or finished and still in the row ring).
    fn packet_totals(
        &self,
        wanted: &std::collections::HashSet<u64>,
    ) -> std::collections::HashMap<u64, u64> {
        let mut totals = std::collections::HashMap::new();
        for flow in self.engine.live_flows() {
            if wanted.contains(&flow.serial) {
                totals.insert(flow.serial, flow.packets());
            }
        }
        for row in self.ring.iter().flat_map(|c| c.iter()).chain(&self.pending) {
            if wanted.contains(&row.serial) {
                totals.insert(row.serial, row.packets());
            }
        }
        totals
    }

    fn finish(&mut self, error: Option<String>) -> Arc<Snapshot> {
        self.engine.finish();
        self.progress.done = true;
        self.progress.error = error;
        self.publish_final()
    }

    /// After the input ended: keeps answering control messages (exports of what the ring
    /// still holds) until the UI stops the source or goes away.
    fn serve_until_stopped(&mut self) {
        while !self.stop {
            let Some(control) = &self.control else {
                return;
            };
            match control.recv() {
                Ok(message) => self.handle(message),
                Err(_) => return,
            }
        }
    }

    fn publish_final(&mut self) -> Arc<Snapshot> {
        self.last_publish = Some(Instant::now());
        let snapshot = Arc::new(self.build(true));
        self.last = Some(snapshot.clone());
        if let Some(tx) = &self.tx {
            // The final snapshot must arrive: wait for room (the UI drains every frame).
            let _ = tx.send(snapshot.clone());
        }
        snapshot
    }
}

type Producer = Box<dyn FnOnce(&mut Feeder) -> Result<()> + Send>;

struct SourceSettings {
    label: String,
    kind: SourceKind,
    config: EngineConfig,
    ring_rows: usize,
    packet_ring: RingCaps,
    speed: Speed,
    cluster: Option<ClusterState>,
    cluster_origin: ClusterOrigin,
}

/// An input for the TUI: a producer of frames plus the engine settings.
pub struct Source {
    settings: SourceSettings,
    producer: Producer,
    file_progress: Option<Arc<AtomicU64>>,
}

impl Source {
    /// A source whose `producer` pushes frames into the [`Feeder`] until its input ends or
    /// [`Feeder::stopped`] / a `Break` from [`Feeder::frame`] says to stop. Live capture:
    /// `Source::new("eth0", SourceKind::Live, move |feeder| { … feeder.frame(&f) … })`.
    pub fn new(
        label: impl Into<String>,
        kind: SourceKind,
        producer: impl FnOnce(&mut Feeder) -> Result<()> + Send + 'static,
    ) -> Source {
        Source {
            settings: SourceSettings {
                label: label.into(),
                kind,
                config: EngineConfig::default(),
                ring_rows: DEFAULT_RING_ROWS,
                packet_ring: RingCaps::default(),
                speed: Speed::Max,
                cluster: None,
                cluster_origin: ClusterOrigin::None,
            },
            producer: Box::new(producer),
            file_progress: None,
        }
    }

    /// Replays a capture file, paced by its timestamps at `speed`.
    pub fn replay(path: &Path, cluster: Option<&Path>, speed: Speed) -> Result<Source> {
        let file: PathBuf = path.to_path_buf();
        if !file.is_file() {
            anyhow::bail!("{} is not a readable file", file.display());
        }
        let total = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let read = Arc::new(AtomicU64::new(0));
        let progress = read.clone();
        let label = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.display().to_string());
        let mut source = Source::new(label, SourceKind::Replay, move |feeder: &mut Feeder| {
            feeder.progress.bytes_total = total;
            let summary = read_capture(&file, Some(progress), |event| match event {
                CaptureEvent::Interface(info) => feeder.interface(info),
                CaptureEvent::Frame(frame) => {
                    let _ = feeder.frame(&frame);
                }
                CaptureEvent::Comment(_) => {}
            })
            .with_context(|| format!("reading {}", file.display()))?;
            if let Some(damage) = summary.damage {
                anyhow::bail!("capture damaged: {}", damage.message);
            }
            Ok(())
        });
        source.file_progress = Some(read);
        source.settings.speed = speed;
        if let Some(cluster) = cluster {
            let snapshot = crate::cluster::snapshot::load_snapshot(cluster)
                .with_context(|| format!("loading the cluster snapshot {}", cluster.display()))?;
            let state = snapshot.into_state();
            source.settings.cluster_origin = ClusterOrigin::SnapshotFile {
                // The file name only: stable across checkouts, and it fits the status lines.
                path: cluster.file_name().map_or_else(
                    || cluster.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                taken_at_ns: state.snapshot_time_ns,
            };
            source.settings.cluster = Some(state);
        }
        Ok(source)
    }

    /// Uses cluster data from the start.
    pub fn with_cluster(mut self, state: ClusterState, origin: ClusterOrigin) -> Source {
        self.settings.cluster = Some(state);
        self.settings.cluster_origin = origin;
        self
    }

    pub fn with_engine_config(mut self, config: EngineConfig) -> Source {
        self.settings.config = config;
        self
    }

    /// Caps the finished rows kept (memory bound).
    pub fn with_ring_rows(mut self, rows: usize) -> Source {
        self.settings.ring_rows = rows;
        self
    }

    /// Caps the packet ring that exports read from.
    pub fn with_packet_ring(mut self, caps: RingCaps) -> Source {
        self.settings.packet_ring = caps;
        self
    }

    pub fn kind(&self) -> SourceKind {
        self.settings.kind
    }

    pub fn label(&self) -> &str {
        &self.settings.label
    }

    fn feeder(&self) -> Feeder {
        let mut feeder = Feeder::new(&self.settings);
        feeder.file_progress = self.file_progress.clone();
        feeder
    }

    /// Runs the whole input on this thread as fast as possible and returns the final
    /// snapshot (tests, benches, headless use). Deterministic for a given input.
    pub fn run_to_end(self) -> Result<Arc<Snapshot>> {
        let mut feeder = self.feeder();
        feeder.progress.speed = Speed::Max;
        feeder.kind = SourceKind::Replay;
        let result = (self.producer)(&mut feeder);
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        let snapshot = feeder.finish(error);
        result.map(|()| snapshot)
    }

    /// Starts the engine thread.
    pub fn spawn(self) -> Result<SourceHandle> {
        let (tx, snapshots) = mpsc::sync_channel(2);
        let (control, control_rx) = mpsc::channel();
        let (exports_tx, exports) = mpsc::channel();
        let mut feeder = self.feeder();
        feeder.tx = Some(tx);
        feeder.control = Some(control_rx);
        feeder.exports = Some(exports_tx);
        let kind = self.settings.kind;
        let label = self.settings.label.clone();
        let producer = self.producer;
        let thread = std::thread::Builder::new()
            .name("podwire-engine".into())
            .spawn(move || {
                feeder.publish();
                let result = producer(&mut feeder);
                let error = result.err().map(|e| format!("{e:#}"));
                feeder.finish(error);
                feeder.serve_until_stopped();
            })
            .context("starting the engine thread")?;
        Ok(SourceHandle {
            snapshots,
            exports,
            control,
            thread: Some(thread),
            kind,
            label,
        })
    }
}

/// The UI's side of a running source.
pub struct SourceHandle {
    pub snapshots: Receiver<Arc<Snapshot>>,
    /// Results of [`Control::Export`] requests, in order.
    pub exports: Receiver<ExportOutcome>,
    control: Sender<Control>,
    thread: Option<JoinHandle<()>>,
    pub kind: SourceKind,
    pub label: String,
}

impl SourceHandle {
    pub fn send(&self, message: Control) {
        let _ = self.control.send(message);
    }

    /// Asks the source to stop and waits for its thread (draining snapshots meanwhile).
    pub fn stop(mut self) {
        self.send(Control::Stop);
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() {
                while self.snapshots.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = thread.join();
        }
    }
}

/// Reads a capture (and optional cluster snapshot) to the end, in-process: the final
/// snapshot, as the TUI would show it once a replay finished.
pub fn snapshot_of_capture(path: &Path, cluster: Option<&Path>) -> Result<Arc<Snapshot>> {
    Source::replay(path, cluster, Speed::Max)?.run_to_end()
}

/// Opens the export file: the given path (replaced), or the first free numbered name.
fn open_export(target: &ExportTarget) -> Result<(std::fs::File, PathBuf)> {
    match target {
        ExportTarget::Path(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            Ok((file, path.clone()))
        }
        ExportTarget::Numbered { stem } => {
            for n in 1..=EXPORT_NAME_TRIES {
                let path = PathBuf::from(format!("{stem}-{n}.pcapng"));
                match std::fs::File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(file) => return Ok((file, path)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(e).with_context(|| format!("creating {}", path.display()));
                    }
                }
            }
            anyhow::bail!("{stem}-1.pcapng … -{EXPORT_NAME_TRIES}.pcapng all exist")
        }
    }
}
