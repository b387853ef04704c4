//! TCP connection state per flow, as far as a passive observer can tell, and handshake RTT.

use serde::Serialize;

use crate::decode::TcpMeta;
use crate::frame::TimestampNs;

/// Where a TCP connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    /// Only the initiator's SYN was seen: half-open (no answer yet, or a filtered port).
    SynSent,
    /// SYN-ACK seen, final ACK not yet: half-open on the responder's side.
    SynReceived,
    /// Handshake completed, or data seen on a connection that started before the capture.
    Established,
    /// One side sent FIN.
    Closing,
    /// Both sides sent FIN.
    Closed,
    /// A RST ended the connection (or refused it, when no handshake completed).
    Reset,
}

impl TcpState {
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::SynSent => "syn_sent",
            TcpState::SynReceived => "syn_received",
            TcpState::Established => "established",
            TcpState::Closing => "closing",
            TcpState::Closed => "closed",
            TcpState::Reset => "reset",
        }
    }
}

/// Passive TCP tracker for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TcpTracker {
    pub state: TcpState,
    /// The full three-way handshake was observed.
    pub handshake: bool,
    /// The capture joined the connection after it started (first packet was not a SYN).
    pub midstream: bool,
    /// SYN → final ACK as seen at the capture point.
    pub rtt_ns: Option<u64>,
    syn_ns: Option<TimestampNs>,
    /// Sequence number of the initiator's SYN: a SYN carrying it again is a retransmission
    /// or a copy, never a new connection.
    syn_seq: Option<u32>,
    /// Set when the handshake completes, cleared by [`TcpTracker::take_new_rtt`].
    rtt_unreported: bool,
    synack_seq: Option<u32>,
    fin_fwd: bool,
    fin_rev: bool,
}

impl TcpTracker {
    /// Starts tracking with the first packet of the flow.
    pub fn new(first: TcpMeta, ts: TimestampNs) -> TcpTracker {
        let syn = first.has(TcpMeta::SYN);
        let ack = first.has(TcpMeta::ACK);
        let mut tracker = TcpTracker {
            state: TcpState::Established,
            handshake: false,
            midstream: !syn,
            rtt_ns: None,
            syn_ns: None,
            syn_seq: None,
            rtt_unreported: false,
            synack_seq: None,
            fin_fwd: false,
            fin_rev: false,
        };
        if syn && !ack {
            tracker.state = TcpState::SynSent;
            tracker.syn_ns = Some(ts);
            tracker.syn_seq = Some(first.seq);
        } else if syn && ack {
            tracker.state = TcpState::SynReceived;
            tracker.synack_seq = Some(first.seq);
        }
        tracker.apply_teardown(true, first);
        tracker
    }

    /// Updates the state with a segment; `fwd` is true when it travels initiator → responder.
    pub fn update(&mut self, fwd: bool, meta: TcpMeta, ts: TimestampNs) {
        let syn = meta.has(TcpMeta::SYN);
        let ack = meta.has(TcpMeta::ACK);
        match self.state {
            TcpState::SynSent if syn && ack && !fwd => {
                self.state = TcpState::SynReceived;
                self.synack_seq = Some(meta.seq);
            }
            TcpState::SynReceived if fwd && ack && !syn => {
                self.state = TcpState::Established;
                if self.synack_seq.map(|s| s.wrapping_add(1)) == Some(meta.ack)
                    && let Some(syn_ns) = self.syn_ns
                {
                    self.handshake = true;
                    self.rtt_ns = Some(ts.saturating_sub(syn_ns));
                    self.rtt_unreported = true;
                }
            }
            TcpState::SynSent if !syn && fwd => {
                // Data or ACK after a SYN with the SYN-ACK missed by the capture.
                self.state = TcpState::Established;
            }
            _ => {}
        }
        self.apply_teardown(fwd, meta);
    }

    fn apply_teardown(&mut self, fwd: bool, meta: TcpMeta) {
        if meta.has(TcpMeta::RST) {
            self.state = TcpState::Reset;
            return;
        }
        if meta.has(TcpMeta::FIN) && self.state != TcpState::Reset {
            if fwd {
                self.fin_fwd = true;
            } else {
                self.fin_rev = true;
            }
            self.state = if self.fin_fwd && self.fin_rev {
                TcpState::Closed
            } else {
                TcpState::Closing
            };
        }
    }

    /// The handshake RTT, once, right after the handshake completed.
    pub fn take_new_rtt(&mut self) -> Option<u64> {
        if self.rtt_unreported {
            self.rtt_unreported = false;
            self.rtt_ns
        } else {
            None
        }
    }

    /// True when a fresh SYN on this 5-tuple must start a new connection.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, TcpState::Closed | TcpState::Reset)
    }

    /// True when `syn_seq` is the sequence number of this connection's own SYN (a late copy
    /// seen on another interface, or a retransmission): such a SYN must not start a new flow.
    pub fn is_own_syn(&self, syn_seq: u32) -> bool {
        self.syn_seq == Some(syn_seq)
    }

    /// True when the connection was refused or never answered (no handshake, ended or half-open).
    pub fn refused(&self) -> bool {
        !self.handshake && matches!(self.state, TcpState::Reset | TcpState::SynSent)
    }
}
