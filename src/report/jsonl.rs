//! The hand-written JSON-lines writer behind `podwire flows --format jsonl` and
//! `podwire capture --headless`.
//!
//! Why not `serde_json::to_writer(&FlowRecord)`: on a 1.5 M-packet capture the serde path
//! (escaping every key, allocating the address strings, `#[serde(flatten)]`'s map detour) cost
//! ~15 % of the whole `flows --no-dissect` run. Here the keys are pre-escaped constants, numbers
//! go through `itoa`, addresses are formatted on the stack; the most common protocol facts
//! (TLS, HTTP, DNS) are written by hand too, and only the rarer nested parts (other protocols'
//! facts, credentials, identities, verdicts) still go through serde.
//!
//! Guarantee: the bytes are exactly those of `serde_json::to_writer(&FlowRecord::from_flow(..))`
//! (same keys, order and formatting); `tests` below and the corpus test compare the two.

use std::io::{self, Write};

use serde::Serialize;

use super::FlowRecord;
use crate::decode::ipproto;
use crate::dissect::dns::{DnsFacts, DnsRdata};
use crate::dissect::http::HttpFacts;
use crate::dissect::tls::TlsFacts;
use crate::dissect::{AppInfo, Facts};
use crate::engine::Enrichment;
use crate::flow::Flow;

/// Appends one flow record and a newline to `buf` (which is not cleared).
pub fn push_flow_record(buf: &mut Vec<u8>, flow: &Flow, enrichment: Option<&Enrichment>) {
    let mut num = itoa::Buffer::new();
    let src = flow.src();
    let dst = flow.dst();
    buf.extend_from_slice(b"{\"proto\":\"");
    match ipproto::known_name(flow.key.proto) {
        Some(name) => buf.extend_from_slice(name.as_bytes()),
        None => buf.extend_from_slice(num.format(flow.key.proto).as_bytes()),
    }
    buf.extend_from_slice(b"\",\"src\":\"");
    push_addr(buf, src.addr);
    buf.extend_from_slice(b"\",\"src_port\":");
    buf.extend_from_slice(num.format(src.port).as_bytes());
    buf.extend_from_slice(b",\"dst\":\"");
    push_addr(buf, dst.addr);
    buf.extend_from_slice(b"\",\"dst_port\":");
    buf.extend_from_slice(num.format(dst.port).as_bytes());
    for (key, value) in [
        (&b",\"packets_fwd\":"[..], flow.fwd.packets),
        (b",\"bytes_fwd\":", flow.fwd.bytes),
        (b",\"packets_rev\":", flow.rev.packets),
        (b",\"bytes_rev\":", flow.rev.bytes),
        (b",\"start_ns\":", flow.first_ns),
        (b",\"end_ns\":", flow.last_ns),
    ] {
        buf.extend_from_slice(key);
        buf.extend_from_slice(num.format(value).as_bytes());
    }
    buf.extend_from_slice(b",\"tunnel\":");
    push_opt_name(buf, flow.tunnel.map(|t| t.as_str()));
    buf.extend_from_slice(if flow.key.outer {
        b",\"outer\":true,\"tcp_state\":"
    } else {
        b",\"outer\":false,\"tcp_state\":"
    });
    push_opt_name(buf, flow.tcp.as_ref().map(|t| t.state.as_str()));
    buf.extend_from_slice(b",\"tcp\":");
    match &flow.tcp {
        None => buf.extend_from_slice(b"null"),
        Some(t) => {
            buf.extend_from_slice(b"{\"handshake\":");
            push_bool(buf, t.handshake);
            buf.extend_from_slice(b",\"midstream\":");
            push_bool(buf, t.midstream);
            buf.extend_from_slice(b",\"rtt_ns\":");
            match t.rtt_ns {
                Some(rtt) => buf.extend_from_slice(num.format(rtt).as_bytes()),
                None => buf.extend_from_slice(b"null"),
            }
            buf.push(b'}');
        }
    }
    buf.extend_from_slice(b",\"interfaces\":[");
    let mut first = true;
    let mut bits = flow.ifaces;
    while bits != 0 {
        let index = bits.trailing_zeros();
        bits &= bits - 1;
        if !first {
            buf.push(b',');
        }
        first = false;
        buf.extend_from_slice(num.format(index).as_bytes());
    }
    buf.extend_from_slice(b"],\"end_reason\":\"");
    buf.extend_from_slice(flow.end.as_str().as_bytes());
    buf.push(b'"');
    push_app(buf, flow.app.result());
    buf.extend_from_slice(b",\"src_identity\":");
    push_serde(buf, &enrichment.map(|e| &e.src_identity));
    buf.extend_from_slice(b",\"dst_identity\":");
    push_serde(buf, &enrichment.map(|e| &e.dst_identity));
    buf.extend_from_slice(b",\"verdict\":");
    push_serde(buf, &enrichment.and_then(|e| e.verdict.as_ref()));
    if let Some(target) = enrichment.and_then(|e| e.verdict_target.as_deref()) {
        buf.extend_from_slice(b",\"verdict_target\":");
        push_str(buf, target);
    }
    buf.extend_from_slice(b"}\n");
}

