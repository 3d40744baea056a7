//! Errors shared by every middleware: [`BoxError`] and [`ConfigError`].

use std::borrow::Cow;
use std::fmt;

/// The error type of every harden service: inner errors and harden's own rejections, boxed.
///
/// Downcast to tell them apart: `err.is::<harden::circuit_breaker::error::CircuitOpen>()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An invalid configuration, reported by a builder's `build()`.
///
/// The message names the field and the accepted range, e.g.
/// ``invalid `error_threshold_percentage`: 150 is outside (0, 100]``.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    field: &'static str,
    reason: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the offending setting, as spelled by its builder method.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_field_and_range() {
        let err = ConfigError::new("volume_threshold", "0 is outside [1, u32::MAX]");
        assert_eq!(err.field(), "volume_threshold");
        assert_eq!(
            err.to_string(),
            "invalid `volume_threshold`: 0 is outside [1, u32::MAX]"
        );
    }
}
