//! IP layers, transport headers and IP/UDP-carried tunnels.

use std::net::IpAddr;

use etherparse::LaxIpSlice;

use super::link::{self, ETHERTYPE_ERSPAN2, ETHERTYPE_ERSPAN3, ETHERTYPE_TEB};
use super::{
    Ctx, DecodeError, Fragment, MAX_TUNNEL_DEPTH, Packet, TcpMeta, TunnelKind, be16, ipproto,
};

/// UDP ports that carry VXLAN (IANA's 4789 and the Linux/Flannel default 8472).
pub const VXLAN_PORTS: [u16; 2] = [4789, 8472];
pub const GENEVE_PORT: u16 = 6081;
const TEREDO_PORT: u16 = 3544;
const IPSEC_NAT_T_PORT: u16 = 4500;
const L2TP_PORT: u16 = 1701;
/// MPLS in UDP (RFC 7510).
const MPLS_UDP_PORT: u16 = 6635;
const VXLAN_GPE_PORT: u16 = 4790;
const LISP_DATA_PORT: u16 = 4341;
const LISP_CONTROL_PORT: u16 = 4342;

/// L2TPv2 data message carrying PPP: returns the ethertype-equivalent and the IP packet.
fn l2tp_ppp(payload: &[u8]) -> Option<(u16, &[u8])> {
    let flags = *payload.first()?;
    let version = payload.get(1)? & 0x0f;
    if flags & 0x80 != 0 || version != 2 {
        return None; // control message, or not L2TPv2
    }
    let mut offset = 2;
    if flags & 0x40 != 0 {
        offset += 2; // length
    }
    offset += 4; // tunnel id, session id
    if flags & 0x08 != 0 {
        offset += 4; // Ns, Nr
    }
    if flags & 0x02 != 0 {
        let pad = usize::from(be16(payload, offset)?);
        offset += 2 + pad;
    }
    let mut ppp = payload.get(offset..)?;
    if ppp.len() >= 2 && ppp[0] == 0xff && ppp[1] == 0x03 {
        ppp = &ppp[2..];
    }
    match be16(ppp, 0)? {
        0x0021 => Some((link::ETHERTYPE_IPV4, &ppp[2..])),
        0x0057 => Some((link::ETHERTYPE_IPV6, &ppp[2..])),
        _ => None,
    }
}

/// Decodes a bare IP packet (no link layer) the same way [`super::decode`] would.
pub fn decode_ip(data: &[u8]) -> Result<super::Decoded<'_>, DecodeError> {
    let mut ctx = Ctx::default();
    ip(data, 0, &mut ctx)?;
    let mut out = Err(DecodeError::NotIp);
    ctx.finish_into(&mut out);
    out
}

/// Decodes an IP header and what it carries; records the packet (or recurses into a tunnel).
/// The layer fields `ip` reads from an IP header.
#[derive(Debug, PartialEq, Eq)]
struct IpLayer<'a> {
    src: IpAddr,
    dst: IpAddr,
    fragment: Fragment,
    proto: u8,
    payload: &'a [u8],
    /// The header's length says more bytes follow than were captured.
    incomplete: bool,
    /// The IPv6 extension chain (or IPv4 authentication header) is broken.
    broken_extensions: bool,
}

/// IP's authentication header: etherparse reads past it.
const IPPROTO_AUTH: u8 = 51;

/// An IPv4 header without options and without an authentication header (nearly every
/// packet), read directly: exactly the fields etherparse's `LaxIpSlice` gives for it (a
/// proptest compares the two), without building its ~200-byte result. Anything else is
/// `None` and goes through etherparse.
fn plain_ipv4(data: &[u8]) -> Option<IpLayer<'_>> {
    let header = data.get(..20)?;
    if header[0] != 0x45 || header[9] == IPPROTO_AUTH {
        return None;
    }
    // Like etherparse's lax slice: a total length shorter than the header or longer than
    // the capture falls back to the captured bytes (the latter marked incomplete).
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let (payload, incomplete) = if total < 20 {
        (&data[20..], false)
    } else if total > data.len() {
        (&data[20..], true)
    } else {
        (&data[20..total], false)
    };
    let flags_offset = u16::from_be_bytes([header[6], header[7]]);
    let id = u32::from(u16::from_be_bytes([header[4], header[5]]));
    let fragment = if flags_offset & 0x1fff != 0 {
        Fragment::Later { id }
    } else if flags_offset & 0x2000 != 0 {
        Fragment::First { id }
    } else {
        Fragment::None
    };
    Some(IpLayer {
        src: IpAddr::from([header[12], header[13], header[14], header[15]]),
        dst: IpAddr::from([header[16], header[17], header[18], header[19]]),
        fragment,
        proto: header[9],
        payload,
        incomplete,
        broken_extensions: false,
    })
}

