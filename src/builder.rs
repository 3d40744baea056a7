//! [`ServiceBuilderExt`]: harden's layers inline in a `tower::ServiceBuilder` chain.
//!
//! One naming rule and one argument rule, as in tower-http's extension trait: each method is
//! `harden_` and the layer's name (`harden_circuit_breaker` adds a [`CircuitBreakerLayer`]), and
//! takes what that layer's `new` takes (a [`CircuitBreaker`], a `Duration`, a [`RetryPolicy`], a
//! `usize`, a closure, a [`Chaos`](crate::chaos::Chaos)). The composed stack, whose layer only its
//! builder makes, takes the built [`ResilienceLayer`].
//!
//! The prefix is there because `ServiceBuilder` has inherent `timeout` and `retry` methods
//! (tower's own middleware) when tower's features are on, and an inherent method always wins
//! over a trait method of the same name: unprefixed, `.timeout(d)` would silently be tower's.
//!
//! ```
//! use std::time::Duration;
//! use harden::circuit_breaker::CircuitBreaker;
//! use harden::retry::RetryPolicy;
//! use harden::{BoxError, ServiceBuilderExt};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//!
//! let breaker = CircuitBreaker::builder().name("search").build()?;
//! let service = ServiceBuilder::new()
//!     .harden_fallback(|_err: BoxError| async { Ok("nothing found") })
//!     .harden_timeout(Duration::from_secs(5))
//!     .harden_retry(RetryPolicy::builder().max_attempts(2).build()?)
//!     .harden_circuit_breaker(breaker.clone())
//!     .harden_bulkhead(32)
//!     .harden_timeout(Duration::from_secs(1))
//!     .service(service_fn(|q: &'static str| async move { Ok::<_, BoxError>(q) }));
//! assert_eq!(service.oneshot("rust").await?, "rust");
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use tower::ServiceBuilder;
use tower_layer::Stack;

use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use crate::fallback::FallbackLayer;
use crate::retry::{RetryLayer, RetryPolicy};
use crate::stack::ResilienceLayer;
use crate::timeout::TimeoutLayer;
use crate::BoxError;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// harden's layers as `ServiceBuilder` methods. Sealed: implemented for `ServiceBuilder` only.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`CircuitBreakerLayer`] of `breaker` (every layer of one breaker shares its state).
    fn harden_circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// Adds a [`BulkheadLayer`] admitting at most `max_concurrent` calls at once.
    fn harden_bulkhead(self, max_concurrent: usize) -> ServiceBuilder<Stack<BulkheadLayer, L>>;

    /// Adds harden's [`TimeoutLayer`], whose timer costs nothing for calls that finish at once.
    fn harden_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>>;

    /// Adds a [`RetryLayer`] retrying as `policy` says.
    fn harden_retry<C, H>(
        self,
        policy: RetryPolicy<C, H>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, H>, L>>;

    /// Adds a [`FallbackLayer`] answering every error with `fallback(err).await`.
    fn harden_fallback<F, Fut, Response>(
        self,
        fallback: F,
    ) -> ServiceBuilder<Stack<FallbackLayer<F>, L>>
    where
        F: Fn(BoxError) -> Fut,
        Fut: Future<Output = Result<Response, BoxError>>;

    /// Adds a [`ChaosLayer`](crate::chaos::ChaosLayer) injecting `chaos`'s faults (feature
    /// `chaos`).
    #[cfg(feature = "chaos")]
    fn harden_chaos(
        self,
        chaos: crate::chaos::Chaos,
    ) -> ServiceBuilder<Stack<crate::chaos::ChaosLayer, L>>;

    /// Adds the composed stack built by
    /// [`ResilienceLayer::builder`](crate::ResilienceLayer::builder).
    #[allow(clippy::type_complexity)] // the stack's six parts are its type
    fn harden_resilience<F, T, R, B, C, A>(
        self,
        stack: ResilienceLayer<F, T, R, B, C, A>,
    ) -> ServiceBuilder<Stack<ResilienceLayer<F, T, R, B, C, A>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn harden_circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::new(breaker))
    }

    fn harden_bulkhead(self, max_concurrent: usize) -> ServiceBuilder<Stack<BulkheadLayer, L>> {
        self.layer(BulkheadLayer::new(max_concurrent))
    }

    fn harden_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>> {
        self.layer(TimeoutLayer::new(timeout))
    }

    fn harden_retry<C, H>(
        self,
        policy: RetryPolicy<C, H>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, H>, L>> {
        self.layer(RetryLayer::new(policy))
    }

    fn harden_fallback<F, Fut, Response>(
        self,
        fallback: F,
    ) -> ServiceBuilder<Stack<FallbackLayer<F>, L>>
    where
        F: Fn(BoxError) -> Fut,
        Fut: Future<Output = Result<Response, BoxError>>,
    {
        self.layer(FallbackLayer::new(fallback))
    }

    #[cfg(feature = "chaos")]
    fn harden_chaos(
        self,
        chaos: crate::chaos::Chaos,
    ) -> ServiceBuilder<Stack<crate::chaos::ChaosLayer, L>> {
        self.layer(crate::chaos::ChaosLayer::new(chaos))
    }

    fn harden_resilience<F, T, R, B, C, A>(
        self,
        stack: ResilienceLayer<F, T, R, B, C, A>,
    ) -> ServiceBuilder<Stack<ResilienceLayer<F, T, R, B, C, A>, L>> {
        self.layer(stack)
    }
}
