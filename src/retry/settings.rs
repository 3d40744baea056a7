//! The retry's settings as plain data: [`RetrySettings`], [`BackoffSettings`],
//! [`RetryBudgetSettings`].

use std::time::Duration;

use super::backoff::{Backoff, Jitter, Shape, DEFAULT_MULTIPLIER};
use super::budget::{RetryBudget, DEFAULT_BURST, DEFAULT_MIN_RETRIES_PER_SEC, DEFAULT_RETRY_RATIO};
use super::policy::{RetryPolicy, RetryPolicyBuilder, DEFAULT_MAX_ATTEMPTS};
use crate::ConfigError;

/// The shape of a [`Backoff`]: how the delay grows from one retry to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum BackoffShape {
    /// `initial_delay` before every retry ([`Backoff::constant`]).
    Constant,
    /// `initial_delay`, then `step` more each retry ([`Backoff::linear`]).
    Linear,
    /// `initial_delay`, then `multiplier` times more each retry ([`Backoff::exponential`]).
    Exponential,
}

/// A [`Backoff`] as plain data.
///
/// ```toml
/// shape = "exponential"
/// initial_delay = "100ms"
/// multiplier = 2.0
/// jitter = "full"          # none | full | equal | decorrelated
/// max_delay = "10s"
/// ```
///
/// # Defaults
///
/// `Default` is [`Backoff::new`]: exponential from [`DEFAULT_INITIAL_DELAY`](super::DEFAULT_INITIAL_DELAY) by
/// [`DEFAULT_MULTIPLIER`], [`DEFAULT_JITTER`](super::DEFAULT_JITTER), capped at
/// [`DEFAULT_MAX_DELAY`](super::DEFAULT_MAX_DELAY); `step` (read by
/// the linear shape only) 0.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct BackoffSettings {
    /// How the delay grows.
    pub shape: BackoffShape,
    /// The first delay (every delay for `constant`).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub initial_delay: Duration,
    /// Growth per retry of `exponential`; accepted [1, 1000].
    pub multiplier: f64,
    /// Growth per retry of `linear`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub step: Duration,
    /// How randomness spreads the delays.
    pub jitter: Jitter,
    /// The cap on every delay, server-requested ones included.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_delay: Duration,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        BackoffSettings::from(Backoff::new())
    }
}

impl From<Backoff> for BackoffSettings {
    fn from(backoff: Backoff) -> Self {
        let (shape, initial_delay, multiplier, step) = match backoff.shape {
            Shape::Constant(d) => (
                BackoffShape::Constant,
                d,
                DEFAULT_MULTIPLIER,
                Duration::ZERO,
            ),
            Shape::Linear { initial, step } => {
                (BackoffShape::Linear, initial, DEFAULT_MULTIPLIER, step)
            }
            Shape::Exponential {
                initial,
                multiplier,
            } => (
                BackoffShape::Exponential,
                initial,
                multiplier,
                Duration::ZERO,
            ),
        };
        BackoffSettings {
            shape,
            initial_delay,
            multiplier,
            step,
            jitter: backoff.jitter_kind(),
            max_delay: backoff.delay_cap(),
        }
    }
}

impl BackoffSettings {
    /// The backoff these settings describe, checked.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `backoff.multiplier` outside [1, 1000].
    pub fn backoff(&self) -> Result<Backoff, ConfigError> {
        let backoff = match self.shape {
            BackoffShape::Constant => Backoff::constant(self.initial_delay),
            BackoffShape::Linear => Backoff::linear(self.initial_delay, self.step),
            BackoffShape::Exponential => Backoff::exponential(self.initial_delay, self.multiplier),
        }
        .jitter(self.jitter)
        .max_delay(self.max_delay);
        backoff.validate()?;
        Ok(backoff)
    }
}

impl TryFrom<BackoffSettings> for Backoff {
    type Error = ConfigError;

    fn try_from(settings: BackoffSettings) -> Result<Self, ConfigError> {
        settings.backoff()
    }
}

/// A [`RetryBudget`] as plain data, or no budget at all (`enabled = false`).
///
/// # Defaults
///
/// `Default` is [`RetryBudget::new`]: enabled, [`DEFAULT_MIN_RETRIES_PER_SEC`], [`DEFAULT_RETRY_RATIO`],
/// [`DEFAULT_BURST`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RetryBudgetSettings {
    /// Whether retries draw on a budget; `false` is the builders' `no_budget()`.
    pub enabled: bool,
    /// See [`RetryBudgetBuilder::min_retries_per_sec`](super::RetryBudgetBuilder::min_retries_per_sec).
    pub min_retries_per_sec: u32,
    /// See [`RetryBudgetBuilder::retry_ratio`](super::RetryBudgetBuilder::retry_ratio).
    pub retry_ratio: f64,
    /// See [`RetryBudgetBuilder::burst`](super::RetryBudgetBuilder::burst).
    pub burst: u32,
}

impl Default for RetryBudgetSettings {
    fn default() -> Self {
        RetryBudgetSettings {
            enabled: true,
            min_retries_per_sec: DEFAULT_MIN_RETRIES_PER_SEC,
            retry_ratio: DEFAULT_RETRY_RATIO,
            burst: DEFAULT_BURST,
        }
    }
}

