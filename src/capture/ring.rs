//! A bounded in-memory ring of recent raw frames, each tagged with the flows that counted it,
//! so the TUI can export the packets of chosen flows after the fact.
//!
//! Pure (no I/O, no clock, no threads): the TUI's source thread owns one [`PacketRing`], pushes
//! every frame the engine ingested together with the engine's [`Attribution`], and asks it for
//! the frames of a set of flow serials when the user exports.
//!
//! Guarantees:
//! - memory is bounded by two caps: the ring's heap — every frame's own buffer (counted as
//!   glibc's malloc sizes it, see [`buffer_bytes`]) plus the whole capacity of the index of
//!   [`ENTRY_BYTES`]-byte entries — never exceeds [`RingCaps::bytes`], and the number of
//!   frames never exceeds [`RingCaps::frames`]; the index grows by an eighth at a time and
//!   shrinks back when big frames displaced many small ones, so spare entries stay small;
//! - the oldest frames are evicted first and every eviction is counted; a frame that does
//!   not fit in the byte cap on its own is not stored and counted as `too_large`;
//! - frames are matched to flows by the engine's flow serial ([`crate::flow::Flow::serial`],
//!   the same number a TUI row carries in `FlowSummary::serial`): unique per engine and stable
//!   for the flow's life, so a 5-tuple reused by a later connection never mixes the two;
//! - only frames some flow counted are kept: undecodable frames and de-duplicated copies of a
//!   packet seen on several interfaces are not, so an export holds exactly the copies podwire
//!   counted (one per packet, on the interface it was first seen on) and its frame count equals
//!   the flow's packet count when nothing was evicted.

use std::collections::VecDeque;

use crate::engine::Attribution;
use crate::frame::{IfaceId, RawFrame, TimestampNs};

/// Default byte cap (`--ring-size 64`).
pub const DEFAULT_RING_MIB: usize = 64;
/// Default frame cap (`--ring-frames`).
pub const DEFAULT_RING_FRAMES: usize = 1_000_000;
/// Bytes of one entry in the ring's index (timestamp, interface, link type, lengths, flows
/// and the pointer to the frame's own buffer).
pub const ENTRY_BYTES: usize = std::mem::size_of::<StoredFrame>();
// The per-frame overhead documented in docs/capture.md: keep an entry this small.
const _: () = assert!(ENTRY_BYTES <= 56);

/// The ring's two caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCaps {
    /// Most bytes of memory: frame buffers (with the allocator's header and rounding) plus
    /// the index's capacity of [`ENTRY_BYTES`] entries; 0 turns the ring off.
    pub bytes: usize,
    /// Most frames held; 0 turns the ring off.
    pub frames: usize,
}

impl Default for RingCaps {
    fn default() -> Self {
        RingCaps {
            bytes: DEFAULT_RING_MIB << 20,
            frames: DEFAULT_RING_FRAMES,
        }
    }
}

impl RingCaps {
    /// Caps from a size in MiB and a frame count (the command-line flags).
    pub fn from_mib(mib: usize, frames: usize) -> RingCaps {
        RingCaps {
            bytes: mib.saturating_mul(1 << 20),
            frames,
        }
    }

    fn enabled(&self) -> bool {
        self.bytes > 0 && self.frames > 0
    }
}

/// One frame held by the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    pub ts_ns: TimestampNs,
    pub iface: IfaceId,
    pub link: u32,
    pub orig_len: u32,
    /// Serial of the flow that counted this frame ([`NO_FLOW`]: none); see [`Self::flows`].
    flow: u64,
    /// Serial of the tunnel carrier flow that counted it ([`NO_FLOW`]: none).
    carrier: u64,
    pub data: Box<[u8]>,
}

/// Marks a missing serial in [`StoredFrame`] (two plain `u64`s keep an entry 16 bytes
/// smaller than two `Option<u64>`s; engine serials count up from 0 and never reach it).
const NO_FLOW: u64 = u64::MAX;

impl StoredFrame {
    /// The flows that counted this frame.
    pub fn flows(&self) -> Attribution {
        let some = |serial: u64| (serial != NO_FLOW).then_some(serial);
        Attribution {
            flow: some(self.flow),
            carrier: some(self.carrier),
        }
    }

