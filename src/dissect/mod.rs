//! Application-protocol dissection: what a flow speaks, whether it is encrypted, typed facts and
//! cleartext-credential sightings.
//!
//! This module is pure: no I/O, no clock (times come from the caller's packet timestamps), no
//! threads, no randomness. The same packets in the same order give the same [`AppInfo`].
//! Malformed input is data: nothing here panics on any byte sequence (see the fuzz targets).
//!
//! # Contract with the flow table
//!
//! One [`FlowDissector`] per flow, created when the flow is created:
//!
//! ```text
//! let mut budget = Budget::new(Limits::default());          // one per engine
//! let mut d = FlowDissector::new(Transport::Tcp, initiator_port, responder_port);
//! // for every packet of the flow that carries payload (or SYN/FIN for TCP):
//! if d.wants_more() {
//!     d.on_packet(dir, Segment { seq: Some(seq), syn, fin, payload }, ts_ns, &mut budget);
//! }
//! d.settle(&mut budget);                                     // before reading a result
//! let info: &AppInfo = d.result();                           // final once !wants_more()
//! ```
//!
//! * `dir` is [`Dir::ToResponder`] for packets sent by the initiator (SYN sender, else the
//!   first sender) and [`Dir::ToInitiator`] for the others.
//! * TCP: pass the segment's sequence number, and the SYN / FIN flags (SYN sets the ISN, so
//!   stream byte 0 is `seq + 1`; without a SYN the first segment seen starts the stream and the
//!   result says `midstream`). UDP / other transports: `seq: None`, flags false; each call is
//!   one datagram.
//! * Once [`FlowDissector::wants_more`] is false the verdict is final and every buffer has been
//!   freed; the flow table should stop calling (the hot path is then a single branch).
//! * Buffers are charged to the shared [`Budget`] and returned when the verdict is final or
//!   when the `FlowDissector` is dropped (the lease is released on drop, so an evicted flow
//!   never leaks budget). The budget's [`BudgetStats`] count what could not be buffered.
//! * TCP analysis waits until it can matter: while only one side has spoken (and neither
//!   direction ended, and the packet limit is not reached) the bytes are buffered and the
//!   analysis is deferred. A ClientHello or an HTTP request alone is followed by the reply
//!   in nearly every flow, and the analysis after the reply reads both sides, so analysing
//!   the first side alone was a second full parse per flow (about 7 % of a run).
//!   [`FlowDissector::settle`] runs a deferred analysis: the engine settles every flow as it
//!   leaves the flow table, so a flow whose server never answered is still reported with
//!   what its client sent. Live views use [`FlowDissector::preview`], which shows the same
//!   answer without changing the flow, so what a view looked at (and when) never changes a
//!   final record. Credentials are stamped with the time of the last packet that grew their
//!   direction before the analysis that found them.
//! * Each analysis re-runs the candidate dissectors on the whole buffered prefix (they are
//!   functions of `Ctx`); the one exception is a per-flow memo of the last ClientHello
//!   read (`tls::ClientMemo`), valid because the prefix only grows, so a TLS flow's client
//!   bytes are parsed once although the flow is analysed after each side speaks.
//! * DNS results: after a flow's verdict, `if let Some(Facts::Dns(f)) = &info.facts
//!   { dns_names.observe(f) }` feeds the bounded [`DnsNames`] map (IP → names).
//!
//! Idle size: `size_of::<FlowDissector>()` is 16 bytes; all state is boxed and allocated on the
//! first payload byte. While the verdict is open a working-state box holds the stream buffers
//! (at most `Limits::per_direction` bytes each) and the credential and QUIC state; it is freed
//! as soon as the verdict is final, leaving the 128-byte result box and what the facts own.
//!
//! # Identification
//!
//! Dissectors decide by content. Each returns need-more-bytes / not-this-protocol / parsed.
//! Ports are only a hint: they order the candidates (so the port's protocol wins a tie) and are
//! reported as `port_hint` when content alone cannot decide. SSH on port 80 is SSH.

mod digest;
pub mod dns;
mod hello;
pub mod http;
mod ja4;
pub mod mail;
pub mod misc;
pub mod quic;
pub mod sql;
pub mod stream;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

pub use dns::{DnsFacts, DnsNames};
pub use stream::{StreamBuf, StreamEnd};

/// Direction of a packet relative to the flow's initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Sent by the initiator (client → server).
    ToResponder,
    /// Sent by the responder (server → client).
    ToInitiator,
}

impl Dir {
    fn idx(self) -> usize {
        match self {
            Dir::ToResponder => 0,
            Dir::ToInitiator => 1,
        }
    }
}

/// Transport protocol of the flow, as the flow table decoded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
    Sctp,
    /// Any other IP protocol, with its number (50 = ESP).
    Other(u8),
}

/// One packet's worth of input.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// TCP sequence number of the first payload byte (or of the SYN/FIN). `None` for UDP.
    pub seq: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub payload: &'a [u8],
}