/// Any IP header: the common shape directly, the rest through etherparse.
fn ip_layer(data: &[u8]) -> Result<IpLayer<'_>, DecodeError> {
    match plain_ipv4(data) {
        Some(layer) => Ok(layer),
        None => lax_ip_layer(data),
    }
}

/// Any IP header, through etherparse's lax slicer.
fn lax_ip_layer(data: &[u8]) -> Result<IpLayer<'_>, DecodeError> {
    let (slice, ext_error) = LaxIpSlice::from_slice(data).map_err(|_| DecodeError::BadIpHeader)?;
    let fragment = match &slice {
        LaxIpSlice::Ipv4(v4) => {
            let header = v4.header();
            let offset = header.fragments_offset().value();
            let id = u32::from(header.identification());
            if offset != 0 {
                Fragment::Later { id }
            } else if header.more_fragments() {
                Fragment::First { id }
            } else {
                Fragment::None
            }
        }
        LaxIpSlice::Ipv6(_) => ipv6_fragment(data),
    };
    let payload = slice.payload();
    Ok(IpLayer {
        src: slice.source_addr(),
        dst: slice.destination_addr(),
        fragment,
        proto: payload.ip_number.0,
        payload: payload.payload,
        incomplete: payload.incomplete,
        broken_extensions: ext_error.is_some(),
    })
}

pub(crate) fn ip<'a>(data: &'a [u8], depth: u8, ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let IpLayer {
        src,
        dst,
        fragment,
        proto,
        payload: bytes,
        incomplete,
        broken_extensions,
    } = ip_layer(data)?;
    if ctx.l3.is_none() {
        ctx.l3 = Some(data);
    }
    let bare = Packet {
        proto,
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        tcp: None,
        payload: bytes,
        fragment,
    };
    if matches!(fragment, Fragment::Later { .. }) {
        ctx.inner = Some(bare);
        return Ok(());
    }
    if broken_extensions {
        // The extension chain is broken: what follows cannot be trusted as a transport header.
        ctx.inner = Some(Packet { proto: 0, ..bare });
        return Err(DecodeError::BadIpv6Extension);
    }
    let whole = matches!(fragment, Fragment::None);
    match proto {
        ipproto::TCP => {
            // Checked first, so a truncated header leaves `ctx.inner` as it was.
            if bytes.len() < 4 {
                return Err(DecodeError::TransportTruncated);
            }
            // Filled in place: a packet built here and copied out was read back before its
            // narrow stores had retired (a store-forwarding stall on most packets).
            read_tcp(ctx.inner.insert(bare));
            Ok(())
        }
        ipproto::UDP => {
            let packet = udp(bare)?;
            ctx.inner = Some(packet);
            // Like Wireshark, only look inside datagrams whose UDP length is consistent
            // (GSO/BIG TCP captures carry 0 or a wrapped length).
            if whole && depth < MAX_TUNNEL_DEPTH && udp_length_ok(bytes, incomplete) {
                udp_tunnel(packet, depth, ctx);
            }
            Ok(())
        }
        ipproto::PIM if whole && depth < MAX_TUNNEL_DEPTH => {
            ctx.inner = Some(bare);
            // PIM Register (type 1) carries a whole multicast IP packet after 8 bytes.
            if bytes.first().is_some_and(|b| b & 0x0f == 1)
                && let Some(inner) = bytes.get(8..)
            {
                let saved = (ctx.outer, ctx.tunnel);
                ctx.enter_tunnel(bare, TunnelKind::PimRegister);
                if ip(inner, depth + 1, ctx).is_err() {
                    carrier_only(bare, TunnelKind::PimRegister, saved, ctx);
                }
            }
            Ok(())
        }
        ipproto::SCTP => {
            ctx.inner = Some(ports_only(bare)?);
            Ok(())
        }
        ipproto::IPIP | ipproto::IPV6 if whole && depth < MAX_TUNNEL_DEPTH => {
            let kind = match (src, proto) {
                (IpAddr::V4(_), ipproto::IPIP) => TunnelKind::Ipip,
                (IpAddr::V4(_), _) => TunnelKind::SixInFour,
                (IpAddr::V6(_), ipproto::IPIP) => TunnelKind::FourInSix,
                (IpAddr::V6(_), _) => TunnelKind::SixInSix,
            };
            ctx.inner = Some(bare);
            let saved = (ctx.outer, ctx.tunnel);
            ctx.enter_tunnel(bare, kind);
            if ip(bytes, depth + 1, ctx).is_err() {
                carrier_only(bare, kind, saved, ctx);
            }
            Ok(())
        }
        ipproto::GRE if whole && depth < MAX_TUNNEL_DEPTH => {
            ctx.inner = Some(bare);
            gre(bare, depth, ctx);
            Ok(())
        }
        _ => {
            ctx.inner = Some(bare);
            Ok(())
        }
    }
}

