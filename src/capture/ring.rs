//! A bounded in-memory ring of recent raw frames, each tagged with the flows that counted it,
//! so the TUI can export the packets of chosen flows after the fact.
//!
//! Pure (no I/O, no clock, no threads): the TUI's source thread owns one [`PacketRing`], pushes
//! every frame the engine ingested together with the engine's [`Attribution`], and asks it for
//! the frames of a set of flow serials when the user exports.
//!
//! Guarantees:
//! - memory is bounded by two caps: the charged bytes (each frame's captured bytes plus
//!   [`FRAME_OVERHEAD`] for its bookkeeping) never exceed [`RingCaps::bytes`], and the number
//!   of frames never exceeds [`RingCaps::frames`];
//! - the oldest frames are evicted first and every eviction is counted; a frame larger than
//!   the whole byte cap is not stored and counted as `too_large`;
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
/// Bytes charged per frame on top of its captured bytes: the entry in the ring plus the
/// allocator's header and rounding for the frame's own buffer (measured, see docs/capture.md).
pub const FRAME_OVERHEAD: usize = std::mem::size_of::<StoredFrame>() + 16;

/// The ring's two caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCaps {
    /// Most bytes charged (captured bytes plus [`FRAME_OVERHEAD`] per frame); 0 turns the
    /// ring off.
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
    /// The flows that counted this frame.
    pub flows: Attribution,
    pub data: Box<[u8]>,
}

impl StoredFrame {
    /// Bytes this frame is charged against the byte cap.
    pub fn charge(&self) -> usize {
        charge_of(self.data.len())
    }
}

fn charge_of(captured: usize) -> usize {
    captured.saturating_add(FRAME_OVERHEAD)
}

/// The ring's counters (shown in the Stats view and in export results).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCounters {
    pub caps: Option<RingCaps>,
    /// Frames held now.
    pub frames: usize,
    /// Bytes charged now (at most `caps.bytes`).
    pub bytes: usize,
    /// Frames pushed out (oldest first) to stay within the caps.
    pub evicted_frames: u64,
    pub evicted_bytes: u64,
    /// Frames not stored because one alone exceeds the byte cap.
    pub too_large: u64,
}

/// Recent frames, oldest first, within the caps.
#[derive(Debug)]
pub struct PacketRing {
    caps: RingCaps,
    frames: VecDeque<StoredFrame>,
    bytes: usize,
    evicted_frames: u64,
    evicted_bytes: u64,
    too_large: u64,
}

impl PacketRing {
    pub fn new(caps: RingCaps) -> PacketRing {
        PacketRing {
            caps,
            frames: VecDeque::new(),
            bytes: 0,
            evicted_frames: 0,
            evicted_bytes: 0,
            too_large: 0,
        }
    }

    pub fn caps(&self) -> RingCaps {
        self.caps
    }

    /// Keeps a copy of `frame` if a flow counted it, evicting the oldest frames as needed.
    pub fn push(&mut self, frame: &RawFrame<'_>, flows: Attribution) {
        if flows.is_none() || !self.caps.enabled() {
            return;
        }
        let charge = charge_of(frame.data.len());
        if charge > self.caps.bytes {
            self.too_large += 1;
            return;
        }
        while !self.frames.is_empty()
            && (self.bytes + charge > self.caps.bytes || self.frames.len() >= self.caps.frames)
        {
            self.evict_oldest();
        }
        self.bytes += charge;
        self.frames.push_back(StoredFrame {
            ts_ns: frame.ts_ns,
            iface: frame.iface,
            link: frame.link,
            orig_len: frame.orig_len,
            flows,
            data: frame.data.into(),
        });
    }

    fn evict_oldest(&mut self) {
        if let Some(old) = self.frames.pop_front() {
            let charge = old.charge();
            self.bytes -= charge;
            self.evicted_frames += 1;
            self.evicted_bytes += charge as u64;
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
        self.frames.iter().filter(move |f| {
            f.flows.flow.is_some_and(&mut wanted) || f.flows.carrier.is_some_and(&mut wanted)
        })
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
            bytes: self.bytes,
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
        assert_eq!(
            *held[0],
            StoredFrame {
                ts_ns: 7,
                iface: 1,
                link: linktype::ETHERNET,
                orig_len: 7,
                flows: counted(3),
                data: b"abc".to_vec().into(),
            }
        );
        assert_eq!(ring.counters().bytes, 3 + FRAME_OVERHEAD);
    }

    #[test]
    fn byte_cap_evicts_oldest_first_and_counts() {
        // Room for exactly three 100-byte frames.
        let caps = RingCaps {
            bytes: 3 * charge_of(100),
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
        assert_eq!(c.evicted_bytes, 2 * charge_of(100) as u64);
        assert_eq!(c.bytes, 3 * charge_of(100));
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
            bytes: charge_of(10),
            frames: 10,
        });
        ring.push(&frame(1, b"dup"), Attribution::default());
        assert!(ring.is_empty());
        ring.push(&frame(2, &[0u8; 10]), counted(1));
        ring.push(&frame(3, &[0u8; 11]), counted(1));
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
            cap_bytes in 0usize..4096,
            cap_frames in 0usize..20,
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
                let charged: usize = ring.iter().map(StoredFrame::charge).sum();
                prop_assert_eq!(charged, c.bytes);
                if caps.enabled() && charge_of(*size) <= cap_bytes {
                    stored += 1;
                    // The newest frame is always kept when it fits at all.
                    prop_assert_eq!(ring.iter().last().map(|f| f.ts_ns), Some(i as u64));
                }
                prop_assert_eq!(c.frames as u64 + c.evicted_frames, stored);
                // Oldest first: what remains is the newest suffix, in order.
                let ts: Vec<u64> = ring.iter().map(|f| f.ts_ns).collect();
                prop_assert!(ts.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
