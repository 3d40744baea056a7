//! Turn chosen errors into a response produced by an async function of your own.
//!
//! [`FallbackLayer::new(f)`](FallbackLayer::new) wraps a service so that when a call fails, the
//! error is handed to `f` (an async function `BoxError -> Result<Response, BoxError>`) and the
//! call answers with whatever `f` produces: a cached value, a default, a degraded response.
//! By default every error is replaced; [`when`](FallbackLayer::when) narrows it to the errors a
//! predicate picks, e.g. only [`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen)
//! rejections, and the others pass through unchanged. This is opossum's `fallback`; as the
//! outermost layer of the standard stack it sees every rejection and timeout from the layers
//! inside it. The function is shared (behind an `Arc`) by every clone of the layer and services.
//!
//! # Example
//!
//! Default use: any error becomes a fixed answer.
//!
//! ```
//! use harden::fallback::FallbackLayer;
//! use harden::BoxError;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let flaky = service_fn(|_req: ()| async { Err::<String, _>("upstream down") });
//! let svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::new(|_err: BoxError| async move { Ok("cached".to_string()) }))
//!     .service(flaky);
//!
//! assert_eq!(svc.oneshot(()).await?, "cached");
//! # Ok(())
//! # }
//! ```
//!
//! Customised: only rejections from the circuit breaker and the bulkhead fall back (other errors
//! still reach the caller), and the fallback looks at the error to build its answer.
//!
//! ```
//! use harden::bulkhead::{error::BulkheadFull, BulkheadLayer};
//! use harden::circuit_breaker::error::CircuitOpen;
//! use harden::fallback::FallbackLayer;
//! use harden::BoxError;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fallback = FallbackLayer::new(|err: BoxError| async move {
//!     Ok(format!("degraded ({err})"))
//! })
//! .when(|err: &BoxError| err.is::<CircuitOpen>() || err.is::<BulkheadFull>());
//!
//! // A bulkhead of 0 rejects every call, standing in for an overloaded upstream.
//! let svc = ServiceBuilder::new()
//!     .layer(fallback.clone())
//!     .layer(BulkheadLayer::new(0))
//!     .service(service_fn(|_req: ()| async { Ok::<_, BoxError>("fresh".to_string()) }));
//! assert_eq!(svc.oneshot(()).await.unwrap(), "degraded (bulkhead is full)");
//!
//! // An ordinary upstream error is not chosen by the predicate and passes through.
//! let svc = ServiceBuilder::new()
//!     .layer(fallback)
//!     .service(service_fn(|_req: ()| async { Err::<String, _>("bad request") }));
//! assert_eq!(svc.oneshot(()).await.unwrap_err().to_string(), "bad request");
//! # }
//! ```
//!
//! # Errors
//!
//! The service's error type is [`BoxError`]. It holds the inner service's error, boxed
//! unchanged, when the predicate does not choose it, or the fallback function's own error when
//! the fallback itself fails. Errors from the inner `poll_ready` pass through boxed: readiness
//! has no response to replace them with.
//!
//! # Defaults
//!
//! Without [`when`](FallbackLayer::when), every error falls back.
//!
//! # Differences from tower
//!
//! tower has no fallback middleware. The nearest tools are `ServiceExt::or_else`/`map_err` and
//! axum's `HandleErrorLayer`; those are per-service combinators with no shared state or
//! predicate, whereas this is a `Layer` whose function is shared by every clone, receives the
//! error by value (so it can downcast it), and may itself fail.

pub mod future;
mod layer;

pub use self::layer::FallbackLayer;

use self::future::ResponseFuture;
use crate::BoxError;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tower_service::Service;

/// The type of the default predicate, which chooses every error.
pub type EveryError = fn(&BoxError) -> bool;

pub(crate) fn every_error(_: &BoxError) -> bool {
    true
}

/// A service answering chosen errors of the inner service with a fallback; made by
/// [`FallbackLayer`].
pub struct Fallback<S, F, P = EveryError> {
    inner: S,
    shared: Arc<Shared<F, P>>,
}

/// The fallback function and predicate, shared by a layer, its services and in-flight calls.
pub(crate) struct Shared<F, P> {
    // NOTE: its own `Arc` so `FallbackLayer::when` can swap the predicate without requiring
    // `F: Clone`; only the outer `Arc` is cloned per call.
    pub(crate) fallback: Arc<F>,
    pub(crate) predicate: P,
    pub(crate) name: Arc<str>,
    /// Registered when the layer first wraps a service, so naming it leaves no stray series.
    pub(crate) fallbacks: OnceLock<crate::metrics::Counter>,
}

impl<F, P> Shared<F, P> {
    pub(crate) fn new(fallback: Arc<F>, predicate: P, name: Arc<str>) -> Self {
        Shared {
            fallback,
            predicate,
            name,
            fallbacks: OnceLock::new(),
        }
    }

    pub(crate) fn register_metrics(&self) {
        self.fallbacks.get_or_init(|| {
            crate::metrics::counter(crate::metrics::names::FALLBACKS, "fallback", &self.name)
        });
    }

    #[inline]
    pub(crate) fn note_fallback(&self) {
        if let Some(counter) = self.fallbacks.get() {
            counter.increment(1);
        }
    }
}

impl<S, F, P> Fallback<S, F, P> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<F, P>>) -> Self {
        Fallback { inner, shared }
    }

    define_inner_service_accessors!();
}

impl<S: Clone, F, P> Clone for Fallback<S, F, P> {
    fn clone(&self) -> Self {
        Fallback {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, F, P> fmt::Debug for Fallback<S, F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, F, P, Request, FFut> Service<Request> for Fallback<S, F, P>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    F: Fn(BoxError) -> FFut,
    FFut: Future<Output = Result<S::Response, BoxError>>,
    P: Fn(&BoxError) -> bool,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, F, P, FFut>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        ResponseFuture::new(self.inner.call(request), Arc::clone(&self.shared))
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use crate::circuit_breaker::error::CircuitOpen;
    use std::time::Duration;
    use tower::{service_fn, Layer, ServiceExt};

    #[tokio::test]
    async fn circuit_open_falls_back_and_other_errors_pass() {
        let layer = FallbackLayer::new(|err: BoxError| async move {
            let open = err
                .downcast_ref::<CircuitOpen>()
                .expect("only CircuitOpen is chosen");
            Ok(format!("retry in {:?}", open.retry_after().unwrap()))
        })
        .when(|err: &BoxError| err.is::<CircuitOpen>());

        let open = layer.layer(service_fn(|()| async {
            Err::<String, _>(CircuitOpen::new(Some(Duration::from_secs(3))))
        }));
        assert_eq!(open.oneshot(()).await.unwrap(), "retry in 3s");

        let other = layer.layer(service_fn(|()| async {
            Err::<String, BoxError>("not a rejection".into())
        }));
        let err = other.oneshot(()).await.unwrap_err();
        assert_eq!(err.to_string(), "not a rejection");
    }
}
