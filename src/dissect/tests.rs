//! Unit tests for the dissection driver and dissectors, on real message bytes.
//!
//! TLS bytes come from `shared/corpora/pcap/rusticata-tls-parser/assets/*.bin` (raw records
//! from real captures) when the corpora are present; the other messages are embedded below,
//! copied from the captures named next to each.

#![allow(clippy::disallowed_methods)] // tests read fixtures
use super::*;

fn corpora_file(rel: &str) -> Option<Vec<u8>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpora")
        .join(rel);
    std::fs::read(p).ok()
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

fn ctx<'a>(c2s: &'a [u8], s2c: &'a [u8]) -> Ctx<'a> {
    Ctx {
        c2s,
        s2c,
        c2s_closed: false,
        s2c_closed: false,
        iport: 40000,
        rport: 9999,
        tls_memo: None,
        digests: None,
    }
}

/// Feeds a whole TCP conversation (client bytes, then server bytes) through a FlowDissector,
/// segmenting into `mss`-byte chunks.
fn run_tcp(c2s: &[u8], s2c: &[u8], rport: u16, mss: usize) -> AppInfo {
    let mut b = Budget::default();
    let mut d = FlowDissector::new(Transport::Tcp, 40000, rport);
    let (ci, si) = (1000u32, 5000u32);
    d.on_packet(
        Dir::ToResponder,
        Segment {
            seq: Some(ci),
            syn: true,
            fin: false,
            payload: &[],
        },
        0,
        &mut b,
    );
    d.on_packet(
        Dir::ToInitiator,
        Segment {
            seq: Some(si),
            syn: true,
            fin: false,
            payload: &[],
        },
        1,
        &mut b,
    );
    let mut co = 0;
    let mut so = 0;
    let mut t = 2;
    while (co < c2s.len() || so < s2c.len()) && d.wants_more() {
        if co < c2s.len() {
            let n = mss.min(c2s.len() - co);
            let seg = Segment {
                seq: Some(ci + 1 + co as u32),
                syn: false,
                fin: false,
                payload: &c2s[co..co + n],
            };
            d.on_packet(Dir::ToResponder, seg, t, &mut b);
            co += n;
        } else if so < s2c.len() {
            let n = mss.min(s2c.len() - so);
            let seg = Segment {
                seq: Some(si + 1 + so as u32),
                syn: false,
                fin: false,
                payload: &s2c[so..so + n],
            };
            d.on_packet(Dir::ToInitiator, seg, t, &mut b);
            so += n;
        }
        t += 1;
    }
    d.settle(&mut b);
    let info = d.result().clone();
    drop(d);
    assert_eq!(b.in_use(), 0);
    info
}

/// Every strict prefix of `msg` (client side) must be NeedMore for `f`.
fn prefixes_need_more(f: fn(&Ctx) -> Parse<Detected>, msg: &[u8], from: usize) {
    for n in from..msg.len() {
        let r = f(&ctx(&msg[..n], &[]));
        assert!(
            matches!(r, Parse::NeedMore),
            "prefix {n}/{} gave {:?}",
            msg.len(),
            r.as_ref_kind()
        );
    }
}

impl<T> Parse<T> {
    fn as_ref_kind(&self) -> &'static str {
        match self {
            Parse::NeedMore => "NeedMore",
            Parse::NotThis => "NotThis",
            Parse::Done(_) => "Done",
        }
    }
}

// ----- stream buffers ------------------------------------------------------------------------

#[test]
fn stream_in_order_dups_ooo_and_wrap() {
    let mut b = Budget::default();
    let mut s = StreamBuf::new(64);
    let isn = u32::MAX - 3; // wraps after 4 bytes
    s.on_syn(isn);
    let base = isn.wrapping_add(1);
    assert!(s.push(base, b"abcd", &mut b));
    assert!(!s.push(base, b"abcd", &mut b)); // duplicate
    assert!(!s.push(base.wrapping_add(8), b"ijkl", &mut b)); // out of order, held
    assert_eq!(s.data(), b"abcd");
    assert!(s.push(base.wrapping_add(2), b"cdefgh", &mut b)); // overlap + fills the hole
    assert_eq!(s.data(), b"abcdefghijkl");
    assert!(b.stats.duplicate_bytes >= 6);
    s.free();
    assert_eq!(b.in_use(), 0);
}

