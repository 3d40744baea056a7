//! The breaker's edge cases (many resets, rejections from below, panics while a probe slot is
//! held), through the public API on paused tokio time.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use harden::bulkhead::error::BulkheadFull;
use harden::circuit_breaker::error::CircuitOpen;
use harden::circuit_breaker::{breaker_classifier_fn, Outcome};
use harden::circuit_breaker::{CallError, CircuitBreaker, EventKind, State};
use harden::{BoxError, ServiceBuilderExt};
use tokio::time::advance;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

type Hang = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

/// Answers `Ok(x)` at once, except 0, which never answers.
fn upstream(x: u32) -> Hang {
    Box::pin(async move {
        if x == 0 {
            std::future::pending::<()>().await;
        }
        Ok(x)
    })
}

fn fail() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("down"))
}

// 32 768 resets made the next trip's open deadline look stale: the breaker stayed open.
#[tokio::test(start_paused = true)]
async fn the_breaker_closes_again_after_40_000_resets() {
    let breaker = CircuitBreaker::builder()
        .volume_threshold(1)
        .reset_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for _ in 0..40_000 {
        breaker.reset();
    }
    assert!(breaker.call(fail).is_err());
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.next_probe_in(), Some(Duration::from_secs(1)));
    advance(Duration::from_secs(3600)).await;
    assert_eq!(breaker.next_probe_in(), Some(Duration::ZERO));
    assert!(breaker.call(|| Ok::<_, std::io::Error>(())).is_ok());
    assert_eq!(breaker.state(), State::Closed);
}

// A breaker above a bulkhead counted `BulkheadFull` as a failure and opened on a healthy upstream.
#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_below_never_opens_the_breaker() {
    let breaker = CircuitBreaker::builder()
        .volume_threshold(2)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .harden_circuit_breaker(breaker.clone())
        .harden_bulkhead(1)
        .service(service_fn(upstream));
    let mut held = svc.clone();
    let _hung = held.ready().await.unwrap().call(0);
    for _ in 0..5 {
        let err = svc.clone().oneshot(1).await.unwrap_err();
        assert!(err.is::<BulkheadFull>(), "{err}");
    }
    assert_eq!(breaker.state(), State::Closed);
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.failures), (0, 0));
}

// Another breaker's `CircuitOpen` from below counted as a failure.
#[tokio::test(start_paused = true)]
async fn an_open_breaker_below_never_opens_the_one_above() {
    let outer = CircuitBreaker::builder()
        .name("outer")
        .volume_threshold(1)
        .build()
        .unwrap();
    let inner = CircuitBreaker::builder().name("inner").build().unwrap();
    inner.force_open();
    let svc = outer
        .layer()
        .layer(inner.layer().layer(service_fn(upstream)));
    let err = svc.oneshot(1).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("inner rejects");
    assert_eq!(open.breaker(), "inner");
    assert_eq!(outer.state(), State::Closed);
    // And through `call` too.
    let err: Result<(), BoxError> = Err(Box::new(open.clone()));
    assert!(outer.call(|| err).is_err());
    assert_eq!(outer.state(), State::Closed);
}

// An open breaker forwarded `poll_ready` to a saturated inner service: callers waited, not rejected.
#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_ready_at_once_over_a_saturated_inner_service() {
    let breaker = CircuitBreaker::builder().name("db").build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .concurrency_limit(1)
        .service(service_fn(upstream));
    let mut first = svc.clone();
    let _hung = first.ready().await.unwrap().call(0);

    // Closed: the inner service is polled, and it is saturated.
    let mut waiting = svc.clone();
    assert!(
        waiting.ready().now_or_never().is_none(),
        "closed: waits for the inner service"
    );

    breaker.force_open();
    let mut caller = svc.clone();
    let ready = caller.ready().now_or_never().expect("open: ready at once");
    let err = ready.unwrap().call(7).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("rejected");
    assert_eq!(open.retry_after(), None);
    assert_eq!(open.breaker(), "db");
    // The caller that was waiting is woken with a rejection too, never parked.
    assert!(waiting.ready().now_or_never().is_some());
}

// Item 4's contract cases: `poll_ready` saw the breaker open and `call` finds it closed (the
// call is rejected, the inner service was never polled); and the reverse (the inner service's
// readiness is kept for the next admitted call).
#[tokio::test(start_paused = true)]
async fn readiness_decided_in_poll_ready_is_what_call_acts_on() {
    let breaker = CircuitBreaker::builder().build().unwrap();
    let polled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = polled.clone();
    let inner = tower::service_fn(upstream);
    let counting = tower::util::MapRequestLayer::new(|x: u32| x).layer(inner);
    let inner = CountReady(counting, counter);
    let mut svc = breaker.layer().layer(inner);

    breaker.force_open();
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    assert_eq!(polled.load(Ordering::SeqCst), 0, "open: inner not polled");
    breaker.reset();
    let err = svc.call(1).await.unwrap_err();
    let open = err
        .downcast_ref::<CircuitOpen>()
        .expect("shed as poll_ready decided");
    assert_eq!(open.retry_after(), Some(Duration::ZERO));

    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    assert_eq!(polled.load(Ordering::SeqCst), 1, "closed: inner polled");
    breaker.force_open();
    assert!(svc.call(2).await.unwrap_err().is::<CircuitOpen>());
    breaker.reset();
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    assert_eq!(
        polled.load(Ordering::SeqCst),
        1,
        "readiness kept, not polled again"
    );
    assert_eq!(svc.call(3).await.unwrap(), 3);
}

