//! Shells that turn capture sources into [`crate::frame::RawFrame`]s.
//!
//! `file` reads pcap / pcapng / gzip-compressed captures as a stream. Everything here does
//! I/O; the pure core never calls into it.

pub mod file;

pub use file::{
    CaptureError, CaptureEvent, CaptureFormat, Damage, DamageKind, ReadSummary, read_capture,
};
