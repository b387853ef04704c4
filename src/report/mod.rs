//! Headless writers: flow records as JSON lines or a table, and capture statistics.
//!
//! The JSON-lines schema is documented in `docs/flow-records.md`; keys are only ever added,
//! never renamed. Every string here comes from typed data (addresses, enums) or has been
//! sanitized before it reached the flow, so output is safe to print to a terminal.

pub mod jsonl;

use std::io::{self, Write};

use serde::Serialize;

use crate::capture::ReadSummary;
use crate::cluster::identity::Identity;
use crate::decode::ipproto;
use crate::dissect::{AppInfo, Encryption, Facts};
use crate::engine::{Enrichment, RttStats, Stats};
use crate::flow::{EndReason, Flow};
use crate::policy::Verdict;
use crate::sanitize::sanitize;

/// One flow as written by `podwire flows --format jsonl`.
#[derive(Debug, Serialize)]
pub struct FlowRecord<'a> {
    pub proto: String,
    pub src: String,
    pub src_port: u16,
    pub dst: String,
    pub dst_port: u16,
    pub packets_fwd: u64,
    pub bytes_fwd: u64,
    pub packets_rev: u64,
    pub bytes_rev: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub tunnel: Option<&'static str>,
    pub outer: bool,
    pub tcp_state: Option<&'static str>,
    pub tcp: Option<TcpRecord>,
    pub interfaces: Vec<u32>,
    pub end_reason: EndReason,
    /// `app`, `encryption`, `sni`, `facts`, `credentials`… (docs/dissectors.md).
    #[serde(flatten)]
    pub app: &'a AppInfo,
    /// Present (possibly null) on every record; filled when cluster data was given.
    pub src_identity: Option<&'a Identity>,
    pub dst_identity: Option<&'a Identity>,
    pub verdict: Option<&'a Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_target: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct TcpRecord {
    pub handshake: bool,
    pub midstream: bool,
    pub rtt_ns: Option<u64>,
}

impl<'a> FlowRecord<'a> {
    /// The record of a flow summary (same keys as [`FlowRecord::from_flow`]).
    pub fn from_summary(summary: &'a crate::summary::FlowSummary) -> FlowRecord<'a> {
        let enrichment = summary.enrichment.as_ref();
        FlowRecord {
            proto: ipproto::name(summary.proto).into_owned(),
            src: summary.src.addr.to_string(),
            src_port: summary.src.port,
            dst: summary.dst.addr.to_string(),
            dst_port: summary.dst.port,
            packets_fwd: summary.fwd.packets,
            bytes_fwd: summary.fwd.bytes,
            packets_rev: summary.rev.packets,
            bytes_rev: summary.rev.bytes,
            start_ns: summary.first_ns,
            end_ns: summary.last_ns,
            tunnel: summary.tunnel.map(|t| t.as_str()),
            outer: summary.outer,
            tcp_state: summary.tcp.as_ref().map(|t| t.state.as_str()),
            tcp: summary.tcp.as_ref().map(|t| TcpRecord {
                handshake: t.handshake,
                midstream: t.midstream,
                rtt_ns: t.rtt_ns,
            }),
            interfaces: summary.interfaces.clone(),
            end_reason: summary.end,
            app: &summary.app,
            src_identity: enrichment.map(|e| &e.src_identity),
            dst_identity: enrichment.map(|e| &e.dst_identity),
            verdict: enrichment.and_then(|e| e.verdict.as_ref()),
            verdict_target: enrichment.and_then(|e| e.verdict_target.as_deref()),
        }
    }

    pub fn from_flow(flow: &'a Flow, enrichment: Option<&'a Enrichment>) -> FlowRecord<'a> {
        let src = flow.src();
        let dst = flow.dst();
        FlowRecord {
            proto: ipproto::name(flow.key.proto).into_owned(),
            src: src.addr.to_string(),
            src_port: src.port,
            dst: dst.addr.to_string(),
            dst_port: dst.port,
            packets_fwd: flow.fwd.packets,
            bytes_fwd: flow.fwd.bytes,
            packets_rev: flow.rev.packets,
            bytes_rev: flow.rev.bytes,
            start_ns: flow.first_ns,
            end_ns: flow.last_ns,
            tunnel: flow.tunnel.map(|t| t.as_str()),
            outer: flow.key.outer,
            tcp_state: flow.tcp.as_ref().map(|t| t.state.as_str()),
            tcp: flow.tcp.as_ref().map(|t| TcpRecord {
                handshake: t.handshake,
                midstream: t.midstream,
                rtt_ns: t.rtt_ns,
            }),
            interfaces: flow.iface_list(),
            end_reason: flow.end,
            app: flow.app.result(),
            src_identity: enrichment.map(|e| &e.src_identity),
            dst_identity: enrichment.map(|e| &e.dst_identity),
            verdict: enrichment.and_then(|e| e.verdict.as_ref()),
            verdict_target: enrichment.and_then(|e| e.verdict_target.as_deref()),
        }
    }
}

