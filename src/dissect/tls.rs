//! TLS and DTLS: ClientHello / ServerHello facts, JA3/JA3S and JA4 fingerprints.
//!
//! Handshake messages are reassembled across records and across TCP segments (a ClientHello
//! split over several records is handled; one record's handshake bytes are borrowed, not
//! copied), then the ClientHello / ServerHello are read in place by `dissect::hello`, whose
//! views are checked against the `tls-parser` crate; DTLS records go through `tls-parser`
//! itself. Fingerprint digests go through the engine's bounded `dissect::digest` memo. QUIC's
//! decrypted CRYPTO stream (handshake messages without records) goes through the same
//! ClientHello extraction via `client_hello_from_handshake`. When a client sends a second
//! ClientHello, the first counts unless the server asked for it with a HelloRetryRequest.
//! Guarantees: a prefix of a valid ClientHello yields [`Parse::NeedMore`], never a wrong
//! answer; strings taken from the wire (SNI, ALPN) are sanitized; nothing panics on malformed
//! input. Once a ServerHello selects TLS 1.3 the rest is encrypted and the verdict is final.

use std::borrow::Cow;
use std::cell::RefCell;

use serde::Serialize;
use tls_parser::{
    DTLSMessage, DTLSMessageHandshakeBody, TlsCipherSuite, parse_dtls_plaintext_record,
};

use super::digest::{DigestMemo, Kind, hex_into};
use super::hello::{
    ClientHelloView, ServerHelloView, be16, extension_types, for_each_extension, u16s,
};
use super::ja4::{Ja4Transport, ja4};
use super::{App, Ctx, Detected, Encryption, Facts, Parse};
use crate::sanitize::sanitize_bytes;

/// Facts from a TLS or DTLS handshake.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TlsFacts {
    /// Version in the first record header ("TLS 1.0" is common for ClientHellos).
    pub record_version: Option<Cow<'static, str>>,
    /// ClientHello legacy_version.
    pub client_version: Option<Cow<'static, str>>,
    /// supported_versions offered by the client (GREASE removed).
    pub offered_versions: Vec<Cow<'static, str>>,
    /// Version the server selected (supported_versions if present, else legacy version).
    pub selected_version: Option<Cow<'static, str>>,
    /// Cipher suite the server selected (IANA name, or hex).
    pub cipher_suite: Option<Cow<'static, str>>,
    /// Number of cipher suites the client offered.
    pub offered_cipher_count: usize,
    /// ALPN protocols offered by the client (sanitized; the common ones borrowed).
    pub alpn: Vec<Cow<'static, str>>,
    /// ALPN protocol selected by the server.
    pub alpn_selected: Option<String>,
    /// The server answered with a HelloRetryRequest.
    pub hello_retry_request: bool,
    /// encrypted_client_hello (0xfe0d) offered: the real SNI is hidden.
    pub ech: bool,
    /// Legacy encrypted_server_name (0xffce) offered.
    pub esni: bool,
    /// Some(true) when a CertificateRequest was seen (mutual TLS), Some(false) when the
    /// server's cleartext flight ended without one; None when not visible (TLS 1.3).
    pub client_cert_requested: Option<bool>,
    /// JA3 client fingerprint (md5 hex of the JA3 string).
    pub ja3: Option<Fingerprint>,
    /// JA3S server fingerprint.
    pub ja3s: Option<Fingerprint>,
    /// JA4 client fingerprint (FoxIO), e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`; the first
    /// letter says the transport: `t` TLS over TCP, `q` QUIC, `d` DTLS.
    pub ja4: Option<Fingerprint>,
    /// Number of records the ClientHello spanned (> 1: fragmented).
    pub client_hello_records: u32,
    /// An SSLv2-compatible ClientHello was seen.
    pub sslv2_hello: bool,
}

/// A fingerprint (JA3/JA3S MD5 hex, JA4) kept inline: printable ASCII, at most
/// [`Fingerprint::CAPACITY`] bytes, so facts hold no heap string for it and copy cheaply.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    len: u8,
    bytes: [u8; Fingerprint::CAPACITY],
}

impl Fingerprint {
    /// A JA4 is 36 characters, an MD5 in hex 32.
    pub const CAPACITY: usize = 36;

