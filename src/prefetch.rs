//! Cache prefetch hints: ask the CPU to start loading memory that will be read soon.
//!
//! Guarantee: a hint never reads, writes or faults, whatever the address (the instruction is
//! defined for any address, mapped or not), so it cannot change what the program computes;
//! on targets without one it does nothing.

/// Hints that the `len` bytes at `start` will be read soon (one hint per 64-byte line).
#[inline(always)]
pub fn prefetch_bytes(start: *const u8, len: usize) {
    let first = start as usize & !63;
    let last = (start as usize).wrapping_add(len.max(1) - 1);
    let mut line = first;
    while line <= last {
        prefetch_line(line as *const u8);
        line += 64;
    }
}

#[inline(always)]
fn prefetch_line(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is only a hint: it never faults and never changes memory or
    // registers, for any address (Intel SDM, "PREFETCHh"), so no precondition can be violated.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
