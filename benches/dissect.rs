//! Criterion benchmarks of the dissection layer on real payloads:
//! * a real TLS ClientHello (rusticata-tls-parser corpus asset) through a fresh FlowDissector,
//! * the first HTTP exchange of dpkt's http.pcap (embedded),
//! * a QUIC client Initial (RFC 9001 Appendix A) decrypted to its ClientHello,
//! * the hot path once the verdict is final (`wants_more()` false → skipped).
//!
//! Throughput is reported in bytes/s of payload fed.

#![allow(clippy::disallowed_methods)] // benches read fixtures

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podwire::dissect::{Budget, Dir, FlowDissector, Segment, Transport};
use std::hint::black_box;

const HTTP_REQ: &[u8] = b"GET /download.html HTTP/1.1\r\nHost: www.ethereal.com\r\nUser-Agent: Mozilla/5.0 (Windows; U; Windows NT 5.1; en-US; rv:1.6) Gecko/20040113\r\nAccept: text/xml,application/xml,application/xhtml+xml,text/html;q=0.9,text/plain;q=0.8,image/png,image/jpeg,image/gif;q=0.2,*/*;q=0.1\r\nAccept-Language: en-us,en;q=0.5\r\nAccept-Encoding: gzip,deflate\r\nAccept-Charset: ISO-8859-1,utf-8;q=0.7,*;q=0.7\r\nKeep-Alive: 300\r\nConnection: keep-alive\r\nReferer: http://www.ethereal.com/development.html\r\n\r\n";
const HTTP_RESP: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Thu, 13 May 2004 10:17:12 GMT\r\nServer: Apache\r\nLast-Modified: Tue, 20 Apr 2004 13:17:00 GMT\r\nContent-Type: text/html; charset=ISO-8859-1\r\n\r\n<html>";

fn client_hello() -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpora/pcap/rusticata-tls-parser/assets/client_hello_dhe.bin");
    std::fs::read(p).unwrap_or_else(|_| {
        // Minimal real-shaped ClientHello fallback when the corpora are absent.
        let mut v = vec![0x16, 3, 1, 0, 0x2f, 1, 0, 0, 0x2b, 3, 3];
        v.extend_from_slice(&[0u8; 32]);
        v.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
        v
    })
}

/// RFC 9001 Appendix A.2: the client's CRYPTO frame (a ClientHello for example.com).
fn quic_client_hello_frame() -> Vec<u8> {
    const HEX: &str = concat!(
        "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868",
        "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578",
        "616d706c652e636f6dff01000100000a00080006001d00170018001000070005",
        "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba",
        "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400",
        "0d0010000e0403050306030203080408050806002d00020101001c0002400100",
        "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000",
        "75300901100f088394c8f03e51570806048000ffff"
    );
    (0..HEX.len() / 2)
        .map(|i| u8::from_str_radix(&HEX[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

fn flow(c2s: &[u8], s2c: &[u8], rport: u16, budget: &mut Budget) -> bool {
    let mut d = FlowDissector::new(Transport::Tcp, 40000, rport);
    d.on_packet(
        Dir::ToResponder,
        Segment {
            seq: Some(1),
            syn: false,
            fin: false,
            payload: c2s,
        },
        1,
        budget,
    );
    if d.wants_more() && !s2c.is_empty() {
        d.on_packet(
            Dir::ToInitiator,
            Segment {
                seq: Some(9),
                syn: false,
                fin: false,
                payload: s2c,
            },
            2,
            budget,
        );
    }
    d.settle(budget);
    d.result().sni.is_some()
}

fn benches(c: &mut Criterion) {
    let ch = client_hello();
    let mut budget = Budget::default();
    let mut g = c.benchmark_group("dissect");
    g.throughput(Throughput::Bytes(ch.len() as u64));
    g.bench_function("tls_client_hello", |b| {
        b.iter(|| flow(black_box(&ch), &[], 443, &mut budget))
    });
    g.throughput(Throughput::Bytes((HTTP_REQ.len() + HTTP_RESP.len()) as u64));
    g.bench_function("http_exchange", |b| {
        b.iter(|| flow(black_box(HTTP_REQ), black_box(HTTP_RESP), 80, &mut budget))
    });
    // QUIC: a client Initial (RFC 9001 Appendix A's ClientHello, sealed once) decrypted and
    // read through a fresh FlowDissector: key derivation, header protection, AES-GCM, JA4.
    let quic_initial = podwire::dissect::quic::seal_client_initial(
        1,
        &[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08],
        2,
        &quic_client_hello_frame(),
    )
    .expect("sealed Initial");
    g.throughput(Throughput::Bytes(quic_initial.len() as u64));
    g.bench_function("quic_client_initial", |b| {
        b.iter(|| {
            let mut d = FlowDissector::new(Transport::Udp, 40000, 443);
            d.on_packet(
                Dir::ToResponder,
                Segment {
                    seq: None,
                    syn: false,
                    fin: false,
                    payload: black_box(&quic_initial),
                },
                1,
                &mut budget,
            );
            d.result().sni.is_some()
        })
    });
    // Hot path after the verdict: one branch.
    let mut done = FlowDissector::new(Transport::Tcp, 40000, 80);
    done.on_packet(
        Dir::ToResponder,
        Segment {
            seq: Some(1),
            syn: false,
            fin: false,
            payload: HTTP_REQ,
        },
        1,
        &mut budget,
    );
    done.on_packet(
        Dir::ToInitiator,
        Segment {
            seq: Some(9),
            syn: false,
            fin: false,
            payload: HTTP_RESP,
        },
        2,
        &mut budget,
    );
    assert!(!done.wants_more());
    g.throughput(Throughput::Bytes(1460));
    let pkt = [0u8; 1460];
    g.bench_function("after_verdict_skip", |b| {
        b.iter(|| {
            if done.wants_more() {
                done.on_packet(
                    Dir::ToResponder,
                    Segment {
                        seq: Some(1),
                        syn: false,
                        fin: false,
                        payload: &pkt,
                    },
                    3,
                    &mut budget,
                );
            }
            black_box(done.result().app)
        })
    });
    g.finish();
}

criterion_group!(b, benches);
criterion_main!(b);