#[test]
fn stream_cap_and_gap_give_up() {
    let mut b = Budget::default();
    let mut s = StreamBuf::new(16);
    s.on_syn(0);
    assert!(s.push(1, &[b'x'; 20], &mut b));
    assert_eq!(s.data().len(), 16);
    assert_eq!(s.end(), StreamEnd::Full);
    let mut g = StreamBuf::new(4096);
    g.on_syn(0);
    g.push(1, b"a", &mut b);
    for i in 0..=stream::MAX_OOO_SEGMENTS as u32 {
        g.push(100 + i * 10, b"zz", &mut b);
    }
    assert_eq!(g.end(), StreamEnd::Gap);
    assert_eq!(b.stats.gaps, 1);
}

#[test]
fn budget_is_global_and_released_on_drop() {
    let mut b = Budget::new(Limits {
        per_direction: 4096,
        total: 100,
        max_packets: 24,
    });
    let mut d = FlowDissector::new(Transport::Tcp, 1, 2);
    d.on_payload(Dir::ToResponder, Some(1), false, &[0x41; 150], 0, &mut b);
    assert!(b.in_use() <= 100);
    assert!(b.stats.bytes_not_buffered >= 50 || b.stats.budget_exhausted > 0);
    drop(d);
    assert_eq!(b.in_use(), 0);
}

/// Feeds one in-order TCP segment of a flow whose handshake started at ISNs 1000 / 5000.
fn feed(d: &mut FlowDissector, b: &mut Budget, dir: Dir, offset: usize, payload: &[u8], t: u64) {
    let isn = if dir == Dir::ToResponder {
        1000u32
    } else {
        5000
    };
    let seg = Segment {
        seq: Some(isn + 1 + offset as u32),
        syn: false,
        fin: false,
        payload,
    };
    d.on_packet(dir, seg, t, b);
}

fn handshake(d: &mut FlowDissector, b: &mut Budget) {
    for (dir, isn) in [(Dir::ToResponder, 1000u32), (Dir::ToInitiator, 5000)] {
        let syn = Segment {
            seq: Some(isn),
            syn: true,
            fin: false,
            payload: &[],
        };
        d.on_packet(dir, syn, 0, b);
    }
}

