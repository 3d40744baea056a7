//! Errors shared by every middleware: [`BoxError`] and [`ConfigError`].

use std::borrow::Cow;
use std::fmt;

use crate::bulkhead::error::BulkheadFull;
use crate::circuit_breaker::error::CircuitOpen;

/// The error type of every harden service: inner errors and harden's own rejections, boxed.
///
/// Downcast to tell them apart: `err.is::<harden::circuit_breaker::error::CircuitOpen>()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An invalid configuration, reported by a builder's `build()`.
///
/// The message names the field and the accepted range, e.g.
/// ``invalid `error_threshold_percentage`: 150 is outside (0, 100]``. Settings read from a file
/// name the whole path to the field:
/// ``invalid `breakers.payments.error_threshold_percentage`: 150 is outside (0, 100]``.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    field: &'static str,
    reason: Cow<'static, str>,
    /// Sections around the field, innermost last (`["breakers", "payments"]`).
    sections: Vec<String>,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
            sections: Vec::new(),
        }
    }

    /// The same error, inside the section `section` (e.g. `"payments"`, then `"breakers"`):
    /// for settings that nest, so the message names the full path.
    #[must_use]
    pub fn within(mut self, section: impl Into<String>) -> Self {
        self.sections.insert(0, section.into());
        self
    }

    /// The dotted path to the offending setting, e.g. `breakers.payments.volume_threshold`;
    /// the same as [`field`](Self::field) when the error is not inside a section.
    pub fn path(&self) -> String {
        let mut path = self.sections.join(".");
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(self.field);
        path
    }

    /// Why the value was refused, e.g. `150 is outside (0, 100]`.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The name of the offending setting, as spelled by its builder method.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.path(), self.reason)
    }
}

impl std::error::Error for ConfigError {}

// NOTE: the one list of harden's own rejections. Every classifier that must not count them as
// the upstream's failures, and the retry that must never retry them, asks here.

/// Whether an error is one of harden's own rejections (open circuit, full bulkhead), which are
/// never retried: retrying them only adds load to a system that asked for less.
pub(crate) fn is_rejection(err: &(dyn std::error::Error + 'static)) -> bool {
    err.is::<CircuitOpen>() || err.is::<BulkheadFull>()
}

/// Whether `e` is one of harden's rejections, whether as itself or boxed.
#[inline]
pub(crate) fn is_own_rejection<E: 'static>(e: &E) -> bool {
    let any: &dyn std::any::Any = e;
    if let Some(boxed) = any.downcast_ref::<crate::BoxError>() {
        return is_rejection(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn std::error::Error + 'static>>() {
        return is_rejection(&**boxed);
    }
    any.is::<CircuitOpen>() || any.is::<BulkheadFull>()
}

#[cfg(all(test, not(harden_loom)))]
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

    #[test]
    fn message_names_the_sections_around_the_field() {
        let err = ConfigError::new("error_threshold_percentage", "150 is outside (0, 100]")
            .within("payments")
            .within("breakers");
        assert_eq!(err.field(), "error_threshold_percentage");
        assert_eq!(err.path(), "breakers.payments.error_threshold_percentage");
        assert_eq!(
            err.to_string(),
            "invalid `breakers.payments.error_threshold_percentage`: 150 is outside (0, 100]"
        );
    }
}
