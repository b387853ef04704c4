//! Pure, zero-copy decoding of captured frames down to the innermost IP flow.
//!
//! [`decode`] takes a frame's bytes and link type and returns the innermost IP + transport
//! header it could read (the pod flow), the outermost tunnel carrier (the node-to-node flow)
//! when the packet was encapsulated, and the tunnel kind. It never allocates, never panics
//! on any input, and reports every failure as a [`DecodeError`] kind the caller counts.
//!
//! Supported link layers: Ethernet (with 802.1Q/802.1ad/QinQ tags, 802.3 LLC/SNAP), Linux
//! cooked v1 and v2, raw IPv4/IPv6, BSD NULL and LOOP, PPP, PPP-in-HDLC, Cisco HDLC, PPPoE,
//! 802.11 data frames (plain, radiotap, PPI). IP layers use etherparse's lax slicers (IPv4
//! options, IPv6 extension headers, truncated captures). Tunnels: VXLAN (UDP 4789 and
//! Flannel's 8472), Geneve (6081), IP-in-IP / 6in4 / 4in6 / 6in6, GRE (incl. transparent
//! Ethernet bridging and ERSPAN), MPLS, PPPoE.

mod link;
mod net;

use std::net::IpAddr;

pub use net::decode_ip;

use crate::frame::linktype;

/// How deeply tunnels may nest before decoding stops (a bound against crafted input).
pub const MAX_TUNNEL_DEPTH: u8 = 4;

/// IP protocol numbers podwire names.
pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const ICMPV6: u8 = 58;
    pub const PIM: u8 = 103;
    pub const SCTP: u8 = 132;

    /// The lowercase name used in output, or the number as a string.
    pub fn name(proto: u8) -> std::borrow::Cow<'static, str> {
        match known_name(proto) {
            Some(name) => name.into(),
            None => proto.to_string().into(),
        }
    }

    /// The lowercase name of a protocol that has one in output.
    pub fn known_name(proto: u8) -> Option<&'static str> {
        match proto {
            TCP => Some("tcp"),
            UDP => Some("udp"),
            ICMP => Some("icmp"),
            ICMPV6 => Some("icmpv6"),
            SCTP => Some("sctp"),
            _ => None,
        }
    }
}

/// The encapsulation a pod flow was carried in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKind {
    Vxlan,
    Geneve,
    /// IPv4 in IPv4 (Calico IPIP).
    Ipip,
    /// IPv6 in IPv4.
    #[serde(rename = "6in4")]
    SixInFour,
    /// IPv4 in IPv6.
    #[serde(rename = "4in6")]
    FourInSix,
    /// IPv6 in IPv6.
    #[serde(rename = "6in6")]
    SixInSix,
    Gre,
    Erspan,
    Mpls,
    Pppoe,
    Teredo,
    L2tp,
    /// IPsec ESP in UDP (NAT traversal): an encrypted node-to-node tunnel.
    EspInUdp,
    PimRegister,
    Nsh,
    VxlanGpe,
    Lisp,
}

impl TunnelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Ipip => "ipip",
            TunnelKind::SixInFour => "6in4",
            TunnelKind::FourInSix => "4in6",
            TunnelKind::SixInSix => "6in6",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan => "erspan",
            TunnelKind::Mpls => "mpls",
            TunnelKind::Pppoe => "pppoe",
            TunnelKind::Teredo => "teredo",
            TunnelKind::L2tp => "l2tp",
            TunnelKind::EspInUdp => "esp-in-udp",
            TunnelKind::PimRegister => "pim-register",
            TunnelKind::Nsh => "nsh",
            TunnelKind::VxlanGpe => "vxlan-gpe",
            TunnelKind::Lisp => "lisp",
        }
    }
}

/// TCP header facts the flow table needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpMeta {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

impl TcpMeta {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Where a packet sits in IP fragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fragment {
    /// Not fragmented.
    #[default]
    None,
    /// First fragment (offset 0, more fragments follow): carries the transport header.
    First { id: u32 },
    /// A later fragment: no transport header; the flow is found from the first fragment.
    Later { id: u32 },
}

/// One IP packet's addressing and transport header, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Present for TCP segments whose flags could be read.
    pub tcp: Option<TcpMeta>,
    /// Transport payload as captured (possibly cut short by the snap length).
    pub payload: &'a [u8],
    pub fragment: Fragment,
}

/// The result of decoding one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The innermost IP packet (the pod flow when tunnelled).
    pub inner: Packet<'a>,
    /// The outermost tunnel carrier (node-to-node), present only when `tunnel` is set.
    pub outer: Option<Packet<'a>>,
    pub tunnel: Option<TunnelKind>,
    /// The outermost IP header and everything after it: the bytes cross-interface
    /// de-duplication compares (link headers differ between interfaces).
    pub l3: &'a [u8],
    /// Interface index carried in a Linux cooked v2 header.
    pub sll2_ifindex: Option<u32>,
    /// The tunnel payload was not IP (ARP in VXLAN, encrypted ESP…): the frame belongs to
    /// the carrier flow `outer` alone and `inner` repeats it.
    pub carrier_only: bool,
}

