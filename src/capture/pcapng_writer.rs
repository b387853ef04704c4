//! pcapng writer for live captures (`podwire capture --write FILE.pcapng`), with rotation.
//!
//! [`PcapngWriter`] serialises little-endian pcapng blocks to any `Write`: one Section Header
//! Block (with `shb_comment`s — podwire puts the cluster identities known at capture time
//! there — `shb_os` and `shb_userappl`), one Interface Description Block per interface
//! (`if_name`, nanosecond `if_tsresol`, no snap length), Enhanced Packet Blocks, and at the end
//! Interface Statistics Blocks (`isb_ifrecv`, `isb_ifdrop`, `isb_usrdeliv`). Guarantees: the
//! interface numbers are the same in every file of a rotation, because every file starts with
//! the IDBs of all interfaces known so far in the order they were declared and later
//! interfaces are appended in that order; every block is whole (the writer never emits a partial
//! block unless the underlying `Write` fails). Wireshark and tshark read the output.
//!
//! [`RotatingPcapng`] (the file-opening shell) starts a new file when the current one reaches
//! `--rotate-size` bytes or spans `--rotate-seconds` of packet time; the files are named
//! `STEM-00001.EXT`, `STEM-00002.EXT`, … (without rotation the path is used as given).

#![allow(clippy::disallowed_methods)] // a shell: creates the output files

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::frame::{IfaceId, TimestampNs};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const ISB: u32 = 0x0000_0005;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// Counters written into an Interface Statistics Block when a file is closed.
#[derive(Debug, Clone, Copy, Default)]
pub struct InterfaceTotals {
    /// Packets the socket received (`isb_ifrecv`).
    pub received: u64,
    /// Packets lost before podwire saw them: kernel drops plus podwire's queue drops
    /// (`isb_ifdrop`).
    pub dropped: u64,
    /// Packets written to this file (`isb_usrdeliv`).
    pub delivered: u64,
}

/// Writes one pcapng section to `out`.
pub struct PcapngWriter<W: Write> {
    out: W,
    written: u64,
    interfaces: Vec<(String, u32)>,
    per_iface_packets: Vec<u64>,
    first_ts: Option<TimestampNs>,
    last_ts: TimestampNs,
    block: Vec<u8>,
}

impl<W: Write> PcapngWriter<W> {
    /// Starts a section: writes the SHB with the given comments.
    pub fn new(out: W, comments: &[String]) -> io::Result<PcapngWriter<W>> {
        let mut w = PcapngWriter {
            out,
            written: 0,
            interfaces: Vec::new(),
            per_iface_packets: Vec::new(),
            first_ts: None,
            last_ts: 0,
            block: Vec::with_capacity(1 << 16),
        };
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown
        for comment in comments {
            option(&mut body, 1, comment.as_bytes());
        }
        option(&mut body, 3, b"Linux");
        let app = concat!("podwire ", env!("CARGO_PKG_VERSION"));
        option(&mut body, 4, app.as_bytes());
        end_of_options(&mut body);
        w.block(SHB, &body)?;
        Ok(w)
    }

    /// Declares the next interface and returns its number in this section.
    pub fn add_interface(&mut self, name: &str, link: u32) -> io::Result<IfaceId> {
        let id = self.interfaces.len() as IfaceId;
        let mut body = Vec::new();
        body.extend_from_slice(&(link as u16).to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes()); // no snap length
        option(&mut body, 2, name.as_bytes()); // if_name
        option(&mut body, 9, &[9]); // if_tsresol: 10^-9 s
        end_of_options(&mut body);
        self.block(IDB, &body)?;
        self.interfaces.push((name.to_string(), link));
        self.per_iface_packets.push(0);
        Ok(id)
    }

    /// Interfaces declared in this section, by id: (name, link type).
    pub fn interfaces(&self) -> &[(String, u32)] {
        &self.interfaces
    }

