//! JA4 TLS client fingerprint (FoxIO's specification), computed from a ClientHello's legacy
//! version, cipher suites and raw extensions block.
//!
//! Shape: `{t|q|d}{version}{d|i}{ciphers:02}{extensions:02}{alpn}_{b}_{c}` where `b` is the
//! first 12 hex digits of the SHA-256 of the sorted cipher suites (4-digit hex, comma
//! separated) and `c` the same over the sorted extension types without SNI (0x0000) and ALPN
//! (0x0010), followed by `_` and the signature algorithms in the order offered (the `_` stays
//! when there are none, as Suricata computes it). GREASE values (RFC 8701) are
//! ignored everywhere; an empty list hashes to `000000000000`.
//!
//! Guarantees: pure, never panics on malformed extension blocks (they are read up to the
//! first inconsistency), and allocates nothing unless a hostile hello
//! carries more than [`STACK_LIST`] ciphers or extensions.

use super::digest::{DigestMemo, Kind, hex_into};
use super::hello::{be16, extension_types, for_each_extension, u16s};
use super::tls::{Fingerprint, is_grease};

/// Which transport carried the ClientHello: JA4's first letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ja4Transport {
    Tcp,
    Quic,
    Dtls,
}

/// Lists up to this length are sorted in a stack array.
const STACK_LIST: usize = 256;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Orders versions newest first; DTLS numbers count down (0xfefc is DTLS 1.3).
fn version_rank(v: u16) -> u32 {
    if v >> 8 == 0xfe {
        0x1_0000 + u32::from(0xff - (v & 0xff))
    } else {
        u32::from(v)
    }
}

fn version_code(v: u16) -> [u8; 2] {
    match v {
        0x0304 => *b"13",
        0x0303 => *b"12",
        0x0302 => *b"11",
        0x0301 => *b"10",
        0x0300 => *b"s3",
        0x0200 => *b"s2",
        0x0100 => *b"s1",
        0xfeff => *b"d1",
        0xfefd => *b"d2",
        0xfefc => *b"d3",
        _ => *b"00",
    }
}

/// The highest non-GREASE version of a ClientHello supported_versions body.
fn highest_offered(body: &[u8]) -> Option<u16> {
    let n = *body.first()? as usize;
    let list = body.get(1..1 + n)?;
    u16s(list)
        .filter(|v| !is_grease(*v))
        .max_by_key(|v| version_rank(*v))
}

/// The first protocol of an ALPN body, when present and non-empty.
fn first_alpn(body: &[u8]) -> Option<&[u8]> {
    let n = *body.get(2)? as usize;
    body.get(3..3 + n).filter(|p| !p.is_empty())
}

fn alpn_code(alpn: Option<&[u8]>) -> [u8; 2] {
    let Some(p) = alpn else {
        return *b"00";
    };
    let (first, last) = (p[0], p[p.len() - 1]);
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        [first, last]
    } else {
        [HEX[(first >> 4) as usize], HEX[(last & 0x0f) as usize]]
    }
}

fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99) as u8;
    [b'0' + n / 10, b'0' + n % 10]
}

/// Appends `sep` (when given) and `v` as 4 lowercase hex digits.
fn push_hex(text: &mut Vec<u8>, sep: Option<u8>, v: u16) {
    if let Some(c) = sep {
        text.push(c);
    }
    let b = v.to_be_bytes();
    text.extend_from_slice(&[
        HEX[(b[0] >> 4) as usize],
        HEX[(b[0] & 0xf) as usize],
        HEX[(b[1] >> 4) as usize],
        HEX[(b[1] & 0xf) as usize],
    ]);
}

/// Sorts `items` (stack array, or one Vec when there are too many) and hands them to `f`.
fn with_sorted<R>(items: impl Iterator<Item = u16> + Clone, f: impl FnOnce(&[u16]) -> R) -> R {
    let mut stack = [0u16; STACK_LIST];
    let mut n = 0usize;
    for v in items.clone() {
        if n == STACK_LIST {
            let mut all: Vec<u16> = items.collect();
            all.sort_unstable();
            return f(&all);
        }
        stack[n] = v;
        n += 1;
    }
    let list = &mut stack[..n];
    list.sort_unstable();
    f(list)
}

/// Writes the first 12 hex digits of the SHA-256 of `list` (comma separated, 4-digit hex)
/// followed, when `tail` is given, by `_` and its items (comma separated, in order); zeros
/// when there is no item at all.
fn hash12(
    list: &[u16],
    tail: Option<impl Iterator<Item = u16>>,
    out: &mut [u8],
    memo: &mut DigestMemo,
) {
    let text = memo.text();
    let mut any = !list.is_empty();
    for (i, v) in list.iter().enumerate() {
        push_hex(text, (i > 0).then_some(b','), *v);
    }
    if let Some(tail) = tail {
        text.push(b'_');
        for (i, v) in tail.enumerate() {
            push_hex(text, (i > 0).then_some(b','), v);
            any = true;
        }
    }
    if !any {
        out[..12].copy_from_slice(b"000000000000");
        return;
    }
    hex_into(&memo.digest(Kind::Sha256)[..6], &mut out[..12]);
}