/// The application protocol a flow speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum App {
    #[default]
    Unknown,
    Tls,
    Http,
    Http2,
    Grpc,
    Dns,
    Ssh,
    Postgres,
    Mysql,
    Redis,
    Mongodb,
    Kafka,
    Amqp,
    Mqtt,
    Memcached,
    Ldap,
    Smtp,
    Imap,
    Pop3,
    Ftp,
    Telnet,
    Quic,
    Dtls,
    Wireguard,
    Ipsec,
    Ike,
}

impl App {
    /// Every protocol, in declaration order.
    pub const ALL: [App; 26] = [
        App::Unknown,
        App::Tls,
        App::Http,
        App::Http2,
        App::Grpc,
        App::Dns,
        App::Ssh,
        App::Postgres,
        App::Mysql,
        App::Redis,
        App::Mongodb,
        App::Kafka,
        App::Amqp,
        App::Mqtt,
        App::Memcached,
        App::Ldap,
        App::Smtp,
        App::Imap,
        App::Pop3,
        App::Ftp,
        App::Telnet,
        App::Quic,
        App::Dtls,
        App::Wireguard,
        App::Ipsec,
        App::Ike,
    ];

    /// Lowercase name, as serialized.
    pub fn name(self) -> &'static str {
        match self {
            App::Unknown => "unknown",
            App::Tls => "tls",
            App::Http => "http",
            App::Http2 => "http2",
            App::Grpc => "grpc",
            App::Dns => "dns",
            App::Ssh => "ssh",
            App::Postgres => "postgres",
            App::Mysql => "mysql",
            App::Redis => "redis",
            App::Mongodb => "mongodb",
            App::Kafka => "kafka",
            App::Amqp => "amqp",
            App::Mqtt => "mqtt",
            App::Memcached => "memcached",
            App::Ldap => "ldap",
            App::Smtp => "smtp",
            App::Imap => "imap",
            App::Pop3 => "pop3",
            App::Ftp => "ftp",
            App::Telnet => "telnet",
            App::Quic => "quic",
            App::Dtls => "dtls",
            App::Wireguard => "wireguard",
            App::Ipsec => "ipsec",
            App::Ike => "ike",
        }
    }
}

/// Encryption verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// An encrypted protocol was recognised (or a cleartext protocol upgraded to TLS).
    Encrypted,
    /// A cleartext protocol was recognised.
    Plaintext,
    /// Nothing recognised; see `AppInfo::hint`.
    #[default]
    Unknown,
}

impl Encryption {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Encrypted => "encrypted",
            Encryption::Plaintext => "plaintext",
            Encryption::Unknown => "unknown",
        }
    }
}

/// Byte-statistics hint for flows whose protocol is unknown. A hint, not a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ByteHint {
    /// Shannon entropy ≥ 7.0 bits/byte over ≥ 128 bytes: looks encrypted or compressed.
    HighEntropy,
    /// ≥ 90 % printable ASCII: looks like a text protocol.
    Printable,
    /// Neither: binary, structured.
    Binary,
    /// Too few bytes to say.
    TooFewBytes,
}

impl ByteHint {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            ByteHint::HighEntropy => "high_entropy",
            ByteHint::Printable => "printable",
            ByteHint::Binary => "binary",
            ByteHint::TooFewBytes => "too_few_bytes",
        }
    }
}

/// A STARTTLS-style upgrade (SMTP/IMAP/POP3 STARTTLS, FTP AUTH TLS, Postgres SSLRequest,
/// MySQL SSL switch, LDAP StartTLS).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Upgrade {
    /// "starttls", "stls", "auth_tls", "ssl_request", "gssenc_request", "mysql_ssl",
    /// "ldap_starttls", "http_connect" (a proxy tunnel, TLS inside).
    pub via: &'static str,
    /// True when the server accepted; the flow is then `encrypted`.
    pub accepted: bool,
    /// The TLS ClientHello/ServerHello seen after the upgrade, when visible.
    pub tls: Option<Box<tls::TlsFacts>>,
}

/// What kind of credential crossed the wire in clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredKind {
    HttpBasic,
    HttpBearer,
    HttpOtherAuth,
    Cookie,
    RedisAuth,
    PostgresCleartext,
    PostgresMd5,
    PostgresSasl,
    MysqlAuth,
    LdapSimpleBind,
    FtpUser,
    FtpPass,
    SmtpAuth,
    ImapLogin,
    ImapAuthenticate,
    Pop3User,
    Pop3Pass,
    Pop3Apop,
    Pop3Auth,
    TelnetLogin,
    MqttPassword,
    AmqpPlain,
    MongodbSasl,
}

/// A credential sighting. The secret itself is never stored: only a ≤ 4-character prefix
/// followed by `…` (empty when even that would reveal too much, e.g. short secrets).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Credential {
    pub kind: CredKind,
    pub dir: Dir,
    /// Timestamp (ns) of the last packet of `dir` before the analysis that found it: the
    /// credential had crossed by then (analyses run when the other side answers, when a
    /// direction ends, or when the flow is settled).
    pub ts_ns: u64,
    /// At most 4 sanitized characters and `…`, e.g. `dXNl…`.
    pub redacted: String,
}

