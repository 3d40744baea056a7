//! Error types of the retry layer.

use std::fmt;
use std::time::Duration;

use crate::BoxError;

/// A retry was due but the [`RetryBudget`](super::RetryBudget) had no token left: the last
/// attempt's error, wrapped so callers (and `harden::http`'s error responses) can tell that the
/// retry layer gave up to protect the upstream, not because the attempts ran out.
///
/// Its [`source`](std::error::Error::source) is the last attempt's error;
/// [`into_inner`](Self::into_inner) hands it back.
#[derive(Debug)]
pub struct BudgetExhausted {
    last: BoxError,
}

impl BudgetExhausted {
    pub(crate) fn new(last: BoxError) -> Self {
        BudgetExhausted { last }
    }

    /// The last attempt's error.
    pub fn into_inner(self) -> BoxError {
        self.last
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry budget exhausted")
    }
}

impl std::error::Error for BudgetExhausted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.last)
    }
}

/// The server asked for a delay (an HTTP `Retry-After`) longer than what is left of the total
/// timeout: the call fails at once instead of sleeping into its deadline.
///
/// It is judged on the delay the retry would sleep (after the `max_delay` cap);
/// [`retry_after`](Self::retry_after) is the delay the server asked for, as the classifier
/// reported it (an HTTP classifier caps `Retry-After` at 300 s by default), so an HTTP answer
/// can pass it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryAfterTooLong {
    retry_after: Duration,
    remaining: Duration,
}

impl RetryAfterTooLong {
    pub(crate) fn new(retry_after: Duration, remaining: Duration) -> Self {
        RetryAfterTooLong {
            retry_after,
            remaining,
        }
    }

    /// The delay the server asked for.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// What was left of the total timeout when the server asked.
    pub fn remaining(&self) -> Duration {
        self.remaining
    }
}

impl fmt::Display for RetryAfterTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server asked to retry after {:?}, beyond the {:?} left of the total timeout",
            self.retry_after, self.remaining
        )
    }
}

impl std::error::Error for RetryAfterTooLong {}
