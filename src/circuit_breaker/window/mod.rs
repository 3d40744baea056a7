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
//! layouts do not read the clock.
//!
//! "The last N calls" cannot be striped, so concurrent recorders of a count window share one
//! cache line: prefer the time-based window where throughput across threads matters.

mod judge;
mod packed;
mod ring;
mod time;

use std::time::Duration;

use self::packed::PackedRing;
pub(crate) use self::packed::PACKED_MAX_CALLS;
use self::ring::CountWindow;
use self::time::TimeWindow;
use crate::stripe;

/// The most stripes a time-based window uses (4 × 256 bytes for the default 10 buckets).
pub(crate) const MAX_STRIPES: usize = 4;

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
                Kind::Packed(PackedRing::new(calls))
            }
            WindowSpec::Count { calls } => Kind::Count(CountWindow::new(calls)),
        };
        Window { kind }
    }

    /// A count window on the general ring whatever its size; lets tests and models check the
    /// ring with few calls.
    #[cfg(test)]
    pub(crate) fn count_ring(calls: u32) -> Window {
        Window {
            kind: Kind::Count(CountWindow::new(calls)),
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

    /// [`counts`](Self::counts) for judging: a time window reads its current bucket and the
    /// published totals of the rest (see the module docs); the slow-call counters are skipped
    /// unless `slow` (they stay 0 when the slow-call rule is off).
    #[inline]
    pub(crate) fn judge_counts(&self, now: u64, slow: bool) -> Counts {
        match &self.kind {
            Kind::Time(w) => w.judge_counts(now, slow),
            Kind::Packed(w) => w.counts(),
            Kind::Count(w) => w.counts(),
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
            Kind::Packed(_) => 0,
            Kind::Count(w) => w.heap_bytes(),
        }
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests;

#[cfg(all(test, harden_loom))]
mod loom_tests;
