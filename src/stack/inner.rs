//! What every stack has inside that users never name: the innermost wrapper boxing the service's
//! error, the breaker's classifier wrapper, and the timeouts and bulkhead that configuration
//! turns on or off.
//! The types are public (they appear in the services' types) but not reachable by path.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use std::time::Duration;

use crate::bulkhead::error::BulkheadFull;
use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::{BreakerClassifier, Outcome};
use crate::metrics::Counter;
use crate::sync::Arc;
use crate::timeout::TimeoutLayer;
use crate::BoxError;

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

/// The slot of a timeout that configuration turns on or off (an `Option<Duration>`): one
/// [`OptionalTimeout`] service either way, so an absent timeout costs a branch, not a level of
/// `Either` around the call and its future.
#[derive(Clone, Debug)]
pub struct OptionalTimeoutLayer(pub(crate) Option<TimeoutLayer>);

impl<S> tower_layer::Layer<S> for OptionalTimeoutLayer {
    type Service = OptionalTimeout<S>;

    fn layer(&self, inner: S) -> OptionalTimeout<S> {
        OptionalTimeout {
            inner,
            timeout: self.0.as_ref().map(TimeoutLayer::timeout),
            timeouts: self
                .0
                .as_ref()
                .map_or_else(crate::metrics::noop_counter, TimeoutLayer::counter),
        }
    }
}

/// A [`Timeout`](crate::timeout::Timeout) that may be off: made by a stack whose timeout was
/// given as an `Option<Duration>`. Its future is the timeout's, which makes no timer when off.
#[derive(Clone, Debug)]
pub struct OptionalTimeout<S> {
    inner: S,
    timeout: Option<Duration>,
    timeouts: Counter,
}

impl<S> OptionalTimeout<S> {
    /// The duration each call is allowed; `None` when off.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    define_inner_service_accessors!();
}

impl<S, Request> Service<Request> for OptionalTimeout<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = crate::timeout::future::ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        crate::timeout::future::ResponseFuture::new(
            self.inner.call(request),
            self.timeout,
            self.timeouts.clone(),
        )
    }
}

/// The slot of a bulkhead that configuration turns on or off (an `Option<BulkheadLayer>`): one
/// [`OptionalBulkhead`] service either way, so an absent bulkhead costs a branch, not a level
/// of `Either` around the call and its future.
#[derive(Clone, Debug)]
pub struct OptionalBulkheadLayer(pub(crate) Option<BulkheadLayer>);

impl<S> tower_layer::Layer<S> for OptionalBulkheadLayer {
    type Service = OptionalBulkhead<S>;

    fn layer(&self, inner: S) -> OptionalBulkhead<S> {
        OptionalBulkhead {
            inner,
            state: self.0.as_ref().map(BulkheadLayer::service_state),
        }
    }
}

/// A [`Bulkhead`](crate::bulkhead::Bulkhead) that may be off: made by a stack whose bulkhead
/// was given as an `Option<BulkheadLayer>`. Its future is the bulkhead's, holding no slot when
/// off.
#[derive(Clone)]
pub struct OptionalBulkhead<S> {
    inner: S,
    state: Option<Arc<crate::bulkhead::State>>,
}

impl<S> OptionalBulkhead<S> {
    /// Calls in flight now, across every service sharing this bulkhead; `None` when off.
    pub fn in_flight(&self) -> Option<usize> {
        self.state.as_ref().map(|s| s.in_flight())
    }

    define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for OptionalBulkhead<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OptionalBulkhead")
            .field("inner", &self.inner)
            .field("max_concurrent", &self.state.as_ref().map(|s| s.max()))
            .finish()
    }
}

impl<S, Request> Service<Request> for OptionalBulkhead<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = crate::bulkhead::future::ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Never pending or failing because of the bulkhead: a full bulkhead rejects in `call`.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        use crate::bulkhead::future::ResponseFuture;
        let Some(state) = &self.state else {
            return ResponseFuture::unlimited(self.inner.call(request));
        };
        match crate::bulkhead::Permit::acquire(state) {
            // The permit exists before the inner `call`, so even a panic there returns the slot.
            Some(permit) => ResponseFuture::called(self.inner.call(request), permit),
            None => {
                state.note_rejected();
                ResponseFuture::rejected()
            }
        }
    }
}
