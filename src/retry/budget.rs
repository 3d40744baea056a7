//! A lock-free retry budget in the style of Finagle, linkerd and Envoy.

use std::fmt;
use std::time::Duration;

use crate::clock::{duration_to_nanos, Clock};
use crate::stripe;
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::ConfigError;

/// Default time a deposit (and a withdrawal) counts for: 10 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Default floor of retries allowed per second whatever the traffic: 10.
pub const DEFAULT_MIN_RETRIES_PER_SEC: u32 = 10;
/// Default share of requests that may be retried on top of the floor: 0.2 (20 %).
pub const DEFAULT_RETRY_RATIO: f64 = 0.2;

/// Smallest accepted `ttl`.
const MIN_TTL: Duration = Duration::from_secs(1);
/// Largest accepted `ttl`.
const MAX_TTL: Duration = Duration::from_secs(60);
/// Largest accepted `retry_ratio` (1000 %).
const MAX_RATIO: f64 = 10.0;
/// The ttl is cut into this many slots; deposits and withdrawals expire a slot at a time.
const SLOTS: usize = 10;
/// Fixed-point scale of tokens: one retry costs `SCALE`, one request deposits `ratio * SCALE`.
const SCALE: u64 = 1000;

/// A budget that caps how many retries a client makes, shared by every clone.
///
/// Every request [deposits](RetryBudget::deposit); every retry [withdraws](RetryBudget::try_withdraw).
/// A retry is allowed while, over the last `ttl`,
/// `retries < min_retries_per_sec * ttl + retry_ratio * requests`. So under a total outage the
/// retries add at most `retry_ratio` of extra load, plus the small floor that lets a quiet client
/// still retry now and then. Deposits and withdrawals expire after `ttl`, a tenth of it at a time.
///
/// The window is cut into ten slots of `ttl / 10`; a check in slot `e` counts the deposits and
/// withdrawals of slots `e - 9 ..= e`, so what it sees is the rule above at a tenth of `ttl`'s
/// resolution.
///
/// Deposits sit on every request's path: they go to per-thread striped counters (like Java's
/// `LongAdder`), one epoch-tagged counter per slot, and take no lock. The first threads to use
/// harden (twice as many as the machine has cores, at most 64) each own a stripe that no other
/// thread writes, so their deposit is a plain load and store, no locked instruction; the other
/// threads share a few stripes and deposit with a compare-and-swap. No deposit is lost to a
/// race either way.
///
/// A deposit must count in the slot of the time it was made: a deposit that only added to a
/// running total was attributed to whenever a *withdrawal* next looked, so after a quiet spell
/// every deposit since was taken for old and the first retries of an outage got only the floor.
/// So a deposit is dated by the (cheap, coarse) clock, read for the first deposit of a slot and
/// for every eighth after it; the deposits between are dated to the stripe's last reading. That
/// dates some deposits a little early, never late: early deposits only expire early, so the
/// budget may undercount a handful per stripe (at most seven per stripe after a quiet spell)
/// but never lets through a retry the rule above refuses. Withdrawals read the clock and win a
/// compare-and-swap on the withdrawal counter, so concurrent retries never overdraw the budget.
///
/// Cloning is cheap (an `Arc`); every clone, and every layer and service made with it, shares
/// one budget.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | `ttl` | [`DEFAULT_TTL`] = 10 s, accepted [1 s, 60 s] |
/// | `min_retries_per_sec` | [`DEFAULT_MIN_RETRIES_PER_SEC`] = 10 |
/// | `retry_ratio` | [`DEFAULT_RETRY_RATIO`] = 0.2, accepted [0, 10] |
///
/// ```
/// use std::time::Duration;
/// use harden::retry::RetryBudget;
///
/// let budget = RetryBudget::builder()
///     .ttl(Duration::from_secs(5))
///     .min_retries_per_sec(1)
///     .retry_ratio(0.1)
///     .build()?;
/// budget.deposit();
/// assert!(budget.try_withdraw()); // the floor allows 5 retries per 5 s
/// # Ok::<(), harden::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
    /// One handle per stripe, each its own `Arc` allocation: a response future that may retry
    /// keeps its thread's handle, so the per-call reference count moves on a per-thread line
    /// instead of making every thread fight over the reference count of `inner`.
    handles: Arc<Vec<Arc<Carrier>>>,
}

/// A reference to the budget with a reference count of its own (see `RetryBudget::handles`).
#[repr(align(128))]
struct Carrier {
    inner: Arc<Inner>,
}

/// What a response future keeps to withdraw from the budget later.
pub(crate) struct BudgetHandle(Arc<Carrier>);