    /// Writes one packet as an Enhanced Packet Block.
    pub fn packet(
        &mut self,
        iface: IfaceId,
        ts_ns: TimestampNs,
        orig_len: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let Some(count) = self.per_iface_packets.get_mut(iface as usize) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pcapng packet on undeclared interface {iface}"),
            ));
        };
        *count += 1;
        self.first_ts.get_or_insert(ts_ns);
        self.last_ts = self.last_ts.max(ts_ns);
        let caplen = data.len() as u32;
        let padded = data.len().next_multiple_of(4);
        let total = 12 + 20 + padded + 4;
        self.block.clear();
        self.block.extend_from_slice(&EPB.to_le_bytes());
        self.block.extend_from_slice(&(total as u32).to_le_bytes());
        self.block.extend_from_slice(&iface.to_le_bytes());
        self.block
            .extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        self.block.extend_from_slice(&(ts_ns as u32).to_le_bytes());
        self.block.extend_from_slice(&caplen.to_le_bytes());
        self.block
            .extend_from_slice(&orig_len.max(caplen).to_le_bytes());
        self.block.extend_from_slice(data);
        self.block.resize(12 + 20 + padded, 0);
        self.block.extend_from_slice(&(total as u32).to_le_bytes());
        self.out.write_all(&self.block)?;
        self.written += total as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Packet time of the first packet in this section.
    pub fn first_ts(&self) -> Option<TimestampNs> {
        self.first_ts
    }

    /// Writes one Interface Statistics Block per interface (at `ts_ns`) and flushes.
    /// `totals[id]` gives the counters; missing entries write only `isb_usrdeliv`.
    pub fn finish(mut self, ts_ns: TimestampNs, totals: &[InterfaceTotals]) -> io::Result<W> {
        for id in 0..self.interfaces.len() {
            let mut body = Vec::new();
            body.extend_from_slice(&(id as u32).to_le_bytes());
            body.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
            body.extend_from_slice(&(ts_ns as u32).to_le_bytes());
            if let Some(start) = self.first_ts {
                option(&mut body, 2, &ts_pair(start)); // isb_starttime
                option(&mut body, 3, &ts_pair(self.last_ts.max(start))); // isb_endtime
            }
            if let Some(t) = totals.get(id) {
                option(&mut body, 4, &t.received.to_le_bytes()); // isb_ifrecv
                option(&mut body, 5, &t.dropped.to_le_bytes()); // isb_ifdrop
            }
            option(&mut body, 8, &self.per_iface_packets[id].to_le_bytes()); // isb_usrdeliv
            end_of_options(&mut body);
            self.block(ISB, &body)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn block(&mut self, kind: u32, body: &[u8]) -> io::Result<()> {
        let total = (12 + body.len()) as u32;
        self.out.write_all(&kind.to_le_bytes())?;
        self.out.write_all(&total.to_le_bytes())?;
        self.out.write_all(body)?;
        self.out.write_all(&total.to_le_bytes())?;
        self.written += u64::from(total);
        Ok(())
    }
}

/// A timestamp as two 32-bit halves (high, low) in the interface's resolution (ns).
fn ts_pair(ts: TimestampNs) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&((ts >> 32) as u32).to_le_bytes());
    b[4..].copy_from_slice(&(ts as u32).to_le_bytes());
    b
}

fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    // Option values are at most 65535 bytes; longer comments are cut at a char boundary.
    let mut len = value.len().min(65_532);
    if let Ok(s) = std::str::from_utf8(value) {
        while !s.is_char_boundary(len) {
            len -= 1;
        }
    }
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(len as u16).to_le_bytes());
    body.extend_from_slice(&value[..len]);
    body.resize(body.len().next_multiple_of(4), 0);
}

fn end_of_options(body: &mut Vec<u8>) {
    body.extend_from_slice(&[0, 0, 0, 0]);
}

/// Where and when to rotate.
#[derive(Debug, Clone)]
pub struct RotationConfig {
    pub path: PathBuf,
    /// Start a new file once the current one has this many bytes.
    pub max_bytes: Option<u64>,
    /// Start a new file once the current one spans this much packet time.
    pub max_ns: Option<u64>,
}

impl RotationConfig {
    fn rotates(&self) -> bool {
        self.max_bytes.is_some() || self.max_ns.is_some()
    }

    /// The name of file number `n` (1-based).
    pub fn file_name(&self, n: u32) -> PathBuf {
        if !self.rotates() {
            return self.path.clone();
        }
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "capture".into());
        let ext = self
            .path
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pcapng".into());
        self.path.with_file_name(format!("{stem}-{n:05}.{ext}"))
    }
}

/// A pcapng sink that rotates files by size or packet time.
pub struct RotatingPcapng {
    config: RotationConfig,
    comments: Vec<String>,
    interfaces: Vec<(String, u32)>,
    current: Option<PcapngWriter<BufWriter<File>>>,
    file_number: u32,
    files: Vec<PathBuf>,
    totals: Vec<InterfaceTotals>,
}

