//! QUIC: long-header detection, and decryption of the client's Initial packets to read the
//! TLS ClientHello they carry (SNI, ALPN, offered versions and ciphers, JA3, JA4).
//!
//! Initial packets are protected with keys anyone can derive from the client's Destination
//! Connection ID (RFC 9001 §5.2; QUIC v2: RFC 9369 §3.3; drafts 29–34 use their own salts):
//! HKDF-Extract with the version's salt, HKDF-Expand-Label "client in", then "quic key" /
//! "quic iv" / "quic hp" ("quicv2 …" for v2). Header protection is removed with the AES-128
//! mask of a 16-byte sample, the payload opened with AES-128-GCM (`ring`). CRYPTO frames are
//! reassembled by offset across frames, coalesced packets, Initial packets and datagrams into
//! a bounded buffer ([`CRYPTO_CAP`] bytes per flow, charged to the dissection budget; bytes
//! beyond it are counted in `BudgetStats::bytes_not_buffered`), then read as a handshake
//! stream by `tls::client_hello_from_handshake`.
//!
//! The server's Initials use keys from the same DCID ("server in"): their ServerHello gives
//! the selected version, cipher suite and JA3S.
//!
//! Guarantees: pure (no I/O); never panics on any datagram; a packet whose authentication
//! tag does not verify contributes nothing, so a truncated or forged Initial can never yield
//! a wrong SNI; QUIC is `encrypted` whatever was decrypted.

use ring::aead::{
    self, AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey, quic::HeaderProtectionKey,
};
use ring::hkdf;
use serde::Serialize;

use super::ja4::Ja4Transport;
use super::tls::{TlsFacts, client_hello_from_handshake, server_hello_from_handshake};
use super::{App, Budget, Ctx, Detected, Encryption, Facts, Lease, Parse};
use crate::sanitize::sanitize_bytes;

/// CRYPTO stream bytes kept per flow: a ClientHello with post-quantum key shares is ~2 KiB;
/// large certificates-compression or padding extensions stay well within this.
pub const CRYPTO_CAP: usize = 16 * 1024;

/// Disjoint CRYPTO ranges tracked while waiting for holes to fill.
const MAX_RANGES: usize = 32;

/// QUIC facts: long-header fields of the first packet, plus the hellos read from decrypted
/// Initial packets.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QuicFacts {
    /// "1", "2", "draft-29", "0x…" ("negotiation" = version negotiation).
    pub version: String,
    /// Long-header packet type of the first packet: "initial", "0rtt", "handshake", "retry"
    /// ("gquic" for Google QUIC).
    pub packet_type: &'static str,
    pub dcid_len: u8,
    pub scid_len: u8,
    /// Client Initial packets whose protection was removed and tag verified.
    pub initials_decrypted: u32,
    /// Server Initial packets decrypted (their keys come from the client's DCID).
    pub server_initials_decrypted: u32,
    /// CRYPTO bytes were dropped (beyond [`CRYPTO_CAP`] or the global budget).
    pub crypto_truncated: bool,
    /// The client's ClientHello (SNI, ALPN, versions, ciphers, JA3, JA4 starting with `q`),
    /// when decrypted and complete, with the server's ServerHello choices (selected version,
    /// cipher suite, JA3S) when its Initial was decrypted too.
    pub tls: Option<Box<TlsFacts>>,
}

pub(crate) fn quic_version(v: u32) -> String {
    match v {
        0 => "negotiation".into(),
        1 => "1".into(),
        VERSION_2 => "2".into(),
        0xff00_0000..=0xff00_00ff => format!("draft-{}", v & 0xff),
        _ => format!("0x{v:08x}"),
    }
}

const VERSION_2: u32 = 0x6b33_43cf;

/// Long-header packet types (their bits differ between v1 and v2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

fn packet_kind(version: u32, first: u8) -> Kind {
    let bits = (first >> 4) & 3;
    if version == VERSION_2 {
        [Kind::Retry, Kind::Initial, Kind::ZeroRtt, Kind::Handshake][bits as usize]
    } else {
        [Kind::Initial, Kind::ZeroRtt, Kind::Handshake, Kind::Retry][bits as usize]
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Initial => "initial",
        Kind::ZeroRtt => "0rtt",
        Kind::Handshake => "handshake",
        Kind::Retry => "retry",
    }
}

/// How a version protects its Initial packets.
pub(crate) struct InitialSuite {
    salt: [u8; 20],
    key_label: &'static [u8],
    iv_label: &'static [u8],
    hp_label: &'static [u8],
}

const SUITE_V1: InitialSuite = InitialSuite {
    salt: [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ],
    key_label: b"quic key",
    iv_label: b"quic iv",
    hp_label: b"quic hp",
};

const SUITE_V2: InitialSuite = InitialSuite {
    salt: [
        0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d,
        0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
    ],
    key_label: b"quicv2 key",
    iv_label: b"quicv2 iv",
    hp_label: b"quicv2 hp",
};

/// draft-ietf-quic-tls-29 to -32.
const SUITE_DRAFT29: InitialSuite = InitialSuite {
    salt: [
        0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11,
        0xe0, 0x43, 0x90, 0xa8, 0x99,
    ],
    key_label: b"quic key",
    iv_label: b"quic iv",
    hp_label: b"quic hp",
};

