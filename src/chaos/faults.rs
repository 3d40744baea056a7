//! What a [`Chaos`](super::Chaos) injects: [`Faults`] (rates) and [`Latency`] (how long).

use std::time::Duration;

use crate::clock::duration_to_nanos;
use crate::ConfigError;

/// The HTTP status a status fault answers with until [`Faults::with_status`] names another:
/// 503 Service Unavailable.
pub const DEFAULT_STATUS: u16 = 503;

/// How long an injected delay lasts.
///
/// Every variant is validated when it is given to a [`Chaos`](super::Chaos) (at `build()` or
/// [`set`](super::Chaos::set)); durations of any size are accepted (tokio caps a sleep at
/// its far future).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
#[non_exhaustive]
pub enum Latency {
    /// Always this long.
    Fixed(#[cfg_attr(feature = "serde", serde(with = "humantime_serde"))] Duration),
    /// Uniformly distributed in `[min, max]`, at nanosecond resolution.
    Uniform {
        /// Shortest delay.
        #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
        min: Duration,
        /// Longest delay; at least `min`.
        #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
        max: Duration,
    },
    /// Exponentially distributed with this mean, cut at `max`: mostly short delays with a long
    /// tail, the shape of a queue in front of a busy upstream.
    Exponential {
        /// The mean before the cut.
        #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
        mean: Duration,
        /// Longest delay.
        #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
        max: Duration,
    },
}

impl Latency {
    /// Always `delay`.
    pub const fn fixed(delay: Duration) -> Self {
        Latency::Fixed(delay)
    }

    /// Uniformly distributed in `[min, max]`.
    pub const fn uniform(min: Duration, max: Duration) -> Self {
        Latency::Uniform { min, max }
    }

    /// Exponentially distributed with mean `mean`, never above `max`.
    pub const fn exponential(mean: Duration, max: Duration) -> Self {
        Latency::Exponential { mean, max }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Latency::Uniform { min, max } = *self {
            if min > max {
                return Err(ConfigError::new(
                    "latency",
                    format!("a uniform range from {min:?} to {max:?} is empty: min must be <= max"),
                ));
            }
        }
        Ok(())
    }

    /// One delay drawn from the distribution.
    pub(crate) fn sample(&self, rng: &mut fastrand::Rng) -> Duration {
        match *self {
            Latency::Fixed(delay) => delay,
            Latency::Uniform { min, max } => {
                Duration::from_nanos(rng.u64(duration_to_nanos(min)..=duration_to_nanos(max)))
            }
            Latency::Exponential { mean, max } => {
                // Inverse transform: -mean * ln(1 - u) for u in [0, 1); `as` saturates.
                let nanos = -(duration_to_nanos(mean) as f64) * (1.0 - rng.f64()).ln();
                Duration::from_nanos(nanos as u64).min(max)
            }
        }
    }
}

impl Default for Latency {
    /// No delay.
    fn default() -> Self {
        Latency::Fixed(Duration::ZERO)
    }
}

/// The rates at which a [`Chaos`](super::Chaos) injects each fault: a plain value, checked when
/// it is handed to [`ChaosBuilder::faults`](super::ChaosBuilder::faults) and
/// [`Chaos::set`](super::Chaos::set).
///
/// Each rate is the fraction of calls, in `[0, 1]`, that get the fault. Errors, hangs and
/// statuses exclude each other (a call gets at most one of them, so their rates must add up to at
/// most 1, and each is the fraction of *all* calls); a delay can come on top of an error or a
/// status, and on calls that reach the inner service.
///
/// # Defaults
///
/// [`Faults::new`] (and `Default`) injects nothing: every rate 0, [`Latency::default`] (no
/// delay), status [`DEFAULT_STATUS`] = 503.
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use = "faults do nothing until given to a `Chaos`"]
pub struct Faults {
    pub(crate) error_rate: f64,
    pub(crate) hang_rate: f64,
    pub(crate) latency: Latency,
    pub(crate) latency_rate: f64,
    pub(crate) status: u16,
    pub(crate) status_rate: f64,
}

impl Faults {
    /// No faults at all.
    pub const fn new() -> Self {
        Faults {
            error_rate: 0.0,
            hang_rate: 0.0,
            latency: Latency::Fixed(Duration::ZERO),
            latency_rate: 0.0,
            status: DEFAULT_STATUS,
            status_rate: 0.0,
        }
    }

    /// Fail this fraction of calls with [`InjectedError`](super::error::InjectedError), without
    /// calling the inner service.
    pub const fn with_error_rate(self, rate: f64) -> Self {
        Faults {
            error_rate: rate,
            ..self
        }
    }

    /// Never answer this fraction of calls: their futures stay pending until dropped (a timeout
    /// above the chaos layer is what ends them). The inner service is not called.
    pub const fn with_hang_rate(self, rate: f64) -> Self {
        Faults {
            hang_rate: rate,
            ..self
        }
    }

    /// Delay this fraction of calls by a duration drawn from `latency`.
    pub const fn with_latency(self, latency: Latency, rate: f64) -> Self {
        Faults {
            latency,
            latency_rate: rate,
            ..self
        }
    }

    /// Answer this fraction of calls with `status`, without calling the inner service (see
    /// [`InjectStatus`](super::InjectStatus) for the response that carries it).
    #[cfg(feature = "http")]
    pub fn with_status(self, status: http::StatusCode, rate: f64) -> Self {
        Faults {
            status: status.as_u16(),
            status_rate: rate,
            ..self
        }
    }

    /// Fraction of calls failed with an injected error.
    pub const fn error_rate(&self) -> f64 {
        self.error_rate
    }

    /// Fraction of calls that hang.
    pub const fn hang_rate(&self) -> f64 {
        self.hang_rate
    }

    /// The delay distribution.
    pub const fn latency(&self) -> Latency {
        self.latency
    }

    /// Fraction of calls delayed.
    pub const fn latency_rate(&self) -> f64 {
        self.latency_rate
    }

    /// The injected status code.
    pub const fn status(&self) -> u16 {
        self.status
    }

    /// Fraction of calls answered with the injected status.
    pub const fn status_rate(&self) -> f64 {
        self.status_rate
    }

    /// Whether any fault has a rate above 0.
    pub fn any(&self) -> bool {
        self.error_rate > 0.0
            || self.hang_rate > 0.0
            || self.latency_rate > 0.0
            || self.status_rate > 0.0
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        rate("error_rate", self.error_rate)?;
        rate("hang_rate", self.hang_rate)?;
        rate("latency", self.latency_rate)?;
        rate("status", self.status_rate)?;
        self.latency.validate()?;
        let sum = self.error_rate + self.hang_rate + self.status_rate;
        if sum > 1.0 {
            return Err(ConfigError::new(
                // The last exclusive fault that is on is the one that pushed the sum over 1.
                if self.status_rate > 0.0 {
                    "status"
                } else {
                    "hang_rate"
                },
                format!(
                    "error_rate + hang_rate + status rate = {sum} is above 1: a call gets at most one of them"
                ),
            ));
        }
        Ok(())
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults::new()
    }
}

fn rate(field: &'static str, rate: f64) -> Result<(), ConfigError> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("rate {rate} is outside [0, 1]"),
        ))
    }
}
