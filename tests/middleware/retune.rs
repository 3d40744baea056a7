//! Retuning running middleware: each documented rule of what a change does to a breaker, a
//! bulkhead and a retry policy in flight.

use std::time::Duration;

use harden::circuit_breaker::{
    CallError, CircuitBreaker, CircuitBreakerSettings, SlowCallSettings, State,
};

const SEC: Duration = Duration::from_secs(1);

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder()
        .name("retune")
        .volume_threshold(4)
        .error_threshold_percentage(50.0)
        .rolling_window(Duration::from_secs(10), 10)
        .reset_timeout(SEC)
        .build()
        .unwrap()
}

fn ok(b: &CircuitBreaker) {
    let _ = b.call(|| Ok::<_, &str>(()));
}

fn fail(b: &CircuitBreaker) {
    let _ = b.call(|| Err::<(), _>("boom"));
}

#[tokio::test(start_paused = true)]
async fn a_lower_threshold_judges_the_kept_window_at_the_next_failure() {
    let b = breaker();
    for _ in 0..7 {
        ok(&b);
    }
    fail(&b); // 1 of 8: under 50 %
    assert_eq!(b.state(), State::Closed);

    let mut s = b.settings();
    s.error_threshold_percentage = 20.0;
    b.retune(&s).unwrap();
    assert_eq!(b.state(), State::Closed, "a change alone moves no state");
    assert_eq!(b.stats().failures, 1, "the window keeps its counts");
    fail(&b); // 2 of 9 = 22 %: over the new threshold
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_higher_volume_threshold_waits_for_more_calls() {
    let b = breaker();
    let mut s = b.settings();
    s.volume_threshold = 10;
    b.retune(&s).unwrap();
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), State::Closed, "4 calls are under the new volume");
    for _ in 0..6 {
        fail(&b);
    }
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_keeps_its_deadline_and_the_next_opening_uses_the_new_timeout() {
    let b = breaker();
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), State::Open);
    let mut s = b.settings();
    s.reset_timeout = 5 * SEC;
    b.retune(&s).unwrap();
    assert_eq!(
        b.next_probe_in(),
        Some(SEC),
        "the open breaker keeps its deadline"
    );

    tokio::time::advance(SEC).await;
    fail(&b); // the probe fails: open again, now for the new timeout
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.next_probe_in(), Some(5 * SEC));
}

#[tokio::test(start_paused = true)]
async fn half_open_max_calls_counts_successes_from_the_next_probe() {
    let b = breaker();
    for _ in 0..4 {
        fail(&b);
    }
    let mut s = b.settings();
    s.half_open_max_calls = 2;
    b.retune(&s).unwrap();
    tokio::time::advance(SEC).await;
    ok(&b);
    assert_eq!(b.state(), State::HalfOpen, "one of two probe successes");
    ok(&b);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_turned_on_counts_from_zero() {
    let b = breaker();
    let mut s = b.settings();
    s.volume_threshold = 100;
    b.retune(&s).unwrap();
    fail(&b);
    fail(&b);
    s.consecutive_failures = Some(3);
    b.retune(&s).unwrap();
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), State::Closed, "the run starts at zero: 2 of 3");
    fail(&b);
    assert_eq!(b.state(), State::Open);
}

/// A call through the breaker's layer that takes 200 ms of (paused) time.
async fn slow_call(b: &CircuitBreaker) -> tokio::task::JoinHandle<()> {
    use tower::{Layer, ServiceExt};
    let svc = b.layer().layer(tower::service_fn(|()| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok::<_, std::convert::Infallible>(())
    }));
    let handle = tokio::spawn(async move {
        let _ = svc.oneshot(()).await;
    });
    tokio::task::yield_now().await; // admitted now
    handle
}

#[tokio::test(start_paused = true)]
async fn the_slow_call_rule_counts_calls_admitted_while_it_is_on() {
    let b = breaker();
    let mut s = b.settings();
    s.slow_call = Some(SlowCallSettings::new(Duration::from_millis(100), 50.0));

    // Admitted while the rule is off, finished after it was turned on: not slow.
    let call = slow_call(&b).await;
    b.retune(&s).unwrap();
    tokio::time::advance(Duration::from_millis(300)).await;
    call.await.unwrap();
    assert_eq!(b.stats().slow_calls, 0);

    // Admitted while it is on: slow.
    let call = slow_call(&b).await;
    tokio::time::advance(Duration::from_millis(300)).await;
    call.await.unwrap();
    assert_eq!(b.stats().slow_calls, 1);
    assert_eq!(b.settings().slow_call, s.slow_call);

    s.slow_call = None;
    b.retune(&s).unwrap();
    assert_eq!(b.settings().slow_call, None);
    assert_eq!(b.stats().slow_call_percentage, None);
}

#[tokio::test(start_paused = true)]
async fn a_forced_state_survives_a_retune() {
    let b = breaker();
    b.force_open();
    let mut s = b.settings();
    s.error_threshold_percentage = 90.0;
    b.retune(&s).unwrap();
    assert_eq!(b.state(), State::ForcedOpen);
    assert!(matches!(
        b.call(|| Ok::<_, &str>(())),
        Err(CallError::Rejected(_))
    ));
}