/// The Initial protection of a version, when podwire can derive it.
pub(crate) fn initial_suite(version: u32) -> Option<&'static InitialSuite> {
    match version {
        // Drafts 33 and 34 already used the final salt.
        1 | 0xff00_0021 | 0xff00_0022 => Some(&SUITE_V1),
        VERSION_2 => Some(&SUITE_V2),
        0xff00_001d..=0xff00_0020 => Some(&SUITE_DRAFT29),
        _ => None,
    }
}

/// HKDF output length for ring.
struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    let len = (out.len() as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, OutLen(out.len())).ok()?.fill(out).ok()
}

/// Raw Initial key material of one side: (key, iv, hp).
pub(crate) type KeyMaterial = ([u8; 16], [u8; 12], [u8; 16]);

/// Derives the Initial key material for `side` ("client in" or "server in") from the
/// client's first Destination Connection ID.
pub(crate) fn initial_key_material(
    suite: &InitialSuite,
    dcid: &[u8],
    side: &[u8],
) -> Option<KeyMaterial> {
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, &suite.salt).extract(dcid);
    let mut secret = [0u8; 32];
    expand_label(&initial, side, &mut secret)?;
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
    let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
    expand_label(&prk, suite.key_label, &mut key)?;
    expand_label(&prk, suite.iv_label, &mut iv)?;
    expand_label(&prk, suite.hp_label, &mut hp)?;
    Some((key, iv, hp))
}

/// Ready-to-use client Initial keys.
pub(crate) struct InitialKeys {
    aead: LessSafeKey,
    iv: [u8; 12],
    hp: HeaderProtectionKey,
}

impl InitialKeys {
    pub(crate) fn new(m: &KeyMaterial) -> Option<Self> {
        Some(InitialKeys {
            aead: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &m.0).ok()?),
            iv: m.1,
            hp: HeaderProtectionKey::new(&aead::quic::AES_128, &m.2).ok()?,
        })
    }

    fn client(suite: &InitialSuite, dcid: &[u8]) -> Option<Self> {
        Self::new(&initial_key_material(suite, dcid, b"client in")?)
    }

    fn nonce(&self, pn: u64) -> Nonce {
        let mut n = self.iv;
        for (b, p) in n[4..].iter_mut().zip(pn.to_be_bytes()) {
            *b ^= p;
        }
        Nonce::assume_unique_for_key(n)
    }
}

/// Reads a QUIC variable-length integer (RFC 9000 §16).
fn varint(b: &[u8], off: &mut usize) -> Option<u64> {
    let first = *b.get(*off)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(*off..*off + len)?;
    let mut v = u64::from(first & 0x3f);
    for x in &bytes[1..] {
        v = (v << 8) | u64::from(*x);
    }
    *off += len;
    Some(v)
}

/// A long-header packet's layout.
struct LongHeader<'a> {
    version: u32,
    kind: Kind,
    dcid: &'a [u8],
    /// Offset of the (protected) packet number; for Retry and version negotiation, 0.
    pn_offset: usize,
    /// End of this packet inside the datagram.
    end: usize,
}

/// Google QUIC versions ("Q046", "T051") use their own handshake.
fn is_gquic_version(v: u32) -> bool {
    let b = v.to_be_bytes();
    (b[0] == b'Q' || b[0] == b'T') && b[1] == b'0'
}

/// Version, packet type and DCID of a long header, even when the packet is cut short.
fn long_header_ids(d: &[u8]) -> Option<(u32, Kind, &[u8])> {
    let first = *d.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let version = u32::from_be_bytes(d.get(1..5)?.try_into().ok()?);
    let dl = *d.get(5)? as usize;
    if dl > 20 {
        return None;
    }
    Some((version, packet_kind(version, first), d.get(6..6 + dl)?))
}

/// Parses the long header at the start of `d`. None: not a complete long-header packet.
fn long_header(d: &[u8]) -> Option<LongHeader<'_>> {
    let first = *d.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let version = u32::from_be_bytes(d.get(1..5)?.try_into().ok()?);
    let dl = *d.get(5)? as usize;
    let dcid = d.get(6..6 + dl)?;
    let sl = *d.get(6 + dl)? as usize;
    if dl > 20 || sl > 20 {
        return None;
    }
    let mut off = 7 + dl + sl;
    let kind = packet_kind(version, first);
    if version == 0 || kind == Kind::Retry {
        // Version negotiation and Retry run to the end of the datagram.
        return (d.len() >= off).then_some(LongHeader {
            version,
            kind,
            dcid,
            pn_offset: 0,
            end: d.len(),
        });
    }
    if kind == Kind::Initial {
        let token = varint(d, &mut off)?;
        off = off.checked_add(usize::try_from(token).ok()?)?;
    }
    let len = usize::try_from(varint(d, &mut off)?).ok()?;
    let end = off.checked_add(len)?;
    (end <= d.len()).then_some(LongHeader {
        version,
        kind,
        dcid,
        pn_offset: off,
        end,
    })
}

