//! [`HttpLayerSettings`]: the HTTP preset's settings as plain data.

use std::time::Duration;

use super::preset::{
    HttpLayer, HttpLayerBuilder, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_DELAY, DEFAULT_TOTAL_TIMEOUT,
};
use crate::circuit_breaker::CircuitBreakerSettings;
use crate::retry::{Backoff, BackoffSettings, Jitter, RetryBudgetSettings};
use crate::ConfigError;

/// The HTTP preset's settings ([`HttpLayerBuilder`]) as plain data; the classifiers and the
/// replay rule stay in code (add them to [`builder`](Self::builder)).
///
/// A missing key keeps the *preset's* default, in nested tables too: a `breaker` table that
/// sets only `reset_timeout` keeps the preset's 10 % over 100 calls.
///
/// ```toml
/// total_timeout = "30s"
/// attempt_timeout = "10s"
/// max_attempts = 4
/// backoff = { initial_delay = "2s", max_delay = "300s" }
/// budget = { retry_ratio = 0.2 }
/// breaker = { error_threshold_percentage = 10.0, volume_threshold = 100, reset_timeout = "5s" }
/// bulkhead = 1000
/// ```
///
/// `total_timeout`, `attempt_timeout` and `bulkhead` turn off with `null` (JSON, YAML).
///
/// # Defaults
///
/// The preset's: see [`HttpLayerBuilder`]'s `# Defaults`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct HttpLayerSettings {
    /// See [`HttpLayerBuilder::total_timeout`].
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub total_timeout: Option<Duration>,
    /// See [`HttpLayerBuilder::attempt_timeout`].
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub attempt_timeout: Option<Duration>,
    /// See [`HttpLayerBuilder::max_attempts`].
    pub max_attempts: u32,
    /// See [`HttpLayerBuilder::backoff`].
    #[cfg_attr(feature = "serde", serde(deserialize_with = "patch::backoff"))]
    pub backoff: BackoffSettings,
    /// See [`HttpLayerBuilder::budget`] and [`HttpLayerBuilder::no_budget`].
    pub budget: RetryBudgetSettings,
    /// See [`HttpLayerBuilder::breaker`].
    #[cfg_attr(feature = "serde", serde(deserialize_with = "patch::breaker"))]
    pub breaker: CircuitBreakerSettings,
    /// The bulkhead's limit; see [`HttpLayerBuilder::bulkhead`].
    pub bulkhead: Option<usize>,
}

impl Default for HttpLayerSettings {
    fn default() -> Self {
        HttpLayerSettings {
            total_timeout: Some(DEFAULT_TOTAL_TIMEOUT),
            attempt_timeout: Some(DEFAULT_ATTEMPT_TIMEOUT),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: preset_backoff(),
            budget: RetryBudgetSettings::default(),
            breaker: preset_breaker(),
            bulkhead: Some(DEFAULT_MAX_CONCURRENT),
        }
    }
}

fn preset_backoff() -> BackoffSettings {
    BackoffSettings::from(
        Backoff::exponential(DEFAULT_INITIAL_DELAY, 2.0)
            .jitter(Jitter::Full)
            .max_delay(DEFAULT_MAX_DELAY),
    )
}

fn preset_breaker() -> CircuitBreakerSettings {
    let breaker = HttpLayerBuilder::default_breaker().validate();
    // The preset's own breaker is valid; the fallback keeps this path free of panics.
    breaker
        .map(|config| CircuitBreakerSettings::from_config(&config))
        .unwrap_or_default()
}

impl HttpLayerSettings {
    /// A builder holding these settings, to add classifiers or a replay rule, or to name it,
    /// before `build()`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an invalid `backoff` or `budget`; the rest is checked by `build()`.
    pub fn builder(&self) -> Result<HttpLayerBuilder, ConfigError> {
        let b = HttpLayer::builder()
            .total_timeout(self.total_timeout)
            .attempt_timeout(self.attempt_timeout)
            .max_attempts(self.max_attempts)
            .backoff(self.backoff.backoff()?)
            .breaker(self.breaker.builder())
            .bulkhead(self.bulkhead);
        Ok(match self.budget.budget()? {
            Some(budget) => b.budget(budget),
            None => b.no_budget(),
        })
    }

    /// Checks the settings as `build()` will, without building.
    ///
    /// # Errors
    ///
    /// The builders' [`ConfigError`]; a breaker setting is named inside `breaker`
    /// (`breaker.volume_threshold`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.breaker.validate().map_err(|e| e.within("breaker"))?;
        self.builder()?.validate()
    }

    /// Checks the settings and builds the preset named `name`.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn build(&self, name: &str) -> Result<HttpLayer, ConfigError> {
        self.validate()?;
        self.builder()?.name(name.to_owned()).build()
    }
}

