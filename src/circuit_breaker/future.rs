//! The circuit breaker's response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::core::{Permit, Rejection};
use super::error::CircuitOpen;
use super::name::Name;
use super::service::Local;
use crate::circuit_breaker::BreakerClassifier;
use crate::sync::Arc;
use crate::BoxError;

/// Holds a call's permit; dropping it unfinished (a cancelled call) frees a half-open probe slot.
pub(crate) struct Guard<C> {
    local: Arc<Local<C>>,
    permit: Option<Permit>,
    /// For the slow-call rule; 0 when it is off.
    start: u64,
    /// For the latency histogram: the precise clock is read only when metrics are compiled in.
    #[cfg(feature = "metrics")]
    started: Option<crate::clock::Instant>,
}

impl<C> Guard<C> {
    #[inline]
    pub(crate) fn new(local: Arc<Local<C>>, permit: Permit) -> Self {
        #[cfg(feature = "metrics")]
        let started = local
            .core
            .config
            .record_latency
            .then(crate::clock::Clock::precise);
        Guard {
            start: local.core.call_start(),
            local,
            permit: Some(permit),
            #[cfg(feature = "metrics")]
            started,
        }
    }
}

impl<C> Drop for Guard<C> {
    #[inline]
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.local.core.release(permit);
        }
    }
}

pin_project! {
    /// Response future of [`CircuitBreakerService`](super::CircuitBreakerService): the inner call,
    /// judged when it finishes, or a rejection with [`CircuitOpen`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            guard: Guard<C>,
        },
        // 16 bytes (an 8-byte rejection and a thin name pointer): the rejecting future is as
        // small as the called one, so neither path copies a wider future.
        Rejected {
            rejection: Rejection,
            breaker: Option<Name>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn called(future: F, guard: Guard<C>) -> Self {
        ResponseFuture {
            kind: Kind::Called { future, guard },
        }
    }

    #[inline]
    pub(crate) fn rejected(rejection: Rejection, breaker: Name) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                rejection,
                breaker: Some(breaker),
            },
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Called { .. } => "Called",
            Kind::Rejected { .. } => "Rejected",
        };
        f.debug_tuple("ResponseFuture").field(&state).finish()
    }
}

impl<F, T, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: BreakerClassifier<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, guard } => {
                let result = ready!(future.poll(cx));
                // BreakerClassifier before taking the permit out of the guard: a classifier that panics
                // leaves the permit to the guard's `Drop`, which frees a probe slot.
                let outcome = guard.local.classifier.classify(result.as_ref());
                if let Some(permit) = guard.permit.take() {
                    let core = &guard.local.core;
                    #[cfg(feature = "metrics")]
                    if let Some(started) = guard.started {
                        core.observe.duration(started.elapsed());
                    }
                    core.finish(&guard.local.window, permit, guard.start, outcome);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { rejection, breaker } => {
                let error = match breaker.take() {
                    Some(breaker) => rejection.into_error(breaker),
                    None => CircuitOpen::new(None), // polled again after completion
                };
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
