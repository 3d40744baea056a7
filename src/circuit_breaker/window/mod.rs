//! The lock-free rolling window of call outcomes the breaker judges.
//!
//! Two kinds:
//!
//! - **time-based** (the default): `buckets` buckets of `window / buckets` each. A bucket that is a
//!   whole window old is reset lazily by the first call that needs its slot, so failures age out
//!   with no timer and no background task.
//! - **count-based**: the last `calls` outcomes.
//!
//! Each layout is a module with its own docs: `time` (epoch-tagged counters per bucket, striped
//! per thread by `crate::stripe`) with its judge cache in `judge`, `packed` (a count window of up
//! to [`PACKED_MAX_CALLS`] calls in one word) and `ring` (larger count windows). The count-based
//! layouts do not read the clock. `swap` holds the breaker's current window, replaced whole
//! when a retune changes its shape.
//!
//! "The last N calls" cannot be striped, so concurrent recorders of a count window share one
//! cache line: prefer the time-based window where throughput across threads matters.

mod judge;
mod packed;
mod ring;
mod swap;
mod time;

use std::time::Duration;

use self::packed::PackedRing;
pub(crate) use self::packed::PACKED_MAX_CALLS;
use self::ring::CountWindow;
pub(crate) use self::swap::Windows;
use self::time::TimeWindow;
use crate::stripe;
use crate::sync::{fence, AtomicU64, Ordering};

/// The most stripes a time-based window uses (4 × 256 bytes for the default 10 buckets).
pub(crate) const MAX_STRIPES: usize = 4;

/// A count window's word per stripe, on a line of its own: the breaker's rejections (see
/// [`Window::count_rejection`]).
#[derive(Debug)]
#[repr(align(64))]
struct Side {
    rejections: AtomicU64,
}

impl Side {
    /// One per stripe: `stripes` rounded up to a power of two.
    fn stripes(stripes: usize) -> Box<[Side]> {
        (0..stripes.clamp(1, MAX_STRIPES).next_power_of_two())
            .map(|_| Side {
                rejections: AtomicU64::new(0),
            })
            .collect()
    }

    fn word(sides: &[Side], stripe: usize) -> &AtomicU64 {
        &sides[stripe & (sides.len() - 1)].rejections
    }

    fn sum(sides: &[Side]) -> u64 {
        sides
            .iter()
            // Relaxed: a statistic, read word by word.
            .map(|side| side.rejections.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// The shape of a window, validated by the breaker's builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowSpec {
    /// `buckets` buckets of `window / buckets`.
    Time { window: Duration, buckets: u32 },
    /// The last `calls` outcomes.
    Count { calls: u32 },
}

/// Totals over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Counts {
    fn plus(self, other: Counts) -> Counts {
        Counts {
            successes: self.successes + other.successes,
            failures: self.failures + other.failures,
            slow: self.slow + other.slow,
        }
    }

    /// Every count `k` times over.
    fn times(self, k: u64) -> Counts {
        Counts {
            successes: self.successes.saturating_mul(k),
            failures: self.failures.saturating_mul(k),
            slow: self.slow.saturating_mul(k),
        }
    }

    /// Calls counted: successes plus failures (slow calls are among them).
    #[cfg(test)]
    pub(crate) fn calls(&self) -> u64 {
        self.successes + self.failures
    }
}

/// A rolling window of outcomes; recording and reading take no lock.
#[derive(Debug)]
pub(crate) struct Window {
    kind: Kind,
    spec: WindowSpec,
    /// The [`Windows`] version this window was installed as (0: built with the breaker).
    version: u64,
}

#[derive(Debug)]
enum Kind {
    Time(TimeWindow),
    Packed(PackedRing),
    Count(CountWindow),
}

impl Window {
    /// A window of the given shape, striped for this machine.
    pub(crate) fn new(spec: WindowSpec) -> Window {
        Window::with_stripes(spec, stripe::count(MAX_STRIPES))
    }

    /// A window with an explicit number of stripes (rounded up to a power of two, at least 1).
    pub(crate) fn with_stripes(spec: WindowSpec, stripes: usize) -> Window {
        let kind = match spec {
            WindowSpec::Time { window, buckets } => {
                Kind::Time(TimeWindow::new(window, buckets, stripes))
            }
            WindowSpec::Count { calls } if calls <= PACKED_MAX_CALLS => {
                Kind::Packed(PackedRing::new(calls, stripes))
            }
            WindowSpec::Count { calls } => Kind::Count(CountWindow::new(calls, stripes)),
        };
        Window {
            kind,
            spec,
            version: 0,
        }
    }

    /// The [`Windows`] version it was installed as.
    #[inline(always)]
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// A count window on the general ring whatever its size; lets tests and models check the
    /// ring with few calls.
    #[cfg(test)]
    pub(crate) fn count_ring(calls: u32) -> Window {
        Window {
            kind: Kind::Count(CountWindow::new(calls, 2)),
            spec: WindowSpec::Count { calls },
            version: 0,
        }
    }