#[test]
fn one_side_alone_is_analysed_when_the_reply_comes_or_on_settle() {
    let request = b"GET /a HTTP/1.1\r\nHost: shop\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n";
    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let mut b = Budget::default();

    // The reply triggers the analysis; the credential keeps the request's time.
    let mut d = FlowDissector::new(Transport::Tcp, 40000, 80);
    handshake(&mut d, &mut b);
    feed(&mut d, &mut b, Dir::ToResponder, 0, request, 10);
    assert!(d.is_pending());
    assert_eq!(
        d.result().app,
        App::Unknown,
        "deferred until the reply or settle"
    );
    feed(&mut d, &mut b, Dir::ToInitiator, 0, reply, 20);
    assert!(!d.is_pending());
    let info = d.result();
    assert_eq!(info.app, App::Http);
    assert_eq!(info.credentials.len(), 1);
    assert_eq!(
        info.credentials[0].ts_ns, 10,
        "stamped when the request crossed"
    );
    let Some(Facts::Http(h)) = &info.facts else {
        panic!("{:?}", info.facts)
    };
    assert_eq!(h.status, Some(200));

    // A live view's preview shows the deferred answer and changes nothing: the credential
    // is still stamped by the analysis the reply triggers, as without the preview.
    let mut d = FlowDissector::new(Transport::Tcp, 40000, 80);
    handshake(&mut d, &mut b);
    feed(&mut d, &mut b, Dir::ToResponder, 0, &request[..20], 10);
    feed(&mut d, &mut b, Dir::ToResponder, 20, &request[20..], 11);
    let shown = d.preview(&b).expect("deferred");
    assert_eq!(shown.app, App::Http);
    assert_eq!(shown.credentials[0].ts_ns, 11);
    assert!(d.is_pending());
    assert_eq!(d.result().app, App::Unknown);
    // More client bytes (a pipelined request) before the reply.
    feed(
        &mut d,
        &mut b,
        Dir::ToResponder,
        request.len(),
        b"GET /b HTTP/1.1\r\n",
        12,
    );
    feed(&mut d, &mut b, Dir::ToInitiator, 0, reply, 20);
    assert!(d.preview(&b).is_none(), "nothing deferred");
    assert_eq!(d.result().credentials[0].ts_ns, 12);

    // No reply: settle reads what the client sent, and the flow stays open.
    let mut d = FlowDissector::new(Transport::Tcp, 40000, 80);
    handshake(&mut d, &mut b);
    feed(&mut d, &mut b, Dir::ToResponder, 0, &request[..20], 10);
    feed(&mut d, &mut b, Dir::ToResponder, 20, &request[20..], 11);
    d.settle(&mut b);
    assert!(!d.is_pending());
    assert!(d.wants_more());
    let info = d.result();
    assert_eq!(info.app, App::Http);
    assert_eq!(info.credentials[0].ts_ns, 11);
    d.settle(&mut b); // nothing deferred: a no-op
    assert_eq!(d.result().app, App::Http);

    // A server that speaks first (SSH banner) waits for the client too, unless settled.
    let mut d = FlowDissector::new(Transport::Tcp, 40000, 22);
    handshake(&mut d, &mut b);
    feed(
        &mut d,
        &mut b,
        Dir::ToInitiator,
        0,
        b"SSH-2.0-OpenSSH_9.6\r\n",
        5,
    );
    assert_eq!(d.result().app, App::Unknown);
    feed(&mut d, &mut b, Dir::ToResponder, 0, b"SSH-2.0-Go\r\n", 6);
    assert_eq!(d.result().app, App::Ssh);
}

#[test]
fn idle_size_is_small() {
    assert!(
        std::mem::size_of::<FlowDissector>() <= 16,
        "{}",
        std::mem::size_of::<FlowDissector>()
    );
}

// ----- TLS -----------------------------------------------------------------------------------

#[test]
fn tls_client_hello_dhe_from_corpus() {
    let Some(ch) = corpora_file("pcap/rusticata-tls-parser/assets/client_hello_dhe.bin") else {
        return;
    };
    let r = tls::detect_tls(&ctx(&ch, &[]));
    let Parse::Done(d) = r else {
        panic!("not parsed")
    };
    assert_eq!(d.app, App::Tls);
    assert_eq!(d.encryption, Encryption::Encrypted);
    let Some(Facts::Tls(f)) = &d.facts else {
        panic!()
    };
    assert!(f.ja3.as_ref().is_some_and(|j| j.len() == 32));
    assert!(f.offered_cipher_count > 0);
    prefixes_need_more(tls::detect_tls, &ch, 1);
}

#[test]
fn tls_client_hello_fragmented_over_records_and_segments() {
    let (Some(a), Some(b)) = (
        corpora_file("pcap/rusticata-tls-parser/assets/tls_record_ch_fragmented_1.bin"),
        corpora_file("pcap/rusticata-tls-parser/assets/tls_record_ch_fragmented_2.bin"),
    ) else {
        return;
    };
    let mut all = a.clone();
    all.extend_from_slice(&b);
    // First record alone: need more (the ClientHello continues in the next record).
    assert!(matches!(tls::detect_tls(&ctx(&a, &[])), Parse::NeedMore));
    let Parse::Done(d) = tls::detect_tls(&ctx(&all, &[])) else {
        panic!("not parsed")
    };
    let Some(Facts::Tls(f)) = &d.facts else {
        panic!()
    };
    assert!(f.client_hello_records >= 2);
    // Through the driver in 7-byte segments.
    let info = run_tcp(&all, &[], 443, 7);
    assert_eq!(info.app, App::Tls);
    prefixes_need_more(tls::detect_tls, &all, 1);
}

