//! The standard resilience stack, composed in the recommended order.
//!
//! ```text
//! fallback → total timeout → retry → circuit breaker → bulkhead → attempt timeout → service
//! ```
//!
//! This is the order Microsoft's standard resilience handler and resilience4j recommend: the
//! retry sees each attempt's outcome; the breaker counts every attempt, and an attempt that
//! times out is one of its failures; the retry never retries the breaker's or the bulkhead's
//! rejections; the total timeout bounds everything, backoff sleeps included; the fallback
//! answers whatever is left. A full bulkhead's rejection is not one of the breaker's failures:
//! it says nothing about the upstream, so a burst of local overload cannot open the circuit on
//! a healthy upstream (the stack's breaker ignores it; see [`IgnoreBulkheadFull`]). Every part
//! is optional. [`Resilience`] builds the stack and checks
//! that its parts fit together; the result, a [`ResilienceLayer`], wraps any tower service.
//!
//! # Default
//!
//! With nothing configured the layer passes calls through (errors boxed):
//!
//! ```
//! use harden::Resilience;
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), harden::BoxError> {
//! let layer = Resilience::new().build()?;
//! let service = layer.layer(service_fn(|x: u32| async move { Ok::<_, harden::BoxError>(x + 1) }));
//! assert_eq!(service.oneshot(1).await?, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Customised
//!
//! ```
//! use std::time::Duration;
//! use harden::bulkhead::BulkheadLayer;
//! use harden::circuit_breaker::CircuitBreaker;
//! use harden::fallback::FallbackLayer;
//! use harden::retry::RetryPolicy;
//! use harden::{BoxError, Resilience};
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//!
//! let breaker = CircuitBreaker::builder().name("inventory").build()?;
//! let layer = Resilience::new()
//!     .fallback(FallbackLayer::new(|_err: BoxError| async { Ok("cached") }))
//!     .total_timeout(Duration::from_secs(5))
//!     .retry(RetryPolicy::builder().max_attempts(3).build()?)
//!     .circuit_breaker(breaker.layer())
//!     .bulkhead(BulkheadLayer::new(64))
//!     .attempt_timeout(Duration::from_secs(1))
//!     .build()?;
//! let service = layer.layer(service_fn(|_: ()| async { Err::<&str, BoxError>("down".into()) }));
//! assert_eq!(service.oneshot(()).await?, "cached");
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! The service's error is [`BoxError`]: the inner service's error or one of the parts'
//! rejections ([`Elapsed`](crate::timeout::error::Elapsed),
//! [`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen),
//! [`BulkheadFull`]), unless the fallback turns it into a
//! response. [`Resilience::build`] returns a [`ConfigError`] when the parts do not fit together:
//! an attempt timeout longer than the total timeout (retries could never happen), or a breaker
//! window shorter than twice the attempt timeout (the window would forget a timed-out attempt
//! about as soon as it learnt of it).
//!
//! The timeouts report in metrics as `harden_timeouts_total{timeout="total"}` and
//! `{timeout="attempt"}`; a stack given a [`name`](Resilience::name) prefixes them with it
//! (`{timeout="payments.total"}`), so two stacks in one process export distinct series. The
//! breaker, retry and bulkhead are labelled by their own names.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::{Identity, Layer};
use tower_service::Service;

use crate::bulkhead::error::BulkheadFull;
use crate::bulkhead::{Bulkhead, BulkheadLayer};
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::classify::{Classify, Outcome};
use crate::fallback::FallbackLayer;
use crate::retry::RetryLayer;
use crate::timeout::{Timeout, TimeoutLayer};
use crate::{BoxError, ConfigError};

/// The metrics name of the stack's total timeout.
pub const TOTAL_TIMEOUT_NAME: &str = "total";
/// The metrics name of the stack's per-attempt timeout.
pub const ATTEMPT_TIMEOUT_NAME: &str = "attempt";

/// Builds a [`ResilienceLayer`]: the standard stack, each part optional.
///
/// The fallback, retry and breaker parts change the builder's type (they are generic over the
/// user's functions and classifiers); the timeouts and the bulkhead do not, so they can be set
/// from configuration with `Option`s. See the [module docs](self).
#[must_use = "a builder does nothing until `build` is called"]
pub struct Resilience<F = Identity, R = Identity, B = Identity> {
    fallback: F,
    total_timeout: Option<Duration>,
    retry: R,
    breaker: B,
    breaker_window: Option<Duration>,
    bulkhead: Option<BulkheadLayer>,
    attempt_timeout: Option<Duration>,
    name: Option<std::sync::Arc<str>>,
}

impl Resilience {
    /// An empty stack: every part off.
    pub fn new() -> Self {
        Resilience {
            fallback: Identity::new(),
            total_timeout: None,
            retry: Identity::new(),
            breaker: Identity::new(),
            breaker_window: None,
            bulkhead: None,
            attempt_timeout: None,
            name: None,
        }
    }
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience::new()
    }
}