impl BudgetHandle {
    /// [`RetryBudget::try_withdraw`].
    pub(crate) fn try_withdraw(&self) -> bool {
        let inner = &self.0.inner;
        inner.try_withdraw_at(inner.clock.now())
    }
}

/// Builder of a [`RetryBudget`]; see its `# Defaults`.
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryBudgetBuilder {
    ttl: Duration,
    min_retries_per_sec: u32,
    retry_ratio: f64,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        RetryBudgetBuilder::new()
    }
}

impl RetryBudgetBuilder {
    /// A builder holding the defaults.
    pub const fn new() -> Self {
        RetryBudgetBuilder {
            ttl: DEFAULT_TTL,
            min_retries_per_sec: DEFAULT_MIN_RETRIES_PER_SEC,
            retry_ratio: DEFAULT_RETRY_RATIO,
        }
    }

    /// How long a deposit or a withdrawal counts; accepted [1 s, 60 s].
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Retries allowed per second even without traffic (averaged over `ttl`).
    pub const fn min_retries_per_sec(mut self, n: u32) -> Self {
        self.min_retries_per_sec = n;
        self
    }

    /// Retries allowed per request on top of the floor, e.g. 0.2 for 20 %; accepted [0, 10].
    pub const fn retry_ratio(mut self, ratio: f64) -> Self {
        self.retry_ratio = ratio;
        self
    }

    /// Validate and create the budget.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `ttl` or `retry_ratio` when outside the accepted range.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        if self.ttl < MIN_TTL || self.ttl > MAX_TTL {
            return Err(ConfigError::new(
                "ttl",
                format!("{:?} is outside [1s, 60s]", self.ttl),
            ));
        }
        if !(0.0..=MAX_RATIO).contains(&self.retry_ratio) {
            return Err(ConfigError::new(
                "retry_ratio",
                format!("{} is outside [0, 10]", self.retry_ratio),
            ));
        }
        let ttl_nanos = duration_to_nanos(self.ttl);
        let reserve = u64::from(self.min_retries_per_sec)
            .saturating_mul(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let (owned, shared) = stripe_counts();
        let inner = Arc::new(Inner {
            stripes: (0..owned + shared).map(|_| Stripe::new()).collect(),
            owned,
            shared_mask: shared - 1,
            withdrawn: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            last_epoch: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            clock: Clock::new(),
            slot_nanos: ttl_nanos / SLOTS as u64,
            // min_retries_per_sec * ttl retries, in thousandths: per second * milliseconds.
            reserve,
            // 0 <= ratio <= 10 was checked above: the product fits easily.
            deposit: (self.retry_ratio * SCALE as f64).round() as u64,
            ttl: self.ttl,
            min_retries_per_sec: self.min_retries_per_sec,
            retry_ratio: self.retry_ratio,
        });
        let handles = (0..inner.stripes.len())
            .map(|_| {
                Arc::new(Carrier {
                    inner: inner.clone(),
                })
            })
            .collect();
        Ok(RetryBudget {
            inner,
            handles: Arc::new(handles),
        })
    }
}

struct Inner {
    /// Deposits per slot, striped per thread: first the `owned` stripes, one per thread token
    /// below `owned`, each written by that thread only; then the shared ones, for the rest.
    stripes: Box<[Stripe]>,
    /// Stripes owned by one thread each (thread tokens `0..owned`).
    owned: usize,
    /// Shared stripes, minus one (a power of two, minus one).
    shared_mask: usize,
    /// Cumulative withdrawals; only ever moved by a successful compare-and-swap.
    withdrawn: AtomicU64,
    /// Withdrawals refused.
    exhausted: AtomicU64,
    /// The newest epoch (`now / slot_nanos`) whose snapshot is written.
    last_epoch: AtomicU64,
    /// `slots[e % SLOTS]`: the withdrawals counted when epoch `e` was first seen.
    slots: [AtomicU64; SLOTS],
    clock: Clock,
    slot_nanos: u64,
    /// Retries always allowed per ttl, in thousandths of a retry.
    reserve: u64,
    /// Thousandths of a retry earned by one request.
    deposit: u64,
    ttl: Duration,
    min_retries_per_sec: u32,
    retry_ratio: f64,
}

