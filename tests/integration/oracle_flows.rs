//! Per-flow packet and byte totals must agree exactly with tshark's oracle.
//!
//! For every capture whose oracle says tshark read it (`tshark_ok`) and that has no IP
//! fragments, every TCP and UDP flow that is not a tunnel's outer flow is compared on the
//! unordered 5-tuple, summing flows that reused a port. Known, explained exceptions are
//! listed in `EXCEPTIONS` with the reason; anything else fails the test.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common;

type Tuple = (String, String, u16, String, u16);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    packets: u64,
    bytes: u64,
    a_to_b_packets: u64,
    a_to_b_bytes: u64,
}

/// Files where podwire and tshark legitimately differ, with the reason. Each was looked at
/// with `tshark -T fields -e frame.protocols` and podwire's own output.
const EXCEPTIONS: &[(&str, &str)] = &[
    // Link layers podwire does not decode (no Kubernetes node produces them).
    (
        "tcpdump/tests/arcnet-rfc1051-arp-icmp-http.pcap",
        "ARCNET link layer is not decoded",
    ),
    (
        "tcpdump/tests/arcnet-rfc1201-arp-icmp-http.pcap",
        "ARCNET link layer is not decoded",
    ),
    (
        "tcpdump/tests/ipoib.pcap",
        "IP-over-InfiniBand link layer is not decoded",
    ),
    (
        "tcpdump/tests/bgp-aigp.pcap",
        "Juniper pseudo-header link layer is not decoded",
    ),
    (
        "tcpdump/tests/macsec-short-valid.pcap",
        "MACsec (802.1AE) frames are not decoded",
    ),
    (
        "tcpdump/tests/macsec-short-shorter.pcap",
        "MACsec (802.1AE) frames are not decoded",
    ),
    (
        "tcpdump/tests/macsec-short-longer.pcap",
        "MACsec (802.1AE) frames are not decoded",
    ),
    // Deliberate: Flannel's VXLAN port. tshark 4.0 decodes VXLAN only on 4789, so it reports
    // the node-to-node UDP flows; podwire reports the pod flows inside (and marks the UDP
    // flows as tunnel outer flows, which this comparison skips).
    (
        "tcpdump/tests/vxlan_port_8472.pcap",
        "podwire decodes VXLAN on Flannel's port 8472, tshark does not",
    ),
    // IPv6 jumbograms (BIG TCP, payload length 0 + jumbo option): podwire reads the TCP/UDP
    // header inside (and the tunnel inside that); tshark 4.0 stops at IPv6.
    (
        "tcpdump/tests/bigtcp-ipv6.pcap",
        "IPv6 jumbogram: podwire decodes the transport, tshark does not",
    ),
    (
        "tcpdump/tests/bigtcp-ipv6-geneve-ipv4.pcap",
        "IPv6 jumbogram carrying Geneve",
    ),
    (
        "tcpdump/tests/bigtcp-ipv6-geneve-ipv6.pcap",
        "IPv6 jumbogram carrying Geneve",
    ),
    (
        "tcpdump/tests/bigtcp-ipv6-vxlan-ipv4.pcap",
        "IPv6 jumbogram carrying VXLAN",
    ),
    (
        "tcpdump/tests/bigtcp-ipv6-vxlan-ipv6.pcap",
        "IPv6 jumbogram carrying VXLAN",
    ),
    // Malformed IPv4 headers: podwire decodes leniently (etherparse's lax slicer uses the
    // captured length), tshark refuses the transport layer.
    (
        "tcpdump/tests/ipv4_invalid_total_length_2.pcap",
        "IPv4 total length invalid: podwire lenient, tshark strict",
    ),
    (
        "suricata-verify/tests/bug-7414-decoder-event-01/ip_secopt.pcap",
        "malformed IPv4 security option: tshark drops the UDP layer of one frame",
    ),
    // Every UDP/4500 datagram belongs to the IPsec NAT-T tunnel for podwire; these two hold a
    // single malformed datagram that tshark shows as plain UDP.
    (
        "tcpdump/tests/isakmp-3948-oobr-2.pcap",
        "malformed UDP/4500 datagram: podwire counts it in the IPsec tunnel flow",
    ),
    (
        "tcpdump/tests/isakmp-rfc3948-oobr.pcap",
        "malformed UDP/4500 datagram: podwire counts it in the IPsec tunnel flow",
    ),
    // The UDP length field is wrong; podwire does not look inside such datagrams (a GSO
    // safeguard), tshark's LISP dissector does and then marks the flow as a tunnel.
    (
        "tcpdump/tests/lisp_invalid_length.pcap",
        "inconsistent UDP length: podwire does not decode LISP inside",
    ),
    // A GRE (PPTP, version 1) frame with PPP LCP makes the oracle mark the PPTP control TCP
    // flow as a tunnel outer flow; podwire keeps TCP 1723 an ordinary flow.
    (
        "tcpdump/tests/pptp.pcap",
        "oracle marks the PPTP control connection as a tunnel outer flow",
    ),
];

