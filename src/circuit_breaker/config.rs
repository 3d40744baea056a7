//! CircuitBreakerBuilder, validated configuration and defaults of the circuit breaker.

use std::sync::Arc as StdArc;
use std::time::Duration;

use super::name::Name;
use super::observe::{Event, ListenerSlot};
use super::window::WindowSpec;
use super::CircuitBreaker;
use crate::clock::duration_to_nanos;
use crate::ConfigError;

/// Default [`name`](CircuitBreakerBuilder::name): `"circuit_breaker"`.
pub const DEFAULT_NAME: &str = "circuit_breaker";
/// Default [`error_threshold_percentage`](CircuitBreakerBuilder::error_threshold_percentage): 50 %.
pub const DEFAULT_ERROR_THRESHOLD_PERCENTAGE: f64 = 50.0;
/// Default [`volume_threshold`](CircuitBreakerBuilder::volume_threshold): 20 calls in the window.
pub const DEFAULT_VOLUME_THRESHOLD: u32 = 20;
/// Default length of the [`rolling_window`](CircuitBreakerBuilder::rolling_window): 10 s.
pub const DEFAULT_ROLLING_WINDOW: Duration = Duration::from_secs(10);
/// Default number of buckets of the [`rolling_window`](CircuitBreakerBuilder::rolling_window): 10 (1 s each).
pub const DEFAULT_ROLLING_WINDOW_BUCKETS: u32 = 10;
/// Default [`reset_timeout`](CircuitBreakerBuilder::reset_timeout): 10 s.
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`half_open_max_calls`](CircuitBreakerBuilder::half_open_max_calls): 1 probe at a time.
pub const DEFAULT_HALF_OPEN_MAX_CALLS: u32 = 1;
/// Default [`max_probe_duration`](CircuitBreakerBuilder::max_probe_duration): 10 s.
pub const DEFAULT_MAX_PROBE_DURATION: Duration = Duration::from_secs(10);

/// Largest accepted [`half_open_max_calls`](CircuitBreakerBuilder::half_open_max_calls) (it is packed into the
/// breaker's 64-bit state word).
pub const MAX_HALF_OPEN_MAX_CALLS: u32 = 4095;
/// Longest accepted duration for `reset_timeout`, `open_backoff`'s cap and `max_probe_duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest accepted [`count_window`](CircuitBreakerBuilder::count_window).
pub const MAX_COUNT_WINDOW: u32 = 100_000;
/// Largest accepted number of buckets of a [`rolling_window`](CircuitBreakerBuilder::rolling_window).
pub const MAX_BUCKETS: u32 = 1_000;

const MIN_BUCKET: Duration = Duration::from_millis(1);

/// Builds a [`CircuitBreaker`]; start with [`CircuitBreaker::builder`].
///
/// Settings are checked once, by [`build`](CircuitBreakerBuilder::build); see the [module docs](super) for
/// every default and the accepted ranges.
#[derive(Debug, Clone)]
#[must_use]
pub struct CircuitBreakerBuilder {
    name: StdArc<str>,
    threshold: f64,
    volume: u32,
    window: WindowSetting,
    reset_timeout: Duration,
    half_open_max_calls: u32,
    consecutive_failures: Option<u32>,
    slow_call: Option<(Duration, f64)>,
    open_backoff: Option<(f64, Duration)>,
    max_probe_duration: Duration,
    listener: ListenerSlot,
    record_latency: bool,
}

#[derive(Debug, Clone, Copy)]
enum WindowSetting {
    Time(Duration, u32),
    Count(u32),
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        CircuitBreakerBuilder::new()
    }
}

impl CircuitBreakerBuilder {
    /// A builder with every setting at its default.
    pub fn new() -> Self {
        CircuitBreakerBuilder {
            name: StdArc::from(DEFAULT_NAME),
            threshold: DEFAULT_ERROR_THRESHOLD_PERCENTAGE,
            volume: DEFAULT_VOLUME_THRESHOLD,
            window: WindowSetting::Time(DEFAULT_ROLLING_WINDOW, DEFAULT_ROLLING_WINDOW_BUCKETS),
            reset_timeout: DEFAULT_RESET_TIMEOUT,
            half_open_max_calls: DEFAULT_HALF_OPEN_MAX_CALLS,
            consecutive_failures: None,
            slow_call: None,
            open_backoff: None,
            max_probe_duration: DEFAULT_MAX_PROBE_DURATION,
            listener: ListenerSlot::default(),
            record_latency: true,
        }
    }