/// Protocol-specific facts, serialized as `{"<protocol>": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Facts {
    Tls(Box<tls::TlsFacts>),
    Dtls(Box<tls::TlsFacts>),
    Http(Box<http::HttpFacts>),
    Http2(Box<http::Http2Facts>),
    Dns(Box<DnsFacts>),
    Ssh(Box<misc::SshFacts>),
    Postgres(Box<sql::PostgresFacts>),
    Mysql(Box<sql::MysqlFacts>),
    Redis(Box<sql::RedisFacts>),
    Mongodb(Box<sql::MongoFacts>),
    Kafka(Box<sql::KafkaFacts>),
    Memcached(Box<sql::MemcachedFacts>),
    Amqp(Box<misc::AmqpFacts>),
    Mqtt(Box<misc::MqttFacts>),
    Ldap(Box<misc::LdapFacts>),
    /// SMTP, IMAP, POP3 and FTP share one shape.
    Mail(Box<mail::MailFacts>),
    Telnet(Box<misc::TelnetFacts>),
    Quic(Box<quic::QuicFacts>),
    Wireguard(Box<misc::WireguardFacts>),
    Ipsec(Box<misc::IpsecFacts>),
}

impl Facts {
    /// Returns the spare capacity of the facts' lists once they are final. A finished flow
    /// can stay in the table for minutes (a DNS flow lives out its 60 s UDP timeout), and a
    /// list grown by `push` holds room for 4: a one-question, one-answer DNS flow kept
    /// ~300 bytes it never used.
    fn shrink(&mut self) {
        match self {
            Facts::Dns(dns) => {
                dns.queries.shrink_to_fit();
                dns.answers.shrink_to_fit();
            }
            Facts::Tls(tls) | Facts::Dtls(tls) => {
                tls.offered_versions.shrink_to_fit();
                tls.alpn.shrink_to_fit();
            }
            _ => {}
        }
    }
}

/// The dissection result of one flow. Serialized as fields of the flow record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppInfo {
    pub app: App,
    pub encryption: Encryption,
    /// TLS/DTLS/QUIC server name (sanitized), also after a STARTTLS upgrade.
    pub sni: Option<String>,
    /// Well-known service guessed from SNI/port over TLS: "etcd", "kubelet", "kube-apiserver".
    pub service: Option<&'static str>,
    /// The protocol the ports suggest, when it differs from `app` (or `app` is unknown).
    pub port_hint: Option<App>,
    /// Byte statistics of the first bytes, only when `app` is unknown.
    pub hint: Option<ByteHint>,
    /// True when the TCP handshake was not seen (stream picked up mid-way).
    pub midstream: bool,
    pub upgrade: Option<Upgrade>,
    pub facts: Option<Facts>,
    pub credentials: Vec<Credential>,
}

impl AppInfo {
    /// The result before anything was seen.
    pub const UNKNOWN: AppInfo = AppInfo {
        app: App::Unknown,
        encryption: Encryption::Unknown,
        sni: None,
        service: None,
        port_hint: None,
        hint: None,
        midstream: false,
        upgrade: None,
        facts: None,
        credentials: Vec::new(),
    };
}

impl Default for AppInfo {
    fn default() -> Self {
        AppInfo::UNKNOWN
    }
}

static UNKNOWN_INFO: AppInfo = AppInfo::UNKNOWN;

/// Caps on buffering.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes kept per TCP direction (the first N bytes of the stream). Default 4096.
    pub per_direction: usize,
    /// Bytes buffered across all flows. Default 64 MiB.
    pub total: usize,
    /// Payload-carrying packets after which an undecided flow is declared unknown. Default 24.
    pub max_packets: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_direction: 4096,
            total: 64 << 20,
            max_packets: 24,
        }
    }
}

/// Counters of what the dissection layer could not keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BudgetStats {
    /// Payload bytes not buffered (beyond the per-direction window, after a gap, or over budget).
    pub bytes_not_buffered: u64,
    /// Bytes already seen (retransmissions, overlaps), dropped by sequence number.
    pub duplicate_bytes: u64,
    /// Directions that gave up because a hole was never filled.
    pub gaps: u64,
    /// Times a buffer could not grow because the global budget was exhausted.
    pub budget_exhausted: u64,
}

/// Global buffering budget shared by every flow of one engine.
#[derive(Debug)]
pub struct Budget {
    pub limits: Limits,
    in_use: Arc<AtomicUsize>,
    pub stats: BudgetStats,
    /// Shared by the engine's flows like the buffer budget: a bounded memo of TLS
    /// fingerprint digests (see `digest`).
    digests: std::cell::RefCell<digest::DigestMemo>,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            in_use: Arc::new(AtomicUsize::new(0)),
            stats: BudgetStats::default(),
            digests: Default::default(),
        }
    }

    /// Bytes currently buffered across all flows.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    pub(crate) fn try_charge(&mut self, lease: &mut Lease, n: usize) -> bool {
        let cur = self.in_use.load(Ordering::Relaxed);
        if cur.saturating_add(n) > self.limits.total {
            return false;
        }
        self.in_use.fetch_add(n, Ordering::Relaxed);
        if lease.counter.is_none() {
            lease.counter = Some(Arc::clone(&self.in_use));
        }
        lease.n += n;
        true
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(Limits::default())
    }
}

