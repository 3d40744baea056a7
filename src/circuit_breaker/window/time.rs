//! The time-based window: `buckets` buckets of `window / buckets` each.
//!
//! Every counter is one `AtomicU64` that holds the bucket's *epoch* (`now / bucket_len`, in full)
//! in its high bits and the count in its low bits. A record is one compare-and-swap on one word
//! that either adds 1 (same epoch) or starts the slot over at 1 (older epoch), so the epoch and the
//! count always change together: no outcome is lost to a concurrent rotation, none is counted twice,
//! and none lands in a bucket it does not belong to. A record whose epoch is older than the slot's
//! (a thread that read the clock, then stalled for a whole window) has aged out and is dropped.
//!
//! The count has `floor(log2(bucket_len))` bits, at least `bucket_len / 2`: filling it takes one
//! record every 2 ns into one word for a whole bucket, faster than any compare-and-swap on one
//! line goes, and it saturates rather than spill into the epoch. The epoch has the other
//! `64 - floor(log2(bucket_len))` bits, enough for `u64::MAX / bucket_len`: every epoch of the
//! clock's whole `u64` range of nanoseconds is stored in full, so epochs are compared exactly and
//! never wrap.
//!
//! Counters are striped the way Java's `LongAdder` is: every thread writes to its own copy of
//! the buckets (cache-line aligned), chosen once per thread, so two threads recording into one
//! breaker do not fight over one cache line. Readers add the stripes up. Stripes are
//! `available_parallelism()` rounded up to a power of two, at most [`MAX_STRIPES`]
//! (`crate::stripe`).

use std::time::Duration;

use super::judge::Rest;
use super::{Counts, MAX_STRIPES};
use crate::clock::duration_to_nanos;
use crate::sync::{fence, AtomicU64, Ordering};

const SUCCESS: usize = 0;
const FAILURE: usize = 1;
const SLOW: usize = 2;
const KINDS: usize = 3;
const WORDS_PER_LINE: usize = 8;
/// Words per stripe besides the counters: the epoch cache and the breaker's rejection count.
const EXTRA_WORDS: usize = 2;
/// The per-stripe epoch cache holds `epoch << EPOCH_CACHE_SHIFT | bucket`.
const EPOCH_CACHE_SHIFT: u32 = 16;
const EPOCH_CACHE_BUCKET: u64 = (1 << EPOCH_CACHE_SHIFT) - 1;

/// One cache line of counters, so stripes never share a line.
#[repr(align(64))]
#[derive(Debug)]
struct Line([AtomicU64; WORDS_PER_LINE]);