/// Why a frame could not be decoded to an IP packet. Counted, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeError {
    /// A link type podwire does not decode.
    UnsupportedLinkType,
    /// The frame is shorter than its link-layer header.
    LinkTruncated,
    /// A valid frame that carries no IP (ARP, LLDP, STP, 802.11 management, encrypted 802.11…).
    NotIp,
    /// The IP header is truncated or invalid.
    BadIpHeader,
    /// An IPv6 extension header is truncated or invalid.
    BadIpv6Extension,
    /// The transport header is too short to read the ports.
    TransportTruncated,
}

impl DecodeError {
    pub const ALL: [DecodeError; 6] = [
        DecodeError::UnsupportedLinkType,
        DecodeError::LinkTruncated,
        DecodeError::NotIp,
        DecodeError::BadIpHeader,
        DecodeError::BadIpv6Extension,
        DecodeError::TransportTruncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::UnsupportedLinkType => "unsupported_link_type",
            DecodeError::LinkTruncated => "link_truncated",
            DecodeError::NotIp => "not_ip",
            DecodeError::BadIpHeader => "bad_ip_header",
            DecodeError::BadIpv6Extension => "bad_ipv6_extension",
            DecodeError::TransportTruncated => "transport_truncated",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Decodes one frame of the given LINKTYPE.
pub fn decode(link: u32, data: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    let mut out = Err(DecodeError::NotIp);
    decode_into(link, data, &mut out);
    out
}

/// [`decode`] into `out`: the result (~200 bytes) is written in place rather than returned
/// and copied, for callers that keep decoded frames in a buffer.
pub fn decode_into<'a>(link: u32, data: &'a [u8], out: &mut Result<Decoded<'a>, DecodeError>) {
    let mut ctx = Ctx::default();
    match read_layers(link, data, &mut ctx) {
        Ok(()) => ctx.finish_into(out),
        Err(error) => *out = Err(error),
    }
}

/// Walks the link layer down to the innermost IP packet, filling `ctx`.
fn read_layers<'a>(link: u32, data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    match link {
        linktype::ETHERNET => link::ethernet(data, ctx)?,
        linktype::RAW | linktype::RAW_BSD12 | linktype::RAW_BSD14 => net::ip(data, 0, ctx)?,
        // Like Wireshark, LINKTYPE_IPV4 dispatches on the version nibble; LINKTYPE_IPV6 must be v6.
        linktype::IPV4 => net::ip(data, 0, ctx)?,
        linktype::IPV6 if data.first().map(|b| b >> 4) == Some(6) => net::ip(data, 0, ctx)?,
        linktype::IPV6 => return Err(DecodeError::BadIpHeader),
        linktype::NULL => link::null(data, false, ctx)?,
        linktype::LOOP => link::null(data, true, ctx)?,
        linktype::LINUX_SLL => link::sll(data, ctx)?,
        linktype::LINUX_SLL2 => link::sll2(data, ctx)?,
        linktype::PPP | linktype::PPP_HDLC => link::ppp(data, ctx)?,
        linktype::PPP_ETHER => link::pppoe_session(data, ctx)?,
        linktype::C_HDLC => link::cisco_hdlc(data, ctx)?,
        linktype::IEEE802_11 => link::ieee80211(data, false, ctx)?,
        linktype::IEEE802_11_RADIOTAP => link::radiotap(data, ctx)?,
        link::PPI => link::ppi(data, ctx)?,
        link::PKTAP | link::PKTAP_USER2 => link::pktap(data, ctx)?,
        link::NFLOG => link::nflog(data, ctx)?,
        _ => return Err(DecodeError::UnsupportedLinkType),
    }
    Ok(())
}

/// Decoding state carried down through the layers.
#[derive(Default)]
pub(crate) struct Ctx<'a> {
    inner: Option<Packet<'a>>,
    outer: Option<Packet<'a>>,
    tunnel: Option<TunnelKind>,
    l3: Option<&'a [u8]>,
    sll2_ifindex: Option<u32>,
    carrier_only: bool,
}

impl<'a> Ctx<'a> {
    /// Records that `carrier` encapsulates what follows; the outermost carrier wins.
    fn enter_tunnel(&mut self, carrier: Packet<'a>, kind: TunnelKind) {
        if self.outer.is_none() {
            self.outer = Some(carrier);
            self.tunnel = Some(kind);
        }
    }

    fn finish_into(self, out: &mut Result<Decoded<'a>, DecodeError>) {
        *out = match self.inner {
            Some(inner) => Ok(Decoded {
                inner,
                outer: self.outer,
                tunnel: self.tunnel,
                l3: self.l3.unwrap_or(&[]),
                sll2_ifindex: self.sll2_ifindex,
                carrier_only: self.carrier_only,
            }),
            None => Err(DecodeError::NotIp),
        };
    }
}

#[inline]
pub(crate) fn be16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at + 2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

#[cfg(test)]
mod tests;
