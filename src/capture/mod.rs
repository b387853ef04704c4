//! Shells that turn capture sources into [`crate::frame::RawFrame`]s.
//!
//! `file` reads pcap / pcapng / gzip-compressed captures as a stream (`feed` hands them to an
//! engine); `live` captures from
//! AF_PACKET sockets (one thread per interface, optionally inside a network namespace),
//! `filter` is the capture filter applied in those threads, `pcapng_writer` records what was
//! captured, `ring` keeps recent frames per flow for the TUI's export, and `run` wires them
//! into `podwire capture`. Everything here does I/O except `filter` and `ring`; the pure core
//! never calls into it.

pub mod feed;
pub mod file;
pub mod filter;
pub mod live;
pub mod pcapng_writer;
pub mod ring;
pub mod run;

pub use feed::EngineFeed;
pub use file::{
    CaptureError, CaptureEvent, CaptureFormat, CaptureSink, Damage, DamageKind, ReadSummary,
    read_capture, read_capture_into,
};