impl From<Option<&RetryBudget>> for RetryBudgetSettings {
    fn from(budget: Option<&RetryBudget>) -> Self {
        match budget {
            Some(b) => RetryBudgetSettings {
                enabled: true,
                min_retries_per_sec: b.min_retries_per_sec(),
                retry_ratio: b.retry_ratio(),
                burst: b.burst(),
            },
            None => RetryBudgetSettings {
                enabled: false,
                ..RetryBudgetSettings::default()
            },
        }
    }
}

impl RetryBudgetSettings {
    /// The budget these settings describe (`None` when not `enabled`), checked.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `budget.min_retries_per_sec`, `budget.retry_ratio` or `budget.burst` outside its range.
    pub fn budget(&self) -> Result<Option<RetryBudget>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        RetryBudget::builder()
            .min_retries_per_sec(self.min_retries_per_sec)
            .retry_ratio(self.retry_ratio)
            .burst(self.burst)
            .build()
            .map(Some)
            .map_err(|e| e.within("budget"))
    }
}

/// A [`RetryPolicy`]'s settings as plain data; the classifier and the request copier stay in
/// code ([`builder`](Self::builder) then `.classifier(..)`).
///
/// ```toml
/// max_attempts = 4
/// total_timeout = "30s"
/// backoff = { initial_delay = "200ms", max_delay = "5s" }
/// budget = { retry_ratio = 0.1 }
/// ```
///
/// # Defaults
///
/// `Default` is the builder's: [`DEFAULT_MAX_ATTEMPTS`], no `total_timeout`,
/// [`BackoffSettings::default`], [`RetryBudgetSettings::default`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RetrySettings {
    /// See [`RetryPolicyBuilder::max_attempts`].
    pub max_attempts: u32,
    /// See [`RetryPolicyBuilder::total_timeout`].
    #[cfg_attr(
        feature = "serde",
        serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")
    )]
    pub total_timeout: Option<Duration>,
    /// See [`RetryPolicyBuilder::backoff`].
    pub backoff: BackoffSettings,
    /// See [`RetryPolicyBuilder::budget`].
    pub budget: RetryBudgetSettings,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            total_timeout: None,
            backoff: BackoffSettings::default(),
            budget: RetryBudgetSettings::default(),
        }
    }
}

impl RetrySettings {
    /// A builder holding these settings (a fresh budget each call), to add a classifier, a
    /// request copier or a name before `build()`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an invalid backoff or budget; the rest is checked by `build()`.
    pub fn builder(&self) -> Result<RetryPolicyBuilder, ConfigError> {
        let mut b = RetryPolicy::builder()
            .max_attempts(self.max_attempts)
            .backoff(self.backoff.backoff()?);
        b = match self.budget.budget()? {
            Some(budget) => b.budget(budget),
            None => b.no_budget(),
        };
        if let Some(total) = self.total_timeout {
            b = b.total_timeout(total);
        }
        Ok(b)
    }

    /// Checks the settings and builds a policy named `name`.
    ///
    /// # Errors
    ///
    /// The builders' [`ConfigError`] for the first setting outside its range.
    pub fn build(&self, name: &str) -> Result<RetryPolicy, ConfigError> {
        self.builder()?.name(name.to_owned()).build()
    }
}

impl TryFrom<RetrySettings> for RetryPolicy {
    type Error = ConfigError;

    fn try_from(settings: RetrySettings) -> Result<Self, ConfigError> {
        settings.builder()?.build()
    }
}

impl<C, H> From<&RetryPolicy<C, H>> for RetrySettings {
    fn from(policy: &RetryPolicy<C, H>) -> Self {
        RetrySettings {
            max_attempts: policy.max_attempts(),
            total_timeout: policy.total_timeout(),
            backoff: BackoffSettings::from(policy.backoff()),
            budget: RetryBudgetSettings::from(policy.budget()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::backoff::{DEFAULT_INITIAL_DELAY, DEFAULT_JITTER, DEFAULT_MAX_DELAY};
    use super::*;

    #[test]
    fn default_settings_are_the_builders_defaults() {
        let policy = RetryPolicy::builder().build().unwrap();
        assert_eq!(RetrySettings::from(&policy), RetrySettings::default());
        assert_eq!(
            BackoffSettings::default().backoff().unwrap(),
            Backoff::new()
        );
        assert_eq!(DEFAULT_JITTER, BackoffSettings::default().jitter);
        assert_eq!(
            DEFAULT_INITIAL_DELAY,
            BackoffSettings::default().initial_delay
        );
        assert_eq!(DEFAULT_MAX_DELAY, BackoffSettings::default().max_delay);
    }

    #[test]
    fn settings_survive_a_build() {
        let settings = RetrySettings {
            max_attempts: 5,
            total_timeout: Some(Duration::from_secs(9)),
            backoff: BackoffSettings::from(
                Backoff::linear(Duration::from_millis(10), Duration::from_millis(20))
                    .jitter(Jitter::Equal)
                    .max_delay(Duration::from_secs(2)),
            ),
            budget: RetryBudgetSettings {
                enabled: false,
                ..RetryBudgetSettings::default()
            },
        };
        let policy = settings.build("orders").unwrap();
        assert_eq!(policy.name(), "orders");
        assert_eq!(RetrySettings::from(&policy), settings);
    }

    #[test]
    fn invalid_budget_names_its_section() {
        let settings = RetrySettings {
            budget: RetryBudgetSettings {
                retry_ratio: 11.0,
                ..RetryBudgetSettings::default()
            },
            ..RetrySettings::default()
        };
        let err = RetryPolicy::try_from(settings).unwrap_err();
        assert_eq!(err.path(), "budget.retry_ratio");
    }
}
