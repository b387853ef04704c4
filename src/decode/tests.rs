use super::*;

fn hex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn esp_in_udp_is_a_carrier_only_tunnel() {
    let frame = hex(
        "10 00 00 64 64 45 10 00 00 64 64 23 08 00 45 00 00 90 a6 0e 00 00 40 11 50 08 c0 01 02 17 c0 01 02 2d 11 94 11 94 00 7c 00 00 12 34 56 78 00 00",
    );
    let mut padded = frame.clone();
    padded.resize(14 + 144, 0xab);
    let d = decode(1, &padded).unwrap();
    assert!(d.carrier_only, "{d:?}");
    assert_eq!(d.tunnel, Some(TunnelKind::EspInUdp));
}

use etherparse::PacketBuilder;

fn tcp_v4(payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
        .ipv4([10, 244, 1, 10], [10, 244, 2, 20], 64)
        .tcp(40000, 8080, 1000, 64240)
        .syn();
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    out
}

fn udp_v6(payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .udp(5353, 53);
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    out
}

#[test]
fn ethernet_tcp_ipv4() {
    let frame = tcp_v4(b"hello");
    let d = decode(crate::frame::linktype::ETHERNET, &frame).unwrap();
    assert_eq!(d.inner.proto, ipproto::TCP);
    assert_eq!(d.inner.src.to_string(), "10.244.1.10");
    assert_eq!((d.inner.src_port, d.inner.dst_port), (40000, 8080));
    assert!(d.inner.tcp.unwrap().has(TcpMeta::SYN));
    assert_eq!(d.inner.payload, b"hello");
    assert_eq!(d.tunnel, None);
    assert_eq!(d.l3.len(), frame.len() - 14);
}

#[test]
fn vlan_and_qinq_tags_are_skipped() {
    let plain = tcp_v4(b"x");
    let mut qinq = plain[..12].to_vec();
    qinq.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xc8]);
    qinq.extend_from_slice(&plain[12..]);
    let d = decode(crate::frame::linktype::ETHERNET, &qinq).unwrap();
    assert_eq!(d.inner.dst_port, 8080);
}

#[test]
fn linux_cooked_v1_and_v2() {
    let plain = tcp_v4(b"");
    let ip = &plain[14..];
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(ip);
    assert_eq!(
        decode(crate::frame::linktype::LINUX_SLL, &sll)
            .unwrap()
            .inner
            .dst_port,
        8080
    );
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend_from_slice(ip);
    let d = decode(crate::frame::linktype::LINUX_SLL2, &sll2).unwrap();
    assert_eq!(d.sll2_ifindex, Some(7));
    assert_eq!(d.inner.dst_port, 8080);
}

#[test]
fn raw_null_and_loop_links() {
    let plain = tcp_v4(b"");
    let ip = &plain[14..];
    assert!(decode(crate::frame::linktype::RAW, ip).is_ok());
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(ip);
    assert!(decode(crate::frame::linktype::NULL, &null).is_ok());
    let mut lo = 2u32.to_be_bytes().to_vec();
    lo.extend_from_slice(ip);
    assert!(decode(crate::frame::linktype::LOOP, &lo).is_ok());
}

#[test]
fn ipv6_udp() {
    let frame = udp_v6(b"q");
    let d = decode(crate::frame::linktype::ETHERNET, &frame).unwrap();
    assert_eq!(d.inner.proto, ipproto::UDP);
    assert_eq!((d.inner.src_port, d.inner.dst_port), (5353, 53));
}

/// Wraps an Ethernet frame in VXLAN inside an outer IPv4/UDP packet between two nodes.
fn vxlan(inner: &[u8], port: u16) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 0x2a, 0];
    payload.extend_from_slice(inner);
    let builder = PacketBuilder::ethernet2([9; 6], [8; 6])
        .ipv4([192, 168, 0, 1], [192, 168, 0, 2], 64)
        .udp(51000, port);
    let mut out = Vec::new();
    builder.write(&mut out, &payload).unwrap();
    out
}