fn canonical(a: &str, ap: u16, b: &str, bp: u16) -> (String, u16, String, u16, bool) {
    let key = |addr: &str, port: u16| -> (Vec<u8>, u16) {
        let bytes = match addr.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) => v4.octets().to_vec(),
            Ok(std::net::IpAddr::V6(v6)) => v6.octets().to_vec(),
            Err(_) => addr.as_bytes().to_vec(),
        };
        (bytes, port)
    };
    // tshark writes IPv4-mapped IPv6 as ::ffff:102:304, Rust as ::ffff:1.2.3.4: compare parsed.
    let norm = |addr: &str| {
        addr.parse::<std::net::IpAddr>()
            .map_or(addr.to_string(), |ip| ip.to_string())
    };
    if key(a, ap) <= key(b, bp) {
        (norm(a), ap, norm(b), bp, true)
    } else {
        (norm(b), bp, norm(a), ap, false)
    }
}

fn ours(path: &Path) -> BTreeMap<Tuple, Totals> {
    let mut out: BTreeMap<Tuple, Totals> = BTreeMap::new();
    let Some((flows, _, _)) = common::analyse(path) else {
        return out;
    };
    for flow in flows {
        if flow.key.outer {
            continue;
        }
        let proto = match flow.key.proto {
            6 => "tcp",
            17 => "udp",
            _ => continue,
        };
        let (src, dst) = (flow.src(), flow.dst());
        let (a, ap, b, bp, src_is_a) = canonical(
            &src.addr.to_string(),
            src.port,
            &dst.addr.to_string(),
            dst.port,
        );
        let entry = out.entry((proto.to_string(), a, ap, b, bp)).or_default();
        entry.packets += flow.packets();
        entry.bytes += flow.bytes();
        let (ab, ab_bytes) = if src_is_a {
            (flow.fwd.packets, flow.fwd.bytes)
        } else {
            (flow.rev.packets, flow.rev.bytes)
        };
        entry.a_to_b_packets += ab;
        entry.a_to_b_bytes += ab_bytes;
    }
    out
}

fn theirs(oracle: &Value) -> BTreeMap<Tuple, Totals> {
    let mut out = BTreeMap::new();
    for flow in oracle["flows"].as_array().into_iter().flatten() {
        if flow["tunnel_outer"].as_bool() == Some(true) {
            continue;
        }
        let proto = flow["proto"].as_str().unwrap_or_default().to_string();
        let (a, ap, b, bp, _) = canonical(
            flow["a"].as_str().unwrap_or_default(),
            flow["a_port"].as_u64().unwrap_or(0) as u16,
            flow["b"].as_str().unwrap_or_default(),
            flow["b_port"].as_u64().unwrap_or(0) as u16,
        );
        out.insert(
            (proto, a, ap, b, bp),
            Totals {
                packets: flow["packets"].as_u64().unwrap_or(0),
                bytes: flow["bytes"].as_u64().unwrap_or(0),
                a_to_b_packets: flow["a_to_b_packets"].as_u64().unwrap_or(0),
                a_to_b_bytes: flow["a_to_b_bytes"].as_u64().unwrap_or(0),
            },
        );
    }
    out
}

#[test]
fn per_flow_totals_agree_with_tshark() {
    let oracle_root = common::shared().join("corpora/oracle/tshark");
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(oracle_root.join("INDEX.json")).expect("oracle index"),
    )
    .expect("oracle index is JSON");
    let mut files_compared = 0;
    let mut flows_compared = 0;
    let mut flows_agreeing = 0;
    let mut failures: Vec<String> = Vec::new();
    let mut excepted = 0;
    for entry in index["entries"].as_array().expect("entries") {
        let file = entry["file"].as_str().unwrap_or_default();
        if entry["tshark_ok"].as_bool() != Some(true)
            || entry["has_fragments"].as_bool() != Some(false)
        {
            continue;
        }
        let capture = common::corpus().join(file);
        let oracle_path = oracle_root.join(format!("{file}.json"));
        let Ok(text) = std::fs::read_to_string(&oracle_path) else {
            continue;
        };
        let Ok(oracle) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let expected = theirs(&oracle);
        let got = ours(&capture);
        files_compared += 1;
        let exception = EXCEPTIONS.iter().find(|(f, _)| *f == file);
        let mut file_failures = Vec::new();
        for (tuple, want) in &expected {
            flows_compared += 1;
            match got.get(tuple) {
                Some(have) if have == want => flows_agreeing += 1,
                Some(have) => file_failures.push(format!(
                    "{file}: {tuple:?}: tshark {want:?}, podwire {have:?}"
                )),
                None => file_failures.push(format!(
                    "{file}: {tuple:?}: tshark {want:?}, podwire has no such flow"
                )),
            }
        }
        for tuple in got.keys() {
            if !expected.contains_key(tuple) {
                file_failures.push(format!(
                    "{file}: {tuple:?}: podwire has a flow tshark does not"
                ));
            }
        }
        if !file_failures.is_empty() {
            if exception.is_some() {
                excepted += 1;
            } else {
                failures.extend(file_failures);
            }
        }
    }
    println!(
        "tshark agreement: {files_compared} captures, {flows_agreeing}/{flows_compared} TCP/UDP flows identical, {excepted} captures excepted"
    );
    for line in failures.iter().take(400) {
        println!("MISMATCH {line}");
    }
    assert!(
        failures.is_empty(),
        "{} flow mismatches with tshark (first ones printed above)",
        failures.len()
    );
}
