//! Bounded per-direction TCP stream buffers.
//!
//! A [`StreamBuf`] keeps only the *first* `cap` bytes (default 4 KiB) of one direction of a TCP
//! connection, which is all that protocol identification needs. It guarantees:
//!
//! * in-order delivery: [`StreamBuf::data`] is always a contiguous prefix of the stream;
//! * duplicates and retransmissions are de-duplicated by sequence number (overlaps keep the
//!   first copy, as most stacks and Suricata's default "first" policy do);
//! * out-of-order segments inside the window are held (at most [`MAX_OOO_SEGMENTS`] of them,
//!   all within `cap`), then released when the hole is filled;
//! * a hole that is never filled ends the stream: once the out-of-order queue is full the
//!   buffer *gives up* (`gap` is set and counted) instead of guessing, so parsers never see
//!   spliced data;
//! * sequence numbers wrap around correctly (offsets are computed modulo 2^32);
//! * memory is bounded per direction by `cap` and globally by [`Budget`]; every byte that
//!   could not be buffered is counted in the budget's statistics.
//!
//! No allocation happens until the first payload byte arrives.

use super::{Budget, Lease};

/// Most out-of-order segments held per direction while waiting for a hole to fill.
pub const MAX_OOO_SEGMENTS: usize = 8;

/// Why a direction stopped accepting bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Still open.
    Open,
    /// The per-direction cap was reached.
    Full,
    /// FIN seen (all bytes before it delivered).
    Fin,
    /// A hole was never filled: the buffer gave up.
    Gap,
    /// The global budget was exhausted.
    Budget,
}

/// The first bytes of one TCP direction, reassembled.
#[derive(Debug)]
pub struct StreamBuf {
    /// Sequence number of stream byte 0 (ISN + 1), once known.
    base: Option<u32>,
    data: Vec<u8>,
    /// Out-of-order segments: (offset from base, bytes).
    ooo: Vec<(u32, Vec<u8>)>,
    cap: u32,
    fin_at: Option<u32>,
    end: StreamEnd,
    /// Bytes currently charged to the global budget by this buffer (returned on drop).
    charged: Lease,
    /// True when the SYN was not seen and byte 0 is simply the first payload seen.
    pub midstream: bool,
}

impl StreamBuf {
    /// New, empty buffer keeping at most `cap` bytes. Allocates nothing.
    pub fn new(cap: usize) -> Self {
        StreamBuf {
            base: None,
            data: Vec::new(),
            ooo: Vec::new(),
            cap: u32::try_from(cap).unwrap_or(u32::MAX).min(1 << 30),
            fin_at: None,
            end: StreamEnd::Open,
            charged: Lease::default(),
            midstream: false,
        }
    }

    /// The contiguous prefix reassembled so far.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Why the buffer stopped growing (or `Open`).
    pub fn end(&self) -> StreamEnd {
        self.end
    }

    /// True when no more bytes will ever be appended.
    pub fn is_closed(&self) -> bool {
        self.end != StreamEnd::Open
    }