    /// With the feature `metrics`, whether to time every call for the
    /// `harden_call_duration_seconds` histogram (default `true`). Timing reads the precise
    /// clock twice per call (costly on a VM without a vDSO clock); turn it off on the
    /// hottest paths. Without the feature the clock is never read for this.
    pub fn record_latency(mut self, record: bool) -> Self {
        self.record_latency = record;
        self
    }

    /// Calls `listener` for every event: each finished call (success, failure, ignored, slow),
    /// each rejection and each transition. It runs inline on the calling task, so keep it
    /// short and non-blocking (count, log, or send to a channel). Without a listener an event
    /// costs one branch; the event borrows the name, so reporting allocates nothing.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use harden::circuit_breaker::{CircuitBreaker, EventKind};
    ///
    /// let rejections = Arc::new(AtomicU64::new(0));
    /// let counter = rejections.clone();
    /// let breaker = CircuitBreaker::builder()
    ///     .on_event(move |event| {
    ///         if let EventKind::Rejected { .. } = event.kind {
    ///             counter.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), harden::ConfigError>(())
    /// ```
    pub fn on_event(mut self, listener: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.listener = ListenerSlot(Some(StdArc::new(listener)));
        self
    }

    /// Label for `tracing` events, metrics and health checks. Keep the set of names bounded.
    pub fn name(mut self, name: impl Into<StdArc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Open when `failures / (successes + failures) * 100 >= percentage`; accepted range (0, 100].
    pub fn error_threshold_percentage(mut self, percentage: f64) -> Self {
        self.threshold = percentage;
        self
    }

    /// Calls (successes + failures) the window must hold before any rate is judged;
    /// accepted range [1, u32::MAX].
    pub fn volume_threshold(mut self, calls: u32) -> Self {
        self.volume = calls;
        self
    }

    /// A time-based window of `window`, split into `buckets` buckets of `window / buckets`; the
    /// oldest bucket ages out as time passes. `window` must split into whole buckets of at least
    /// 1 ms; `buckets` in [1, 1000].
    pub fn rolling_window(mut self, window: Duration, buckets: u32) -> Self {
        self.window = WindowSetting::Time(window, buckets);
        self
    }

    /// A count-based window instead: the last `calls` outcomes, whatever their age;
    /// `calls` in [1, 100 000] and at least `volume_threshold`.
    ///
    /// Cheapest on one thread (no clock read; up to 27 calls the window is a single word), but
    /// every thread records into the same cache line: under calls from many threads at once,
    /// the default time-based window scales and this one does not.
    pub fn count_window(mut self, calls: u32) -> Self {
        self.window = WindowSetting::Count(calls);
        self
    }

    /// How long the breaker stays open before admitting a probe; accepted range (0, 365 days].
    pub fn reset_timeout(mut self, timeout: Duration) -> Self {
        self.reset_timeout = timeout;
        self
    }

    /// Probes admitted at once while half-open, and successes needed to close;
    /// accepted range [1, 4095].
    pub fn half_open_max_calls(mut self, calls: u32) -> Self {
        self.half_open_max_calls = calls;
        self
    }

    /// Also open after `failures` failures in a row while closed (any success resets the run);
    /// accepted range [1, u32::MAX]. Off by default.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = Some(failures);
        self
    }

    /// Count calls taking at least `duration_threshold` as slow, and also open when
    /// `slow / (successes + failures) * 100 >= slow_rate_percentage` (after `volume_threshold`).
    /// `duration_threshold` in (0, 365 days]; `slow_rate_percentage` in (0, 100]. Off by default.
    pub fn slow_call(mut self, duration_threshold: Duration, slow_rate_percentage: f64) -> Self {
        self.slow_call = Some((duration_threshold, slow_rate_percentage));
        self
    }

