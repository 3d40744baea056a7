//! Error types of the circuit breaker.

use std::fmt;
use std::time::Duration;

use super::name::Name;

/// A call rejected because the circuit is open (or half-open with every probe slot taken, or
/// forced open).
///
/// Carries how long until the breaker admits its next probe, for an HTTP `Retry-After`, and
/// the [name](Self::breaker) of the breaker that rejected, so a service with several breakers
/// can tell which one did. Rejections are never retried by harden's retry layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_after: Option<Duration>,
    breaker: Name,
}

impl CircuitOpen {
    /// A rejection without a breaker name (tests and other layers' own uses).
    pub(crate) fn new(retry_after: Option<Duration>) -> Self {
        CircuitOpen {
            retry_after,
            breaker: Name::new(super::DEFAULT_NAME),
        }
    }

    /// A rejection by the breaker named `breaker`.
    #[inline]
    pub(crate) fn from_breaker(retry_after: Option<Duration>, breaker: Name) -> Self {
        CircuitOpen {
            retry_after,
            breaker,
        }
    }

    /// The name of the breaker that rejected the call (its builder's
    /// [`name`](super::CircuitBreakerBuilder::name), [`DEFAULT_NAME`](super::DEFAULT_NAME) unless set).
    pub fn breaker(&self) -> &str {
        self.breaker.as_str()
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

/// The error of [`CircuitBreaker::call`](super::CircuitBreaker::call): rejected by the breaker,
/// or the function's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// The breaker did not run the function.
    Rejected(CircuitOpen),
    /// The function ran and failed.
    Inner(E),
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(open) => open.fmt(f),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Transparent: `Display` is the wrapped error's, so its source is too.
        match self {
            CallError::Rejected(_) => None,
            CallError::Inner(e) => e.source(),
        }
    }
}