    /// Records a SYN with sequence number `seq`: stream byte 0 is `seq + 1`.
    pub fn on_syn(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq.wrapping_add(1));
        }
    }

    /// Records a FIN whose first sequence number (after any payload) is `seq`.
    pub fn on_fin(&mut self, seq: u32, budget: &mut Budget) {
        if let Some(base) = self.base {
            let off = seq.wrapping_sub(base);
            if (off as i32) >= 0 {
                self.fin_at = Some(off);
                self.check_fin(budget);
            }
        }
    }

    fn check_fin(&mut self, budget: &mut Budget) {
        if let Some(f) = self.fin_at
            && self.end == StreamEnd::Open
            && f as usize <= self.data.len()
        {
            self.end = StreamEnd::Fin;
            self.free_ooo(budget);
        }
    }

    /// Appends a datagram-less chunk with no sequence number (in-order by assumption).
    pub fn push_unsequenced(&mut self, payload: &[u8], budget: &mut Budget) -> bool {
        let next = self.base.unwrap_or(0).wrapping_add(self.data.len() as u32);
        if self.base.is_none() {
            self.base = Some(0);
        }
        self.push(next, payload, budget)
    }

    /// Offers a segment starting at sequence number `seq`. Returns true when the contiguous
    /// prefix grew.
    pub fn push(&mut self, seq: u32, payload: &[u8], budget: &mut Budget) -> bool {
        if payload.is_empty() {
            return false;
        }
        if self.end != StreamEnd::Open {
            budget.stats.bytes_not_buffered += payload.len() as u64;
            return false;
        }
        let base = *self.base.get_or_insert_with(|| {
            self.midstream = true;
            seq
        });
        // Offset of the segment's first byte relative to stream byte 0, as a signed distance.
        let mut off = seq.wrapping_sub(base) as i32 as i64;
        let mut payload = payload;
        if off < 0 {
            // Starts before byte 0 (retransmitted SYN data or garbage): trim.
            let skip = (-off) as usize;
            if skip >= payload.len() {
                budget.stats.duplicate_bytes += payload.len() as u64;
                return false;
            }
            payload = &payload[skip..];
            off = 0;
        }
        let off = off as u64;
        let cap = self.cap as u64;
        if off >= cap {
            // Beyond the window we keep: not needed.
            budget.stats.bytes_not_buffered += payload.len() as u64;
            return false;
        }
        let end = (off + payload.len() as u64).min(cap);
        let cut = (end - off) as usize;
        if cut < payload.len() {
            budget.stats.bytes_not_buffered += (payload.len() - cut) as u64;
        }
        let payload = &payload[..cut];
        let have = self.data.len() as u64;
        let grew = if off <= have {
            // Overlaps or extends the contiguous prefix.
            if end <= have {
                budget.stats.duplicate_bytes += payload.len() as u64;
                false
            } else {
                let new = &payload[(have - off) as usize..];
                budget.stats.duplicate_bytes += have - off;
                self.append(new, budget)
            }
        } else {
            self.hold(off as u32, payload, budget);
            false
        };
        let mut grew = grew;
        if grew {
            grew |= self.drain_ooo(budget);
        }
        if self.data.len() as u32 >= self.cap && self.end == StreamEnd::Open {
            self.end = StreamEnd::Full;
            self.free_ooo(budget);
        }
        self.check_fin(budget);
        grew
    }

    fn append(&mut self, bytes: &[u8], budget: &mut Budget) -> bool {
        if bytes.is_empty() {
            return false;
        }
        if !budget.try_charge(&mut self.charged, bytes.len()) {
            budget.stats.bytes_not_buffered += bytes.len() as u64;
            budget.stats.budget_exhausted += 1;
            self.end = StreamEnd::Budget;
            self.free_ooo(budget);
            return false;
        }
        if self.data.capacity() == 0 {
            // First allocation: small, grows on demand up to cap.
            self.data
                .reserve_exact((self.cap as usize).min(1024).max(bytes.len()));
        }
        self.data.extend_from_slice(bytes);
        true
    }

    fn hold(&mut self, off: u32, bytes: &[u8], budget: &mut Budget) {
        if self
            .ooo
            .iter()
            .any(|(o, b)| *o == off && b.len() >= bytes.len())
        {
            budget.stats.duplicate_bytes += bytes.len() as u64;
            return;
        }
        if self.ooo.len() >= MAX_OOO_SEGMENTS {
            // The hole is not being filled: give up on this direction.
            budget.stats.gaps += 1;
            budget.stats.bytes_not_buffered += bytes.len() as u64;
            self.end = StreamEnd::Gap;
            self.free_ooo(budget);
            return;
        }
        if !budget.try_charge(&mut self.charged, bytes.len()) {
            budget.stats.bytes_not_buffered += bytes.len() as u64;
            budget.stats.budget_exhausted += 1;
            return;
        }
        self.ooo.push((off, bytes.to_vec()));
    }

    fn drain_ooo(&mut self, budget: &mut Budget) -> bool {
        let mut grew = false;
        loop {
            let have = self.data.len() as u32;
            let Some(i) = self.ooo.iter().position(|(o, _)| *o <= have) else {
                break;
            };
            let (o, seg) = self.ooo.swap_remove(i);
            self.charged.release(seg.len());
            let end = o as usize + seg.len();
            if end > have as usize {
                let skip = (have - o) as usize;
                budget.stats.duplicate_bytes += skip as u64;
                grew |= self.append(&seg[skip..], budget);
            } else {
                budget.stats.duplicate_bytes += seg.len() as u64;
            }
        }
        grew
    }

    fn free_ooo(&mut self, _budget: &mut Budget) {
        let held: usize = self.ooo.iter().map(|(_, b)| b.len()).sum();
        self.ooo = Vec::new();
        self.charged.release(held);
    }

    /// Frees every buffer and returns the charged bytes to the global budget.
    pub fn free(&mut self) {
        self.charged.release_all();
        self.data = Vec::new();
        self.ooo = Vec::new();
        if self.end == StreamEnd::Open {
            self.end = StreamEnd::Full;
        }
    }
}