    /// True when the flow with this serial counted the frame.
    fn counted_in(&self, mut wanted: impl FnMut(u64) -> bool) -> bool {
        (self.flow != NO_FLOW && wanted(self.flow))
            || (self.carrier != NO_FLOW && wanted(self.carrier))
    }
}

/// Heap bytes of a frame's own buffer: glibc's malloc adds an 8-byte header, rounds to 16
/// and never hands out less than 32; an empty buffer allocates nothing.
pub fn buffer_bytes(captured: usize) -> usize {
    if captured == 0 {
        0
    } else {
        captured.saturating_add(8).next_multiple_of(16).max(32)
    }
}

/// The ring's counters (shown in the Stats view and in export results).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCounters {
    pub caps: Option<RingCaps>,
    /// Frames held now.
    pub frames: usize,
    /// Memory used now (frame buffers plus the index's capacity; at most `caps.bytes`).
    pub bytes: usize,
    /// Frames pushed out (oldest first) to stay within the caps.
    pub evicted_frames: u64,
    /// Captured bytes of those frames.
    pub evicted_bytes: u64,
    /// Frames not stored because one alone does not fit in the byte cap.
    pub too_large: u64,
}

/// Recent frames, oldest first, within the caps.
#[derive(Debug)]
pub struct PacketRing {
    caps: RingCaps,
    frames: VecDeque<StoredFrame>,
    /// Sum of [`buffer_bytes`] over the frames held.
    buffer_bytes: usize,
    evicted_frames: u64,
    evicted_bytes: u64,
    too_large: u64,
}

impl PacketRing {
    pub fn new(caps: RingCaps) -> PacketRing {
        PacketRing {
            caps,
            frames: VecDeque::new(),
            buffer_bytes: 0,
            evicted_frames: 0,
            evicted_bytes: 0,
            too_large: 0,
        }
    }

    pub fn caps(&self) -> RingCaps {
        self.caps
    }

    /// Memory used: frame buffers plus the index's whole capacity.
    pub fn bytes(&self) -> usize {
        self.buffer_bytes + self.frames.capacity() * ENTRY_BYTES
    }

    /// How many index entries to add when the index is full: an eighth of its length (so
    /// spare entries cost at most ~9 bytes per frame held), at least 16 when that is a small
    /// share of the cap, else one.
    fn growth(&self, len: usize) -> usize {
        let floor = 16.min(self.caps.bytes / (64 * ENTRY_BYTES)).max(1);
        (len / 8).max(floor)
    }

    /// Keeps a copy of `frame` if a flow counted it, evicting the oldest frames as needed.
    pub fn push(&mut self, frame: &RawFrame<'_>, flows: Attribution) {
        if flows.is_none() || !self.caps.enabled() {
            return;
        }
        let charge = buffer_bytes(frame.data.len());
        if charge.saturating_add(ENTRY_BYTES) > self.caps.bytes {
            self.too_large += 1;
            return;
        }
        loop {
            let (len, capacity) = (self.frames.len(), self.frames.capacity());
            if len >= self.caps.frames {
                self.evict_oldest();
                continue;
            }
            if len < capacity {
                if self.buffer_bytes + charge + capacity * ENTRY_BYTES <= self.caps.bytes {
                    break;
                }
                if len == 0 {
                    // Only an index sized for many smaller frames is in the way.
                    self.frames.shrink_to(1);
                    if self.frames.capacity() > 1 {
                        self.too_large += 1;
                        return;
                    }
                    continue;
                }
                self.evict_oldest();
                continue;
            }
            // The index is full: grow it if that fits, else make room by evicting.
            let room = self.caps.bytes.saturating_sub(self.buffer_bytes + charge) / ENTRY_BYTES;
            let target = (len + self.growth(len)).min(self.caps.frames).min(room);
            if target > len {
                self.frames.reserve_exact(target - len);
                if self.bytes() + charge <= self.caps.bytes {
                    break;
                }
            }
            if len == 0 {
                self.too_large += 1;
                return;
            }
            self.evict_oldest();
        }
        self.buffer_bytes += charge;
        self.frames.push_back(StoredFrame {
            ts_ns: frame.ts_ns,
            iface: frame.iface,
            link: frame.link,
            orig_len: frame.orig_len,
            flow: flows.flow.unwrap_or(NO_FLOW),
            carrier: flows.carrier.unwrap_or(NO_FLOW),
            data: frame.data.into(),
        });
        // After many small frames gave way to big ones, return the index's spare entries.
        let len = self.frames.len();
        if self.frames.capacity() > len + 2 * self.growth(len) {
            self.frames.shrink_to(len + self.growth(len));
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(old) = self.frames.pop_front() {
            self.buffer_bytes -= buffer_bytes(old.data.len());
            self.evicted_frames += 1;
            self.evicted_bytes += old.data.len() as u64;
        }
    }

    /// Frames held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &StoredFrame> + '_ {
        self.frames.iter()
    }

