//! What every stack has inside that users never name: the innermost wrapper boxing the service's
//! error, the breaker's classifier wrapper, and a runtime-optional part as tower's `Either`.
//! The types are public (they appear in the services' types) but not reachable by path.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::bulkhead::error::BulkheadFull;
use crate::circuit_breaker::{BreakerClassifier, Outcome};
use crate::BoxError;

/// `layer` around `service` when there is one, else `service` itself: tower's `option_layer`
/// applied to a borrowed layer.
#[cfg(any(feature = "reqwest", all(test, not(harden_loom))))]
pub(crate) fn option_service<L: tower_layer::Layer<S>, S>(
    layer: Option<&L>,
    service: S,
) -> tower::util::Either<L::Service, S> {
    use tower::util::Either;
    match layer {
        Some(layer) => Either::Left(layer.layer(service)),
        None => Either::Right(service),
    }
}

/// The classifier of the stack's circuit breaker: a [`BulkheadFull`] rejection from the bulkhead
/// below it is [`Outcome::Ignored`] (the upstream was never called, so the call says nothing
/// about its health); every other outcome is judged by `C`.
#[derive(Clone, Copy, Debug, Default)]
pub struct IgnoreBulkheadFull<C>(pub(crate) C);

impl<T, C> BreakerClassifier<T, BoxError> for IgnoreBulkheadFull<C>
where
    C: BreakerClassifier<T, BoxError>,
{
    #[inline]
    fn classify(&self, result: Result<&T, &BoxError>) -> Outcome {
        match result {
            Err(e) if e.is::<BulkheadFull>() => Outcome::Ignored,
            result => self.0.classify(result),
        }
    }
}

/// The innermost wrapper of every [`ResilienceLayer`] service: the service's errors, boxed.
///
/// So the stack's error is [`BoxError`] whatever parts it has, and its breaker judges
/// `BoxError`s (its wrapper). Neither it nor its future adds a byte: for a service
/// whose error already is a `BoxError` the conversion is the identity.
#[derive(Clone, Debug)]
pub struct BoxErrors<S> {
    inner: S,
}

impl<S> BoxErrors<S> {
    /// Wraps `inner`.
    pub(crate) const fn new(inner: S) -> Self {
        BoxErrors { inner }
    }

    define_inner_service_accessors!();
}

impl<S, Request> Service<Request> for BoxErrors<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxErrorsFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        BoxErrorsFuture {
            future: self.inner.call(request),
        }
    }
}

pin_project! {
    /// Response future of [`BoxErrors`].
    pub struct BoxErrorsFuture<F> {
        #[pin]
        future: F,
    }
}

impl<F> fmt::Debug for BoxErrorsFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxErrorsFuture")
    }
}

impl<F, T, E> Future for BoxErrorsFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map_err(Into::into)
    }
}
