//! [`ChaosSettings`]: what a chaos injects, as plain data.

use super::{Chaos, ChaosBuilder, Faults, Latency, DEFAULT_SEED};
use crate::ConfigError;

/// A [`Chaos`]'s settings as plain data, named as [`ChaosBuilder`] and [`Faults`] name them.
///
/// ```toml
/// enabled = true
/// error_rate = 0.05
/// latency = { uniform = { min = "10ms", max = "200ms" } }   # or { fixed = "100ms" }
/// latency_rate = 0.2
/// status = 503
/// status_rate = 0.01
/// ```
///
/// # Defaults
///
/// `Default` injects nothing: enabled, [`DEFAULT_SEED`], every rate 0, a fixed latency of 0,
/// [`DEFAULT_STATUS`](super::DEFAULT_STATUS).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ChaosSettings {
    /// See [`ChaosBuilder::enabled`].
    pub enabled: bool,
    /// See [`ChaosBuilder::seed`].
    pub seed: u64,
    /// See [`Faults::with_error_rate`].
    pub error_rate: f64,
    /// See [`Faults::with_hang_rate`].
    pub hang_rate: f64,
    /// See [`Faults::with_latency`].
    pub latency: Latency,
    /// See [`Faults::with_latency`].
    pub latency_rate: f64,
    /// The status a status fault answers with (HTTP services only).
    pub status: u16,
    /// The fraction of calls answered with `status` (HTTP services only).
    pub status_rate: f64,
}

impl Default for ChaosSettings {
    fn default() -> Self {
        ChaosSettings::from_faults(Faults::new(), true, DEFAULT_SEED)
    }
}

impl ChaosSettings {
    fn from_faults(faults: Faults, enabled: bool, seed: u64) -> Self {
        ChaosSettings {
            enabled,
            seed,
            error_rate: faults.error_rate,
            hang_rate: faults.hang_rate,
            latency: faults.latency,
            latency_rate: faults.latency_rate,
            status: faults.status,
            status_rate: faults.status_rate,
        }
    }

    /// The faults these settings describe (checked when given to a [`Chaos`]).
    pub fn faults(&self) -> Faults {
        Faults {
            error_rate: self.error_rate,
            hang_rate: self.hang_rate,
            latency: self.latency,
            latency_rate: self.latency_rate,
            status: self.status,
            status_rate: self.status_rate,
        }
    }

    /// A builder holding these settings, to name the chaos before `build()`.
    pub fn builder(&self) -> ChaosBuilder {
        Chaos::builder()
            .seed(self.seed)
            .enabled(self.enabled)
            .faults(self.faults())
    }

    /// Checks the settings and builds a chaos named `name`.
    ///
    /// # Errors
    ///
    /// The builder's [`ConfigError`] (a rate outside [0, 1], an empty latency range, a status
    /// outside [100, 999]).
    pub fn build(&self, name: &str) -> Result<Chaos, ConfigError> {
        self.check_status()?;
        self.builder().name(name).build()
    }

    fn check_status(&self) -> Result<(), ConfigError> {
        if (100..=999).contains(&self.status) {
            Ok(())
        } else {
            Err(ConfigError::new(
                "status",
                format!("{} is outside [100, 999]", self.status),
            ))
        }
    }
}

impl TryFrom<ChaosSettings> for Chaos {
    type Error = ConfigError;

    fn try_from(settings: ChaosSettings) -> Result<Self, ConfigError> {
        settings.check_status()?;
        settings.builder().build()
    }
}

impl From<&Chaos> for ChaosSettings {
    fn from(chaos: &Chaos) -> Self {
        ChaosSettings::from_faults(chaos.faults(), chaos.is_enabled(), chaos.seed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn settings_survive_a_build() {
        let settings = ChaosSettings {
            error_rate: 0.25,
            latency: Latency::uniform(Duration::from_millis(1), Duration::from_millis(9)),
            latency_rate: 0.5,
            enabled: false,
            ..ChaosSettings::default()
        };
        let chaos = settings.build("demo").unwrap();
        assert_eq!(ChaosSettings::from(&chaos), settings);
    }

    #[test]
    fn invalid_rate_is_a_config_error() {
        let settings = ChaosSettings {
            error_rate: 2.0,
            ..ChaosSettings::default()
        };
        assert!(Chaos::try_from(settings).is_err());
        let settings = ChaosSettings {
            status: 42,
            ..ChaosSettings::default()
        };
        assert_eq!(Chaos::try_from(settings).unwrap_err().field(), "status");
    }
}