#[test]
fn tls_esni_detected() {
    let Some(ch) = corpora_file("pcap/rusticata-tls-parser/assets/esni.bin") else {
        return;
    };
    if let Parse::Done(d) = tls::detect_tls(&ctx(&ch, &[])) {
        let Some(Facts::Tls(f)) = &d.facts else {
            panic!()
        };
        assert!(f.esni || f.ech);
    }
}

// ----- HTTP ----------------------------------------------------------------------------------

/// First request of dpkt/examples/data/http.pcap (145.254.160.237:3372 → 65.208.228.223:80),
/// with an Authorization header added to exercise credential detection.
const HTTP_REQ: &[u8] = b"GET /download.html HTTP/1.1\r\nHost: www.ethereal.com\r\nUser-Agent: Mozilla/5.0 (Windows; U; Windows NT 5.1; en-US; rv:1.6) Gecko/20040113\r\nAccept: text/xml\r\nAuthorization: Basic dXNlcjpwYXNzd29yZA==\r\nCookie: session=0123456789abcdef\r\n\r\n";
const HTTP_RESP: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Thu, 13 May 2004 10:17:12 GMT\r\nServer: Apache\r\nContent-Type: text/html; charset=ISO-8859-1\r\n\r\n<html>";

#[test]
fn http_request_response_and_credentials() {
    let info = run_tcp(HTTP_REQ, HTTP_RESP, 80, 50);
    assert_eq!(info.app, App::Http);
    assert_eq!(info.encryption, Encryption::Plaintext);
    let Some(Facts::Http(f)) = &info.facts else {
        panic!()
    };
    assert_eq!(f.host.as_deref(), Some("www.ethereal.com"));
    assert_eq!(f.method, Some("GET"));
    assert_eq!(f.status, Some(200));
    let kinds: Vec<_> = info.credentials.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![CredKind::HttpBasic, CredKind::Cookie]);
    assert_eq!(info.credentials[0].redacted, "dXNl…");
    let json = serde_json::to_string(&info).unwrap_or_default();
    assert!(
        !json.contains("dXNlcjpwYXNzd29yZA"),
        "secret leaked: {json}"
    );
    prefixes_need_more(http::detect_http, HTTP_REQ, 1);
}

#[test]
fn content_beats_port() {
    // SSH on port 80 is SSH; HTTP to port 22 is HTTP.
    let ssh = run_tcp(
        b"SSH-2.0-OpenSSH_8.9\r\n",
        b"SSH-2.0-OpenSSH_7.4\r\n",
        80,
        100,
    );
    assert_eq!(ssh.app, App::Ssh);
    assert_eq!(ssh.encryption, Encryption::Encrypted);
    assert_eq!(ssh.port_hint, Some(App::Http));
    let http = run_tcp(HTTP_REQ, HTTP_RESP, 22, 100);
    assert_eq!(http.app, App::Http);
}

#[test]
fn h2c_prior_knowledge_and_grpc() {
    let mut c = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    c.extend_from_slice(&hex("000000040000000000")); // empty SETTINGS
    let r = http::detect_h2(&ctx(&c, &[]));
    assert!(matches!(r, Parse::Done(ref d) if d.app == App::Http2));
    c.extend_from_slice(b"\x00\x00\x1a\x01\x04\x00\x00\x00\x01\x5f\x10application/grpc\x40\x02te");
    let r = http::detect_h2(&ctx(&c, &[]));
    assert!(matches!(r, Parse::Done(ref d) if d.app == App::Grpc));
    prefixes_need_more(http::detect_h2, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1);
}

