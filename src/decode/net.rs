//! IP layers, transport headers and IP/UDP-carried tunnels.

use std::net::IpAddr;

use etherparse::{Ipv6ExtensionSlice, LaxIpSlice};

use super::link::{self, ETHERTYPE_ERSPAN2, ETHERTYPE_ERSPAN3, ETHERTYPE_TEB};
use super::{
    Ctx, DecodeError, Fragment, MAX_TUNNEL_DEPTH, Packet, TcpMeta, TunnelKind, be16, ipproto,
};

/// UDP ports that carry VXLAN (IANA's 4789 and the Linux/Flannel default 8472).
pub const VXLAN_PORTS: [u16; 2] = [4789, 8472];
pub const GENEVE_PORT: u16 = 6081;

/// Decodes a bare IP packet (no link layer) the same way [`super::decode`] would.
pub fn decode_ip(data: &[u8]) -> Result<super::Decoded<'_>, DecodeError> {
    let mut ctx = Ctx::default();
    ip(data, 0, &mut ctx)?;
    ctx.finish()
}

/// Decodes an IP header and what it carries; records the packet (or recurses into a tunnel).
pub(crate) fn ip<'a>(data: &'a [u8], depth: u8, ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let (slice, ext_error) = LaxIpSlice::from_slice(data).map_err(|_| DecodeError::BadIpHeader)?;
    if ctx.l3.is_none() {
        ctx.l3 = Some(data);
    }
    let src = slice.source_addr();
    let dst = slice.destination_addr();
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
        LaxIpSlice::Ipv6(v6) => {
            let mut fragment = Fragment::None;
            for ext in v6.extensions().clone().into_iter() {
                if let Ipv6ExtensionSlice::Fragment(frag) = ext {
                    let id = frag.identification();
                    if frag.fragment_offset().value() != 0 {
                        fragment = Fragment::Later { id };
                    } else if frag.more_fragments() {
                        fragment = Fragment::First { id };
                    }
                }
            }
            fragment
        }
    };
    let payload = slice.payload();
    let proto = payload.ip_number.0;
    let bytes = payload.payload;
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
    if ext_error.is_some() {
        // The extension chain is broken: what follows cannot be trusted as a transport header.
        ctx.inner = Some(Packet { proto: 0, ..bare });
        return Err(DecodeError::BadIpv6Extension);
    }
    let whole = matches!(fragment, Fragment::None);
    match proto {
        ipproto::TCP => {
            ctx.inner = Some(tcp(bare)?);
            Ok(())
        }
        ipproto::UDP => {
            let packet = udp(bare)?;
            ctx.inner = Some(packet);
            if whole && depth < MAX_TUNNEL_DEPTH {
                udp_tunnel(packet, depth, ctx);
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
                // Undecodable payload: the frame stays with the carrier flow.
                ctx.inner = Some(bare);
                (ctx.outer, ctx.tunnel) = saved;
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

fn tcp(packet: Packet<'_>) -> Result<Packet<'_>, DecodeError> {
    let data = packet.payload;
    let (src_port, dst_port) = ports(data)?;
    let mut out = Packet {
        src_port,
        dst_port,
        payload: &[],
        ..packet
    };
    if data.len() >= 14 {
        let seq = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let ack = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let header_len = usize::from(data[12] >> 4) * 4;
        out.tcp = Some(TcpMeta {
            seq,
            ack,
            flags: data[13],
        });
        if header_len >= 20 {
            out.payload = data.get(header_len..).unwrap_or(&[]);
        }
    }
    Ok(out)
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
        ctx.inner = Some(carrier);
        (ctx.outer, ctx.tunnel) = saved;
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
