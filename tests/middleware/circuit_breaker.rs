//! Behaviour of the circuit breaker through its tower layer, on paused tokio time.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use harden::circuit_breaker::error::CircuitOpen;
use harden::circuit_breaker::{breaker_classifier_fn, BreakerClassifierFn, Outcome};
use harden::circuit_breaker::{CircuitBreaker, CircuitBreakerBuilder, State};
use harden::BoxError;
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};

/// What the test upstream does with a request.
#[derive(Debug, Clone, Copy)]
enum Call {
    Ok,
    Fail,
    /// Answers 404, which the test classifier ignores.
    Ignore,
    /// Never answers.
    Hang,
    /// Answers after a delay, successfully or not.
    After(Duration, bool),
}

type Upstream = tower::util::ServiceFn<
    fn(Call) -> Pin<Box<dyn Future<Output = Result<u16, std::io::Error>> + Send>>,
>;
type Classifier = BreakerClassifierFn<fn(Result<&u16, &std::io::Error>) -> Outcome>;
type Svc = harden::circuit_breaker::CircuitBreakerService<Upstream, Classifier>;

fn upstream(call: Call) -> Pin<Box<dyn Future<Output = Result<u16, std::io::Error>> + Send>> {
    Box::pin(async move {
        match call {
            Call::Ok => Ok(200),
            Call::Fail => Err(std::io::Error::other("upstream failed")),
            Call::Ignore => Ok(404),
            Call::Hang => std::future::pending().await,
            Call::After(d, ok) => {
                tokio::time::sleep(d).await;
                if ok {
                    Ok(200)
                } else {
                    Err(std::io::Error::other("late failure"))
                }
            }
        }
    })
}

