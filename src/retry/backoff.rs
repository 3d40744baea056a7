//! Delays between attempts: shape, jitter and cap.

use std::cell::Cell;
use std::time::Duration;

use crate::clock::duration_to_nanos;
use crate::ConfigError;

/// Default first delay of [`Backoff::new`]: 100 ms.
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(100);
/// Default growth factor of [`Backoff::new`]: 2.
pub const DEFAULT_MULTIPLIER: f64 = 2.0;
/// Default cap on every delay: 10 s.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(10);
/// Default jitter: [`Jitter::Full`].
pub const DEFAULT_JITTER: Jitter = Jitter::Full;

/// Largest accepted exponential multiplier.
const MAX_MULTIPLIER: f64 = 1000.0;

/// How randomness spreads the delays, so that clients failing together do not retry together.
///
/// With `d` the shape's delay for this retry (already capped by `max_delay`):
/// - `None`: exactly `d`;
/// - `Full` (AWS "full jitter"): uniform in `[0, d]`;
/// - `Equal` (AWS "equal jitter"): uniform in `[d/2, d]`;
/// - `Decorrelated` (AWS "decorrelated jitter"): uniform in `[d, 3 * previous delay]`, so the
///   delays wander upwards from the shape on their own.
///
/// Whatever the jitter, every delay is within `[0, max_delay]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// Uniform in `[d/2, d]`.
    Equal,
    /// Uniform in `[d, 3 * previous delay]`, capped.
    Decorrelated,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Shape {
    Constant(Duration),
    Linear { initial: Duration, step: Duration },
    Exponential { initial: Duration, multiplier: f64 },
}

/// The delay before each retry: a shape (constant, linear, exponential), a [`Jitter`] and a cap.
///
/// Retry `n` (`n = 1` is the second attempt) waits, before jitter:
/// - `constant(d)`: `d`;
/// - `linear(initial, step)`: `initial + (n - 1) * step`;
/// - `exponential(initial, multiplier)`: `initial * multiplier^(n - 1)`;
///
/// then `min(.., max_delay)`. Arithmetic saturates: a huge exponent gives `max_delay`, never a panic.
///
/// # Defaults
///
/// [`Backoff::new`] (also `Default`) is `exponential(`[`DEFAULT_INITIAL_DELAY`]`,
/// `[`DEFAULT_MULTIPLIER`]`)` with [`DEFAULT_JITTER`] (full) and [`DEFAULT_MAX_DELAY`] (10 s);
/// the other constructors also start with that jitter and cap.
///
/// ```
/// use std::time::Duration;
/// use harden::retry::{Backoff, Jitter};
///
/// let backoff = Backoff::exponential(Duration::from_millis(50), 3.0)
///     .jitter(Jitter::None)
///     .max_delay(Duration::from_secs(1));
/// assert_eq!(backoff.delay(1), Duration::from_millis(50));
/// assert_eq!(backoff.delay(3), Duration::from_millis(450));
/// assert_eq!(backoff.delay(4), Duration::from_secs(1)); // 1.35 s, capped
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct Backoff {
    pub(super) shape: Shape,
    jitter: Jitter,
    max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    /// The default backoff (see `# Defaults`).
    pub const fn new() -> Self {
        Backoff::exponential(DEFAULT_INITIAL_DELAY, DEFAULT_MULTIPLIER)
    }

    /// The same delay before every retry.
    pub const fn constant(delay: Duration) -> Self {
        Backoff::with_shape(Shape::Constant(delay))
    }

    /// `initial`, then growing by `step` each retry.
    pub const fn linear(initial: Duration, step: Duration) -> Self {
        Backoff::with_shape(Shape::Linear { initial, step })
    }

    /// `initial`, then multiplied by `multiplier` (accepted [1, 1000]) each retry.
    pub const fn exponential(initial: Duration, multiplier: f64) -> Self {
        Backoff::with_shape(Shape::Exponential {
            initial,
            multiplier,
        })
    }

    const fn with_shape(shape: Shape) -> Self {
        Backoff {
            shape,
            jitter: DEFAULT_JITTER,
            max_delay: DEFAULT_MAX_DELAY,
        }
    }

    /// Set the jitter.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Set the cap on every delay, including server-requested ones.
    pub const fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// The jitter.
    pub const fn jitter_kind(&self) -> Jitter {
        self.jitter
    }

    /// The cap on every delay.
    pub const fn delay_cap(&self) -> Duration {
        self.max_delay
    }

    /// The delay before retry `retry` (1 = before the second attempt) without jitter, capped.
    #[must_use]
    pub fn delay(&self, retry: u32) -> Duration {
        let n = retry.saturating_sub(1);
        let d = match self.shape {
            Shape::Constant(d) => d,
            Shape::Linear { initial, step } => initial.saturating_add(step.saturating_mul(n)),
            // Zero stays zero whatever the growth: 0 * inf would be NaN, taken for "too large".
            Shape::Exponential { initial, .. } if initial.is_zero() => Duration::ZERO,
            Shape::Exponential {
                initial,
                multiplier,
            } => {
                let max = self.max_delay.as_secs_f64();
                let secs =
                    initial.as_secs_f64() * multiplier.powi(i32::try_from(n).unwrap_or(i32::MAX));
                if secs.is_nan() || secs >= max {
                    self.max_delay
                } else if secs <= 0.0 {
                    Duration::ZERO
                } else {
                    Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay)
                }
            }
        };
        d.min(self.max_delay)
    }

    /// The jittered delay before retry `retry`, given the previous delay and a random number.
    pub(crate) fn jittered(&self, retry: u32, previous: Duration, random: u64) -> Duration {
        let d = self.delay(retry);
        let nanos = duration_to_nanos(d);
        if nanos == u64::MAX {
            // Beyond 584 years: not worth jittering, and nanoseconds no longer fit in a u64.
            return d;
        }
        let jittered = match self.jitter {
            Jitter::None => return d,
            Jitter::Full => uniform(0, nanos, random),
            Jitter::Equal => uniform(nanos / 2, nanos, random),
            Jitter::Decorrelated => {
                let prev = if retry <= 1 { d } else { previous };
                let hi = duration_to_nanos(prev.saturating_mul(3).min(self.max_delay));
                uniform(nanos, hi.max(nanos), random)
            }
        };
        Duration::from_nanos(jittered).min(self.max_delay)
    }

    /// A delay the server asked for, capped.
    pub(crate) fn requested(&self, delay: Duration) -> Duration {
        delay.min(self.max_delay)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Shape::Exponential { multiplier, .. } = self.shape {
            if !(1.0..=MAX_MULTIPLIER).contains(&multiplier) {
                return Err(ConfigError::new(
                    "backoff.multiplier",
                    format!("{multiplier} is outside [1, 1000]"),
                ));
            }
        }
        Ok(())
    }
}

