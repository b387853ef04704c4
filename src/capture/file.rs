//! Streaming reader for pcap (µs and ns, either byte order), pcapng (several interfaces,
//! per-interface link types and timestamp resolutions, EPB/SPB/OPB, comments) and their
//! gzip-compressed forms.
//!
//! A [`CaptureSink`] receives interfaces, comments and frames in file order; pcap records that
//! lie whole in the read buffer arrive as one run, so the engine can work ahead on them.
//!
//! Guarantees: memory stays bounded by the largest record (capped at [`MAX_RECORD_BYTES`]),
//! never by the file's size. A truncated or corrupt file yields every frame before the damage
//! and a [`Damage`] saying what happened and at which byte offset (of the decompressed
//! stream for gzip input); reading never panics and never loops without progress.

#![allow(clippy::disallowed_methods)] // a shell: reads files

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pcap_parser::pcap::{
    LegacyPcapBlock, parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified,
};
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};

use crate::engine::InterfaceInfo;
use crate::frame::{IfaceId, RawFrame};

/// Initial read buffer.
const BUFFER_BYTES: usize = 256 << 10;
/// A record (pcap packet or pcapng block) larger than this is treated as corruption.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    Pcap,
    PcapNg,
}

/// Most frames handed over in one [`CaptureSink::frames`] call.
const FRAMES_PER_RUN: usize = 512;

/// Receives what a capture holds, in file order. Any `FnMut(CaptureEvent)` closure is one.
pub trait CaptureSink {
    fn event(&mut self, event: CaptureEvent<'_>);

    /// Consecutive frames, all valid at once (pcap records that lie whole in the read
    /// buffer), so a consumer can work ahead on later frames. By default they go to
    /// [`CaptureSink::event`] one by one.
    fn frames(&mut self, frames: &[RawFrame<'_>]) {
        for &frame in frames {
            self.event(CaptureEvent::Frame(frame));
        }
    }
}

impl<F: FnMut(CaptureEvent<'_>)> CaptureSink for F {
    fn event(&mut self, event: CaptureEvent<'_>) {
        self(event)
    }
}

/// Something the reader hands to its caller.
#[derive(Debug)]
pub enum CaptureEvent<'a> {
    /// An interface was described (pcap: the file header; pcapng: an IDB).
    Interface(InterfaceInfo),
    /// A captured frame.
    Frame(RawFrame<'a>),
    /// A comment (pcapng `opt_comment` on a section, interface or packet).
    Comment(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DamageKind {
    /// The file ends in the middle of a record.
    Truncated,
    /// A record or block could not be parsed.
    Corrupt,
    /// Reading the file (or decompressing it) failed.
    ReadError,
}

/// Where and how a capture was damaged; everything before `offset` was read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    pub kind: DamageKind,
    /// Byte offset of the first unreadable record (in the decompressed stream for gzip).
    pub offset: u64,
    pub message: String,
}

/// What reading a capture produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReadSummary {
    pub format: Option<CaptureFormat>,
    pub gzip: bool,
    pub frames: u64,
    /// Blocks skipped: unknown pcapng block types, packets naming an undeclared interface.
    pub skipped_blocks: u64,
    pub damage: Option<Damage>,
}

/// Errors that prevent reading anything at all.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error("{path} is not a pcap or pcapng capture (unrecognised header)")]
    NotACapture { path: String },
    #[error("{path}: cannot read the capture header: {detail}")]
    BadHeader { path: String, detail: String },
}

/// Counts bytes pulled from the underlying file, for progress reporting.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Which record layout a legacy pcap uses.
#[derive(Debug, Clone, Copy)]
enum LegacyParse {
    LittleEndian,
    BigEndian,
    /// Kuznetzov's "modified" pcap: 8 more header bytes per record.
    Modified,
}

/// How a legacy pcap's records become frames (from its file header).
#[derive(Debug, Clone, Copy)]
struct LegacyFormat {
    link: u32,
    nanos: bool,
    parse: LegacyParse,
}

impl LegacyFormat {
    /// The next whole record of `data` and the bytes after it; `None` when the record is
    /// partial or damaged (the caller's `next()` path then says which).
    fn parse<'a>(&self, data: &'a [u8]) -> Option<(LegacyPcapBlock<'a>, &'a [u8])> {
        let parsed = match self.parse {
            LegacyParse::LittleEndian => parse_pcap_frame(data),
            LegacyParse::BigEndian => parse_pcap_frame_be(data),
            LegacyParse::Modified => parse_pcap_frame_modified(data),
        };
        parsed.ok().map(|(rest, record)| (record, rest))
    }