fn udp_length_ok(datagram: &[u8], ip_payload_cut: bool) -> bool {
    match be16(datagram, 4) {
        Some(len) => {
            let len = usize::from(len);
            len >= 8 && (len == datagram.len() || (ip_payload_cut && len > datagram.len()))
        }
        None => false,
    }
}

/// Reads the TCP header into `packet` (whose payload holds at least the 4 port bytes).
fn read_tcp(packet: &mut Packet<'_>) {
    let data = packet.payload;
    packet.src_port = u16::from_be_bytes([data[0], data[1]]);
    packet.dst_port = u16::from_be_bytes([data[2], data[3]]);
    packet.payload = &[];
    if data.len() >= 14 {
        let seq = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let ack = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let header_len = usize::from(data[12] >> 4) * 4;
        packet.tcp = Some(TcpMeta {
            seq,
            ack,
            flags: data[13],
        });
        if header_len >= 20 {
            packet.payload = data.get(header_len..).unwrap_or(&[]);
        }
    }
}

fn udp(packet: Packet<'_>) -> Result<Packet<'_>, DecodeError> {
    let data = packet.payload;
    let (src_port, dst_port) = ports(data)?;
    let mut payload = data.get(8..).unwrap_or(&[]);
    if let Some(len) = be16(data, 4) {
        // Honour the UDP length when it is sane (it may be 0 for GSO/jumbo captures).
        let len = usize::from(len);
        if len >= 8 && len - 8 < payload.len() {
            payload = &payload[..len - 8];
        }
    }
    Ok(Packet {
        src_port,
        dst_port,
        payload,
        ..packet
    })
}

fn ports_only(packet: Packet<'_>) -> Result<Packet<'_>, DecodeError> {
    let (src_port, dst_port) = ports(packet.payload)?;
    Ok(Packet {
        src_port,
        dst_port,
        payload: packet.payload.get(12..).unwrap_or(&[]),
        ..packet
    })
}

fn ports(data: &[u8]) -> Result<(u16, u16), DecodeError> {
    match data.get(..4) {
        Some(p) => Ok((
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )),
        None => Err(DecodeError::TransportTruncated),
    }
}

/// Tries VXLAN / Geneve on a UDP datagram; leaves `ctx` untouched when it is not one.
fn udp_tunnel<'a>(carrier: Packet<'a>, depth: u8, ctx: &mut Ctx<'a>) {
    let payload = carrier.payload;
    let is_port = |port: u16| carrier.dst_port == port || carrier.src_port == port;
    let (kind, inner): (TunnelKind, Option<(u16, &'a [u8])>) =
        if VXLAN_PORTS.iter().any(|&p| is_port(p)) {
            // VXLAN: flags byte with the I bit, 24-bit VNI, then an Ethernet frame.
            match payload.get(..8) {
                Some(h) if h[0] & 0x08 != 0 => {
                    (TunnelKind::Vxlan, Some((ETHERTYPE_TEB, &payload[8..])))
                }
                _ => return,
            }
        } else if is_port(GENEVE_PORT) {
            match payload.get(..8) {
                Some(h) if h[0] >> 6 == 0 => {
                    let opt_len = usize::from(h[0] & 0x3f) * 4;
                    let protocol = u16::from_be_bytes([h[2], h[3]]);
                    match payload.get(8 + opt_len..) {
                        Some(rest) => (TunnelKind::Geneve, Some((protocol, rest))),
                        None => return,
                    }
                }
                _ => return,
            }
        } else if is_port(TEREDO_PORT) {
            // Teredo: optional authentication (0x0001) and origin (0x0000) headers, then IPv6.
            let mut rest = payload;
            if rest.len() >= 4 && rest[0] == 0 && rest[1] == 1 {
                let skip = 13 + usize::from(rest[2]) + usize::from(rest[3]);
                rest = rest.get(skip..).unwrap_or(&[]);
            }
            if rest.len() >= 8 && rest[0] == 0 && rest[1] == 0 {
                rest = &rest[8..];
            }
            if rest.first().map(|b| b >> 4) != Some(6) || rest.len() < 40 {
                return;
            }
            (TunnelKind::Teredo, Some((link::ETHERTYPE_IPV6, rest)))
        } else if is_port(IPSEC_NAT_T_PORT) {
            // ESP in UDP (RFC 3948): a zero "non-ESP marker" means IKE; 0xff is a keepalive.
            // Both belong to the node-to-node IPsec tunnel, so the datagram is the carrier's.
            let saved = (ctx.outer, ctx.tunnel);
            carrier_only(carrier, TunnelKind::EspInUdp, saved, ctx);
            return;
        } else if is_port(L2TP_PORT) {
            match l2tp_ppp(payload) {
                Some((ethertype, rest)) => (TunnelKind::L2tp, Some((ethertype, rest))),
                None => {
                    // Control messages and non-IP PPP belong to the tunnel itself.
                    if payload.get(1).is_some_and(|v| v & 0x0f == 2) {
                        let saved = (ctx.outer, ctx.tunnel);
                        carrier_only(carrier, TunnelKind::L2tp, saved, ctx);
                    }
                    return;
                }
            }
        } else if is_port(VXLAN_GPE_PORT) {
            // VXLAN-GPE: next protocol in byte 3 (1 IPv4, 2 IPv6, 3 Ethernet, 4 NSH).
            match payload.get(..8) {
                Some(h) => {
                    let ethertype = match h[3] {
                        1 => link::ETHERTYPE_IPV4,
                        2 => link::ETHERTYPE_IPV6,
                        3 => ETHERTYPE_TEB,
                        4 => link::ETHERTYPE_NSH,
                        _ => return,
                    };
                    (TunnelKind::VxlanGpe, Some((ethertype, &payload[8..])))
                }
                None => return,
            }
        } else if carrier.dst_port == LISP_DATA_PORT {
            match payload.get(8..) {
                Some(rest) => match rest.first().map(|b| b >> 4) {
                    Some(4) => (TunnelKind::Lisp, Some((link::ETHERTYPE_IPV4, rest))),
                    Some(6) => (TunnelKind::Lisp, Some((link::ETHERTYPE_IPV6, rest))),
                    _ => return,
                },
                None => return,
            }
        } else if is_port(LISP_CONTROL_PORT) {
            let saved = (ctx.outer, ctx.tunnel);
            carrier_only(carrier, TunnelKind::Lisp, saved, ctx);
            return;
        } else if is_port(MPLS_UDP_PORT) {
            (TunnelKind::Mpls, Some((link::ETHERTYPE_MPLS, payload)))
        } else {
            return;
        };
    let Some((ethertype, bytes)) = inner else {
        return;
    };
    try_tunnel(carrier, kind, ethertype, bytes, depth, ctx);
}

/// Decodes a tunnel payload; on failure restores the carrier as the frame's only flow.
fn try_tunnel<'a>(
    carrier: Packet<'a>,
    kind: TunnelKind,
    ethertype: u16,
    bytes: &'a [u8],
    depth: u8,
    ctx: &mut Ctx<'a>,
) {
    let saved = (ctx.outer, ctx.tunnel);
    ctx.enter_tunnel(carrier, kind);
    if link::ethertype_payload(ethertype, bytes, depth + 1, ctx).is_err() {
        carrier_only(carrier, kind, saved, ctx);
    }
}

/// A tunnel whose payload is not IP (ARP, encrypted ESP, …): the frame belongs to the
/// carrier flow alone, which is marked as the tunnel's outer flow.
fn carrier_only<'a>(
    carrier: Packet<'a>,
    kind: TunnelKind,
    saved: (Option<Packet<'a>>, Option<TunnelKind>),
    ctx: &mut Ctx<'a>,
) {
    ctx.inner = Some(carrier);
    (ctx.outer, ctx.tunnel) = saved;
    if ctx.outer.is_none() {
        ctx.outer = Some(carrier);
        ctx.tunnel = Some(kind);
        ctx.carrier_only = true;
    }
}

/// GRE (RFC 2784/2890) version 0, including ERSPAN type II/III.
fn gre<'a>(carrier: Packet<'a>, depth: u8, ctx: &mut Ctx<'a>) {
    let data = carrier.payload;
    let Some(header) = data.get(..4) else { return };
    if header[1] & 0x07 != 0 {
        return; // version 1 is PPTP's enhanced GRE (PPP payload, often compressed)
    }
    let flags = header[0];
    let protocol = u16::from_be_bytes([header[2], header[3]]);
    let mut offset = 4;
    if flags & 0x80 != 0 || flags & 0x40 != 0 {
        offset += 4; // checksum (+ reserved), also present when routing is
    }
    if flags & 0x20 != 0 {
        offset += 4; // key
    }
    if flags & 0x10 != 0 {
        offset += 4; // sequence number
    }
    let Some(mut rest) = data.get(offset..) else {
        return;
    };
    let (kind, ethertype) = match protocol {
        ETHERTYPE_ERSPAN2 => {
            let Some(r) = rest.get(8..) else { return };
            rest = r;
            (TunnelKind::Erspan, ETHERTYPE_TEB)
        }
        ETHERTYPE_ERSPAN3 => {
            let Some(h) = rest.get(..12) else { return };
            let has_subheader = h[11] & 0x01 != 0;
            let skip = if has_subheader { 20 } else { 12 };
            let Some(r) = rest.get(skip..) else { return };
            rest = r;
            (TunnelKind::Erspan, ETHERTYPE_TEB)
        }
        other => (TunnelKind::Gre, other),
    };
    try_tunnel(carrier, kind, ethertype, rest, depth, ctx);
}

/// Fragment state from an IPv6 extension chain, walked by hand over the raw bytes.
///
/// (etherparse's extension iterator trusts lengths a lax parse did not validate, so it is
/// not used on untrusted input.)
fn ipv6_fragment(data: &[u8]) -> Fragment {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const AUTH: u8 = 51;
    const DEST_OPTS: u8 = 60;
    let Some(&first) = data.get(6) else {
        return Fragment::None;
    };
    let mut next = first;
    let mut offset = 40;
    for _ in 0..16 {
        let Some(header) = data.get(offset..offset + 8) else {
            return Fragment::None;
        };
        match next {
            FRAGMENT => {
                let frag_offset = u16::from_be_bytes([header[2], header[3]]) >> 3;
                let more = header[3] & 0x01 != 0;
                let id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                return if frag_offset != 0 {
                    Fragment::Later { id }
                } else if more {
                    Fragment::First { id }
                } else {
                    Fragment::None
                };
            }
            HOP_BY_HOP | ROUTING | DEST_OPTS => offset += (usize::from(header[1]) + 1) * 8,
            AUTH => offset += (usize::from(header[1]) + 2) * 4,
            _ => return Fragment::None,
        }
        next = header[0];
    }
    Fragment::None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The direct IPv4 reader gives exactly etherparse's lax reading wherever it answers:
        /// any lengths (short, padded, cut), flags, fragment offsets and protocols.
        #[test]
        fn plain_ipv4_reads_what_etherparse_reads(
            mut data in proptest::collection::vec(any::<u8>(), 0..80),
            plain_header in any::<bool>(),
            total in prop_oneof![Just(None), (0u16..100).prop_map(Some)],
        ) {
            if plain_header && !data.is_empty() {
                data[0] = 0x45;
            }
            if let (Some(total), true) = (total, data.len() >= 4) {
                data[2..4].copy_from_slice(&total.to_be_bytes());
            }
            if let Some(fast) = plain_ipv4(&data) {
                prop_assert_eq!(Ok(fast), lax_ip_layer(&data));
            } else {
                prop_assert!(data.len() < 20 || data[0] != 0x45 || data[9] == IPPROTO_AUTH);
            }
        }
    }
}