/// Bytes one buffer holds against the budget; returned on release or drop.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    counter: Option<Arc<AtomicUsize>>,
    n: usize,
}

impl Lease {
    pub(crate) fn release(&mut self, n: usize) {
        let n = n.min(self.n);
        self.n -= n;
        if let Some(c) = &self.counter {
            c.fetch_sub(n, Ordering::Relaxed);
        }
    }
    pub(crate) fn release_all(&mut self) {
        self.release(self.n);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release_all();
    }
}

// ---------------------------------------------------------------------------------------------
// Internal dissector interface
// ---------------------------------------------------------------------------------------------

/// Outcome of one parser.
#[derive(Debug, PartialEq)]
pub enum Parse<T> {
    /// Could be this protocol; more bytes are needed to say.
    NeedMore,
    /// Definitely not this protocol (or malformed).
    NotThis,
    /// Parsed.
    Done(T),
}

/// What a dissector saw in the buffered bytes of a flow.
pub(crate) struct Ctx<'a> {
    /// Initiator → responder bytes (TCP: reassembled prefix; UDP: one datagram or empty).
    pub c2s: &'a [u8],
    /// Responder → initiator bytes.
    pub s2c: &'a [u8],
    /// No more bytes will come in this direction (FIN, cap, gap).
    pub c2s_closed: bool,
    pub s2c_closed: bool,
    pub iport: u16,
    pub rport: u16,
    /// The flow's memo of its last ClientHello parse (TCP flows; `None` elsewhere).
    pub tls_memo: Option<&'a tls::ClientMemoCell>,
    /// The engine's memo of fingerprint digests (`None`: digests are computed each time).
    pub digests: Option<&'a std::cell::RefCell<digest::DigestMemo>>,
}

impl Ctx<'_> {
    pub fn port_is(&self, ports: &[u16]) -> bool {
        ports.contains(&self.rport) || ports.contains(&self.iport)
    }
}

/// A dissector's finding.
#[derive(Debug)]
pub(crate) struct Detected {
    pub app: App,
    pub encryption: Encryption,
    pub sni: Option<String>,
    pub service: Option<&'static str>,
    pub upgrade: Option<Upgrade>,
    pub facts: Option<Facts>,
    pub creds: Vec<(CredKind, Dir, String)>,
    /// True when more bytes cannot change the answer.
    pub complete: bool,
}

impl Detected {
    pub fn new(app: App, encryption: Encryption, facts: Option<Facts>, complete: bool) -> Self {
        Detected {
            app,
            encryption,
            sni: None,
            service: None,
            upgrade: None,
            facts,
            creds: Vec::new(),
            complete,
        }
    }
}

/// Redacts a secret: at most 4 sanitized characters then `…`; secrets shorter than 8 bytes
/// keep no prefix at all.
pub fn redact(secret: &[u8]) -> String {
    if secret.len() < 8 {
        return "…".to_string();
    }
    let mut s = crate::sanitize::sanitize_bytes(&secret[..4]);
    s.truncate(s.char_indices().nth(4).map_or(s.len(), |(i, _)| i));
    s.push('…');
    s
}

/// Computes the byte-statistics hint for unknown flows.
pub fn byte_hint(a: &[u8], b: &[u8]) -> ByteHint {
    let n = a.len() + b.len();
    if n < 16 {
        return ByteHint::TooFewBytes;
    }
    let mut hist = [0u32; 256];
    let mut printable = 0usize;
    for &x in a.iter().chain(b.iter()) {
        hist[x as usize] += 1;
        if (0x20..0x7f).contains(&x) || x == b'\r' || x == b'\n' || x == b'\t' {
            printable += 1;
        }
    }
    if printable * 10 >= n * 9 {
        return ByteHint::Printable;
    }
    let nf = n as f64;
    let h: f64 = hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / nf;
            -p * p.log2()
        })
        .sum();
    // Entropy estimates are biased low on small samples: max is log2(n) for n < 256.
    let max = nf.log2().min(8.0);
    if n >= 128 && h >= 7.0 || (32..128).contains(&n) && h >= max * 0.9 {
        ByteHint::HighEntropy
    } else {
        ByteHint::Binary
    }
}

