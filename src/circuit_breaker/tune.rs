//! The settings a running breaker can change: plain atomics read on the call path.
//!
//! Each value is read with `Relaxed`: it guards no other memory, and a call racing a change may
//! judge with the old value or the new one, either of which was valid. Two values read by one
//! call may come from either side of a change (a new threshold with the old volume); each is
//! whole. They are `std` atomics even under loom: no protocol depends on their order, and the
//! models stay the size of the breaker's own state machine.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::config::{open_duration, Config};

#[derive(Debug)]
pub(crate) struct Tunables {
    threshold: AtomicU64,
    volume: AtomicU64,
    reset_timeout: AtomicU64,
    half_open_max_calls: AtomicU32,
    /// 0: the rule is off.
    consecutive_failures: AtomicU32,
    /// 0: the rule is off.
    slow_threshold: AtomicU64,
    slow_rate: AtomicU64,
    /// 0.0: off.
    backoff_multiplier: AtomicU64,
    backoff_max: AtomicU64,
    max_probe: AtomicU64,
    /// Neither the slow-call nor the consecutive-failure rule is on.
    plain_success: AtomicBool,
}

impl Tunables {
    pub(crate) fn new(config: &Config) -> Self {
        let t = Tunables {
            threshold: AtomicU64::new(0),
            volume: AtomicU64::new(0),
            reset_timeout: AtomicU64::new(0),
            half_open_max_calls: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            slow_threshold: AtomicU64::new(0),
            slow_rate: AtomicU64::new(0),
            backoff_multiplier: AtomicU64::new(0),
            backoff_max: AtomicU64::new(0),
            max_probe: AtomicU64::new(0),
            plain_success: AtomicBool::new(true),
        };
        t.set(config);
        t
    }

    /// Takes the tunable values of a validated `config`.
    pub(crate) fn set(&self, config: &Config) {
        // Relaxed, here and in every read below: see the module docs.
        let r = Ordering::Relaxed;
        self.threshold.store(config.threshold.to_bits(), r);
        self.volume.store(config.volume, r);
        self.reset_timeout.store(config.reset_timeout, r);
        self.half_open_max_calls
            .store(config.half_open_max_calls, r);
        self.consecutive_failures
            .store(config.consecutive_failures.unwrap_or(0), r);
        let (slow, rate) = config.slow_call.unwrap_or((0, 0.0));
        self.slow_rate.store(rate.to_bits(), r);
        self.slow_threshold.store(slow, r);
        let (multiplier, max) = config.open_backoff.unwrap_or((0.0, 0));
        self.backoff_max.store(max, r);
        self.backoff_multiplier.store(multiplier.to_bits(), r);
        self.max_probe.store(config.max_probe, r);
        self.plain_success.store(
            config.slow_call.is_none() && config.consecutive_failures.is_none(),
            r,
        );
    }

    #[inline]
    pub(crate) fn threshold(&self) -> f64 {
        f64::from_bits(self.threshold.load(Ordering::Relaxed))
    }

    #[inline]
    pub(crate) fn volume(&self) -> u64 {
        self.volume.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn reset_timeout(&self) -> u64 {
        self.reset_timeout.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn half_open_max_calls(&self) -> u32 {
        self.half_open_max_calls.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn consecutive_failures(&self) -> Option<u32> {
        match self.consecutive_failures.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// (duration threshold, slow-rate percentage)
    #[inline]
    pub(crate) fn slow_call(&self) -> Option<(u64, f64)> {
        match self.slow_threshold.load(Ordering::Relaxed) {
            0 => None,
            d => Some((d, f64::from_bits(self.slow_rate.load(Ordering::Relaxed)))),
        }
    }

    /// (multiplier, cap)
    #[inline]
    pub(crate) fn open_backoff(&self) -> Option<(f64, u64)> {
        let multiplier = f64::from_bits(self.backoff_multiplier.load(Ordering::Relaxed));
        (multiplier != 0.0).then(|| (multiplier, self.backoff_max.load(Ordering::Relaxed)))
    }

    #[inline]
    pub(crate) fn max_probe(&self) -> u64 {
        self.max_probe.load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub(crate) fn plain_success(&self) -> bool {
        self.plain_success.load(Ordering::Relaxed)
    }

    /// How long to stay open after the `reopens`-th consecutive re-open; see [`open_duration`].
    pub(crate) fn open_duration(&self, reopens: u32, now: u64) -> u64 {
        open_duration(self.reset_timeout(), self.open_backoff(), reopens, now)
    }
}

impl super::CircuitBreaker {
    /// Changes the running breaker's settings, without rebuilding it, dropping its state or
    /// pausing calls; every clone and every service made from it sees the change. Call it from
    /// anywhere (a settings reload, an admin endpoint); the call path stays lock-free.
    ///
    /// What a change does to a breaker in flight:
    ///
    /// - `error_threshold_percentage`, `volume_threshold`, the slow-call rate: judged from the
    ///   next recorded failure (or slow call) on, against the window as it is: the window keeps
    ///   its counts and the state does not change at once (a closed breaker already over a
    ///   lowered threshold opens on its next failure).
    /// - `reset_timeout`, `open_backoff`: an open breaker keeps its deadline; the next opening
    ///   uses the new values.
    /// - `half_open_max_calls`: probes in flight keep their slots; the next admission and the
    ///   next probe success count against the new number.
    /// - `max_probe_duration`: from the next admission on.
    /// - `consecutive_failures`: a changed rule starts its run of failures at zero.
    /// - the slow-call `duration_threshold`: for calls admitted from now on (a call admitted
    ///   while the rule was off is never slow).
    /// - the window's shape (`rolling_window`, `rolling_window_buckets`, `count_window`): a new
    ///   shape clears the window — counts start from zero, and calls in flight across the change
    ///   are counted in neither window — while the state is kept: a closed breaker stays closed
    ///   (and its run of consecutive failures starts at zero), an open one keeps its deadline, a
    ///   half-open one its probes. Calls are not paused: each service moves to the new window on
    ///   its next call.
    /// - `record_latency` is fixed when the breaker is built: a change to it is refused.
    ///
    /// The state (forced open, disabled, …) is kept; see [`reset`](Self::reset) to clear it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use harden::circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder().name("payments").build()?;
    /// let mut settings = breaker.settings();
    /// settings.error_threshold_percentage = 20.0;
    /// settings.reset_timeout = Duration::from_secs(30);
    /// breaker.retune(&settings)?;
    /// assert_eq!(breaker.settings(), settings);
    /// # Ok::<(), harden::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The builder's [`ConfigError`](crate::ConfigError) for a setting outside its range, or
    /// one naming `record_latency` when it differs from the breaker's; the breaker then keeps
    /// its settings.
    pub fn retune(
        &self,
        settings: &super::CircuitBreakerSettings,
    ) -> Result<(), crate::ConfigError> {
        let core = self.core();
        if settings.record_latency != core.config.record_latency {
            return Err(fixed("record_latency"));
        }
        let config = settings.builder().name(self.name()).validate()?;
        let window_changed = config.window != core.windows.spec();
        let run_changed = config.consecutive_failures != core.tune.consecutive_failures();
        core.tune.set(&config);
        if window_changed {
            core.windows.replace(config.window);
        }
        if run_changed || window_changed {
            core.reset_run();
        }
        tracing::info!(breaker = %self.name(), ?settings, "circuit breaker retuned");
        Ok(())
    }
}

fn fixed(field: &'static str) -> crate::ConfigError {
    crate::ConfigError::new(
        field,
        "is fixed when the breaker is built: build a new breaker to change it",
    )
}