/// Recovers a full packet number from its truncated encoding (RFC 9000 §A.3).
fn decode_pn(largest: Option<u64>, truncated: u64, bits: u32) -> u64 {
    let expected = largest.map_or(0, |l| l + 1);
    let win = 1u64 << bits;
    let hwin = win / 2;
    let mask = win - 1;
    let candidate = (expected & !mask) | truncated;
    if candidate.saturating_add(hwin) <= expected && candidate < (1u64 << 62) - win {
        candidate + win
    } else if candidate > expected.saturating_add(hwin) && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// Removes header protection and opens one Initial packet in `scratch`. Returns the range of
/// the plaintext frames inside `scratch`, or None when the tag does not verify.
fn open_initial(
    keys: &InitialKeys,
    packet: &[u8],
    h: &LongHeader<'_>,
    largest_pn: Option<u64>,
    scratch: &mut Vec<u8>,
) -> Option<(std::ops::Range<usize>, u64)> {
    // The sample (and the packet number) must lie inside this packet, not a coalesced
    // neighbour: RFC 9001 §5.4.2 requires senders to make packets long enough.
    if h.end < h.pn_offset + 20 {
        return None;
    }
    let sample = packet.get(h.pn_offset + 4..h.pn_offset + 20)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    let first = packet[0] ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 3) + 1;
    scratch.clear();
    scratch.extend_from_slice(packet.get(..h.end)?);
    scratch[0] = first;
    let mut truncated = 0u64;
    for i in 0..pn_len {
        scratch[h.pn_offset + i] ^= mask[1 + i];
        truncated = (truncated << 8) | u64::from(scratch[h.pn_offset + i]);
    }
    let pn = decode_pn(largest_pn, truncated, 8 * pn_len as u32);
    let header_len = h.pn_offset + pn_len;
    let (header, body) = scratch.split_at_mut(header_len);
    let plain = keys
        .aead
        .open_in_place(keys.nonce(pn), Aad::from(&*header), body)
        .ok()?
        .len();
    Some((header_len..header_len + plain, pn))
}

/// The CRYPTO stream of the Initial packet number space, reassembled by offset.
#[derive(Default)]
struct CryptoStream {
    buf: Vec<u8>,
    /// Filled ranges, sorted, disjoint and non-adjacent.
    ranges: Vec<(usize, usize)>,
    truncated: bool,
}

impl CryptoStream {
    fn insert(&mut self, off: u64, data: &[u8], budget: &mut Budget, lease: &mut Lease) {
        let start = usize::try_from(off).unwrap_or(usize::MAX).min(CRYPTO_CAP);
        let end = start.saturating_add(data.len()).min(CRYPTO_CAP);
        let kept = end - start;
        if kept < data.len() {
            budget.stats.bytes_not_buffered += (data.len() - kept) as u64;
            self.truncated = true;
        }
        if kept == 0 {
            return;
        }
        if end > self.buf.len() {
            let grow = end - self.buf.len();
            if !budget.try_charge(lease, grow) {
                budget.stats.budget_exhausted += 1;
                budget.stats.bytes_not_buffered += kept as u64;
                self.truncated = true;
                return;
            }
            self.buf.resize(end, 0);
        }
        self.buf[start..end].copy_from_slice(&data[..kept]);
        let at = self.ranges.partition_point(|r| r.0 < start);
        self.ranges.insert(at, (start, end));
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.ranges.len());
        for &(s, e) in &self.ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged.truncate(MAX_RANGES);
        self.ranges = merged;
    }

    /// The bytes from offset 0 with no hole.
    fn contiguous(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, e)) => &self.buf[..e],
            _ => &[],
        }
    }
}

/// Initial keys and the DCID they were derived from.
type KeysFor = (InitialKeys, [u8; 20], usize);

fn dcid_of(k: &Option<KeysFor>) -> Option<&[u8]> {
    k.as_ref().map(|(_, id, n)| &id[..*n])
}

/// One side's Initial packet-number space.
#[derive(Default)]
struct Side {
    keys: Option<KeysFor>,
    largest_pn: Option<u64>,
    crypto: CryptoStream,
    /// Packets whose protection was removed and tag verified.
    decrypted: u32,
    /// This side's hello was read, or cannot be.
    finished: bool,
}

impl Side {
    /// Opens `packet` with this side's keys and stores its CRYPTO data. True when opened.
    fn open(
        &mut self,
        packet: &[u8],
        h: &LongHeader<'_>,
        scratch: &mut Vec<u8>,
        budget: &mut Budget,
        lease: &mut Lease,
    ) -> bool {
        let Some((keys, _, _)) = &self.keys else {
            return false;
        };
        let Some((range, pn)) = open_initial(keys, packet, h, self.largest_pn, scratch) else {
            return false;
        };
        self.decrypted += 1;
        self.largest_pn = Some(self.largest_pn.map_or(pn, |l| l.max(pn)));
        read_frames(&scratch[range], &mut self.crypto, budget, lease);
        true
    }
}

/// Per-flow state while the ClientHello (and the server's ServerHello) are being collected.
pub(crate) struct QuicFlow {
    client: Side,
    /// Server Initial keys come from the client's DCID, known once a client Initial opened.
    server: Side,
    scratch: Vec<u8>,
    lease: Lease,
    hello: Option<(Box<TlsFacts>, Option<String>)>,
    server_hello: Option<Box<TlsFacts>>,
    /// Something changed since the last `publish`.
    dirty: bool,
}

impl QuicFlow {
    /// State for a flow whose first long header announced a version with derivable keys.
    pub(crate) fn new() -> Self {
        QuicFlow {
            client: Side::default(),
            server: Side::default(),
            scratch: Vec::new(),
            lease: Lease::default(),
            hello: None,
            server_hello: None,
            dirty: false,
        }
    }

    /// True when `d` starts with an IETF QUIC long header (any version: after a version
    /// negotiation the client's next Initial may use one whose keys are derivable).
    pub(crate) fn wanted(d: &[u8]) -> bool {
        long_header_ids(d).is_some_and(|(v, _, _)| !is_gquic_version(v))
    }

