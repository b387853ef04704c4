//! Zero-copy views of TLS ClientHello and ServerHello messages and of an extensions block.
//!
//! The hot path of TLS dissection reads one ClientHello and one ServerHello per flow. Going
//! through `tls-parser` for them allocated about twenty vectors per flow (cipher and
//! compression lists, the extension list and each extension's inner list), which made TLS the
//! largest part of the dissection profile. These views borrow the message bytes instead.
//! `tls-parser` stays the reference: a property test checks that a view exists exactly when
//! `tls-parser` parses the same bytes, with the same fields (version, random, session id,
//! cipher suites, compression methods, extensions block), and DTLS still goes through it.
//!
//! Guarantees: pure, never panics and never reads out of bounds on any input; a view borrows
//! its input and allocates nothing.

/// Big-endian u16 at `at`, when the bytes are there.
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Calls `f(type, body)` for each extension of a raw extensions block, in order, up to the
/// first extension whose length runs past the block.
pub(crate) fn for_each_extension<'a>(ext: &'a [u8], mut f: impl FnMut(u16, &'a [u8])) {
    let mut off = 0usize;
    while let (Some(t), Some(l)) = (be16(ext, off), be16(ext, off + 2)) {
        let Some(body) = ext.get(off + 4..off + 4 + l as usize) else {
            break;
        };
        f(t, body);
        off += 4 + l as usize;
    }
}

/// The extension types of a raw extensions block, in order, up to the first extension whose
/// length runs past the block.
pub(crate) fn extension_types(ext: &[u8]) -> impl Iterator<Item = u16> + Clone + '_ {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        let t = be16(ext, off)?;
        let l = usize::from(be16(ext, off + 2)?);
        ext.get(off + 4..off + 4 + l)?;
        off += 4 + l;
        Some(t)
    })
}

/// The u16 values of a list body, two bytes each (an odd trailing byte is ignored).
pub(crate) fn u16s(list: &[u8]) -> impl Iterator<Item = u16> + Clone + '_ {
    list.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
}

/// A ClientHello's fields, borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientHelloView<'a> {
    pub version: u16,
    pub random: &'a [u8],
    pub session_id: &'a [u8],
    /// The cipher suites, two bytes each.
    pub ciphers: &'a [u8],
    pub compressions: &'a [u8],
    /// The extensions block without its length, when present and complete (as `tls-parser`
    /// reports it: a block whose length runs past the message is absent, not an error).
    pub ext: Option<&'a [u8]>,
}

impl<'a> ClientHelloView<'a> {
    /// Reads a ClientHello body (the bytes after the 4-byte handshake header). `None` when
    /// the body is not a well-formed ClientHello.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader(body);
        let version = r.u16()?;
        let random = r.take(32)?;
        let session_id = r.session_id()?;
        let cipher_len = usize::from(r.u16()?);
        if cipher_len % 2 == 1 {
            return None;
        }
        let ciphers = r.take(cipher_len)?;
        let comp_len = usize::from(r.u8()?);
        let compressions = r.take(comp_len)?;
        Some(ClientHelloView {
            version,
            random,
            session_id,
            ciphers,
            compressions,
            ext: r.optional_block(),
        })
    }

    pub fn cipher_ids(&self) -> impl Iterator<Item = u16> + Clone + 'a {
        u16s(self.ciphers)
    }
}

/// A ServerHello's fields, borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ServerHelloView<'a> {
    pub version: u16,
    pub random: &'a [u8],
    pub session_id: &'a [u8],
    pub cipher: u16,
    pub compression: u8,
    pub ext: Option<&'a [u8]>,
}

impl<'a> ServerHelloView<'a> {
    /// Reads a ServerHello body (after the 4-byte handshake header). `None` when it is not a
    /// well-formed ServerHello of SSL 3.0 to TLS 1.2 framing (TLS 1.3 uses the TLS 1.2
    /// framing with legacy_version 0x0303); the TLS 1.3 draft-18 layout is not read.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader(body);
        let version = r.u16()?;
        let has_ext = match version {
            0x0301..=0x0303 => true,
            0x0300 => false,
            _ => return None,
        };
        let random = r.take(32)?;
        let session_id = r.session_id()?;
        let cipher = r.u16()?;
        let compression = r.u8()?;
        Some(ServerHelloView {
            version,
            random,
            session_id,
            cipher,
            compression,
            ext: if has_ext { r.optional_block() } else { None },
        })
    }
}