    /// The first [`Self::CAPACITY`] bytes of `text`, bytes outside printable ASCII shown as
    /// `?` (fingerprints are built from hex digits and letters; this only guards the type).
    pub fn new(text: &[u8]) -> Self {
        let mut f = Fingerprint {
            len: 0,
            bytes: [0; Self::CAPACITY],
        };
        for (slot, &b) in f.bytes.iter_mut().zip(text) {
            *slot = if b.is_ascii_graphic() { b } else { b'?' };
        }
        f.len = text.len().min(Self::CAPACITY) as u8;
        f
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII by construction, so the fallback is never taken.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::ops::Deref for Fingerprint {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Fingerprint {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An ALPN protocol id as shown: the common ones borrowed (no allocation per flow), any
/// other sanitized.
fn alpn_name(id: &[u8]) -> Cow<'static, str> {
    match id {
        b"h2" => "h2".into(),
        b"http/1.1" => "http/1.1".into(),
        b"http/1.0" => "http/1.0".into(),
        b"h3" => "h3".into(),
        b"h2c" => "h2c".into(),
        b"grpc-exp" => "grpc-exp".into(),
        b"acme-tls/1" => "acme-tls/1".into(),
        b"spdy/3.1" => "spdy/3.1".into(),
        _ => sanitize_bytes(id).into(),
    }
}

/// Human name of a (D)TLS version number.
pub fn version_name(v: u16) -> Cow<'static, str> {
    // Borrowed names for the known versions: no allocation per flow.
    match v {
        0x0200 => "SSL 2.0".into(),
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        0xfeff => "DTLS 1.0".into(),
        0xfefd => "DTLS 1.2".into(),
        0xfefc => "DTLS 1.3".into(),
        0x7f00..=0x7fff => format!("TLS 1.3 draft {}", v & 0xff).into(),
        _ => format!("0x{v:04x}").into(),
    }
}

fn cipher_name(id: u16) -> Cow<'static, str> {
    TlsCipherSuite::from_id(id).map_or_else(|| format!("0x{id:04x}").into(), |c| c.name.into())
}

/// GREASE values (RFC 8701) are ignored in fingerprints and lists.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// The SHA-256 of "HelloRetryRequest": a ServerHello with this random is an HRR.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Handshake bytes gathered from the leading handshake records of one direction: borrowed
/// from the stream when they lie in one record (the common case), copied together only when
/// the handshake spans several records.
struct HsStream<'a> {
    bytes: Cow<'a, [u8]>,
    /// Records consumed.
    records: u32,
    first_version: Option<u16>,
    /// The record layer ended (non-handshake record, CCS, or end of data at a record boundary).
    /// `false` means the data stops inside a record.
    partial_record: bool,
    /// A non-TLS byte pattern was found where a record header was expected.
    garbage: bool,
    /// A ChangeCipherSpec or application-data record was seen after the handshake records.
    saw_ccs_or_data: bool,
}

impl<'a> HsStream<'a> {
    fn append(&mut self, payload: &'a [u8]) {
        match &mut self.bytes {
            Cow::Borrowed([]) => self.bytes = Cow::Borrowed(payload),
            Cow::Borrowed(b) => {
                let mut joined = Vec::with_capacity(b.len() + payload.len());
                joined.extend_from_slice(b);
                joined.extend_from_slice(payload);
                self.bytes = Cow::Owned(joined);
            }
            Cow::Owned(v) => v.extend_from_slice(payload),
        }
    }
}

/// Collects handshake-record payloads from `data` (TLS record layer), skipping up to one CCS
/// (TLS 1.3 middlebox compatibility) only when `past_ccs` is set.
fn gather(data: &[u8], past_ccs: bool) -> HsStream<'_> {
    let mut hs = HsStream {
        bytes: Cow::Borrowed(&[]),
        records: 0,
        first_version: None,
        partial_record: false,
        garbage: false,
        saw_ccs_or_data: false,
    };
    let mut off = 0usize;
    let mut ccs_seen = 0;
    while off < data.len() {
        let rest = &data[off..];
        if rest.len() < 5 {
            hs.partial_record = true;
            // Validate what we have of the header.
            if !header_prefix_ok(rest) {
                hs.garbage = true;
            }
            break;
        }
        let ctype = rest[0];
        let ver = u16::from_be_bytes([rest[1], rest[2]]);
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if !(20..=24).contains(&ctype) || rest[1] != 3 || len > 18432 {
            hs.garbage = true;
            break;
        }
        if hs.first_version.is_none() {
            hs.first_version = Some(ver);
        }
        if rest.len() < 5 + len {
            if ctype == 22 {
                // Partial handshake record: usable prefix for incremental parsing.
                hs.append(&rest[5..]);
                hs.partial_record = true;
            }
            break;
        }
        match ctype {
            22 => {
                hs.append(&rest[5..5 + len]);
                hs.records += 1;
            }
            20 if past_ccs && ccs_seen == 0 => {
                ccs_seen += 1;
                hs.saw_ccs_or_data = true;
            }
            _ => {
                hs.saw_ccs_or_data = true;
                break;
            }
        }
        off += 5 + len;
    }
    hs
}