fn classify(r: Result<&u16, &std::io::Error>) -> Outcome {
    match r {
        Ok(404) => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

fn service(breaker: &CircuitBreaker) -> Svc {
    let classifier: Classifier =
        breaker_classifier_fn(classify as fn(Result<&u16, &std::io::Error>) -> Outcome);
    breaker
        .layer()
        .with_classifier(classifier)
        .layer(tower::service_fn(upstream as fn(_) -> _))
}

fn build(b: CircuitBreakerBuilder) -> (CircuitBreaker, Svc) {
    let breaker = b.build().expect("valid config");
    let svc = service(&breaker);
    (breaker, svc)
}

async fn call(svc: &mut Svc, c: Call) -> Result<u16, BoxError> {
    svc.ready().await?.call(c).await
}

fn open_err(r: Result<u16, BoxError>) -> CircuitOpen {
    match r {
        Err(e) => e
            .downcast_ref::<CircuitOpen>()
            .cloned()
            .unwrap_or_else(|| panic!("not a rejection: {e}")),
        Ok(v) => panic!("not rejected: {v}"),
    }
}

fn small() -> CircuitBreakerBuilder {
    CircuitBreaker::builder()
        .volume_threshold(4)
        .error_threshold_percentage(50.0)
        .rolling_window(Duration::from_secs(10), 10)
        .reset_timeout(Duration::from_secs(10))
}

async fn trip(svc: &mut Svc, breaker: &CircuitBreaker) {
    for _ in 0..4 {
        let _ = call(svc, Call::Fail).await;
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn trips_when_failure_rate_reaches_threshold_inclusive() {
    let (breaker, mut svc) = build(small());
    call(&mut svc, Call::Ok).await.unwrap();
    call(&mut svc, Call::Ok).await.unwrap();
    call(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(
        breaker.state(),
        State::Closed,
        "3 calls are below the volume threshold"
    );
    call(&mut svc, Call::Fail).await.unwrap_err();
    // 2 of 4 = 50 %: `>=` opens (opossum's `>` would not).
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn below_volume_threshold_never_trips() {
    let (breaker, mut svc) = build(small().volume_threshold(5));
    for _ in 0..4 {
        call(&mut svc, Call::Fail).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Closed);
    let stats = breaker.stats();
    assert_eq!(stats.failures, 4);
    assert_eq!(stats.failure_percentage, None);
}

#[tokio::test(start_paused = true)]
async fn successes_alone_never_trip_even_above_volume() {
    let (breaker, mut svc) = build(small());
    for _ in 0..10 {
        call(&mut svc, Call::Ok).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().failure_percentage, Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn rejected_calls_are_not_counted() {
    let (breaker, mut svc) = build(small());
    trip(&mut svc, &breaker).await;
    for _ in 0..5 {
        open_err(call(&mut svc, Call::Ok).await);
    }
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.failures), (0, 4));
    assert_eq!(stats.rejections, 5);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_are_not_counted() {
    let (breaker, mut svc) = build(small().volume_threshold(2));
    call(&mut svc, Call::Fail).await.unwrap_err();
    for _ in 0..10 {
        assert_eq!(call(&mut svc, Call::Ignore).await.unwrap(), 404);
    }
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.failures), (0, 1));
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn failures_age_out_of_the_time_window() {
    let (breaker, mut svc) = build(small().volume_threshold(2));
    call(&mut svc, Call::Fail).await.unwrap_err();
    advance(Duration::from_secs(10)).await;
    call(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(breaker.stats().failures, 1);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn count_window_keeps_the_last_n_outcomes() {
    let (breaker, mut svc) = build(small().volume_threshold(2).count_window(3));
    call(&mut svc, Call::Fail).await.unwrap_err();
    for _ in 0..3 {
        call(&mut svc, Call::Ok).await.unwrap();
    }
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.failures), (3, 0));
}

#[tokio::test(start_paused = true)]
async fn window_is_cleared_when_the_breaker_closes() {
    let (breaker, mut svc) = build(small());
    call(&mut svc, Call::Ok).await.unwrap();
    trip(&mut svc, &breaker).await;
    advance(Duration::from_secs(10)).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.failures), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn open_to_half_open_is_lazy_on_the_first_call_after_reset_timeout() {
    let (breaker, mut svc) = build(small());
    trip(&mut svc, &breaker).await;
    advance(Duration::from_secs(4)).await;
    let err = open_err(call(&mut svc, Call::Ok).await);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(6)));
    advance(Duration::from_secs(60)).await;
    // No timer moved it: still open until a call arrives.
    assert_eq!(breaker.state(), State::Open);
    let probe = svc.ready().await.unwrap().call(Call::Hang);
    assert_eq!(breaker.state(), State::HalfOpen);
    drop(probe);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_max_calls_probes() {
    let (breaker, mut svc) = build(small().half_open_max_calls(2));
    trip(&mut svc, &breaker).await;
    advance(Duration::from_secs(10)).await;
    let p1 = svc.ready().await.unwrap().call(Call::Hang);
    let p2 = svc.ready().await.unwrap().call(Call::Hang);
    let err = open_err(call(&mut svc, Call::Ok).await);
    assert_eq!(
        err.retry_after(),
        Some(harden::circuit_breaker::DEFAULT_MAX_PROBE_DURATION)
    );
    drop((p1, p2));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_probe_future_releases_its_permit() {
    let (breaker, mut svc) = build(small());
    trip(&mut svc, &breaker).await;
    advance(Duration::from_secs(10)).await;
    let probe = svc.ready().await.unwrap().call(Call::Hang);
    open_err(call(&mut svc, Call::Ok).await);
    drop(probe);
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_stops_blocking_after_max_probe_duration() {
    let (breaker, mut svc) = build(small().max_probe_duration(Duration::from_secs(5)));
    trip(&mut svc, &breaker).await;
    advance(Duration::from_secs(10)).await;
    let hung = tokio::spawn(
        svc.ready()
            .await
            .unwrap()
            .call(Call::After(Duration::from_secs(60), false)),
    );
    tokio::task::yield_now().await;
    advance(Duration::from_secs(2)).await;
    let err = open_err(call(&mut svc, Call::Ok).await);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    advance(Duration::from_secs(3)).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    // The hung probe finally fails: its generation is gone, so nothing happens.
    advance(Duration::from_secs(60)).await;
    hung.await.unwrap().unwrap_err();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn probe_failure_reopens() {
    let (breaker, mut svc) = build(small());
    trip(&mut svc, &breaker).await;
    advance(Duration::from_secs(10)).await;
    call(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    let err = open_err(call(&mut svc, Call::Ok).await);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
}

#[tokio::test(start_paused = true)]
async fn probe_successes_close() {
    let (breaker, mut svc) = build(small().half_open_max_calls(2));
    trip(&mut svc, &breaker).await;
    advance(Duration::from_secs(10)).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen, "one of two successes");
    call(&mut svc, Call::Ignore).await.unwrap();
    assert_eq!(
        breaker.state(),
        State::HalfOpen,
        "an ignored probe decides nothing"
    );
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn late_success_while_open_causes_no_transition() {
    let (breaker, mut svc) = build(small());
    let slow = tokio::spawn(
        svc.ready()
            .await
            .unwrap()
            .call(Call::After(Duration::from_secs(1), true)),
    );
    tokio::task::yield_now().await;
    trip(&mut svc, &breaker).await;
    advance(Duration::from_secs(1)).await;
    slow.await.unwrap().unwrap();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.stats().successes, 0, "not recorded either");
}

#[tokio::test(start_paused = true)]
async fn late_failure_while_half_open_causes_no_transition() {
    let (breaker, mut svc) = build(small());
    let slow = tokio::spawn(
        svc.ready()
            .await
            .unwrap()
            .call(Call::After(Duration::from_secs(11), false)),
    );
    tokio::task::yield_now().await;
    trip(&mut svc, &breaker).await;
    advance(Duration::from_secs(10)).await;
    let probe = svc.ready().await.unwrap().call(Call::Hang);
    advance(Duration::from_secs(1)).await;
    slow.await.unwrap().unwrap_err();
    assert_eq!(breaker.state(), State::HalfOpen);
    drop(probe);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_rule() {
    let (breaker, mut svc) = build(small().volume_threshold(100).consecutive_failures(3));
    for c in [Call::Fail, Call::Fail, Call::Ok, Call::Fail, Call::Fail] {
        let _ = call(&mut svc, c).await;
    }
    assert_eq!(breaker.state(), State::Closed, "the success broke the run");
    call(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_call_rule() {
    let (breaker, mut svc) = build(
        small()
            .volume_threshold(2)
            .slow_call(Duration::from_secs(1), 50.0),
    );
    for d in [Duration::from_millis(999), Duration::from_secs(1)] {
        let f = tokio::spawn(svc.ready().await.unwrap().call(Call::After(d, true)));
        tokio::task::yield_now().await;
        advance(d).await;
        f.await.unwrap().unwrap();
    }
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.slow_calls), (2, 1));
    assert_eq!(stats.slow_call_percentage, Some(50.0));
    assert_eq!(
        breaker.state(),
        State::Open,
        "1 slow of 2 calls reaches 50 %"
    );
}

#[tokio::test(start_paused = true)]
async fn open_backoff_grows_capped_and_jittered_and_resets_on_close() {
    let (breaker, mut svc) = build(small().open_backoff(2.0, Duration::from_secs(35)));
    trip(&mut svc, &breaker).await;
    assert_eq!(
        open_err(call(&mut svc, Call::Ok).await).retry_after(),
        Some(Duration::from_secs(10))
    );
    let mut expected = [(16, 20), (28, 35), (28, 35)].into_iter();
    let mut wait = Duration::from_secs(10);
    for _ in 0..3 {
        advance(wait).await;
        call(&mut svc, Call::Fail).await.unwrap_err();
        wait = open_err(call(&mut svc, Call::Ok).await)
            .retry_after()
            .unwrap();
        let (lo, hi) = expected.next().unwrap();
        assert!(
            wait >= Duration::from_secs(lo) && wait <= Duration::from_secs(hi),
            "{wait:?} outside [{lo}, {hi}] s"
        );
    }
    advance(wait).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    trip(&mut svc, &breaker).await;
    assert_eq!(
        open_err(call(&mut svc, Call::Ok).await).retry_after(),
        Some(Duration::from_secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn force_open_rejects_without_retry_after_until_reset() {
    let (breaker, mut svc) = build(small());
    breaker.force_open();
    assert_eq!(breaker.state(), State::ForcedOpen);
    advance(Duration::from_secs(3600)).await;
    assert_eq!(open_err(call(&mut svc, Call::Ok).await).retry_after(), None);
    breaker.reset();
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn disable_lets_everything_through_and_counts_nothing() {
    let (breaker, mut svc) = build(small());
    breaker.disable();
    for _ in 0..10 {
        call(&mut svc, Call::Fail).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Disabled);
    assert_eq!(breaker.stats().failures, 0);
    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn reset_closes_and_clears_the_window() {
    let (breaker, mut svc) = build(small());
    trip(&mut svc, &breaker).await;
    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.failures), (0, 0));
    call(&mut svc, Call::Ok).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn transitions_are_published_to_subscribers() {
    let (breaker, mut svc) = build(small());
    let mut rx = breaker.subscribe();
    assert_eq!(*rx.borrow_and_update(), State::Closed);
    trip(&mut svc, &breaker).await;
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), State::Open);
    advance(Duration::from_secs(10)).await;
    let probe = svc.ready().await.unwrap().call(Call::Hang);
    assert_eq!(*rx.borrow_and_update(), State::HalfOpen);
    drop(probe);
    call(&mut svc, Call::Ok).await.unwrap();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn classifier_decides_success_failure_and_ignored() {
    let breaker = small().volume_threshold(1).build().unwrap();
    // 2xx success, 5xx failure, 4xx ignored.
    let mut svc = breaker
        .layer()
        .classify(breaker_classifier_fn(
            |r: Result<&u16, &std::io::Error>| match r {
                Ok(s) if *s >= 500 => Outcome::Failure,
                Ok(s) if *s >= 400 => Outcome::Ignored,
                _ => Outcome::Success,
            },
        ))
        .layer(tower::service_fn(|s: u16| async move {
            Ok::<_, std::io::Error>(s)
        }));
    svc.ready().await.unwrap().call(200).await.unwrap();
    svc.ready().await.unwrap().call(404).await.unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.failures), (1, 0));
    svc.ready().await.unwrap().call(500).await.unwrap();
    // 1 failure of 2: 50 %.
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn default_classifier_counts_err_as_failure() {
    let breaker = small().volume_threshold(1).build().unwrap();
    let mut svc = breaker
        .layer()
        .layer(tower::service_fn(|ok: bool| async move {
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::other("no"))
            }
        }));
    svc.ready().await.unwrap().call(true).await.unwrap();
    let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
    assert!(
        err.is::<std::io::Error>(),
        "inner errors are boxed as they are"
    );
    assert_eq!(breaker.state(), State::Open);
    let err = svc.ready().await.unwrap().call(true).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker_like_axum_per_connection_clones() {
    let breaker = small().build().unwrap();
    let layer = breaker.layer();
    let make = layer
        .clone()
        .layer(tower::service_fn(|ok: bool| async move {
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::other("no"))
            }
        }));
    // axum clones the service for every connection.
    let mut conn_a = make.clone();
    let mut conn_b = make.clone();
    let mut other_layer_svc =
        layer.layer(tower::service_fn(|_: bool| async { Ok::<_, BoxError>(()) }));
    for _ in 0..4 {
        let _ = conn_a.ready().await.unwrap().call(false).await;
    }
    assert!(conn_b
        .ready()
        .await
        .unwrap()
        .call(true)
        .await
        .unwrap_err()
        .is::<CircuitOpen>());
    assert!(other_layer_svc
        .ready()
        .await
        .unwrap()
        .call(true)
        .await
        .unwrap_err()
        .is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn poll_ready_stays_ready_while_open() {
    let (breaker, mut svc) = build(small());
    breaker.force_open();
    for _ in 0..3 {
        assert!(svc.ready().await.is_ok());
    }
}

#[test]
fn config_errors_name_the_field_and_range() {
    let cases: Vec<(CircuitBreakerBuilder, &str)> = vec![
        (
            CircuitBreaker::builder().error_threshold_percentage(0.0),
            "error_threshold_percentage",
        ),
        (
            CircuitBreaker::builder().error_threshold_percentage(100.5),
            "error_threshold_percentage",
        ),
        (
            CircuitBreaker::builder().error_threshold_percentage(f64::NAN),
            "error_threshold_percentage",
        ),
        (
            CircuitBreaker::builder().volume_threshold(0),
            "volume_threshold",
        ),
        (
            CircuitBreaker::builder().rolling_window(Duration::ZERO, 10),
            "rolling_window",
        ),
        (
            CircuitBreaker::builder().rolling_window(Duration::from_secs(1), 0),
            "rolling_window",
        ),
        (
            CircuitBreaker::builder().rolling_window(Duration::from_millis(5), 10),
            "rolling_window",
        ),
        (
            CircuitBreaker::builder().rolling_window(Duration::from_nanos(1_000_000_001), 10),
            "rolling_window",
        ),
        (
            CircuitBreaker::builder().reset_timeout(Duration::ZERO),
            "reset_timeout",
        ),
        (
            CircuitBreaker::builder().half_open_max_calls(0),
            "half_open_max_calls",
        ),
        (
            CircuitBreaker::builder().half_open_max_calls(4096),
            "half_open_max_calls",
        ),
        (CircuitBreaker::builder().count_window(0), "count_window"),
        (
            CircuitBreaker::builder().count_window(10),
            "volume_threshold",
        ),
        (
            CircuitBreaker::builder().consecutive_failures(0),
            "consecutive_failures",
        ),
        (
            CircuitBreaker::builder().slow_call(Duration::ZERO, 50.0),
            "slow_call",
        ),
        (
            CircuitBreaker::builder().slow_call(Duration::from_secs(1), 0.0),
            "slow_call",
        ),
        (
            CircuitBreaker::builder().open_backoff(0.5, Duration::from_secs(60)),
            "open_backoff",
        ),
        (
            CircuitBreaker::builder().open_backoff(f64::NAN, Duration::from_secs(60)),
            "open_backoff",
        ),
        (
            CircuitBreaker::builder().open_backoff(2.0, Duration::from_secs(1)),
            "open_backoff",
        ),
        (
            CircuitBreaker::builder().max_probe_duration(Duration::ZERO),
            "max_probe_duration",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.build().expect_err(field);
        assert_eq!(err.field(), field, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(field) && (msg.contains('[') || msg.contains('(')),
            "{msg}"
        );
    }
    assert!(CircuitBreaker::builder().build().is_ok());
}

// `slow_call` accepted thresholds above the 365 days its error message states.
#[test]
fn slow_call_threshold_is_bounded_by_365_days() {
    let year = Duration::from_secs(365 * 24 * 3600);
    let err = CircuitBreaker::builder()
        .slow_call(year + Duration::from_nanos(1), 50.0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "slow_call");
    assert!(err.to_string().contains("365 days"), "{err}");
    assert!(CircuitBreaker::builder()
        .slow_call(year, 50.0)
        .build()
        .is_ok());
}
