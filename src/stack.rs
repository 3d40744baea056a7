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
//! is optional, and a part not set costs nothing (below). [`ResilienceLayerBuilder`] builds the stack and
//! checks that its parts fit together; the result, a [`ResilienceLayer`], wraps any tower
//! service.
//!
//! # Defaults
//!
//! | part | default |
//! |---|---|
//! | every part (fallback, total timeout, retry, breaker, bulkhead, attempt timeout) | off: not in the stack |
//! | `name` | none: the timeouts are labelled [`TOTAL_TIMEOUT_NAME`] = `"total"` and [`ATTEMPT_TIMEOUT_NAME`] = `"attempt"` |
//!
//! With nothing configured the layer passes calls through (errors boxed):
//!
//! ```
//! use harden::{ResilienceLayer, ResilienceLayerBuilder};
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), harden::BoxError> {
//! let layer = ResilienceLayer::builder().build()?;
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
//! use harden::{BoxError, ResilienceLayer, ResilienceLayerBuilder};
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//!
//! let breaker = CircuitBreaker::builder().name("inventory").build()?;
//! let layer = ResilienceLayer::builder()
//!     .fallback(FallbackLayer::new(|_err: BoxError| async { Ok("cached") }))
//!     .total_timeout(Duration::from_secs(5))
//!     .retry(RetryPolicy::builder().max_attempts(3).build()?)
//!     .circuit_breaker(breaker.layer())
//!     .bulkhead(BulkheadLayer::new(64))
//!     .attempt_timeout(Duration::from_secs(1))
//!     .name("inventory")
//!     .build()?;
//! let service = layer.layer(service_fn(|_: ()| async { Err::<&str, BoxError>("down".into()) }));
//! assert_eq!(service.oneshot(()).await?, "cached");
//! # Ok(())
//! # }
//! ```
//!
//! # Absent parts cost nothing
//!
//! Each part is a type parameter of the builder and of the layer (`ResilienceLayerBuilder<F, T, R, B, C,
//! A>`: fallback, total timeout, retry, breaker, bulkhead — a concurrency limit —, attempt
//! timeout; each [`Identity`] until set), so the service a layer makes holds exactly the parts
//! that were set, nested as a hand-built `ServiceBuilder` stack would nest them: the same size,
//! the same future, no branch for a part that is not there. The one addition is the innermost
//! [`BoxErrors`], which boxes the service's error (so the stack's error is always [`BoxError`]
//! and its breaker judges `BoxError`s); it adds no byte, and for a service whose error already
//! is a `BoxError` its conversion is the identity.
//!
//! A part that configuration turns on or off takes an `Option` instead: `total_timeout`,
//! `attempt_timeout` (`Option<Duration>`) and `bulkhead` (`Option<BulkheadLayer>`) then put a
//! [`MaybeLayer`] in the stack, whose [`Maybe`] service keeps the part's size and a branch
//! whether it is on or off — what tower's `option_layer` does. The HTTP preset
//! ([`HttpLayerBuilder`](crate::http::HttpLayerBuilder)) builds its stack that way, since each of those
//! parts can be `None` there.
//!
//! ```
//! use std::time::Duration;
//! use harden::bulkhead::BulkheadLayer;
//! use harden::{ResilienceLayer, ResilienceLayerBuilder};
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), harden::BoxError> {
//! # let max_concurrent_from_config: Option<usize> = None;
//! let layer = ResilienceLayer::builder()
//!     .total_timeout(Duration::from_secs(5))             // always on: in the type
//!     .bulkhead(max_concurrent_from_config.map(BulkheadLayer::new)) // decided at run time
//!     .build()?;
//! let service = layer.layer(service_fn(|x: u32| async move { Ok::<_, harden::BoxError>(x) }));
//! assert_eq!(service.oneshot(7).await?, 7);
//! # Ok(())
//! # }
//! ```
//!
//! Per call the stack does what the hand-built one does, with one difference that is not the
//! builder's: its retry knows the total timeout (see [`build`](ResilienceLayerBuilder::build)), and the
//! retry starts that deadline when its future first waits, without a clock read per call.
//!
//! # Errors
//!
//! The service's error is [`BoxError`]: the inner service's error or one of the parts'
//! rejections ([`Elapsed`](crate::timeout::error::Elapsed),
//! [`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen),
//! [`BulkheadFull`]), unless the fallback turns it into a
//! response. [`ResilienceLayerBuilder::build`] returns a [`ConfigError`] when the parts do not fit together:
//! an attempt timeout longer than the total timeout (retries could never happen), or a breaker
//! window shorter than twice the attempt timeout (the window would forget a timed-out attempt
//! about as soon as it learnt of it).
//!
//! The timeouts report in metrics as `harden_timeouts_total{timeout="total"}` and
//! `{timeout="attempt"}`; a stack given a [`name`](ResilienceLayerBuilder::name) prefixes them with it
//! (`{timeout="payments.total"}`), so two stacks in one process export distinct series. The
//! breaker, retry and bulkhead are labelled by their own names.
//!
//! # Compared with a `tower::ServiceBuilder`
//!
//! tower has no composed stack; the same parts in a `ServiceBuilder` (with
//! [`ServiceBuilderExt`](crate::ServiceBuilderExt)) make the same service, minus the checks of
//! `build()`, the breaker's [`IgnoreBulkheadFull`] (which only matters with a custom
//! classifier: the default one already ignores harden's rejections), the retry's knowledge of
//! the total timeout, and the boxing of an inner error. In a `ServiceBuilder` the order is
//! the user's to get right; here it is fixed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::{Identity, Layer};
use tower_service::Service;

use crate::bulkhead::error::BulkheadFull;
use crate::bulkhead::Bulkhead;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::circuit_breaker::{BreakerClassifier, Outcome};
use crate::fallback::FallbackLayer;
use crate::retry::RetryLayer;
use crate::timeout::Timeout;
use crate::{BoxError, ConfigError};

/// The metrics name of the stack's total timeout.
pub const TOTAL_TIMEOUT_NAME: &str = "total";
/// The metrics name of the stack's per-attempt timeout.
pub const ATTEMPT_TIMEOUT_NAME: &str = "attempt";

/// Builds a [`ResilienceLayer`]: the standard stack, each part optional.
///
/// Each part is a type parameter, in stack order: `F` fallback, `T` total timeout, `R` retry,
/// `B` circuit breaker, `C` bulkhead (concurrency limit), `A` attempt timeout. A part not set is
/// [`Identity`] and costs nothing; setting it changes the builder's type. The timeouts and the
/// bulkhead also take an `Option`, for parts decided at run time (see
/// [the module docs](self#absent-parts-cost-nothing)).
#[must_use = "a builder does nothing until `build` is called"]
pub struct ResilienceLayerBuilder<
    F = Identity,
    T = Identity,
    R = Identity,
    B = Identity,
    C = Identity,
    A = Identity,
> {
    fallback: F,
    total_timeout: T,
    retry: R,
    breaker: B,
    breaker_window: Option<Duration>,
    bulkhead: C,
    attempt_timeout: A,
    name: Option<Arc<str>>,
}

impl ResilienceLayer {
    /// A builder of the stack, every part off.
    pub fn builder() -> ResilienceLayerBuilder {
        ResilienceLayerBuilder::new()
    }
}

impl ResilienceLayerBuilder {
    /// An empty stack: every part off (the same as [`ResilienceLayer::builder`]).
    pub fn new() -> Self {
        ResilienceLayerBuilder {
            fallback: Identity::new(),
            total_timeout: Identity::new(),
            retry: Identity::new(),
            breaker: Identity::new(),
            breaker_window: None,
            bulkhead: Identity::new(),
            attempt_timeout: Identity::new(),
            name: None,
        }
    }
}

impl Default for ResilienceLayerBuilder {
    fn default() -> Self {
        ResilienceLayerBuilder::new()
    }
}

impl<F, T, R, B, C, A> ResilienceLayerBuilder<F, T, R, B, C, A> {
    /// The outermost part: turns errors into responses.
    pub fn fallback<Fb, P>(
        self,
        fallback: FallbackLayer<Fb, P>,
    ) -> ResilienceLayerBuilder<FallbackLayer<Fb, P>, T, R, B, C, A> {
        ResilienceLayerBuilder {
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
    pub fn name(self, name: impl Into<Arc<str>>) -> Self {
        ResilienceLayerBuilder {
            name: Some(name.into()),
            ..self
        }
    }

    /// Bounds the whole call, retries and backoff sleeps included.
    ///
    /// A [`Duration`] puts the part in the stack's type; an `Option<Duration>` decides at run
    /// time (`None`: no total timeout), at the cost of a branch and the timeout's size.
    pub fn total_timeout<D: part::IntoTimeout>(
        self,
        timeout: D,
    ) -> ResilienceLayerBuilder<F, D::Slot, R, B, C, A> {
        ResilienceLayerBuilder {
            fallback: self.fallback,
            total_timeout: timeout.into_slot(),
            retry: self.retry,
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Retries failed attempts; takes a [`RetryLayer`] or a
    /// [`RetryPolicy`](crate::retry::RetryPolicy).
    pub fn retry<Rc, Rh>(
        self,
        retry: impl Into<RetryLayer<Rc, Rh>>,
    ) -> ResilienceLayerBuilder<F, T, RetryLayer<Rc, Rh>, B, C, A> {
        ResilienceLayerBuilder {
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
    pub fn circuit_breaker<Cl>(
        self,
        breaker: CircuitBreakerLayer<Cl>,
    ) -> ResilienceLayerBuilder<F, T, R, CircuitBreakerLayer<IgnoreBulkheadFull<Cl>>, C, A> {
        ResilienceLayerBuilder {
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
    ///
    /// A [`BulkheadLayer`](crate::bulkhead::BulkheadLayer) puts the part in the stack's type;
    /// an `Option<BulkheadLayer>` decides at run time (`None`: no bulkhead), at the cost of a
    /// branch and the bulkhead's size.
    pub fn bulkhead<K: part::IntoBulkhead>(
        self,
        bulkhead: K,
    ) -> ResilienceLayerBuilder<F, T, R, B, K::Slot, A> {
        ResilienceLayerBuilder {
            fallback: self.fallback,
            total_timeout: self.total_timeout,
            retry: self.retry,
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: bulkhead.into_slot(),
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Bounds each attempt; a timed-out attempt is a breaker failure and may be retried.
    ///
    /// A [`Duration`] puts the part in the stack's type; an `Option<Duration>` decides at run
    /// time (`None`: no attempt timeout), at the cost of a branch and the timeout's size.
    pub fn attempt_timeout<D: part::IntoTimeout>(
        self,
        timeout: D,
    ) -> ResilienceLayerBuilder<F, T, R, B, C, D::Slot> {
        ResilienceLayerBuilder {
            fallback: self.fallback,
            total_timeout: self.total_timeout,
            retry: self.retry,
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: self.bulkhead,
            attempt_timeout: timeout.into_slot(),
            name: self.name,
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
    pub fn build(self) -> Result<ResilienceLayer<F, T, R, B, C, A>, ConfigError>
    where
        T: part::TimeoutSlot,
        R: part::RetrySlot,
        A: part::TimeoutSlot,
    {
        let total = self.total_timeout.duration();
        let attempt = self.attempt_timeout.duration();
        if let (Some(attempt), Some(total)) = (attempt, total) {
            if attempt > total {
                return Err(ConfigError::new(
                    "attempt_timeout",
                    format!(
                        "{attempt:?} is outside (0, total_timeout = {total:?}]: an attempt may not outlast the whole call"
                    ),
                ));
            }
        }
        if let (Some(attempt), Some(window)) = (attempt, self.breaker_window) {
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
        let name = self.name.as_deref();
        Ok(ResilienceLayer {
            fallback: self.fallback,
            total_timeout: self.total_timeout.named(name, TOTAL_TIMEOUT_NAME),
            retry: self.retry.with_total_timeout(total),
            breaker: self.breaker,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout.named(name, ATTEMPT_TIMEOUT_NAME),
        })
    }
}

/// The slots of [`ResilienceLayerBuilder`]: what each part may be, and the arguments its methods take.
/// Sealed: the traits are public (they appear in bounds) but cannot be named outside the crate.
mod part {
    use std::time::Duration;

    use tower_layer::Identity;

    use super::MaybeLayer;
    use crate::bulkhead::BulkheadLayer;
    use crate::timeout::TimeoutLayer;

    /// A timeout slot: absent ([`Identity`]), present ([`TimeoutLayer`]) or decided at run time
    /// ([`MaybeLayer<TimeoutLayer>`]).
    pub trait TimeoutSlot {
        /// The timeout, when there is one.
        fn duration(&self) -> Option<Duration>;
        /// The slot with its metrics label: `part`, prefixed with the stack's name.
        fn named(self, stack: Option<&str>, part: &str) -> Self;
    }

    fn label(stack: Option<&str>, part: &str) -> String {
        match stack {
            Some(name) => format!("{name}.{part}"),
            None => part.to_owned(),
        }
    }

    impl TimeoutSlot for Identity {
        fn duration(&self) -> Option<Duration> {
            None
        }
        fn named(self, _: Option<&str>, _: &str) -> Self {
            self
        }
    }

    impl TimeoutSlot for TimeoutLayer {
        fn duration(&self) -> Option<Duration> {
            Some(self.timeout())
        }
        fn named(self, stack: Option<&str>, part: &str) -> Self {
            self.name(label(stack, part))
        }
    }

    impl TimeoutSlot for MaybeLayer<TimeoutLayer> {
        fn duration(&self) -> Option<Duration> {
            self.get().map(TimeoutLayer::timeout)
        }
        fn named(self, stack: Option<&str>, part: &str) -> Self {
            MaybeLayer::new(self.layer.map(|l| l.named(stack, part)))
        }
    }

    /// What `total_timeout` and `attempt_timeout` take: a [`Duration`] (the part is in the
    /// type) or an `Option<Duration>` (decided at run time).
    pub trait IntoTimeout {
        /// The slot it fills.
        type Slot: TimeoutSlot;
        /// The filled slot.
        fn into_slot(self) -> Self::Slot;
    }

    impl IntoTimeout for Duration {
        type Slot = TimeoutLayer;
        fn into_slot(self) -> TimeoutLayer {
            TimeoutLayer::new(self)
        }
    }

    impl IntoTimeout for Option<Duration> {
        type Slot = MaybeLayer<TimeoutLayer>;
        fn into_slot(self) -> MaybeLayer<TimeoutLayer> {
            MaybeLayer::new(self.map(TimeoutLayer::new))
        }
    }

    /// A bulkhead slot, for `Debug`: absent, present or decided at run time.
    pub trait BulkheadSlot {
        /// The bulkhead, when there is one.
        fn get(&self) -> Option<&BulkheadLayer>;
    }

    impl BulkheadSlot for Identity {
        fn get(&self) -> Option<&BulkheadLayer> {
            None
        }
    }

    impl BulkheadSlot for BulkheadLayer {
        fn get(&self) -> Option<&BulkheadLayer> {
            Some(self)
        }
    }

    impl BulkheadSlot for MaybeLayer<BulkheadLayer> {
        fn get(&self) -> Option<&BulkheadLayer> {
            MaybeLayer::get(self)
        }
    }

    /// What `bulkhead` takes: a [`BulkheadLayer`] (the part is in the type) or an
    /// `Option<BulkheadLayer>` (decided at run time).
    pub trait IntoBulkhead {
        /// The slot it fills.
        type Slot: BulkheadSlot;
        /// The filled slot.
        fn into_slot(self) -> Self::Slot;
    }

    impl IntoBulkhead for BulkheadLayer {
        type Slot = BulkheadLayer;
        fn into_slot(self) -> BulkheadLayer {
            self
        }
    }

    impl IntoBulkhead for Option<BulkheadLayer> {
        type Slot = MaybeLayer<BulkheadLayer>;
        fn into_slot(self) -> MaybeLayer<BulkheadLayer> {
            MaybeLayer::new(self)
        }
    }

    /// The retry slot: no retry, or a [`RetryLayer`](crate::retry::RetryLayer) that learns the
    /// stack's total timeout.
    pub trait RetrySlot {
        /// The retry, judging server-requested delays against `total_timeout`.
        fn with_total_timeout(self, total_timeout: Option<Duration>) -> Self;
    }

    impl RetrySlot for Identity {
        fn with_total_timeout(self, _: Option<Duration>) -> Self {
            self
        }
    }

    impl<C, H> RetrySlot for crate::retry::RetryLayer<C, H> {
        fn with_total_timeout(self, total_timeout: Option<Duration>) -> Self {
            self.map_policy(|p| p.with_default_total_timeout(total_timeout))
        }
    }
}

impl<F, T, R, B, C, A> fmt::Debug for ResilienceLayerBuilder<F, T, R, B, C, A>
where
    T: part::TimeoutSlot,
    C: part::BulkheadSlot,
    A: part::TimeoutSlot,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceLayerBuilder")
            .field("total_timeout", &self.total_timeout.duration())
            .field("breaker_window", &self.breaker_window)
            .field("bulkhead", &self.bulkhead.get())
            .field("attempt_timeout", &self.attempt_timeout.duration())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The classifier of the stack's circuit breaker: a [`BulkheadFull`] rejection from the bulkhead
/// below it is [`Outcome::Ignored`] (the upstream was never called, so the call says nothing
/// about its health); every other outcome is judged by `C`.
#[derive(Clone, Copy, Debug, Default)]
pub struct IgnoreBulkheadFull<C>(pub C);

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

/// The standard stack as one layer; built by [`ResilienceLayerBuilder`], with its type parameters.
///
/// Around a service `S` it makes, outermost first,
/// `F(T(R(B(C(A(BoxErrors<S>))))))`, where an absent part ([`Identity`]) is no wrapper at all.
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct ResilienceLayer<
    F = Identity,
    T = Identity,
    R = Identity,
    B = Identity,
    C = Identity,
    A = Identity,
> {
    fallback: F,
    total_timeout: T,
    retry: R,
    breaker: B,
    bulkhead: C,
    attempt_timeout: A,
}

impl<F, T, R, B, C, A> fmt::Debug for ResilienceLayer<F, T, R, B, C, A>
where
    T: part::TimeoutSlot,
    C: part::BulkheadSlot,
    A: part::TimeoutSlot,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceLayer")
            .field("total_timeout", &self.total_timeout.duration())
            .field("bulkhead", &self.bulkhead.get())
            .field("attempt_timeout", &self.attempt_timeout.duration())
            .finish_non_exhaustive()
    }
}

impl<S, F, T, R, B, C, A> Layer<S> for ResilienceLayer<F, T, R, B, C, A>
where
    A: Layer<BoxErrors<S>>,
    C: Layer<A::Service>,
    B: Layer<C::Service>,
    R: Layer<B::Service>,
    T: Layer<R::Service>,
    F: Layer<T::Service>,
{
    type Service = F::Service;

    fn layer(&self, service: S) -> Self::Service {
        let service = self.attempt_timeout.layer(BoxErrors::new(service));
        let service = self.bulkhead.layer(service);
        let service = self.breaker.layer(service);
        let service = self.retry.layer(service);
        let service = self.total_timeout.layer(service);
        self.fallback.layer(service)
    }
}

/// The runtime-optional attempt-timeout part around a service `S`
/// (`attempt_timeout(Option<Duration>)`).
pub type AttemptTimeout<S> = Maybe<Timeout<S>, S>;
/// The runtime-optional bulkhead part around `S` (already wrapped by a runtime-optional attempt
/// timeout): `bulkhead(Option<BulkheadLayer>)`.
pub type BulkheadPart<S> = Maybe<Bulkhead<AttemptTimeout<S>>, AttemptTimeout<S>>;

/// The innermost wrapper of every [`ResilienceLayer`] service: the service's errors, boxed.
///
/// So the stack's error is [`BoxError`] whatever parts it has, and its breaker judges
/// `BoxError`s ([`IgnoreBulkheadFull`]). Neither it nor its future adds a byte: for a service
/// whose error already is a `BoxError` the conversion is the identity.
#[derive(Clone, Debug)]
pub struct BoxErrors<S> {
    inner: S,
}

impl<S> BoxErrors<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        BoxErrors { inner }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
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

/// A part decided at run time: a layer or none; it makes a [`Maybe`].
///
/// What `total_timeout`, `attempt_timeout` and `bulkhead` put in the stack when given an
/// `Option`. Like tower's `option_layer`, the service keeps the part's size and a branch when
/// the part is off; a part given directly is in the type and costs nothing when absent.
#[derive(Clone, Debug)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct MaybeLayer<L> {
    layer: Option<L>,
}

impl<L> MaybeLayer<L> {
    /// `Some(layer)`: the part is on; `None`: off.
    pub const fn new(layer: Option<L>) -> Self {
        MaybeLayer { layer }
    }

    /// The layer, when the part is on.
    pub fn get(&self) -> Option<&L> {
        self.layer.as_ref()
    }
}

impl<S, L: Layer<S>> Layer<S> for MaybeLayer<L> {
    type Service = Maybe<L::Service, S>;

    fn layer(&self, service: S) -> Self::Service {
        Maybe::wrap(self.layer.as_ref(), service)
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
        let c = IgnoreBulkheadFull(crate::circuit_breaker::breaker_classifier_fn(
            |r: Result<&(), &BoxError>| match r {
                Ok(_) => Outcome::Success,
                Err(_) => Outcome::Failure,
            },
        ));
        let full: BoxError = Box::new(BulkheadFull::new());
        let open: BoxError = Box::new(crate::circuit_breaker::error::CircuitOpen::new(None));
        let other: BoxError = "boom".into();
        assert_eq!(
            BreakerClassifier::<(), _>::classify(&c, Err(&full)),
            Outcome::Ignored
        );
        assert_eq!(
            BreakerClassifier::<(), _>::classify(&c, Err(&open)),
            Outcome::Failure
        );
        assert_eq!(
            BreakerClassifier::<(), _>::classify(&c, Err(&other)),
            Outcome::Failure
        );
        assert_eq!(
            BreakerClassifier::<(), BoxError>::classify(&c, Ok(&())),
            Outcome::Success
        );
    }
}