/// Bits of a deposit slot's count; the epoch (`now / slot_nanos`, in full) sits above them.
/// Slots are at least 100 ms, so the epoch of any `u64` clock reading fits in the other 38 bits
/// (2^64 ns / 100 ms < 2^38), and 2^26 deposits per slot per stripe (670 million a second) is
/// more than one counter can take; it saturates rather than spill into the epoch.
const COUNT_BITS: u32 = 26;
/// A deposit reads the clock for the first deposit of a slot and then once every this many;
/// the deposits between are dated to the epoch of the stripe's last reading.
///
/// Dating a deposit early is safe: it then counts in fewer windows, never in one it was not
/// made in, so the budget can only undercount (issue 10's defect was the reverse, deposits
/// dated late). What it costs: at each epoch change up to `CLOCK_EVERY - 1` deposits per stripe
/// expire one epoch (a tenth of the ttl) early, and after a quiet spell longer than the ttl up
/// to `CLOCK_EVERY - 1` per stripe are lost. What it saves: the clock read, about 7 of the 9 ns
/// of a deposit on the Xeon of BENCHMARKS.md, on seven deposits in eight.
const CLOCK_EVERY: u64 = 8;
/// The most stripes owned by one thread each: twice the cores, up to 64 (the first threads to
/// use harden get them; see [`Inner::stripe_of`]).
const MAX_OWNED: usize = 64;
/// The most stripes shared by the threads that own none.
const MAX_SHARED: usize = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// One thread's deposit counters, alone on their lines (128 bytes: adjacent-line prefetch
/// pairs lines on x86).
#[repr(align(128))]
struct Stripe {
    /// `slots[e % SLOTS]`: `e << COUNT_BITS | deposits made in epoch e`.
    slots: [AtomicU64; SLOTS],
    /// The epoch of this stripe's last deposit, so a deposit skips the division; validated
    /// against the clock reading before use, so a stale value is never trusted.
    epoch: AtomicU64,
}

impl Stripe {
    fn new() -> Stripe {
        Stripe {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            epoch: AtomicU64::new(0),
        }
    }
}

/// How many stripes a budget has: (owned by one thread each, shared by the others).
#[cfg(not(harden_loom))]
fn stripe_counts() -> (usize, usize) {
    (
        (2 * stripe::count(MAX_OWNED)).min(MAX_OWNED),
        stripe::count(MAX_SHARED),
    )
}

/// Under loom one of each, so that a withdrawal's sum stays within the model's branch bound.
#[cfg(harden_loom)]
fn stripe_counts() -> (usize, usize) {
    (1, 1)
}

/// The calling thread's token for [`Inner::stripe_of`].
#[cfg(not(harden_loom))]
#[inline]
fn token() -> usize {
    stripe::thread_token()
}

/// Under loom every thread has token 0 (see `stripe::thread_token`), which would make them all
/// owners of one stripe: they deposit into the shared stripes instead, and models of the owned
/// stripes pick distinct tokens explicitly.
#[cfg(harden_loom)]
fn token() -> usize {
    usize::MAX
}

impl Inner {
    /// The stripe of the thread with `token`: its own while `token < owned`, else a shared one.
    #[inline]
    fn stripe_of(&self, token: usize) -> usize {
        if token < self.owned {
            token
        } else {
            self.owned + (token & self.shared_mask)
        }
    }