    fn frame<'a>(&self, record: &LegacyPcapBlock<'a>) -> RawFrame<'a> {
        let frac_ns = if self.nanos {
            u64::from(record.ts_usec)
        } else {
            u64::from(record.ts_usec) * 1_000
        };
        RawFrame {
            ts_ns: u64::from(record.ts_sec) * 1_000_000_000 + frac_ns,
            iface: 0,
            link: self.link,
            orig_len: record.origlen.max(record.data.len() as u32),
            data: record.data,
        }
    }
}

/// Hands the whole records at the start of `data` to the sink as one run (at most
/// [`FRAMES_PER_RUN`]); returns how many frames and bytes that was.
fn read_legacy_run(data: &[u8], format: LegacyFormat, sink: &mut dyn CaptureSink) -> (u64, usize) {
    let mut frames = Vec::with_capacity(FRAMES_PER_RUN);
    let mut rest = data;
    while frames.len() < FRAMES_PER_RUN {
        let Some((record, after)) = format.parse(rest) else {
            break;
        };
        frames.push(format.frame(&record));
        rest = after;
    }
    if !frames.is_empty() {
        sink.frames(&frames);
    }
    (frames.len() as u64, data.len() - rest.len())
}

/// Per-interface timestamp conversion for pcapng.
#[derive(Debug, Clone, Copy)]
struct TsUnit {
    /// Ticks per second.
    per_second: u64,
    offset_seconds: i64,
}

impl TsUnit {
    fn to_ns(self, ticks: u64) -> u64 {
        let per_second = u128::from(self.per_second.max(1));
        let ticks = u128::from(ticks);
        let ns =
            ticks / per_second * 1_000_000_000 + (ticks % per_second) * 1_000_000_000 / per_second;
        let offset = i128::from(self.offset_seconds) * 1_000_000_000;
        (ns as i128 + offset).clamp(0, i128::from(u64::MAX)) as u64
    }
}

struct NgInterface {
    link: u32,
    snaplen: u32,
    ts: TsUnit,
}

/// Reads a capture file, calling `on_event` for each interface, comment and frame.
///
/// `progress` (if given) receives the number of compressed-or-plain bytes read from disk so far.
pub fn read_capture(
    path: &Path,
    progress: Option<Arc<AtomicU64>>,
    mut on_event: impl FnMut(CaptureEvent<'_>),
) -> Result<ReadSummary, CaptureError> {
    read_capture_into(path, progress, &mut on_event)
}

/// [`read_capture`] for a [`CaptureSink`] that takes runs of frames at once.
pub fn read_capture_into(
    path: &Path,
    progress: Option<Arc<AtomicU64>>,
    sink: &mut dyn CaptureSink,
) -> Result<ReadSummary, CaptureError> {
    let shown = path.display().to_string();
    let mut file = File::open(path).map_err(|source| CaptureError::Open {
        path: shown.clone(),
        source,
    })?;
    let mut magic = [0u8; 2];
    let gzip = matches!(file.read(&mut magic), Ok(2) if magic == [0x1f, 0x8b]);
    let file = File::open(path).map_err(|source| CaptureError::Open {
        path: shown.clone(),
        source,
    })?;
    let counted = CountingReader {
        inner: file,
        count: progress.unwrap_or_default(),
    };
    let source: Box<dyn Read + Send> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            counted,
        )))
    } else {
        Box::new(counted)
    };
    read_stream(source, &shown, gzip, sink)
}

