//! A lock-free retry budget in the style of Finagle, linkerd and Envoy.

use std::fmt;
use std::time::Duration;

use crate::clock::{duration_to_nanos, Clock};
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
/// Deposits sit on every request's path: they go to per-thread striped counters (like Java's
/// `LongAdder`), take no lock and never read the clock. Withdrawals read the clock and win a
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
        let inner = Arc::new(Inner {
            stripes: (0..stripe_count())
                .map(|_| Stripe(AtomicU64::new(0)))
                .collect(),
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
    /// Cumulative deposits, striped per thread; a stripe is never reset.
    stripes: Box<[Stripe]>,
    /// Cumulative withdrawals; only ever moved by a successful compare-and-swap.
    withdrawn: AtomicU64,
    /// Withdrawals refused.
    exhausted: AtomicU64,
    /// The newest epoch (`now / slot_nanos`) whose snapshot is written.
    last_epoch: AtomicU64,
    /// `slots[e % SLOTS]`: (deposits, withdrawals) as `u32`s, wrapping, seen first in epoch `e`.
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

/// A counter alone on its cache line (128 bytes: adjacent-line prefetch pairs lines on x86).
#[repr(align(128))]
struct Stripe(AtomicU64);

#[cfg(not(harden_loom))]
fn stripe_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .next_power_of_two()
        .min(64)
}

#[cfg(harden_loom)]
fn stripe_count() -> usize {
    2
}

/// This thread's stripe number, handed out once per thread.
#[inline]
fn thread_stripe() -> usize {
    // NOTE: std atomics on purpose: this counter only spreads threads over stripes and is not part
    // of any loom model (under loom every model thread shares one OS thread, hence one stripe).
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        // Relaxed: only uniqueness of the handed-out numbers matters, which any ordering gives.
        static STRIPE: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

#[inline]
fn pack(deposits: u32, withdrawals: u32) -> u64 {
    (u64::from(deposits) << 32) | u64::from(withdrawals)
}

#[inline]
fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// `now - then` of two wrapping counters; a negative difference (a stale read) counts as 0.
#[inline]
fn since(now: u32, then: u32) -> u64 {
    let d = now.wrapping_sub(then);
    if d > u32::MAX / 2 {
        0
    } else {
        u64::from(d)
    }
}

impl Inner {
    fn deposited(&self) -> u64 {
        self.stripes.iter().fold(0u64, |sum, s| {
            // Relaxed: a sum older than the truth only lowers the balance (never overdraws).
            sum.wrapping_add(s.0.load(Ordering::Relaxed))
        })
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
        // Relaxed: per-location coherence keeps these no older than any earlier snapshot.
        let snap = pack(
            self.deposited() as u32,
            self.withdrawn.load(Ordering::Relaxed) as u32,
        );
        let first = (last + 1).max(epoch.saturating_sub(SLOTS as u64 - 1));
        for e in first..=epoch {
            // Release: whoever reads this snapshot then reads counters no older than it.
            self.slots[(e % SLOTS as u64) as usize].store(snap, Ordering::Release);
        }
        epoch
    }

    fn try_withdraw_at(&self, now: u64) -> bool {
        let epoch = self.rotate(now / self.slot_nanos);
        // The snapshot taken first in the window's oldest epoch, `epoch - (SLOTS - 1)`.
        // Acquire: pairs with the Release store in `rotate`.
        let base = self.slots[((epoch + 1) % SLOTS as u64) as usize].load(Ordering::Acquire);
        let (d_base, w_base) = unpack(base);
        let earned = since(self.deposited() as u32, d_base)
            .saturating_mul(self.deposit)
            .saturating_add(self.reserve);
        // Relaxed: the CAS below re-checks against the value it replaces.
        let mut w = self.withdrawn.load(Ordering::Relaxed);
        loop {
            let spent = since(w as u32, w_base);
            if earned < spent.saturating_add(1).saturating_mul(SCALE) {
                // Relaxed: a statistic, read on its own.
                self.exhausted.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            // Relaxed: withdrawals are totally ordered on this one counter, and each success
            // was checked against exactly the count it replaced, so none can overdraw.
            match self.withdrawn.compare_exchange_weak(
                w,
                w.wrapping_add(1),
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

    /// Record one request. Lock-free, no clock read: one add to this thread's stripe.
    #[inline]
    pub fn deposit(&self) {
        self.deposit_on(thread_stripe() & (self.inner.stripes.len() - 1));
    }

    #[inline]
    fn deposit_on(&self, stripe: usize) {
        // Relaxed: a counter; readers tolerate a stale (smaller) sum, which only lowers the balance.
        self.inner.stripes[stripe].0.fetch_add(1, Ordering::Relaxed);
    }

    /// Deposit for one request and return this thread's handle, for a later withdrawal.
    #[inline]
    pub(crate) fn deposit_and_handle(&self) -> BudgetHandle {
        let stripe = thread_stripe() & (self.inner.stripes.len() - 1);
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
        b.deposit();
        assert!(!b.try_withdraw_at(0));
        b.deposit();
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
        b.deposit();
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
                        b.deposit();
                    }
                });
            }
        });
        assert_eq!(b.inner.deposited(), 4000);
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
        ]
    }

    /// The sequential model: every withdrawal attempt reads the clock; the window of a check at
    /// epoch `e` starts at the first clock read (creation or a check) at an epoch `>= e - 9`, and
    /// counts the deposits and withdrawals made since that read.
    struct Model {
        reserve: u64,
        deposit: u64,
        deposits: u64,
        withdrawals: u64,
        exhausted: u64,
        reads: Vec<(u64, u64, u64)>,
    }

    impl Model {
        fn withdraw(&mut self, epoch: u64) -> bool {
            self.reads.push((epoch, self.deposits, self.withdrawals));
            let start = epoch.saturating_sub(SLOTS as u64 - 1);
            let &(_, d0, w0) = self.reads.iter().find(|r| r.0 >= start).unwrap();
            let earned = self.reserve + (self.deposits - d0) * self.deposit;
            if earned >= (self.withdrawals - w0 + 1) * SCALE {
                self.withdrawals += 1;
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
        fn budget_matches_sequential_model(
            min in 0u32..3,
            ratio in prop_oneof![Just(0.0), Just(0.2), Just(0.5), Just(1.0)],
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let b = budget(10, min, ratio);
            let mut model = Model {
                reserve: u64::from(min) * 10_000,
                deposit: (ratio * 1000.0) as u64,
                deposits: 0,
                withdrawals: 0,
                exhausted: 0,
                reads: vec![(0, 0, 0)],
            };
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Deposit => {
                        b.deposit();
                        model.deposits += 1;
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
    }
}

#[cfg(all(test, harden_loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    fn budget(min: u32, ratio: f64) -> RetryBudget {
        RetryBudget::builder()
            .ttl(Duration::from_secs(1))
            .min_retries_per_sec(min)
            .retry_ratio(ratio)
            .build()
            .unwrap()
    }

    #[test]
    fn loom_concurrent_withdrawals_never_exceed_the_balance() {
        loom::model(|| {
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
        loom::model(|| {
            // No reserve; each request earns one retry.
            let b = budget(0, 1.0);
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
            let mut more = 0;
            while b.try_withdraw_at(0) {
                more += 1;
            }
            assert_eq!(spent + more, 2);
        });
    }

    #[test]
    fn loom_deposits_are_not_lost() {
        loom::model(|| {
            let b = budget(0, 1.0);
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

    #[test]
    fn loom_rotation_racing_a_withdrawal_never_overdraws() {
        loom::model(|| {
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