    /// Count one deposit in `stripe` (from [`Inner::stripe_of`] for the calling thread), reading
    /// the clock only for the first deposit of a slot and every [`CLOCK_EVERY`]th after it; the
    /// others are dated to the stripe's last epoch (see [`CLOCK_EVERY`] for why that is safe).
    #[inline]
    fn deposit_dated(&self, stripe: usize, now: impl FnOnce() -> u64) {
        let lane = &self.stripes[stripe];
        // Relaxed: a clock reading some thread made earlier, so never newer than `now`.
        let epoch = lane.epoch.load(Ordering::Relaxed);
        let slot = &lane.slots[(epoch % SLOTS as u64) as usize];
        // Relaxed: as in `deposit_at`.
        let cur = slot.load(Ordering::Relaxed);
        let count = cur & COUNT_MASK;
        if cur >> COUNT_BITS == epoch && !count.is_multiple_of(CLOCK_EVERY) && count != COUNT_MASK {
            if stripe < self.owned {
                // NOTE: single writer, as in `deposit_at`. Relaxed: as there.
                slot.store(cur + 1, Ordering::Relaxed);
                return;
            }
            // Relaxed: as in `deposit_at`; on a lost race, the full path below.
            if slot
                .compare_exchange(cur, cur + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
        self.deposit_at(stripe, now());
    }

    /// Count one deposit made at `now` in `stripe` (from [`Inner::stripe_of`] for the calling
    /// thread), in the slot of its epoch.
    #[inline]
    fn deposit_at(&self, stripe: usize, now: u64) {
        let owned = stripe < self.owned;
        let stripe = &self.stripes[stripe];
        // Relaxed: a hint, validated against `now` below.
        let mut epoch = stripe.epoch.load(Ordering::Relaxed);
        if now.wrapping_sub(epoch.wrapping_mul(self.slot_nanos)) >= self.slot_nanos {
            epoch = now / self.slot_nanos;
            // Relaxed: any thread's value is as good as ours; readers validate it.
            stripe.epoch.store(epoch, Ordering::Relaxed);
        }
        let slot = &stripe.slots[(epoch % SLOTS as u64) as usize];
        // Relaxed: the slot is a self-contained counter; a withdrawal reading an older value
        // only sees a smaller balance (never overdraws).
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let tag = cur >> COUNT_BITS;
            let next = if tag == epoch {
                if cur & COUNT_MASK == COUNT_MASK {
                    return; // saturated
                }
                cur + 1
            } else if tag < epoch {
                (epoch << COUNT_BITS) | 1
            } else {
                return; // the slot moved on a whole ttl: this deposit has expired
            };
            if owned {
                // NOTE: only the thread owning this stripe writes it (`stripe_of`), so a plain
                // store after the load loses nothing: no locked instruction on the request path.
                // Relaxed: as above; readers are ordered by nothing but the value itself.
                slot.store(next, Ordering::Relaxed);
                return;
            }
            // Relaxed: as above; the CAS orders the writers sharing this stripe.
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Deposits made in epochs `epoch - (SLOTS - 1) ..= epoch`.
    fn deposited(&self, epoch: u64) -> u64 {
        let oldest = epoch.saturating_sub(SLOTS as u64 - 1);
        let mut sum = 0u64;
        for stripe in self.stripes.iter() {
            for slot in &stripe.slots {
                // Relaxed: a sum older than the truth only lowers the balance (never overdraws).
                let v = slot.load(Ordering::Relaxed);
                if (oldest..=epoch).contains(&(v >> COUNT_BITS)) {
                    sum += v & COUNT_MASK;
                }
            }
        }
        sum
    }

    /// Make sure the snapshot of `epoch` is written; returns the epoch to judge by (never older
    /// than the newest snapshot, so a late reader never uses a window that already moved on).
    fn rotate(&self, epoch: u64) -> u64 {
        // Acquire: pairs with the AcqRel CAS below so a reader sees snapshots of epochs it skips.
        let last = self.last_epoch.load(Ordering::Acquire);
        if epoch <= last {
            return last;
        }
        // AcqRel: exactly one thread moves `last_epoch` past `last` and writes the snapshots.
        if let Err(now) =
            self.last_epoch
                .compare_exchange(last, epoch, Ordering::AcqRel, Ordering::Acquire)
        {
            return now.max(epoch);
        }
        // Relaxed: per-location coherence keeps this no older than any earlier snapshot.
        let snap = self.withdrawn.load(Ordering::Relaxed);
        let first = (last + 1).max(epoch.saturating_sub(SLOTS as u64 - 1));
        for e in first..=epoch {
            // Release: whoever reads this snapshot then reads counters no older than it.
            self.slots[(e % SLOTS as u64) as usize].store(snap, Ordering::Release);
        }
        epoch
    }

    fn try_withdraw_at(&self, now: u64) -> bool {
        let epoch = self.rotate(now / self.slot_nanos);
        // The withdrawals counted first in the window's oldest epoch, `epoch - (SLOTS - 1)`: a
        // withdrawal always rotates first, so every later one was made inside the window.
        // Acquire: pairs with the Release store in `rotate`.
        let w_base = self.slots[((epoch + 1) % SLOTS as u64) as usize].load(Ordering::Acquire);
        let earned = self
            .deposited(epoch)
            .saturating_mul(self.deposit)
            .saturating_add(self.reserve);
        // Relaxed: the CAS below re-checks against the value it replaces.
        let mut w = self.withdrawn.load(Ordering::Relaxed);
        loop {
            let spent = w.saturating_sub(w_base);
            if earned < spent.saturating_add(1).saturating_mul(SCALE) {
                // Relaxed: a statistic, read on its own.
                self.exhausted.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            // Relaxed: withdrawals are totally ordered on this one counter, and each success
            // was checked against exactly the count it replaced, so none can overdraw.
            match self.withdrawn.compare_exchange_weak(
                w,
                w + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => w = actual,
            }
        }
    }
}

impl RetryBudget {
    /// A budget with the defaults (see `# Defaults`).
    pub fn new() -> Self {
        // The defaults are valid, so this never takes the error branch.
        RetryBudgetBuilder::new()
            .build()
            .unwrap_or_else(|_| unreachable!("the default retry budget is valid"))
    }

    /// A builder holding the defaults.
    pub const fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::new()
    }

    /// Record one request. Lock-free: a clock read, then a store to this thread's own stripe
    /// (or a compare-and-swap on a shared one), in the slot of the current time.
    #[inline]
    pub fn deposit(&self) {
        self.deposit_on(self.inner.stripe_of(token()));
    }

    #[inline]
    fn deposit_on(&self, stripe: usize) {
        let clock = self.inner.clock;
        self.inner.deposit_dated(stripe, || clock.now());
    }

    /// A deposit at `now` that always reads the clock (exact dating).
    #[cfg(test)]
    pub(crate) fn deposit_at(&self, now: u64) {
        self.inner.deposit_at(self.inner.stripe_of(token()), now);
    }

    /// A deposit as [`RetryBudget::deposit`] makes it, the clock reading `now` when read.
    #[cfg(test)]
    pub(crate) fn deposit_dated_at(&self, now: u64) {
        self.inner
            .deposit_dated(self.inner.stripe_of(token()), || now);
    }

    /// Deposit for one request and return this thread's handle, for a later withdrawal.
    #[inline]
    pub(crate) fn deposit_and_handle(&self) -> BudgetHandle {
        let stripe = self.inner.stripe_of(token());
        self.deposit_on(stripe);
        // `handles` has one entry per stripe.
        BudgetHandle(self.handles[stripe].clone())
    }

    /// Take one retry from the budget: `true` if allowed. A refusal is counted in
    /// [`exhausted`](RetryBudget::exhausted).
    pub fn try_withdraw(&self) -> bool {
        self.inner.try_withdraw_at(self.inner.clock.now())
    }

    #[cfg(test)]
    pub(crate) fn try_withdraw_at(&self, now: u64) -> bool {
        self.inner.try_withdraw_at(now)
    }

    /// How many retries were refused because the budget was empty, since it was created.
    pub fn exhausted(&self) -> u64 {
        // Relaxed: a statistic.
        self.inner.exhausted.load(Ordering::Relaxed)
    }

    /// How long a deposit or a withdrawal counts.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The floor of retries per second.
    pub fn min_retries_per_sec(&self) -> u32 {
        self.inner.min_retries_per_sec
    }

    /// The share of requests that may be retried on top of the floor.
    pub fn retry_ratio(&self) -> f64 {
        self.inner.retry_ratio
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new()
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ttl", &self.inner.ttl)
            .field("min_retries_per_sec", &self.inner.min_retries_per_sec)
            .field("retry_ratio", &self.inner.retry_ratio)
            .field("exhausted", &self.exhausted())
            .finish()
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    fn budget(ttl_secs: u64, min: u32, ratio: f64) -> RetryBudget {
        RetryBudget::builder()
            .ttl(Duration::from_secs(ttl_secs))
            .min_retries_per_sec(min)
            .retry_ratio(ratio)
            .build()
            .unwrap()
    }

    #[test]
    fn floor_then_ratio() {
        let b = budget(10, 1, 0.5);
        // Floor: 1/s over 10 s.
        for _ in 0..10 {
            assert!(b.try_withdraw_at(0));
        }
        assert!(!b.try_withdraw_at(0));
        assert_eq!(b.exhausted(), 1);
        // Two requests earn one retry.
        b.deposit_at(0);
        assert!(!b.try_withdraw_at(0));
        b.deposit_at(0);
        assert!(b.try_withdraw_at(0));
        assert!(!b.try_withdraw_at(0));
        assert_eq!(b.exhausted(), 3);
    }

    #[test]
    fn withdrawals_and_deposits_expire_after_ttl() {
        let b = budget(10, 1, 1.0);
        for _ in 0..10 {
            assert!(b.try_withdraw_at(0));
        }
        assert!(!b.try_withdraw_at(9 * SEC));
        // The window no longer holds epoch 0: the floor is back.
        assert!(b.try_withdraw_at(10 * SEC));
        b.deposit_at(10 * SEC);
        assert!(b.try_withdraw_at(10 * SEC));
    }

    #[test]
    fn handles_share_the_budget_and_outlive_it() {
        let b = budget(10, 1, 0.0);
        let handles: Vec<_> = (0..b.handles.len())
            .map(|i| BudgetHandle(b.handles[i].clone()))
            .collect();
        let mine = b.deposit_and_handle();
        drop(b);
        // The floor is 10 retries per 10 s, whichever handle takes them.
        let won = handles
            .iter()
            .chain(std::iter::once(&mine))
            .cycle()
            .take(20)
            .filter(|h| h.try_withdraw())
            .count();
        assert_eq!(won, 10);
        assert_eq!(mine.0.inner.exhausted.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn bad_config_names_the_field() {
        let e = RetryBudget::builder()
            .ttl(Duration::from_millis(10))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "ttl");
        let e = RetryBudget::builder()
            .retry_ratio(f64::NAN)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "retry_ratio");
        let e = RetryBudget::builder()
            .retry_ratio(-0.1)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "retry_ratio");
    }

    #[test]
    fn deposits_from_many_threads_are_all_counted() {
        let b = budget(10, 0, 1.0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        b.deposit_at(0);
                    }
                });
            }
        });
        assert_eq!(b.inner.deposited(0), 4000);
    }

    #[test]
    fn the_first_threads_own_a_stripe_and_the_rest_share() {
        let b = budget(10, 0, 1.0);
        let inner = &b.inner;
        assert!(inner.owned >= 2 && inner.owned <= MAX_OWNED);
        assert!((inner.shared_mask + 1).is_power_of_two());
        assert_eq!(inner.stripes.len(), inner.owned + inner.shared_mask + 1);
        assert_eq!(b.handles.len(), inner.stripes.len());
        for token in 0..inner.owned {
            assert_eq!(inner.stripe_of(token), token);
        }
        for token in inner.owned..inner.owned + 100 {
            let stripe = inner.stripe_of(token);
            assert!(
                (inner.owned..inner.stripes.len()).contains(&stripe),
                "{token} -> {stripe}"
            );
        }
        assert!(inner.stripe_of(usize::MAX) < inner.stripes.len());
    }

    // The owned stripes' plain store (no CAS) keeps every deposit of their owner, and the
    // shared stripes' CAS every deposit of the threads sharing them, all at once.
    #[test]
    fn owned_and_shared_stripes_count_every_deposit() {
        let b = budget(10, 0, 1.0);
        let inner = &b.inner;
        let owned = inner.owned;
        std::thread::scope(|s| {
            // One thread per owned stripe (as if it held that token), and four on one shared
            // stripe.
            for token in (0..owned).chain([owned; 4]) {
                s.spawn(move || {
                    for _ in 0..1000 {
                        inner.deposit_at(inner.stripe_of(token), 0);
                    }
                });
            }
        });
        assert_eq!(inner.deposited(0), 1000 * (owned as u64 + 4));
    }

    #[test]
    fn an_owned_stripe_rolls_its_slots_with_time() {
        let b = budget(10, 0, 1.0);
        let inner = &b.inner;
        inner.deposit_at(0, 0);
        inner.deposit_at(0, 0);
        assert_eq!(inner.deposited(0), 2);
        // Epoch 10 lands in epoch 0's slot: the old count is replaced, not added to.
        inner.deposit_at(0, 10 * SEC);
        assert_eq!(inner.deposited(0), 0);
        assert_eq!(inner.deposited(10), 1);
        // A deposit dated before the slot's epoch has expired and is dropped.
        inner.deposit_at(0, 0);
        assert_eq!(inner.deposited(10), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Deposit,
        Withdraw,
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Deposit),
            4 => Just(Op::Withdraw),
            1 => (0u64..3_000).prop_map(|ms| Op::Advance(ms * 1_000_000)),
            // Quiet spells longer than the ttl.
            1 => (0u64..40_000).prop_map(|ms| Op::Advance(ms * 1_000_000)),
        ]
    }

    // Regression (issue 10 #3): deposits did not rotate the window, and a rotation after a gap
    // filled the skipped slots with the current totals, so the deposits made since the last
    // withdrawal were taken for old: 1 000 fresh requests earned no retry.
    #[test]
    fn deposits_after_a_quiet_spell_count_at_once() {
        let b = budget(10, 0, 0.2);
        assert!(!b.try_withdraw_at(0));
        for _ in 0..1000 {
            b.deposit_at(30 * SEC);
        }
        let granted = (0..1000)
            .filter(|_| b.try_withdraw_at(30 * SEC + SEC / 10))
            .count();
        assert_eq!(granted, 200);
        // And they expire a ttl later.
        assert!(!b.try_withdraw_at(40 * SEC));
    }

    // Deposits dated to the stripe's last clock reading (`CLOCK_EVERY`): after a quiet spell
    // at most `CLOCK_EVERY - 1` of them are dated before it and lost; the rest count at once.
    #[test]
    fn dated_deposits_after_a_quiet_spell_lose_at_most_clock_every_minus_one() {
        let b = budget(10, 0, 1.0);
        b.deposit_dated_at(0);
        for _ in 0..1000 {
            b.deposit_dated_at(30 * SEC);
        }
        let granted = (0..2000).filter(|_| b.try_withdraw_at(30 * SEC)).count() as u64;
        assert!(granted <= 1000, "{granted}");
        assert!(granted > 1000 - CLOCK_EVERY, "{granted}");
    }

    #[test]
    fn dated_deposits_read_the_clock_once_per_clock_every() {
        let b = budget(10, 0, 1.0);
        let reads = std::cell::Cell::new(0u64);
        let stripe = b.inner.stripe_of(token());
        for _ in 0..8 * CLOCK_EVERY {
            b.inner.deposit_dated(stripe, || {
                reads.set(reads.get() + 1);
                0
            });
        }
        assert_eq!(reads.get(), 8);
        assert_eq!(b.inner.deposited(0), 8 * CLOCK_EVERY);
    }

    /// The documented rule, written as plainly as it reads: a retry asked for at epoch `e` (a
    /// tenth of `ttl`) is granted while, over epochs `e - 9 ..= e`,
    /// `(retries + 1) <= min * ttl + ratio * requests` (in thousandths, as the budget counts).
    struct Model {
        reserve: u64,
        deposit: u64,
        deposits: Vec<u64>,
        withdrawals: Vec<u64>,
        exhausted: u64,
    }

    impl Model {
        fn withdraw(&mut self, epoch: u64) -> bool {
            let oldest = epoch.saturating_sub(SLOTS as u64 - 1);
            let in_window = |epochs: &[u64]| epochs.iter().filter(|&&e| e >= oldest).count() as u64;
            let earned = self.reserve + in_window(&self.deposits) * self.deposit;
            if earned >= (in_window(&self.withdrawals) + 1) * SCALE {
                self.withdrawals.push(epoch);
                true
            } else {
                self.exhausted += 1;
                false
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::default())]

        #[test]
        fn budget_matches_the_documented_rule(
            min in 0u32..3,
            ratio in prop_oneof![Just(0.0), Just(0.2), Just(0.5), Just(1.0)],
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let b = budget(10, min, ratio);
            let mut model = Model {
                reserve: u64::from(min) * 10_000,
                deposit: (ratio * 1000.0) as u64,
                deposits: Vec::new(),
                withdrawals: Vec::new(),
                exhausted: 0,
            };
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Deposit => {
                        b.deposit_at(now);
                        model.deposits.push(now / SEC);
                    }
                    Op::Withdraw => {
                        let expected = model.withdraw(now / SEC);
                        prop_assert_eq!(b.try_withdraw_at(now), expected);
                    }
                    Op::Advance(ns) => now += ns,
                }
            }
            prop_assert_eq!(b.exhausted(), model.exhausted);
        }

        // Deposits as `deposit()` makes them (the clock read once per `CLOCK_EVERY`): dated
        // early at worst, so every retry granted keeps the documented rule against the true
        // deposits, `retries + 1 <= min * ttl + ratio * requests` over the last ttl.
        #[test]
        fn dated_deposits_keep_the_documented_rule(
            min in 0u32..3,
            ratio in prop_oneof![Just(0.0), Just(0.2), Just(0.5), Just(1.0)],
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let b = budget(10, min, ratio);
            let reserve = u64::from(min) * 10_000;
            let deposit = (ratio * 1000.0) as u64;
            let mut deposits = Vec::new();
            let mut granted = Vec::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Deposit => {
                        b.deposit_dated_at(now);
                        deposits.push(now / SEC);
                    }
                    Op::Withdraw => {
                        if b.try_withdraw_at(now) {
                            let epoch = now / SEC;
                            granted.push(epoch);
                            let oldest = epoch.saturating_sub(SLOTS as u64 - 1);
                            let within = |epochs: &[u64]| {
                                epochs.iter().filter(|&&e| e >= oldest).count() as u64
                            };
                            prop_assert!(
                                within(&granted) * SCALE <= reserve + within(&deposits) * deposit,
                                "granted {} at epoch {} with {} deposits in the window",
                                within(&granted),
                                epoch,
                                within(&deposits)
                            );
                        }
                    }
                    Op::Advance(ns) => now += ns,
                }
            }
        }
    }
}