#[test]
fn vxlan_reports_inner_flow_and_outer_carrier() {
    for port in [4789, 8472] {
        let frame = vxlan(&tcp_v4(b"pod"), port);
        let d = decode(crate::frame::linktype::ETHERNET, &frame).unwrap();
        assert_eq!(d.tunnel, Some(TunnelKind::Vxlan));
        assert_eq!(d.inner.src.to_string(), "10.244.1.10");
        assert_eq!(d.inner.payload, b"pod");
        let outer = d.outer.unwrap();
        assert_eq!(
            (outer.src.to_string().as_str(), outer.dst_port),
            ("192.168.0.1", port)
        );
        assert!(!d.carrier_only);
    }
}

#[test]
fn vxlan_with_arp_inside_belongs_to_the_carrier_only() {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    let frame = vxlan(&arp, 4789);
    let d = decode(crate::frame::linktype::ETHERNET, &frame).unwrap();
    assert!(d.carrier_only);
    assert_eq!(d.tunnel, Some(TunnelKind::Vxlan));
}

#[test]
fn ipip_and_gre_tunnels() {
    let inner_ip = tcp_v4(b"")[14..].to_vec();
    let builder =
        || PacketBuilder::ethernet2([9; 6], [8; 6]).ipv4([192, 168, 0, 1], [192, 168, 0, 2], 64);
    let mut ipip = Vec::new();
    builder()
        .write(&mut ipip, etherparse::IpNumber(ipproto::IPIP), &inner_ip)
        .unwrap();
    let d = decode(crate::frame::linktype::ETHERNET, &ipip).unwrap();
    assert_eq!(d.tunnel, Some(TunnelKind::Ipip));
    assert_eq!(d.inner.dst_port, 8080);
    assert_eq!(d.outer.unwrap().proto, ipproto::IPIP);

    let mut gre_payload = vec![0, 0, 0x08, 0x00];
    gre_payload.extend_from_slice(&inner_ip);
    let mut gre = Vec::new();
    builder()
        .write(&mut gre, etherparse::IpNumber(ipproto::GRE), &gre_payload)
        .unwrap();
    let d = decode(crate::frame::linktype::ETHERNET, &gre).unwrap();
    assert_eq!(d.tunnel, Some(TunnelKind::Gre));
    assert_eq!(d.inner.dst_port, 8080);
}

#[test]
fn fragments_are_marked() {
    let mut frame = tcp_v4(b"0123456789");
    // Set MF on the first fragment: flags/offset at IPv4 bytes 6..8.
    frame[14 + 6] = 0x20;
    let d = decode(crate::frame::linktype::ETHERNET, &frame).unwrap();
    assert!(matches!(d.inner.fragment, Fragment::First { .. }));
    frame[14 + 6] = 0x00;
    frame[14 + 7] = 0x10; // offset 16 * 8 bytes
    let d = decode(crate::frame::linktype::ETHERNET, &frame).unwrap();
    assert!(matches!(d.inner.fragment, Fragment::Later { .. }));
    assert_eq!(
        d.inner.src_port, 0,
        "a later fragment has no transport header"
    );
}

#[test]
fn errors_are_kinds_not_panics() {
    assert_eq!(
        decode(crate::frame::linktype::ETHERNET, &[1, 2, 3]),
        Err(DecodeError::LinkTruncated)
    );
    assert_eq!(
        decode(9999, &[0; 64]),
        Err(DecodeError::UnsupportedLinkType)
    );
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert_eq!(
        decode(crate::frame::linktype::ETHERNET, &arp),
        Err(DecodeError::NotIp)
    );
    let mut bad_ip = vec![0; 12];
    bad_ip.extend_from_slice(&[0x08, 0x00, 0x41]);
    assert_eq!(
        decode(crate::frame::linktype::ETHERNET, &bad_ip),
        Err(DecodeError::BadIpHeader)
    );
    let frame = tcp_v4(b"");
    let cut = &frame[..14 + 20 + 2];
    assert_eq!(
        decode(crate::frame::linktype::ETHERNET, cut),
        Err(DecodeError::TransportTruncated)
    );
}

#[test]
fn every_prefix_of_a_tunnelled_frame_decodes_without_panic() {
    let frame = vxlan(&tcp_v4(b"payload"), 4789);
    for len in 0..=frame.len() {
        let _ = decode(crate::frame::linktype::ETHERNET, &frame[..len]);
    }
}
