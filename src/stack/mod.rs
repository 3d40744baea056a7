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
//! a healthy upstream (the stack's breaker ignores it, whatever its classifier). Every part
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
//! wrapper that boxes the service's error (so the stack's error is always [`BoxError`]
//! and its breaker judges `BoxError`s); it adds no byte, and for a service whose error already
//! is a `BoxError` its conversion is the identity.
//!
//! A part that configuration turns on or off takes an `Option` instead: `total_timeout`,
//! `attempt_timeout` (`Option<Duration>`) and `bulkhead` (`Option<BulkheadLayer>`) then put the
//! part in the stack in a form that can be off, which keeps the part's size and a branch
//! whether it is on or off, and no more: its service and future are the part's own (an off
//! timeout makes no timer, an off bulkhead takes no slot), not a tower
//! [`Either`](tower::util::Either) around them. The HTTP preset
//! ([`HttpLayerBuilder`](crate::http::HttpLayerBuilder)) builds its attempt timeout and bulkhead
//! that way, since each can be `None` there.
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
//! builder's: with a retry, the total timeout is the retry's (see
//! [`build`](ResilienceLayerBuilder::build)) rather than a timeout layer around it. The retry
//! starts that deadline when its future first waits, as the layer would, without a clock read
//! per call; and when an attempt timeout shorter than the total bounds the first attempt, it
//! makes the total's timer only once a retry is due, so a call its first attempt answers makes
//! one timer, not two.
//!
//! # Errors
//!
//! The service's error is [`BoxError`]: the inner service's error or one of the parts'
//! rejections ([`Elapsed`](crate::timeout::error::Elapsed),
//! [`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen),
//! [`BulkheadFull`](crate::bulkhead::error::BulkheadFull)), unless the fallback turns it into a
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
//! `build()`, the breaker's ignoring of the bulkhead's rejections with a custom classifier (the default
//! classifier already ignores harden's rejections), the retry's knowledge of
//! the total timeout, and the boxing of an inner error. In a `ServiceBuilder` the order is
//! the user's to get right; here it is fixed.

use std::fmt;

#[cfg(doc)]
use crate::{BoxError, ConfigError};

use tower_layer::{Identity, Layer};

mod builder;
mod inner;
mod part;
#[cfg(all(test, not(harden_loom)))]
mod tests;

pub use builder::ResilienceLayerBuilder;
pub(crate) use inner::{
    BoxErrors, IgnoreBulkheadFull, OptionalBulkhead, OptionalBulkheadLayer, OptionalTimeout,
    OptionalTimeoutLayer,
};

/// The metrics name of the stack's total timeout.
pub const TOTAL_TIMEOUT_NAME: &str = "total";
/// The metrics name of the stack's per-attempt timeout.
pub const ATTEMPT_TIMEOUT_NAME: &str = "attempt";

/// The standard stack as one layer; built by [`ResilienceLayerBuilder`], with its type parameters.
///
/// Around a service `S` it makes, outermost first,
/// `F(T(R(B(C(A(S))))))` (the innermost wrapper boxing `S`'s error), where an absent part
/// ([`Identity`]) is no wrapper at all, and so is the total timeout `T` when there is a retry
/// `R` (the retry ends the call at it).
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
    pub(super) fallback: F,
    pub(super) total_timeout: T,
    pub(super) retry: R,
    pub(super) breaker: B,
    pub(super) bulkhead: C,
    pub(super) attempt_timeout: A,
}

impl ResilienceLayer {
    /// A builder of the stack, every part off.
    pub fn builder() -> ResilienceLayerBuilder {
        ResilienceLayerBuilder::new()
    }
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
    T: part::TotalSlot<R, R::Service>,
    F: Layer<T::Service>,
{
    type Service = F::Service;

    fn layer(&self, service: S) -> Self::Service {
        let service = self.attempt_timeout.layer(BoxErrors::new(service));
        let service = self.bulkhead.layer(service);
        let service = self.breaker.layer(service);
        let service = self.retry.layer(service);
        let service = self.total_timeout.wrap(service);
        self.fallback.layer(service)
    }
}
