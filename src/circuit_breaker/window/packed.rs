//! The count window of up to [`PACKED_MAX_CALLS`] calls, in one word.
//!
//! Up to [`PACKED_MAX_CALLS`] calls (small rings like recloser's): the whole
//! window is **one word** — a failure bit and a slow bit per position, the next position, and
//! how many positions are filled. A record is one compare-and-swap, reading it is two
//! popcounts, and a clear stores zero, so every record lands wholly before or after any other
//! record or clear. It does not read the clock.

use super::{Counts, Side};
use crate::sync::{AtomicU64, Ordering};

/// The largest count window kept in one word: 2 × 27 outcome bits + 5 bits of position + 5 of
/// fill.
pub(crate) const PACKED_MAX_CALLS: u32 = 27;
const PACKED_BITS: u32 = PACKED_MAX_CALLS;
const PACKED_LOW: u64 = (1 << PACKED_BITS) - 1;
const PACKED_POS_SHIFT: u32 = 2 * PACKED_BITS;
const PACKED_FILL_SHIFT: u32 = PACKED_POS_SHIFT + 5;
const PACKED_FIELD: u64 = 0b1_1111;

/// A count window of at most [`PACKED_MAX_CALLS`] calls in one word: failure bits at
/// `0..27`, slow bits at `27..54`, the next position at `54..59`, filled positions at `59..64`.
#[derive(Debug)]
pub(super) struct PackedRing {
    word: AtomicU64,
    calls: u64,
    /// The breaker's rejections, per stripe.
    pub(super) sides: Box<[Side]>,
}

impl PackedRing {
    pub(super) fn new(calls: u32, stripes: usize) -> PackedRing {
        PackedRing {
            word: AtomicU64::new(0),
            calls: u64::from(calls.clamp(1, PACKED_MAX_CALLS)),
            sides: Side::stripes(stripes),
        }
    }

    #[inline]
    pub(super) fn record(&self, failure: bool, slow: bool) {
        // Relaxed: the word is the whole window; the CAS orders every change to it.
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            let pos = (current >> PACKED_POS_SHIFT) & PACKED_FIELD;
            let fill = current >> PACKED_FILL_SHIFT;
            let bit = 1u64 << pos;
            let mut next =
                current & (PACKED_LOW | PACKED_LOW << PACKED_BITS) & !(bit | bit << PACKED_BITS);
            if failure {
                next |= bit;
            }
            if slow {
                next |= bit << PACKED_BITS;
            }
            let pos = if pos + 1 == self.calls { 0 } else { pos + 1 };
            let fill = (fill + 1).min(self.calls);
            next |= pos << PACKED_POS_SHIFT | fill << PACKED_FILL_SHIFT;
            // Relaxed: as above.
            match self.word.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    #[inline]
    pub(super) fn counts(&self) -> Counts {
        // Relaxed: one load reads the whole window at one point of its modification order.
        let word = self.word.load(Ordering::Relaxed);
        let failures = u64::from((word & PACKED_LOW).count_ones());
        Counts {
            successes: (word >> PACKED_FILL_SHIFT) - failures,
            failures,
            slow: u64::from(((word >> PACKED_BITS) & PACKED_LOW).count_ones()),
        }
    }

    pub(super) fn clear(&self) {
        // Relaxed: a record racing with this store lands wholly before (and is forgotten) or
        // wholly after it, because its CAS fails on the cleared word and retries.
        self.word.store(0, Ordering::Relaxed);
    }
}