#[cfg(all(test, harden_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::loom_model;
    use loom::thread;

    fn budget(min: u32, ratio: f64) -> RetryBudget {
        RetryBudget::builder()
            .ttl(Duration::from_secs(1))
            .min_retries_per_sec(min)
            .retry_ratio(ratio)
            .build()
            .unwrap()
    }

    /// Withdraws until the budget refuses; how many it granted.
    fn spend_all(b: &RetryBudget) -> usize {
        std::iter::from_fn(|| b.try_withdraw_at(0).then_some(())).count()
    }

    #[test]
    fn loom_concurrent_withdrawals_never_exceed_the_balance() {
        loom_model(|| {
            // Reserve of 2 retries, no deposits: three racing withdrawals, exactly two succeed.
            let b = budget(2, 0.0);
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let b = b.clone();
                    thread::spawn(move || b.try_withdraw_at(0))
                })
                .collect();
            let mine = b.try_withdraw_at(0);
            let won = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&w| w)
                .count()
                + usize::from(mine);
            assert_eq!(won, 2);
            assert_eq!(b.exhausted(), 1);
        });
    }

    #[test]
    fn loom_withdrawals_racing_deposits_spend_only_what_was_deposited() {
        loom_model(|| {
            // No reserve; each request earns one retry.
            let b = budget(0, 1.0);
            let depositor = {
                let b = b.clone();
                thread::spawn(move || {
                    b.deposit_at(0);
                    b.deposit_at(0);
                })
            };
            let spender = {
                let b = b.clone();
                thread::spawn(move || {
                    usize::from(b.try_withdraw_at(0)) + usize::from(b.try_withdraw_at(0))
                })
            };
            let mine = usize::from(b.try_withdraw_at(0));
            depositor.join().unwrap();
            let spent = spender.join().unwrap() + mine;
            assert!(spent <= 2);
            // Deposits are not lost: after the race, whatever was not spent is still there.
            let more = spend_all(&b);
            assert_eq!(spent + more, 2);
        });
    }

    #[test]
    fn loom_deposits_are_not_lost() {
        loom_model(|| {
            let b = budget(0, 1.0);
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let b = b.clone();
                    thread::spawn(move || {
                        b.deposit_at(0);
                        b.deposit_at(0);
                    })
                })
                .collect();
            b.deposit_at(0);
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(b.inner.deposited(0), 5);
        });
    }

    // The deposit slots (issue 10 #3): a deposit racing one a whole ttl later into the same
    // slot either lands before it (and is replaced) or is dropped as expired; never both kept.
    #[test]
    fn loom_deposits_across_a_slot_turnover_keep_only_the_newer_epoch() {
        loom_model(|| {
            // ttl 1 s: epochs of 100 ms; epochs 0 and 10 share slot 0.
            let b = budget(0, 1.0);
            let old = {
                let b = b.clone();
                thread::spawn(move || b.deposit_at(0))
            };
            b.deposit_at(1_000_000_000);
            let spent = usize::from(b.try_withdraw_at(1_000_000_000));
            old.join().unwrap();
            assert_eq!(b.inner.deposited(10), 1);
            assert_eq!(b.inner.deposited(0), 0, "slot 0 holds epoch 10 now");
            assert_eq!(spent, 1);
        });
    }

    // Owned stripes (issue 14): their owner deposits with a plain store. The owner and a thread
    // on the shared stripe deposit while a third withdraws: no deposit is lost and the
    // withdrawals never spend more than was deposited.
    #[test]
    fn loom_owned_stripes_lose_no_deposit_and_never_overdraw() {
        loom_model(|| {
            let b = budget(0, 1.0);
            assert_eq!(b.inner.stripe_of(0), 0, "token 0 owns stripe 0");
            let owner = {
                let b = b.clone();
                thread::spawn(move || {
                    b.inner.deposit_at(0, 0);
                    b.inner.deposit_at(0, 0);
                })
            };
            let sharer = {
                let b = b.clone();
                thread::spawn(move || b.deposit_at(0))
            };
            let spent = usize::from(b.try_withdraw_at(0)) + usize::from(b.try_withdraw_at(0));
            owner.join().unwrap();
            sharer.join().unwrap();
            assert!(spent <= 2);
            assert_eq!(b.inner.deposited(0), 3);
            let more = spend_all(&b);
            assert_eq!(spent + more, 3);
        });
    }

    // Dated deposits (issue 14) on the shared stripe: two threads take the fast path's CAS at
    // once (the loser falls back to the full path) while a third withdraws: none is lost.
    #[test]
    fn loom_dated_deposits_on_a_shared_stripe_are_not_lost() {
        loom_model(|| {
            let b = budget(0, 1.0);
            // The first deposit of the slot reads the clock; the next ones take the fast path.
            b.deposit_dated_at(0);
            let others: Vec<_> = (0..2)
                .map(|_| {
                    let b = b.clone();
                    thread::spawn(move || b.deposit_dated_at(0))
                })
                .collect();
            let spent = usize::from(b.try_withdraw_at(0));
            for o in others {
                o.join().unwrap();
            }
            assert_eq!(b.inner.deposited(0), 3);
            let more = spend_all(&b);
            assert_eq!(spent + more, 3);
        });
    }

    #[test]
    fn loom_rotation_racing_a_withdrawal_never_overdraws() {
        loom_model(|| {
            // ttl 1 s: epochs of 100 ms. Reserve of 1 retry per window.
            let b = budget(1, 0.0);
            let other = {
                let b = b.clone();
                thread::spawn(move || b.try_withdraw_at(100_000_000))
            };
            let mine = b.try_withdraw_at(100_000_000);
            let theirs = other.join().unwrap();
            assert_eq!(usize::from(mine) + usize::from(theirs), 1);
        });
    }
}
