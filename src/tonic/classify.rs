//! What a gRPC status means to a circuit breaker, and gRFC A6's retry throttle.

use std::sync::atomic::{AtomicU32, Ordering};

use tonic::Code;

use super::code::CodeSet;
use super::config::RetryThrottling;
use crate::circuit_breaker::Outcome;

/// How a gRPC status counts for a circuit breaker: by default `UNAVAILABLE`,
/// `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS` (and transport errors) are failures,
/// `RESOURCE_EXHAUSTED` is ignored (the caller is too fast, like an HTTP 429), and every other
/// code is a success: a `NOT_FOUND` or `INVALID_ARGUMENT` is the caller's mistake, not the
/// upstream's sickness.
///
/// ```
/// use harden::circuit_breaker::Outcome;
/// use harden::tonic::GrpcBreakerClassifier;
/// use tonic::Code;
///
/// let classifier = GrpcBreakerClassifier::new().failure(Code::ResourceExhausted);
/// assert_eq!(classifier.outcome(Code::ResourceExhausted), Outcome::Failure);
/// assert_eq!(classifier.outcome(Code::NotFound), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcBreakerClassifier {
    failures: CodeSet,
    ignored: CodeSet,
}

impl Default for GrpcBreakerClassifier {
    fn default() -> Self {
        GrpcBreakerClassifier::new()
    }
}

impl GrpcBreakerClassifier {
    /// The default classification (see the type's docs).
    pub const fn new() -> Self {
        GrpcBreakerClassifier {
            failures: CodeSet::of(&[
                Code::Unavailable,
                Code::DeadlineExceeded,
                Code::Internal,
                Code::Unknown,
                Code::DataLoss,
            ]),
            ignored: CodeSet::of(&[Code::ResourceExhausted]),
        }
    }

    /// Count `code` as a failure.
    #[must_use]
    pub fn failure(mut self, code: Code) -> Self {
        self.failures.insert(code as i32);
        self.ignored.remove(code as i32);
        self
    }

    /// Do not count `code` at all.
    #[must_use]
    pub fn ignore(mut self, code: Code) -> Self {
        self.ignored.insert(code as i32);
        self.failures.remove(code as i32);
        self
    }

    /// Count `code` as a success.
    #[must_use]
    pub fn success(mut self, code: Code) -> Self {
        self.failures.remove(code as i32);
        self.ignored.remove(code as i32);
        self
    }

    /// How `code` counts.
    pub fn outcome(&self, code: Code) -> Outcome {
        self.outcome_of(code as i32)
    }

    pub(crate) fn outcome_of(&self, code: i32) -> Outcome {
        if self.failures.contains(code) {
            Outcome::Failure
        } else if self.ignored.contains(code) {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }
}

/// gRFC A6's retry throttle, to the letter: tokens start at `maxTokens`, a failed attempt (a
/// retryable code, or pushback saying not to retry) takes one, a success gives back
/// `tokenRatio`; retries are allowed only while tokens are above half of `maxTokens`.
/// Counted in thousandths, as A6 allows three decimals.
#[derive(Debug)]
pub(crate) struct Throttle {
    tokens: AtomicU32,
    max: u32,
    ratio: u32,
}

impl Throttle {
    pub(crate) fn new(config: RetryThrottling) -> Throttle {
        Throttle {
            tokens: AtomicU32::new(config.max_milli),
            max: config.max_milli,
            ratio: config.ratio_milli,
        }
    }

    pub(crate) fn fail(&self) {
        // Relaxed: one counter, read on its own; nothing else is published through it.
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(1000))
            });
    }

    pub(crate) fn succeed(&self) {
        let max = self.max;
        // Relaxed: as in `fail`.
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(self.ratio).min(max))
            });
    }

    pub(crate) fn allows_retry(&self) -> bool {
        // Relaxed: as in `fail`; a stale read only moves one decision by one call.
        self.tokens.load(Ordering::Relaxed) > self.max / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_classification() {
        let c = GrpcBreakerClassifier::new();
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::Unknown,
            Code::DataLoss,
        ] {
            assert_eq!(c.outcome(code), Outcome::Failure, "{code:?}");
        }
        assert_eq!(c.outcome(Code::ResourceExhausted), Outcome::Ignored);
        for code in [
            Code::Ok,
            Code::NotFound,
            Code::InvalidArgument,
            Code::Cancelled,
        ] {
            assert_eq!(c.outcome(code), Outcome::Success, "{code:?}");
        }
        assert_eq!(c.outcome_of(99), Outcome::Success);
    }

    proptest! {
        // The atomic throttle against A6's sequential definition.
        #[test]
        fn throttle_follows_a6(max in 1u32..100, ratio_milli in 1u32..2000, events in proptest::collection::vec(any::<bool>(), 0..200)) {
            let t = Throttle::new(RetryThrottling { max_milli: max * 1000, ratio_milli });
            let (max, ratio) = (i64::from(max) * 1000, i64::from(ratio_milli));
            let mut model = max;
            for success in events {
                if success {
                    t.succeed();
                    model = (model + ratio).min(max);
                } else {
                    t.fail();
                    model = (model - 1000).max(0);
                }
                prop_assert_eq!(t.allows_retry(), 2 * model > max);
            }
        }
    }
}
