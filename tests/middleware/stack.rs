//! The standard stack (`ResilienceLayerBuilder` / `ResilienceLayer`) and `ServiceBuilderExt` under paused
//! time: how the parts interact (attempt timeouts feed the breaker, rejections are not retried,
//! the total timeout bounds retries and their sleeps, the fallback answers what is left), the
//! checks of `build()`, shared state across clones, and the auto traits axum and `spawn` need.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::poll;
use harden::bulkhead::error::BulkheadFull;
use harden::bulkhead::BulkheadLayer;
use harden::circuit_breaker::error::CircuitOpen;
use harden::circuit_breaker::{CircuitBreaker, State};
use harden::fallback::FallbackLayer;
use harden::retry::{Backoff, Jitter, RetryPolicy};
use harden::timeout::error::Elapsed;
use harden::{BoxError, ResilienceLayer, ServiceBuilderExt};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

const MS: Duration = Duration::from_millis(1);

/// What the upstream does on its n-th call (1-based).
#[derive(Clone, Copy)]
enum Behaviour {
    /// Never answers.
    Hang,
    /// Fails at once.
    Fail,
    /// Fails at once for the first `n` calls, then answers `Ok(call number)`.
    FailFirst(u32),
    /// Answers `Ok(call number)` at once.
    Succeed,
}

/// An upstream that counts its calls; clones share the count.
#[derive(Clone)]
struct Upstream {
    calls: Arc<AtomicU32>,
    behaviour: Behaviour,
}

impl Upstream {
    fn new(behaviour: Behaviour) -> Self {
        Upstream {
            calls: Arc::default(),
            behaviour,
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<()> for Upstream {
    type Response = u32;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        match self.behaviour {
            Behaviour::Hang => Box::pin(std::future::pending()),
            Behaviour::Fail => Box::pin(async { Err("upstream down".into()) }),
            Behaviour::FailFirst(k) if n <= k => Box::pin(async { Err("upstream down".into()) }),
            Behaviour::FailFirst(_) | Behaviour::Succeed => Box::pin(async move { Ok(n) }),
        }
    }
}

/// A pass-through service counting the calls made into it (placed between two layers).
#[derive(Clone)]
struct Count<S> {
    inner: S,
    calls: Arc<AtomicU32>,
}

impl<S: Service<R>, R> Service<R> for Count<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.call(request)
    }
}

/// Puts a [`Count`] between two layers.
#[derive(Clone)]
struct CountLayer(Arc<AtomicU32>);

impl<S> Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            calls: Arc::clone(&self.0),
        }
    }
}

fn count_any(calls: &Arc<AtomicU32>) -> CountLayer {
    CountLayer(Arc::clone(calls))
}

/// A retry without jitter or budget: `attempts` attempts, `delay` apart.
fn retry(attempts: u32, delay: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(attempts)
        .backoff(Backoff::constant(delay).jitter(Jitter::None))
        .no_budget()
        .build()
        .unwrap()
}

/// A breaker judging after `volume` calls, opening at 50 %, with the default 10 s window.
fn breaker(volume: u32) -> CircuitBreaker {
    CircuitBreaker::builder()
        .volume_threshold(volume)
        .error_threshold_percentage(50.0)
        .build()
        .unwrap()
}

// 1. Attempt timeouts count as breaker failures.
#[tokio::test(start_paused = true)]
async fn attempt_timeouts_are_breaker_failures_and_trip_it() {
    let upstream = Upstream::new(Behaviour::Hang);
    let breaker = breaker(5);
    let service = ResilienceLayer::builder()
        .retry(retry(3, 10 * MS))
        .circuit_breaker(breaker.layer())
        .attempt_timeout(100 * MS)
        .build()
        .unwrap()
        .layer(upstream.clone());
    let start = Instant::now();

    // Call 1: attempts at 0, 110, 220 ms, each timed out 100 ms later.
    let err = service.clone().oneshot(()).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), 320 * MS);
    assert_eq!(upstream.calls(), 3);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().failures, 3);

    // Call 2: attempts at 320 and 430 ms time out; the fifth failure (100 % >= 50 %) opens the
    // breaker, which rejects the third attempt at 540 ms, and that rejection is not retried.
    let err = service.clone().oneshot(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(start.elapsed(), 540 * MS);
    assert_eq!(upstream.calls(), 5);
    assert_eq!(breaker.state(), State::Open);
    let stats = breaker.stats();
    assert_eq!(stats.failures, 5);
    assert_eq!(stats.successes, 0);
    assert_eq!(stats.rejections, 1);
}