/// Reads a capture from any byte stream (used by `read_capture` and the fuzz target).
pub fn read_stream(
    source: Box<dyn Read + Send>,
    shown: &str,
    gzip: bool,
    sink: &mut dyn CaptureSink,
) -> Result<ReadSummary, CaptureError> {
    let mut reader = match create_reader(BUFFER_BYTES, source) {
        Ok(r) => r,
        Err(PcapError::Eof) => return Err(CaptureError::Empty { path: shown.into() }),
        Err(PcapError::HeaderNotRecognized) => {
            return Err(CaptureError::NotACapture { path: shown.into() });
        }
        Err(e) => {
            return Err(CaptureError::BadHeader {
                path: shown.into(),
                detail: format!("{e:?}"),
            });
        }
    };
    drive(reader.as_mut(), gzip, sink, &mut |_| {})
}

/// Pulls blocks from a pcap-parser reader and turns them into events until the end or damage.
fn drive(
    reader: &mut dyn PcapReaderIterator,
    gzip: bool,
    sink: &mut dyn CaptureSink,
    on_progress: &mut dyn FnMut(usize),
) -> Result<ReadSummary, CaptureError> {
    let mut summary = ReadSummary {
        format: None,
        gzip,
        frames: 0,
        skipped_blocks: 0,
        damage: None,
    };
    // Legacy pcap: set by the file header.
    let mut legacy: Option<LegacyFormat> = None;
    // pcapng state: interfaces of the current section, numbered globally across sections.
    let mut ng_ifaces: Vec<NgInterface> = Vec::new();
    let mut section_base: IfaceId = 0;
    let mut total_ifaces: IfaceId = 0;
    let mut ng_big_endian = false;
    let mut capacity = BUFFER_BYTES;
    let mut stalled_refills = 0u32;
    let mut blocks_since_progress = 0u32;

    loop {
        // Fast path: hand over every whole pcap record in the buffer at once. Anything else
        // (a partial record, damage, pcapng) goes through `next()` below.
        if let Some(format) = legacy {
            let (frames, bytes) = read_legacy_run(reader.data(), format, sink);
            if bytes > 0 {
                summary.frames += frames;
                reader.consume_noshift(bytes);
                stalled_refills = 0;
                blocks_since_progress += frames as u32;
                if blocks_since_progress >= 4096 {
                    blocks_since_progress = 0;
                    on_progress(reader.consumed());
                }
                continue;
            }
        }
        let offset_before = reader.consumed() as u64;
        match reader.next() {
            Ok((len, block)) => {
                stalled_refills = 0;
                match block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        summary.format = Some(CaptureFormat::Pcap);
                        let format = LegacyFormat {
                            // The upper bits carry FCS information (libpcap's LT_LINKTYPE mask).
                            link: header.network.0 as u32 & 0x03ff_ffff,
                            nanos: header.is_nanosecond_precision(),
                            // The same choice pcap-parser's reader makes for its records.
                            parse: if header.is_modified_format() {
                                LegacyParse::Modified
                            } else if header.is_bigendian() {
                                LegacyParse::BigEndian
                            } else {
                                LegacyParse::LittleEndian
                            },
                        };
                        legacy = Some(format);
                        total_ifaces = 1;
                        sink.event(CaptureEvent::Interface(InterfaceInfo {
                            capture_id: 0,
                            ifindex: None,
                            link: format.link,
                            name: None,
                        }));
                    }
                    PcapBlockOwned::Legacy(record) => {
                        if let Some(format) = legacy {
                            summary.frames += 1;
                            sink.event(CaptureEvent::Frame(format.frame(&record)));
                        }
                    }
                    PcapBlockOwned::NG(block) => {
                        summary.format = Some(CaptureFormat::PcapNg);
                        match block {
                            Block::SectionHeader(shb) => {
                                ng_big_endian = shb.big_endian();
                                section_base = total_ifaces;
                                ng_ifaces.clear();
                                emit_comments(&shb.options, sink);
                            }
                            Block::InterfaceDescription(idb) => {
                                let id = section_base + ng_ifaces.len() as IfaceId;
                                let ts = TsUnit {
                                    per_second: idb.ts_resolution().unwrap_or(1_000_000),
                                    offset_seconds: idb.ts_offset(),
                                };
                                let link = idb.linktype.0 as u32;
                                ng_ifaces.push(NgInterface {
                                    link,
                                    snaplen: idb.snaplen,
                                    ts,
                                });
                                total_ifaces = total_ifaces.max(id + 1);
                                let name = idb
                                    .if_name()
                                    .and_then(|r| r.ok())
                                    .map(crate::sanitize::sanitize);
                                emit_comments(&idb.options, sink);
                                sink.event(CaptureEvent::Interface(InterfaceInfo {
                                    capture_id: id,
                                    ifindex: None,
                                    link,
                                    name,
                                }));
                            }
                            Block::EnhancedPacket(epb) => match ng_ifaces.get(epb.if_id as usize) {
                                Some(iface) => {
                                    let ticks =
                                        (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                    let data =
                                        &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                                    summary.frames += 1;
                                    emit_comments(&epb.options, sink);
                                    sink.event(CaptureEvent::Frame(RawFrame {
                                        ts_ns: iface.ts.to_ns(ticks),
                                        iface: section_base + epb.if_id,
                                        link: iface.link,
                                        orig_len: epb.origlen.max(data.len() as u32),
                                        data,
                                    }));
                                }
                                None => summary.skipped_blocks += 1,
                            },
                            Block::SimplePacket(spb) => match ng_ifaces.first() {
                                Some(iface) => {
                                    let mut caplen = spb.data.len().min(spb.origlen as usize);
                                    if iface.snaplen != 0 {
                                        caplen = caplen.min(iface.snaplen as usize);
                                    }
                                    summary.frames += 1;
                                    sink.event(CaptureEvent::Frame(RawFrame {
                                        ts_ns: 0,
                                        iface: section_base,
                                        link: iface.link,
                                        orig_len: spb.origlen.max(caplen as u32),
                                        data: &spb.data[..caplen],
                                    }));
                                }
                                None => summary.skipped_blocks += 1,
                            },
                            Block::Unknown(unknown)
                                if unknown.block_type == 2 || unknown.block_type == 0x0200_0000 =>
                            {
                                // Obsolete Packet Block: parse by hand (pcap-parser has no type for it).
                                match obsolete_packet(unknown.data, ng_big_endian) {
                                    Some(opb) => match ng_ifaces.get(usize::from(opb.if_id)) {
                                        Some(iface) => {
                                            summary.frames += 1;
                                            sink.event(CaptureEvent::Frame(RawFrame {
                                                ts_ns: iface.ts.to_ns(opb.ticks),
                                                iface: section_base + IfaceId::from(opb.if_id),
                                                link: iface.link,
                                                orig_len: opb.origlen.max(opb.data.len() as u32),
                                                data: opb.data,
                                            }));
                                        }
                                        None => summary.skipped_blocks += 1,
                                    },
                                    None => summary.skipped_blocks += 1,
                                }
                            }
                            Block::Unknown(_) => summary.skipped_blocks += 1,
                            _ => {}
                        }
                    }
                }
                // No shift per block: the buffer is compacted only when a refill needs room,
                // so each byte is copied once (kernel → buffer) instead of twice.
                reader.consume_noshift(len);
                blocks_since_progress += 1;
                if blocks_since_progress >= 4096 {
                    blocks_since_progress = 0;
                    on_progress(reader.consumed());
                }
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                let before = reader.data().len();
                if let Err(e) = reader.refill() {
                    summary.damage = Some(read_damage(offset_before, &e));
                    break;
                }
                if reader.data().len() == before {
                    stalled_refills += 1;
                    if stalled_refills > 3 {
                        summary.damage = Some(truncated(offset_before, before));
                        break;
                    }
                }
            }
            Err(PcapError::BufferTooSmall) => {
                if capacity >= MAX_RECORD_BYTES {
                    summary.damage = Some(Damage {
                        kind: DamageKind::Corrupt,
                        offset: offset_before,
                        message: format!(
                            "record at byte {offset_before} claims more than {MAX_RECORD_BYTES} bytes; the rest of the file is unreadable"
                        ),
                    });
                    break;
                }
                capacity = (capacity * 4).min(MAX_RECORD_BYTES);
                reader.grow(capacity);
                if let Err(e) = reader.refill() {
                    summary.damage = Some(read_damage(offset_before, &e));
                    break;
                }
            }
            Err(PcapError::UnexpectedEof) => {
                let remaining = reader.data().len();
                summary.damage = Some(truncated(offset_before, remaining));
                break;
            }
            Err(PcapError::ReadError) => {
                summary.damage = Some(Damage {
                    kind: DamageKind::ReadError,
                    offset: offset_before,
                    message: format!(
                        "read error after byte {offset_before}{}",
                        if gzip {
                            " (corrupt or truncated gzip data)"
                        } else {
                            ""
                        }
                    ),
                });
                break;
            }
            Err(other) => {
                summary.damage = Some(Damage {
                    kind: DamageKind::Corrupt,
                    offset: offset_before,
                    message: format!(
                        "unparseable record at byte {offset_before}: {}",
                        describe(&other)
                    ),
                });
                break;
            }
        }
    }
    Ok(summary)
}