/// A cursor over a message body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A session id: one length byte of at most 32, then the id.
    fn session_id(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        if n > 32 {
            return None;
        }
        self.take(usize::from(n))
    }

    /// An optional u16-length-prefixed block: absent when the rest is too short for it.
    fn optional_block(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(be16(self.0, 0)?);
        self.0.get(2..2 + n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tls_parser::{TlsMessage, TlsMessageHandshake, parse_tls_message_handshake};

    /// The message with its 4-byte handshake header.
    fn message(msg_type: u8, body: &[u8]) -> Vec<u8> {
        let len = (body.len() as u32).to_be_bytes();
        let mut m = vec![msg_type, len[1], len[2], len[3]];
        m.extend_from_slice(body);
        m
    }

    fn client_reference(body: &[u8]) -> Option<ClientHelloView<'_>> {
        let m = message(1, body);
        match parse_tls_message_handshake(&m) {
            Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)))) => {
                // Offsets into `body` so the view can be compared by value.
                let at = |s: &[u8]| s.as_ptr() as usize - m.as_ptr() as usize - 4;
                let random_at = at(ch.random);
                let sid = ch.session_id.unwrap_or(&[]);
                let sid_at = random_at + 33;
                let ciphers_at = sid_at + sid.len() + 2;
                let comp_at = ciphers_at + 2 * ch.ciphers.len() + 1;
                Some(ClientHelloView {
                    version: ch.version.0,
                    random: &body[random_at..random_at + 32],
                    session_id: &body[sid_at..sid_at + sid.len()],
                    ciphers: &body[ciphers_at..ciphers_at + 2 * ch.ciphers.len()],
                    compressions: &body[comp_at..comp_at + ch.comp.len()],
                    ext: ch.ext.map(|e| &body[at(e)..at(e) + e.len()]),
                })
            }
            _ => None,
        }
    }

    fn server_reference(body: &[u8]) -> Option<ServerHelloView<'_>> {
        let m = message(2, body);
        match parse_tls_message_handshake(&m) {
            Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)))) => {
                let at = |s: &[u8]| s.as_ptr() as usize - m.as_ptr() as usize - 4;
                let random_at = at(sh.random);
                let sid = sh.session_id.unwrap_or(&[]);
                Some(ServerHelloView {
                    version: sh.version.0,
                    random: &body[random_at..random_at + 32],
                    session_id: &body[random_at + 33..random_at + 33 + sid.len()],
                    cipher: sh.cipher.0,
                    compression: sh.compression.0,
                    ext: sh.ext.map(|e| &body[at(e)..at(e) + e.len()]),
                })
            }
            _ => None,
        }
    }

    /// A ClientHello body built from parts, with lengths that may lie.
    fn client_body(
        version: u16,
        sid: &[u8],
        ciphers: &[u8],
        cipher_len_delta: i8,
        comp: &[u8],
        ext: Option<(&[u8], i8)>,
        trailing: &[u8],
    ) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend_from_slice(&[7u8; 32]);
        b.push(sid.len() as u8);
        b.extend_from_slice(sid);
        let cl = (ciphers.len() as i32 + i32::from(cipher_len_delta)).clamp(0, 0xffff) as u16;
        b.extend_from_slice(&cl.to_be_bytes());
        b.extend_from_slice(ciphers);
        b.push(comp.len() as u8);
        b.extend_from_slice(comp);
        if let Some((e, delta)) = ext {
            let el = (e.len() as i32 + i32::from(delta)).clamp(0, 0xffff) as u16;
            b.extend_from_slice(&el.to_be_bytes());
            b.extend_from_slice(e);
        }
        b.extend_from_slice(trailing);
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Well-formed and lying ClientHellos, and every prefix of them: the view exists
        /// exactly when tls-parser parses, with the same fields.
        #[test]
        fn client_view_agrees_with_tls_parser(
            version in prop_oneof![Just(0x0303u16), Just(0x0301), any::<u16>()],
            sid in proptest::collection::vec(any::<u8>(), 0..34),
            ciphers in proptest::collection::vec(any::<u8>(), 0..12),
            cipher_len_delta in -2i8..3,
            comp in proptest::collection::vec(any::<u8>(), 0..3),
            ext in proptest::option::of((proptest::collection::vec(any::<u8>(), 0..16), -2i8..3)),
            trailing in proptest::collection::vec(any::<u8>(), 0..3),
            cut in any::<prop::sample::Index>(),
        ) {
            let body = client_body(
                version,
                &sid,
                &ciphers,
                cipher_len_delta,
                &comp,
                ext.as_ref().map(|(e, d)| (e.as_slice(), *d)),
                &trailing,
            );
            prop_assert_eq!(ClientHelloView::parse(&body), client_reference(&body));
            let prefix = &body[..cut.index(body.len() + 1)];
            prop_assert_eq!(ClientHelloView::parse(prefix), client_reference(prefix));
        }

        #[test]
        fn client_view_agrees_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..120)) {
            prop_assert_eq!(ClientHelloView::parse(&body), client_reference(&body));
        }

        #[test]
        fn server_view_agrees_with_tls_parser(
            version in prop_oneof![0x02ffu16..=0x0305, Just(0x7f12), any::<u16>()],
            sid in proptest::collection::vec(any::<u8>(), 0..34),
            rest in proptest::collection::vec(any::<u8>(), 0..12),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut body = version.to_be_bytes().to_vec();
            body.extend_from_slice(&[9u8; 32]);
            body.push(sid.len() as u8);
            body.extend_from_slice(&sid);
            body.extend_from_slice(&rest);
            prop_assert_eq!(ServerHelloView::parse(&body), server_reference(&body));
            let prefix = &body[..cut.index(body.len() + 1)];
            prop_assert_eq!(ServerHelloView::parse(prefix), server_reference(prefix));
        }
    }

    #[test]
    fn extensions_are_walked_up_to_the_first_overrun() {
        let block = [0, 0, 0, 1, 9, 0, 16, 0, 0, 0, 43, 0, 9, 1];
        let mut seen = Vec::new();
        for_each_extension(&block, |t, body| seen.push((t, body.to_vec())));
        assert_eq!(seen, vec![(0, vec![9]), (16, vec![])]);
    }
}