// 2. An open breaker's rejection is not retried.
#[tokio::test(start_paused = true)]
async fn forced_open_rejection_is_not_retried() {
    let upstream = Upstream::new(Behaviour::Succeed);
    let breaker = breaker(5);
    breaker.force_open();
    let mut service = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(10))
        .retry(retry(5, 10 * MS))
        .circuit_breaker(breaker.layer())
        .bulkhead(BulkheadLayer::new(4))
        .attempt_timeout(100 * MS)
        .build()
        .unwrap()
        .layer(upstream.clone());
    let start = Instant::now();

    let future = service.ready().await.unwrap().call(());
    tokio::pin!(future);
    // Answered on the first poll: no backoff sleep, no timer.
    let Poll::Ready(result) = poll!(future.as_mut()) else {
        panic!("a rejected call must not wait");
    };
    let err = result.unwrap_err();
    assert!(err.downcast_ref::<CircuitOpen>().is_some(), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(upstream.calls(), 0);
    // One attempt reached the breaker.
    assert_eq!(breaker.stats().rejections, 1);
    assert_eq!(breaker.state(), State::ForcedOpen);
}

#[tokio::test(start_paused = true)]
async fn tripped_breaker_rejection_is_not_retried_exactly_one_attempt() {
    // Retry → (count) → breaker → upstream: the same order as the stack, with a counter between
    // the retry and the breaker to see every attempt.
    let upstream = Upstream::new(Behaviour::Fail);
    let breaker = breaker(2);
    let attempts = Arc::new(AtomicU32::new(0));
    let service = ServiceBuilder::new()
        .harden_retry(retry(5, 10 * MS))
        .layer(count_any(&attempts))
        .harden_circuit_breaker(breaker.clone())
        .service(upstream.clone());

    // Attempt 1 fails (volume 1 of 2), attempt 2 fails and trips the breaker, attempt 3 is
    // rejected and the retry stops there, two attempts short of its five.
    let start = Instant::now();
    let err = service.clone().oneshot(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(upstream.calls(), 2);
    assert_eq!(start.elapsed(), 20 * MS);
    assert_eq!(breaker.state(), State::Open);

    // A call while open: exactly one attempt, rejected on the first poll.
    let future = service.clone().oneshot(());
    tokio::pin!(future);
    let Poll::Ready(result) = poll!(future.as_mut()) else {
        panic!("a rejected call must not wait");
    };
    assert!(result.unwrap_err().is::<CircuitOpen>());
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert_eq!(upstream.calls(), 2);
    assert_eq!(breaker.stats().rejections, 2);
}

// 3. BulkheadFull is not retried either.
#[tokio::test(start_paused = true)]
async fn bulkhead_full_is_not_retried() {
    let upstream = Upstream::new(Behaviour::Hang);
    let bulkhead = BulkheadLayer::new(1);
    let mut service = ResilienceLayer::builder()
        .retry(retry(5, 10 * MS))
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap()
        .layer(upstream.clone());

    // The first call takes the only slot and hangs.
    let first = service.ready().await.unwrap().call(());
    assert_eq!(bulkhead.in_flight(), 1);
    assert_eq!(upstream.calls(), 1);

    let start = Instant::now();
    let second = service.ready().await.unwrap().call(());
    tokio::pin!(second);
    let Poll::Ready(result) = poll!(second.as_mut()) else {
        panic!("a full bulkhead must not make the caller wait");
    };
    let err = result.unwrap_err();
    assert!(err.downcast_ref::<BulkheadFull>().is_some(), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(upstream.calls(), 1);

    drop(first);
    assert_eq!(bulkhead.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_full_exactly_one_attempt() {
    let upstream = Upstream::new(Behaviour::Hang);
    let attempts = Arc::new(AtomicU32::new(0));
    let mut service = ServiceBuilder::new()
        .harden_retry(retry(5, 10 * MS))
        .layer(count_any(&attempts))
        .harden_bulkhead(1)
        .service(upstream.clone());

    let _first = service.ready().await.unwrap().call(());
    let err = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_rejections_do_not_trip_the_breaker() {
    // A burst of local overload says nothing about the upstream: it must not open the circuit.
    let breaker = breaker(2);
    let bulkhead = BulkheadLayer::new(1);
    let layer = ResilienceLayer::builder()
        .retry(retry(3, 10 * MS))
        .circuit_breaker(breaker.layer())
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap();
    let mut hanging = layer.layer(Upstream::new(Behaviour::Hang));
    let held = hanging.ready().await.unwrap().call(());
    let healthy = Upstream::new(Behaviour::Succeed);
    for _ in 0..5 {
        let err = layer.layer(healthy.clone()).oneshot(()).await.unwrap_err();
        assert!(err.is::<BulkheadFull>(), "{err}");
    }
    assert_eq!(breaker.state(), State::Closed);
    let stats = breaker.stats();
    assert_eq!(
        (stats.failures, stats.successes, stats.rejections),
        (0, 0, 0)
    );

    drop(held);
    assert_eq!(layer.layer(healthy.clone()).oneshot(()).await.unwrap(), 1);
    assert_eq!(breaker.stats().successes, 1);
}

// 4. The total timeout bounds retries including backoff sleeps.
#[tokio::test(start_paused = true)]
async fn total_timeout_bounds_retries_and_backoff_sleeps() {
    let upstream = Upstream::new(Behaviour::Fail);
    let service = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(1))
        .retry(retry(10, 300 * MS))
        .build()
        .unwrap()
        .layer(upstream.clone());

    let start = Instant::now();
    let err = service.oneshot(()).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    // Calls at 0, 300, 600 and 900 ms; the one due at 1200 ms never happens.
    assert_eq!(upstream.calls(), 4);

    // Nothing keeps running after the caller got its answer.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(upstream.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn total_timeout_bounds_attempt_timeouts_too() {
    // Attempts of 400 ms that time out, 50 ms apart: 0-400, 450-850, 900-cut at 1 s.
    let upstream = Upstream::new(Behaviour::Hang);
    let breaker = breaker(100);
    let service = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(1))
        .retry(retry(10, 50 * MS))
        .circuit_breaker(breaker.layer())
        .attempt_timeout(400 * MS)
        .build()
        .unwrap()
        .layer(upstream.clone());

    let start = Instant::now();
    let err = service.oneshot(()).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(upstream.calls(), 3);
    // Two attempts timed out; the third was cancelled by the total timeout and is not counted.
    assert_eq!(breaker.stats().failures, 2);
}

// 5. Retry then success.
#[tokio::test(start_paused = true)]
async fn retry_then_success_counts_every_attempt_in_the_breaker() {
    let upstream = Upstream::new(Behaviour::FailFirst(2));
    let breaker = breaker(20);
    let service = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(5))
        .retry(retry(3, 50 * MS))
        .circuit_breaker(breaker.layer())
        .bulkhead(BulkheadLayer::new(8))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(upstream.clone());

    let start = Instant::now();
    assert_eq!(service.oneshot(()).await.unwrap(), 3);
    assert_eq!(start.elapsed(), 100 * MS);
    assert_eq!(upstream.calls(), 3);
    let stats = breaker.stats();
    assert_eq!((stats.failures, stats.successes), (2, 1));
    assert_eq!(breaker.state(), State::Closed);
}

// 6. The fallback answers what is left.
#[tokio::test(start_paused = true)]
async fn fallback_answers_an_open_breaker() {
    let upstream = Upstream::new(Behaviour::Succeed);
    let breaker = breaker(5);
    breaker.force_open();
    let service = ResilienceLayer::builder()
        .fallback(FallbackLayer::new(|err: BoxError| async move {
            assert!(err.is::<CircuitOpen>(), "{err}");
            Ok(999)
        }))
        .retry(retry(3, 10 * MS))
        .circuit_breaker(breaker.layer())
        .build()
        .unwrap()
        .layer(upstream.clone());

    assert_eq!(service.oneshot(()).await.unwrap(), 999);
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn fallback_when_circuit_open_lets_other_errors_through() {
    let breaker = breaker(100);
    let layer = ResilienceLayer::builder()
        .fallback(
            FallbackLayer::new(|_err: BoxError| async { Ok(999) })
                .when(|err: &BoxError| err.is::<CircuitOpen>()),
        )
        .total_timeout(Duration::from_secs(1))
        .retry(retry(2, 10 * MS))
        .circuit_breaker(breaker.layer())
        .build()
        .unwrap();

    // An upstream error, retried once, reaches the caller unchanged.
    let failing = Upstream::new(Behaviour::Fail);
    let err = layer.layer(failing.clone()).oneshot(()).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream down");
    assert_eq!(failing.calls(), 2);

    // So does the total timeout.
    let hanging = Upstream::new(Behaviour::Hang);
    let err = layer.layer(hanging.clone()).oneshot(()).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");

    // An open breaker is answered by the fallback.
    breaker.force_open();
    let ok = Upstream::new(Behaviour::Succeed);
    assert_eq!(layer.layer(ok.clone()).oneshot(()).await.unwrap(), 999);
    assert_eq!(ok.calls(), 0);
}

// 7. `build()` validation.
#[test]
fn attempt_timeout_longer_than_total_timeout_is_rejected() {
    let err = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "attempt_timeout");
    assert!(err.to_string().contains("attempt_timeout"), "{err}");

    // Equal is accepted, and so is either one alone.
    assert!(ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .is_ok());
    assert!(ResilienceLayer::builder()
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .is_ok());
    assert!(ResilienceLayer::builder()
        .total_timeout(Duration::from_millis(1))
        .build()
        .is_ok());
}

#[test]
fn breaker_window_shorter_than_twice_the_attempt_timeout_is_rejected() {
    let window = |w: Duration| {
        CircuitBreaker::builder()
            .rolling_window(w, 10)
            .build()
            .unwrap()
    };
    let err = ResilienceLayer::builder()
        .circuit_breaker(window(Duration::from_secs(10)).layer())
        .attempt_timeout(Duration::from_millis(5001))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit_breaker");
    assert!(err.to_string().contains("circuit_breaker"), "{err}");

    // The check does not depend on the order the parts were given in.
    let err = ResilienceLayer::builder()
        .attempt_timeout(Duration::from_millis(5001))
        .circuit_breaker(window(Duration::from_secs(10)).layer())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit_breaker");

    // Exactly twice is accepted.
    assert!(ResilienceLayer::builder()
        .circuit_breaker(window(Duration::from_secs(10)).layer())
        .attempt_timeout(Duration::from_secs(5))
        .build()
        .is_ok());
    // A count-based window has no length to compare.
    let counted = CircuitBreaker::builder().count_window(50).build().unwrap();
    assert!(ResilienceLayer::builder()
        .circuit_breaker(counted.layer())
        .attempt_timeout(Duration::from_secs(3600))
        .build()
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn empty_stack_passes_through_with_boxed_errors() {
    let layer = ResilienceLayer::builder().build().unwrap();
    let ok = Upstream::new(Behaviour::Succeed);
    assert_eq!(layer.layer(ok.clone()).oneshot(()).await.unwrap(), 1);
    assert_eq!(ok.calls(), 1);

    let failing = Upstream::new(Behaviour::Fail);
    let start = Instant::now();
    let err: BoxError = layer.layer(failing.clone()).oneshot(()).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream down");
    assert_eq!(failing.calls(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);

    // An error type other than BoxError comes out boxed, the original inside.
    let io = tower::service_fn(|()| async { Err::<(), _>(std::io::Error::other("io")) });
    let err = layer.layer(io).oneshot(()).await.unwrap_err();
    assert!(err.is::<std::io::Error>(), "{err}");
}

// 8. Shared state across clones, the way axum clones a service per connection.
#[tokio::test(start_paused = true)]
async fn services_and_clones_from_one_layer_share_breaker_and_bulkhead() {
    let breaker = breaker(2);
    let bulkhead = BulkheadLayer::new(1);
    let layer = ResilienceLayer::builder()
        .retry(retry(1, 10 * MS))
        .circuit_breaker(breaker.layer())
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap();
    let layer_clone = layer.clone();
    let failing = Upstream::new(Behaviour::Fail);
    let healthy = Upstream::new(Behaviour::Succeed);
    let a = layer.layer(failing.clone());
    let b = layer_clone.layer(healthy.clone());

    // The bulkhead's one slot, taken through a third service, is full for a clone of `a`.
    let hanging = Upstream::new(Behaviour::Hang);
    let mut c = layer.layer(hanging);
    let held = c.ready().await.unwrap().call(());
    let err = a.clone().oneshot(()).await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    drop(held);
    assert_eq!(bulkhead.in_flight(), 0);
    // Neither the bulkhead's rejection nor the dropped call counted.
    assert_eq!(
        (breaker.stats().failures, breaker.stats().successes),
        (0, 0)
    );

    // Two failures through clones of `a` trip the breaker for `b` and its clones.
    for _ in 0..2 {
        let err = a.clone().oneshot(()).await.unwrap_err();
        assert_eq!(err.to_string(), "upstream down");
    }
    assert_eq!(breaker.state(), State::Open);
    for _ in 0..2 {
        let err = b.clone().oneshot(()).await.unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err}");
    }
    assert_eq!(healthy.calls(), 0);

    // Concurrent connections: clones moved into spawned tasks see the same breaker.
    let tasks: Vec<_> = (0..3)
        .map(|_| tokio::spawn(b.clone().oneshot(())))
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap_err().is::<CircuitOpen>());
    }
    assert_eq!(breaker.stats().rejections, 5);
    assert_eq!(healthy.calls(), 0);
}

// 9. ServiceBuilderExt: every method inline.
#[tokio::test(start_paused = true)]
async fn service_builder_ext_composes_every_part() {
    let breaker = breaker(100);
    let attempts = Arc::new(AtomicU32::new(0));
    let fallbacks = Arc::new(AtomicU32::new(0));
    let fallback_count = Arc::clone(&fallbacks);
    let build = |upstream: Upstream| {
        let fallbacks = Arc::clone(&fallback_count);
        ServiceBuilder::new()
            .harden_fallback(move |err: BoxError| {
                let fallbacks = Arc::clone(&fallbacks);
                async move {
                    fallbacks.fetch_add(1, Ordering::SeqCst);
                    if err.is::<Elapsed>() {
                        Ok(0)
                    } else {
                        Err(err)
                    }
                }
            })
            .harden_timeout(Duration::from_secs(1))
            .harden_retry(retry(3, 100 * MS))
            .layer(count_any(&attempts))
            .harden_circuit_breaker(breaker.clone())
            .harden_bulkhead(4)
            .harden_timeout(300 * MS)
            .service(upstream)
    };

    // Retry retries: two failures, then the answer.
    let flaky = Upstream::new(Behaviour::FailFirst(2));
    let start = Instant::now();
    assert_eq!(build(flaky.clone()).oneshot(()).await.unwrap(), 3);
    assert_eq!(start.elapsed(), 200 * MS);
    assert_eq!(flaky.calls(), 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(
        (breaker.stats().failures, breaker.stats().successes),
        (2, 1)
    );

    // Timeouts fire: attempts of 300 ms at 0, 400, 800 ms; the outer 1 s cuts the third, and the
    // fallback answers the outer `Elapsed`.
    let hanging = Upstream::new(Behaviour::Hang);
    let start = Instant::now();
    assert_eq!(build(hanging.clone()).oneshot(()).await.unwrap(), 0);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(hanging.calls(), 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 6);
    assert_eq!(fallbacks.load(Ordering::SeqCst), 1);
    // Two timed-out attempts counted by the breaker; the cancelled third is not.
    assert_eq!(breaker.stats().failures, 4);

    // Other errors pass through the fallback unchanged after the retries.
    let failing = Upstream::new(Behaviour::Fail);
    let err = build(failing.clone()).oneshot(()).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream down");
    assert_eq!(failing.calls(), 3);
    assert_eq!(fallbacks.load(Ordering::SeqCst), 2);
}

// 10. Auto traits for axum and `tokio::spawn`.
fn assert_service<S, R>(_: &S)
where
    S: Service<R> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
}

fn assert_layer<L: Clone + Send + Sync + 'static>(_: &L) {}

#[test]
fn full_stack_is_clone_send_sync_static_with_a_send_future() {
    let breaker = breaker(5);
    let layer = ResilienceLayer::builder()
        .fallback(FallbackLayer::new(|_err: BoxError| async { Ok(0) }))
        .total_timeout(Duration::from_secs(5))
        .retry(retry(3, 10 * MS))
        .circuit_breaker(breaker.layer())
        .bulkhead(BulkheadLayer::new(4))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_layer(&layer);
    let service = layer.layer(Upstream::new(Behaviour::Succeed));
    assert_service::<_, ()>(&service);

    let empty = ResilienceLayer::builder().build().unwrap();
    assert_layer(&empty);
    assert_service::<_, ()>(&empty.layer(Upstream::new(Behaviour::Succeed)));

    let built = ServiceBuilder::new()
        .harden_fallback(|_err: BoxError| async { Ok(0) })
        .harden_timeout(Duration::from_secs(5))
        .harden_retry(retry(3, 10 * MS))
        .harden_circuit_breaker(breaker.clone())
        .harden_bulkhead(4)
        .harden_timeout(Duration::from_secs(1))
        .service(Upstream::new(Behaviour::Succeed));
    assert_service::<_, ()>(&built);
}

#[tokio::test(start_paused = true)]
async fn full_stack_runs_in_spawned_tasks() {
    let upstream = Upstream::new(Behaviour::Succeed);
    let service = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(5))
        .retry(retry(3, 10 * MS))
        .circuit_breaker(breaker(5).layer())
        .bulkhead(BulkheadLayer::new(4))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(upstream.clone());
    let tasks: Vec<_> = (0..4)
        .map(|_| tokio::spawn(service.clone().oneshot(())))
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    answers.sort_unstable();
    assert_eq!(answers, [1, 2, 3, 4]);
}

// Absent parts cost nothing: the stack is as big as the hand-built one (the exact type is
// checked in the crate's unit tests, which can name the stack's inner wrappers).

/// The type's name, to check at run time that no runtime-optional part (`Optional*`, or a
/// tower `Either`) is in it.
fn type_of<T>(_: &T) -> &'static str {
    std::any::type_name::<T>()
}

