//! [`ShutdownSettings`]: the shutdown sequence's settings as plain data.

use std::time::Duration;

use super::{
    Shutdown, ShutdownBuilder, DEFAULT_DEADLINE, DEFAULT_DRAIN_DELAY, DEFAULT_EXEMPT_PATHS,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_RETRY_AFTER,
};
use crate::ConfigError;

/// The shutdown sequence's settings as plain data, named as [`ShutdownBuilder`] names them.
///
/// ```toml
/// drain_delay = "5s"
/// deadline = "20s"
/// retry_after = "5s"
/// header_read_timeout = "30s"
/// exempt_paths = ["/health/live", "/health/ready"]
/// signals = true
/// ```
///
/// # Defaults
///
/// [`DEFAULT_DRAIN_DELAY`], [`DEFAULT_DEADLINE`], [`DEFAULT_RETRY_AFTER`],
/// [`DEFAULT_HEADER_READ_TIMEOUT`], `exempt_paths` = [`DEFAULT_EXEMPT_PATHS`], signals on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ShutdownSettings {
    /// See [`ShutdownBuilder::drain_delay`].
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub drain_delay: Duration,
    /// See [`ShutdownBuilder::deadline`].
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub deadline: Duration,
    /// See [`ShutdownBuilder::retry_after`].
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub retry_after: Duration,
    /// See [`ShutdownBuilder::header_read_timeout`]; `null` (JSON, YAML) turns it off.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub header_read_timeout: Option<Duration>,
    /// Paths still served while refusing (at least one); see [`ShutdownBuilder::exempt_path`].
    pub exempt_paths: Vec<String>,
    /// See [`ShutdownBuilder::signals`].
    pub signals: bool,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings {
            drain_delay: DEFAULT_DRAIN_DELAY,
            deadline: DEFAULT_DEADLINE,
            retry_after: DEFAULT_RETRY_AFTER,
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            exempt_paths: DEFAULT_EXEMPT_PATHS.map(str::to_owned).to_vec(),
            signals: true,
        }
    }
}

impl ShutdownSettings {
    /// A builder holding these settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `exempt_paths` when the list is empty.
    pub fn builder(&self) -> Result<ShutdownBuilder, ConfigError> {
        if self.exempt_paths.is_empty() {
            return Err(ConfigError::new(
                "exempt_paths",
                "an empty list is refused: name at least one path (e.g. the liveness path)",
            ));
        }
        let b = Shutdown::builder()
            .drain_delay(self.drain_delay)
            .deadline(self.deadline)
            .retry_after(self.retry_after)
            .header_read_timeout(self.header_read_timeout)
            .signals(self.signals);
        Ok(self
            .exempt_paths
            .iter()
            .fold(b, |b, path| b.exempt_path(path.clone())))
    }

    /// Checks the settings and builds the sequence.
    ///
    /// # Errors
    ///
    /// The builder's [`ConfigError`] (a zero `deadline` or `header_read_timeout`, a
    /// `retry_after` over a day), or an empty `exempt_paths`.
    pub fn build(&self) -> Result<Shutdown, ConfigError> {
        self.builder()?.build()
    }
}

impl TryFrom<ShutdownSettings> for Shutdown {
    type Error = ConfigError;

    fn try_from(settings: ShutdownSettings) -> Result<Self, ConfigError> {
        settings.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_give_the_builders_error() {
        assert!(ShutdownSettings::default().build().is_ok());
        let zero = ShutdownSettings {
            deadline: Duration::ZERO,
            ..ShutdownSettings::default()
        };
        assert_eq!(zero.build().unwrap_err().field(), "deadline");
        let none = ShutdownSettings {
            exempt_paths: Vec::new(),
            ..ShutdownSettings::default()
        };
        assert_eq!(none.build().unwrap_err().field(), "exempt_paths");
    }
}
