//! [`ServiceBuilderExt`]: harden's layers inline in a `tower::ServiceBuilder` chain.
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
//!     .fallback(|_err: BoxError| async { Ok("nothing found") })
//!     .harden_timeout(Duration::from_secs(5))
//!     .harden_retry(RetryPolicy::builder().max_attempts(2).build()?)
//!     .circuit_breaker(breaker.layer())
//!     .bulkhead(32)
//!     .harden_timeout(Duration::from_secs(1))
//!     .service(service_fn(|q: &'static str| async move { Ok::<_, BoxError>(q) }));
//! assert_eq!(service.oneshot("rust").await?, "rust");
//! # Ok(())
//! # }
//! ```
//!
//! The timeout and retry methods are prefixed with `harden_` because `ServiceBuilder` has
//! inherent `timeout` and `retry` methods (tower's own middleware) when tower's features are
//! on, and an inherent method always wins over a trait method of the same name.

use std::future::Future;
use std::time::Duration;

use tower::ServiceBuilder;
use tower_layer::Stack;

use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::fallback::FallbackLayer;
use crate::retry::RetryLayer;
use crate::timeout::TimeoutLayer;
use crate::BoxError;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// harden's layers as `ServiceBuilder` methods. Sealed: implemented for `ServiceBuilder` only.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`CircuitBreakerLayer`] (`breaker.layer()`).
    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;

    /// Adds a [`BulkheadLayer`] admitting at most `max_concurrent` calls at once.
    fn bulkhead(self, max_concurrent: usize) -> ServiceBuilder<Stack<BulkheadLayer, L>>;

    /// Adds harden's [`TimeoutLayer`], whose timer costs nothing for calls that finish at once.
    fn harden_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>>;

    /// Adds a [`RetryLayer`]; takes the layer or a [`RetryPolicy`](crate::retry::RetryPolicy).
    fn harden_retry<C, H>(
        self,
        retry: impl Into<RetryLayer<C, H>>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, H>, L>>;

    /// Adds a [`FallbackLayer`] answering every error with `fallback(err).await`.
    fn fallback<F, Fut, Response>(self, fallback: F) -> ServiceBuilder<Stack<FallbackLayer<F>, L>>
    where
        F: Fn(BoxError) -> Fut,
        Fut: Future<Output = Result<Response, BoxError>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(layer)
    }

    fn bulkhead(self, max_concurrent: usize) -> ServiceBuilder<Stack<BulkheadLayer, L>> {
        self.layer(BulkheadLayer::new(max_concurrent))
    }

    fn harden_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>> {
        self.layer(TimeoutLayer::new(timeout))
    }

    fn harden_retry<C, H>(
        self,
        retry: impl Into<RetryLayer<C, H>>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, H>, L>> {
        self.layer(retry.into())
    }

    fn fallback<F, Fut, Response>(self, fallback: F) -> ServiceBuilder<Stack<FallbackLayer<F>, L>>
    where
        F: Fn(BoxError) -> Fut,
        Fut: Future<Output = Result<Response, BoxError>>,
    {
        self.layer(FallbackLayer::new(fallback))
    }
}