fn header_prefix_ok(p: &[u8]) -> bool {
    (p.is_empty() || (20..=24).contains(&p[0])) && (p.len() < 2 || p[1] == 3)
}

/// The complete handshake messages of a handshake stream, as (type, whole message with its
/// 4-byte header). After the last one, [`Messages::partial`] says whether the stream ends
/// inside a message.
struct Messages<'a> {
    hs: &'a [u8],
    off: usize,
}

impl<'a> Messages<'a> {
    fn new(hs: &'a [u8]) -> Self {
        Messages { hs, off: 0 }
    }

    fn partial(&self) -> bool {
        self.off < self.hs.len()
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.hs.get(self.off..)?;
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        let msg = rest.get(..4 + len)?;
        self.off += 4 + len;
        Some((rest[0], msg))
    }
}

/// Appends `value` in decimal (JA3 text).
fn push_number(text: &mut Vec<u8>, value: u16) {
    text.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends decimal numbers joined by '-' (the JA3 list format).
fn push_list(text: &mut Vec<u8>, values: impl Iterator<Item = u16>) {
    for (i, value) in values.enumerate() {
        if i > 0 {
            text.push(b'-');
        }
        push_number(text, value);
    }
}

/// The MD5 of the memo's text as a JA3-style hex fingerprint.
fn md5_fingerprint(memo: &mut DigestMemo) -> Fingerprint {
    let mut hex = [0u8; 32];
    hex_into(&memo.digest(Kind::Md5)[..16], &mut hex);
    Fingerprint::new(&hex)
}

/// The first host_name of a server_name extension body (entries are read while they are
/// complete, also when the list length lies).
fn server_name(body: &[u8]) -> Option<&[u8]> {
    let list_len = usize::from(be16(body, 0)?);
    let list = body.get(2..2 + list_len).unwrap_or(&body[2..]);
    let mut off = 0usize;
    while let (Some(&kind), Some(n)) = (list.get(off), be16(list, off + 1)) {
        let name = list.get(off + 3..off + 3 + usize::from(n))?;
        if kind == 0 {
            return Some(name);
        }
        off += 3 + usize::from(n);
    }
    None
}

/// The protocol ids of an ALPN extension body, while they are complete.
fn alpn_ids(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let list = be16(body, 0)
        .and_then(|n| body.get(2..2 + usize::from(n)))
        .unwrap_or(&[]);
    let mut off = 0usize;
    std::iter::from_fn(move || {
        let n = usize::from(*list.get(off)?);
        let id = list.get(off + 1..off + 1 + n)?;
        off += 1 + n;
        Some(id)
    })
}

/// The body of a list with a one-byte (`wide` false) or two-byte length prefix.
fn prefixed_list(body: &[u8], wide: bool) -> &[u8] {
    let (n, at) = if wide {
        (be16(body, 0).map(usize::from), 2)
    } else {
        (body.first().map(|&n| usize::from(n)), 1)
    };
    n.and_then(|n| body.get(at..at + n)).unwrap_or(&[])
}

/// Client-side facts derived from a ClientHello. Returns the SNI too.
fn client_hello_facts(
    f: &mut TlsFacts,
    transport: Ja4Transport,
    version: u16,
    ciphers: impl Iterator<Item = u16> + Clone,
    ext: Option<&[u8]>,
    memo: &mut DigestMemo,
) -> Option<String> {
    let ext = ext.unwrap_or(&[]);
    f.ja4 = Some(ja4(transport, version, ciphers.clone(), ext, memo));
    f.client_version = Some(version_name(version));
    let real_ciphers = ciphers.filter(|c| !is_grease(*c));
    f.offered_cipher_count = real_ciphers.clone().count();
    let mut sni = None;
    let mut groups: &[u8] = &[];
    let mut formats: &[u8] = &[];
    for_each_extension(ext, |t, body| match t {
        0x0000 if sni.is_none() => sni = server_name(body).map(sanitize_bytes),
        0x0010 => f.alpn = alpn_ids(body).take(16).map(alpn_name).collect(),
        0x002b => {
            f.offered_versions = u16s(prefixed_list(body, false))
                .filter(|v| !is_grease(*v))
                .take(16)
                .map(version_name)
                .collect();
        }
        0x000a => groups = prefixed_list(body, true),
        0x000b => formats = prefixed_list(body, false),
        0xfe0d => f.ech = true,
        0xffce => f.esni = true,
        _ => {}
    });
    let not_grease = |x: &u16| !is_grease(*x);
    let ja3 = memo.text();
    push_number(ja3, version);
    ja3.push(b',');
    push_list(ja3, real_ciphers);
    ja3.push(b',');
    push_list(ja3, extension_types(ext).filter(not_grease));
    ja3.push(b',');
    push_list(ja3, u16s(groups).filter(not_grease));
    ja3.push(b',');
    push_list(ja3, formats.iter().map(|&x| u16::from(x)));
    f.ja3 = Some(md5_fingerprint(memo));
    sni.filter(|s| !s.is_empty())
}

/// What the server's cleartext flight says: the server half of [`TlsFacts`], kept apart so a
/// parse does not build a second full `TlsFacts` for it.
#[derive(Default)]
struct ServerSide {
    selected_version: Option<Cow<'static, str>>,
    cipher_suite: Option<Cow<'static, str>>,
    alpn_selected: Option<String>,
    hello_retry_request: bool,
    client_cert_requested: Option<bool>,
    ja3s: Option<Fingerprint>,
}

impl ServerSide {
    /// Writes what the server said into `f` (fields it said nothing about stay as they are).
    fn merge_into(self, f: &mut TlsFacts) {
        if self.selected_version.is_some() {
            f.selected_version = self.selected_version;
        }
        if self.cipher_suite.is_some() {
            f.cipher_suite = self.cipher_suite;
        }
        if self.alpn_selected.is_some() {
            f.alpn_selected = self.alpn_selected;
        }
        f.hello_retry_request |= self.hello_retry_request;
        if self.client_cert_requested.is_some() {
            f.client_cert_requested = self.client_cert_requested;
        }
        if self.ja3s.is_some() {
            f.ja3s = self.ja3s;
        }
    }
}

/// Server-side facts from a ServerHello. Returns true when it is a HelloRetryRequest.
fn server_hello_facts(
    f: &mut ServerSide,
    version: u16,
    random: &[u8],
    cipher: u16,
    ext: Option<&[u8]>,
    memo: &mut DigestMemo,
) -> bool {
    let hrr = random == HRR_RANDOM;
    let mut selected = version;
    let ext = ext.unwrap_or(&[]);
    for_each_extension(ext, |t, body| match t {
        // In a ServerHello supported_versions is the one selected version.
        0x002b if body.len() == 2 => selected = u16::from_be_bytes([body[0], body[1]]),
        0x002b => {
            if let Some(v) = u16s(prefixed_list(body, false)).next() {
                selected = v;
            }
        }
        0x0010 => f.alpn_selected = alpn_ids(body).next().map(sanitize_bytes),
        _ => {}
    });
    if hrr {
        f.hello_retry_request = true;
        return true;
    }
    f.selected_version = Some(version_name(selected));
    f.cipher_suite = Some(cipher_name(cipher));
    let ja3s = memo.text();
    push_number(ja3s, version);
    ja3s.push(b',');
    push_number(ja3s, cipher);
    ja3s.push(b',');
    push_list(ja3s, extension_types(ext));
    f.ja3s = Some(md5_fingerprint(memo));
    false
}

/// Reads a ClientHello from a bare handshake stream (QUIC CRYPTO frames carry handshake
/// messages without the TLS record layer). A prefix of a ClientHello is NeedMore; a stream
/// that does not start with one is NotThis. Returns the facts and the SNI.
pub(crate) fn client_hello_from_handshake(
    hs: &[u8],
    transport: Ja4Transport,
) -> Parse<(TlsFacts, Option<String>)> {
    let msg = match handshake_message(hs, 1) {
        Parse::Done(msg) => msg,
        Parse::NeedMore => return Parse::NeedMore,
        Parse::NotThis => return Parse::NotThis,
    };
    match ClientHelloView::parse(&msg[4..]) {
        Some(ch) => {
            let mut f = TlsFacts::default();
            let mut memo = DigestMemo::default();
            let sni = client_hello_facts(
                &mut f,
                transport,
                ch.version,
                ch.cipher_ids(),
                ch.ext,
                &mut memo,
            );
            Parse::Done((f, sni))
        }
        None => Parse::NotThis,
    }
}

/// The first handshake message of a bare handshake stream (no record layer) if it has type
/// `msg_type` and is complete.
fn handshake_message(hs: &[u8], msg_type: u8) -> Parse<&[u8]> {
    match hs.first() {
        None => return Parse::NeedMore,
        Some(&t) if t == msg_type => {}
        Some(_) => return Parse::NotThis,
    }
    let Some(len) = hs
        .get(1..4)
        .map(|l| u32::from_be_bytes([0, l[0], l[1], l[2]]) as usize)
    else {
        return Parse::NeedMore;
    };
    let Some(msg) = hs.get(..4 + len) else {
        return Parse::NeedMore;
    };
    Parse::Done(msg)
}

/// Reads a ServerHello from a bare handshake stream (QUIC server Initial CRYPTO frames):
/// selected version, cipher suite, JA3S, HelloRetryRequest. A prefix is NeedMore.
pub(crate) fn server_hello_from_handshake(hs: &[u8]) -> Parse<TlsFacts> {
    let msg = match handshake_message(hs, 2) {
        Parse::Done(msg) => msg,
        Parse::NeedMore => return Parse::NeedMore,
        Parse::NotThis => return Parse::NotThis,
    };
    let mut server = ServerSide::default();
    match ServerHelloView::parse(&msg[4..]) {
        Some(sh) => {
            server_hello_facts(
                &mut server,
                sh.version,
                sh.random,
                sh.cipher,
                sh.ext,
                &mut DigestMemo::default(),
            );
            let mut f = TlsFacts::default();
            server.merge_into(&mut f);
            Parse::Done(f)
        }
        None => Parse::NotThis,
    }
}

/// Result of reading one side's handshake.
#[derive(Clone)]
struct ClientSide {
    sni: Option<String>,
    seen_hello: bool,
    need_more: bool,
}

fn read_client(
    data: &[u8],
    f: &mut TlsFacts,
    past_ccs: bool,
    memo: &mut DigestMemo,
) -> Result<ClientSide, ()> {
    let hs = gather(data, past_ccs);
    if hs.garbage && hs.records == 0 && hs.bytes.is_empty() {
        return Err(());
    }
    f.record_version = hs.first_version.map(version_name);
    let mut msgs = Messages::new(&hs.bytes);
    let mut out = ClientSide {
        sni: None,
        seen_hello: false,
        need_more: false,
    };
    // The first handshake byte must be ClientHello (1).
    if let Some(&t) = hs.bytes.first()
        && t != 1
    {
        return Err(());
    }
    for (t, raw) in msgs.by_ref() {
        if t != 1 {
            continue;
        }
        match ClientHelloView::parse(&raw[4..]) {
            // The server answers the first ClientHello, unless it asked for another with a
            // HelloRetryRequest; then the latest counts. (A duplicated hello without an HRR
            // keeps the first one's facts, as Suricata's tls-duplicate-hello test expects.)
            Some(_) if out.seen_hello && !past_ccs => break,
            Some(ch) => {
                out.sni = client_hello_facts(
                    f,
                    Ja4Transport::Tcp,
                    ch.version,
                    ch.cipher_ids(),
                    ch.ext,
                    memo,
                )
                .or(out.sni);
                out.seen_hello = true;
                f.client_hello_records = f.client_hello_records.max(hs.records.max(1));
            }
            None => return if out.seen_hello { Ok(out) } else { Err(()) },
        }
    }
    if !out.seen_hello && (msgs.partial() || hs.partial_record || hs.bytes.is_empty()) {
        out.need_more = true;
        if hs.garbage {
            return Err(());
        }
    }
    Ok(out)
}

/// The result of reading a flow's client bytes, remembered with the length it read. The
/// stream buffer only ever appends, so the same length means the same bytes.
pub(crate) struct ClientMemo {
    c2s_len: usize,
    past_ccs: bool,
    read: Result<(ClientSide, TlsFacts), ()>,
}

/// Per-flow slot for a [`ClientMemo`] (interior mutability: dissectors see the flow through
/// a shared [`Ctx`]).
pub(crate) type ClientMemoCell = std::cell::RefCell<Option<Box<ClientMemo>>>;

/// [`read_client`] on fresh facts, answered from `memo` when the client bytes are the ones
/// it last read. `last`: the caller will not ask again (the handshake is complete), so the
/// memo is handed over instead of copied, or not kept at all.
fn read_client_memo(
    data: &[u8],
    past_ccs: bool,
    memo: Option<&ClientMemoCell>,
    last: bool,
    digests: &mut DigestMemo,
) -> Result<(ClientSide, TlsFacts), ()> {
    if let Some(cell) = memo {
        let mut slot = cell.borrow_mut();
        if let Some(m) = slot.as_deref()
            && m.c2s_len == data.len()
            && m.past_ccs == past_ccs
        {
            return match slot.take() {
                Some(m) if last => m.read,
                Some(m) => {
                    let read = m.read.clone();
                    *slot = Some(m);
                    read
                }
                None => Err(()),
            };
        }
    }
    let mut f = TlsFacts::default();
    let read = read_client(data, &mut f, past_ccs, digests).map(|c| (c, f));
    if let Some(cell) = memo
        && !last
    {
        *cell.borrow_mut() = Some(Box::new(ClientMemo {
            c2s_len: data.len(),
            past_ccs,
            read: read.clone(),
        }));
    }
    read
}

/// Reads the server's cleartext flight. Returns (server hello seen, complete).
fn read_server(
    data: &[u8],
    f: &mut ServerSide,
    past_ccs: bool,
    memo: &mut DigestMemo,
) -> (bool, bool) {
    let hs = gather(data, past_ccs);
    let mut seen = false;
    let mut complete = false;
    let mut hrr = false;
    for (t, raw) in Messages::new(&hs.bytes) {
        match t {
            2 => match ServerHelloView::parse(&raw[4..]) {
                Some(sh) => {
                    hrr = server_hello_facts(f, sh.version, sh.random, sh.cipher, sh.ext, memo);
                    seen = !hrr;
                    if seen && f.selected_version.as_deref() == Some("TLS 1.3") {
                        complete = true;
                    }
                }
                None => break,
            },
            13 => f.client_cert_requested = Some(true),
            14 => {
                f.client_cert_requested.get_or_insert(false);
                complete = true;
            }
            _ => {}
        }
        if complete {
            break;
        }
    }
    if seen && hs.saw_ccs_or_data && !hrr {
        complete = true;
    }
    (seen, complete)
}

/// Service hint for well-known Kubernetes control-plane TLS endpoints.
fn service_hint(sni: Option<&str>, ctx: &Ctx) -> Option<&'static str> {
    let s = sni.unwrap_or("");
    if ctx.rport == 2379 || ctx.rport == 2380 || s.contains("etcd") {
        Some("etcd")
    } else if ctx.rport == 10250 || s.contains("kubelet") {
        Some("kubelet")
    } else if ctx.rport == 6443 || s.starts_with("kubernetes.default") || s == "kubernetes" {
        Some("kube-apiserver")
    } else {
        None
    }
}