// ----- DNS -----------------------------------------------------------------------------------

/// DNS query and response for www.google.com A, from dpkt/examples/data/dns_icmp.pcap style
/// traffic (standard query id 0x1234, one CNAME and one A answer with compression).
fn dns_pair() -> (Vec<u8>, Vec<u8>) {
    let q = hex("1234 0100 0001 0000 0000 0000 03777777 06676f6f676c65 03636f6d 00 0001 0001");
    let r = hex(
        "1234 8180 0001 0002 0000 0000 03777777 06676f6f676c65 03636f6d 00 0001 0001
                 c00c 0005 0001 0000012c 0006 03777777 c010
                 c02c 0001 0001 0000012c 0004 8efa4a44",
    );
    (q, r)
}

#[test]
fn dns_udp_query_answer_and_names_map() {
    let (q, r) = dns_pair();
    let mut b = Budget::default();
    let mut d = FlowDissector::new(Transport::Udp, 5353, 53);
    d.on_payload(Dir::ToResponder, None, false, &q, 1, &mut b);
    assert!(d.wants_more());
    d.on_payload(Dir::ToInitiator, None, false, &r, 2, &mut b);
    assert!(!d.wants_more());
    let info = d.result();
    assert_eq!(info.app, App::Dns);
    let Some(Facts::Dns(f)) = &info.facts else {
        panic!()
    };
    assert_eq!(f.queries[0].name, "www.google.com");
    assert_eq!(f.rcode.as_deref(), Some("NOERROR"));
    assert_eq!(f.answers.len(), 2);
    let mut names = DnsNames::new(4);
    names.observe(f);
    let ip: std::net::IpAddr = "142.250.74.68"
        .parse()
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    assert!(names.names_for(ip).iter().any(|n| n == "www.google.com"));
}