/// Asserts that `service` holds no runtime-optional part.
fn assert_no_runtime_part<T>(service: &T) {
    let name = type_of(service);
    assert!(
        !name.contains("Either") && !name.contains("Optional"),
        "{name}"
    );
}

fn future_size<S: Service<(), Response = u32>>(_: &S) -> usize {
    std::mem::size_of::<S::Future>()
}

fn sizes<S: Service<(), Response = u32>>(service: &S) -> (usize, usize) {
    (std::mem::size_of_val(service), future_size(service))
}

#[test]
fn the_bench_stack_is_as_big_as_the_hand_built_one() {
    // The benchmarked stack: total timeout + retry (default budget) + breaker + bulkhead, against the
    // same layers in a `ServiceBuilder` without the stack's innermost `BoxErrors` (and without a
    // timeout layer: the stack's retry ends the call at the total timeout itself).
    let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
    let breaker = breaker(20);
    let stack = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(1))
        .retry(policy.clone())
        .circuit_breaker(breaker.layer())
        .bulkhead(BulkheadLayer::new(64))
        .build()
        .unwrap()
        .layer(Upstream::new(Behaviour::Succeed));
    let by_hand = ServiceBuilder::new()
        .harden_retry(policy)
        .harden_circuit_breaker(breaker.clone())
        .harden_bulkhead(64)
        .service(Upstream::new(Behaviour::Succeed));
    // The types differ only by `BoxErrors` and the breaker's `IgnoreBulkheadFull`.
    assert_no_runtime_part(&stack);
    assert_eq!(sizes(&stack), sizes(&by_hand));
}

