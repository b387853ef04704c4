//! An owned, self-contained picture of one flow for everything downstream of the engine:
//! findings, suggestions, the TUI's view-model and headless writers.
//!
//! A [`FlowSummary`] copies what a consumer needs out of a live [`Flow`] (counters, TCP
//! state, dissection result, identities and verdict), so consumers never borrow the engine
//! and can run on another thread. It is plain data: building one does no I/O.

use std::net::IpAddr;

use serde::Serialize;

use crate::decode::{TunnelKind, ipproto};
use crate::dissect::{AppInfo, Budget};
use crate::engine::{Engine, Enrichment};
use crate::flow::{DirCounters, EndReason, Endpoint, Flow, TcpTracker};
use crate::frame::TimestampNs;

#[derive(Debug, Clone, Serialize)]
pub struct FlowSummary {
    /// The engine's creation number: stable for the flow's life, unique per engine.
    pub serial: u64,
    pub proto: u8,
    /// The initiator.
    pub src: Endpoint,
    /// The responder.
    pub dst: Endpoint,
    pub fwd: DirCounters,
    pub rev: DirCounters,
    pub first_ns: TimestampNs,
    pub last_ns: TimestampNs,
    pub tunnel: Option<TunnelKind>,
    /// True for a tunnel's node-to-node carrier flow.
    pub outer: bool,
    #[serde(skip)]
    pub tcp: Option<TcpTracker>,
    pub interfaces: Vec<u32>,
    pub end: EndReason,
    pub app: AppInfo,
    /// Identities and verdict, when cluster data is loaded (boxed: 416 bytes that flows
    /// without cluster data do not carry).
    pub enrichment: Option<Box<Enrichment>>,
}

impl FlowSummary {
    pub fn new(flow: &Flow, enrichment: Option<Enrichment>) -> FlowSummary {
        FlowSummary {
            serial: flow.serial,
            proto: flow.key.proto,
            src: flow.src(),
            dst: flow.dst(),
            fwd: flow.fwd,
            rev: flow.rev,
            first_ns: flow.first_ns,
            last_ns: flow.last_ns,
            tunnel: flow.tunnel,
            outer: flow.key.outer,
            tcp: flow.tcp,
            interfaces: flow.iface_list(),
            end: flow.end,
            app: flow.app.result().clone(),
            enrichment: enrichment.map(Box::new),
        }
    }

    /// Summarises a flow with identities and verdict from the engine's cluster data.
    /// A live flow's summary: its result includes an analysis the dissector deferred (a
    /// preview that changes nothing, see `FlowDissector::preview`).
    pub fn live(flow: &Flow, enrichment: Option<Enrichment>, budget: &Budget) -> FlowSummary {
        let mut summary = FlowSummary::new(flow, enrichment);
        if let Some(app) = flow.app.preview(budget) {
            summary.app = app;
        }
        summary
    }

    pub fn enriched(engine: &mut Engine, flow: &Flow) -> FlowSummary {
        let enrichment = engine.enrich(flow);
        FlowSummary::new(flow, enrichment)
    }

    pub fn packets(&self) -> u64 {
        self.fwd.packets + self.rev.packets
    }

    pub fn bytes(&self) -> u64 {
        self.fwd.bytes + self.rev.bytes
    }

    /// Bytes of payload-carrying data are not tracked separately; a flow "carried data" when
    /// the responder answered with more than a bare handshake/refusal.
    pub fn carried_data(&self) -> bool {
        match &self.tcp {
            Some(t) => t.handshake || (t.midstream && self.packets() > 2),
            None => self.rev.packets > 0,
        }
    }

    pub fn proto_name(&self) -> std::borrow::Cow<'static, str> {
        ipproto::name(self.proto)
    }

    pub fn src_ip(&self) -> IpAddr {
        self.src.addr
    }

    pub fn dst_ip(&self) -> IpAddr {
        self.dst.addr
    }
}