    /// Frames that any flow `wanted` (by serial) counted, oldest first.
    pub fn frames_of<'a>(
        &'a self,
        mut wanted: impl FnMut(u64) -> bool + 'a,
    ) -> impl Iterator<Item = &'a StoredFrame> + 'a {
        self.frames
            .iter()
            .filter(move |f| f.counted_in(&mut wanted))
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn counters(&self) -> RingCounters {
        RingCounters {
            caps: Some(self.caps),
            frames: self.frames.len(),
            bytes: self.bytes(),
            evicted_frames: self.evicted_frames,
            evicted_bytes: self.evicted_bytes,
            too_large: self.too_large,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::frame::linktype;

    fn counted(serial: u64) -> Attribution {
        Attribution {
            flow: Some(serial),
            carrier: None,
        }
    }

    fn frame(ts_ns: u64, data: &[u8]) -> RawFrame<'_> {
        RawFrame {
            ts_ns,
            iface: 1,
            link: linktype::ETHERNET,
            orig_len: data.len() as u32 + 4,
            data,
        }
    }

    #[test]
    fn keeps_what_it_was_given() {
        let mut ring = PacketRing::new(RingCaps::default());
        ring.push(&frame(7, b"abc"), counted(3));
        let held: Vec<&StoredFrame> = ring.iter().collect();
        assert_eq!(held.len(), 1);
        let f = held[0];
        assert_eq!(
            (f.ts_ns, f.iface, f.link, f.orig_len, &*f.data),
            (7, 1, linktype::ETHERNET, 7, &b"abc"[..])
        );
        assert_eq!(f.flows(), counted(3));
        assert_eq!(
            ring.counters().bytes,
            32 + ENTRY_BYTES * ring.frames.capacity()
        );
        assert_eq!(ring.counters().bytes, ring.bytes());
    }

    #[test]
    fn buffers_are_counted_as_malloc_sizes_them() {
        assert_eq!(buffer_bytes(0), 0);
        assert_eq!(buffer_bytes(1), 32);
        assert_eq!(buffer_bytes(24), 32);
        assert_eq!(buffer_bytes(25), 48);
        assert_eq!(buffer_bytes(100), 112);
        assert_eq!(buffer_bytes(1514), 1536);
    }

    #[test]
    fn byte_cap_evicts_oldest_first_and_counts() {
        // Room for exactly three 100-byte frames and their three index entries (a cap this
        // small grows the index one entry at a time).
        let caps = RingCaps {
            bytes: 3 * (buffer_bytes(100) + ENTRY_BYTES),
            frames: 100,
        };
        let mut ring = PacketRing::new(caps);
        let data = [0u8; 100];
        for ts in 0..5 {
            ring.push(&frame(ts, &data), counted(ts));
        }
        let kept: Vec<u64> = ring.iter().map(|f| f.ts_ns).collect();
        assert_eq!(kept, vec![2, 3, 4]);
        let c = ring.counters();
        assert_eq!(c.evicted_frames, 2);
        assert_eq!(c.evicted_bytes, 200);
        assert_eq!(c.bytes, caps.bytes);
        // A bigger frame pushes out as many old ones as it needs.
        ring.push(&frame(9, &[1u8; 150]), counted(9));
        let kept: Vec<u64> = ring.iter().map(|f| f.ts_ns).collect();
        assert_eq!(kept, vec![4, 9]);
        assert_eq!(ring.counters().evicted_frames, 4);
    }

    #[test]
    fn frame_cap_evicts_oldest_first() {
        let mut ring = PacketRing::new(RingCaps {
            bytes: 1 << 20,
            frames: 2,
        });
        for ts in 0..4 {
            ring.push(&frame(ts, b"x"), counted(ts));
        }
        let kept: Vec<u64> = ring.iter().map(|f| f.ts_ns).collect();
        assert_eq!(kept, vec![2, 3]);
        assert_eq!(ring.counters().evicted_frames, 2);
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn frames_no_flow_counted_and_oversized_frames_are_not_kept() {
        let mut ring = PacketRing::new(RingCaps {
            bytes: buffer_bytes(10) + ENTRY_BYTES,
            frames: 10,
        });
        ring.push(&frame(1, b"dup"), Attribution::default());
        assert!(ring.is_empty());
        ring.push(&frame(2, &[0u8; 10]), counted(1));
        ring.push(&frame(3, &[0u8; 30]), counted(1));
        let kept: Vec<u64> = ring.iter().map(|f| f.ts_ns).collect();
        assert_eq!(kept, vec![2], "the oversized frame evicts nothing");
        assert_eq!(ring.counters().too_large, 1);
        assert_eq!(ring.counters().evicted_frames, 0);
    }

    #[test]
    fn zero_caps_turn_the_ring_off() {
        let mut ring = PacketRing::new(RingCaps::from_mib(0, 10));
        ring.push(&frame(1, b"a"), counted(1));
        assert!(ring.is_empty());
        assert_eq!(ring.counters().too_large, 0);
    }

    #[test]
    fn lookup_by_flow_serial_includes_tunnel_carriers() {
        let mut ring = PacketRing::new(RingCaps::default());
        ring.push(&frame(1, b"a"), counted(1));
        ring.push(&frame(2, b"b"), counted(2));
        ring.push(
            &frame(3, b"c"),
            Attribution {
                flow: Some(3),
                carrier: Some(9),
            },
        );
        ring.push(&frame(4, b"d"), counted(1));
        let of = |serials: &[u64]| -> Vec<u64> {
            ring.frames_of(|s| serials.contains(&s))
                .map(|f| f.ts_ns)
                .collect()
        };
        assert_eq!(of(&[1]), vec![1, 4]);
        assert_eq!(of(&[2, 3]), vec![2, 3]);
        assert_eq!(
            of(&[9]),
            vec![3],
            "the carrier flow has its tunnelled frames"
        );
        assert_eq!(of(&[5]), Vec::<u64>::new());
    }

    proptest! {
        #[test]
        fn never_exceeds_its_caps(
            cap_bytes in 0usize..20_000,
            cap_frames in 0usize..200,
            sizes in proptest::collection::vec(0usize..600, 0..200),
        ) {
            let caps = RingCaps { bytes: cap_bytes, frames: cap_frames };
            let mut ring = PacketRing::new(caps);
            let buffer = vec![0xabu8; 600];
            let mut stored = 0u64;
            for (i, size) in sizes.iter().enumerate() {
                ring.push(&frame(i as u64, &buffer[..*size]), counted(i as u64));
                let c = ring.counters();
                prop_assert!(c.bytes <= cap_bytes);
                prop_assert!(c.frames <= cap_frames);
                let buffers: usize = ring.iter().map(|f| buffer_bytes(f.data.len())).sum();
                prop_assert_eq!(buffers + ring.frames.capacity() * ENTRY_BYTES, c.bytes);
                if caps.enabled() && buffer_bytes(*size) + ENTRY_BYTES <= cap_bytes {
                    stored += 1;
                    // The newest frame is always kept when it fits at all.
                    prop_assert_eq!(ring.iter().last().map(|f| f.ts_ns), Some(i as u64));
                    // Spare index entries stay within two growth steps.
                    let len = ring.len();
                    prop_assert!(ring.frames.capacity() <= len + 2 * ring.growth(len));
                }
                prop_assert_eq!(c.frames as u64 + c.evicted_frames, stored);
                // Oldest first: what remains is the newest suffix, in order.
                let ts: Vec<u64> = ring.iter().map(|f| f.ts_ns).collect();
                prop_assert!(ts.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