/// A number in `[lo, hi]` from 64 random bits, without modulo bias or overflow.
#[inline]
fn uniform(lo: u64, hi: u64, random: u64) -> u64 {
    let span = u128::from(hi - lo) + 1;
    lo + ((u128::from(random) * span) >> 64) as u64
}

/// 64 random bits from a per-thread xorshift64* generator (only read when a retry is made).
pub(crate) fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE
        .try_with(|s| {
            let mut x = s.get();
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            s.set(x);
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        })
        .unwrap_or(0x9E37_79B9_7F4A_7C15)
}

fn seed() -> u64 {
    use std::hash::BuildHasher;
    // RandomState is randomly keyed per process; xorshift must not start at zero.
    std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()) | 1
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn shapes_without_jitter() {
        let c = Backoff::constant(7 * MS).jitter(Jitter::None);
        assert_eq!((1..4).map(|n| c.delay(n)).collect::<Vec<_>>(), [7 * MS; 3]);
        let l = Backoff::linear(10 * MS, 5 * MS).max_delay(22 * MS);
        assert_eq!(
            (1..5).map(|n| l.delay(n)).collect::<Vec<_>>(),
            [10 * MS, 15 * MS, 20 * MS, 22 * MS]
        );
        let e = Backoff::exponential(10 * MS, 2.0).max_delay(50 * MS);
        assert_eq!(
            (1..5).map(|n| e.delay(n)).collect::<Vec<_>>(),
            [10 * MS, 20 * MS, 40 * MS, 50 * MS]
        );
    }

    // A zero initial delay grew to the cap once the multiplier's power overflowed (0 * inf = NaN).
    #[test]
    fn a_zero_initial_delay_stays_zero() {
        let e = Backoff::exponential(Duration::ZERO, 1000.0).jitter(Jitter::None);
        for n in [1, 2, 103, 104, 105, u32::MAX] {
            assert_eq!(e.delay(n), Duration::ZERO, "retry {n}");
        }
        for jitter in [Jitter::Full, Jitter::Equal] {
            let e = Backoff::exponential(Duration::ZERO, 1000.0).jitter(jitter);
            assert_eq!(e.delay(104), Duration::ZERO);
        }
    }

    #[test]
    fn overflow_saturates_to_the_cap() {
        let e = Backoff::exponential(Duration::MAX, 1000.0).max_delay(Duration::MAX);
        assert_eq!(e.delay(u32::MAX), Duration::MAX);
        let l = Backoff::linear(Duration::MAX, Duration::MAX).max_delay(Duration::MAX);
        assert_eq!(l.delay(u32::MAX), Duration::MAX);
        // Invalid multipliers are refused by `build()`, but `delay` must not panic on them either.
        for m in [f64::NAN, -2.0, f64::INFINITY, 0.0] {
            let b = Backoff::exponential(MS, m).max_delay(MS * 5);
            for n in 0..5 {
                assert!(b.delay(n) <= MS * 5);
            }
        }
    }

    #[test]
    fn multiplier_is_validated() {
        assert!(Backoff::new().validate().is_ok());
        let e = Backoff::exponential(MS, 0.5).validate().unwrap_err();
        assert_eq!(e.field(), "backoff.multiplier");
        assert!(Backoff::exponential(MS, f64::NAN).validate().is_err());
    }

    #[test]
    fn uniform_covers_the_ends() {
        assert_eq!(uniform(3, 9, 0), 3);
        assert_eq!(uniform(3, 9, u64::MAX), 9);
        assert_eq!(uniform(0, u64::MAX, u64::MAX), u64::MAX);
    }

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        let dur = (0u64..=u64::MAX).prop_map(Duration::from_nanos);
        let small = (0u64..10_000_000_000).prop_map(Duration::from_nanos);
        let shape = prop_oneof![
            dur.clone().prop_map(Backoff::constant),
            (small.clone(), small.clone()).prop_map(|(i, s)| Backoff::linear(i, s)),
            (small.clone(), 1.0f64..1000.0).prop_map(|(i, m)| Backoff::exponential(i, m)),
            (dur.clone(), 1.0f64..1000.0).prop_map(|(i, m)| Backoff::exponential(i, m)),
        ];
        let jitter = prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
        ];
        let max = prop_oneof![small, dur, Just(Duration::MAX), Just(Duration::ZERO)];
        (shape, jitter, max).prop_map(|(b, j, m)| b.jitter(j).max_delay(m))
    }

    proptest! {
        #![proptest_config(ProptestConfig::default())]

        #[test]
        fn every_jitter_stays_within_zero_and_max_delay(
            backoff in any_backoff(),
            retry in 0u32..200,
            previous in (0u64..=u64::MAX).prop_map(Duration::from_nanos),
            random in any::<u64>(),
        ) {
            let d = backoff.jittered(retry, previous, random);
            prop_assert!(d <= backoff.delay_cap());
            let r = backoff.requested(previous);
            prop_assert!(r <= backoff.delay_cap());
        }

        #[test]
        fn delays_without_jitter_never_decrease_and_never_pass_the_cap(
            backoff in any_backoff(),
            retries in 1u32..300,
        ) {
            let backoff = backoff.jitter(Jitter::None);
            let mut last = Duration::ZERO;
            for n in 1..=retries {
                let d = backoff.jittered(n, last, 0);
                prop_assert_eq!(d, backoff.delay(n));
                prop_assert!(d >= last, "retry {}: {:?} < {:?}", n, d, last);
                prop_assert!(d <= backoff.delay_cap());
                last = d;
            }
        }

        #[test]
        fn decorrelated_delays_chain_within_bounds(
            backoff in any_backoff(),
            randoms in proptest::collection::vec(any::<u64>(), 1..50),
        ) {
            let backoff = backoff.jitter(Jitter::Decorrelated);
            let mut prev = Duration::ZERO;
            for (i, r) in randoms.into_iter().enumerate() {
                let n = i as u32 + 1;
                let d = backoff.jittered(n, prev, r);
                prop_assert!(d >= backoff.delay(n));
                prop_assert!(d <= backoff.delay_cap());
                prev = d;
            }
        }
    }
}