#[test]
fn dns_tcp_prefixes() {
    let (q, _) = dns_pair();
    let mut m = (q.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(&q);
    prefixes_need_more(dns::detect_dns_tcp, &m, 1);
    assert!(matches!(dns::detect_dns_tcp(&ctx(&m, &[])), Parse::Done(_)));
}

#[test]
fn dns_names_is_bounded_and_deterministic() {
    let mut n = DnsNames::new(16);
    for i in 0..100u8 {
        let f = DnsFacts {
            queries: vec![dns::DnsQuestion {
                name: format!("h{i}.example"),
                qtype: "A".into(),
            }],
            answers: vec![dns::DnsAnswer {
                name: format!("h{i}.example"),
                rdata: dns::DnsRdata::A(std::net::Ipv4Addr::new(10, 0, 0, i)),
                ttl: 1,
            }],
            ..Default::default()
        };
        n.observe(&f);
    }
    assert!(n.len() <= 16);
    assert_eq!(
        n.names_for(std::net::IpAddr::from([10, 0, 0, 99])),
        ["h99.example".to_string()]
    );
}

// ----- SSH, Postgres, MySQL, Redis -----------------------------------------------------------

#[test]
fn ssh_banner_prefixes() {
    prefixes_need_more(misc::detect_ssh, b"SSH-2.0-OpenSSH_5.3\r\n", 1);
}

/// Postgres SSLRequest (8 bytes) answered 'N', then StartupMessage, AuthenticationMD5Password
/// and the md5 PasswordMessage (as in suricata-verify pgsql captures).
#[test]
fn postgres_ssl_refused_then_md5_password() {
    let mut c = hex("0000000804d2162f");
    let startup = b"\x00\x03\x00\x00user\x00postgres\x00database\x00app\x00\x00";
    c.extend_from_slice(&((startup.len() + 4) as u32).to_be_bytes());
    c.extend_from_slice(startup);
    c.extend_from_slice(b"p\x00\x00\x00\x28md5a3556571e93b0d20722ba62be61e8c2d\x00");
    let mut s = b"N".to_vec();
    s.extend_from_slice(&hex("520000000c00000005 01020304"));
    let info = run_tcp(&c, &s, 5432, 9);
    assert_eq!(info.app, App::Postgres);
    assert_eq!(info.encryption, Encryption::Plaintext);
    assert_eq!(info.upgrade.as_ref().map(|u| u.accepted), Some(false));
    assert_eq!(
        info.credentials.first().map(|c| c.kind),
        Some(CredKind::PostgresMd5)
    );
    let Some(Facts::Postgres(f)) = &info.facts else {
        panic!()
    };
    assert_eq!(f.user.as_deref(), Some("postgres"));
    assert_eq!(f.auth_method, Some("md5"));
}

#[test]
fn postgres_ssl_accepted_is_encrypted() {
    let c = hex("0000000804d2162f");
    let info = run_tcp(&c, b"S", 5432, 100);
    assert_eq!(info.encryption, Encryption::Encrypted);
    assert_eq!(
        info.upgrade.as_ref().map(|u| (u.via, u.accepted)),
        Some(("ssl_request", true))
    );
}

/// MySQL 5.x server greeting (protocol 10) with CLIENT_SSL, then the client's SSL request.
#[test]
fn mysql_greeting_and_ssl_switch() {
    let mut g = vec![10u8];
    g.extend_from_slice(b"5.7.30\x00");
    g.extend_from_slice(&[1, 0, 0, 0]);
    g.extend_from_slice(b"abcdefgh\x00");
    g.extend_from_slice(&[0xff, 0xff, 0x21, 0x02, 0x00, 0xff, 0xc1, 0x15]);
    g.extend_from_slice(&[0; 10]);
    g.extend_from_slice(b"ijklmnopqrst\x00mysql_native_password\x00");
    let mut s = (g.len() as u32).to_le_bytes()[..3].to_vec();
    s.push(0);
    s.extend_from_slice(&g);
    let mut c = vec![32, 0, 0, 1];
    c.extend_from_slice(&(0x000f_a28du32 | 0x0800).to_le_bytes());
    c.extend_from_slice(&[0; 28]);
    let info = run_tcp(&c, &s, 3306, 100);
    assert_eq!(info.app, App::Mysql);
    assert_eq!(info.encryption, Encryption::Encrypted);
    let Some(Facts::Mysql(f)) = &info.facts else {
        panic!()
    };
    assert!(f.server_ssl_capable && f.ssl_switch);
    assert_eq!(f.server_version.as_deref(), Some("5.7.30"));
}

#[test]
fn redis_commands_and_auth() {
    let c = b"*2\r\n$4\r\nAUTH\r\n$11\r\nsecretpass1\r\n*1\r\n$4\r\nPING\r\n";
    let info = run_tcp(c, b"+OK\r\n+PONG\r\n", 6379, 5);
    assert_eq!(info.app, App::Redis);
    let Some(Facts::Redis(f)) = &info.facts else {
        panic!()
    };
    assert_eq!(f.commands, vec!["AUTH".to_string(), "PING".to_string()]);
    assert_eq!(info.credentials[0].kind, CredKind::RedisAuth);
    assert_eq!(info.credentials[0].redacted, "secr…");
    prefixes_need_more(sql::detect_redis, &c[..31], 1);
}

// ----- mail / STARTTLS -----------------------------------------------------------------------

#[test]
fn smtp_starttls_accepted_and_refused() {
    let s_ok = b"220 mx.example.com ESMTP Postfix\r\n250-mx.example.com\r\n250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n";
    let c = b"EHLO client.example.com\r\nSTARTTLS\r\n";
    let info = run_tcp(c, s_ok, 25, 100);
    assert_eq!(info.app, App::Smtp);
    assert_eq!(info.encryption, Encryption::Encrypted);
    let s_no = b"220 mx.example.com ESMTP\r\n250-mx.example.com\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n";
    let info = run_tcp(c, s_no, 25, 100);
    assert_eq!(info.encryption, Encryption::Plaintext);
    assert_eq!(info.upgrade.as_ref().map(|u| u.accepted), Some(false));
}

#[test]
fn ftp_user_pass_are_credentials() {
    let s = b"220 ProFTPD Server ready.\r\n331 Password required\r\n230 Logged in\r\n";
    let c = b"USER anonymous\r\nPASS guest@example.org\r\nSYST\r\nPWD\r\n";
    let info = run_tcp(c, s, 21, 100);
    assert_eq!(info.app, App::Ftp);
    let kinds: Vec<_> = info.credentials.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![CredKind::FtpUser, CredKind::FtpPass]);
}

