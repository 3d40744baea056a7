use std::fmt;
use std::task::{ready, Context, Poll};

use tower_service::Service;

use super::core::Core;
use super::future::{Guard, ResponseFuture};
use super::window::Window;
use super::CircuitBreaker;
use crate::circuit_breaker::BreakerClassifier;
use crate::stripe::thread_token;
use crate::sync::Arc;
use crate::BoxError;

/// What a service shares with its futures: the breaker and the classifier.
///
/// NOTE: every call bumps the refcount of its service's `Local`. So that threads never bump one
/// shared line, a `Local` belongs to the thread that made it (`home`): clones share it (cloning
/// allocates nothing, which matters to a retry that clones its inner service per call), and a
/// service called on another thread first takes a `Local` of its own there (once per service per
/// thread it moves to; axum's per-connection clones pay it on their first request).
///
/// A `Local` also holds the breaker's window as it was when the `Local` was made; a service whose
/// window was replaced since takes a new `Local` before its next call (see `Windows`).
pub(crate) struct Local<C> {
    pub(crate) core: Arc<Core>,
    pub(crate) window: std::sync::Arc<Window>,
    /// `window`'s version, beside `core`: the check before every call reads one line.
    version: u64,
    pub(crate) classifier: C,
    home: usize,
}

impl<C: Clone> Local<C> {
    fn here(core: Arc<Core>, classifier: C) -> Arc<Self> {
        let window = core.windows.load_full();
        Arc::new(Local {
            version: window.version(),
            window,
            core,
            classifier,
            home: thread_token(),
        })
    }
}

/// A service guarded by a circuit breaker; made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// # Readiness
///
/// tower's `load_shed` pattern: while the breaker rejects (open, forced open, or half-open with
/// every probe slot taken), `poll_ready` is ready at once *without polling the inner service*,
/// and the next `call` returns a [`CircuitOpen`](super::error::CircuitOpen) future. A caller is
/// never parked on a saturated inner service (a full `ConcurrencyLimit`, a `Buffer`) only to be
/// told the circuit is open. While the breaker admits, `poll_ready` polls the inner service, and
/// a call is only ever admitted after the inner service said ready (tower's contract):
///
/// - `poll_ready` saw a rejecting breaker, `call` finds it admitting again (the open period
///   ended, a reset): the call is rejected as `poll_ready` decided (its `retry_after` is zero
///   then), because the inner service was not polled; the next `poll_ready` polls it.
/// - `poll_ready` polled the inner service ready, `call` finds the breaker rejecting (it tripped
///   in between): the call is rejected and the inner service's readiness is kept for the next
///   admitted call, as `ConcurrencyLimit` keeps a permit it reserved.
///
/// A clone starts unpolled, like tower's services that reserve in `poll_ready`.
pub struct CircuitBreakerService<S, C> {
    inner: S,
    local: Arc<Local<C>>,
    /// The inner service was polled ready and has not been called since.
    inner_ready: bool,
}

impl<S, C: Clone> CircuitBreakerService<S, C> {
    pub(crate) fn new(inner: S, breaker: &CircuitBreaker, classifier: C) -> Self {
        CircuitBreakerService {
            inner,
            local: Local::here(breaker.core().clone(), classifier),
            inner_ready: false,
        }
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    define_inner_service_accessors!();
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        CircuitBreakerService {
            inner: self.inner.clone(),
            local: Arc::clone(&self.local),
            // The clone's inner service was not polled.
            inner_ready: false,
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
    C: BreakerClassifier<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Never fails because the circuit is open: the rejection is the future's result, and
        // while the breaker rejects the inner service is not polled (see `# Readiness`).
        if !self.inner_ready {
            let core = &*self.local.core;
            if !core.admits_with(|| core.clock.now()) {
                return Poll::Ready(Ok(()));
            }
            ready!(self.inner.poll_ready(cx)).map_err(Into::into)?;
            self.inner_ready = true;
        }
        Poll::Ready(Ok(()))
    }

    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        if self.local.home != thread_token()
            || self.local.version != self.local.core.windows.version()
        {
            self.local = Local::here(self.local.core.clone(), self.local.classifier.clone());
        }
        let core = &self.local.core;
        if !self.inner_ready {
            // `poll_ready` found the breaker rejecting and left the inner service unpolled.
            return ResponseFuture::rejected(
                core.shed(&self.local.window, core.clock.now()),
                core.config.rejection_name.clone(),
            );
        }
        match core.try_acquire_with(&self.local.window, || core.clock.now()) {
            Ok(permit) => {
                self.inner_ready = false;
                // The guard first: it reads the start time before the inner `call` does any work.
                let guard = Guard::new(self.local.clone(), permit);
                ResponseFuture::called(self.inner.call(req), guard)
            }
            Err(rejection) => {
                ResponseFuture::rejected(rejection, core.config.rejection_name.clone())
            }
        }
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use crate::circuit_breaker::DefaultBreakerClassifier;
    use std::future::Ready;

    type Svc = CircuitBreakerService<
        tower::util::ServiceFn<fn(u8) -> Ready<Result<u8, BoxError>>>,
        DefaultBreakerClassifier,
    >;

    fn service() -> Svc {
        let breaker = CircuitBreaker::builder().build().unwrap();
        let f: fn(u8) -> Ready<Result<u8, BoxError>> = |x| std::future::ready(Ok(x));
        CircuitBreakerService::new(tower::service_fn(f), &breaker, DefaultBreakerClassifier)
    }

    // Each clone allocated its own `Local`, so a retry cloning its service allocated per call.
    #[test]
    fn clones_share_their_threads_local_and_calls_elsewhere_take_their_own() {
        let mut a = service();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.local, &b.local), "a clone allocates nothing");
        drop(a.call(1));
        assert!(
            Arc::ptr_eq(&a.local, &b.local),
            "a call at home keeps the shared Local"
        );

        let mut moved = b.clone();
        let moved = std::thread::spawn(move || {
            drop(moved.call(2));
            moved
        })
        .join()
        .unwrap();
        assert!(
            !Arc::ptr_eq(&moved.local, &b.local),
            "a call on another thread re-homes"
        );
        assert!(
            Arc::ptr_eq(&moved.local.core, &b.local.core),
            "same breaker"
        );
    }
}