/// The flattened `AppInfo` fields, in the struct's order.
fn push_app(buf: &mut Vec<u8>, info: &AppInfo) {
    buf.extend_from_slice(b",\"app\":\"");
    buf.extend_from_slice(info.app.name().as_bytes());
    buf.extend_from_slice(b"\",\"encryption\":\"");
    buf.extend_from_slice(info.encryption.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"sni\":");
    match &info.sni {
        Some(sni) => push_str(buf, sni),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"service\":");
    push_opt_name(buf, info.service);
    buf.extend_from_slice(b",\"port_hint\":");
    push_opt_name(buf, info.port_hint.map(|a| a.name()));
    buf.extend_from_slice(b",\"hint\":");
    push_opt_name(buf, info.hint.map(|h| h.as_str()));
    buf.extend_from_slice(b",\"midstream\":");
    push_bool(buf, info.midstream);
    buf.extend_from_slice(b",\"upgrade\":");
    push_serde(buf, &info.upgrade);
    buf.extend_from_slice(b",\"facts\":");
    push_facts(buf, info.facts.as_ref());
    buf.extend_from_slice(b",\"credentials\":");
    if info.credentials.is_empty() {
        buf.extend_from_slice(b"[]");
    } else {
        push_serde(buf, &info.credentials);
    }
}

/// Protocol facts: the common shapes (TLS, HTTP, DNS) by hand, the rest through serde.
fn push_facts(buf: &mut Vec<u8>, facts: Option<&Facts>) {
    match facts {
        None => buf.extend_from_slice(b"null"),
        Some(Facts::Http(http)) => {
            buf.extend_from_slice(b"{\"http\":");
            push_http(buf, http);
            buf.push(b'}');
        }
        Some(Facts::Tls(tls)) => {
            buf.extend_from_slice(b"{\"tls\":");
            push_tls(buf, tls);
            buf.push(b'}');
        }
        Some(Facts::Dns(dns)) => {
            buf.extend_from_slice(b"{\"dns\":");
            push_dns(buf, dns);
            buf.push(b'}');
        }
        Some(other) => push_serde(buf, other),
    }
}

fn push_tls(buf: &mut Vec<u8>, tls: &TlsFacts) {
    let mut num = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"record_version\":");
    push_opt_str(buf, tls.record_version.as_deref());
    buf.extend_from_slice(b",\"client_version\":");
    push_opt_str(buf, tls.client_version.as_deref());
    buf.extend_from_slice(b",\"offered_versions\":");
    push_str_list(buf, &tls.offered_versions);
    buf.extend_from_slice(b",\"selected_version\":");
    push_opt_str(buf, tls.selected_version.as_deref());
    buf.extend_from_slice(b",\"cipher_suite\":");
    push_opt_str(buf, tls.cipher_suite.as_deref());
    buf.extend_from_slice(b",\"offered_cipher_count\":");
    buf.extend_from_slice(num.format(tls.offered_cipher_count).as_bytes());
    buf.extend_from_slice(b",\"alpn\":");
    push_str_list(buf, &tls.alpn);
    buf.extend_from_slice(b",\"alpn_selected\":");
    push_opt_str(buf, tls.alpn_selected.as_deref());
    buf.extend_from_slice(b",\"hello_retry_request\":");
    push_bool(buf, tls.hello_retry_request);
    buf.extend_from_slice(b",\"ech\":");
    push_bool(buf, tls.ech);
    buf.extend_from_slice(b",\"esni\":");
    push_bool(buf, tls.esni);
    buf.extend_from_slice(b",\"client_cert_requested\":");
    match tls.client_cert_requested {
        Some(requested) => push_bool(buf, requested),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"ja3\":");
    push_opt_str(buf, tls.ja3.as_deref());
    buf.extend_from_slice(b",\"ja3s\":");
    push_opt_str(buf, tls.ja3s.as_deref());
    buf.extend_from_slice(b",\"ja4\":");
    push_opt_str(buf, tls.ja4.as_deref());
    buf.extend_from_slice(b",\"client_hello_records\":");
    buf.extend_from_slice(num.format(tls.client_hello_records).as_bytes());
    buf.extend_from_slice(b",\"sslv2_hello\":");
    push_bool(buf, tls.sslv2_hello);
    buf.push(b'}');
}