    /// Record one finished call at `now` (nanoseconds of the crate clock): a success unless
    /// `failure`, and also a slow call if `slow`.
    #[inline]
    pub(crate) fn record(&self, now: u64, failure: bool, slow: bool) {
        self.record_with(|| now, failure, slow);
    }

    /// [`record`](Self::record), reading the clock only for a time-based window.
    #[inline]
    pub(crate) fn record_with(&self, now: impl FnOnce() -> u64, failure: bool, slow: bool) {
        match &self.kind {
            Kind::Time(w) => w.record(stripe::thread_token(), now(), failure, slow),
            Kind::Packed(w) => w.record(failure, slow),
            Kind::Count(w) => w.record(failure, slow),
        }
    }

    /// Record into a chosen stripe; lets models exercise same-stripe and cross-stripe races.
    #[cfg(test)]
    pub(crate) fn record_in(&self, stripe: usize, now: u64, failure: bool, slow: bool) {
        match &self.kind {
            Kind::Time(w) => w.record(stripe, now, failure, slow),
            Kind::Packed(w) => w.record(failure, slow),
            Kind::Count(w) => w.record(failure, slow),
        }
    }

    /// Totals over the window as seen at `now`.
    pub(crate) fn counts(&self, now: u64) -> Counts {
        match &self.kind {
            Kind::Time(w) => w.counts(now, true),
            Kind::Packed(w) => w.counts(),
            Kind::Count(w) => w.counts(),
        }
    }

    /// The counts to judge by, called by the thread that just recorded a failure or a slow
    /// call, with `over`, the breaker's rate rule (linear in the counts, volume aside). Reads
    /// are ordered after that record (a SeqCst fence) so that of two racing judges at least one
    /// sees the other's outcome. A time window reads its own stripe's current bucket and the
    /// published totals of the rest, and every stripe only near the threshold (`judge`'s
    /// docs): the view it returns decides `over` as the exact counts do. A count window
    /// returns its counts. The slow-call counters are skipped unless `slow` (they stay 0 when
    /// the slow-call rule is off).
    #[inline]
    pub(crate) fn judge_counts(
        &self,
        now: u64,
        slow: bool,
        over: impl Fn(&Counts) -> bool,
    ) -> Counts {
        self.judge_counts_in(stripe::thread_token(), now, slow, over)
    }

    /// [`judge_counts`](Self::judge_counts) after a record into a chosen stripe.
    #[inline]
    pub(crate) fn judge_counts_in(
        &self,
        stripe: usize,
        now: u64,
        slow: bool,
        over: impl Fn(&Counts) -> bool,
    ) -> Counts {
        match &self.kind {
            Kind::Time(w) => w.judge_counts(stripe, now, slow, over),
            Kind::Packed(w) => w.counts(),
            Kind::Count(w) => {
                // SeqCst fence between our slot's write and the reads: of two racing judges at
                // least one sees the other's slot (a packed window's one word needs none).
                fence(Ordering::SeqCst);
                w.counts()
            }
        }
    }

    /// Count one rejection of the breaker, on this thread's stripe. The window's per-stripe
    /// lines carry the count: a breaker rejects while nothing records into its window, so the
    /// threads of an open breaker each add on a line of their own, at no extra memory.
    #[inline]
    pub(crate) fn count_rejection(&self) {
        let stripe = stripe::thread_token();
        let word = match &self.kind {
            Kind::Time(w) => w.rejection_word(stripe),
            Kind::Packed(w) => Side::word(&w.sides, stripe),
            Kind::Count(w) => Side::word(&w.sides, stripe),
        };
        // Relaxed: a statistic; no other memory is published through it.
        word.fetch_add(1, Ordering::Relaxed);
    }

    /// Rejections counted so far (never cleared).
    pub(crate) fn rejections(&self) -> u64 {
        match &self.kind {
            Kind::Time(w) => w.rejections(),
            Kind::Packed(w) => Side::sum(&w.sides),
            Kind::Count(w) => Side::sum(&w.sides),
        }
    }

    /// Forget everything recorded so far. Each counter a racing record touches is either
    /// cleared or kept whole; its outcome and its slow mark are two counters, so one may survive
    /// without the other (the breaker ignores results that straddle a close anyway).
    pub(crate) fn clear(&self) {
        match &self.kind {
            Kind::Time(w) => w.clear(),
            Kind::Packed(w) => w.clear(),
            Kind::Count(w) => w.clear(),
        }
    }

    /// Heap bytes this window owns.
    #[cfg(all(test, not(harden_loom)))]
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.kind {
            Kind::Time(w) => w.heap_bytes(),
            Kind::Packed(w) => std::mem::size_of_val(&*w.sides),
            Kind::Count(w) => w.heap_bytes(),
        }
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests;

#[cfg(all(test, harden_loom))]
mod loom_tests;