/// Parses a TLS handshake starting at `c2s` / `s2c` (used directly and after STARTTLS).
/// Returns NotThis when `c2s` does not start a TLS handshake.
pub(crate) fn parse_tls_pair(
    c2s: &[u8],
    s2c: &[u8],
    c2s_closed: bool,
    memo: Option<&ClientMemoCell>,
    digests: Option<&RefCell<DigestMemo>>,
) -> Parse<(TlsFacts, Option<String>, bool)> {
    if c2s.is_empty() {
        return Parse::NeedMore;
    }
    if is_sslv2_hello(c2s) {
        let f = TlsFacts {
            sslv2_hello: true,
            client_version: Some(version_name(u16::from_be_bytes([c2s[3], c2s[4]]))),
            ..Default::default()
        };
        return Parse::Done((f, None, !s2c.is_empty()));
    }
    // First pass without skipping CCS; if the server sent an HRR, a second ClientHello may
    // follow a compatibility CCS.
    let mut own_digests = DigestMemo::default();
    let mut shared_digests = digests.map(RefCell::borrow_mut);
    let digests = shared_digests.as_deref_mut().unwrap_or(&mut own_digests);
    let mut server = ServerSide::default();
    let (sh_seen, complete) = read_server(s2c, &mut server, false, digests);
    let past_ccs = server.hello_retry_request;
    let (sh_seen, complete) = if past_ccs {
        server = ServerSide::default();
        read_server(s2c, &mut server, true, digests)
    } else {
        (sh_seen, complete)
    };
    let (client, mut f) = match read_client_memo(c2s, past_ccs, memo, complete, digests) {
        Ok(read) => read,
        Err(()) => return Parse::NotThis,
    };
    if client.need_more && !c2s_closed {
        return Parse::NeedMore;
    }
    if !client.seen_hello {
        return Parse::NotThis;
    }
    // The client's facts hold no server field, so this sets exactly what the server said.
    server.merge_into(&mut f);
    let _ = sh_seen;
    Parse::Done((f, client.sni, complete))
}