#[test]
fn each_part_alone_is_as_big_as_that_layer_alone() {
    let upstream = || Upstream::new(Behaviour::Succeed);
    let bare = sizes(&upstream());

    let empty = ResilienceLayer::builder()
        .build()
        .unwrap()
        .layer(upstream());
    assert_eq!(sizes(&empty), bare);

    let d = Duration::from_secs(1);
    let timeout = harden::timeout::TimeoutLayer::new(d).layer(upstream());
    let total = ResilienceLayer::builder().total_timeout(d).build().unwrap();
    let attempt = ResilienceLayer::builder()
        .attempt_timeout(d)
        .build()
        .unwrap();
    for service in [total.layer(upstream()), attempt.layer(upstream())] {
        assert_no_runtime_part(&service);
        assert_eq!(sizes(&service), sizes(&timeout));
    }

    let policy = retry(3, 10 * MS);
    let retried = ResilienceLayer::builder()
        .retry(policy.clone())
        .build()
        .unwrap();
    assert_no_runtime_part(&retried.layer(upstream()));
    assert_eq!(
        sizes(&retried.layer(upstream())),
        sizes(&harden::retry::RetryLayer::new(policy).layer(upstream()))
    );

    let b = breaker(5);
    let guarded = ResilienceLayer::builder()
        .circuit_breaker(b.layer())
        .build()
        .unwrap();
    assert_no_runtime_part(&guarded.layer(upstream()));
    assert_eq!(
        sizes(&guarded.layer(upstream())),
        sizes(&b.layer().layer(upstream()))
    );

    let limited = ResilienceLayer::builder()
        .bulkhead(BulkheadLayer::new(4))
        .build()
        .unwrap();
    assert_no_runtime_part(&limited.layer(upstream()));
    assert_eq!(
        sizes(&limited.layer(upstream())),
        sizes(&BulkheadLayer::new(4).layer(upstream()))
    );
}