    /// Feeds one datagram of either direction (client Initials open with client keys, server
    /// Initials with server keys; the capture may start with either). Returns true when
    /// nothing more is to be learned.
    ///
    /// `from_initiator`: sent by the flow's first sender, normally the client. When one of its
    /// Initials cannot be opened (cut short by the capture's snap length), its DCID still
    /// gives the server's Initial keys, as long as no client Initial opened.
    pub(crate) fn on_datagram(
        &mut self,
        from_initiator: bool,
        d: &[u8],
        budget: &mut Budget,
    ) -> bool {
        if self.is_finished() {
            return true;
        }
        let before = self.progress();
        let mut off = 0usize;
        while off < d.len() {
            let packet = &d[off..];
            let Some(h) = long_header(packet) else {
                // Short header (1-RTT) or garbage: the rest of the datagram. A truncated
                // client Initial still names the DCID the server's keys come from.
                if from_initiator
                    && self.server.keys.is_none()
                    && self.client.decrypted == 0
                    && let Some((v, Kind::Initial, dcid)) = long_header_ids(packet)
                    && let Some(suite) = initial_suite(v)
                {
                    self.set_server_keys(suite, dcid);
                }
                break;
            };
            if h.version == 0 || h.kind == Kind::Retry {
                break;
            }
            if h.kind == Kind::Initial
                && let Some(suite) = initial_suite(h.version)
            {
                self.on_initial(suite, packet, &h, budget);
            }
            off += h.end.max(1);
        }
        if !self.client.finished {
            self.read_client_hello();
        }
        if !self.server.finished {
            self.read_server_hello();
        }
        self.dirty |= self.progress() != before;
        self.is_finished()
    }

    /// What `publish` reports besides the hellos.
    fn progress(&self) -> (u32, u32, bool, bool) {
        (
            self.client.decrypted,
            self.server.decrypted,
            self.client.crypto.truncated,
            self.server.crypto.truncated,
        )
    }

    fn is_finished(&self) -> bool {
        // A stream that is not a ClientHello ends everything; otherwise wait for both hellos.
        self.client.finished && (self.hello.is_none() || self.server.finished)
    }

    fn on_initial(
        &mut self,
        suite: &InitialSuite,
        packet: &[u8],
        h: &LongHeader<'_>,
        budget: &mut Budget,
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut opened = self
            .client
            .open(packet, h, &mut scratch, budget, &mut self.lease);
        if !opened
            && dcid_of(&self.client.keys) != Some(h.dcid)
            && let Some(keys) = InitialKeys::client(suite, h.dcid)
        {
            // A first client Initial, or one after a Retry (new DCID): try its own DCID.
            let previous = self
                .client
                .keys
                .replace((keys, dcid_bytes(h.dcid), h.dcid.len()));
            opened = self
                .client
                .open(packet, h, &mut scratch, budget, &mut self.lease);
            if !opened {
                self.client.keys = previous;
            }
        }
        if opened {
            // The server protects its Initials with keys from the same DCID.
            self.set_server_keys(suite, h.dcid);
        } else if !self.server.finished {
            self.server
                .open(packet, h, &mut scratch, budget, &mut self.lease);
        }
        self.scratch = scratch;
    }

    fn set_server_keys(&mut self, suite: &InitialSuite, client_dcid: &[u8]) {
        if dcid_of(&self.server.keys) != Some(client_dcid)
            && let Some(m) = initial_key_material(suite, client_dcid, b"server in")
            && let Some(keys) = InitialKeys::new(&m)
        {
            self.server.keys = Some((keys, dcid_bytes(client_dcid), client_dcid.len()));
        }
    }

    fn read_client_hello(&mut self) {
        let hs = self.client.crypto.contiguous();
        match client_hello_from_handshake(hs, Ja4Transport::Quic) {
            Parse::Done((f, sni)) => {
                self.dirty = true;
                self.hello = Some((Box::new(f), sni));
                self.client.finished = true;
            }
            Parse::NotThis => self.client.finished = true,
            Parse::NeedMore => {
                if exceeds_cap(hs) {
                    self.client.crypto.truncated = true;
                    self.client.finished = true;
                }
            }
        }
        if self.client.finished {
            self.lease.release(self.client.crypto.buf.len());
            self.client.crypto = CryptoStream {
                truncated: self.client.crypto.truncated,
                ..CryptoStream::default()
            };
        }
    }

    fn read_server_hello(&mut self) {
        let hs = self.server.crypto.contiguous();
        match server_hello_from_handshake(hs) {
            Parse::Done(f) => {
                self.dirty = true;
                self.server_hello = Some(Box::new(f));
                self.server.finished = true;
            }
            Parse::NotThis => self.server.finished = true,
            Parse::NeedMore => self.server.finished = exceeds_cap(hs),
        }
        if self.server.finished {
            self.lease.release(self.server.crypto.buf.len());
            self.server.crypto = CryptoStream {
                truncated: self.server.crypto.truncated,
                ..CryptoStream::default()
            };
        }
    }

    /// Writes what was learned into the flow's QUIC facts and SNI (only when something
    /// changed: the facts are cloned).
    pub(crate) fn publish(&mut self, sni: &mut Option<String>, facts: &mut Option<Facts>) {
        let Some(Facts::Quic(f)) = facts else {
            return;
        };
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        f.initials_decrypted = self.client.decrypted;
        f.server_initials_decrypted = self.server.decrypted;
        f.crypto_truncated = self.client.crypto.truncated || self.server.crypto.truncated;
        if self.hello.is_none() && self.server_hello.is_none() {
            return;
        }
        let mut tls = match &self.hello {
            Some((t, name)) => {
                if name.is_some() {
                    sni.clone_from(name);
                }
                t.clone()
            }
            None => Box::default(),
        };
        if let Some(s) = &self.server_hello {
            tls.selected_version.clone_from(&s.selected_version);
            tls.cipher_suite.clone_from(&s.cipher_suite);
            tls.ja3s.clone_from(&s.ja3s);
            tls.hello_retry_request = s.hello_retry_request;
        }
        f.tls = Some(tls);
    }
}

