use std::fmt;
use std::task::{Context, Poll};

use tower_service::Service;

use super::core::Core;
use super::future::{Guard, ResponseFuture};
use super::CircuitBreaker;
use crate::classify::Classify;
use crate::sync::Arc;
use crate::BoxError;

/// What a service clone shares with its futures: the breaker and the classifier.
///
/// NOTE: each service clone has its own `Local` (made in `Clone`), so the per-call refcount bump
/// lands on a line private to that clone, not on one shared by every thread.
pub(crate) struct Local<C> {
    pub(crate) core: Arc<Core>,
    pub(crate) classifier: C,
}

/// A service guarded by a circuit breaker; made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
pub struct CircuitBreakerService<S, C> {
    inner: S,
    local: Arc<Local<C>>,
}

impl<S, C: Clone> CircuitBreakerService<S, C> {
    pub(crate) fn new(inner: S, breaker: &CircuitBreaker, classifier: C) -> Self {
        CircuitBreakerService {
            inner,
            local: Arc::new(Local {
                core: breaker.core().clone(),
                classifier,
            }),
        }
    }
}

impl<S, C> CircuitBreakerService<S, C> {
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

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        CircuitBreakerService {
            inner: self.inner.clone(),
            local: Arc::new(Local {
                core: self.local.core.clone(),
                classifier: self.local.classifier.clone(),
            }),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.local.core.name())
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Never fails because the circuit is open: the rejection is the future's result.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let core = &self.local.core;
        match core.try_acquire_with(|| core.clock.now()) {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), Guard::new(self.local.clone(), permit))
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