fn is_sslv2_hello(d: &[u8]) -> bool {
    d.len() >= 5 && d[0] & 0x80 != 0 && d[2] == 1 && (d[3] == 0 || d[3] == 3) && d[4] <= 4
}

/// TLS over TCP.
pub(crate) fn detect_tls(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    if c.is_empty() {
        // A server that speaks first is not TLS (unless we picked the flow up mid-way).
        if ctx.s2c.len() >= 3 && ctx.s2c[0] == 22 && ctx.s2c[1] == 3 {
            let mut server = ServerSide::default();
            let mut digests = ctx.digests.map(RefCell::borrow_mut);
            let mut own = DigestMemo::default();
            let digests = digests.as_deref_mut().unwrap_or(&mut own);
            let (seen, complete) = read_server(ctx.s2c, &mut server, false, digests);
            if seen {
                let mut f = TlsFacts::default();
                server.merge_into(&mut f);
                let mut d = Detected::new(
                    App::Tls,
                    Encryption::Encrypted,
                    Some(Facts::Tls(Box::new(f))),
                    complete && ctx.c2s_closed,
                );
                d.service = service_hint(None, ctx);
                return Parse::Done(d);
            }
        }
        return if ctx.s2c.is_empty() {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    }
    if !(c[0] == 22 || is_sslv2_hello(c) || (c.len() < 5 && c[0] & 0x80 != 0)) {
        return Parse::NotThis;
    }
    match parse_tls_pair(c, ctx.s2c, ctx.c2s_closed, ctx.tls_memo, ctx.digests) {
        Parse::Done((f, sni, complete)) => {
            let mut d = Detected::new(App::Tls, Encryption::Encrypted, None, complete);
            d.service = service_hint(sni.as_deref(), ctx);
            d.sni = sni;
            d.facts = Some(Facts::Tls(Box::new(f)));
            Parse::Done(d)
        }
        Parse::NeedMore => Parse::NeedMore,
        Parse::NotThis => Parse::NotThis,
    }
}

/// DTLS over UDP (one datagram per call).
pub(crate) fn detect_dtls(ctx: &Ctx) -> Parse<Detected> {
    let d = if ctx.c2s.is_empty() { ctx.s2c } else { ctx.c2s };
    if d.len() < 13 || !(20..=25).contains(&d[0]) || d[1] != 0xfe || d[2] < 0xfc {
        return Parse::NotThis;
    }
    let mut f = TlsFacts {
        record_version: Some(version_name(u16::from_be_bytes([d[1], d[2]]))),
        ..Default::default()
    };
    let mut sni = None;
    let mut off = 0usize;
    let mut any = false;
    let mut digests = DigestMemo::default();
    while off < d.len() {
        let Ok((rest, rec)) = parse_dtls_plaintext_record(&d[off..]) else {
            break;
        };
        any = true;
        for m in &rec.messages {
            if let DTLSMessage::Handshake(h) = m {
                match &h.body {
                    DTLSMessageHandshakeBody::ClientHello(ch) => {
                        sni = client_hello_facts(
                            &mut f,
                            Ja4Transport::Dtls,
                            ch.version.0,
                            ch.ciphers.iter().map(|c| c.0),
                            ch.ext,
                            &mut digests,
                        )
                        .or(sni);
                    }
                    DTLSMessageHandshakeBody::ServerHello(sh) => {
                        let mut server = ServerSide::default();
                        server_hello_facts(
                            &mut server,
                            sh.version.0,
                            sh.random,
                            sh.cipher.0,
                            sh.ext,
                            &mut digests,
                        );
                        server.merge_into(&mut f);
                    }
                    _ => {}
                }
            }
        }
        off = d.len() - rest.len();
        if rest.is_empty() {
            break;
        }
    }
    if !any {
        return Parse::NotThis;
    }
    let complete = f.selected_version.is_some();
    let mut det = Detected::new(App::Dtls, Encryption::Encrypted, None, complete);
    det.sni = sni;
    det.facts = Some(Facts::Dtls(Box::new(f)));
    Parse::Done(det)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease() {
        assert!(is_grease(0x0a0a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0a1a));
    }

    #[test]
    fn versions() {
        assert_eq!(version_name(0x0303), "TLS 1.2");
        assert_eq!(version_name(0xfefd), "DTLS 1.2");
    }

    fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
        let mut h = vec![msg_type];
        h.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        h.extend_from_slice(body);
        h
    }

    fn client_hello(ciphers: &[u16], sni: &str) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[1; 32]);
        b.push(0);
        b.extend_from_slice(&(2 * ciphers.len() as u16).to_be_bytes());
        for c in ciphers {
            b.extend_from_slice(&c.to_be_bytes());
        }
        b.extend_from_slice(&[1, 0]);
        let name = sni.as_bytes();
        let mut sni_ext = vec![0, 0];
        sni_ext.extend_from_slice(&(name.len() as u16 + 5).to_be_bytes());
        sni_ext.extend_from_slice(&(name.len() as u16 + 3).to_be_bytes());
        sni_ext.push(0);
        sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni_ext.extend_from_slice(name);
        b.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
        b.extend_from_slice(&sni_ext);
        record(22, &handshake(1, &b))
    }

    fn server_hello(random: &[u8; 32]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(random);
        b.extend_from_slice(&[0, 0x13, 0x01, 0]);
        b.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
        record(22, &handshake(2, &b))
    }

    /// The memo must answer exactly like a fresh parse, also when a HelloRetryRequest makes
    /// the same client bytes read differently (past the compatibility CCS, to the second
    /// ClientHello).
    #[test]
    fn client_memo_answers_like_a_fresh_parse_across_a_hello_retry() {
        let ccs = record(20, &[1]);
        let c2s = [
            client_hello(&[0x1301, 0x1302], "one.example"),
            ccs,
            client_hello(&[0x1301], "two.example"),
        ]
        .concat();
        let hrr = server_hello(&HRR_RANDOM);
        let sh = server_hello(&[7; 32]);
        let memo = ClientMemoCell::default();
        let digests = RefCell::new(DigestMemo::default());
        let steps = [
            (Vec::new(), "one.example"),
            (hrr.clone(), "two.example"),
            ([hrr, sh].concat(), "two.example"),
        ];
        for (s2c, sni) in steps {
            let fresh = parse_tls_pair(&c2s, &s2c, false, None, None);
            let memoized = parse_tls_pair(&c2s, &s2c, false, Some(&memo), Some(&digests));
            assert_eq!(fresh, memoized);
            let Parse::Done((_, read_sni, _)) = memoized else {
                panic!("not parsed: {memoized:?}");
            };
            assert_eq!(read_sni.as_deref(), Some(sni));
        }
        // Grown client bytes are read again, not answered from the memo.
        let memo = ClientMemoCell::default();
        let hello = client_hello(&[0x1303], "three.example");
        let prefix = parse_tls_pair(&hello[..20], &[], false, Some(&memo), None);
        assert_eq!(prefix, Parse::NeedMore);
        let Parse::Done((_, sni, _)) = parse_tls_pair(&hello, &[], false, Some(&memo), None) else {
            panic!("not parsed");
        };
        assert_eq!(sni.as_deref(), Some("three.example"));
    }
}