/// Protocol suggested by a well-known port (used only as a hint and to order candidates).
pub fn port_app(transport: Transport, port: u16) -> Option<App> {
    let app = match (transport, port) {
        (Transport::Tcp, 443 | 8443 | 6443 | 2379 | 2380 | 10250 | 636 | 993 | 995 | 465) => {
            App::Tls
        }
        (Transport::Tcp, 80 | 8080 | 8000) => App::Http,
        (_, 53) => App::Dns,
        (Transport::Tcp, 22) => App::Ssh,
        (Transport::Tcp, 5432) => App::Postgres,
        (Transport::Tcp, 3306) => App::Mysql,
        (Transport::Tcp, 6379) => App::Redis,
        (Transport::Tcp, 27017) => App::Mongodb,
        (Transport::Tcp, 9092) => App::Kafka,
        (Transport::Tcp, 5672) => App::Amqp,
        (Transport::Tcp, 1883) => App::Mqtt,
        (_, 11211) => App::Memcached,
        (_, 389) => App::Ldap,
        (Transport::Tcp, 25 | 587) => App::Smtp,
        (Transport::Tcp, 143) => App::Imap,
        (Transport::Tcp, 110) => App::Pop3,
        (Transport::Tcp, 21) => App::Ftp,
        (Transport::Tcp, 23) => App::Telnet,
        (Transport::Udp, 443) => App::Quic,
        (Transport::Udp, 51820) => App::Wireguard,
        (Transport::Udp, 4500) => App::Ipsec,
        (Transport::Udp, 500) => App::Ike,
        _ => return None,
    };
    Some(app)
}

type DetectFn = fn(&Ctx) -> Parse<Detected>;

/// TCP dissectors, in default order (strong signatures first, weak ones last).
const TCP_DISSECTORS: &[(App, DetectFn)] = &[
    (App::Tls, tls::detect_tls),
    (App::Ssh, misc::detect_ssh),
    (App::Http2, http::detect_h2),
    (App::Http, http::detect_http),
    (App::Postgres, sql::detect_postgres),
    (App::Mysql, sql::detect_mysql),
    (App::Redis, sql::detect_redis),
    (App::Mongodb, sql::detect_mongodb),
    (App::Amqp, misc::detect_amqp),
    (App::Mqtt, misc::detect_mqtt),
    (App::Ldap, misc::detect_ldap),
    (App::Smtp, mail::detect_mail),
    (App::Telnet, misc::detect_telnet),
    (App::Dns, dns::detect_dns_tcp),
    (App::Memcached, sql::detect_memcached),
    (App::Kafka, sql::detect_kafka),
];

/// UDP dissectors.
const UDP_DISSECTORS: &[(App, DetectFn)] = &[
    (App::Dns, dns::detect_dns_udp),
    (App::Quic, quic::detect_quic),
    (App::Dtls, tls::detect_dtls),
    (App::Wireguard, misc::detect_wireguard),
    (App::Ipsec, misc::detect_nat_t),
    (App::Ike, misc::detect_ike),
    (App::Memcached, sql::detect_memcached),
];

