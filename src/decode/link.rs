//! Link layers and the ethertype dispatch shared by link layers and tunnels.

use super::{Ctx, DecodeError, TunnelKind, be16, net};

/// LINKTYPE_PPI (Per-Packet Information header, then another link type).
pub const PPI: u32 = 192;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
pub const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_ETAG: u16 = 0x893f;
pub const ETHERTYPE_NSH: u16 = 0x894f;
const ETHERTYPE_WCCP: u16 = 0x883e;
/// LINKTYPE_PKTAP (Apple), and the USER2 number Darwin used before it was assigned.
pub const PKTAP: u32 = 258;
pub const PKTAP_USER2: u32 = 149;
pub const NFLOG: u32 = 239;
const ETHERTYPE_MPLS_MC: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
pub const ETHERTYPE_TEB: u16 = 0x6558;
pub const ETHERTYPE_ERSPAN2: u16 = 0x88be;
pub const ETHERTYPE_ERSPAN3: u16 = 0x22eb;

/// Bounds how many VLAN tags or MPLS labels are skipped.
const MAX_STACKED_HEADERS: usize = 16;

pub(crate) fn ethernet<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    ethernet_at_depth(data, 0, ctx)
}

pub(crate) fn ethernet_at_depth<'a>(
    data: &'a [u8],
    depth: u8,
    ctx: &mut Ctx<'a>,
) -> Result<(), DecodeError> {
    let mut ethertype = be16(data, 12).ok_or(DecodeError::LinkTruncated)?;
    let mut offset = 14;
    let mut tags = 0;
    while matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    ) {
        tags += 1;
        if tags > MAX_STACKED_HEADERS {
            return Err(DecodeError::NotIp);
        }
        ethertype = be16(data, offset + 2).ok_or(DecodeError::LinkTruncated)?;
        offset += 4;
    }
    if ethertype < 0x0600 {
        // 802.3 length field: only LLC/SNAP carries an ethertype.
        let llc = data.get(offset..offset + 8).ok_or(DecodeError::NotIp)?;
        if llc[0] == 0xaa && llc[1] == 0xaa && llc[2] == 0x03 {
            ethertype = u16::from_be_bytes([llc[6], llc[7]]);
            offset += 8;
        } else {
            return Err(DecodeError::NotIp);
        }
    }
    ethertype_payload(ethertype, &data[offset..], depth, ctx)
}

/// Dispatches on an ethertype (from a link header, GRE, or SLL).
pub(crate) fn ethertype_payload<'a>(
    ethertype: u16,
    data: &'a [u8],
    depth: u8,
    ctx: &mut Ctx<'a>,
) -> Result<(), DecodeError> {
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => net::ip(data, depth, ctx),
        ETHERTYPE_MPLS | ETHERTYPE_MPLS_MC => mpls(data, depth, ctx),
        ETHERTYPE_PPPOE_SESSION => pppoe_session(data, ctx),
        ETHERTYPE_TEB => ethernet_at_depth(data, depth, ctx),
        ETHERTYPE_ETAG => {
            // 802.1BR E-Tag: 6 bytes, then the real ethertype.
            let inner = be16(data, 6).ok_or(DecodeError::LinkTruncated)?;
            ethertype_payload(inner, data.get(8..).unwrap_or(&[]), depth, ctx)
        }
        ETHERTYPE_NSH => nsh(data, depth, ctx),
        ETHERTYPE_WCCP => {
            // WCCP redirect header (4 bytes), then the redirected IP packet.
            net::ip(data.get(4..).unwrap_or(&[]), depth, ctx)
        }
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
            let inner = be16(data, 2).ok_or(DecodeError::LinkTruncated)?;
            ethertype_payload(inner, data.get(4..).unwrap_or(&[]), depth, ctx)
        }
        _ => Err(DecodeError::NotIp),
    }
}

fn mpls<'a>(data: &'a [u8], depth: u8, ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let mut offset = 0;
    for _ in 0..MAX_STACKED_HEADERS {
        let label = data
            .get(offset..offset + 4)
            .ok_or(DecodeError::LinkTruncated)?;
        offset += 4;
        if label[2] & 0x01 != 0 {
            // Bottom of stack: guess the payload from the IP version nibble, as Wireshark does.
            let payload = &data[offset..];
            return match payload.first().map(|b| b >> 4) {
                Some(4) | Some(6) => net::ip(payload, depth, ctx),
                _ => Err(DecodeError::NotIp),
            };
        }
    }
    Err(DecodeError::NotIp)
}

