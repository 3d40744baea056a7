//! [`TimeoutSettings`]: a timeout as plain data.

use std::time::Duration;

use super::TimeoutLayer;

/// A timeout's settings as plain data: `timeout = "2s"`. The key is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
#[non_exhaustive]
pub struct TimeoutSettings {
    /// How long a call may take.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub timeout: Duration,
}

impl TimeoutSettings {
    /// Calls may take `timeout`.
    pub fn new(timeout: Duration) -> Self {
        TimeoutSettings { timeout }
    }
}

impl From<TimeoutSettings> for TimeoutLayer {
    fn from(settings: TimeoutSettings) -> Self {
        TimeoutLayer::new(settings.timeout)
    }
}

impl From<&TimeoutLayer> for TimeoutSettings {
    fn from(layer: &TimeoutLayer) -> Self {
        TimeoutSettings::new(layer.timeout())
    }
}