/// Runs candidates; the port-hinted one first. Returns the first match, else NeedMore if any
/// candidate still could match.
fn run_dissectors(
    list: &[(App, DetectFn)],
    hint: Option<App>,
    ctx: &Ctx,
    tried_hint: bool,
) -> Parse<Detected> {
    let mut need_more = false;
    let mut consider = |f: DetectFn| -> Option<Detected> {
        match f(ctx) {
            Parse::Done(d) => Some(d),
            Parse::NeedMore => {
                need_more = true;
                None
            }
            Parse::NotThis => None,
        }
    };
    if tried_hint && let Some(h) = hint {
        for (app, f) in list {
            // Mail covers SMTP/IMAP/POP3/FTP.
            let same = *app == h
                || (*app == App::Smtp && matches!(h, App::Imap | App::Pop3 | App::Ftp))
                || (*app == App::Http2 && h == App::Http);
            if same && let Some(d) = consider(*f) {
                return Parse::Done(d);
            }
        }
    }
    for (app, f) in list {
        if tried_hint && Some(*app) == hint {
            continue;
        }
        if let Some(d) = consider(*f) {
            return Parse::Done(d);
        }
    }
    if need_more {
        Parse::NeedMore
    } else {
        Parse::NotThis
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Still reading.
    Open,
    /// Verdict final.
    Done,
}

/// A flow's boxed dissection state: the result, plus the working state while reading. Once
/// the verdict is final only the 128-byte result is kept (the working state and its buffers
/// are freed), so a finished flow's facts cost one small block plus what the facts own.
struct Inner {
    info: AppInfo,
    /// `None` once the verdict is final.
    work: Option<Box<Work>>,
}

/// What a flow needs only while its verdict is open.
#[derive(Default)]
struct Work {
    /// TCP stream buffers (`None` for other transports).
    streams: Option<[StreamBuf; 2]>,
    packets: u32,
    /// First bytes of datagrams (UDP), for the byte hint.
    udp_sample: Vec<u8>,
    /// First time each credential (kind, dir) was seen.
    cred_seen: Vec<Credential>,
    /// QUIC Initial decryption in progress (UDP flows recognised as QUIC with a version whose
    /// Initial keys are derivable).
    quic: Option<Box<quic::QuicFlow>>,
    /// The client side of the last TLS parse: a TLS flow whose server flight spans several
    /// segments is analysed after each, and its client bytes are read only once.
    tls_memo: tls::ClientMemoCell,
    /// TCP bytes arrived that no analysis has read yet (see [`FlowDissector::settle`]).
    pending: bool,
    /// Timestamp of the last packet that grew each direction's buffer (by `Dir::idx`):
    /// when a deferred analysis finds a credential, it crossed at the latest then.
    grew_ns: [u64; 2],
}

/// Per-flow dissection state. 16 bytes when idle; see the module doc for the contract.
pub struct FlowDissector {
    inner: Option<Box<Inner>>,
    iport: u16,
    rport: u16,
    transport: Transport,
    state: State,
}

impl FlowDissector {
    /// Creates the state for a new flow. Allocates nothing.
    pub fn new(transport: Transport, initiator_port: u16, responder_port: u16) -> Self {
        FlowDissector {
            inner: None,
            iport: initiator_port,
            rport: responder_port,
            transport,
            state: State::Open,
        }
    }

    /// False once the verdict is final: the caller may stop feeding packets.
    #[inline]
    pub fn wants_more(&self) -> bool {
        self.state == State::Open
    }

    /// The current (or final) result.
    pub fn result(&self) -> &AppInfo {
        match &self.inner {
            Some(i) => &i.info,
            None => &UNKNOWN_INFO,
        }
    }

    /// Cache hint for a writer about to read [`FlowDissector::result`]: requests the result's
    /// box and, with `deep` (call it a little later, when that box has arrived), the facts and
    /// the SNI it points to. A finished flow's result is cold by the time it is written, and
    /// each level is a dependent miss. Changes nothing.
    pub fn prefetch_result(&self, deep: bool) {
        let Some(inner) = &self.inner else {
            return;
        };
        let boxed: *const Inner = &**inner;
        crate::prefetch::prefetch_bytes(boxed.cast(), std::mem::size_of::<Inner>());
        if !deep {
            return;
        }
        let info = &inner.info;
        if let Some(sni) = &info.sni {
            crate::prefetch::prefetch_bytes(sni.as_ptr(), sni.len());
        }
        let (facts, size): (*const u8, usize) = match &info.facts {
            Some(Facts::Tls(tls)) => (
                (&**tls as *const tls::TlsFacts).cast(),
                size_of::<tls::TlsFacts>(),
            ),
            Some(Facts::Http(http)) => (
                (&**http as *const http::HttpFacts).cast(),
                size_of::<http::HttpFacts>(),
            ),
            Some(Facts::Dns(dns)) => ((&**dns as *const DnsFacts).cast(), size_of::<DnsFacts>()),
            _ => return,
        };
        crate::prefetch::prefetch_bytes(facts, size);
    }

    /// Convenience wrapper matching the simplest call shape: payload with an optional sequence
    /// number and the SYN flag.
    pub fn on_payload(
        &mut self,
        dir: Dir,
        seq: Option<u32>,
        syn: bool,
        payload: &[u8],
        ts_ns: u64,
        budget: &mut Budget,
    ) {
        self.on_packet(
            dir,
            Segment {
                seq,
                syn,
                fin: false,
                payload,
            },
            ts_ns,
            budget,
        );
    }

    /// Feeds one packet of the flow. Cheap no-op once `wants_more()` is false.
    pub fn on_packet(&mut self, dir: Dir, seg: Segment<'_>, ts_ns: u64, budget: &mut Budget) {
        if self.state != State::Open {
            return;
        }
        match self.transport {
            Transport::Tcp => self.on_tcp(dir, seg, ts_ns, budget),
            Transport::Udp | Transport::Sctp => self.on_datagram(dir, seg.payload, ts_ns, budget),
            Transport::Other(proto) => {
                if seg.payload.is_empty() {
                    return;
                }
                let (info, _) = self.parts();
                if proto == 50 {
                    *info = misc::esp_info(seg.payload);
                } else {
                    info.hint = Some(byte_hint(seg.payload, &[]));
                }
                self.finish();
            }
        }
    }

    /// The result and the working state, allocated on first use (only while open).
    fn parts(&mut self) -> (&mut AppInfo, &mut Work) {
        let inner = self.inner.get_or_insert_with(|| {
            Box::new(Inner {
                info: AppInfo::UNKNOWN,
                work: None,
            })
        });
        (&mut inner.info, inner.work.get_or_insert_with(Box::default))
    }

    /// The working state, if the verdict is open and anything was fed.
    fn work(&self) -> Option<&Work> {
        self.inner.as_ref()?.work.as_deref()
    }

    /// Runs the analysis that [`FlowDissector::on_packet`] deferred because only one side of
    /// a TCP flow had spoken, so that [`FlowDissector::result`] reflects every byte fed so
    /// far. Cheap when nothing is deferred; the verdict stays open (more packets may come).
    pub fn settle(&mut self, budget: &mut Budget) {
        if self.is_pending() {
            self.analyze_tcp(budget);
        }
    }

    /// True when bytes wait for an analysis (see [`FlowDissector::settle`]).
    pub fn is_pending(&self) -> bool {
        self.state == State::Open && self.work().is_some_and(|w| w.pending)
    }

    fn on_tcp(&mut self, dir: Dir, seg: Segment<'_>, ts_ns: u64, budget: &mut Budget) {
        if seg.payload.is_empty() && !seg.syn && !seg.fin {
            return;
        }
        let cap = budget.limits.per_direction;
        let (_, work) = self.parts();
        let streams = work
            .streams
            .get_or_insert_with(|| [StreamBuf::new(cap), StreamBuf::new(cap)]);
        let sb = &mut streams[dir.idx()];
        let mut grew = false;
        match seg.seq {
            Some(seq) => {
                if seg.syn {
                    sb.on_syn(seq);
                }
                let data_seq = if seg.syn { seq.wrapping_add(1) } else { seq };
                grew |= sb.push(data_seq, seg.payload, budget);
                if seg.fin {
                    sb.on_fin(data_seq.wrapping_add(seg.payload.len() as u32), budget);
                }
            }
            None => grew |= sb.push_unsequenced(seg.payload, budget),
        }
        if !seg.payload.is_empty() {
            work.packets += 1;
        }
        if grew {
            work.grew_ns[dir.idx()] = ts_ns;
            work.pending = true;
        }
        let [c, s] = &*streams;
        // One side alone is analysed only once it cannot grow any more (see the module doc).
        let both_spoke = !c.data().is_empty() && !s.data().is_empty();
        let ended = seg.fin || c.is_closed() || s.is_closed();
        if (grew && both_spoke) || ended || work.packets >= budget.limits.max_packets {
            self.analyze_tcp(budget);
        }
    }

    fn analyze_tcp(&mut self, budget: &mut Budget) {
        let (iport, rport, transport) = (self.iport, self.rport, self.transport);
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        let Some(work) = inner.work.as_mut() else {
            return;
        };
        work.pending = false;
        let Some(streams) = work.streams.as_ref() else {
            return;
        };
        let tcp = TcpInput {
            streams,
            packets: work.packets,
            grew_ns: work.grew_ns,
            tls_memo: Some(&work.tls_memo),
            ports: (iport, rport, transport),
        };
        if tcp.analyze(&mut inner.info, &mut work.cred_seen, budget) {
            self.finish();
        }
    }

    /// What [`FlowDissector::settle`] would report, without changing the flow: for live
    /// views, which must not make a flow's final result depend on when they looked (a
    /// settled one-sided analysis may end the verdict and stamps credentials earlier).
    /// `None` when no analysis is deferred (then [`FlowDissector::result`] is current).
    pub fn preview(&self, budget: &Budget) -> Option<AppInfo> {
        if !self.is_pending() {
            return None;
        }
        let inner = self.inner.as_ref()?;
        let work = inner.work.as_ref()?;
        let tcp = TcpInput {
            streams: work.streams.as_ref()?,
            packets: work.packets,
            grew_ns: work.grew_ns,
            tls_memo: None,
            ports: (self.iport, self.rport, self.transport),
        };
        let mut info = inner.info.clone();
        let mut cred_seen = work.cred_seen.clone();
        tcp.analyze(&mut info, &mut cred_seen, budget);
        Some(info)
    }

    fn on_datagram(&mut self, dir: Dir, payload: &[u8], ts_ns: u64, budget: &mut Budget) {
        if payload.is_empty() {
            return;
        }
        let (iport, rport, transport) = (self.iport, self.rport, self.transport);
        let (info, work) = self.parts();
        work.packets += 1;
        if work.udp_sample.len() < 256 {
            let take = (256 - work.udp_sample.len()).min(payload.len());
            work.udp_sample.extend_from_slice(&payload[..take]);
        }
        if let Some(q) = work.quic.as_mut() {
            let learned_all = q.on_datagram(dir == Dir::ToResponder, payload, budget);
            q.publish(&mut info.sni, &mut info.facts);
            if learned_all || work.packets >= budget.limits.max_packets {
                self.finish();
            }
            return;
        }
        let (c2s, s2c) = match dir {
            Dir::ToResponder => (payload, &[][..]),
            Dir::ToInitiator => (&[][..], payload),
        };
        let ctx = Ctx {
            c2s,
            s2c,
            c2s_closed: true,
            s2c_closed: true,
            iport,
            rport,
            tls_memo: None,
            digests: None,
        };
        let hint = port_app(transport, rport).or_else(|| port_app(transport, iport));
        let prev = info.app;
        let done = match run_dissectors(UDP_DISSECTORS, hint, &ctx, true) {
            Parse::Done(d) => {
                if prev == App::Dns && d.app == App::Dns {
                    // Merge DNS messages of one flow (queries then answers).
                    let complete = d.complete;
                    if let (Some(Facts::Dns(old)), Some(Facts::Dns(new))) =
                        (&mut info.facts, d.facts)
                    {
                        old.merge(*new);
                    }
                    complete || work.packets >= 8
                } else if prev != App::Unknown && prev != d.app {
                    // Keep the first verdict; a later datagram disagreeing is noise.
                    work.packets >= 8
                } else if d.app == App::Quic && quic::QuicFlow::wanted(payload) {
                    // Keep reading datagrams until the client's ClientHello is decrypted.
                    apply(info, &mut work.cred_seen, d, hint, [ts_ns; 2]);
                    let mut q = Box::new(quic::QuicFlow::new());
                    let learned_all = q.on_datagram(dir == Dir::ToResponder, payload, budget);
                    q.publish(&mut info.sni, &mut info.facts);
                    work.quic = Some(q);
                    learned_all || work.packets >= budget.limits.max_packets
                } else {
                    let complete = d.complete;
                    apply(info, &mut work.cred_seen, d, hint, [ts_ns; 2]);
                    complete || work.packets >= 8
                }
            }
            _ => {
                if prev == App::Unknown {
                    info.port_hint = hint;
                    info.hint = Some(byte_hint(&work.udp_sample, &[]));
                    work.packets >= 4
                } else {
                    work.packets >= 8
                }
            }
        };
        if done {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(inner) = self.inner.as_mut() {
            // Dropping the working state frees the stream buffers and returns their budget.
            inner.work = None;
            inner.info.credentials.shrink_to_fit();
            if let Some(facts) = inner.info.facts.as_mut() {
                facts.shrink();
            }
        }
    }
}

/// The buffered state one TCP analysis reads.
struct TcpInput<'a> {
    streams: &'a [StreamBuf; 2],
    packets: u32,
    grew_ns: [u64; 2],
    tls_memo: Option<&'a tls::ClientMemoCell>,
    /// Initiator port, responder port, transport.
    ports: (u16, u16, Transport),
}

impl TcpInput<'_> {
    /// Runs the TCP dissectors over both buffered directions and writes the finding into
    /// `info`. Returns true when the verdict is final.
    fn analyze(
        &self,
        info: &mut AppInfo,
        cred_seen: &mut Vec<Credential>,
        budget: &Budget,
    ) -> bool {
        let (iport, rport, transport) = self.ports;
        let [c, s] = self.streams;
        let ctx = Ctx {
            c2s: c.data(),
            s2c: s.data(),
            c2s_closed: c.is_closed(),
            s2c_closed: s.is_closed(),
            iport,
            rport,
            tls_memo: self.tls_memo,
            digests: Some(&budget.digests),
        };
        let hint = port_app(transport, rport).or_else(|| port_app(transport, iport));
        let midstream = c.midstream || s.midstream;
        let both_closed = ctx.c2s_closed && ctx.s2c_closed;
        let out_of_packets = self.packets >= budget.limits.max_packets;
        let done = match run_dissectors(TCP_DISSECTORS, hint, &ctx, true) {
            Parse::Done(d) => {
                let complete = d.complete || both_closed || out_of_packets;
                apply(info, cred_seen, d, hint, self.grew_ns);
                complete
            }
            Parse::NeedMore if !(both_closed || out_of_packets) => false,
            _ => {
                *info = AppInfo {
                    port_hint: hint,
                    hint: Some(byte_hint(ctx.c2s, ctx.s2c)),
                    ..AppInfo::UNKNOWN
                };
                both_closed || out_of_packets || (ctx.c2s_closed || ctx.s2c_closed)
            }
        };
        info.midstream = midstream;
        done
    }
}

