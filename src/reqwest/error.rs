//! The convenience client's error: which layer stopped the request, and why.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::bulkhead::error::BulkheadFull;
use crate::circuit_breaker::error::CircuitOpen;
use crate::retry::error::{BudgetExhausted, RetryAfterTooLong};
use crate::timeout::error::Elapsed;
use crate::BoxError;

/// What stopped a request sent through [`Client`](super::Client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The authority's circuit breaker is open: the request was not sent.
    CircuitOpen,
    /// The authority's bulkhead is full: the request was not sent.
    BulkheadFull,
    /// The total timeout elapsed (attempts and backoff included).
    TotalTimeout,
    /// The last attempt timed out and no retry was left.
    AttemptTimeout,
    /// A retry was due, but the retry budget had no token left.
    BudgetExhausted,
    /// The server asked to retry later than the total timeout allows.
    RetryAfterTooLong,
    /// reqwest failed: building, connecting, sending or receiving.
    Request,
}

/// The error of [`Client`](super::Client): the [`ErrorKind`], the request's authority, and the
/// underlying error as [`source`](std::error::Error::source).
pub struct Error {
    kind: ErrorKind,
    /// Shared with the authority's entry: a rejection copies no string.
    authority: Arc<str>,
    timeouts: (Option<Duration>, Option<Duration>),
    source: BoxError,
}

impl Error {
    pub(crate) fn new(
        source: BoxError,
        authority: Arc<str>,
        total_elapsed: bool,
        timeouts: (Option<Duration>, Option<Duration>),
    ) -> Self {
        let kind = if source.is::<CircuitOpen>() {
            ErrorKind::CircuitOpen
        } else if source.is::<BulkheadFull>() {
            ErrorKind::BulkheadFull
        } else if source.is::<Elapsed>() {
            if total_elapsed {
                ErrorKind::TotalTimeout
            } else {
                ErrorKind::AttemptTimeout
            }
        } else if source.is::<BudgetExhausted>() {
            ErrorKind::BudgetExhausted
        } else if source.is::<RetryAfterTooLong>() {
            ErrorKind::RetryAfterTooLong
        } else {
            ErrorKind::Request
        };
        Error {
            kind,
            authority,
            timeouts,
            source,
        }
    }

    /// What stopped the request.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The request's authority, `scheme://host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Whether harden refused to send the request (open circuit, full bulkhead).
    pub fn is_rejection(&self) -> bool {
        matches!(self.kind, ErrorKind::CircuitOpen | ErrorKind::BulkheadFull)
    }

    /// When to try again, if known: the time until the breaker's next probe, or the delay the
    /// server asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        if let Some(open) = self.source.downcast_ref::<CircuitOpen>() {
            return open.retry_after();
        }
        self.source
            .downcast_ref::<RetryAfterTooLong>()
            .map(RetryAfterTooLong::retry_after)
    }

    /// The reqwest error, if reqwest failed (after a budget refusal too).
    pub fn reqwest(&self) -> Option<&reqwest::Error> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*self.source);
        while let Some(e) = next {
            if let Some(r) = e.downcast_ref::<reqwest::Error>() {
                return Some(r);
            }
            next = e.source();
        }
        None
    }

    /// The underlying error (harden's or reqwest's), boxed.
    pub fn into_inner(self) -> BoxError {
        self.source
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("authority", &self.authority)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.authority;
        let (total, attempt) = self.timeouts;
        match self.kind {
            ErrorKind::CircuitOpen => {
                write!(f, "circuit breaker for {a} is open: request not sent")?;
                match self.retry_after() {
                    Some(d) => write!(f, "; next probe in {d:?}"),
                    None => Ok(()),
                }
            }
            ErrorKind::BulkheadFull => {
                write!(f, "bulkhead for {a} is full: request not sent")
            }
            ErrorKind::TotalTimeout => match total {
                Some(t) => write!(
                    f,
                    "request to {a} timed out: total timeout of {t:?} elapsed"
                ),
                None => write!(f, "request to {a} timed out: total timeout elapsed"),
            },
            ErrorKind::AttemptTimeout => match attempt {
                Some(t) => write!(
                    f,
                    "request to {a} timed out: last attempt exceeded the attempt timeout of {t:?}"
                ),
                None => write!(f, "request to {a} timed out: last attempt timed out"),
            },
            ErrorKind::BudgetExhausted => {
                let last = std::error::Error::source(&*self.source)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                write!(
                    f,
                    "request to {a} failed and the retry budget is exhausted: {last}"
                )
            }
            ErrorKind::RetryAfterTooLong => {
                write!(f, "request to {a} not retried: {}", self.source)
            }
            ErrorKind::Request => write!(f, "request to {a} failed: {}", self.source),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