    /// Grow the open duration on consecutive re-opens (a failed probe): the `k`-th re-open in a
    /// row stays open `reset_timeout * multiplier^k`, capped at `max`, minus up to 20 % jitter (never
    /// less than `reset_timeout`). `multiplier` finite in [1, 1000]; `max` in
    /// [`reset_timeout`, 365 days]. Off by default: every open lasts `reset_timeout`.
    pub fn open_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.open_backoff = Some((multiplier, max));
        self
    }

    /// After this long without any probe being admitted or finishing, a half-open breaker whose
    /// probe slots are all taken admits a new probe (the hung probes' results are then ignored);
    /// accepted range (0, 365 days].
    pub fn max_probe_duration(mut self, duration: Duration) -> Self {
        self.max_probe_duration = duration;
        self
    }

    /// Check the settings and build the breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting outside its accepted range.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        Ok(CircuitBreaker::from_config(self.validate()?))
    }

    /// Validates a copy of the settings; the time window's length, `None` for a count window.
    #[cfg(feature = "http")]
    pub(crate) fn checked_window(&self) -> Result<Option<Duration>, ConfigError> {
        self.clone().validate()?;
        Ok(match self.window {
            WindowSetting::Time(window, _) => Some(window),
            WindowSetting::Count(_) => None,
        })
    }

    pub(crate) fn validate(self) -> Result<Config, ConfigError> {
        let pct = |field: &'static str, v: f64| {
            if v.is_nan() || v <= 0.0 || v > 100.0 {
                Err(ConfigError::new(field, format!("{v} is outside (0, 100]")))
            } else {
                Ok(v)
            }
        };
        let dur = |field: &'static str, d: Duration| {
            if d.is_zero() || d > MAX_DURATION {
                Err(ConfigError::new(
                    field,
                    format!("{d:?} is outside (0, 365 days]"),
                ))
            } else {
                Ok(duration_to_nanos(d))
            }
        };
        let threshold = pct("error_threshold_percentage", self.threshold)?;
        if self.volume == 0 {
            return Err(ConfigError::new(
                "volume_threshold",
                "0 is outside [1, u32::MAX]",
            ));
        }
        let window = match self.window {
            WindowSetting::Time(window, buckets) => {
                if window.is_zero() {
                    return Err(ConfigError::new(
                        "rolling_window",
                        "a zero window is outside [1 ms, 365 days]",
                    ));
                }
                if window > MAX_DURATION {
                    return Err(ConfigError::new(
                        "rolling_window",
                        format!("{window:?} is outside [1 ms, 365 days]"),
                    ));
                }
                if buckets == 0 || buckets > MAX_BUCKETS {
                    return Err(ConfigError::new(
                        "rolling_window",
                        format!("{buckets} buckets is outside [1, {MAX_BUCKETS}]"),
                    ));
                }
                let nanos = window.as_nanos();
                if nanos % u128::from(buckets) != 0
                    || nanos / u128::from(buckets) < MIN_BUCKET.as_nanos()
                {
                    return Err(ConfigError::new(
                        "rolling_window",
                        format!(
                            "{window:?} does not split into {buckets} equal buckets of at least 1 ms \
                             (accepted: a whole multiple of {buckets} ns in [{buckets} ms, 365 days])"
                        ),
                    ));
                }
                WindowSpec::Time { window, buckets }
            }
            WindowSetting::Count(calls) => {
                if calls == 0 || calls > MAX_COUNT_WINDOW {
                    return Err(ConfigError::new(
                        "count_window",
                        format!("{calls} is outside [1, {MAX_COUNT_WINDOW}]"),
                    ));
                }
                if self.volume > calls {
                    return Err(ConfigError::new(
                        "volume_threshold",
                        format!(
                            "{} is outside [1, {calls}] (a count window of {calls} calls never holds more)",
                            self.volume
                        ),
                    ));
                }
                WindowSpec::Count { calls }
            }
        };
        let reset_timeout = dur("reset_timeout", self.reset_timeout)?;
        if self.half_open_max_calls == 0 || self.half_open_max_calls > MAX_HALF_OPEN_MAX_CALLS {
            return Err(ConfigError::new(
                "half_open_max_calls",
                format!(
                    "{} is outside [1, {MAX_HALF_OPEN_MAX_CALLS}]",
                    self.half_open_max_calls
                ),
            ));
        }
        let consecutive_failures = match self.consecutive_failures {
            Some(0) => {
                return Err(ConfigError::new(
                    "consecutive_failures",
                    "0 is outside [1, u32::MAX]",
                ))
            }
            other => other,
        };
        let slow_call = match self.slow_call {
            Some((d, rate)) => {
                if d.is_zero() || d > MAX_DURATION {
                    return Err(ConfigError::new(
                        "slow_call",
                        format!("duration threshold {d:?} is outside (0, 365 days]"),
                    ));
                }
                Some((duration_to_nanos(d), pct("slow_call", rate)?))
            }
            None => None,
        };
        let open_backoff = match self.open_backoff {
            Some((multiplier, max)) => {
                if !(1.0..=1000.0).contains(&multiplier) {
                    return Err(ConfigError::new(
                        "open_backoff",
                        format!("multiplier {multiplier} is outside [1, 1000]"),
                    ));
                }
                if max < self.reset_timeout || max > MAX_DURATION {
                    return Err(ConfigError::new(
                        "open_backoff",
                        format!("max {max:?} is outside [reset_timeout, 365 days]"),
                    ));
                }
                Some((multiplier, duration_to_nanos(max)))
            }
            None => None,
        };
        let max_probe = dur("max_probe_duration", self.max_probe_duration)?;
        Ok(Config {
            rejection_name: Name::new(&self.name),
            name: self.name,
            threshold,
            volume: u64::from(self.volume),
            window,
            reset_timeout,
            half_open_max_calls: self.half_open_max_calls,
            consecutive_failures,
            slow_call,
            open_backoff,
            max_probe,
            listener: self.listener,
            record_latency: self.record_latency,
        })
    }
}