#[test]
fn a_part_given_as_an_option_keeps_its_size_on_or_off() {
    let upstream = || Upstream::new(Behaviour::Succeed);
    let d = Duration::from_secs(1);
    let static_on = sizes(
        &ResilienceLayer::builder()
            .total_timeout(d)
            .build()
            .unwrap()
            .layer(upstream()),
    );
    let on = ResilienceLayer::builder()
        .total_timeout(Some(d))
        .build()
        .unwrap();
    let off = ResilienceLayer::builder()
        .total_timeout(None)
        .build()
        .unwrap();
    let (on, off) = (on.layer(upstream()), off.layer(upstream()));
    assert_eq!((on.timeout(), off.timeout()), (Some(d), None));
    assert_eq!(sizes(&on), sizes(&off));
    assert!(
        sizes(&off).1 >= static_on.1,
        "{:?} {static_on:?}",
        sizes(&off)
    );

    let on = ResilienceLayer::builder()
        .bulkhead(Some(BulkheadLayer::new(1)))
        .build()
        .unwrap();
    let off = ResilienceLayer::builder().bulkhead(None).build().unwrap();
    let (on, off) = (on.layer(upstream()), off.layer(upstream()));
    assert_eq!((on.in_flight(), off.in_flight()), (Some(0), None));
    assert_eq!(sizes(&on), sizes(&off));
}

