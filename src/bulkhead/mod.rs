//! Cap the number of calls in flight, rejecting the excess at once with
//! [`BulkheadFull`](error::BulkheadFull).
//!
//! [`BulkheadLayer::new(n)`](BulkheadLayer::new) lets at most `n` calls of the wrapped service
//! run at the same time, across every clone of the layer and of the services it makes. Call
//! `n + 1` is not queued: its response future fails immediately with `BulkheadFull`, like
//! opossum's `capacity` option — a saturated upstream then costs callers nothing but a fast
//! error (which an HTTP layer turns into a 503 and the circuit breaker or a fallback can handle)
//! instead of a growing queue. The slot of a call is taken in `call` and given back when its
//! response future completes or is dropped (cancelled), so a timeout or a client hang-up never
//! leaks capacity. The count is one atomic integer; taking and returning a slot take no lock.
//!
//! # Example
//!
//! Default use: at most 64 calls at once into an upstream.
//!
//! ```
//! use harden::bulkhead::BulkheadLayer;
//! use harden::BoxError;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(BulkheadLayer::new(64))
//!     .service(service_fn(|req: u32| async move { Ok::<_, BoxError>(req + 1) }));
//!
//! assert_eq!(svc.oneshot(41).await?, 42);
//! # Ok(())
//! # }
//! ```
//!
//! Customised: a limit read from configuration (validated, so a `0` is reported instead of
//! silently shedding everything), one layer shared by several services, and its live count read
//! for a health check or a gauge.
//!
//! ```
//! use harden::bulkhead::{error::BulkheadFull, BulkheadLayer};
//! use harden::BoxError;
//! use std::future::pending;
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let max: usize = "1".parse()?; // e.g. from an environment variable
//! let bulkhead = BulkheadLayer::try_new(max)?;
//!
//! let hang = service_fn(|()| pending::<Result<(), BoxError>>());
//! let mut a = bulkhead.layer(hang);
//! let mut b = a.clone(); // clones (e.g. axum's per-connection clones) share the limit
//!
//! let first = a.ready().await?.call(()); // takes the only slot
//! assert_eq!(bulkhead.in_flight(), 1);
//! let err = b.ready().await?.call(()).await.unwrap_err();
//! assert!(err.is::<BulkheadFull>());
//!
//! drop(first); // cancelling a call gives its slot back
//! assert_eq!(bulkhead.in_flight(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! The service's error type is [`BoxError`]. It holds either
//! [`BulkheadFull`](error::BulkheadFull) (the call was rejected and the inner service was not
//! called) or the inner service's error, boxed unchanged; tell them apart with
//! `err.is::<BulkheadFull>()`. `BulkheadFull` is zero-sized, so a rejection does not allocate.
//! `poll_ready` never fails because of the bulkhead: it forwards the inner service's readiness.
//!
//! Below a circuit breaker (the standard order: breaker, then bulkhead), a `BulkheadFull` is not
//! one of the breaker's failures: its default classifier ignores harden's own rejections, so a
//! burst of local overload never opens the circuit on a healthy upstream:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), harden::BoxError> {
//! use harden::circuit_breaker::{CircuitBreaker, State};
//! use harden::ServiceBuilderExt;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let breaker = CircuitBreaker::builder().volume_threshold(1).build()?;
//! let svc = ServiceBuilder::new()
//!     .harden_circuit_breaker(breaker.clone()) // above: counts what the upstream did
//!     .harden_bulkhead(0)                      // below: rejects every call here
//!     .service(service_fn(|x: u32| async move { Ok::<_, harden::BoxError>(x) }));
//! assert!(svc.clone().oneshot(1).await.is_err());
//! assert_eq!(breaker.state(), State::Closed);
//! # Ok(()) }
//! ```
//!
//! [`BulkheadLayer::try_new`] returns a [`ConfigError`](crate::ConfigError) for a limit of
//! zero; [`BulkheadLayer::new`] accepts zero and then rejects every call (a kill switch).
//!
//! # Defaults
//!
//! None: the limit is the only setting and both constructors require it.
//!
//! # Differences from tower
//!
//! tower's [`ConcurrencyLimit`](https://docs.rs/tower/latest/tower/limit/struct.ConcurrencyLimit.html)
//! *waits*: `poll_ready` stays pending until a permit is free, so excess calls queue (and behind
//! axum, which expects services to be always ready, it needs a buffer). Wrapped in tower's
//! [`LoadShed`](https://docs.rs/tower/latest/tower/load_shed/struct.LoadShed.html) it sheds
//! instead, but each `ConcurrencyLimit` clone reserves its own permit in `poll_ready` and the
//! permits live in a `tokio::sync::Semaphore`. Here `poll_ready` forwards the inner readiness,
//! the slot is taken only in `call`, the rejection is a response future that fails with
//! `BulkheadFull`, and the state is a single atomic counter shared by every clone.

pub mod error;
pub mod future;
mod layer;
mod settings;

pub use self::layer::BulkheadLayer;
pub use self::settings::BulkheadSettings;

