//! The count window of more than [`PACKED_MAX_CALLS`](super::PACKED_MAX_CALLS) calls.
//!
//! A ring of `calls` words, each holding the sequence number of the call it
//! records and the outcome bits; a shared sequence counter hands out positions.

use super::{Counts, Side};
use crate::sync::{AtomicU64, Ordering};

const FAILURE_BIT: u64 = 1;
const SLOW_BIT: u64 = 2;
const SEQ_SHIFT: u32 = 2;

#[derive(Debug)]
pub(super) struct CountWindow {
    /// `(sequence + 1) << 2 | slow << 1 | failure`; 0 is an empty slot.
    slots: Box<[AtomicU64]>,
    /// The next sequence number to hand out.
    next: AtomicU64,
    /// Sequence numbers below this were cleared.
    floor: AtomicU64,
    /// The breaker's rejections, per stripe.
    pub(super) sides: Box<[Side]>,
}

impl CountWindow {
    pub(super) fn new(calls: u32, stripes: usize) -> CountWindow {
        CountWindow {
            slots: (0..calls.max(1)).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            sides: Side::stripes(stripes),
        }
    }

    /// Heap bytes this window owns.
    #[cfg(all(test, not(harden_loom)))]
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots) + std::mem::size_of_val(&*self.sides)
    }

    pub(super) fn record(&self, failure: bool, slow: bool) {
        // Relaxed: only needs a unique number; the slot's own CAS publishes the outcome.
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let value = ((seq + 1) << SEQ_SHIFT)
            | if failure { FAILURE_BIT } else { 0 }
            | if slow { SLOW_BIT } else { 0 };
        let slot = &self.slots[(seq % self.slots.len() as u64) as usize];
        // Relaxed: the slot is self-contained; the CAS keeps whichever record is newer.
        let mut current = slot.load(Ordering::Relaxed);
        while current >> SEQ_SHIFT < seq + 1 {
            match slot.compare_exchange_weak(current, value, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    pub(super) fn counts(&self) -> Counts {
        // Relaxed: a statistic; slots newer than `end` are skipped, so the result is a window of
        // at most `calls` outcomes all recorded by the time of these loads.
        let end = self.next.load(Ordering::Relaxed);
        let start = end
            .saturating_sub(self.slots.len() as u64)
            .max(self.floor.load(Ordering::Relaxed));
        let mut counts = Counts::default();
        for slot in self.slots.iter() {
            let value = slot.load(Ordering::Relaxed);
            let seq_plus_one = value >> SEQ_SHIFT;
            if seq_plus_one > start && seq_plus_one <= end {
                if value & FAILURE_BIT != 0 {
                    counts.failures += 1;
                } else {
                    counts.successes += 1;
                }
                if value & SLOW_BIT != 0 {
                    counts.slow += 1;
                }
            }
        }
        counts
    }

    pub(super) fn clear(&self) {
        // Relaxed: every call numbered before this load is forgotten; fetch_max keeps racing
        // clears from moving the floor back.
        let end = self.next.load(Ordering::Relaxed);
        self.floor.fetch_max(end, Ordering::Relaxed);
    }
}