#[test]
fn the_window_and_invalid_values_are_refused_and_the_settings_kept() {
    let b = CircuitBreaker::builder().build().unwrap();
    let before = b.settings();

    let mut s = before.clone();
    s.rolling_window = Duration::from_secs(20);
    assert_eq!(b.retune(&s).unwrap_err().field(), "rolling_window");
    let mut s = before.clone();
    s.count_window = Some(50);
    assert_eq!(b.retune(&s).unwrap_err().field(), "count_window");
    let mut s = before.clone();
    s.error_threshold_percentage = 0.0;
    s.reset_timeout = 3 * SEC;
    assert_eq!(
        b.retune(&s).unwrap_err().field(),
        "error_threshold_percentage"
    );

    assert_eq!(b.settings(), before);
    let _ = CircuitBreakerSettings::default();
}

fn always_failing(
    attempts: std::sync::Arc<std::sync::atomic::AtomicU32>,
) -> impl tower::Service<
    (),
    Response = (),
    Error = harden::BoxError,
    Future = std::future::Ready<Result<(), harden::BoxError>>,
> + Clone {
    tower::service_fn(move |()| {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::future::ready(Err::<(), harden::BoxError>("boom".into()))
    })
}

#[tokio::test(start_paused = true)]
async fn a_retuned_retry_policy_reaches_services_already_built() {
    use harden::retry::{Backoff, Jitter, RetryPolicy, RetrySettings};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tower::Layer;

    let policy = RetryPolicy::builder()
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::from_millis(10)).jitter(Jitter::None))
        .no_budget()
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let svc = policy.layer().layer(always_failing(attempts.clone()));
    let call = |svc: &_| tower::ServiceExt::oneshot(Clone::clone(svc), ());
    assert!(call(&svc).await.is_err());
    assert_eq!(attempts.swap(0, Ordering::Relaxed), 2);

    let mut settings = RetrySettings::from(&policy);
    settings.max_attempts = 4;
    settings.backoff.initial_delay = Duration::from_millis(50);
    policy.retune(&settings).unwrap();
    let start = tokio::time::Instant::now();
    assert!(call(&svc).await.is_err());
    assert_eq!(attempts.swap(0, Ordering::Relaxed), 4);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(150),
        "3 waits of the new delay"
    );
    assert_eq!(RetrySettings::from(&policy), settings);

    // Refused changes keep the settings.
    let mut bad = settings;
    bad.max_attempts = 0;
    assert_eq!(policy.retune(&bad).unwrap_err().field(), "max_attempts");
    let mut bad = settings;
    bad.total_timeout = Some(Duration::from_secs(1));
    assert_eq!(policy.retune(&bad).unwrap_err().field(), "total_timeout");
    let mut bad = settings;
    bad.budget.enabled = true;
    assert_eq!(policy.retune(&bad).unwrap_err().field(), "budget");
    assert_eq!(RetrySettings::from(&policy), settings);
}

#[tokio::test(start_paused = true)]
async fn a_lowered_bulkhead_keeps_the_calls_in_flight_and_rejects_new_ones() {
    use harden::bulkhead::error::BulkheadFull;
    use harden::bulkhead::{BulkheadLayer, BulkheadSettings};
    use tower::{Layer, ServiceExt};

    let bulkhead = BulkheadLayer::try_new(1).unwrap();
    let svc = bulkhead.layer(tower::service_fn(|()| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, std::convert::Infallible>(())
    }));
    let spawn = |svc: &_| {
        let svc = Clone::clone(svc);
        tokio::spawn(async move { ServiceExt::oneshot(svc, ()).await })
    };
    let first = spawn(&svc);
    tokio::task::yield_now().await;
    let err = ServiceExt::oneshot(svc.clone(), ()).await.unwrap_err();
    assert!(err.is::<BulkheadFull>());

    bulkhead.retune(&BulkheadSettings::new(2)).unwrap();
    let second = spawn(&svc);
    tokio::task::yield_now().await;
    assert_eq!(bulkhead.in_flight(), 2, "raised: admitted at once");

    bulkhead.retune(&BulkheadSettings::new(1)).unwrap();
    assert_eq!(
        bulkhead.in_flight(),
        2,
        "lowered: the calls in flight keep their slots"
    );
    let err = ServiceExt::oneshot(svc.clone(), ()).await.unwrap_err();
    assert!(err.is::<BulkheadFull>());

    assert_eq!(
        bulkhead
            .retune(&BulkheadSettings::new(0))
            .unwrap_err()
            .field(),
        "max_concurrent"
    );
    assert_eq!(bulkhead.max_concurrent(), 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let third = spawn(&svc);
    tokio::task::yield_now().await;
    assert_eq!(
        bulkhead.in_flight(),
        1,
        "under the new limit again: admitted"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    third.await.unwrap().unwrap();
}