impl RotatingPcapng {
    /// Creates the first file right away, so a bad path fails before capture starts.
    pub fn create(config: RotationConfig, comments: Vec<String>) -> io::Result<RotatingPcapng> {
        let mut sink = RotatingPcapng {
            config,
            comments,
            interfaces: Vec::new(),
            current: None,
            file_number: 0,
            files: Vec::new(),
            totals: Vec::new(),
        };
        sink.open_next()?;
        Ok(sink)
    }

    fn open_next(&mut self) -> io::Result<()> {
        self.file_number += 1;
        let path = self.config.file_name(self.file_number);
        let file = File::create(&path).map_err(|e| with_path(e, &path))?;
        let mut writer =
            PcapngWriter::new(BufWriter::with_capacity(1 << 20, file), &self.comments)?;
        for (name, link) in &self.interfaces {
            writer.add_interface(name, *link)?;
        }
        self.current = Some(writer);
        self.files.push(path);
        Ok(())
    }

    /// Declares an interface in the current and all later files; returns its number, which
    /// is the same in every file.
    pub fn add_interface(&mut self, name: &str, link: u32) -> io::Result<IfaceId> {
        let id = self.interfaces.len() as IfaceId;
        if let Some(w) = self.current.as_mut() {
            w.add_interface(name, link)?;
        }
        self.interfaces.push((name.to_string(), link));
        Ok(id)
    }

    /// Counters written into the statistics blocks of the next file closed (by file id).
    pub fn set_totals(&mut self, totals: Vec<InterfaceTotals>) {
        self.totals = totals;
    }

    /// Writes a packet, rotating first when the current file is full or old enough.
    pub fn packet(
        &mut self,
        iface: IfaceId,
        ts_ns: TimestampNs,
        orig_len: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let due = self.current.as_ref().is_some_and(|w| {
            let size_due = self.config.max_bytes.is_some_and(|max| w.written() >= max);
            let time_due = self
                .config
                .max_ns
                .zip(w.first_ts())
                .is_some_and(|(max, first)| ts_ns.saturating_sub(first) >= max);
            size_due || time_due
        });
        if due {
            self.close_current(ts_ns)?;
            self.open_next()?;
        }
        match self.current.as_mut() {
            Some(w) => w.packet(iface, ts_ns, orig_len, data),
            None => Ok(()),
        }
    }

    fn close_current(&mut self, ts_ns: TimestampNs) -> io::Result<()> {
        if let Some(w) = self.current.take() {
            let mut out = w.finish(ts_ns, &self.totals)?;
            out.flush()?;
        }
        Ok(())
    }

    /// Flushes buffered packets to the current file.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.current.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Closes the current file (with statistics blocks) and returns every file written.
    pub fn finish(mut self, ts_ns: TimestampNs) -> io::Result<Vec<PathBuf>> {
        self.close_current(ts_ns)?;
        Ok(self.files)
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_and_parse_back() {
        let mut w = PcapngWriter::new(Vec::new(), &["pods: a/b 10.0.0.1".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.add_interface("eth0", 1).ok(), Some(0));
        assert_eq!(w.add_interface("tunl0", 101).ok(), Some(1));
        w.packet(0, 1_700_000_000_123_456_789, 60, &[0xaa; 42])
            .unwrap_or_else(|e| panic!("{e}"));
        w.packet(1, 1_700_000_000_223_456_789, 21, &[0x45; 21])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(w.packet(7, 0, 1, &[0]).is_err());
        let bytes = w
            .finish(1_700_000_001_000_000_000, &[InterfaceTotals::default()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes.len() % 4, 0);
        let mut kinds = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let kind = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            assert_eq!(len % 4, 0);
            let trailer =
                u32::from_le_bytes([rest[len - 4], rest[len - 3], rest[len - 2], rest[len - 1]])
                    as usize;
            assert_eq!(len, trailer);
            kinds.push(kind);
            rest = &rest[len..];
        }
        assert_eq!(kinds, vec![SHB, IDB, IDB, EPB, EPB, ISB, ISB]);
    }

    #[test]
    fn rotated_names() {
        let c = RotationConfig {
            path: "/tmp/x/cap.pcapng".into(),
            max_bytes: Some(1),
            max_ns: None,
        };
        assert_eq!(c.file_name(3), PathBuf::from("/tmp/x/cap-00003.pcapng"));
        let plain = RotationConfig {
            max_bytes: None,
            ..c
        };
        assert_eq!(plain.file_name(3), PathBuf::from("/tmp/x/cap.pcapng"));
    }
}