fn dcid_bytes(dcid: &[u8]) -> [u8; 20] {
    let mut id = [0u8; 20];
    let n = dcid.len().min(20);
    id[..n].copy_from_slice(&dcid[..n]);
    id
}

/// True when the handshake message starting `hs` declares more bytes than the cap holds.
fn exceeds_cap(hs: &[u8]) -> bool {
    hs.get(1..4)
        .map(|l| u32::from_be_bytes([0, l[0], l[1], l[2]]) as usize + 4)
        .is_some_and(|n| n > CRYPTO_CAP)
}

/// Walks the frames of a decrypted Initial payload, storing CRYPTO data in `crypto`.
fn read_frames(p: &[u8], crypto: &mut CryptoStream, budget: &mut Budget, lease: &mut Lease) {
    let mut off = 0usize;
    while off < p.len() {
        let Some(t) = varint(p, &mut off) else {
            break;
        };
        match t {
            0x00 => {
                // PADDING: skip the run.
                while p.get(off) == Some(&0) {
                    off += 1;
                }
            }
            0x01 => {} // PING
            0x02 | 0x03 => {
                // ACK: largest, delay, range count, first range, ranges, [ECN counts].
                let mut ok = (0..2).all(|_| varint(p, &mut off).is_some());
                let count = varint(p, &mut off).unwrap_or(u64::MAX);
                ok &= varint(p, &mut off).is_some() && count <= 256;
                ok = ok && (0..count * 2).all(|_| varint(p, &mut off).is_some());
                if t == 0x03 {
                    ok = ok && (0..3).all(|_| varint(p, &mut off).is_some());
                }
                if !ok {
                    break;
                }
            }
            0x06 => {
                let (Some(at), Some(len)) = (varint(p, &mut off), varint(p, &mut off)) else {
                    break;
                };
                let Some(data) = usize::try_from(len)
                    .ok()
                    .and_then(|l| p.get(off..off.checked_add(l)?))
                else {
                    break;
                };
                off += data.len();
                crypto.insert(at, data, budget, lease);
            }
            // CONNECTION_CLOSE or a frame not allowed in Initial packets: stop here.
            _ => break,
        }
    }
}

/// Detects QUIC in one datagram (long header with a known version, or Google QUIC).
pub(crate) fn detect_quic(ctx: &Ctx) -> Parse<Detected> {
    let d = if ctx.c2s.is_empty() { ctx.s2c } else { ctx.c2s };
    // Google QUIC (Q0xx): public-header version flag then 8-byte CID then "Q0nn".
    if d.len() >= 13
        && d[0] & 0x80 == 0
        && d[0] & 0x09 == 0x09
        && d[9] == b'Q'
        && d[10] == b'0'
        && d[11].is_ascii_digit()
        && d[12].is_ascii_digit()
    {
        return gquic(&d[9..13], d);
    }
    if d.len() >= 6
        && d[0] & 0xc0 == 0xc0
        && d[1] == b'Q'
        && d[2] == b'0'
        && d[3].is_ascii_digit()
        && d[4].is_ascii_digit()
    {
        return gquic(&d[1..5], d);
    }
    if d.len() < 7 || d[0] & 0xc0 != 0xc0 {
        return Parse::NotThis;
    }
    let v = u32::from_be_bytes([d[1], d[2], d[3], d[4]]);
    let known = v == 0
        || v == 1
        || v == VERSION_2
        || (v & 0xffff_ff00) == 0xff00_0000
        || (v & 0x0f0f_0f0f) == 0x0a0a_0a0a
        || v == 0x5130_3530
        || (v >> 8) == 0x51_3034
        || (v >> 8) == 0x51_3035;
    if !known {
        return Parse::NotThis;
    }
    let dl = d[5];
    let sl_at = 6 + dl as usize;
    let Some(&sl) = d.get(sl_at) else {
        return Parse::NotThis;
    };
    if dl > 20 || sl > 20 || d.len() < sl_at + 1 + sl as usize {
        return Parse::NotThis;
    }
    let kind = packet_kind(v, d[0]);
    // Client Initials are padded to ≥ 1200 bytes; demand that off port 443.
    let initial = kind == Kind::Initial && v != 0;
    if !ctx.port_is(&[443, 80, 8443]) && ctx.c2s.len() == d.len() && initial && d.len() < 1200 {
        return Parse::NotThis;
    }
    let f = QuicFacts {
        version: quic_version(v),
        packet_type: kind_name(kind),
        dcid_len: dl,
        scid_len: sl,
        ..QuicFacts::default()
    };
    Parse::Done(Detected::new(
        App::Quic,
        Encryption::Encrypted,
        Some(Facts::Quic(Box::new(f))),
        true,
    ))
}

fn gquic(v: &[u8], datagram: &[u8]) -> Parse<Detected> {
    let f = QuicFacts {
        version: sanitize_bytes(v),
        packet_type: "gquic",
        dcid_len: 8,
        ..QuicFacts::default()
    };
    let mut d = Detected::new(
        App::Quic,
        Encryption::Encrypted,
        Some(Facts::Quic(Box::new(f))),
        true,
    );
    d.sni = gquic_chlo_sni(datagram);
    Parse::Done(d)
}

