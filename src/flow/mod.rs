//! Bidirectional flows: the canonical key, per-flow counters and TCP state.
//!
//! A [`FlowKey`] is symmetric: both directions of a conversation map to the same key,
//! ordered as tshark's oracle orders endpoints (address bytes, then port). The initiator
//! is recorded separately on the [`Flow`]. Everything here is pure and allocation-free
//! per packet.

mod dedup;
mod frag;
mod store;
mod table;
mod tcp;

use std::net::IpAddr;

use serde::Serialize;

pub use dedup::{DedupVerdict, Deduplicator};
pub use frag::FragmentTracker;
pub use table::{FlowTable, FlowTableConfig, TableCounters};
pub use tcp::{TcpState, TcpTracker};

use crate::decode::{TunnelKind, ipproto};
use crate::dissect::{FlowDissector, Transport};
use crate::frame::{IfaceId, TimestampNs};

/// One side of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

/// Symmetric flow identity: protocol plus the two endpoints in canonical order (`a` ≤ `b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub proto: u8,
    pub a: Endpoint,
    pub b: Endpoint,
    /// True for a tunnel's carrier (node-to-node) flow, so it never merges with a pod flow.
    pub outer: bool,
}

impl FlowKey {
    /// Builds the canonical key for a packet from `src` to `dst`; the flag says whether the
    /// packet travels from `a` to `b`.
    pub fn from_packet(proto: u8, src: Endpoint, dst: Endpoint, outer: bool) -> (FlowKey, bool) {
        // Endpoint's derived order (address, then port) is the oracle's: IPv4 and IPv6
        // addresses compare like their network-order bytes.
        if src <= dst {
            (
                FlowKey {
                    proto,
                    a: src,
                    b: dst,
                    outer,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    proto,
                    a: dst,
                    b: src,
                    outer,
                },
                false,
            )
        }
    }
}

/// Packets and bytes in one direction. Bytes are original frame lengths, as Wireshark counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// Why a flow left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Still in the table when the input ended.
    Active,
    /// No packet for longer than the idle timeout.
    Idle,
    /// Pushed out because the table was full.
    Evicted,
    /// A new connection reused the 5-tuple after this one closed.
    Reused,
}

impl EndReason {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Active => "active",
            EndReason::Idle => "idle",
            EndReason::Evicted => "evicted",
            EndReason::Reused => "reused",
        }
    }
}

/// A bidirectional conversation.
pub struct Flow {
    pub key: FlowKey,
    /// Monotonic creation number: a deterministic tie-breaker and stable handle.
    pub serial: u64,
    /// True when endpoint `a` of the key initiated the flow.
    pub initiator_is_a: bool,
    pub first_ns: TimestampNs,
    pub last_ns: TimestampNs,
    /// Initiator → responder.
    pub fwd: DirCounters,
    /// Responder → initiator.
    pub rev: DirCounters,
    pub tcp: Option<TcpTracker>,
    pub tunnel: Option<TunnelKind>,
    /// Bit i set: seen on interface i (interfaces ≥ 63 share bit 63).
    pub ifaces: u64,
    pub end: EndReason,
    /// What the flow speaks and whether it is encrypted (16 bytes until payload arrives).
    pub app: FlowDissector,
}

impl Flow {
    pub fn new(key: FlowKey, serial: u64, initiator_is_a: bool, ts: TimestampNs) -> Flow {
        let transport = match key.proto {
            ipproto::TCP => Transport::Tcp,
            ipproto::UDP => Transport::Udp,
            ipproto::SCTP => Transport::Sctp,
            other => Transport::Other(other),
        };
        let (initiator, responder) = if initiator_is_a {
            (key.a, key.b)
        } else {
            (key.b, key.a)
        };
        Flow {
            app: FlowDissector::new(transport, initiator.port, responder.port),
            key,
            serial,
            initiator_is_a,
            first_ns: ts,
            last_ns: ts,
            fwd: DirCounters::default(),
            rev: DirCounters::default(),
            tcp: None,
            tunnel: None,
            ifaces: 0,
            end: EndReason::Active,
        }
    }

    /// The initiator's endpoint.
    pub fn src(&self) -> Endpoint {
        if self.initiator_is_a {
            self.key.a
        } else {
            self.key.b
        }
    }

    /// The responder's endpoint.
    pub fn dst(&self) -> Endpoint {
        if self.initiator_is_a {
            self.key.b
        } else {
            self.key.a
        }
    }

    pub fn packets(&self) -> u64 {
        self.fwd.packets + self.rev.packets
    }

    pub fn bytes(&self) -> u64 {
        self.fwd.bytes + self.rev.bytes
    }

    /// Interface numbers the flow was seen on.
    pub fn iface_list(&self) -> Vec<IfaceId> {
        (0..64).filter(|i| self.ifaces & (1u64 << i) != 0).collect()
    }
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("key", &self.key)
            .field("serial", &self.serial)
            .field("initiator_is_a", &self.initiator_is_a)
            .field("first_ns", &self.first_ns)
            .field("last_ns", &self.last_ns)
            .field("fwd", &self.fwd)
            .field("rev", &self.rev)
            .field("tcp", &self.tcp)
            .field("tunnel", &self.tunnel)
            .field("end", &self.end)
            .field("app", &self.app.result().app)
            .finish()
    }
}

/// Bit for an interface in [`Flow::ifaces`].
pub fn iface_bit(iface: IfaceId) -> u64 {
    1u64 << iface.min(63)
}

#[cfg(test)]
mod tests;
