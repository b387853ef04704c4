//! Headless writers: flow records as JSON lines or a table, and capture statistics.
//!
//! The JSON-lines schema is documented in `docs/flow-records.md`; keys are only ever added,
//! never renamed. Every string here comes from typed data (addresses, enums) or has been
//! sanitized before it reached the flow, so output is safe to print to a terminal.

use std::io::{self, Write};

use serde::Serialize;

use crate::capture::ReadSummary;
use crate::decode::ipproto;
use crate::engine::{RttStats, Stats};
use crate::flow::{EndReason, Flow};

/// One flow as written by `podwire flows --format jsonl`.
#[derive(Debug, Serialize)]
pub struct FlowRecord {
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
}

#[derive(Debug, Serialize)]
pub struct TcpRecord {
    pub handshake: bool,
    pub midstream: bool,
    pub rtt_ns: Option<u64>,
}

impl FlowRecord {
    pub fn from_flow(flow: &Flow) -> FlowRecord {
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
    buf: String,
}

impl<W: Write> FlowWriter<W> {
    pub fn new(out: W, format: FlowFormat) -> FlowWriter<W> {
        FlowWriter {
            out,
            format,
            rows: 0,
            buf: String::new(),
        }
    }

    pub fn write(&mut self, flow: &Flow) -> io::Result<()> {
        match self.format {
            FlowFormat::Jsonl => {
                serde_json::to_writer(&mut self.out, &FlowRecord::from_flow(flow))?;
                self.out.write_all(b"\n")?;
            }
            FlowFormat::Table => {
                if self.rows == 0 {
                    writeln!(
                        self.out,
                        "{:<12} {:<6} {:<40} {:<40} {:<12} {:>8} {:>10} {:>8} {:>10} TUNNEL",
                        "START",
                        "PROTO",
                        "SOURCE",
                        "DESTINATION",
                        "STATE",
                        "PKTS→",
                        "BYTES→",
                        "PKTS←",
                        "BYTES←"
                    )?;
                }
                self.buf.clear();
                let src = endpoint(flow.src().addr, flow.src().port, flow.key.proto);
                let dst = endpoint(flow.dst().addr, flow.dst().port, flow.key.proto);
                let state = flow.tcp.as_ref().map_or("-", |t| t.state.as_str());
                let tunnel = match (flow.tunnel, flow.key.outer) {
                    (Some(t), true) => format!("{} (outer)", t.as_str()),
                    (Some(t), false) => t.as_str().to_string(),
                    (None, _) => "-".into(),
                };
                writeln!(
                    self.out,
                    "{:<12} {:<6} {:<40} {:<40} {:<12} {:>8} {:>10} {:>8} {:>10} {}",
                    clock(flow.first_ns),
                    ipproto::name(flow.key.proto),
                    src,
                    dst,
                    state,
                    flow.fwd.packets,
                    human_bytes(flow.fwd.bytes),
                    flow.rev.packets,
                    human_bytes(flow.rev.bytes),
                    tunnel
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
        self.out.flush()
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