pub(crate) fn null<'a>(
    data: &'a [u8],
    network_order: bool,
    ctx: &mut Ctx<'a>,
) -> Result<(), DecodeError> {
    let header = data.get(..4).ok_or(DecodeError::LinkTruncated)?;
    let bytes = [header[0], header[1], header[2], header[3]];
    let family = if network_order {
        u32::from_be_bytes(bytes)
    } else {
        // Host byte order of the capturing machine: whichever reading is small is right.
        let le = u32::from_le_bytes(bytes);
        if le <= 0xffff {
            le
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    match family {
        // AF_INET everywhere; AF_INET6 on NetBSD/OpenBSD (24), FreeBSD (28), Darwin (30), Linux (10).
        2 | 10 | 24 | 28 | 30 => net::ip(&data[4..], 0, ctx),
        _ => Err(DecodeError::NotIp),
    }
}

pub(crate) fn sll<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let protocol = be16(data, 14).ok_or(DecodeError::LinkTruncated)?;
    let arphrd = be16(data, 2).ok_or(DecodeError::LinkTruncated)?;
    sll_payload(protocol, arphrd, &data[16..], ctx)
}

pub(crate) fn sll2<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let header = data.get(..20).ok_or(DecodeError::LinkTruncated)?;
    let protocol = u16::from_be_bytes([header[0], header[1]]);
    ctx.sll2_ifindex = Some(u32::from_be_bytes([
        header[4], header[5], header[6], header[7],
    ]));
    let arphrd = u16::from_be_bytes([header[8], header[9]]);
    sll_payload(protocol, arphrd, &data[20..], ctx)
}

fn sll_payload<'a>(
    protocol: u16,
    arphrd: u16,
    payload: &'a [u8],
    ctx: &mut Ctx<'a>,
) -> Result<(), DecodeError> {
    const ARPHRD_IPGRE: u16 = 778;
    const ARPHRD_NETLINK: u16 = 824;
    match (arphrd, protocol) {
        (ARPHRD_NETLINK, _) => Err(DecodeError::NotIp),
        // On GRE devices the protocol field is the GRE protocol type.
        (ARPHRD_IPGRE, p) => ethertype_payload(p, payload, 0, ctx),
        // 0x0004: 802.2 LLC frames; check for SNAP.
        (_, 0x0004) => match payload.get(..8) {
            Some(llc) if llc[0] == 0xaa && llc[1] == 0xaa && llc[2] == 0x03 => {
                ethertype_payload(u16::from_be_bytes([llc[6], llc[7]]), &payload[8..], 0, ctx)
            }
            _ => Err(DecodeError::NotIp),
        },
        (_, p) => ethertype_payload(p, payload, 0, ctx),
    }
}

pub(crate) fn ppp<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let mut offset = 0;
    if data.len() >= 2 && data[0] == 0xff && data[1] == 0x03 {
        offset = 2;
    }
    ppp_protocol(data.get(offset..).unwrap_or(&[]), ctx)
}

/// PPP protocol field (1 or 2 bytes, per address-and-control/protocol-field compression).
fn ppp_protocol<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let first = *data.first().ok_or(DecodeError::LinkTruncated)?;
    let (protocol, offset) = if first & 0x01 == 1 {
        (u16::from(first), 1)
    } else {
        (be16(data, 0).ok_or(DecodeError::LinkTruncated)?, 2)
    };
    match protocol {
        0x0021 | 0x0057 => net::ip(&data[offset..], 0, ctx),
        0x0281 | 0x0283 => mpls(&data[offset..], 0, ctx),
        _ => Err(DecodeError::NotIp),
    }
}

pub(crate) fn pppoe_session<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let payload = data.get(6..).ok_or(DecodeError::LinkTruncated)?;
    if ctx.tunnel.is_none() {
        ctx.tunnel = Some(TunnelKind::Pppoe);
    }
    ppp_protocol(payload, ctx)
}

pub(crate) fn cisco_hdlc<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let protocol = be16(data, 2).ok_or(DecodeError::LinkTruncated)?;
    ethertype_payload(protocol, &data[4..], 0, ctx)
}

