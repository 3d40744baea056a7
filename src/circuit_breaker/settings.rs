//! [`CircuitBreakerSettings`]: a breaker's settings as plain data, to read from a file.

use std::time::Duration;

use super::config::{
    CircuitBreakerBuilder, Config, DEFAULT_ERROR_THRESHOLD_PERCENTAGE, DEFAULT_HALF_OPEN_MAX_CALLS,
    DEFAULT_MAX_PROBE_DURATION, DEFAULT_RESET_TIMEOUT, DEFAULT_ROLLING_WINDOW,
    DEFAULT_ROLLING_WINDOW_BUCKETS, DEFAULT_VOLUME_THRESHOLD,
};
use super::window::WindowSpec;
use super::CircuitBreaker;
use crate::ConfigError;

/// A circuit breaker's settings as plain data, named as [`CircuitBreakerBuilder`] names them.
///
/// With the feature `serde` it reads and writes with serde: durations as humans write them
/// (`"10s"`, `"250ms"`), every key optional (a missing key keeps its default), unknown keys
/// refused. Validation is the builder's own: [`build`](Self::build) or [`CircuitBreaker::try_from`]
/// give the same [`ConfigError`] as the builder.
///
/// ```toml
/// error_threshold_percentage = 25.0
/// volume_threshold = 50
/// rolling_window = "30s"
/// reset_timeout = "5s"
/// slow_call = { duration_threshold = "2s", slow_rate_percentage = 50.0 }
/// ```
///
/// The breaker's name is not a setting: it is the key the settings are filed under (see
/// [`ServiceSettings`](crate::settings::ServiceSettings)), or [`builder`](Self::builder)`.name(..)`.
///
/// # Defaults
///
/// `Default` is the builder's defaults: [`DEFAULT_ERROR_THRESHOLD_PERCENTAGE`],
/// [`DEFAULT_VOLUME_THRESHOLD`], a [`DEFAULT_ROLLING_WINDOW`] of
/// [`DEFAULT_ROLLING_WINDOW_BUCKETS`] buckets, [`DEFAULT_RESET_TIMEOUT`],
/// [`DEFAULT_HALF_OPEN_MAX_CALLS`], [`DEFAULT_MAX_PROBE_DURATION`], no count window, no
/// consecutive-failure rule, no slow-call rule, no open backoff, latency recorded.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct CircuitBreakerSettings {
    /// See [`CircuitBreakerBuilder::error_threshold_percentage`].
    pub error_threshold_percentage: f64,
    /// See [`CircuitBreakerBuilder::volume_threshold`].
    pub volume_threshold: u32,
    /// The length of the time window; see [`CircuitBreakerBuilder::rolling_window`].
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub rolling_window: Duration,
    /// The buckets of the time window; see [`CircuitBreakerBuilder::rolling_window`].
    pub rolling_window_buckets: u32,
    /// A count window of this many calls instead of the time window; see
    /// [`CircuitBreakerBuilder::count_window`].
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub count_window: Option<u32>,
    /// See [`CircuitBreakerBuilder::reset_timeout`].
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub reset_timeout: Duration,
    /// See [`CircuitBreakerBuilder::half_open_max_calls`].
    pub half_open_max_calls: u32,
    /// See [`CircuitBreakerBuilder::consecutive_failures`].
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub consecutive_failures: Option<u32>,
    /// See [`CircuitBreakerBuilder::slow_call`].
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub slow_call: Option<SlowCallSettings>,
    /// See [`CircuitBreakerBuilder::open_backoff`].
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub open_backoff: Option<OpenBackoffSettings>,
    /// See [`CircuitBreakerBuilder::max_probe_duration`].
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_probe_duration: Duration,
    /// See [`CircuitBreakerBuilder::record_latency`].
    pub record_latency: bool,
}