// ----- verdicts, serialization ---------------------------------------------------------------

#[test]
fn unknown_flows_get_a_byte_hint() {
    let noise: Vec<u8> = (0..2048u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let info = run_tcp(&noise, &noise, 31337, 1000);
    assert_eq!(info.app, App::Unknown);
    assert_eq!(info.encryption, Encryption::Unknown);
    assert_eq!(info.hint, Some(ByteHint::HighEntropy));
}

#[test]
fn esp_and_wireguard_are_encrypted() {
    let mut b = Budget::default();
    let mut d = FlowDissector::new(Transport::Other(50), 0, 0);
    d.on_payload(
        Dir::ToResponder,
        None,
        false,
        &[0, 0, 1, 2, 0, 0, 0, 1, 9, 9],
        0,
        &mut b,
    );
    assert_eq!(d.result().app, App::Ipsec);
    assert!(!d.wants_more());
    let mut wg = vec![1u8, 0, 0, 0];
    wg.resize(148, 7);
    let mut d = FlowDissector::new(Transport::Udp, 40000, 51820);
    d.on_payload(Dir::ToResponder, None, false, &wg, 0, &mut b);
    assert_eq!(d.result().app, App::Wireguard);
    assert_eq!(d.result().encryption, Encryption::Encrypted);
}

#[test]
fn serialization_shape() {
    let info = run_tcp(HTTP_REQ, HTTP_RESP, 80, 1000);
    let v: serde_json::Value = serde_json::to_value(&info).unwrap_or_default();
    assert_eq!(v["app"], "http");
    assert_eq!(v["encryption"], "plaintext");
    assert!(v["sni"].is_null());
    assert_eq!(v["facts"]["http"]["host"], "www.ethereal.com");
    assert_eq!(v["credentials"][0]["kind"], "http_basic");
    assert_eq!(v["credentials"][0]["dir"], "to_responder");
}

#[test]
fn wire_strings_are_sanitized() {
    let info = run_tcp(b"SSH-2.0-evil\x1b[31mred\r\n", b"SSH-2.0-x\r\n", 22, 1000);
    let Some(Facts::Ssh(f)) = &info.facts else {
        panic!()
    };
    let banner = f.client_banner.as_deref().unwrap_or("");
    assert!(
        !banner.contains('\x1b') && banner.contains("\\x1b"),
        "{banner}"
    );
}

/// Fuzz find (dissect_all, 2026-11-29): an OP_QUERY header of 16–19 bytes made the
/// collection-name scan slice past the end.
#[test]
fn mongodb_short_op_query_header_does_not_panic() {
    for n in 16..=20 {
        let mut c = vec![0u8; n];
        c[0] = 0x20; // messageLength 32
        c[12..16].copy_from_slice(&2004u32.to_le_bytes()); // OP_QUERY
        let mut x = ctx(&c, &[]);
        x.c2s_closed = true;
        let _ = sql::detect_mongodb(&x);
        let reply = [0u8; 16];
        let _ = sql::detect_mongodb(&ctx(&c, &reply));
    }
}