fn push_str_list(buf: &mut Vec<u8>, values: &[impl AsRef<str>]) {
    buf.push(b'[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_str(buf, value.as_ref());
    }
    buf.push(b']');
}

fn push_http(buf: &mut Vec<u8>, http: &HttpFacts) {
    let mut num = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"method\":");
    push_opt_str(buf, http.method);
    buf.extend_from_slice(b",\"host\":");
    push_opt_str(buf, http.host.as_deref());
    buf.extend_from_slice(b",\"path\":");
    push_opt_str(buf, http.path.as_deref());
    buf.extend_from_slice(b",\"user_agent\":");
    push_opt_str(buf, http.user_agent.as_deref());
    buf.extend_from_slice(b",\"version\":");
    push_opt_str(buf, http.version);
    buf.extend_from_slice(b",\"status\":");
    match http.status {
        Some(status) => buf.extend_from_slice(num.format(status).as_bytes()),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"content_type\":");
    push_opt_str(buf, http.content_type.as_deref());
    buf.extend_from_slice(b",\"upgrade\":");
    push_opt_str(buf, http.upgrade.as_deref());
    buf.extend_from_slice(b",\"server\":");
    push_opt_str(buf, http.server.as_deref());
    buf.push(b'}');
}

fn push_dns(buf: &mut Vec<u8>, dns: &DnsFacts) {
    let mut num = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"queries\":[");
    for (i, query) in dns.queries.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"name\":");
        push_str(buf, &query.name);
        buf.extend_from_slice(b",\"qtype\":");
        push_str(buf, &query.qtype);
        buf.push(b'}');
    }
    buf.extend_from_slice(b"],\"answers\":[");
    for (i, answer) in dns.answers.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"name\":");
        push_str(buf, &answer.name);
        match &answer.rdata {
            DnsRdata::A(v4) => {
                buf.extend_from_slice(b",\"type\":\"a\",\"data\":\"");
                push_ipv4(buf, *v4);
                buf.push(b'"');
            }
            DnsRdata::Aaaa(v6) => {
                buf.extend_from_slice(b",\"type\":\"aaaa\",\"data\":\"");
                push_display(buf, v6);
                buf.push(b'"');
            }
            DnsRdata::Cname(name) => {
                buf.extend_from_slice(b",\"type\":\"cname\",\"data\":");
                push_str(buf, name);
            }
        }
        buf.extend_from_slice(b",\"ttl\":");
        buf.extend_from_slice(num.format(answer.ttl).as_bytes());
        buf.push(b'}');
    }
    buf.extend_from_slice(b"],\"rcode\":");
    push_opt_str(buf, dns.rcode.as_deref());
    for (key, value) in [
        (&b",\"messages\":"[..], dns.messages),
        (b",\"responses\":", dns.responses),
        (b",\"other_answers\":", dns.other_answers),
    ] {
        buf.extend_from_slice(key);
        buf.extend_from_slice(num.format(value).as_bytes());
    }
    buf.extend_from_slice(b",\"truncated\":");
    push_bool(buf, dns.truncated);
    buf.push(b'}');
}

fn push_opt_str(buf: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => push_str(buf, value),
        None => buf.extend_from_slice(b"null"),
    }
}

fn push_bool(buf: &mut Vec<u8>, value: bool) {
    buf.extend_from_slice(if value { b"true" } else { b"false" });
}

