//! Error types of the circuit breaker.

use std::fmt;
use std::time::Duration;

/// A call rejected because the circuit is open (or half-open with every probe slot taken, or
/// forced open).
///
/// Carries how long until the breaker admits its next probe, for an HTTP `Retry-After`.
/// Rejections are never retried by harden's retry layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    pub(crate) fn new(retry_after: Option<Duration>) -> Self {
        CircuitOpen { retry_after }
    }

    /// Time until the breaker admits its next probe; `None` when it is forced open and only a
    /// manual `reset` will close it.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("circuit breaker is open")
    }
}

impl std::error::Error for CircuitOpen {}