pub(crate) fn radiotap<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let len = data
        .get(2..4)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or(DecodeError::LinkTruncated)?;
    let frame = data.get(len..).ok_or(DecodeError::LinkTruncated)?;
    ieee80211(frame, false, ctx)
}

pub(crate) fn ppi<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let header = data.get(..8).ok_or(DecodeError::LinkTruncated)?;
    let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
    let dlt = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let inner = data.get(len..).ok_or(DecodeError::LinkTruncated)?;
    match dlt {
        crate::frame::linktype::ETHERNET => ethernet(inner, ctx),
        crate::frame::linktype::IEEE802_11 => ieee80211(inner, false, ctx),
        _ => Err(DecodeError::UnsupportedLinkType),
    }
}

/// 802.11 data frames with an LLC/SNAP header.
pub(crate) fn ieee80211<'a>(
    data: &'a [u8],
    _has_fcs: bool,
    ctx: &mut Ctx<'a>,
) -> Result<(), DecodeError> {
    let fc = data.get(..2).ok_or(DecodeError::LinkTruncated)?;
    let frame_type = (fc[0] >> 2) & 0x03;
    let subtype = fc[0] >> 4;
    let flags = fc[1];
    if frame_type != 2 || subtype & 0x04 != 0 || flags & 0x40 != 0 {
        // Not data, a null-data frame, or protected (encrypted) payload.
        return Err(DecodeError::NotIp);
    }
    let mut offset = if flags & 0x03 == 0x03 { 30 } else { 24 };
    if subtype & 0x08 != 0 {
        offset += 2; // QoS control
        if flags & 0x80 != 0 {
            offset += 4; // HT control
        }
    }
    let llc = data
        .get(offset..offset + 8)
        .ok_or(DecodeError::LinkTruncated)?;
    if llc[0] == 0xaa && llc[1] == 0xaa && llc[2] == 0x03 {
        ethertype_payload(
            u16::from_be_bytes([llc[6], llc[7]]),
            &data[offset + 8..],
            0,
            ctx,
        )
    } else {
        Err(DecodeError::NotIp)
    }
}

/// Network Service Header (RFC 8300): length in 4-byte words, next protocol 1/2/3.
pub(crate) fn nsh<'a>(data: &'a [u8], depth: u8, ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let header = data.get(..4).ok_or(DecodeError::LinkTruncated)?;
    let len = usize::from(header[1] & 0x3f) * 4;
    let rest = data.get(len..).ok_or(DecodeError::LinkTruncated)?;
    if ctx.tunnel.is_none() {
        ctx.tunnel = Some(TunnelKind::Nsh);
    }
    match header[3] {
        1 | 2 => super::net::ip(rest, depth, ctx),
        3 => ethernet_at_depth(rest, depth, ctx),
        _ => Err(DecodeError::NotIp),
    }
}

/// Apple PKTAP: a little-endian header length and the DLT of what follows.
pub(crate) fn pktap<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let header = data.get(..8).ok_or(DecodeError::LinkTruncated)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let dlt = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let inner = data.get(len..).ok_or(DecodeError::LinkTruncated)?;
    match dlt {
        1 => ethernet(inner, ctx),
        0 => null(inner, false, ctx),
        12 | 14 | 101 => super::net::ip(inner, 0, ctx),
        _ => Err(DecodeError::UnsupportedLinkType),
    }
}

/// Linux NFLOG: a 4-byte header, then TLVs; type 9 (NFULA_PAYLOAD) holds the IP packet.
pub(crate) fn nflog<'a>(data: &'a [u8], ctx: &mut Ctx<'a>) -> Result<(), DecodeError> {
    let mut offset = 4;
    for _ in 0..64 {
        let tlv = data.get(offset..offset + 4).ok_or(DecodeError::NotIp)?;
        let len = usize::from(u16::from_le_bytes([tlv[0], tlv[1]]));
        let kind = u16::from_le_bytes([tlv[2], tlv[3]]) & 0x7fff;
        if len < 4 {
            return Err(DecodeError::LinkTruncated);
        }
        if kind == 9 {
            let end = (offset + len).min(data.len());
            return super::net::ip(data.get(offset + 4..end).unwrap_or(&[]), 0, ctx);
        }
        offset += (len + 3) & !3;
    }
    Err(DecodeError::NotIp)
}