/// Counts `poll_ready` calls of the inner service.
#[derive(Clone)]
struct CountReady<S>(S, Arc<std::sync::atomic::AtomicUsize>);

impl<S: Service<u32>> Service<u32> for CountReady<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.poll_ready(cx)
    }
    fn call(&mut self, x: u32) -> S::Future {
        self.0.call(x)
    }
}

fn half_open(
    listener: impl Fn(&harden::circuit_breaker::Event<'_>) + Send + Sync + 'static,
) -> CircuitBreaker {
    let breaker = CircuitBreaker::builder()
        .volume_threshold(1)
        .reset_timeout(Duration::from_secs(1))
        .on_event(listener)
        .build()
        .unwrap();
    assert!(breaker.call(fail).is_err());
    breaker
}

// A classifier panicking during a probe kept the probe slot taken until `max_probe_duration`.
#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_gives_the_probe_slot_back() {
    let breaker = half_open(|_| {});
    advance(Duration::from_secs(1)).await;
    let panicky = breaker_classifier_fn(|r: Result<&u32, &BoxError>| match r {
        Ok(&13) => panic!("classifier bug"),
        _ => Outcome::Success,
    });
    let svc = breaker
        .layer()
        .with_classifier(panicky)
        .layer(service_fn(upstream));
    let unwound = AssertUnwindSafe(svc.clone().oneshot(13))
        .catch_unwind()
        .await;
    assert!(unwound.is_err(), "the classifier panicked");
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(
        svc.oneshot(1).await.unwrap(),
        1,
        "the slot is free: a new probe"
    );
    assert_eq!(breaker.state(), State::Closed);

    // The same through `call_classified`.
    let breaker = half_open(|_| {});
    advance(Duration::from_secs(1)).await;
    let unwound = std::panic::catch_unwind(AssertUnwindSafe(|| {
        breaker.call_classified(
            &breaker_classifier_fn(|_: Result<&(), &()>| panic!("bug")),
            || Ok(()),
        )
    }));
    assert!(unwound.is_err());
    assert!(breaker.call(|| Ok::<_, ()>(())).is_ok(), "the slot is free");
}

// A listener panicking while a probe slot was held (outcome or transition) leaked the slot.
#[tokio::test(start_paused = true)]
async fn a_panicking_listener_gives_the_probe_slot_back() {
    for on in ["success", "half_open"] {
        let armed = Arc::new(AtomicBool::new(true));
        let trigger = armed.clone();
        let breaker = half_open(move |event| {
            let hit = match event.kind {
                EventKind::Success => on == "success",
                EventKind::Transition { to, .. } => on == "half_open" && to == State::HalfOpen,
                _ => false,
            };
            if hit && trigger.swap(false, Ordering::SeqCst) {
                panic!("listener bug");
            }
        });
        advance(Duration::from_secs(1)).await;
        let unwound = std::panic::catch_unwind(AssertUnwindSafe(|| {
            breaker.call(|| Ok::<_, std::io::Error>(()))
        }));
        assert!(unwound.is_err(), "{on}: the listener panicked");
        assert!(!armed.load(Ordering::SeqCst));
        assert!(
            breaker.call(|| Ok::<_, std::io::Error>(())).is_ok(),
            "{on}: the slot is free, a new probe is admitted"
        );
        assert_eq!(breaker.state(), State::Closed, "{on}");
    }
}

// `CircuitOpen` carried no breaker name, so a server could not tell which breaker rejected.
#[tokio::test(start_paused = true)]
async fn circuit_open_names_its_breaker() {
    let breaker = CircuitBreaker::builder().name("payments").build().unwrap();
    breaker.force_open();
    match breaker.call(|| Ok::<_, ()>(())) {
        Err(CallError::Rejected(open)) => assert_eq!(open.breaker(), "payments"),
        other => panic!("{other:?}"),
    }
    let err = breaker
        .layer()
        .layer(service_fn(upstream))
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<CircuitOpen>().unwrap().breaker(),
        "payments"
    );
    let unnamed = CircuitBreaker::builder().build().unwrap();
    unnamed.force_open();
    let Err(CallError::Rejected(open)) = unnamed.call(|| Ok::<_, ()>(())) else {
        panic!("forced open")
    };
    assert_eq!(open.breaker(), harden::circuit_breaker::DEFAULT_NAME);
}
