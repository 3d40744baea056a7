//! The lock-free rolling window of call outcomes the breaker judges.
//!
//! Two kinds:
//!
//! - **time-based** (the default): `buckets` buckets of `window / buckets` each. A bucket that is a
//!   whole window old is reset lazily by the first call that needs its slot, so failures age out
//!   with no timer and no background task.
//! - **count-based**: the last `calls` outcomes.
//!
//! ## Time-based layout
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
//! never wrap. (With `+ 4` count bits the epoch was cut to its low bits past 2^60 ns, 36–73 years
//! of a clock that starts at boot, and compared in full: the window then counted nothing.)
//!
//! Counters are striped the way Java's `LongAdder` is: every thread writes to its own copy of
//! the buckets (cache-line aligned), chosen once per thread, so two threads recording into one
//! breaker do not fight over one cache line. Readers add the stripes up. Stripes are
//! `available_parallelism()` rounded up to a power of two, at most [`MAX_STRIPES`].
//!
//! ## Judging
//!
//! The breaker judges the window after every failure. A full read touches every stripe's every
//! bucket — under failures from several threads, mostly lines other cores are writing. So the
//! window keeps the totals of every bucket *but the current one* for the current epoch (the
//! `Rest`, published under a sequence lock, invalidated by any clear), and a judge reads only
//! the current bucket's counters of each stripe plus the `Rest`: one line per stripe. The
//! first judge of each epoch reads everything and publishes the `Rest`.
//!
//! Decision (a bounded imprecision, for scalability): a record that lands in an *older* bucket
//! after the `Rest` for the epoch was published — a thread that read the clock just before the
//! epoch turned and recorded just after — is not seen by judges until the next epoch starts
//! (at most one bucket later); `stats()` always reads everything and sees it at once. Records
//! into the current bucket, which carry the judge's own failure and those of racing judges, are
//! always read fresh.
//!
//! ## Count-based layout
//!
//! Up to [`PACKED_MAX_CALLS`] calls (small rings like recloser's, or the bench's 20): the whole
//! window is **one word** — a failure bit and a slow bit per position, the next position, and
//! how many positions are filled. A record is one compare-and-swap, reading it is two
//! popcounts, and a clear stores zero, so every record lands wholly before or after any other
//! record or clear. Neither layout reads the clock.
//!
//! Larger windows: a ring of `calls` words, each holding the sequence number of the call it
//! records and the outcome bits; a shared sequence counter hands out positions.
//!
//! Either way, "the last N calls" cannot be striped, so concurrent recorders share one cache
//! line: prefer the time-based window where throughput across threads matters.

use std::sync::OnceLock;
use std::time::Duration;

use crate::clock::duration_to_nanos;
use crate::sync::{fence, AtomicU64, Ordering};

/// The most stripes a time-based window uses (4 × 256 bytes for the default 10 buckets).
pub(crate) const MAX_STRIPES: usize = 4;

const SUCCESS: usize = 0;
const FAILURE: usize = 1;
const SLOW: usize = 2;
const KINDS: usize = 3;
const WORDS_PER_LINE: usize = 8;
/// The per-stripe epoch cache holds `epoch << EPOCH_CACHE_SHIFT | bucket`.
const EPOCH_CACHE_SHIFT: u32 = 16;
const EPOCH_CACHE_BUCKET: u64 = (1 << EPOCH_CACHE_SHIFT) - 1;

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
    #[allow(dead_code)]
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
        Window::with_stripes(spec, default_stripes())
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
            Kind::Time(w) => w.record(thread_token() & (w.stripes - 1), now(), failure, slow),
            Kind::Packed(w) => w.record(failure, slow),
            Kind::Count(w) => w.record(failure, slow),
        }
    }

    /// Record into a chosen stripe; lets models exercise same-stripe and cross-stripe races.
    #[cfg(test)]
    pub(crate) fn record_in(&self, stripe: usize, now: u64, failure: bool, slow: bool) {
        match &self.kind {
            Kind::Time(w) => w.record(stripe & (w.stripes - 1), now, failure, slow),
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
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.kind {
            Kind::Time(w) => std::mem::size_of_val(&*w.lines),
            Kind::Packed(_) => 0,
            Kind::Count(w) => std::mem::size_of_val(&*w.slots),
        }
    }
}

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
struct TimeWindow {
    lines: Box<[Line]>,
    /// A power of two.
    stripes: usize,
    /// Words per stripe: `buckets * KINDS` counters and one [`EPOCH_CACHE`] word, rounded up to
    /// whole lines.
    stride: usize,
    buckets: u64,
    bucket_nanos: u64,
    /// Bits of the count; the epoch sits above them.
    shift: u32,
    count_mask: u64,
    rest: Rest,
}