/// The slow-call rule; see [`CircuitBreakerBuilder::slow_call`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
#[non_exhaustive]
pub struct SlowCallSettings {
    /// Calls taking at least this long are slow.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub duration_threshold: Duration,
    /// Open when this percentage of the window's calls were slow.
    pub slow_rate_percentage: f64,
}

impl SlowCallSettings {
    /// The rule: calls of at least `duration_threshold` are slow; open at `slow_rate_percentage`.
    pub fn new(duration_threshold: Duration, slow_rate_percentage: f64) -> Self {
        SlowCallSettings {
            duration_threshold,
            slow_rate_percentage,
        }
    }
}

/// Growing open durations; see [`CircuitBreakerBuilder::open_backoff`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
#[non_exhaustive]
pub struct OpenBackoffSettings {
    /// Growth per consecutive re-open.
    pub multiplier: f64,
    /// Longest open duration.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max: Duration,
}

impl OpenBackoffSettings {
    /// Grow by `multiplier` per consecutive re-open, up to `max`.
    pub fn new(multiplier: f64, max: Duration) -> Self {
        OpenBackoffSettings { multiplier, max }
    }
}

impl Default for CircuitBreakerSettings {
    fn default() -> Self {
        CircuitBreakerSettings {
            error_threshold_percentage: DEFAULT_ERROR_THRESHOLD_PERCENTAGE,
            volume_threshold: DEFAULT_VOLUME_THRESHOLD,
            rolling_window: DEFAULT_ROLLING_WINDOW,
            rolling_window_buckets: DEFAULT_ROLLING_WINDOW_BUCKETS,
            count_window: None,
            reset_timeout: DEFAULT_RESET_TIMEOUT,
            half_open_max_calls: DEFAULT_HALF_OPEN_MAX_CALLS,
            consecutive_failures: None,
            slow_call: None,
            open_backoff: None,
            max_probe_duration: DEFAULT_MAX_PROBE_DURATION,
            record_latency: true,
        }
    }
}

impl CircuitBreakerSettings {
    /// A builder holding these settings, to name the breaker or add a listener before `build()`.
    pub fn builder(&self) -> CircuitBreakerBuilder {
        let mut b = CircuitBreaker::builder()
            .error_threshold_percentage(self.error_threshold_percentage)
            .volume_threshold(self.volume_threshold)
            .reset_timeout(self.reset_timeout)
            .half_open_max_calls(self.half_open_max_calls)
            .max_probe_duration(self.max_probe_duration)
            .record_latency(self.record_latency);
        b = match self.count_window {
            Some(calls) => b.count_window(calls),
            None => b.rolling_window(self.rolling_window, self.rolling_window_buckets),
        };
        if let Some(n) = self.consecutive_failures {
            b = b.consecutive_failures(n);
        }
        if let Some(slow) = self.slow_call {
            b = b.slow_call(slow.duration_threshold, slow.slow_rate_percentage);
        }
        if let Some(backoff) = self.open_backoff {
            b = b.open_backoff(backoff.multiplier, backoff.max);
        }
        b
    }

    /// Checks the settings and builds a breaker named `name`.
    ///
    /// # Errors
    ///
    /// The builder's [`ConfigError`] for the first setting outside its range.
    pub fn build(&self, name: &str) -> Result<CircuitBreaker, ConfigError> {
        self.builder().name(name).build()
    }