/// The JA4 fingerprint of a ClientHello.
pub(crate) fn ja4(
    transport: Ja4Transport,
    legacy_version: u16,
    ciphers: impl Iterator<Item = u16> + Clone,
    ext: &[u8],
    memo: &mut DigestMemo,
) -> Fingerprint {
    let mut out = [0u8; 36];
    out[0] = match transport {
        Ja4Transport::Tcp => b't',
        Ja4Transport::Quic => b'q',
        Ja4Transport::Dtls => b'd',
    };
    let mut ext_count = 0usize;
    let mut sni = false;
    let mut alpn = None;
    let mut offered = None;
    let mut sig_algs: &[u8] = &[];
    for_each_extension(ext, |t, body| {
        if is_grease(t) {
            return;
        }
        ext_count += 1;
        match t {
            0x0000 => sni = true,
            0x0010 if alpn.is_none() => alpn = first_alpn(body),
            0x002b => offered = highest_offered(body),
            0x000d => {
                let n = be16(body, 0).unwrap_or(0) as usize;
                sig_algs = body.get(2..2 + n).unwrap_or(&[]);
            }
            _ => {}
        }
    });
    let version = offered.unwrap_or(legacy_version);
    out[1..3].copy_from_slice(&version_code(version));
    out[3] = if sni { b'd' } else { b'i' };
    let real_ciphers = ciphers.filter(|c| !is_grease(*c));
    out[4..6].copy_from_slice(&two_digits(real_ciphers.clone().count()));
    out[6..8].copy_from_slice(&two_digits(ext_count));
    out[8..10].copy_from_slice(&alpn_code(alpn));
    out[10] = b'_';
    with_sorted(real_ciphers, |list| {
        hash12(list, None::<std::iter::Empty<u16>>, &mut out[11..23], memo);
    });
    out[23] = b'_';
    let sigs = u16s(sig_algs).filter(|v| !is_grease(*v));
    // Suricata keeps the `_` even when no signature algorithms were offered:
    // `0005,000a,…,ff01_` (suricata-verify bug-5713-02 pins the resulting hash).
    // The third part leaves out GREASE, SNI and ALPN.
    let hashed_types =
        extension_types(ext).filter(|t| !is_grease(*t) && *t != 0x0000 && *t != 0x0010);
    with_sorted(hashed_types, |list| {
        let tail = (!list.is_empty() || !sig_algs.is_empty()).then_some(sigs);
        hash12(list, tail, &mut out[24..36], memo);
    });
    Fingerprint::new(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_codes() {
        assert_eq!(&alpn_code(Some(b"h2")), b"h2");
        assert_eq!(&alpn_code(Some(b"http/1.1")), b"h1");
        assert_eq!(&alpn_code(Some(b"h")), b"hh");
        assert_eq!(&alpn_code(Some(&[0xab, 0x01, 0xcd])), b"ad");
        assert_eq!(&alpn_code(None), b"00");
    }

    #[test]
    fn versions_rank_dtls_newest_first() {
        assert_eq!(highest_offered(&[4, 0xfe, 0xfd, 0xfe, 0xfc]), Some(0xfefc));
        assert_eq!(
            highest_offered(&[6, 0x0a, 0x0a, 0x03, 0x04, 0x03, 0x03]),
            Some(0x0304)
        );
        assert_eq!(highest_offered(&[9, 3, 4]), None);
    }

    #[test]
    fn empty_lists_hash_to_zeros() {
        let j = ja4(
            Ja4Transport::Tcp,
            0x0303,
            [].into_iter(),
            &[],
            &mut DigestMemo::default(),
        );
        assert_eq!(j, "t12i000000_000000000000_000000000000");
    }

    #[test]
    fn no_signature_algorithms_keep_the_underscore() {
        // The TLS 1.0 ClientHello's extensions of suricata-verify bug-5713-01 (status_request,
        // supported_groups, ec_point_formats, session_ticket, extended_master_secret,
        // renegotiation_info); Suricata expects `…_ce66f3b797c1` for it.
        let ext = [
            0x00, 0x05, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00, // status_request
            0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18, // groups
            0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats
            0x00, 0x23, 0x00, 0x00, // session_ticket
            0x00, 0x17, 0x00, 0x00, // extended_master_secret
            0xff, 0x01, 0x00, 0x01, 0x00, // renegotiation_info
        ];
        let j = ja4(
            Ja4Transport::Tcp,
            0x0301,
            [0x002f, 0x0035].into_iter(),
            &ext,
            &mut DigestMemo::default(),
        );
        assert_eq!(&j[..10], "t10i020600");
        assert_eq!(&j[24..], "ce66f3b797c1");
    }

    #[test]
    fn sorted_hash_matches_a_direct_digest() {
        // Ciphers 0x1302, 0x1301 sorted: "1301,1302".
        let j = ja4(
            Ja4Transport::Quic,
            0x0303,
            [0x1302, 0x0a0a, 0x1301].into_iter(),
            &[],
            &mut DigestMemo::default(),
        );
        let d = ring::digest::digest(&ring::digest::SHA256, b"1301,1302");
        let hex: String = d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&j[..11], "q12i020000_");
        assert_eq!(&j[11..23], hex);
    }
}