impl TryFrom<HttpLayerSettings> for HttpLayer {
    type Error = ConfigError;

    fn try_from(settings: HttpLayerSettings) -> Result<Self, ConfigError> {
        settings.validate()?;
        settings.builder()?.build()
    }
}

/// Nested tables that start from the preset's defaults rather than their type's own.
#[cfg(feature = "serde")]
mod patch {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    use crate::circuit_breaker::{CircuitBreakerSettings, OpenBackoffSettings, SlowCallSettings};
    use crate::retry::{BackoffSettings, BackoffShape, Jitter};

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct BackoffPatch {
        shape: Option<BackoffShape>,
        #[serde(default, with = "humantime_serde")]
        initial_delay: Option<Duration>,
        multiplier: Option<f64>,
        #[serde(default, with = "humantime_serde")]
        step: Option<Duration>,
        jitter: Option<Jitter>,
        #[serde(default, with = "humantime_serde")]
        max_delay: Option<Duration>,
    }

    pub(super) fn backoff<'de, D: Deserializer<'de>>(d: D) -> Result<BackoffSettings, D::Error> {
        let p = BackoffPatch::deserialize(d)?;
        let mut s = super::preset_backoff();
        s.shape = p.shape.unwrap_or(s.shape);
        s.initial_delay = p.initial_delay.unwrap_or(s.initial_delay);
        s.multiplier = p.multiplier.unwrap_or(s.multiplier);
        s.step = p.step.unwrap_or(s.step);
        s.jitter = p.jitter.unwrap_or(s.jitter);
        s.max_delay = p.max_delay.unwrap_or(s.max_delay);
        Ok(s)
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct BreakerPatch {
        error_threshold_percentage: Option<f64>,
        volume_threshold: Option<u32>,
        #[serde(default, with = "humantime_serde")]
        rolling_window: Option<Duration>,
        rolling_window_buckets: Option<u32>,
        count_window: Option<u32>,
        #[serde(default, with = "humantime_serde")]
        reset_timeout: Option<Duration>,
        half_open_max_calls: Option<u32>,
        consecutive_failures: Option<u32>,
        slow_call: Option<SlowCallSettings>,
        open_backoff: Option<OpenBackoffSettings>,
        #[serde(default, with = "humantime_serde")]
        max_probe_duration: Option<Duration>,
        record_latency: Option<bool>,
    }

    pub(super) fn breaker<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<CircuitBreakerSettings, D::Error> {
        let p = BreakerPatch::deserialize(d)?;
        let mut s = super::preset_breaker();
        s.error_threshold_percentage = p
            .error_threshold_percentage
            .unwrap_or(s.error_threshold_percentage);
        s.volume_threshold = p.volume_threshold.unwrap_or(s.volume_threshold);
        s.rolling_window = p.rolling_window.unwrap_or(s.rolling_window);
        s.rolling_window_buckets = p.rolling_window_buckets.unwrap_or(s.rolling_window_buckets);
        s.count_window = p.count_window.or(s.count_window);
        s.reset_timeout = p.reset_timeout.unwrap_or(s.reset_timeout);
        s.half_open_max_calls = p.half_open_max_calls.unwrap_or(s.half_open_max_calls);
        s.consecutive_failures = p.consecutive_failures.or(s.consecutive_failures);
        s.slow_call = p.slow_call.or(s.slow_call);
        s.open_backoff = p.open_backoff.or(s.open_backoff);
        s.max_probe_duration = p.max_probe_duration.unwrap_or(s.max_probe_duration);
        s.record_latency = p.record_latency.unwrap_or(s.record_latency);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{DEFAULT_ERROR_THRESHOLD_PERCENTAGE, DEFAULT_RESET_TIMEOUT};

    #[test]
    fn default_settings_are_the_presets() {
        let s = HttpLayerSettings::default();
        assert_eq!(
            s.breaker.error_threshold_percentage,
            DEFAULT_ERROR_THRESHOLD_PERCENTAGE
        );
        assert_eq!(s.breaker.reset_timeout, DEFAULT_RESET_TIMEOUT);
        assert_eq!(s.backoff.initial_delay, DEFAULT_INITIAL_DELAY);
        let layer = s.build("upstream").unwrap();
        assert_eq!(layer.breaker().name(), "upstream");
        assert_eq!(layer.breaker().settings(), s.breaker);
    }

    #[test]
    fn invalid_breaker_names_its_section() {
        let mut s = HttpLayerSettings::default();
        s.breaker.volume_threshold = 0;
        assert_eq!(
            HttpLayer::try_from(s).unwrap_err().path(),
            "breaker.volume_threshold"
        );
    }
}
