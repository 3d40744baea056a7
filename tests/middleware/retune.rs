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
fn invalid_values_and_record_latency_are_refused_and_the_settings_kept() {
    let b = CircuitBreaker::builder().build().unwrap();
    let before = b.settings();

    let mut s = before.clone();
    s.record_latency = !s.record_latency;
    assert_eq!(b.retune(&s).unwrap_err().field(), "record_latency");
    let mut s = before.clone();
    s.rolling_window = Duration::from_nanos(10_000_000_001); // not 10 equal buckets
    assert_eq!(b.retune(&s).unwrap_err().field(), "rolling_window");
    let mut s = before.clone();
    s.count_window = Some(5); // under the volume threshold of 20
    assert_eq!(b.retune(&s).unwrap_err().field(), "volume_threshold");
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

fn with_window(b: &CircuitBreaker, window: Duration, buckets: u32) {
    let mut s = b.settings();
    s.rolling_window = window;
    s.rolling_window_buckets = buckets;
    s.count_window = None;
    b.retune(&s).unwrap();
    assert_eq!(b.settings(), s);
}

#[tokio::test(start_paused = true)]
async fn a_new_window_length_clears_the_window_and_keeps_a_closed_breaker_closed() {
    let b = breaker();
    for _ in 0..3 {
        fail(&b);
    }
    assert_eq!(
        b.state(),
        State::Closed,
        "3 calls are under the volume of 4"
    );

    with_window(&b, Duration::from_secs(30), 10);
    assert_eq!(b.state(), State::Closed);
    let stats = b.stats();
    assert_eq!(
        (stats.successes, stats.failures),
        (0, 0),
        "counts start from zero"
    );
    fail(&b);
    assert_eq!(b.state(), State::Closed, "1 call in the new window, not 4");
    ok(&b);
    ok(&b);
    fail(&b); // 2 of 4 in the new window
    assert_eq!(b.state(), State::Open);

    // The new length holds: a failure 20 s old is still in a 30 s window.
    b.reset();
    for _ in 0..2 {
        fail(&b);
    }
    tokio::time::advance(Duration::from_secs(20)).await;
    ok(&b);
    assert_eq!(b.stats().failures, 2, "still inside the 30 s window");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(b.stats().failures, 0, "aged out of it");
}

#[tokio::test(start_paused = true)]
async fn a_new_bucket_count_and_a_count_window_clear_the_window_too() {
    let b = breaker();
    ok(&b);
    with_window(&b, Duration::from_secs(10), 100);
    assert_eq!(b.stats().successes, 0);
    ok(&b);
    assert_eq!(b.stats().successes, 1);

    let mut s = b.settings();
    s.count_window = Some(5);
    b.retune(&s).unwrap();
    assert_eq!(b.settings().count_window, Some(5));
    assert_eq!(b.stats().successes, 0);
    for _ in 0..7 {
        ok(&b);
    }
    assert_eq!(b.stats().successes, 5, "the last 5 calls");

    with_window(&b, Duration::from_secs(10), 10);
    assert_eq!(b.stats().successes, 0);
    assert_eq!(b.settings().count_window, None);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_keeps_its_deadline_across_a_new_window() {
    let b = breaker();
    for _ in 0..4 {
        fail(&b);
    }
    tokio::time::advance(Duration::from_millis(400)).await;
    with_window(&b, Duration::from_secs(20), 20);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.next_probe_in(), Some(Duration::from_millis(600)));
    let rejections = b.stats().rejections;
    assert!(matches!(
        b.call(|| Ok::<_, &str>(())),
        Err(CallError::Rejected(_))
    ));
    assert_eq!(
        b.stats().rejections,
        rejections + 1,
        "rejections carry over the change"
    );

    tokio::time::advance(Duration::from_millis(600)).await;
    ok(&b); // the probe
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_breaker_stays_half_open_and_its_probe_decides() {
    let b = breaker();
    let mut s = b.settings();
    s.half_open_max_calls = 2;
    b.retune(&s).unwrap();
    for _ in 0..4 {
        fail(&b);
    }
    tokio::time::advance(SEC).await;
    ok(&b);
    assert_eq!(b.state(), State::HalfOpen);
    with_window(&b, Duration::from_secs(5), 5);
    assert_eq!(b.state(), State::HalfOpen);
    ok(&b); // the second probe success closes it
    assert_eq!(b.state(), State::Closed);
    for _ in 0..3 {
        fail(&b);
    }
    assert_eq!(b.state(), State::Closed, "the closed window starts empty");
}

#[tokio::test(start_paused = true)]
async fn services_built_before_a_new_window_record_into_it_and_calls_across_it_count_nowhere() {
    use tower::{Layer, Service, ServiceExt};
    let b = breaker();
    let (gate_tx, gate) = tokio::sync::watch::channel(false);
    let mut svc = b.layer().layer(tower::service_fn(move |fail: bool| {
        let mut gate = gate.clone();
        async move {
            let _ = gate.wait_for(|open| *open).await;
            if fail {
                Err("boom")
            } else {
                Ok(())
            }
        }
    }));
    // Admitted before the change, failing after it.
    let before = svc.ready().await.unwrap().call(true);
    let before = tokio::spawn(before);
    tokio::task::yield_now().await;
    with_window(&b, Duration::from_secs(20), 10);
    gate_tx.send(true).unwrap();
    assert!(before.await.unwrap().is_err());
    assert_eq!(
        b.stats().failures,
        0,
        "a call across the change counts nowhere"
    );

    // The same service, called after the change: into the new window.
    for _ in 0..2 {
        svc.ready().await.unwrap().call(false).await.unwrap();
        let _ = svc.ready().await.unwrap().call(true).await;
    }
    let stats = b.stats();
    assert_eq!((stats.successes, stats.failures), (2, 2));
    assert_eq!(b.state(), State::Open, "2 of 4 in the new window");
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

#[derive(Debug, Clone)]
enum Op {
    Call { fail: bool },
    Window(Option<u32>, u32),
    ForceOpen,
    Reset,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => any::<bool>().prop_map(|fail| Op::Call { fail }),
        2 => (proptest::option::of(1u32..8), prop::sample::select(vec![1u32, 2, 5, 10, 40]))
            .prop_map(|(count, buckets)| Op::Window(count, buckets)),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::Reset),
    ]
}

proptest::proptest! {
    // The rule, against a model: a new window starts from zero counts and never moves the state.
    #[test]
    fn a_new_window_starts_from_zero_and_keeps_the_state(ops in proptest::collection::vec(op(), 1..80)) {
        let b = CircuitBreaker::builder()
            .volume_threshold(1_000) // never judged: the state moves only by hand
            .build()
            .unwrap();
        let mut since_change: Vec<bool> = Vec::new();
        let mut count_window: Option<u32> = None;
        let mut shape = (None, 10);
        for op in ops {
            let state = b.state();
            match op {
                Op::Call { fail: failing } => {
                    if failing { fail(&b) } else { ok(&b) }
                    if state == State::Closed {
                        since_change.push(failing);
                    }
                }
                Op::Window(count, buckets) => {
                    let mut s = b.settings();
                    s.count_window = count;
                    s.rolling_window = Duration::from_secs(10);
                    s.rolling_window_buckets = buckets;
                    s.volume_threshold = count.unwrap_or(1_000).min(1_000);
                    b.retune(&s).unwrap();
                    proptest::prop_assert_eq!(b.state(), state, "the state is kept");
                    let spec = count.map_or((None, buckets), |n| (Some(n), 0));
                    if spec != shape {
                        since_change.clear(); // the same shape again keeps the counts
                    }
                    shape = spec;
                    count_window = count;
                }
                Op::ForceOpen => b.force_open(),
                Op::Reset => {
                    b.reset();
                    since_change.clear();
                }
            }
            let kept = match count_window {
                Some(n) => &since_change[since_change.len().saturating_sub(n as usize)..],
                None => &since_change[..],
            };
            let failures = kept.iter().filter(|f| **f).count() as u64;
            let stats = b.stats();
            proptest::prop_assert_eq!(
                (stats.successes, stats.failures),
                (kept.len() as u64 - failures, failures)
            );
        }
    }
}