/// Output format of `podwire flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowFormat {
    Table,
    Jsonl,
}

/// Streams flow records; the table header is written before the first row.
pub struct FlowWriter<W: Write> {
    out: W,
    format: FlowFormat,
    rows: u64,
    /// JSON lines are assembled here and written in chunks of [`JSONL_CHUNK`] bytes: one copy
    /// into this buffer, none through a `BufWriter` (a chunk that large passes straight
    /// through one).
    scratch: Vec<u8>,
}

impl<W: Write> FlowWriter<W> {
    pub fn new(out: W, format: FlowFormat) -> FlowWriter<W> {
        FlowWriter {
            out,
            format,
            rows: 0,
            scratch: Vec::new(),
        }
    }

    pub fn write(&mut self, flow: &Flow, enrichment: Option<&Enrichment>) -> io::Result<()> {
        match self.format {
            FlowFormat::Jsonl => {
                jsonl::push_flow_record(&mut self.scratch, flow, enrichment);
                if self.scratch.len() >= JSONL_CHUNK {
                    self.out.write_all(&self.scratch)?;
                    self.scratch.clear();
                }
            }
            FlowFormat::Table => {
                if self.rows == 0 {
                    writeln!(
                        self.out,
                        "{:<12} {:<5} {:<32} {:<38} {:<9} {:<10} {:<28} {:<12} {:>7} {:>9} VERDICT",
                        "START",
                        "PROTO",
                        "SOURCE",
                        "DESTINATION",
                        "APP",
                        "ENCRYPTION",
                        "SNI/HOST",
                        "STATE",
                        "PKTS",
                        "BYTES"
                    )?;
                }
                let src = flow.src();
                let dst = flow.dst();
                let has_ports =
                    matches!(flow.key.proto, ipproto::TCP | ipproto::UDP | ipproto::SCTP);
                let source = match enrichment {
                    Some(e) => identity_label(&e.src_identity, src.addr),
                    None => src.addr.to_string(),
                };
                let mut destination = match enrichment {
                    Some(e) => identity_label(&e.dst_identity, dst.addr),
                    None => endpoint(dst.addr, 0, 0),
                };
                if has_ports {
                    destination = format!("{destination}:{}", dst.port);
                }
                let state = match (&flow.tcp, flow.tunnel, flow.key.outer) {
                    (_, Some(t), true) => format!("{} outer", t.as_str()),
                    (Some(t), _, _) => t.state.as_str().to_string(),
                    (None, _, _) => "-".into(),
                };
                let info = flow.app.result();
                let verdict = match enrichment.and_then(|e| e.verdict.as_ref()) {
                    Some(v) if v.allowed => "allowed",
                    Some(_) => "DENIED",
                    None => "-",
                };
                writeln!(
                    self.out,
                    "{:<12} {:<5} {:<32} {:<38} {:<9} {:<10} {:<28} {:<12} {:>7} {:>9} {}",
                    clock(flow.first_ns),
                    ipproto::name(flow.key.proto),
                    clip(&source, 32),
                    clip(&destination, 38),
                    info.app.name(),
                    encryption_label(info),
                    clip(&server_name(info).unwrap_or_else(|| "-".into()), 28),
                    state,
                    flow.packets(),
                    human_bytes(flow.bytes()),
                    verdict
                )?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if !self.scratch.is_empty() {
            self.out.write_all(&self.scratch)?;
            self.scratch.clear();
        }
        self.out.flush()
    }
}

/// Bytes of JSON lines gathered before one write.
const JSONL_CHUNK: usize = 64 << 10;

impl<W: Write> Drop for FlowWriter<W> {
    /// Like `BufWriter`: what is still gathered is written, errors ignored (call `flush` to
    /// see them).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

fn endpoint(addr: std::net::IpAddr, port: u16, proto: u8) -> String {
    let has_ports = matches!(proto, ipproto::TCP | ipproto::UDP | ipproto::SCTP);
    match (addr, has_ports) {
        (std::net::IpAddr::V6(v6), true) => format!("[{v6}]:{port}"),
        (addr, true) => format!("{addr}:{port}"),
        (addr, false) => addr.to_string(),
    }
}

/// UTC time of day with milliseconds, from ns since the epoch.
pub fn clock(ts_ns: u64) -> String {
    let secs = ts_ns / 1_000_000_000;
    let millis = (ts_ns / 1_000_000) % 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        millis
    )
}

/// Bytes with a binary unit (B, KiB, MiB, GiB).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Everything `podwire stats` reports.
#[derive(Debug, Serialize)]
pub struct StatsReport<'a> {
    pub file: &'a str,
    pub capture: &'a ReadSummary,
    pub stats: &'a Stats,
    pub duration_ns: u64,
    pub handshake_rtt_us: Option<RttSummary>,
}

#[derive(Debug, Serialize)]
pub struct RttSummary {
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl RttSummary {
    pub fn from(rtt: &RttStats) -> Option<RttSummary> {
        let h = &rtt.overall;
        (!h.is_empty()).then(|| RttSummary {
            samples: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

impl StatsReport<'_> {
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = self.stats;
        writeln!(out, "file          {}", self.file)?;
        let format = match self.capture.format {
            Some(crate::capture::CaptureFormat::Pcap) => "pcap",
            Some(crate::capture::CaptureFormat::PcapNg) => "pcapng",
            None => "unknown",
        };
        writeln!(
            out,
            "format        {}{}",
            format,
            if self.capture.gzip { " (gzip)" } else { "" }
        )?;
        writeln!(out, "packets       {}", s.frames)?;
        writeln!(out, "bytes         {} ({})", s.bytes, human_bytes(s.bytes))?;
        writeln!(out, "duration      {:.3} s", self.duration_ns as f64 / 1e9)?;
        let links: Vec<String> = s
            .link_types
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        writeln!(
            out,
            "link types    {}",
            if links.is_empty() {
                "-".into()
            } else {
                links.join(", ")
            }
        )?;
        writeln!(out, "interfaces    {}", s.interfaces.len())?;
        for (i, iface) in s.interfaces.iter().enumerate() {
            let info = iface.info.as_ref();
            let name = info
                .and_then(|i| i.name.clone())
                .unwrap_or_else(|| "-".into());
            let ifindex = info
                .and_then(|i| i.ifindex)
                .map(|x| format!(" ifindex {x}"))
                .unwrap_or_default();
            writeln!(
                out,
                "  [{i}] {name}{ifindex}: {} packets, {}, {} duplicates",
                iface.packets,
                human_bytes(iface.bytes),
                iface.duplicates
            )?;
        }
        writeln!(
            out,
            "duplicates    {} removed (same packet on several interfaces)",
            s.duplicates_removed
        )?;
        writeln!(out, "tunnelled     {} packets", s.tunnelled_packets)?;
        let errors: u64 = s.decode_errors.values().sum();
        writeln!(out, "not decoded   {errors}")?;
        for (kind, count) in &s.decode_errors {
            writeln!(out, "  {kind}: {count}")?;
        }
        writeln!(
            out,
            "fragments     {} later fragments without their first",
            s.unattributed_fragments
        )?;
        let total_flows: u64 = s.flows_by_proto.values().sum();
        writeln!(out, "flows         {total_flows}")?;
        for (proto, count) in &s.flows_by_proto {
            writeln!(out, "  {proto}: {count}")?;
        }
        writeln!(
            out,
            "flow table    peak {} live, {} expired idle, {} evicted (table full), {} ended by port reuse",
            s.table.peak_live, s.table.expired, s.table.evicted, s.table.reused
        )?;
        if let Some(rtt) = &self.handshake_rtt_us {
            writeln!(
                out,
                "tcp rtt       {} handshakes: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
                rtt.samples, rtt.p50, rtt.p90, rtt.p99, rtt.max
            )?;
        }
        if self.capture.skipped_blocks > 0 {
            writeln!(
                out,
                "skipped       {} pcapng blocks",
                self.capture.skipped_blocks
            )?;
        }
        if let Some(damage) = &self.capture.damage {
            writeln!(out, "DAMAGED       {}", damage.message)?;
        }
        Ok(())
    }
}

/// The SNI, or the HTTP Host header, already sanitized by the dissectors.
pub fn server_name(info: &AppInfo) -> Option<String> {
    if let Some(sni) = &info.sni {
        return Some(sni.clone());
    }
    match &info.facts {
        Some(Facts::Http(http)) => http.host.clone(),
        _ => None,
    }
}

/// Plaintext is shouted: it is what the user is looking for.
pub fn encryption_label(info: &AppInfo) -> &'static str {
    match info.encryption {
        Encryption::Encrypted => "encrypted",
        Encryption::Plaintext => "PLAINTEXT",
        Encryption::Unknown => "unknown",
    }
}

/// A short, sanitized name for an identity (`ns/pod`, `svc:ns/name`, `node:name`, a DNS name).
pub fn identity_label(identity: &Identity, addr: std::net::IpAddr) -> String {
    let label = match identity {
        Identity::Pod {
            namespace, name, ..
        } => format!("{namespace}/{name}"),
        Identity::HostNetwork { node, pod, .. } => match pod {
            Some(p) => format!("{}/{} (host)", p.namespace, p.name),
            None => format!("node:{node}"),
        },
        Identity::Service {
            namespace, name, ..
        } => format!("svc:{namespace}/{name}"),
        Identity::Node { name, .. } => format!("node:{name}"),
        Identity::ApiServer { .. } => "kubernetes-api".into(),
        Identity::ClusterDns { pod, .. } => match pod {
            Some(p) => format!("{}/{}", p.namespace, p.name),
            None => "cluster-dns".into(),
        },
        Identity::CloudMetadata { .. } => format!("cloud-metadata({addr})"),
        Identity::External { name, .. } => match name {
            Some(n) => format!("{n}({addr})"),
            None => addr.to_string(),
        },
        Identity::Unknown { .. } => addr.to_string(),
    };
    sanitize(&label)
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