/// Writes a dissector's finding into the flow's result, time-stamping new credentials with
/// `grew_ns[dir]`, the time the last bytes of their direction arrived.
fn apply(
    info: &mut AppInfo,
    cred_seen: &mut Vec<Credential>,
    d: Detected,
    hint: Option<App>,
    grew_ns: [u64; 2],
) {
    let mut creds = Vec::with_capacity(d.creds.len());
    for (kind, dir, redacted) in d.creds.into_iter().take(32) {
        let ts = cred_seen
            .iter()
            .find(|c| c.kind == kind && c.dir == dir && c.redacted == redacted)
            .map_or(grew_ns[dir.idx()], |c| c.ts_ns);
        let c = Credential {
            kind,
            dir,
            ts_ns: ts,
            redacted,
        };
        if !cred_seen.contains(&c) {
            cred_seen.push(c.clone());
        }
        creds.push(c);
    }
    let port_hint = hint.filter(|h| {
        *h != d.app
            && !(d.app == App::Tls && d.upgrade.is_none() && *h == App::Tls)
            && !(matches!(d.app, App::Http2 | App::Grpc) && *h == App::Http)
    });
    *info = AppInfo {
        app: d.app,
        encryption: d.encryption,
        sni: d.sni,
        service: d.service,
        port_hint,
        hint: None,
        midstream: info.midstream,
        upgrade: d.upgrade,
        facts: d.facts,
        credentials: creds,
    };
}

#[cfg(test)]
mod tests;
