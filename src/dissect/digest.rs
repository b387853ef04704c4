//! A bounded memo of the digests behind TLS fingerprints: the MD5 of JA3/JA3S strings and the
//! SHA-256 of JA4's sorted cipher and extension lists.
//!
//! The clients of one deployment send ClientHellos of the same shape, so most TLS flows hash
//! text that an earlier flow hashed already; on the benchmark capture the digests were the
//! largest single cost of TLS dissection. One memo serves every flow of an engine.
//!
//! Guarantees: it memoizes pure functions, so fingerprints are identical with or without it
//! (tests compare both); at most [`MAX_ENTRIES`] texts of at most [`MAX_TEXT`] bytes are kept
//! (longer texts are hashed without being kept) and the memo is emptied when full, so its
//! memory is bounded; no I/O, no clock.

use hashbrown::HashMap;
use md5::{Digest as _, Md5};

/// Most texts remembered before the memo is emptied.
pub const MAX_ENTRIES: usize = 4096;
/// Longest text remembered (a JA3 string of a typical browser is 150–300 bytes).
pub const MAX_TEXT: usize = 1024;

/// Writes `bytes` as lowercase hex into `out` (two digits per byte, as far as `out` goes).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0x0f)];
    }
}

/// Which digest of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Md5,
    Sha256,
}

impl Kind {
    /// Appended to the text in the memo's keys, so the same text under both digests never
    /// collides.
    fn tag(self) -> u8 {
        match self {
            Kind::Md5 => 0,
            Kind::Sha256 => 1,
        }
    }

    fn compute(self, text: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        match self {
            Kind::Md5 => out[..16].copy_from_slice(&Md5::digest(text)),
            Kind::Sha256 => {
                out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, text).as_ref())
            }
        }
        out
    }
}

/// See the module doc. `text` is the caller's scratch buffer: fill it, then ask for a digest.
#[derive(Default)]
pub struct DigestMemo {
    entries: HashMap<Box<[u8]>, [u8; 32], foldhash::fast::RandomState>,
    text: Vec<u8>,
}

impl std::fmt::Debug for DigestMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestMemo")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl DigestMemo {
    /// The scratch text, emptied.
    pub(crate) fn text(&mut self) -> &mut Vec<u8> {
        self.text.clear();
        &mut self.text
    }

    /// The digest of the scratch text (MD5 in the first 16 bytes, or SHA-256).
    pub(crate) fn digest(&mut self, kind: Kind) -> [u8; 32] {
        if self.text.len() > MAX_TEXT {
            return kind.compute(&self.text);
        }
        self.text.push(kind.tag());
        let found = self.entries.get(self.text.as_slice()).copied();
        let digest = found.unwrap_or_else(|| {
            let digest = kind.compute(&self.text[..self.text.len() - 1]);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
            self.entries.insert(self.text.as_slice().into(), digest);
            digest
        });
        self.text.pop();
        digest
    }

    /// Texts remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Remembered or not, a digest is the digest of the text; the memo stays bounded.
        #[test]
        fn memo_answers_like_a_fresh_digest(
            texts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..60),
            repeats in proptest::collection::vec(any::<prop::sample::Index>(), 0..60),
        ) {
            let mut memo = DigestMemo::default();
            let order = texts.iter().chain(repeats.iter().map(|i| i.get(&texts)));
            for text in order {
                for kind in [Kind::Md5, Kind::Sha256] {
                    memo.text().extend_from_slice(text);
                    prop_assert_eq!(memo.digest(kind), kind.compute(text));
                }
            }
            prop_assert!(memo.len() <= 2 * texts.len());
        }
    }

    #[test]
    fn known_digests_and_the_bound() {
        let mut memo = DigestMemo::default();
        memo.text().extend_from_slice(b"abc");
        let md5 = memo.digest(Kind::Md5);
        assert_eq!(
            md5[..16],
            [
                0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1,
                0x7f, 0x72
            ]
        );
        memo.text().extend_from_slice(b"abc");
        assert_eq!(memo.digest(Kind::Md5), md5, "remembered");
        assert_eq!(memo.len(), 1);
        for i in 0..MAX_ENTRIES + 10 {
            memo.text().extend_from_slice(&i.to_be_bytes());
            memo.digest(Kind::Sha256);
            assert!(memo.len() <= MAX_ENTRIES);
        }
        memo.text().resize(MAX_TEXT + 1, b'x');
        let before = memo.len();
        memo.digest(Kind::Md5);
        assert_eq!(memo.len(), before, "long texts are not kept");
    }
}