/// A constant identifier-like name (no escaping needed) or null.
fn push_opt_name(buf: &mut Vec<u8>, name: Option<&str>) {
    match name {
        Some(name) => {
            buf.push(b'"');
            buf.extend_from_slice(name.as_bytes());
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
}

/// A JSON string; plain printable ASCII is copied, anything else goes through serde_json so
/// the escaping is exactly serde's.
fn push_str(buf: &mut Vec<u8>, value: &str) {
    // A fold without early exit: the compiler vectorises it, and strings here are short.
    let plain = value.bytes().fold(true, |plain, b| {
        plain & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
    });
    if plain {
        buf.push(b'"');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'"');
    } else {
        push_serde(buf, &value);
    }
}

fn push_serde<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    // Writing into a Vec cannot fail, and these types serialize infallibly.
    let _ = serde_json::to_writer(&mut *buf, value);
}

/// An address as `Display` writes it; IPv4 (nearly every pod address) without the
/// formatting machinery.
fn push_addr(buf: &mut Vec<u8>, addr: std::net::IpAddr) {
    match addr {
        std::net::IpAddr::V4(v4) => push_ipv4(buf, v4),
        std::net::IpAddr::V6(v6) => push_display(buf, &v6),
    }
}

fn push_ipv4(buf: &mut Vec<u8>, addr: std::net::Ipv4Addr) {
    let mut num = itoa::Buffer::new();
    for (i, octet) in addr.octets().into_iter().enumerate() {
        if i > 0 {
            buf.push(b'.');
        }
        buf.extend_from_slice(num.format(octet).as_bytes());
    }
}

fn push_display(buf: &mut Vec<u8>, value: &impl std::fmt::Display) {
    let _ = write!(buf, "{value}");
}

/// Writes one record through a reusable scratch buffer (one `write_all` per record).
pub fn write_flow_record(
    out: &mut dyn Write,
    scratch: &mut Vec<u8>,
    flow: &Flow,
    enrichment: Option<&Enrichment>,
) -> io::Result<()> {
    scratch.clear();
    push_flow_record(scratch, flow, enrichment);
    out.write_all(scratch)
}

/// The serde reference the fast path must match byte for byte (tests only).
pub fn serde_flow_record(flow: &Flow, enrichment: Option<&Enrichment>) -> Vec<u8> {
    let mut out = serde_json::to_vec(&FlowRecord::from_flow(flow, enrichment)).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::{App, ByteHint, Encryption};
    use crate::flow::EndReason;

    fn serde_name<T: Serialize>(value: T) -> String {
        serde_json::to_string(&value).unwrap_or_default()
    }

    #[test]
    fn enum_names_are_serdes() {
        for e in [
            Encryption::Encrypted,
            Encryption::Plaintext,
            Encryption::Unknown,
        ] {
            assert_eq!(serde_name(e), format!("\"{}\"", e.as_str()));
        }
        for e in [
            EndReason::Active,
            EndReason::Idle,
            EndReason::Evicted,
            EndReason::Reused,
        ] {
            assert_eq!(serde_name(e), format!("\"{}\"", e.as_str()));
        }
        for h in [
            ByteHint::HighEntropy,
            ByteHint::Printable,
            ByteHint::Binary,
            ByteHint::TooFewBytes,
        ] {
            assert_eq!(serde_name(h), format!("\"{}\"", h.as_str()));
        }
        for a in App::ALL {
            assert_eq!(serde_name(a), format!("\"{}\"", a.name()));
        }
    }

    #[test]
    fn ipv4_formats_like_display() {
        for addr in [
            "0.0.0.0",
            "10.244.1.10",
            "255.255.255.255",
            "169.254.169.254",
        ] {
            let v4: std::net::Ipv4Addr = addr.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            let mut fast = Vec::new();
            push_ipv4(&mut fast, v4);
            assert_eq!(fast, v4.to_string().into_bytes());
        }
    }

    #[test]
    fn strings_escape_like_serde() {
        for s in [
            "plain.example",
            "quote\"d",
            "back\\slash",
            "tab\there",
            "ünï",
            "\u{7f}",
        ] {
            let mut fast = Vec::new();
            push_str(&mut fast, s);
            assert_eq!(fast, serde_json::to_vec(s).unwrap_or_default(), "{s:?}");
        }
    }
}
