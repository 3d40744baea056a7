//! A lock-free retry budget: a token bucket fed by requests and by time, holding at most a
//! small burst, so retries follow the current load rather than a window's sum.

use std::fmt;

use crate::clock::Clock;
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::ConfigError;

/// Default floor: tokens added per second whatever the traffic, 10.
pub const DEFAULT_MIN_RETRIES_PER_SEC: u32 = 10;
/// Default share of requests that may be retried on top of the floor: 0.2 (20 %).
pub const DEFAULT_RETRY_RATIO: f64 = 0.2;
/// Default burst: the most tokens the budget saves up, 10.
pub const DEFAULT_BURST: u32 = 10;

/// Largest accepted `retry_ratio` (1000 %).
const MAX_RATIO: f64 = 10.0;
/// Largest accepted `min_retries_per_sec`; it keeps the floor's running total below a tenth of
/// the clock's reading, so it never overflows (see [`Inner::floor_at`]).
const MAX_MIN_RETRIES_PER_SEC: u32 = 100_000;
/// Largest accepted `burst`.
const MAX_BURST: u32 = 100_000;
/// Fixed-point scale of tokens: one retry costs `SCALE`, one request earns `ratio * SCALE`.
const SCALE: u64 = 1000;

/// A budget that caps how many retries a client makes, shared by every clone.
///
/// **The rule**: every request adds `retry_ratio` of a token, every second adds
/// `min_retries_per_sec` tokens, the budget holds at most `burst` tokens, and a retry spends one
/// (or is refused).
///
/// **What that guarantees**: over any span of `T` seconds,
/// `retries <= retry_ratio * requests in that span + min_retries_per_sec * T + burst`, because
/// the balance is never more than `burst` when the span starts and tokens come only from the
/// span's requests and its seconds. With the defaults, in any one second retries add at most 20 %
/// of that second's requests plus 20 (the floor of 10 and a burst of 10). A healthy spell saves
/// up no more than `burst`, so when an outage starts at most `burst` retries go out at once and
/// from then on retries follow the current request rate: there is no allowance left over from a
/// window to spend in a burst, and none that comes back later while the upstream is still down.
/// The floor lets a quiet client still retry now and then. Tokens beyond `burst` are dropped,
/// so requests made in one batch that fail together earn at most `burst` retries at once: raise
/// `burst` for callers that send in large batches.
///
/// A request counts once ([`deposit`](RetryBudget::deposit), made by the retry layer for every
/// call, not for retries); a retry counts when it is asked for
/// ([`try_withdraw`](RetryBudget::try_withdraw)).
///
/// Deposits sit on every request's path: each is one increment of a per-thread striped counter
/// (like Java's `LongAdder`), with no clock read and no lock. The first threads to use harden
/// (twice as many as the machine has cores, at most 64) each own a stripe no other thread writes,
/// so their deposit is a plain load and store, no locked instruction; the other threads share a
/// few stripes and deposit with an atomic add. Withdrawals are rare (one per retry) and do the
/// work: sum the stripes, claim the deposits no withdrawal has credited yet (a compare-and-swap
/// on one counter, so each deposit is credited once), then credit them and the time since and
/// spend a token in one compare-and-swap on the bucket's word, so concurrent retries never
/// overdraw. A deposit counts from the first withdrawal that sees it; a withdrawal racing the
/// one crediting a deposit may not see it yet (it is refused, never granted too much).
///
/// Every counter holds for the clock's whole range: deposit counts wrap and are compared by
/// difference, the floor's running total stays below a tenth of the clock's reading, and the
/// bucket's word stays within `burst` of it.
///
/// Cloning is cheap (an `Arc`); every clone, and every layer and service made with it, shares
/// one budget.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | `min_retries_per_sec` | [`DEFAULT_MIN_RETRIES_PER_SEC`] = 10, accepted [0, 100 000] |
/// | `retry_ratio` | [`DEFAULT_RETRY_RATIO`] = 0.2, accepted [0, 10] |
/// | `burst` | [`DEFAULT_BURST`] = 10, accepted [0, 100 000] (0 refuses every retry) |
///
/// A new budget starts full (`burst` tokens).
///
/// ```
/// use harden::retry::RetryBudget;
///
/// let budget = RetryBudget::builder()
///     .min_retries_per_sec(1)
///     .retry_ratio(0.1)
///     .burst(2)
///     .build()?;
/// // A new budget holds `burst` tokens; a third retry at once is refused.
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw());
/// // Ten requests earn one more.
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.try_withdraw());
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
    min_retries_per_sec: u32,
    retry_ratio: f64,
    burst: u32,
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
            min_retries_per_sec: DEFAULT_MIN_RETRIES_PER_SEC,
            retry_ratio: DEFAULT_RETRY_RATIO,
            burst: DEFAULT_BURST,
        }
    }

    /// Tokens added every second whatever the traffic (the floor); accepted [0, 100 000].
    pub const fn min_retries_per_sec(mut self, n: u32) -> Self {
        self.min_retries_per_sec = n;
        self
    }

    /// Tokens added by each request, e.g. 0.2 to allow 20 % extra load; accepted [0, 10].
    pub const fn retry_ratio(mut self, ratio: f64) -> Self {
        self.retry_ratio = ratio;
        self
    }

    /// The most tokens the budget holds: how many retries may go out at once on top of the
    /// rates; accepted [0, 100 000], and 0 refuses every retry.
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Validate and create the budget.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `min_retries_per_sec`, `retry_ratio` or `burst` when outside the
    /// accepted range.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        if self.min_retries_per_sec > MAX_MIN_RETRIES_PER_SEC {
            return Err(ConfigError::new(
                "min_retries_per_sec",
                format!("{} is outside [0, 100000]", self.min_retries_per_sec),
            ));
        }
        if !(0.0..=MAX_RATIO).contains(&self.retry_ratio) {
            return Err(ConfigError::new(
                "retry_ratio",
                format!("{} is outside [0, 10]", self.retry_ratio),
            ));
        }
        if self.burst > MAX_BURST {
            return Err(ConfigError::new(
                "burst",
                format!("{} is outside [0, 100000]", self.burst),
            ));
        }
        let (owned, shared) = stripe_counts();
        let inner = Arc::new(Inner {
            stripes: (0..owned + shared).map(|_| Stripe::new()).collect(),
            owned,
            shared_mask: shared - 1,
            credited: AtomicU64::new(0),
            level: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            clock: Clock::new(),
            // 0 <= ratio <= 10 was checked above: the product fits easily.
            deposit: (self.retry_ratio * SCALE as f64).round() as u64,
            min_per_sec: u64::from(self.min_retries_per_sec),
            burst: u64::from(self.burst) * SCALE,
            min_retries_per_sec: self.min_retries_per_sec,
            retry_ratio: self.retry_ratio,
            burst_tokens: self.burst,
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

/// The bucket, read lazily: its balance at time `t` (in thousandths of a token) is
/// `floor_at(t) + burst - max(level, floor_at(t))`, where `floor_at(t)` is what the floor has
/// added since the clock's origin. So `level` is the floor's running total at which the bucket
/// would be empty: time raises the balance by raising `floor_at`, a credit lowers `level`
/// (never below `floor_at`, which is the cap: the balance never exceeds `burst`), and a retry
/// raises it by one token.
struct Inner {
    /// Deposits, striped per thread: first the `owned` stripes, one per thread token below
    /// `owned`, each written by that thread only; then the shared ones, for the rest.
    stripes: Box<[Stripe]>,
    /// Stripes owned by one thread each (thread tokens `0..owned`).
    owned: usize,
    /// Shared stripes, minus one (a power of two, minus one).
    shared_mask: usize,
    /// The sum of the stripes (wrapping) up to which deposits are credited to the bucket; only
    /// ever moved by a successful compare-and-swap, so each deposit is credited once.
    credited: AtomicU64,
    /// The bucket's word (see above); only ever moved by a successful compare-and-swap.
    level: AtomicU64,
    /// Withdrawals refused.
    exhausted: AtomicU64,
    clock: Clock,
    /// Thousandths of a token earned by one request.
    deposit: u64,
    /// Tokens added per second.
    min_per_sec: u64,
    /// The most the bucket holds, in thousandths of a token.
    burst: u64,
    min_retries_per_sec: u32,
    retry_ratio: f64,
    burst_tokens: u32,
}

/// The most stripes owned by one thread each: twice the cores, up to 64 (the first threads to
/// use harden get them; see [`Inner::stripe_of`]).
#[cfg_attr(harden_loom, allow(dead_code))]
const MAX_OWNED: usize = 64;
/// The most stripes shared by the threads that own none.
#[cfg_attr(harden_loom, allow(dead_code))]
const MAX_SHARED: usize = 16;

/// One stripe's deposits, alone on its lines (128 bytes: adjacent-line prefetch pairs lines on
/// x86).
#[repr(align(128))]
struct Stripe {
    /// Deposits made on this stripe since the budget was created, wrapping.
    count: AtomicU64,
}

impl Stripe {
    fn new() -> Stripe {
        Stripe {
            count: AtomicU64::new(0),
        }
    }
}

/// How many stripes a budget has: (owned by one thread each, shared by the others).
#[cfg(not(harden_loom))]
fn stripe_counts() -> (usize, usize) {
    (
        (2 * crate::stripe::count(MAX_OWNED)).min(MAX_OWNED),
        crate::stripe::count(MAX_SHARED),
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
    crate::stripe::thread_token()
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

    /// Count one deposit in `stripe` (from [`Inner::stripe_of`] for the calling thread).
    #[inline]
    fn deposit_on(&self, stripe: usize) {
        let count = &self.stripes[stripe].count;
        if stripe < self.owned {
            // NOTE: only the thread owning this stripe writes it (`stripe_of`), so a plain store
            // after the load loses nothing: no locked instruction on the request path.
            // Relaxed: readers are ordered by nothing but the value itself.
            count.store(
                count.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        } else {
            // Relaxed: the add is atomic; readers are ordered by nothing but the value itself.
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The sum of the stripes, wrapping: deposits made since the budget was created.
    fn deposited(&self) -> u64 {
        self.stripes.iter().fold(0u64, |sum, stripe| {
            // Relaxed: a sum older than the truth only credits later (never overdraws).
            sum.wrapping_add(stripe.count.load(Ordering::Relaxed))
        })
    }

    /// Claim the deposits no withdrawal has credited yet; how many.
    fn claim_deposits(&self) -> u64 {
        let seen = self.deposited();
        // Relaxed: the CAS below re-checks against the value it replaces.
        let mut credited = self.credited.load(Ordering::Relaxed);
        loop {
            let fresh = seen.wrapping_sub(credited);
            // A sum older than one another withdrawal claimed reads as a huge difference: it
            // holds nothing new (fewer than 2^63 deposits ever wait for a withdrawal).
            if fresh == 0 || fresh > u64::MAX / 2 {
                return 0;
            }
            // Relaxed: claims are totally ordered on this one counter, and each moves it from
            // exactly the value it replaces, so no deposit is claimed twice.
            match self.credited.compare_exchange_weak(
                credited,
                seen,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return fresh,
                Err(actual) => credited = actual,
            }
        }
    }

    /// Thousandths of a token the floor has added from the clock's origin to `now`: at most a
    /// tenth of `now` (`min_per_sec <= 100 000`), so it never overflows.
    #[inline]
    fn floor_at(&self, now: u64) -> u64 {
        // min_per_sec * SCALE per 10^9 ns.
        (u128::from(now) * u128::from(self.min_per_sec) / 1_000_000) as u64
    }

    fn try_withdraw_at(&self, now: u64) -> bool {
        let credit = self.claim_deposits().saturating_mul(self.deposit);
        let floor = self.floor_at(now);
        // The balance cap: `level` never below `floor`, so `floor + burst - level <= burst`.
        let full = floor + self.burst;
        // Relaxed: the CAS below re-checks against the value it replaces.
        let mut level = self.level.load(Ordering::Relaxed);
        loop {
            // Credit the claimed deposits and the time since (both capped at `burst`) ...
            let base = level.saturating_sub(credit).max(floor);
            // ... then spend one token if the balance holds one.
            let granted = base + SCALE <= full;
            let next = if granted { base + SCALE } else { base };
            if !granted && credit == 0 {
                // Nothing to write: time is credited again by the next withdrawal.
                break self.refuse();
            }
            // Relaxed: the bucket is this one word; each success replaced exactly the value it
            // judged, so none overdraws, and a claimed credit is written by its claimer alone.
            match self.level.compare_exchange_weak(
                level,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) if granted => break true,
                Ok(_) => break self.refuse(),
                Err(actual) => level = actual,
            }
        }
    }

    #[cold]
    fn refuse(&self) -> bool {
        // Relaxed: a statistic, read on its own.
        self.exhausted.fetch_add(1, Ordering::Relaxed);
        false
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

    /// Record one request. Lock-free and clock-free: a store to this thread's own stripe (or an
    /// atomic add on a shared one).
    #[inline]
    pub fn deposit(&self) {
        self.inner.deposit_on(self.inner.stripe_of(token()));
    }

    /// Deposit for one request and return this thread's handle, for a later withdrawal.
    #[inline]
    pub(crate) fn deposit_and_handle(&self) -> BudgetHandle {
        let stripe = self.inner.stripe_of(token());
        self.inner.deposit_on(stripe);
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

    /// The floor: tokens added per second whatever the traffic.
    pub fn min_retries_per_sec(&self) -> u32 {
        self.inner.min_retries_per_sec
    }

    /// Tokens added by each request.
    pub fn retry_ratio(&self) -> f64 {
        self.inner.retry_ratio
    }

    /// The most tokens the budget holds.
    pub fn burst(&self) -> u32 {
        self.inner.burst_tokens
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
            .field("min_retries_per_sec", &self.inner.min_retries_per_sec)
            .field("retry_ratio", &self.inner.retry_ratio)
            .field("burst", &self.inner.burst_tokens)
            .field("exhausted", &self.exhausted())
            .finish()
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    fn budget(min: u32, ratio: f64, burst: u32) -> RetryBudget {
        RetryBudget::builder()
            .min_retries_per_sec(min)
            .retry_ratio(ratio)
            .burst(burst)
            .build()
            .unwrap()
    }

    /// Withdraws at `now` until the budget refuses; how many it granted.
    fn spend_all(b: &RetryBudget, now: u64) -> u64 {
        std::iter::from_fn(|| b.try_withdraw_at(now).then_some(())).count() as u64
    }

    #[test]
    fn a_new_budget_holds_the_burst() {
        let b = budget(0, 0.0, 3);
        assert_eq!(spend_all(&b, 0), 3);
        assert_eq!(b.exhausted(), 1);
        assert_eq!(
            spend_all(&b, 100 * SEC),
            0,
            "no floor, no requests: nothing more"
        );
        // A burst of 0 holds no token, whatever the rates.
        let b = budget(100, 1.0, 0);
        b.deposit();
        assert_eq!(spend_all(&b, 100 * SEC), 0);
    }

    #[test]
    fn the_floor_refills_per_second_up_to_the_burst() {
        let b = budget(2, 0.0, 4);
        assert_eq!(spend_all(&b, 0), 4);
        // Two tokens a second: one after half a second.
        assert_eq!(spend_all(&b, SEC / 2), 1);
        assert_eq!(spend_all(&b, SEC), 1);
        // A long quiet spell saves at most the burst.
        assert_eq!(spend_all(&b, 3_600 * SEC), 4);
    }

    #[test]
    fn requests_earn_the_ratio() {
        let b = budget(0, 0.5, 10);
        assert_eq!(spend_all(&b, 0), 10);
        b.deposit();
        assert!(!b.try_withdraw_at(0));
        b.deposit();
        assert!(b.try_withdraw_at(0));
        assert!(!b.try_withdraw_at(0));
        assert_eq!(b.exhausted(), 3);
    }

    // The window rule let a healthy spell's requests save up a whole window of retries, spent
    // in a burst as soon as the upstream failed.
    #[test]
    fn a_healthy_spell_saves_at_most_the_burst() {
        let b = budget(10, 0.2, 10);
        for s in 0..10 {
            for _ in 0..1000 {
                b.deposit();
            }
            // Healthy: a retry now and then.
            assert!(b.try_withdraw_at(s * SEC));
        }
        // The outage starts: ten seconds of 1 000 requests saved only the burst.
        assert_eq!(spend_all(&b, 10 * SEC), 10);
        // Then retries follow the requests: 50 more earn 10 ...
        for _ in 0..50 {
            b.deposit();
        }
        assert_eq!(spend_all(&b, 10 * SEC), 10);
        // ... and a batch of 1 000 made at once no more than the burst.
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!(spend_all(&b, 10 * SEC), 10);
    }

    #[test]
    fn handles_share_the_budget_and_outlive_it() {
        let b = budget(0, 0.0, 10);
        let handles: Vec<_> = (0..b.handles.len())
            .map(|i| BudgetHandle(b.handles[i].clone()))
            .collect();
        let mine = b.deposit_and_handle();
        drop(b);
        // The burst is 10 retries, whichever handle takes them.
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
        let e = RetryBudget::builder().burst(100_001).build().unwrap_err();
        assert_eq!(e.field(), "burst");
        let e = RetryBudget::builder()
            .min_retries_per_sec(u32::MAX)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "min_retries_per_sec");
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
        let b = budget(100_000, 10.0, 100_000);
        assert_eq!(
            (b.min_retries_per_sec(), b.retry_ratio(), b.burst()),
            (100_000, 10.0, 100_000)
        );
    }

    #[test]
    fn the_counters_hold_for_the_clock_s_whole_range() {
        // The largest settings at the clock's last reading: the floor's total and the bucket's
        // word stay in range, and the bucket still holds exactly the burst.
        let b = budget(100_000, 10.0, 100_000);
        assert_eq!(spend_all(&b, u64::MAX), 100_000);
        assert!(!b.try_withdraw_at(u64::MAX));
        // Deposit counts wrap: credited and the stripes just below 2^64, then ten more.
        let b = budget(0, 1.0, 100);
        assert_eq!(spend_all(&b, 0), 100);
        let stripe = b.inner.stripe_of(token());
        b.inner.stripes[stripe]
            .count
            .store(u64::MAX - 4, Ordering::Relaxed);
        b.inner.credited.store(u64::MAX - 4, Ordering::Relaxed);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(spend_all(&b, u64::MAX / 2), 10);
    }

    #[test]
    fn deposits_from_many_threads_are_all_counted() {
        let b = budget(0, 1.0, 10);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        b.deposit();
                    }
                });
            }
        });
        assert_eq!(b.inner.deposited(), 4000);
    }

    #[test]
    fn the_first_threads_own_a_stripe_and_the_rest_share() {
        let b = budget(0, 1.0, 10);
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

    // The owned stripes' plain store keeps every deposit of their owner, and the shared
    // stripes' atomic add every deposit of the threads sharing them, all at once.
    #[test]
    fn owned_and_shared_stripes_count_every_deposit() {
        let b = budget(0, 1.0, 10);
        let inner = &b.inner;
        let owned = inner.owned;
        std::thread::scope(|s| {
            // One thread per owned stripe (as if it held that token), and four on one shared
            // stripe.
            for token in (0..owned).chain([owned; 4]) {
                s.spawn(move || {
                    for _ in 0..1000 {
                        inner.deposit_on(inner.stripe_of(token));
                    }
                });
            }
        });
        assert_eq!(inner.deposited(), 1000 * (owned as u64 + 4));
    }

    // Withdrawals on many threads while others deposit (into an emptied budget whose burst
    // is large enough that none is dropped): the grants never exceed what the deposits earned,
    // and once the depositors are done every token not granted is still there.
    #[test]
    fn racing_withdrawals_never_overdraw() {
        let b = budget(0, 1.0, 100_000);
        assert_eq!(spend_all(&b, 0), 100_000);
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        b.deposit();
                    }
                });
            }
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..3000 {
                        if b.try_withdraw_at(0) {
                            granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let granted = granted.into_inner();
        assert!(granted <= 2000, "{granted}");
        assert_eq!(granted + spend_all(&b, 0), 2000);
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
            2 => (0u64..300).prop_map(|ms| Op::Advance(ms * 1_000_000)),
            // Quiet spells.
            1 => (0u64..40_000).prop_map(|ms| Op::Advance(ms * 1_000_000)),
        ]
    }

    /// The documented rule, written as plainly as it reads, in thousandths of a token as the
    /// budget counts: the balance starts at `burst`; a request adds `ratio`, time adds `min`
    /// a second, neither beyond `burst`; a retry is granted while the balance holds one token,
    /// and spends it.
    struct Model {
        balance: u64,
        burst: u64,
        deposit: u64,
        min: u64,
        now: u64,
    }

    impl Model {
        /// What the floor has added from the clock's origin to `t`, in thousandths.
        fn floor(&self, t: u64) -> u64 {
            (u128::from(t) * u128::from(self.min) * 1000 / 1_000_000_000) as u64
        }
        fn add(&mut self, thousandths: u64) {
            self.balance = (self.balance + thousandths).min(self.burst);
        }
        fn advance(&mut self, ns: u64) {
            let earned = self.floor(self.now + ns) - self.floor(self.now);
            self.now += ns;
            self.add(earned);
        }
        fn withdraw(&mut self) -> bool {
            if self.balance >= 1000 {
                self.balance -= 1000;
                true
            } else {
                false
            }
        }
    }

    fn settings() -> impl Strategy<Value = (u32, f64, u32)> {
        (
            0u32..4,
            prop_oneof![Just(0.0), Just(0.1), Just(0.2), Just(0.5), Just(1.0)],
            1u32..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::default())]

        #[test]
        fn budget_matches_the_documented_rule(
            (min, ratio, burst) in settings(),
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let b = budget(min, ratio, burst);
            let mut model = Model {
                balance: u64::from(burst) * 1000,
                burst: u64::from(burst) * 1000,
                deposit: (ratio * 1000.0).round() as u64,
                min: u64::from(min),
                now: 0,
            };
            let mut refused = 0;
            for op in ops {
                match op {
                    Op::Deposit => {
                        b.deposit();
                        model.add(model.deposit);
                    }
                    Op::Withdraw => {
                        let expected = model.withdraw();
                        refused += u64::from(!expected);
                        prop_assert_eq!(b.try_withdraw_at(model.now), expected);
                    }
                    Op::Advance(ns) => model.advance(ns),
                }
            }
            prop_assert_eq!(b.exhausted(), refused);
        }

        // What the rule guarantees, checked on the budget's grants: over any span from an event
        // to a grant, `retries <= ratio * requests + floor earned + burst`.
        #[test]
        fn retries_over_any_span_stay_within_ratio_floor_and_burst(
            (min, ratio, burst) in settings(),
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let b = budget(min, ratio, burst);
            let deposit = (ratio * 1000.0).round() as u64;
            let floor = |t: u64| (u128::from(t) * u128::from(min) / 1_000_000) as u64;
            // (time, is a grant) of every deposit and grant, in order.
            let mut events: Vec<(u64, bool)> = Vec::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Deposit => {
                        b.deposit();
                        events.push((now, false));
                    }
                    Op::Withdraw => {
                        if b.try_withdraw_at(now) {
                            events.push((now, true));
                            let (mut grants, mut requests) = (0u64, 0u64);
                            for &(t, grant) in events.iter().rev() {
                                if grant { grants += 1 } else { requests += 1 }
                                let allowed = requests * deposit
                                    + (floor(now) - floor(t))
                                    + u64::from(burst) * 1000;
                                prop_assert!(
                                    grants * 1000 <= allowed,
                                    "{} retries and {} requests in {} ns",
                                    grants, requests, now - t
                                );
                            }
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

    fn budget(min: u32, ratio: f64, burst: u32) -> RetryBudget {
        RetryBudget::builder()
            .min_retries_per_sec(min)
            .retry_ratio(ratio)
            .burst(burst)
            .build()
            .unwrap()
    }

    /// Withdraws at `now` until the budget refuses; how many it granted.
    fn spend_all(b: &RetryBudget, now: u64) -> usize {
        std::iter::from_fn(|| b.try_withdraw_at(now).then_some(())).count()
    }

    /// A budget earning one token per request, emptied of its initial burst.
    fn empty_budget() -> RetryBudget {
        let b = budget(0, 1.0, 2);
        assert_eq!(spend_all(&b, 0), 2);
        b
    }

    #[test]
    fn loom_concurrent_withdrawals_never_exceed_the_balance() {
        loom_model(|| {
            // A burst of 2, nothing else: three racing withdrawals, exactly two succeed.
            let b = budget(0, 0.0, 2);
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
            let b = empty_budget();
            let depositor = {
                let b = b.clone();
                thread::spawn(move || {
                    b.deposit();
                    b.deposit();
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
            assert_eq!(spent + spend_all(&b, 0), 2);
        });
    }

    // The claim on `credited`: two withdrawals race to credit the same deposits; each deposit
    // is credited once, so the two never spend more than were made, and none is lost.
    #[test]
    fn loom_racing_claims_credit_each_deposit_once() {
        loom_model(|| {
            let b = empty_budget();
            b.deposit();
            b.deposit();
            let other = {
                let b = b.clone();
                thread::spawn(move || usize::from(b.try_withdraw_at(0)))
            };
            let mine = usize::from(b.try_withdraw_at(0));
            let spent = other.join().unwrap() + mine;
            assert!(spent <= 2);
            assert_eq!(spent + spend_all(&b, 0), 2);
        });
    }

    #[test]
    fn loom_deposits_are_not_lost() {
        loom_model(|| {
            let b = budget(0, 1.0, 10);
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let b = b.clone();
                    thread::spawn(move || {
                        b.deposit();
                        b.deposit();
                    })
                })
                .collect();
            b.deposit();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(b.inner.deposited(), 5);
        });
    }

    // Owned stripes: their owner deposits with a plain store. The owner and a thread on the
    // shared stripe deposit while a third withdraws: no deposit is lost and the withdrawals
    // never spend more than was deposited.
    #[test]
    fn loom_owned_stripes_lose_no_deposit_and_never_overdraw() {
        loom_model(|| {
            let b = budget(0, 1.0, 3);
            assert_eq!(spend_all(&b, 0), 3);
            assert_eq!(b.inner.stripe_of(0), 0, "token 0 owns stripe 0");
            let owner = {
                let b = b.clone();
                thread::spawn(move || {
                    b.inner.deposit_on(0);
                    b.inner.deposit_on(0);
                })
            };
            let sharer = {
                let b = b.clone();
                thread::spawn(move || b.deposit())
            };
            let spent = usize::from(b.try_withdraw_at(0)) + usize::from(b.try_withdraw_at(0));
            owner.join().unwrap();
            sharer.join().unwrap();
            assert!(spent <= 2);
            assert_eq!(b.inner.deposited(), 3);
            assert_eq!(spent + spend_all(&b, 0), 3);
        });
    }

    // The floor: two withdrawals race for the one token a second earned, one credited by
    // whichever wins; a third at an older reading of the clock gets nothing either.
    #[test]
    fn loom_withdrawals_racing_for_the_floor_never_overdraw() {
        loom_model(|| {
            let b = budget(1, 0.0, 1);
            assert_eq!(spend_all(&b, 0), 1);
            let other = {
                let b = b.clone();
                thread::spawn(move || b.try_withdraw_at(1_000_000_000))
            };
            let stale = b.try_withdraw_at(500_000_000);
            let mine = b.try_withdraw_at(1_000_000_000);
            let theirs = other.join().unwrap();
            assert_eq!(
                usize::from(stale) + usize::from(mine) + usize::from(theirs),
                1
            );
            assert!(!stale);
        });
    }
}