impl<F, R, B> Resilience<F, R, B> {
    /// The outermost part: turns errors into responses.
    pub fn fallback<Fb, P>(
        self,
        fallback: FallbackLayer<Fb, P>,
    ) -> Resilience<FallbackLayer<Fb, P>, R, B> {
        Resilience {
            fallback,
            total_timeout: self.total_timeout,
            retry: self.retry,
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Names the stack: the labels of its own parts (the timeouts) are prefixed with it,
    /// `harden_timeouts_total{timeout="<name>.total"}` and `"<name>.attempt"`. Without a name
    /// they are `"total"` and `"attempt"`, which collide when a process runs two stacks.
    pub fn name(self, name: impl Into<std::sync::Arc<str>>) -> Self {
        Resilience {
            name: Some(name.into()),
            ..self
        }
    }

    /// Bounds the whole call, retries and backoff sleeps included.
    pub fn total_timeout(self, timeout: impl Into<Option<Duration>>) -> Self {
        Resilience {
            total_timeout: timeout.into(),
            ..self
        }
    }

    /// Retries failed attempts; takes a [`RetryLayer`] or a
    /// [`RetryPolicy`](crate::retry::RetryPolicy).
    pub fn retry<C, H>(
        self,
        retry: impl Into<RetryLayer<C, H>>,
    ) -> Resilience<F, RetryLayer<C, H>, B> {
        Resilience {
            fallback: self.fallback,
            total_timeout: self.total_timeout,
            retry: retry.into(),
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Counts every attempt and rejects calls while open (`breaker.layer()`).
    ///
    /// The breaker's classifier is wrapped in [`IgnoreBulkheadFull`]: the bulkhead's rejections
    /// are not counted; every other outcome is judged by the layer's classifier.
    pub fn circuit_breaker<C>(
        self,
        breaker: CircuitBreakerLayer<C>,
    ) -> Resilience<F, R, CircuitBreakerLayer<IgnoreBulkheadFull<C>>> {
        Resilience {
            fallback: self.fallback,
            total_timeout: self.total_timeout,
            retry: self.retry,
            breaker_window: breaker.window_length(),
            breaker: breaker.map_classifier(IgnoreBulkheadFull),
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Limits concurrent attempts, rejecting the excess.
    pub fn bulkhead(self, bulkhead: impl Into<Option<BulkheadLayer>>) -> Self {
        Resilience {
            bulkhead: bulkhead.into(),
            ..self
        }
    }

    /// Bounds each attempt; a timed-out attempt is a breaker failure and may be retried.
    pub fn attempt_timeout(self, timeout: impl Into<Option<Duration>>) -> Self {
        Resilience {
            attempt_timeout: timeout.into(),
            ..self
        }
    }

    /// Checks that the parts fit together and returns the layer.
    ///
    /// The retry learns the total timeout here: unless its policy has a
    /// [`total_timeout`](crate::retry::RetryPolicyBuilder::total_timeout) of its own, a
    /// server-requested delay longer than what is left of this stack's total timeout fails the
    /// call at once with [`RetryAfterTooLong`](crate::retry::error::RetryAfterTooLong).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an attempt timeout longer than the total timeout, or a breaker window
    /// shorter than twice the attempt timeout.
    pub fn build(self) -> Result<ResilienceLayer<F, R, B>, ConfigError>
    where
        R: retry_part::RetryPart,
    {
        if let (Some(attempt), Some(total)) = (self.attempt_timeout, self.total_timeout) {
            if attempt > total {
                return Err(ConfigError::new(
                    "attempt_timeout",
                    format!(
                        "{attempt:?} is outside (0, total_timeout = {total:?}]: an attempt may not outlast the whole call"
                    ),
                ));
            }
        }
        if let (Some(attempt), Some(window)) = (self.attempt_timeout, self.breaker_window) {
            if window < attempt.saturating_mul(2) {
                return Err(ConfigError::new(
                    "circuit_breaker",
                    format!(
                        "a rolling window of {window:?} is shorter than twice the attempt timeout ({attempt:?}); \
                         use a window of at least {:?}",
                        attempt.saturating_mul(2)
                    ),
                ));
            }
        }
        let label = |part: &str| match &self.name {
            Some(name) => format!("{name}.{part}"),
            None => part.to_owned(),
        };
        Ok(ResilienceLayer {
            fallback: self.fallback,
            total_timeout: self
                .total_timeout
                .map(|d| TimeoutLayer::new(d).name(label(TOTAL_TIMEOUT_NAME))),
            retry: self.retry.with_total_timeout(self.total_timeout),
            breaker: self.breaker,
            bulkhead: self.bulkhead,
            attempt_timeout: self
                .attempt_timeout
                .map(|d| TimeoutLayer::new(d).name(label(ATTEMPT_TIMEOUT_NAME))),
        })
    }
}

mod retry_part {
    use std::time::Duration;

    /// The retry slot of [`Resilience`](super::Resilience): no retry, or a
    /// [`RetryLayer`](crate::retry::RetryLayer) that learns the stack's total timeout.
    pub trait RetryPart {
        fn with_total_timeout(self, total_timeout: Option<Duration>) -> Self;
    }

    impl RetryPart for tower_layer::Identity {
        fn with_total_timeout(self, _: Option<Duration>) -> Self {
            self
        }
    }

    impl<C, H> RetryPart for crate::retry::RetryLayer<C, H> {
        fn with_total_timeout(self, total_timeout: Option<Duration>) -> Self {
            self.map_policy(|p| p.with_default_total_timeout(total_timeout))
        }
    }
}

impl<F, R, B> fmt::Debug for Resilience<F, R, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resilience")
            .field("total_timeout", &self.total_timeout)
            .field("breaker_window", &self.breaker_window)
            .field("bulkhead", &self.bulkhead)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

/// The classifier of the stack's circuit breaker: a [`BulkheadFull`] rejection from the bulkhead
/// below it is [`Outcome::Ignored`] (the upstream was never called, so the call says nothing
/// about its health); every other outcome is judged by `C`.
#[derive(Clone, Copy, Debug, Default)]
pub struct IgnoreBulkheadFull<C>(pub C);

impl<T, C> Classify<T, BoxError> for IgnoreBulkheadFull<C>
where
    C: Classify<T, BoxError>,
{
    #[inline]
    fn classify(&self, result: Result<&T, &BoxError>) -> Outcome {
        match result {
            Err(e) if e.is::<BulkheadFull>() => Outcome::Ignored,
            result => self.0.classify(result),
        }
    }
}

/// The standard stack as one layer; built by [`Resilience`].
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct ResilienceLayer<F = Identity, R = Identity, B = Identity> {
    fallback: F,
    total_timeout: Option<TimeoutLayer>,
    retry: R,
    breaker: B,
    bulkhead: Option<BulkheadLayer>,
    attempt_timeout: Option<TimeoutLayer>,
}

impl<F, R, B> fmt::Debug for ResilienceLayer<F, R, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceLayer")
            .field("total_timeout", &self.total_timeout)
            .field("bulkhead", &self.bulkhead)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

/// The attempt-timeout part around a service `S`.
pub type AttemptTimeout<S> = Maybe<Timeout<S>, S>;
/// The bulkhead part around `S` (already wrapped by the attempt timeout).
pub type BulkheadPart<S> = Maybe<Bulkhead<AttemptTimeout<S>>, AttemptTimeout<S>>;

impl<S, F, R, B> Layer<S> for ResilienceLayer<F, R, B>
where
    B: Layer<BulkheadPart<S>>,
    R: Layer<B::Service>,
    F: Layer<Maybe<Timeout<R::Service>, R::Service>>,
{
    type Service = F::Service;

    fn layer(&self, service: S) -> Self::Service {
        let service = Maybe::wrap(self.attempt_timeout.as_ref(), service);
        let service = Maybe::wrap(self.bulkhead.as_ref(), service);
        let service = self.breaker.layer(service);
        let service = self.retry.layer(service);
        let service = Maybe::wrap(self.total_timeout.as_ref(), service);
        self.fallback.layer(service)
    }
}

/// A part of the stack that is either on (`A`, the wrapped service) or off (`B`, the bare one).
#[derive(Clone, Debug)]
pub struct Maybe<A, B> {
    either: Either<A, B>,
}

#[derive(Clone, Debug)]
enum Either<A, B> {
    On(A),
    Off(B),
}

impl<A, B> Maybe<A, B> {
    pub(crate) fn wrap<L: Layer<B, Service = A>>(layer: Option<&L>, service: B) -> Self {
        let either = match layer {
            Some(layer) => Either::On(layer.layer(service)),
            None => Either::Off(service),
        };
        Maybe { either }
    }

    /// Whether the part is on.
    pub fn is_on(&self) -> bool {
        matches!(self.either, Either::On(_))
    }
}

impl<A, B, Request> Service<Request> for Maybe<A, B>
where
    A: Service<Request>,
    A::Error: Into<BoxError>,
    B: Service<Request, Response = A::Response>,
    B::Error: Into<BoxError>,
{
    type Response = A::Response;
    type Error = BoxError;
    type Future = MaybeFuture<A::Future, B::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.either {
            Either::On(a) => a.poll_ready(cx).map_err(Into::into),
            Either::Off(b) => b.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        let kind = match &mut self.either {
            Either::On(a) => Kind::On {
                future: a.call(request),
            },
            Either::Off(b) => Kind::Off {
                future: b.call(request),
            },
        };
        MaybeFuture { kind }
    }
}

pin_project! {
    /// Response future of [`Maybe`].
    pub struct MaybeFuture<A, B> {
        #[pin]
        kind: Kind<A, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<A, B> {
        On { #[pin] future: A },
        Off { #[pin] future: B },
    }
}

impl<A, B> fmt::Debug for MaybeFuture<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaybeFuture")
    }
}

impl<A, B, T, EA, EB> Future for MaybeFuture<A, B>
where
    A: Future<Output = Result<T, EA>>,
    B: Future<Output = Result<T, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::On { future } => future.poll(cx).map_err(Into::into),
            KindProj::Off { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use std::future::{ready, Ready};
    use tower::ServiceExt;

    /// Not ready on its first `poll_ready`, then ready; answers `Ok(x)` or, for `x == 0`, an
    /// `std::io::Error` (not a `BoxError`, to see the boxing).
    #[derive(Clone, Default)]
    struct Slow {
        polled: bool,
        calls: u32,
    }

    impl Service<u32> for Slow {
        type Response = u32;
        type Error = std::io::Error;
        type Future = Ready<Result<u32, std::io::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.polled {
                Poll::Ready(Ok(()))
            } else {
                self.polled = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }

        fn call(&mut self, x: u32) -> Self::Future {
            self.calls += 1;
            ready(if x == 0 {
                Err(std::io::Error::other("zero"))
            } else {
                Ok(x)
            })
        }
    }

    /// A layer adding 100 to every answer, so that "on" is visible.
    struct Plus100;

    #[derive(Clone)]
    struct Plus100Service<S>(S);

    impl<S> Layer<S> for Plus100 {
        type Service = Plus100Service<S>;
        fn layer(&self, inner: S) -> Self::Service {
            Plus100Service(inner)
        }
    }

    impl<S: Service<u32, Response = u32>> Service<u32> for Plus100Service<S> {
        type Response = u32;
        type Error = S::Error;
        type Future = Plus100Future<S::Future>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.0.poll_ready(cx)
        }

        fn call(&mut self, x: u32) -> Self::Future {
            Plus100Future(Box::pin(self.0.call(x)))
        }
    }

    struct Plus100Future<F>(Pin<Box<F>>);

    impl<F: Future<Output = Result<u32, E>>, E> Future for Plus100Future<F> {
        type Output = Result<u32, E>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.0.as_mut().poll(cx).map_ok(|x| x + 100)
        }
    }

    #[tokio::test]
    async fn maybe_on_wraps_and_off_passes_through() {
        let on: Maybe<Plus100Service<Slow>, Slow> = Maybe::wrap(Some(&Plus100), Slow::default());
        let off: Maybe<Plus100Service<Slow>, Slow> = Maybe::wrap(None::<&Plus100>, Slow::default());
        assert!(on.is_on());
        assert!(!off.is_on());

        for (mut service, expected) in [(on, 107), (off, 7)] {
            // poll_ready is forwarded: pending once, then ready.
            assert!(matches!(
                futures::poll!(std::future::poll_fn(|cx| service.poll_ready(cx))),
                Poll::Pending
            ));
            service.ready().await.unwrap();
            assert_eq!(service.call(7).await.unwrap(), expected);
            // Errors come out boxed with the original inside.
            let err = service.ready().await.unwrap().call(0).await.unwrap_err();
            assert!(err.is::<std::io::Error>(), "{err}");
            let inner = match &service.either {
                Either::On(Plus100Service(s)) | Either::Off(s) => s,
            };
            assert_eq!(inner.calls, 2);
        }
    }

    #[test]
    fn stack_classifier_ignores_only_bulkhead_full() {
        // Every `Err` a failure, so only the wrapper can ignore anything (the default classifier
        // also ignores `CircuitOpen`).
        let c = IgnoreBulkheadFull(crate::classify::classify_fn(
            |r: Result<&(), &BoxError>| match r {
                Ok(_) => Outcome::Success,
                Err(_) => Outcome::Failure,
            },
        ));
        let full: BoxError = Box::new(BulkheadFull::new());
        let open: BoxError = Box::new(crate::circuit_breaker::error::CircuitOpen::new(None));
        let other: BoxError = "boom".into();
        assert_eq!(
            Classify::<(), _>::classify(&c, Err(&full)),
            Outcome::Ignored
        );
        assert_eq!(
            Classify::<(), _>::classify(&c, Err(&open)),
            Outcome::Failure
        );
        assert_eq!(
            Classify::<(), _>::classify(&c, Err(&other)),
            Outcome::Failure
        );
        assert_eq!(
            Classify::<(), BoxError>::classify(&c, Ok(&())),
            Outcome::Success
        );
    }
}