fn truncated(offset: u64, remaining: usize) -> Damage {
    Damage {
        kind: DamageKind::Truncated,
        offset,
        message: format!(
            "file ends inside the record at byte {offset} ({remaining} bytes of it present)"
        ),
    }
}

fn read_damage(offset: u64, error: &PcapError<&[u8]>) -> Damage {
    Damage {
        kind: DamageKind::ReadError,
        offset,
        message: format!("read error after byte {offset}: {}", describe(error)),
    }
}

fn describe(error: &PcapError<&[u8]>) -> String {
    match error {
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => format!("{kind:?}"),
        other => format!("{other:?}").chars().take(80).collect(),
    }
}

fn emit_comments(options: &[pcap_parser::pcapng::PcapNGOption<'_>], sink: &mut dyn CaptureSink) {
    for option in options {
        if option.code == pcap_parser::pcapng::OptionCode::Comment {
            let len = usize::from(option.len).min(option.value.len());
            sink.event(CaptureEvent::Comment(crate::sanitize::sanitize_bytes(
                &option.value[..len],
            )));
        }
    }
}

struct ObsoletePacket<'a> {
    if_id: u16,
    ticks: u64,
    origlen: u32,
    data: &'a [u8],
}

/// Body of an Obsolete Packet Block (type 2) after the block type and length.
fn obsolete_packet(body: &[u8], big_endian: bool) -> Option<ObsoletePacket<'_>> {
    let u16_at = |at: usize| -> Option<u16> {
        let b = body.get(at..at + 2)?;
        Some(if big_endian {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b = body.get(at..at + 4)?;
        let bytes = [b[0], b[1], b[2], b[3]];
        Some(if big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    };
    let if_id = u16_at(0)?;
    let ts_high = u32_at(4)?;
    let ts_low = u32_at(8)?;
    let caplen = u32_at(12)? as usize;
    let origlen = u32_at(16)?;
    let data = body.get(20..20 + caplen)?;
    Some(ObsoletePacket {
        if_id,
        ticks: (u64::from(ts_high) << 32) | u64::from(ts_low),
        origlen,
        data,
    })
}
