//! The time window's judge cache: the totals of every bucket but the current one.
//!
//! The breaker judges the window after every failure. A full read touches every stripe's every
//! bucket — under failures from several threads, mostly lines other cores are writing. So the
//! window keeps the totals of every bucket *but the current one* for the current epoch (the
//! `Rest`, published under a sequence lock, invalidated by any clear), and a judge reads only
//! the current bucket's counters of each stripe plus the `Rest`: one line per stripe. The
//! first judge of each epoch reads everything and publishes the `Rest`.
//!
//! **Shares.** Reading the current bucket of every stripe still pulls, at every failure, the
//! lines other threads are writing — during a failure storm, the one thing the threads fight
//! over. So a judge reads only *its own* stripe's current bucket, and trusts a bound for the
//! others: the trip rule (`failures / calls >= threshold`, and the slow-call rule) is linear in
//! the counts, so if the rest alone does not trip (so every stripe's share of its headroom is
//! positive, and a stripe with nothing in the current bucket holds less than its share), the
//! rest plus `stripes` times this stripe's current bucket does not trip, and no stripe holds
//! more than that share, the whole window does not trip either. A stripe's count only grows
//! toward the threshold by a failure or a slow call, and its recorder judges right after. A judge
//! whose own stripe is over its share says so (the window's `escalated` word, one per epoch) and reads
//! every stripe; so does every judge of that epoch after it. The proof that no trip is lost
//! is store buffering: a judge writes its record, then a SeqCst fence, then reads the
//! escalation word; an escalating judge writes the escalation word, then a SeqCst fence, then
//! reads every stripe. So of a judge that stayed within its share and a racing one that
//! escalated, either the first sees the escalation (and reads every stripe) or the second
//! sees the first's record. If every stripe is within its share, no trip is due. In a healthy
//! window the share is large (half the rest's headroom on two stripes), so a storm below the
//! threshold judges without touching another core's line; near the threshold, judges read
//! everything, as before. A judge within its share reports the share view (the failure-rate
//! gauge shows it: the rest exactly, the current bucket as this stripe's times the stripes).
//!
//! Decision (a bounded imprecision, for scalability): a record that lands in an *older* bucket
//! after the `Rest` for the epoch was published — a thread that read the clock just before the
//! epoch turned and recorded just after — is not seen by judges until the next epoch starts
//! (at most one bucket later); `stats()` always reads everything and sees it at once. Records
//! into the current bucket, which carry the judge's own failure and those of racing judges, are
//! always read fresh.

use super::Counts;
use crate::sync::{fence, AtomicU64, Ordering};

/// Totals of every bucket but the current one, for one epoch, published under a sequence lock.
#[derive(Debug)]
#[repr(align(64))]
pub(super) struct Rest {
    /// Even: stable; odd: a judge is publishing.
    seq: AtomicU64,
    /// The epoch the totals are for; `u64::MAX` for none yet.
    epoch: AtomicU64,
    /// `clears_started` when the totals were read.
    clears: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
    /// Clears begun and finished; totals read while they differ are not published.
    pub(super) clears_started: AtomicU64,
    pub(super) clears_finished: AtomicU64,
}

impl Rest {
    pub(super) fn new() -> Rest {
        Rest {
            seq: AtomicU64::new(0),
            epoch: AtomicU64::new(u64::MAX),
            clears: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            clears_started: AtomicU64::new(0),
            clears_finished: AtomicU64::new(0),
        }
    }

    /// The published totals for `epoch`, if there are some and no clear began since.
    #[inline]
    pub(super) fn read(&self, epoch: u64) -> Option<Counts> {
        // Acquire: pairs with the Release that ended a publication (seqlock reader).
        let before = self.seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None;
        }
        // Relaxed: validated by the sequence re-read after the Acquire fence below.
        let published = self.epoch.load(Ordering::Relaxed);
        let clears = self.clears.load(Ordering::Relaxed);
        let counts = Counts {
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            slow: self.slow.load(Ordering::Relaxed),
        };
        // Acquire fence: a value read above from a later publication makes the re-read below
        // see that publication's odd sequence number.
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        let after = self.seq.load(Ordering::Relaxed);
        // Acquire: pairs with the Release ending a clear; Relaxed would also do (a clear that
        // began but is not seen yet is one this judge runs before).
        let cleared = self.clears_started.load(Ordering::Acquire);
        (before == after && published == epoch && clears == cleared).then_some(counts)
    }

    /// The `clears_started` value to publish totals under, read *before* the totals, or
    /// `None` while a clear is in progress.
    #[inline]
    pub(super) fn clears_before_read(&self) -> Option<u64> {
        // Acquire: the zeroing of every finished clear happens before the totals we read next.
        let finished = self.clears_finished.load(Ordering::Acquire);
        // Relaxed: compared with `finished`, read first; equal means none began in between.
        let started = self.clears_started.load(Ordering::Relaxed);
        (started == finished).then_some(started)
    }

    /// Publish `counts` as the totals for `epoch`, read under `clears`, unless another judge is
    /// publishing or already published for a later epoch.
    pub(super) fn publish(&self, epoch: u64, clears: u64, counts: Counts) {
        // Relaxed: a hint; the CAS below decides.
        let seq = self.seq.load(Ordering::Relaxed);
        // Relaxed: a hint too; totals for a later epoch are worth more than ours.
        let published = self.epoch.load(Ordering::Relaxed);
        if seq & 1 == 1 || (published != u64::MAX && published > epoch) {
            return;
        }
        // Relaxed CAS + Release fence: the seqlock writer's entry; readers that see any of the
        // stores below see the odd number on their re-read.
        if self
            .seq
            .compare_exchange(seq, seq + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        // Relaxed: published by the Release store of the sequence below.
        self.epoch.store(epoch, Ordering::Relaxed);
        self.clears.store(clears, Ordering::Relaxed);
        self.successes.store(counts.successes, Ordering::Relaxed);
        self.failures.store(counts.failures, Ordering::Relaxed);
        self.slow.store(counts.slow, Ordering::Relaxed);
        // Release: ends the publication.
        self.seq.store(seq + 2, Ordering::Release);
    }
}