    /// Checks the settings as [`build`](Self::build) would, without building a breaker.
    ///
    /// # Errors
    ///
    /// The builder's [`ConfigError`] for the first setting outside its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.builder().validate().map(drop)
    }

    /// Takes the values a running breaker may have changed: its tunables and its window.
    pub(crate) fn retuned(&mut self, tune: &super::tune::Tunables, window: WindowSpec) {
        let nanos = Duration::from_nanos;
        match window {
            WindowSpec::Time { window, buckets } => {
                self.rolling_window = window;
                self.rolling_window_buckets = buckets;
                self.count_window = None;
            }
            WindowSpec::Count { calls } => self.count_window = Some(calls),
        }
        self.error_threshold_percentage = tune.threshold();
        self.volume_threshold = u32::try_from(tune.volume()).unwrap_or(u32::MAX);
        self.reset_timeout = nanos(tune.reset_timeout());
        self.half_open_max_calls = tune.half_open_max_calls();
        self.consecutive_failures = tune.consecutive_failures();
        self.slow_call = tune
            .slow_call()
            .map(|(d, rate)| SlowCallSettings::new(nanos(d), rate));
        self.open_backoff = tune
            .open_backoff()
            .map(|(m, max)| OpenBackoffSettings::new(m, nanos(max)));
        self.max_probe_duration = nanos(tune.max_probe());
    }

    pub(crate) fn from_config(config: &Config) -> Self {
        let nanos = Duration::from_nanos;
        let (rolling_window, rolling_window_buckets, count_window) = match config.window {
            WindowSpec::Time { window, buckets } => (window, buckets, None),
            WindowSpec::Count { calls } => (
                DEFAULT_ROLLING_WINDOW,
                DEFAULT_ROLLING_WINDOW_BUCKETS,
                Some(calls),
            ),
        };
        CircuitBreakerSettings {
            error_threshold_percentage: config.threshold,
            volume_threshold: u32::try_from(config.volume).unwrap_or(u32::MAX),
            rolling_window,
            rolling_window_buckets,
            count_window,
            reset_timeout: nanos(config.reset_timeout),
            half_open_max_calls: config.half_open_max_calls,
            consecutive_failures: config.consecutive_failures,
            slow_call: config
                .slow_call
                .map(|(d, rate)| SlowCallSettings::new(nanos(d), rate)),
            open_backoff: config
                .open_backoff
                .map(|(m, max)| OpenBackoffSettings::new(m, nanos(max))),
            max_probe_duration: nanos(config.max_probe),
            record_latency: config.record_latency,
        }
    }
}

impl TryFrom<CircuitBreakerSettings> for CircuitBreaker {
    type Error = ConfigError;

    /// Builds a breaker with the default name, [`DEFAULT_NAME`](super::DEFAULT_NAME).
    fn try_from(settings: CircuitBreakerSettings) -> Result<Self, ConfigError> {
        settings.builder().build()
    }
}

impl From<&CircuitBreaker> for CircuitBreakerSettings {
    fn from(breaker: &CircuitBreaker) -> Self {
        breaker.settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_the_builders_defaults() {
        let built = CircuitBreaker::builder().build().unwrap();
        assert_eq!(built.settings(), CircuitBreakerSettings::default());
    }

    #[test]
    fn settings_survive_a_build() {
        let settings = CircuitBreakerSettings {
            error_threshold_percentage: 25.0,
            volume_threshold: 7,
            rolling_window: Duration::from_secs(30),
            rolling_window_buckets: 30,
            reset_timeout: Duration::from_secs(3),
            half_open_max_calls: 2,
            consecutive_failures: Some(5),
            slow_call: Some(SlowCallSettings::new(Duration::from_millis(250), 40.0)),
            open_backoff: Some(OpenBackoffSettings::new(2.0, Duration::from_secs(60))),
            max_probe_duration: Duration::from_secs(4),
            record_latency: false,
            ..CircuitBreakerSettings::default()
        };
        let breaker = settings.build("payments").unwrap();
        assert_eq!(breaker.name(), "payments");
        assert_eq!(breaker.settings(), settings);
    }

    #[test]
    fn invalid_settings_give_the_builders_error() {
        let settings = CircuitBreakerSettings {
            error_threshold_percentage: 150.0,
            ..CircuitBreakerSettings::default()
        };
        let err = CircuitBreaker::try_from(settings).unwrap_err();
        assert_eq!(err.field(), "error_threshold_percentage");
    }
}