use self::future::ResponseFuture;
use crate::metrics;
use crate::sync::{Arc, AtomicUsize, Ordering};
use crate::BoxError;
use std::fmt;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service letting at most a fixed number of calls run at once; made by [`BulkheadLayer`].
///
/// Clones share the limit and the count.
#[derive(Clone)]
pub struct Bulkhead<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> Bulkhead<S> {
    fn from_state(inner: S, state: Arc<State>) -> Self {
        Bulkhead { inner, state }
    }

    /// Calls in flight now, across every service sharing this bulkhead.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight()
    }

    /// The most calls admitted at once.
    pub fn max_concurrent(&self) -> usize {
        self.state.max()
    }

    define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Bulkhead<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("max_concurrent", &self.state.max())
            .field("in_flight", &self.state.in_flight())
            .finish()
    }
}

impl<S, Request> Service<Request> for Bulkhead<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Never pending or failing because of the bulkhead: a full bulkhead rejects in `call`.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        match Permit::acquire(&self.state) {
            // The permit exists before the inner `call`, so even a panic there returns the slot.
            Some(permit) => ResponseFuture::called(self.inner.call(request), permit),
            None => {
                self.state.note_rejected();
                ResponseFuture::rejected()
            }
        }
    }
}

/// What every clone of a bulkhead shares.
pub(crate) struct State {
    in_flight: AtomicUsize,
    /// The limit; changed by `BulkheadLayer::retune`. A `std` atomic even under loom: a setting
    /// read with `Relaxed`, not part of the slot protocol.
    max: std::sync::atomic::AtomicUsize,
    /// Set by `BulkheadLayer::name` for every clone at once; read when metrics are registered.
    name: std::sync::Mutex<std::sync::Arc<str>>,
    /// Registered when the layer first wraps a service, so naming the layer leaves no stray
    /// series behind.
    metrics: OnceLock<Metrics>,
}

#[derive(Debug)]
pub(crate) struct Metrics {
    in_flight: metrics::Gauge,
    rejected: metrics::Counter,
}

impl State {
    pub(crate) fn new(max: usize, name: std::sync::Arc<str>) -> Self {
        State {
            in_flight: AtomicUsize::new(0),
            max: std::sync::atomic::AtomicUsize::new(max),
            name: std::sync::Mutex::new(name),
            metrics: OnceLock::new(),
        }
    }