/// Totals of every bucket but the current one, for one epoch, published under a sequence lock.
#[derive(Debug)]
#[repr(align(64))]
struct Rest {
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
    clears_started: AtomicU64,
    clears_finished: AtomicU64,
}

impl Rest {
    fn new() -> Rest {
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
    fn read(&self, epoch: u64) -> Option<Counts> {
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
    fn clears_before_read(&self) -> Option<u64> {
        // Acquire: the zeroing of every finished clear happens before the totals we read next.
        let finished = self.clears_finished.load(Ordering::Acquire);
        // Relaxed: compared with `finished`, read first; equal means none began in between.
        let started = self.clears_started.load(Ordering::Relaxed);
        (started == finished).then_some(started)
    }

    /// Publish `counts` as the totals for `epoch`, read under `clears`, unless another judge is
    /// publishing or already published for a later epoch.
    fn publish(&self, epoch: u64, clears: u64, counts: Counts) {
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

impl TimeWindow {
    fn new(window: Duration, buckets: u32, stripes: usize) -> TimeWindow {
        let buckets = u64::from(buckets.max(1));
        let bucket_nanos = (duration_to_nanos(window) / buckets).max(1);
        let stripes = stripes.clamp(1, MAX_STRIPES).next_power_of_two();
        let words = buckets as usize * KINDS + 1;
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
            count_mask: (1 << shift) - 1,
            rest: Rest::new(),
        }
    }

    #[inline]
    fn word(&self, index: usize) -> &AtomicU64 {
        &self.lines[index / WORDS_PER_LINE].0[index % WORDS_PER_LINE]
    }

    #[inline]
    fn record(&self, stripe: usize, now: u64, failure: bool, slow: bool) {
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
                if current & self.count_mask == self.count_mask {
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

    fn counts(&self, now: u64, slow: bool) -> Counts {
        let epoch = now / self.bucket_nanos;
        let (current, rest) = self.read(epoch, slow, true);
        current.plus(rest)
    }

    fn judge_counts(&self, now: u64, slow: bool) -> Counts {
        let epoch = now / self.bucket_nanos;
        if let Some(rest) = self.rest.read(epoch) {
            let (current, _) = self.read(epoch, slow, false);
            return current.plus(rest);
        }
        let clears = self.rest.clears_before_read();
        // The published totals always carry the slow counters, so any judge can use them.
        let (current, rest) = self.read(epoch, true, true);
        if let Some(clears) = clears {
            self.rest.publish(epoch, clears, rest);
        }
        current.plus(rest)
    }

    /// The counts of the bucket of `epoch`, and (if `others`) of the window's other buckets.
    fn read(&self, epoch: u64, slow: bool, others: bool) -> (Counts, Counts) {
        let current = epoch % self.buckets;
        let kinds = if slow { KINDS } else { SLOW };
        let mut totals = [[0u64; KINDS]; 2];
        for bucket in 0..self.buckets {
            if !others && bucket != current {
                continue;
            }
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
            for stripe in 0..self.stripes {
                let base = stripe * self.stride + bucket as usize * KINDS;
                for (kind, total) in into.iter_mut().enumerate().take(kinds) {
                    // Relaxed: a statistic; each word is read whole, and a word written after
                    // this read would have been just as valid a result. (The breaker's judge
                    // orders these reads after its own record with a SeqCst fence.)
                    let value = self.word(base + kind).load(Ordering::Relaxed);
                    if value >> self.shift == tag {
                        *total += value & self.count_mask;
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

    fn clear(&self) {
        // Relaxed: the published totals stop matching at once for judges that see this; those
        // that do not yet judge as if before the clear.
        self.rest.clears_started.fetch_add(1, Ordering::Relaxed);
        self.zero_counters();
        // Release: judges that see this finished clear read the zeroed counters.
        self.rest.clears_finished.fetch_add(1, Ordering::Release);
    }

    fn zero_counters(&self) {
        for stripe in 0..self.stripes {
            let base = stripe * self.stride;
            // Counters only: the epoch cache after them is not a count.
            for index in base..base + self.buckets as usize * KINDS {
                // Relaxed: zeroes the count and keeps the epoch in one atomic step; a concurrent
                // record lands wholly before or wholly after it.
                self.word(index)
                    .fetch_and(!self.count_mask, Ordering::Relaxed);
            }
        }
    }
}

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
struct PackedRing {
    word: AtomicU64,
    calls: u64,
}

impl PackedRing {
    fn new(calls: u32) -> PackedRing {
        PackedRing {
            word: AtomicU64::new(0),
            calls: u64::from(calls.clamp(1, PACKED_MAX_CALLS)),
        }
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool) {
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
    fn counts(&self) -> Counts {
        // Relaxed: one load reads the whole window at one point of its modification order.
        let word = self.word.load(Ordering::Relaxed);
        let failures = u64::from((word & PACKED_LOW).count_ones());
        Counts {
            successes: (word >> PACKED_FILL_SHIFT) - failures,
            failures,
            slow: u64::from(((word >> PACKED_BITS) & PACKED_LOW).count_ones()),
        }
    }

    fn clear(&self) {
        // Relaxed: a record racing with this store lands wholly before (and is forgotten) or
        // wholly after it, because its CAS fails on the cleared word and retries.
        self.word.store(0, Ordering::Relaxed);
    }
}

const FAILURE_BIT: u64 = 1;
const SLOW_BIT: u64 = 2;
const SEQ_SHIFT: u32 = 2;

#[derive(Debug)]
struct CountWindow {
    /// `(sequence + 1) << 2 | slow << 1 | failure`; 0 is an empty slot.
    slots: Box<[AtomicU64]>,
    /// The next sequence number to hand out.
    next: AtomicU64,
    /// Sequence numbers below this were cleared.
    floor: AtomicU64,
}

impl CountWindow {
    fn new(calls: u32) -> CountWindow {
        CountWindow {
            slots: (0..calls.max(1)).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicU64::new(0),
            floor: AtomicU64::new(0),
        }
    }

    fn record(&self, failure: bool, slow: bool) {
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

    fn counts(&self) -> Counts {
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

    fn clear(&self) {
        // Relaxed: every call numbered before this load is forgotten; fetch_max keeps racing
        // clears from moving the floor back.
        let end = self.next.load(Ordering::Relaxed);
        self.floor.fetch_max(end, Ordering::Relaxed);
    }
}

fn default_stripes() -> usize {
    static STRIPES: OnceLock<usize> = OnceLock::new();
    *STRIPES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_STRIPES)
            .next_power_of_two()
    })
}

/// A number fixed per thread on first use, handed out in order, so the first threads land on
/// different stripes. Also tells a service which thread its per-thread state belongs to.
#[cfg(not(harden_loom))]
#[inline]
pub(crate) fn thread_token() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|stripe| {
        let mut value = stripe.get();
        if value == usize::MAX {
            // Relaxed: only uniqueness matters, not ordering with other memory.
            value = NEXT.fetch_add(1, Ordering::Relaxed);
            stripe.set(value);
        }
        value
    })
}

/// Under loom every thread uses stripe 0 unless a model picks one with `record_in`: the
/// interesting races are on one word.
#[cfg(harden_loom)]
pub(crate) fn thread_token() -> usize {
    0
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    const MS: u64 = 1_000_000;

    fn time_window(window_ms: u64, buckets: u32, stripes: usize) -> Window {
        Window::with_stripes(
            WindowSpec::Time {
                window: Duration::from_millis(window_ms),
                buckets,
            },
            stripes,
        )
    }

    #[test]
    fn failures_age_out_bucket_by_bucket() {
        let w = time_window(1000, 10, 1);
        w.record(0, true, false);
        w.record(150 * MS, false, true);
        assert_eq!(
            w.counts(150 * MS),
            Counts {
                successes: 1,
                failures: 1,
                slow: 1
            }
        );
        // At 1000 ms the bucket [0, 100) has left the window; [100, 200) has not.
        assert_eq!(w.counts(1000 * MS).failures, 0);
        assert_eq!(w.counts(1000 * MS).successes, 1);
        assert_eq!(w.counts(1100 * MS), Counts::default());
    }

    // Regression (issue 10 #5): the epoch tag kept only its low bits (count bits were
    // log2(bucket) + 4) but was compared in full: past 2^60 ns of clock nothing was counted.
    #[test]
    fn counts_hold_for_the_clocks_whole_range() {
        for (window_ms, buckets) in [
            (1000, 10),
            (1, 1),
            (10_000, 1000),
            (365 * 24 * 3600 * 1000, 1),
        ] {
            let bucket = window_ms * MS / buckets;
            for now in [1u64 << 60, 3 << 61, u64::MAX - 2 * bucket] {
                let w = time_window(window_ms, buckets as u32, 2);
                w.record_in(0, now, true, false);
                w.record_in(1, now, false, true);
                let both = Counts {
                    successes: 1,
                    failures: 1,
                    slow: 1,
                };
                assert_eq!(w.counts(now), both, "{window_ms} ms at {now}");
                assert_eq!(w.judge_counts(now, true), both, "{window_ms} ms at {now}");
                // And they still age out a window later.
                if let Some(later) = now.checked_add(window_ms * MS) {
                    assert_eq!(w.counts(later).calls(), 0);
                }
            }
        }
    }

    #[test]
    fn slot_reuse_starts_from_zero() {
        let w = time_window(1000, 10, 1);
        w.record(5 * MS, true, false);
        w.record(5 * MS, true, false);
        // Same slot, one window later.
        w.record(1005 * MS, true, false);
        assert_eq!(w.counts(1005 * MS).failures, 1);
    }

    #[test]
    fn a_record_older_than_its_slot_is_dropped() {
        let w = time_window(1000, 10, 1);
        w.record(1005 * MS, false, false);
        w.record(5 * MS, true, false); // stale clock reading, a window behind
        assert_eq!(
            w.counts(1005 * MS),
            Counts {
                successes: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn clear_forgets_and_later_records_count() {
        let w = time_window(1000, 10, 2);
        w.record_in(0, 10 * MS, true, true);
        w.record_in(1, 10 * MS, false, false);
        w.clear();
        assert_eq!(w.counts(10 * MS), Counts::default());
        w.record_in(1, 10 * MS, true, false);
        assert_eq!(w.counts(10 * MS).failures, 1);
    }

    #[test]
    fn judges_read_the_current_bucket_fresh_and_the_rest_once_per_epoch() {
        let w = time_window(1000, 10, 2);
        w.record_in(0, 50 * MS, true, false);
        w.record_in(1, 150 * MS, false, false);
        // First judge of the epoch: reads everything, publishes the rest.
        assert_eq!(w.judge_counts(150 * MS, false).calls(), 2);
        // Records into the current bucket are seen by the next judge at once.
        w.record_in(0, 160 * MS, true, false);
        w.record_in(1, 170 * MS, true, false);
        assert_eq!(w.judge_counts(170 * MS, false).failures, 3);
        // A late record into an older bucket (its clock was read before the epoch turned) is
        // seen by stats at once and by judges from the next epoch on.
        w.record_in(0, 90 * MS, true, false);
        assert_eq!(w.counts(170 * MS).failures, 4);
        assert_eq!(w.judge_counts(180 * MS, false).failures, 3);
        assert_eq!(w.judge_counts(250 * MS, false).failures, 4);
        // A clear makes the published rest stale at once.
        w.clear();
        assert_eq!(w.judge_counts(250 * MS, true), Counts::default());
        w.record_in(1, 260 * MS, true, false);
        assert_eq!(w.judge_counts(260 * MS, false).failures, 1);
    }

    #[test]
    fn count_window_keeps_the_last_n() {
        for w in [
            Window::new(WindowSpec::Count { calls: 3 }),
            Window::count_ring(3),
        ] {
            count_window_keeps_the_last_3(w);
        }
    }

    #[test]
    fn small_count_windows_are_one_word_and_larger_ones_a_ring() {
        let packed = Window::new(WindowSpec::Count {
            calls: PACKED_MAX_CALLS,
        });
        assert!(matches!(packed.kind, Kind::Packed(_)));
        let ring = Window::new(WindowSpec::Count {
            calls: PACKED_MAX_CALLS + 1,
        });
        assert!(matches!(ring.kind, Kind::Count(_)));
        // The widest packed window keeps its last call and wraps without spilling into the
        // position and fill fields.
        for i in 0..3 * PACKED_MAX_CALLS {
            packed.record(0, i % 3 == 0, i % 9 == 0);
        }
        assert_eq!(
            packed.counts(0),
            Counts {
                successes: 18,
                failures: 9,
                slow: 3
            }
        );
    }

    fn count_window_keeps_the_last_3(w: Window) {
        for failure in [true, true, false, false, true] {
            w.record(0, failure, false);
        }
        assert_eq!(
            w.counts(0),
            Counts {
                successes: 2,
                failures: 1,
                slow: 0
            }
        );
        w.clear();
        assert_eq!(w.counts(0), Counts::default());
        w.record(0, false, true);
        assert_eq!(
            w.counts(0),
            Counts {
                successes: 1,
                failures: 0,
                slow: 1
            }
        );
    }

    #[test]
    fn default_window_is_small() {
        let w = Window::new(WindowSpec::Time {
            window: Duration::from_secs(10),
            buckets: 10,
        });
        // 30 counters round up to 4 cache lines per stripe.
        assert!(w.heap_bytes() <= MAX_STRIPES * 256, "{}", w.heap_bytes());
    }

    #[test]
    fn huge_buckets_do_not_overflow_the_layout() {
        let w = time_window(u64::MAX / 1_000_000 / 2, 1, 1);
        w.record(u64::MAX / 4, true, false);
        assert_eq!(w.counts(u64::MAX / 4).failures, 1);
    }

    #[test]
    fn threads_on_their_own_stripes_lose_nothing() {
        let w = std::sync::Arc::new(time_window(10_000, 10, 4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        w.record(5 * MS, i % 10 == 0, i % 100 == 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            w.counts(5 * MS),
            Counts {
                successes: 36_000,
                failures: 4_000,
                slow: 400
            }
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Record {
            stripe: usize,
            failure: bool,
            slow: bool,
        },
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..400 * MS).prop_map(Op::Advance),
            6 => (0usize..4, any::<bool>(), any::<bool>())
                .prop_map(|(stripe, failure, slow)| Op::Record { stripe, failure, slow }),
            1 => Just(Op::Clear),
        ]
    }

    fn model_counts(records: &[(u64, bool, bool)], keep: impl Fn(u64) -> bool) -> Counts {
        let mut c = Counts::default();
        for &(_key, failure, slow) in records.iter().filter(|r| keep(r.0)) {
            if failure {
                c.failures += 1;
            } else {
                c.successes += 1;
            }
            if slow {
                c.slow += 1;
            }
        }
        c
    }

    proptest! {
        /// The time window against a list of (epoch, outcome) filtered by age.
        #[test]
        fn time_window_matches_a_naive_model(
            window_ms in 1u64..2_000,
            buckets in 1u32..12,
            stripes in 1usize..5,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let window_ms = window_ms.max(u64::from(buckets));
            let w = time_window(window_ms, buckets, stripes);
            let bucket = window_ms * MS / u64::from(buckets);
            let mut now = 0u64;
            let mut records: Vec<(u64, bool, bool)> = Vec::new();
            for op in ops {
                match op {
                    Op::Advance(d) => now += d,
                    Op::Record { stripe, failure, slow } => {
                        w.record_in(stripe, now, failure, slow);
                        records.push((now / bucket, failure, slow));
                    }
                    Op::Clear => {
                        w.clear();
                        records.clear();
                    }
                }
                let epoch = now / bucket;
                let expected = model_counts(&records, |e| e + u64::from(buckets) > epoch);
                prop_assert_eq!(w.counts(now), expected);
                // A judge reads the same through the published totals of the other buckets.
                prop_assert_eq!(w.judge_counts(now, true), expected);
                let judged = w.judge_counts(now, false);
                prop_assert_eq!((judged.successes, judged.failures), (expected.successes, expected.failures));
            }
        }

        /// The count window against a queue of the last N outcomes.
        #[test]
        fn count_window_matches_a_naive_model(
            calls in 1u32..40,
            ring in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            // Small windows are one packed word unless `ring` asks for the general ring.
            let w = if ring {
                Window::count_ring(calls)
            } else {
                Window::new(WindowSpec::Count { calls })
            };
            let mut last: VecDeque<(u64, bool, bool)> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Advance(_) => {}
                    Op::Record { failure, slow, .. } => {
                        w.record(0, failure, slow);
                        last.push_back((0, failure, slow));
                        if last.len() > calls as usize {
                            last.pop_front();
                        }
                    }
                    Op::Clear => {
                        w.clear();
                        last.clear();
                    }
                }
                let records: Vec<_> = last.iter().copied().collect();
                prop_assert_eq!(w.counts(0), model_counts(&records, |_| true));
            }
        }
    }
}

#[cfg(all(test, harden_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::Arc;

    const MS: u64 = 1_000_000;

    fn window() -> Window {
        // 4 buckets of 100 ms, 2 stripes.
        Window::with_stripes(
            WindowSpec::Time {
                window: Duration::from_millis(400),
                buckets: 4,
            },
            2,
        )
    }

    /// Two threads on one word: both outcomes counted, in one bucket.
    #[test]
    fn loom_same_word_records_are_not_lost() {
        loom::model(|| {
            let w = Arc::new(window());
            let w2 = w.clone();
            let t = loom::thread::spawn(move || w2.record_in(0, 10 * MS, true, false));
            w.record_in(0, 20 * MS, true, false);
            t.join().unwrap();
            assert_eq!(w.counts(20 * MS).failures, 2);
        });
    }

    /// A record racing with the rotation of its slot to a window later: whatever the
    /// interleaving, the snapshot at the later time holds exactly the later outcome, and the
    /// later outcome is counted exactly once.
    #[test]
    fn loom_rotation_neither_loses_nor_double_counts() {
        loom::model(|| {
            let w = Arc::new(window());
            let w2 = w.clone();
            let w3 = w.clone();
            // Slot 0 at epoch 0 (old) and epoch 4 (a window later), plus a second record at 4.
            let old = loom::thread::spawn(move || w2.record_in(0, 50 * MS, true, false));
            let new = loom::thread::spawn(move || w3.record_in(0, 410 * MS, false, false));
            w.record_in(0, 420 * MS, false, true);
            old.join().unwrap();
            new.join().unwrap();
            assert_eq!(
                w.counts(420 * MS),
                Counts {
                    successes: 2,
                    failures: 0,
                    slow: 1
                }
            );
        });
    }

    /// A record racing with clear: each of its counters is kept or forgotten whole (the outcome
    /// and the slow mark are separate words), and the window stays usable.
    #[test]
    fn loom_clear_racing_with_record() {
        loom::model(|| {
            let w = Arc::new(window());
            let w2 = w.clone();
            let t = loom::thread::spawn(move || w2.record_in(0, 10 * MS, true, true));
            w.clear();
            t.join().unwrap();
            let c = w.counts(10 * MS);
            assert!(c.failures <= 1 && c.slow <= 1 && c.successes == 0, "{c:?}");
            w.record_in(0, 10 * MS, true, false);
            assert_eq!(w.counts(10 * MS).failures, c.failures + 1);
        });
    }

    fn judged_window() -> Window {
        // 2 buckets of 100 ms, 1 stripe: the smallest window with a current bucket and a rest.
        let w = Window::with_stripes(
            WindowSpec::Time {
                window: Duration::from_millis(200),
                buckets: 2,
            },
            1,
        );
        // Epoch 0 holds two failures (one slow) and a success; the judges run in epoch 1.
        w.record_in(0, 10 * MS, true, false);
        w.record_in(0, 20 * MS, true, true);
        w.record_in(0, 30 * MS, false, false);
        w
    }

    use crate::sync::loom_model as model;

    /// A judge publishing the rest races a clear: once both are done, no judge uses totals
    /// read before the clear.
    #[test]
    fn loom_published_rest_never_outlives_a_clear() {
        model(|| {
            let w = Arc::new(judged_window());
            let w2 = w.clone();
            let t = loom::thread::spawn(move || {
                w2.judge_counts(110 * MS, true);
            });
            w.clear();
            t.join().unwrap();
            assert_eq!(w.judge_counts(120 * MS, true), Counts::default());
        });
    }

    /// Two judges publish at once: each reads whole totals (never a mix of two publications
    /// or a half-written one), and so does a judge afterwards.
    #[test]
    fn loom_judges_read_whole_published_totals() {
        model(|| {
            let w = Arc::new(judged_window());
            let expected = w.counts(110 * MS);
            let w2 = w.clone();
            let t = loom::thread::spawn(move || w2.judge_counts(110 * MS, true));
            let mine = w.judge_counts(110 * MS, true);
            assert_eq!(t.join().unwrap(), expected);
            assert_eq!(mine, expected);
            assert_eq!(w.judge_counts(110 * MS, true), expected);
        });
    }

    /// The packed count window: two recorders and a clear racing; every record lands wholly
    /// before the clear (forgotten) or after it (counted with its slow mark), none is lost
    /// otherwise.
    #[test]
    fn loom_packed_count_window_records_and_clears_whole() {
        loom::model(|| {
            let w = Arc::new(Window::new(WindowSpec::Count { calls: 2 }));
            let (w2, w3) = (w.clone(), w.clone());
            let a = loom::thread::spawn(move || w2.record(0, true, true));
            let b = loom::thread::spawn(move || w3.record(0, false, false));
            w.clear();
            a.join().unwrap();
            b.join().unwrap();
            let c = w.counts(0);
            assert!(c.calls() <= 2 && c.failures == c.slow, "{c:?}");
            // Once all are done, the window keeps exactly the last 2 of what follows.
            w.record(0, false, false);
            w.record(0, true, false);
            assert_eq!(
                w.counts(0),
                Counts {
                    successes: 1,
                    failures: 1,
                    slow: 0
                }
            );
        });
    }

    /// Without a clear, two racing records into a packed window are both kept.
    #[test]
    fn loom_packed_count_window_loses_nothing() {
        loom::model(|| {
            let w = Arc::new(Window::new(WindowSpec::Count { calls: 3 }));
            let w2 = w.clone();
            let t = loom::thread::spawn(move || w2.record(0, true, false));
            w.record(0, false, true);
            t.join().unwrap();
            assert_eq!(
                w.counts(0),
                Counts {
                    successes: 1,
                    failures: 1,
                    slow: 1
                }
            );
        });
    }

    /// The count ring keeps the newest outcome of a slot two recorders race for.
    #[test]
    fn loom_count_window_keeps_exactly_the_last_n() {
        loom::model(|| {
            let w = Arc::new(Window::count_ring(1));
            let w2 = w.clone();
            let t = loom::thread::spawn(move || w2.record(0, true, false));
            w.record(0, false, false);
            t.join().unwrap();
            assert_eq!(w.counts(0).calls(), 1);
        });
    }
}
