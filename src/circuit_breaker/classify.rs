//! What counts as a success, a failure or neither.
//!
//! The circuit breaker asks a [`BreakerClassifier`] about every finished call. Without one
//! ([`DefaultBreakerClassifier`]) `Ok` is a success and `Err` a failure, except harden's own rejections
//! coming from below (a full [bulkhead](crate::bulkhead)'s `BulkheadFull`, another breaker's
//! `CircuitOpen`), which are [`Outcome::Ignored`]: local overload says nothing about the
//! upstream, so a breaker above a bulkhead never opens because the bulkhead shed calls. This
//! holds on every path: `breaker.layer()` in a `ServiceBuilder`, [`ResilienceLayerBuilder`](crate::ResilienceLayerBuilder),
//! [`CircuitBreaker::call`](crate::circuit_breaker::CircuitBreaker::call). A classifier of your
//! own decides for itself. A classifier can also say
//! [`Outcome::Ignored`]: the call is not counted at all (opossum's `errorFilter`, resilience4j's
//! ignored exceptions), for example a 404 or a validation error that says nothing about the
//! upstream's health.
//!
//! ```
//! use harden::circuit_breaker::{breaker_classifier_fn, Outcome};
//!
//! // An HTTP-ish response: 5xx, 408 and 429 are failures, 404 is ignored, the rest succeed.
//! let classifier = breaker_classifier_fn(|result: Result<&u16, &std::io::Error>| match result {
//!     Ok(&status) if status >= 500 || status == 408 || status == 429 => Outcome::Failure,
//!     Ok(&404) => Outcome::Ignored,
//!     Ok(_) => Outcome::Success,
//!     Err(_) => Outcome::Failure,
//! });
//! # let _ = classifier;
//! ```

use std::fmt;

use crate::error::is_own_rejection;

/// How a finished call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Counts as a success.
    Success,
    /// Counts as a failure.
    Failure,
    /// Not counted: neither a success nor a failure.
    Ignored,
}

/// Decides how a call's result counts.
pub trait BreakerClassifier<T, E> {
    /// The outcome of one call.
    fn classify(&self, result: Result<&T, &E>) -> Outcome;
}

/// `Ok` is a success, `Err` a failure — but harden's own rejections (`BulkheadFull`,
/// `CircuitOpen`, as themselves or boxed in a [`BoxError`](crate::BoxError)) are ignored.
///
/// The error type must be `'static` to be recognised; the check is a type-id comparison the
/// compiler folds away for error types that can be neither.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultBreakerClassifier;

impl<T, E: 'static> BreakerClassifier<T, E> for DefaultBreakerClassifier {
    #[inline]
    fn classify(&self, result: Result<&T, &E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) if is_own_rejection(e) => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        }
    }
}

/// A classifier made from a function; see [`breaker_classifier_fn`].
#[derive(Clone, Copy)]
pub struct BreakerClassifierFn<F> {
    f: F,
}

impl<F> fmt::Debug for BreakerClassifierFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerClassifierFn")
            .finish_non_exhaustive()
    }
}

/// Wrap a function `Fn(Result<&T, &E>) -> Outcome` as a [`BreakerClassifier`].
pub fn breaker_classifier_fn<F>(f: F) -> BreakerClassifierFn<F> {
    BreakerClassifierFn { f }
}

impl<F, T, E> BreakerClassifier<T, E> for BreakerClassifierFn<F>
where
    F: Fn(Result<&T, &E>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: Result<&T, &E>) -> Outcome {
        (self.f)(result)
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use crate::bulkhead::error::BulkheadFull;
    use crate::circuit_breaker::error::CircuitOpen;
    use crate::error::is_rejection;
    use crate::BoxError;

    #[test]
    fn default_is_ok_success_err_failure() {
        let c = DefaultBreakerClassifier;
        assert_eq!(
            BreakerClassifier::<u8, ()>::classify(&c, Ok(&1)),
            Outcome::Success
        );
        assert_eq!(
            BreakerClassifier::<u8, ()>::classify(&c, Err(&())),
            Outcome::Failure
        );
    }

    // `BulkheadFull` counted as a failure, so local overload opened a breaker above a bulkhead.
    #[test]
    fn default_ignores_harden_rejections_boxed_or_not() {
        let c = DefaultBreakerClassifier;
        let full: BoxError = Box::new(BulkheadFull::new());
        let open: BoxError = Box::new(CircuitOpen::new(None));
        let other: BoxError = "boom".into();
        assert_eq!(
            BreakerClassifier::<(), BoxError>::classify(&c, Err(&full)),
            Outcome::Ignored
        );
        assert_eq!(
            BreakerClassifier::<(), BoxError>::classify(&c, Err(&open)),
            Outcome::Ignored
        );
        assert_eq!(
            BreakerClassifier::<(), BoxError>::classify(&c, Err(&other)),
            Outcome::Failure
        );
        let full = BulkheadFull::new();
        assert_eq!(
            BreakerClassifier::<(), _>::classify(&c, Err(&full)),
            Outcome::Ignored
        );
        let io = std::io::Error::other("io");
        assert_eq!(
            BreakerClassifier::<(), _>::classify(&c, Err(&io)),
            Outcome::Failure
        );
    }

    #[test]
    fn rejections_are_recognised_through_a_box() {
        let open: BoxError = Box::new(CircuitOpen::new(None));
        let full: BoxError = Box::new(BulkheadFull::new());
        let other: BoxError = "boom".into();
        assert!(is_rejection(&*open));
        assert!(is_rejection(&*full));
        assert!(!is_rejection(&*other));
    }
}