    #[inline]
    pub(crate) fn max(&self) -> usize {
        // Relaxed: a limit, guarding no other memory; a call racing a change sees either value.
        self.max.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_max(&self, max: usize) {
        // Relaxed: as in `max`.
        self.max.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn register_metrics(&self) {
        self.metrics.get_or_init(|| {
            let name = self.name();
            Metrics {
                in_flight: metrics::gauge(metrics::names::BULKHEAD_IN_FLIGHT, "bulkhead", &name),
                rejected: metrics::counter(metrics::names::BULKHEAD_REJECTED, "bulkhead", &name),
            }
        });
    }

    /// Rename the shared bulkhead; `false` if its metrics were already registered under the
    /// old name (a service was made), which keep that name.
    pub(crate) fn rename(&self, name: std::sync::Arc<str>) -> bool {
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) = name;
        self.metrics.get().is_none()
    }

    #[inline]
    pub(crate) fn note_rejected(&self) {
        if let Some(m) = self.metrics.get() {
            m.rejected.increment(1);
        }
    }

    pub(crate) fn name(&self) -> std::sync::Arc<str> {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn in_flight(&self) -> usize {
        // Relaxed: a monitoring snapshot; it orders nothing else.
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One taken slot; dropping it gives the slot back.
pub(crate) struct Permit {
    state: Arc<State>,
}

impl Permit {
    /// Takes a slot if fewer than `max` are taken. Never over-counts, even transiently, so a
    /// racing caller is never rejected because of another caller's failed attempt.
    #[inline]
    pub(crate) fn acquire(state: &Arc<State>) -> Option<Permit> {
        // Relaxed: only a first guess for the CAS below, which re-checks it.
        let mut current = state.in_flight.load(Ordering::Relaxed);
        loop {
            if current >= state.max() {
                return None;
            }
            // Success Acquire: pairs with the Release in `drop`, so whatever the call that freed
            // this slot did happens-before this call (the count itself needs no more than the
            // single modification order every RMW on one atomic has). Failure Relaxed: we only
            // retry with the value read.
            match state.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if let Some(m) = state.metrics.get() {
                        m.in_flight.increment(1.0);
                    }
                    return Some(Permit {
                        state: Arc::clone(state),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        // Release: publishes this call's effects to the next `acquire` of the slot (see there).
        // Cannot underflow: every decrement matches the increment of the permit being dropped.
        self.state.in_flight.fetch_sub(1, Ordering::Release);
        if let Some(m) = self.state.metrics.get() {
            m.in_flight.decrement(1.0);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        /// Release the k-th held permit (modulo the number held), if any.
        Release(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![Just(Op::Acquire), any::<usize>().prop_map(Op::Release)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::default())]

        /// The atomic bulkhead against a sequential model: a count that admits while below max.
        #[test]
        fn matches_sequential_model(max in 0usize..6, ops in proptest::collection::vec(op(), 0..200)) {
            let state = Arc::new(State::new(max, "test".into()));
            let mut held: Vec<Permit> = Vec::new();
            let mut model: usize = 0;
            for op in ops {
                match op {
                    Op::Acquire => {
                        let admitted = Permit::acquire(&state);
                        let model_admits = model < max;
                        prop_assert_eq!(admitted.is_some(), model_admits);
                        if let Some(permit) = admitted {
                            held.push(permit);
                            model += 1;
                        }
                    }
                    Op::Release(k) => {
                        if !held.is_empty() {
                            let k = k % held.len();
                            drop(held.swap_remove(k));
                            model -= 1;
                        }
                    }
                }
                prop_assert_eq!(state.in_flight(), model);
                prop_assert!(state.in_flight() <= max);
            }
            drop(held);
            prop_assert_eq!(state.in_flight(), 0);
        }
    }

    #[test]
    fn max_usize_does_not_overflow() {
        let state = Arc::new(State::new(usize::MAX, "test".into()));
        let a = Permit::acquire(&state).unwrap();
        let b = Permit::acquire(&state).unwrap();
        assert_eq!(state.in_flight(), 2);
        drop((a, b));
        assert_eq!(state.in_flight(), 0);
    }
}

#[cfg(all(test, harden_loom))]
mod loom_tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    /// Three threads race to acquire a bulkhead of 2 and release: never more than 2 admitted at
    /// once, and the count ends at zero (no slot leaked).
    #[test]
    fn loom_acquire_release_never_exceeds_max_or_leaks() {
        let mut builder = loom::model::Builder::new();
        // Bounded preemptions keep the 3-thread model tractable (unbounded, it runs for minutes).
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let state = Arc::new(State::new(2, "test".into()));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let state = state.clone();
                    loom::thread::spawn(move || {
                        if let Some(permit) = Permit::acquire(&state) {
                            assert!(state.in_flight() <= 2, "more admitted than the limit");
                            drop(permit);
                        }
                    })
                })
                .collect();
            let held = Permit::acquire(&state);
            assert!(state.in_flight() <= 2, "more admitted than the limit");
            drop(held);
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(state.in_flight(), 0, "a slot leaked");
        });
    }

    /// Two callers of a bulkhead of 1: at most one is admitted, so exactly one of two
    /// simultaneous holders is ever observed, and the other is rejected rather than queued.
    #[test]
    fn loom_limit_of_one_is_mutual_exclusion() {
        loom::model(|| {
            let state = Arc::new(State::new(1, "test".into()));
            let other = {
                let state = state.clone();
                loom::thread::spawn(move || Permit::acquire(&state).is_some())
            };
            let mine = Permit::acquire(&state);
            let mine_admitted = mine.is_some();
            if mine_admitted {
                assert_eq!(state.in_flight(), 1);
            }
            drop(mine);
            let other_admitted = other.join().unwrap();
            // Both may be admitted one after the other, but at least one always is.
            assert!(mine_admitted || other_admitted);
            assert_eq!(state.in_flight(), 0, "a slot leaked");
        });
    }

    /// A service whose response never completes, so only dropping the future ends a call.
    #[derive(Clone)]
    struct Hang;

    impl Service<()> for Hang {
        type Response = ();
        type Error = BoxError;
        type Future = std::future::Pending<Result<(), BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: ()) -> Self::Future {
            std::future::pending()
        }
    }

    /// A call cancelled (its future dropped after a pending poll) on one thread, racing a call
    /// completed on another: the limit holds and both slots come back.
    #[test]
    fn loom_cancelled_and_completed_calls_return_their_slots() {
        loom::model(|| {
            let state = Arc::new(State::new(1, "test".into()));
            let cancelled = {
                let mut svc = Bulkhead::from_state(Hang, state.clone());
                loom::thread::spawn(move || {
                    let waker = std::task::Waker::noop().clone();
                    let mut cx = Context::from_waker(&waker);
                    let mut fut = pin!(svc.call(()));
                    let _ = fut.as_mut().poll(&mut cx);
                    assert!(svc.in_flight() <= 1);
                })
            };
            let mut ok = Bulkhead::from_state(
                tower::service_fn(|()| async { Ok::<_, BoxError>(()) }),
                state.clone(),
            );
            let waker = std::task::Waker::noop().clone();
            let mut cx = Context::from_waker(&waker);
            let mut fut = pin!(ok.call(()));
            // Completes at once or is rejected at once; either way the slot is back now.
            assert!(fut.as_mut().poll(&mut cx).is_ready());
            assert!(state.in_flight() <= 1);
            cancelled.join().unwrap();
            assert_eq!(state.in_flight(), 0, "a slot leaked");
        });
    }
}