/// The SNI of a Google QUIC client hello (CHLO): up to Q046 it travels unencrypted as a
/// tag-value map (`CHLO`, u16 LE entry count, 2 bytes padding, entries of tag + u32 LE end
/// offset, then the values). Only a map wholly inside the datagram is read.
fn gquic_chlo_sni(d: &[u8]) -> Option<String> {
    let at = d.windows(4).position(|w| w == b"CHLO")?;
    let map = &d[at + 4..];
    let n = usize::from(u16::from_le_bytes([*map.first()?, *map.get(1)?]));
    if n == 0 || n > 128 {
        return None;
    }
    let entries = map.get(4..4 + 8 * n)?;
    let values = &map[4 + 8 * n..];
    let mut start = 0usize;
    for e in entries.chunks_exact(8) {
        let end = u32::from_le_bytes([e[4], e[5], e[6], e[7]]) as usize;
        if end < start {
            return None;
        }
        if &e[..4] == b"SNI\0" {
            return values
                .get(start..end)
                .filter(|v| !v.is_empty())
                .map(sanitize_bytes);
        }
        start = end;
    }
    None
}

/// Builds a protected client Initial packet (long header, 4-byte packet number, frames padded
/// to a 1200-byte datagram): the inverse of what the dissector does, for tests and fuzzing.
#[doc(hidden)]
pub fn seal_client_initial(version: u32, dcid: &[u8], pn: u32, frames: &[u8]) -> Option<Vec<u8>> {
    let suite = initial_suite(version)?;
    if dcid.len() > 20 {
        return None;
    }
    let keys = InitialKeys::client(suite, dcid)?;
    let type_bits = if version == VERSION_2 { 0x10 } else { 0x00 };
    let mut header = vec![0xc3 | type_bits];
    header.extend_from_slice(&version.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.push(0); // SCID length
    header.push(0); // token length
    let payload_len = frames
        .len()
        .max(1200usize.saturating_sub(header.len() + 2 + 4 + 16));
    let length = payload_len + 4 + 16;
    if length >= 0x4000 {
        return None;
    }
    header.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let pn_offset = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let mut body = frames.to_vec();
    body.resize(payload_len, 0);
    let tag = keys
        .aead
        .seal_in_place_separate_tag(keys.nonce(u64::from(pn)), Aad::from(&header), &mut body)
        .ok()?;
    let mut packet = header;
    packet.extend_from_slice(&body);
    packet.extend_from_slice(tag.as_ref());
    let mask = keys
        .hp
        .new_mask(&packet[pn_offset + 4..pn_offset + 20])
        .ok()?;
    packet[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        packet[pn_offset + i] ^= mask[1 + i];
    }
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::{Budget, Dir, FlowDissector, Transport};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect()
    }

    const DCID: &str = "8394c8f03e515708";

    /// RFC 9001 Appendix A.2: the client's CRYPTO frame (a ClientHello for example.com).
    const CLIENT_CRYPTO_FRAME: &str = "
        060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
        04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
        616d706c652e636f6dff01000100000a00080006001d00170018001000070005
        04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
        baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
        0d0010000e0403050306030203080408050806002d00020101001c0002400100
        3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
        75300901100f088394c8f03e51570806048000ffff";

    fn key_hex(m: &KeyMaterial) -> (String, String, String) {
        let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        (h(&m.0), h(&m.1), h(&m.2))
    }

    #[test]
    fn rfc9001_a1_keys() {
        let c = initial_key_material(&SUITE_V1, &hex(DCID), b"client in").unwrap();
        assert_eq!(
            key_hex(&c),
            (
                "1f369613dd76d5467730efcbe3b1a22d".into(),
                "fa044b2f42a3fd3b46fb255c".into(),
                "9f50449e04a0e810283a1e9933adedd2".into()
            )
        );
        let s = initial_key_material(&SUITE_V1, &hex(DCID), b"server in").unwrap();
        assert_eq!(
            key_hex(&s),
            (
                "cf3a5331653c364c88f0f379b6067e37".into(),
                "0ac1493ca1905853b0bba03e".into(),
                "c206b8d9b9f0f37644430b490eeaa314".into()
            )
        );
    }

    #[test]
    fn rfc9369_a1_keys() {
        let c = initial_key_material(&SUITE_V2, &hex(DCID), b"client in").unwrap();
        assert_eq!(
            key_hex(&c),
            (
                "8b1a0bc121284290a29e0971b5cd045d".into(),
                "91f73e2351d8fa91660e909f".into(),
                "45b95e15235d6f45a6b19cbcb0294ba9".into()
            )
        );
    }

    /// The RFC sample packet, rebuilt from its published plaintext; pins the published
    /// header-protection mask, protected header and authentication tag (which covers every
    /// ciphertext byte), then runs the dissector on it.
    fn rfc_packet(version: u32, protected_header: &str, mask: &str, tag: &str) -> Vec<u8> {
        let packet =
            seal_client_initial(version, &hex(DCID), 2, &hex(CLIENT_CRYPTO_FRAME)).expect("sealed");
        assert_eq!(packet.len(), 1200);
        assert_eq!(packet[..22], hex(protected_header)[..], "protected header");
        assert_eq!(packet[1200 - 16..], hex(tag)[..], "AEAD tag");
        let keys = InitialKeys::client(initial_suite(version).unwrap(), &hex(DCID)).expect("keys");
        let m = keys.hp.new_mask(&packet[22..38]).unwrap();
        assert_eq!(m[..], hex(mask)[..], "header protection mask");
        packet
    }

    fn dissect(datagrams: &[(Dir, &[u8])]) -> crate::dissect::AppInfo {
        let mut b = Budget::default();
        let mut d = FlowDissector::new(Transport::Udp, 50000, 443);
        for (dir, p) in datagrams {
            d.on_payload(*dir, None, false, p, 0, &mut b);
        }
        let info = d.result().clone();
        drop(d);
        assert_eq!(b.in_use(), 0);
        info
    }

    fn quic_tls(info: &crate::dissect::AppInfo) -> &TlsFacts {
        match &info.facts {
            Some(Facts::Quic(q)) => q.tls.as_deref().expect("ClientHello decrypted"),
            other => panic!("not quic: {other:?}"),
        }
    }

    #[test]
    fn rfc9001_a2_client_initial_decrypts_to_example_com() {
        let p = rfc_packet(
            1,
            "c000000001088394c8f03e5157080000449e7b9aec34",
            "437b9aec36",
            "e221af44860018ab0856972e194cd934",
        );
        let info = dissect(&[(Dir::ToResponder, &p)]);
        assert_eq!(info.app, App::Quic);
        assert_eq!(info.encryption, Encryption::Encrypted);
        assert_eq!(info.sni.as_deref(), Some("example.com"));
        let t = quic_tls(&info);
        assert_eq!(t.alpn, vec!["alpn"]);
        assert_eq!(t.offered_versions, vec!["TLS 1.3".to_string()]);
        assert_eq!(t.offered_cipher_count, 2);
        // Computed independently (Python hashlib) from the RFC's ClientHello.
        assert_eq!(
            t.ja4.as_deref(),
            Some("q13d0211an_62ed6f6ca7ad_4d634acda6c0")
        );
    }

    #[test]
    fn rfc9369_a2_client_initial_decrypts_to_example_com() {
        let p = rfc_packet(
            VERSION_2,
            "d76b3343cf088394c8f03e5157080000449ea0c95e82",
            "94a0c95e80",
            "a18b2faa745b6fe189cf772a9f84cbfc",
        );
        let info = dissect(&[(Dir::ToResponder, &p)]);
        assert_eq!(info.sni.as_deref(), Some("example.com"));
        match &info.facts {
            Some(Facts::Quic(q)) => {
                assert_eq!(q.version, "2");
                assert_eq!(q.packet_type, "initial");
                assert_eq!(q.initials_decrypted, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    /// RFC 9001 Appendix A.3: the server's Initial (ACK + CRYPTO with the ServerHello).
    const SERVER_INITIAL: &str = "
        cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a
        5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3
        dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84
        022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4
        2158407dd074ee";

    #[test]
    fn rfc9001_a3_server_initial_gives_the_selected_cipher() {
        let c = seal_client_initial(1, &hex(DCID), 2, &hex(CLIENT_CRYPTO_FRAME)).unwrap();
        let s = hex(SERVER_INITIAL);
        let mut b = Budget::default();
        let mut d = FlowDissector::new(Transport::Udp, 50000, 443);
        d.on_payload(Dir::ToResponder, None, false, &c, 0, &mut b);
        assert!(d.wants_more(), "waits for the server's Initial");
        // Any prefix of the server packet is ignored.
        d.on_payload(Dir::ToInitiator, None, false, &s[..s.len() - 1], 0, &mut b);
        assert!(d.wants_more());
        d.on_payload(Dir::ToInitiator, None, false, &s, 0, &mut b);
        assert!(!d.wants_more(), "both hellos read");
        let info = d.result();
        assert_eq!(info.sni.as_deref(), Some("example.com"));
        let t = quic_tls(info);
        assert_eq!(t.selected_version.as_deref(), Some("TLS 1.3"));
        assert_eq!(t.cipher_suite.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
        assert!(t.ja3s.is_some());
        match &info.facts {
            Some(Facts::Quic(q)) => assert_eq!(q.server_initials_decrypted, 1),
            other => panic!("{other:?}"),
        }
        drop(d);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn a_cut_client_initial_still_names_the_server_keys() {
        let c = seal_client_initial(1, &hex(DCID), 2, &hex(CLIENT_CRYPTO_FRAME)).unwrap();
        let s = hex(SERVER_INITIAL);
        let info = dissect(&[(Dir::ToResponder, &c[..600]), (Dir::ToInitiator, &s)]);
        assert_eq!(info.sni, None);
        let t = quic_tls(&info);
        assert_eq!(t.selected_version.as_deref(), Some("TLS 1.3"));
        assert_eq!(t.ja4, None, "no ClientHello was read");
        // From the responder's side a cut packet names nothing.
        let info = dissect(&[(Dir::ToInitiator, &c[..600]), (Dir::ToInitiator, &s)]);
        assert!(matches!(&info.facts, Some(Facts::Quic(q)) if q.tls.is_none()));
    }

    #[test]
    fn every_truncated_prefix_gives_no_sni() {
        let p = seal_client_initial(1, &hex(DCID), 2, &hex(CLIENT_CRYPTO_FRAME)).unwrap();
        for n in 0..p.len() {
            let info = dissect(&[(Dir::ToResponder, &p[..n])]);
            assert_eq!(info.sni, None, "prefix {n}");
        }
        // Any flipped byte breaks the tag or the header: never a wrong name.
        for i in (0..p.len()).step_by(7) {
            let mut q = p.clone();
            q[i] ^= 0x20;
            let info = dissect(&[(Dir::ToResponder, &q)]);
            assert!(
                info.sni.is_none() || info.sni.as_deref() == Some("example.com"),
                "byte {i}"
            );
        }
    }

    #[test]
    fn handshake_stream_prefixes_need_more() {
        let frame = hex(CLIENT_CRYPTO_FRAME);
        let hello = &frame[4..]; // after type 0x06, offset 0x00, length 0x40f1
        for n in 0..hello.len() {
            assert_eq!(
                client_hello_from_handshake(&hello[..n], Ja4Transport::Quic),
                Parse::NeedMore,
                "prefix {n}"
            );
        }
        assert!(matches!(
            client_hello_from_handshake(hello, Ja4Transport::Quic),
            Parse::Done(_)
        ));
    }

    /// CRYPTO frame bytes: type, offset, length (2-byte varints), data.
    fn crypto_frame(off: usize, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        f.extend_from_slice(&(0x4000 | off as u16).to_be_bytes());
        f.extend_from_slice(&(0x4000 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn crypto_reassembled_across_packets_datagrams_and_out_of_order() {
        let frame = hex(CLIENT_CRYPTO_FRAME);
        let hello = &frame[4..];
        let (a, rest) = hello.split_at(60);
        let (b, c) = rest.split_at(100);
        // Datagram 1: a PING, an ACK and the last piece; datagram 2: two coalesced Initials,
        // the middle piece behind padding and the first piece.
        let mut f1 = vec![0x01, 0x02, 0x00, 0x00, 0x00, 0x00];
        f1.extend(crypto_frame(160, c));
        let d1 = seal_client_initial(1, &hex(DCID), 0, &f1).unwrap();
        let mut f2 = vec![0x00, 0x00];
        f2.extend(crypto_frame(60, b));
        let mut f3 = crypto_frame(0, a);
        f3.extend(crypto_frame(0, &a[..10])); // a duplicate
        let mut d2 = seal_client_initial(1, &hex(DCID), 1, &f2).unwrap();
        d2.extend(seal_client_initial(1, &hex(DCID), 2, &f3).unwrap());
        let server_like = seal_client_initial(1, &hex("0011223344"), 0, &[0x01]).unwrap();
        let only_first = dissect(&[(Dir::ToResponder, &d1)]);
        assert_eq!(only_first.sni, None);
        let info = dissect(&[
            (Dir::ToResponder, &d1),
            (Dir::ToInitiator, &server_like[..300]),
            (Dir::ToResponder, &d2),
        ]);
        assert_eq!(info.sni.as_deref(), Some("example.com"));
        match &info.facts {
            Some(Facts::Quic(q)) => assert_eq!(q.initials_decrypted, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn crypto_beyond_the_cap_is_counted_not_kept() {
        let mut b = Budget::default();
        let mut d = FlowDissector::new(Transport::Udp, 50000, 443);
        // A handshake message claiming 64 KiB, and data far beyond the cap.
        let mut f = crypto_frame(0, &[1, 0x01, 0x00, 0x00, 3, 3]);
        f.extend([0x06, 0x80, 0x01, 0x00, 0x00, 0x04, 1, 2, 3, 4]);
        let p = seal_client_initial(1, &hex(DCID), 0, &f).unwrap();
        d.on_payload(Dir::ToResponder, None, false, &p, 0, &mut b);
        assert!(
            !d.wants_more(),
            "a ClientHello over the cap cannot complete"
        );
        assert_eq!(b.stats.bytes_not_buffered, 4);
        match &d.result().facts {
            Some(Facts::Quic(q)) => assert!(q.crypto_truncated && q.tls.is_none()),
            other => panic!("{other:?}"),
        }
        drop(d);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn gquic_chlo_sni_from_the_tag_map() {
        // CHLO with 2 entries: PAD (3 bytes), SNI (11 bytes).
        let mut chlo =
            b"\x0d\x00junkCHLO\x02\x00\x00\x00PAD\x00\x03\x00\x00\x00SNI\x00\x0e\x00\x00\x00"
                .to_vec();
        chlo.extend_from_slice(b"---example.com");
        assert_eq!(gquic_chlo_sni(&chlo).as_deref(), Some("example.com"));
        for n in 0..chlo.len() {
            let got = gquic_chlo_sni(&chlo[..n]);
            assert!(got.is_none(), "prefix {n}: {got:?}");
        }
        // Offsets going backwards are refused.
        let mut bad = chlo.clone();
        bad[18] = 0x20; // PAD ends at 32, after SNI's end
        assert_eq!(gquic_chlo_sni(&bad), None);
    }

    #[test]
    fn a_short_packet_never_samples_its_neighbour() {
        // A long header declaring a 1-byte packet, followed by a valid Initial: the short one
        // is skipped (no panic), the next one read.
        let good = seal_client_initial(1, &hex(DCID), 2, &hex(CLIENT_CRYPTO_FRAME)).unwrap();
        let mut d = hex("c300000001088394c8f03e51570800000101");
        d.extend_from_slice(&good);
        let info = dissect(&[(Dir::ToResponder, &d)]);
        assert_eq!(info.sni.as_deref(), Some("example.com"));
    }

    #[test]
    fn packet_numbers_decode_near_the_largest() {
        assert_eq!(decode_pn(Some(0xa82f30ea), 0x9b32, 16), 0xa82f9b32);
        assert_eq!(decode_pn(None, 2, 32), 2);
        assert_eq!(decode_pn(Some(0xff), 0x01, 8), 0x101);
    }
}
