//! [`BulkheadSettings`]: a bulkhead's limit as plain data.

use super::BulkheadLayer;
use crate::ConfigError;

/// A bulkhead's settings as plain data: `max_concurrent = 100`. The key is required: a
/// bulkhead has no default limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
#[non_exhaustive]
pub struct BulkheadSettings {
    /// Calls admitted at once; accepted [1, usize::MAX].
    pub max_concurrent: usize,
}

impl BulkheadSettings {
    /// At most `max_concurrent` calls at once.
    pub fn new(max_concurrent: usize) -> Self {
        BulkheadSettings { max_concurrent }
    }

    /// A bulkhead named `name` with this limit.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_concurrent` for a limit of 0.
    pub fn layer(&self, name: &str) -> Result<BulkheadLayer, ConfigError> {
        BulkheadLayer::try_new(self.max_concurrent).map(|b| b.name(name))
    }
}

impl TryFrom<BulkheadSettings> for BulkheadLayer {
    type Error = ConfigError;

    fn try_from(settings: BulkheadSettings) -> Result<Self, ConfigError> {
        BulkheadLayer::try_new(settings.max_concurrent)
    }
}

impl From<&BulkheadLayer> for BulkheadSettings {
    fn from(layer: &BulkheadLayer) -> Self {
        BulkheadSettings::new(layer.max_concurrent())
    }
}