impl Line {
    fn new() -> Line {
        Line(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

#[derive(Debug)]
pub(super) struct TimeWindow {
    lines: Box<[Line]>,
    /// A power of two.
    stripes: usize,
    /// Words per stripe: `buckets * KINDS` counters, the epoch cache and the rejection count,
    /// rounded up to whole lines.
    stride: usize,
    buckets: u64,
    bucket_nanos: u64,
    /// Bits of the count; the epoch sits above them.
    shift: u32,
    /// One more than the latest epoch in which a judge found its stripe over its share
    /// (`judge`'s module docs); only grows (`fetch_max`), so a judge never reads an older
    /// escalation over a newer one. Beside the read-only settings: written at most once per
    /// bucket, read by every judge, and no extra line.
    escalated: AtomicU64,
    rest: Rest,
}

impl TimeWindow {
    pub(super) fn new(window: Duration, buckets: u32, stripes: usize) -> TimeWindow {
        let buckets = u64::from(buckets.max(1));
        let bucket_nanos = (duration_to_nanos(window) / buckets).max(1);
        let stripes = stripes.clamp(1, MAX_STRIPES).next_power_of_two();
        let words = buckets as usize * KINDS + EXTRA_WORDS;
        let stride = words.div_ceil(WORDS_PER_LINE) * WORDS_PER_LINE;
        let lines = (0..stripes * stride / WORDS_PER_LINE)
            .map(|_| Line::new())
            .collect();
        // floor(log2(bucket)) bits of count, so every epoch of the u64 clock fits in full above
        // them (module docs); at least 1 (buckets are validated to at least 1 ms).
        let shift = (63 - bucket_nanos.leading_zeros()).max(1);
        TimeWindow {
            lines,
            stripes,
            stride,
            buckets,
            bucket_nanos,
            shift,
            escalated: AtomicU64::new(0),
            rest: Rest::new(),
        }
    }

    /// Heap bytes this window owns.
    #[cfg(all(test, not(harden_loom)))]
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.lines)
    }

    /// The count's bits (below the epoch). Computed, not stored: one field fewer keeps the
    /// window's settings and the judge cache in two lines.
    #[inline]
    fn count_mask(&self) -> u64 {
        (1 << self.shift) - 1
    }

    #[inline]
    fn word(&self, index: usize) -> &AtomicU64 {
        &self.lines[index / WORDS_PER_LINE].0[index % WORDS_PER_LINE]
    }

    /// Record into stripe `stripe` modulo the stripe count (any thread token will do).
    #[inline]
    pub(super) fn record(&self, stripe: usize, now: u64, failure: bool, slow: bool) {
        let stripe = stripe & (self.stripes - 1);
        let (epoch, bucket) = self.locate(stripe, now);
        let base = stripe * self.stride + bucket * KINDS;
        self.bump(base + if failure { FAILURE } else { SUCCESS }, epoch);
        if slow {
            self.bump(base + SLOW, epoch);
        }
    }

    /// The epoch of `now` and its bucket. Two 64-bit divisions cost more than the rest of a
    /// record, so each stripe caches the last answer in one word, `epoch << 16 | bucket`,
    /// validated against `now` with a multiplication: a stale or foreign value is never trusted.
    #[inline]
    fn locate(&self, stripe: usize, now: u64) -> (u64, usize) {
        let cache = self.word(stripe * self.stride + self.buckets as usize * KINDS);
        // Relaxed: the value is self-contained and checked below before use.
        let cached = cache.load(Ordering::Relaxed);
        let epoch = cached >> EPOCH_CACHE_SHIFT;
        if now.wrapping_sub(epoch.wrapping_mul(self.bucket_nanos)) < self.bucket_nanos {
            return (epoch, (cached & EPOCH_CACHE_BUCKET) as usize);
        }
        let epoch = now / self.bucket_nanos;
        let bucket = epoch % self.buckets;
        if epoch >> (64 - EPOCH_CACHE_SHIFT) == 0 && bucket <= EPOCH_CACHE_BUCKET {
            // Relaxed: any thread's value is as good as ours; readers validate it.
            cache.store(epoch << EPOCH_CACHE_SHIFT | bucket, Ordering::Relaxed);
        }
        (epoch, bucket as usize)
    }

    #[inline]
    fn bump(&self, index: usize, epoch: u64) {
        let word = self.word(index);
        // Relaxed: the word is a self-contained counter; nothing else is published through it,
        // and the CAS below orders every change to it.
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let tag = current >> self.shift;
            let next = if tag == epoch {
                if current & self.count_mask() == self.count_mask() {
                    return; // saturated; never spill into the epoch bits
                }
                current + 1
            } else if tag < epoch {
                (epoch << self.shift) | 1
            } else {
                return; // the slot moved on a whole window: this outcome has aged out
            };
            // Relaxed: as above; success and failure only need the word's own modification order.
            match word.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    pub(super) fn counts(&self, now: u64, slow: bool) -> Counts {
        let epoch = now / self.bucket_nanos;
        let (current, rest) = self.read(epoch, slow, true, 0..self.stripes);
        current.plus(rest)
    }

    /// The counts a judge decides on, right after its own record into stripe `stripe` (see
    /// `judge`'s module docs): exact, or — when the judge's stripe holds no more than its share
    /// and no stripe said it took more — a view for which `over` is false, as it is for the
    /// exact counts then.
    pub(super) fn judge_counts(
        &self,
        stripe: usize,
        now: u64,
        slow: bool,
        over: impl Fn(&Counts) -> bool,
    ) -> Counts {
        let epoch = now / self.bucket_nanos;
        // SeqCst fence between our record and every read below (the escalation word and the
        // counters): of two concurrent judges, at least one sees the other's record or its
        // escalation (store buffering; `judge`'s module docs).
        fence(Ordering::SeqCst);
        if let Some(rest) = self.rest.read(epoch) {
            let stripe = stripe & (self.stripes - 1);
            // Shares bound the idle stripes (nothing in the current bucket) only if the rest
            // alone does not trip: then each share is a positive headroom.
            if !self.escalated(epoch) && !over(&rest) {
                let (own, _) = self.read(epoch, slow, false, stripe..stripe + 1);
                let share = rest.plus(own.times(self.stripes as u64));
                if !over(&share) {
                    return share;
                }
                self.escalate(epoch);
                // SeqCst: orders our escalation before the reads of the other stripes below.
                fence(Ordering::SeqCst);
            }
            let (current, _) = self.read(epoch, slow, false, 0..self.stripes);
            return current.plus(rest);
        }
        let clears = self.rest.clears_before_read();
        // The published totals always carry the slow counters, so any judge can use them.
        let (current, rest) = self.read(epoch, true, true, 0..self.stripes);
        if let Some(clears) = clears {
            self.rest.publish(epoch, clears, rest);
        }
        current.plus(rest)
    }

    /// The counts of the bucket of `epoch`, and (if `others`) of the window's other buckets,
    /// over the stripes in `stripes`.
    fn read(
        &self,
        epoch: u64,
        slow: bool,
        others: bool,
        stripes: std::ops::Range<usize>,
    ) -> (Counts, Counts) {
        let current = epoch % self.buckets;
        let kinds = if slow { KINDS } else { SLOW };
        let mut totals = [[0u64; KINDS]; 2];
        let buckets = if others {
            0..self.buckets
        } else {
            current..current + 1
        };
        for bucket in buckets {
            // The one epoch this bucket may hold inside the window that ends at `epoch`.
            let back = if bucket <= current {
                current - bucket
            } else {
                current + self.buckets - bucket
            };
            let Some(tag) = epoch.checked_sub(back) else {
                continue; // before the clock's origin
            };
            let into = &mut totals[usize::from(back != 0)];
            for stripe in stripes.clone() {
                let base = stripe * self.stride + bucket as usize * KINDS;
                for (kind, total) in into.iter_mut().enumerate().take(kinds) {
                    // Relaxed: a statistic; each word is read whole, and a word written after
                    // this read would have been just as valid a result. (The breaker's judge
                    // orders these reads after its own record with a SeqCst fence.)
                    let value = self.word(base + kind).load(Ordering::Relaxed);
                    if value >> self.shift == tag {
                        *total += value & self.count_mask();
                    }
                }
            }
        }
        let counts = |t: [u64; KINDS]| Counts {
            successes: t[SUCCESS],
            failures: t[FAILURE],
            slow: t[SLOW],
        };
        (counts(totals[0]), counts(totals[1]))
    }

    pub(super) fn clear(&self) {
        // Relaxed: the published totals stop matching at once for judges that see this; those
        // that do not yet judge as if before the clear.
        self.rest.clears_started.fetch_add(1, Ordering::Relaxed);
        self.zero_counters();
        // Release: judges that see this finished clear read the zeroed counters.
        self.rest.clears_finished.fetch_add(1, Ordering::Release);
    }

    /// Whether a judge of `epoch` or later found its stripe over its share.
    #[inline]
    fn escalated(&self, epoch: u64) -> bool {
        // Relaxed: ordered after the judge's own record by its SeqCst fence.
        self.escalated.load(Ordering::Relaxed) > epoch
    }

    /// Say that a judge of `epoch` found its stripe over its share: from now on every judge of
    /// the epoch reads every stripe.
    fn escalate(&self, epoch: u64) {
        if !self.escalated(epoch) {
            // Relaxed: ordered before the escalating judge's reads by its SeqCst fence.
            self.escalated.fetch_max(epoch + 1, Ordering::Relaxed);
        }
    }

    /// The word of stripe `stripe` (modulo the stripe count) that counts the breaker's
    /// rejections: written only while the breaker rejects, when nothing records into the window,
    /// so it shares the stripe's lines for free.
    #[inline]
    pub(super) fn rejection_word(&self, stripe: usize) -> &AtomicU64 {
        let stripe = stripe & (self.stripes - 1);
        self.word(stripe * self.stride + self.buckets as usize * KINDS + 1)
    }

    pub(super) fn rejections(&self) -> u64 {
        (0..self.stripes)
            // Relaxed: a statistic, read word by word.
            .map(|stripe| self.rejection_word(stripe).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    fn zero_counters(&self) {
        for stripe in 0..self.stripes {
            let base = stripe * self.stride;
            // Counters only: the epoch cache after them is not a count.
            for index in base..base + self.buckets as usize * KINDS {
                // Relaxed: zeroes the count and keeps the epoch in one atomic step; a concurrent
                // record lands wholly before or wholly after it.
                self.word(index)
                    .fetch_and(!self.count_mask(), Ordering::Relaxed);
            }
        }
    }
}