#[tokio::test(start_paused = true)]
async fn timeouts_given_as_options_fire_when_some_and_not_when_none() {
    let hanging = || Upstream::new(Behaviour::Hang);
    for (total, attempt) in [(Some(Duration::from_secs(1)), None), (None, Some(300 * MS))] {
        let service = ResilienceLayer::builder()
            .total_timeout(total)
            .attempt_timeout(attempt)
            .build()
            .unwrap()
            .layer(hanging());
        let start = Instant::now();
        let err = service.oneshot(()).await.unwrap_err();
        assert!(err.is::<Elapsed>(), "{err}");
        assert_eq!(Some(start.elapsed()), total.or(attempt));
    }

    // Both `None`: nothing bounds the call.
    let service = ResilienceLayer::builder()
        .total_timeout(None)
        .attempt_timeout(None)
        .build()
        .unwrap()
        .layer(hanging());
    let call = tokio::spawn(service.oneshot(()));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!call.is_finished());
    call.abort();

    // The checks of `build()` see optional parts too.
    let err = ResilienceLayer::builder()
        .total_timeout(Some(Duration::from_secs(1)))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "attempt_timeout");
    let err = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(1))
        .attempt_timeout(Some(Duration::from_secs(2)))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "attempt_timeout");
    assert!(ResilienceLayer::builder()
        .total_timeout(None)
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn bulkhead_given_as_an_option_limits_when_some_and_not_when_none() {
    let on = ResilienceLayer::builder()
        .bulkhead(Some(BulkheadLayer::new(1)))
        .build()
        .unwrap();
    let mut service = on.layer(Upstream::new(Behaviour::Hang));
    let _held = service.ready().await.unwrap().call(());
    let err = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");

    let off = ResilienceLayer::builder().bulkhead(None).build().unwrap();
    let upstream = Upstream::new(Behaviour::Hang);
    let mut service = off.layer(upstream.clone());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(service.ready().await.unwrap().call(()));
    }
    // Three calls in flight at once, all let through.
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn breaker_right_above_the_service_judges_its_boxed_errors() {
    // No bulkhead and no attempt timeout: the breaker wraps `BoxErrors<S>` directly, and an
    // inner error that is not a `BoxError` still counts as a failure and comes out boxed.
    let breaker = breaker(3);
    let io = tower::service_fn(|ok: bool| async move {
        if ok {
            Ok(1u32)
        } else {
            Err(std::io::Error::other("io down"))
        }
    });
    let service = ResilienceLayer::builder()
        .circuit_breaker(breaker.layer())
        .build()
        .unwrap()
        .layer(io);
    assert_eq!(service.clone().oneshot(true).await.unwrap(), 1);
    let err = service.clone().oneshot(false).await.unwrap_err();
    assert!(err.is::<std::io::Error>(), "{err}");
    let err = service.clone().oneshot(false).await.unwrap_err();
    assert!(err.is::<std::io::Error>(), "{err}");
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.failures), (1, 2));
    assert_eq!(breaker.state(), State::Open);
    let err = service.oneshot(true).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn retry_alone_retries_and_boxes_inner_errors() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let io = tower::service_fn(move |()| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n < 3 {
                Err(std::io::Error::other("io down"))
            } else {
                Ok(n)
            }
        }
    });
    let service = ResilienceLayer::builder()
        .retry(retry(3, 10 * MS))
        .build()
        .unwrap()
        .layer(io.clone());
    assert_eq!(service.oneshot(()).await.unwrap(), 3);
    let service = ResilienceLayer::builder()
        .retry(retry(2, 10 * MS))
        .build()
        .unwrap()
        .layer(io);
    calls.store(0, Ordering::SeqCst);
    let err = service.oneshot(()).await.unwrap_err();
    assert!(err.is::<std::io::Error>(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn debug_shows_the_parts_whatever_their_kind() {
    let builder = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(5))
        .bulkhead(Some(BulkheadLayer::new(3)))
        .attempt_timeout(None)
        .name("inventory");
    let text = format!("{builder:?}");
    assert!(text.contains("total_timeout: Some(5s)"), "{text}");
    assert!(text.contains("max_concurrent: 3"), "{text}");
    assert!(text.contains("attempt_timeout: None"), "{text}");
    assert!(text.contains("inventory"), "{text}");
    let layer = format!("{:?}", builder.build().unwrap());
    assert!(layer.contains("total_timeout: Some(5s)"), "{layer}");
    assert!(layer.contains("attempt_timeout: None"), "{layer}");
    let empty = format!("{:?}", ResilienceLayer::builder());
    assert!(empty.contains("total_timeout: None"), "{empty}");
    assert!(empty.contains("bulkhead: None"), "{empty}");
}