/// Validated settings; durations in nanoseconds.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) name: StdArc<str>,
    /// The same name as rejections carry it (inline when short: copied, nothing shared).
    pub(crate) rejection_name: Name,
    pub(crate) threshold: f64,
    pub(crate) volume: u64,
    pub(crate) window: WindowSpec,
    pub(crate) reset_timeout: u64,
    pub(crate) half_open_max_calls: u32,
    pub(crate) consecutive_failures: Option<u32>,
    /// (duration threshold, slow-rate percentage)
    pub(crate) slow_call: Option<(u64, f64)>,
    /// (multiplier, cap)
    pub(crate) open_backoff: Option<(f64, u64)>,
    pub(crate) max_probe: u64,
    pub(crate) listener: ListenerSlot,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // read by the latency histogram only
    pub(crate) record_latency: bool,
}

impl Config {
    /// How long to stay open after the `reopens`-th consecutive re-open (0 = opened from closed).
    /// Pure, so the reference model in the property tests computes the very same jitter.
    #[cfg(all(test, not(harden_loom)))]
    pub(crate) fn open_duration(&self, reopens: u32, now: u64) -> u64 {
        open_duration(self.reset_timeout, self.open_backoff, reopens, now)
    }
}

/// How long to stay open after the `reopens`-th consecutive re-open, from `reset_timeout` and
/// the open backoff's (multiplier, cap).
pub(crate) fn open_duration(
    base: u64,
    open_backoff: Option<(f64, u64)>,
    reopens: u32,
    now: u64,
) -> u64 {
    let Some((multiplier, max)) = open_backoff else {
        return base;
    };
    if reopens == 0 {
        return base;
    }
    let grown = (base as f64) * multiplier.powi(reopens.min(1024) as i32);
    let capped = if grown.is_finite() && grown < max as f64 {
        grown as u64
    } else {
        max
    };
    // Up to 20 % shorter, from a hash of the inputs: spreads breakers that re-opened together.
    let unit =
        (splitmix64(now ^ u64::from(reopens).rotate_left(32)) >> 11) as f64 / (1u64 << 53) as f64;
    let jittered = capped - ((capped as f64) * 0.2 * unit) as u64;
    jittered.max(base)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
