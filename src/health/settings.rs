//! [`HealthSettings`]: the health endpoints' settings as plain data.

use super::{Health, HealthBuilder, DEFAULT_LIVE_PATH, DEFAULT_READY_PATH};
use crate::ConfigError;

/// The health endpoints' settings as plain data, named as [`HealthBuilder`] names them; the
/// checks themselves (functions, breakers, the shutdown handle) stay in code: add them to
/// [`builder`](Self::builder).
///
/// ```toml
/// live_path = "/health/live"
/// ready_path = "/health/ready"
/// rss_limit = 2147483648
/// ```
///
/// # Defaults
///
/// [`DEFAULT_LIVE_PATH`], [`DEFAULT_READY_PATH`], no `rss_limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct HealthSettings {
    /// See [`HealthBuilder::live_path`].
    pub live_path: String,
    /// See [`HealthBuilder::ready_path`].
    pub ready_path: String,
    /// See [`HealthBuilder::rss_limit`].
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub rss_limit: Option<u64>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            live_path: DEFAULT_LIVE_PATH.to_owned(),
            ready_path: DEFAULT_READY_PATH.to_owned(),
            rss_limit: None,
        }
    }
}

impl HealthSettings {
    /// A builder holding these settings, to add checks before `build()`.
    pub fn builder(&self) -> HealthBuilder {
        let b = Health::builder()
            .live_path(self.live_path.clone())
            .ready_path(self.ready_path.clone());
        match self.rss_limit {
            Some(bytes) => b.rss_limit(bytes),
            None => b,
        }
    }

    /// Checks the settings as `build()` will.
    ///
    /// # Errors
    ///
    /// The builder's [`ConfigError`]: a path not starting with `/`, equal paths, a zero
    /// `rss_limit`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.builder().build().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_paths_give_the_builders_error() {
        assert!(HealthSettings::default().validate().is_ok());
        let settings = HealthSettings {
            ready_path: "ready".into(),
            ..HealthSettings::default()
        };
        assert_eq!(settings.validate().unwrap_err().field(), "ready_path");
    }
}
