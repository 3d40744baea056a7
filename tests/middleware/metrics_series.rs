//! Every layer's series, recorded through a real (debugging) recorder.

use std::time::Duration;

use harden::bulkhead::BulkheadLayer;
use harden::fallback::FallbackLayer;
use harden::metrics::names;
use harden::timeout::TimeoutLayer;
use harden::BoxError;
use std::sync::Arc;
use tower::{service_fn, Layer, Service, ServiceExt};

use crate::support::recorder::TestRecorder;

#[tokio::test(start_paused = true)]
async fn timeouts_are_counted_under_the_layers_name() {
    let recorder = TestRecorder::new();
    let mut svc = metrics::with_local_recorder(&recorder, || {
        TimeoutLayer::new(Duration::from_millis(10))
            .name("upstream")
            .layer(service_fn(|slow: bool| async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok::<_, BoxError>(())
            }))
    });
    let labels = [("timeout", "upstream")];
    assert_eq!(recorder.counter(names::TIMEOUTS, &labels), 0);
    svc.ready().await.unwrap().call(false).await.unwrap();
    svc.ready().await.unwrap().call(true).await.unwrap_err();
    svc.ready().await.unwrap().call(true).await.unwrap_err();
    assert_eq!(recorder.counter(names::TIMEOUTS, &labels), 2);
    assert!(!recorder.exists(names::TIMEOUTS, &[("timeout", "default")]));
}

#[tokio::test(start_paused = true)]
async fn bulkhead_reports_in_flight_and_rejections() {
    let recorder = TestRecorder::new();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let svc = metrics::with_local_recorder(&recorder, || {
        BulkheadLayer::new(1)
            .name("db")
            .layer(service_fn(move |()| {
                let mut rx = rx.clone();
                async move {
                    rx.wait_for(|open| *open).await.unwrap();
                    Ok::<_, BoxError>(())
                }
            }))
    });
    let labels = [("bulkhead", "db")];
    let held = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    assert_eq!(recorder.gauge(names::BULKHEAD_IN_FLIGHT, &labels), 1.0);
    svc.clone().oneshot(()).await.unwrap_err();
    assert_eq!(recorder.counter(names::BULKHEAD_REJECTED, &labels), 1);
    tx.send(true).unwrap();
    held.await.unwrap().unwrap();
    assert_eq!(recorder.gauge(names::BULKHEAD_IN_FLIGHT, &labels), 0.0);
}

#[tokio::test]
async fn fallbacks_are_counted() {
    let recorder = TestRecorder::new();
    let svc = metrics::with_local_recorder(&recorder, || {
        FallbackLayer::new(|_err: BoxError| async { Ok("cached") })
            .name("profile")
            .layer(service_fn(|fail: bool| async move {
                if fail {
                    Err::<&str, BoxError>("down".into())
                } else {
                    Ok("fresh")
                }
            }))
    });
    assert_eq!(svc.clone().oneshot(false).await.unwrap(), "fresh");
    assert_eq!(svc.clone().oneshot(true).await.unwrap(), "cached");
    assert_eq!(
        recorder.counter(names::FALLBACKS, &[("fallback", "profile")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn retry_attempts_by_outcome_and_budget_exhaustion() {
    use harden::retry::{Backoff, RetryBudget, RetryLayer, RetryPolicy};
    use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

    let recorder = TestRecorder::new();
    let calls = Arc::new(AtomicU32::new(0));
    let (flaky, broke) = metrics::with_local_recorder(&recorder, || {
        let policy = RetryPolicy::builder()
            .name("inventory")
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(10)))
            .no_budget()
            .build()
            .unwrap();
        let counter = calls.clone();
        let flaky = RetryLayer::new(policy).layer(service_fn(move |()| {
            let n = counter.fetch_add(1, AtomicOrdering::Relaxed);
            async move {
                if n == 0 {
                    Err::<(), BoxError>("flaky".into())
                } else {
                    Ok(())
                }
            }
        }));
        let empty_budget = RetryBudget::builder()
            .min_retries_per_sec(0)
            .retry_ratio(0.0)
            .burst(0)
            .build()
            .unwrap();
        let policy = RetryPolicy::builder()
            .name("payments")
            .budget(empty_budget)
            .build()
            .unwrap();
        let broke = RetryLayer::new(policy).layer(service_fn(|()| async {
            Err::<(), BoxError>("down".into())
        }));
        (flaky, broke)
    });

    flaky.oneshot(()).await.unwrap();
    let inventory = |outcome| {
        recorder.counter(
            names::RETRY_ATTEMPTS,
            &[("retry", "inventory"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (
            inventory("retried"),
            inventory("done"),
            inventory("gave_up")
        ),
        (1, 1, 0)
    );

    broke.oneshot(()).await.unwrap_err();
    let payments = |outcome| {
        recorder.counter(
            names::RETRY_ATTEMPTS,
            &[("retry", "payments"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (payments("retried"), payments("done"), payments("gave_up")),
        (0, 0, 1)
    );
    assert_eq!(
        recorder.counter(names::RETRY_BUDGET_EXHAUSTED, &[("retry", "payments")]),
        1
    );
}

/// A peer's state gauge stays at 1 for a state it left; here exactly one state is 1 after every
/// transition.
#[tokio::test(start_paused = true)]
async fn breaker_state_is_one_hot_after_any_sequence_of_transitions() {
    use harden::circuit_breaker::{CircuitBreaker, State};
    use harden::metrics::labels::STATES;

    let recorder = TestRecorder::new();
    let (breaker, svc) = metrics::with_local_recorder(&recorder, || {
        let breaker = CircuitBreaker::builder()
            .name("payments")
            .volume_threshold(2)
            .error_threshold_percentage(50.0)
            .reset_timeout(Duration::from_secs(1))
            .slow_call(Duration::from_millis(500), 100.0)
            .build()
            .unwrap();
        let svc = breaker
            .layer()
            .layer(service_fn(|(fail, slow): (bool, bool)| async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if fail {
                    Err::<(), BoxError>("down".into())
                } else {
                    Ok(())
                }
            }));
        (breaker, svc)
    });
    let one_hot = |expected: State| {
        let values: Vec<f64> = STATES
            .iter()
            .map(|s| {
                recorder.gauge(
                    names::CIRCUIT_BREAKER_STATE,
                    &[("breaker", "payments"), ("state", s)],
                )
            })
            .collect();
        assert_eq!(values.iter().sum::<f64>(), 1.0, "{values:?}");
        let on = STATES.iter().position(|s| *s == expected.as_str()).unwrap();
        assert_eq!(values[on], 1.0, "{expected:?}: {values:?}");
    };
    let calls = |outcome| {
        recorder.counter(
            names::CIRCUIT_BREAKER_CALLS,
            &[("breaker", "payments"), ("outcome", outcome)],
        )
    };
    let transitions = |from, to| {
        recorder.counter(
            names::CIRCUIT_BREAKER_TRANSITIONS,
            &[("breaker", "payments"), ("from", from), ("to", to)],
        )
    };

    one_hot(State::Closed);
    svc.clone().oneshot((false, true)).await.unwrap(); // slow success
    svc.clone().oneshot((true, false)).await.unwrap_err(); // trips: 1 of 2 failed
    assert_eq!(breaker.state(), State::Open);
    one_hot(State::Open);
    assert_eq!(
        recorder.gauge(
            names::CIRCUIT_BREAKER_FAILURE_RATE,
            &[("breaker", "payments")]
        ),
        0.5
    );
    svc.clone().oneshot((false, false)).await.unwrap_err(); // rejected
    assert_eq!(
        (
            calls("success"),
            calls("failure"),
            calls("rejected"),
            calls("ignored")
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(
        recorder.counter(
            names::CIRCUIT_BREAKER_SLOW_CALLS,
            &[("breaker", "payments")]
        ),
        1
    );
    assert_eq!(
        recorder.histogram_len(names::CALL_DURATION, &[("breaker", "payments")]),
        2
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    svc.clone().oneshot((false, false)).await.unwrap(); // probe succeeds: half-open, then closed
    assert_eq!(breaker.state(), State::Closed);
    one_hot(State::Closed);
    assert_eq!(
        (
            transitions("closed", "open"),
            transitions("open", "half_open"),
            transitions("half_open", "closed")
        ),
        (1, 1, 1)
    );

    breaker.force_open();
    one_hot(State::ForcedOpen);
    breaker.disable();
    one_hot(State::Disabled);
    breaker.reset();
    one_hot(State::Closed);
    assert_eq!(transitions("forced_open", "disabled"), 1);
}

#[tokio::test]
async fn describe_gives_every_series_help_text_and_the_failure_rate_no_unit() {
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, harden::metrics::describe);
    for name in names::ALL {
        let (_, help) = recorder.description(name).expect(name);
        assert!(!help.is_empty(), "{name}");
    }
    // The failure rate is a ratio from 0 to 1, which `Unit::Percent` would misstate.
    let (unit, help) = recorder
        .description(names::CIRCUIT_BREAKER_FAILURE_RATE)
        .unwrap();
    assert_eq!(unit, None);
    assert!(help.contains("0 to 1"), "{help}");
    let (unit, _) = recorder.description(names::CALL_DURATION).unwrap();
    assert_eq!(unit, Some(metrics::Unit::Seconds));
}

#[tokio::test]
async fn latency_recording_can_be_turned_off() {
    use harden::circuit_breaker::CircuitBreaker;

    let recorder = TestRecorder::new();
    let (timed, untimed) = metrics::with_local_recorder(&recorder, || {
        let make = |name: &str, record: bool| {
            CircuitBreaker::builder()
                .name(name)
                .record_latency(record)
                .build()
                .unwrap()
                .layer()
                .layer(service_fn(|()| async { Ok::<_, BoxError>(()) }))
        };
        (make("timed", true), make("untimed", false))
    });
    timed.oneshot(()).await.unwrap();
    untimed.oneshot(()).await.unwrap();
    assert_eq!(
        recorder.histogram_len(names::CALL_DURATION, &[("breaker", "timed")]),
        1
    );
    assert_eq!(
        recorder.histogram_len(names::CALL_DURATION, &[("breaker", "untimed")]),
        0
    );
    assert_eq!(
        recorder.counter(
            names::CIRCUIT_BREAKER_CALLS,
            &[("breaker", "untimed"), ("outcome", "success")]
        ),
        1
    );
}

// Two stacks exported one colliding `timeout="total"` series; a name now prefixes the labels.
#[tokio::test(start_paused = true)]
async fn named_stacks_export_distinct_timeout_series() {
    let recorder = TestRecorder::new();
    let (mut a, mut b) = metrics::with_local_recorder(&recorder, || {
        let stack = |name: &str| {
            harden::ResilienceLayer::builder()
                .name(name)
                .total_timeout(Duration::from_millis(50))
                .attempt_timeout(Duration::from_millis(10))
                .build()
                .unwrap()
                .layer(service_fn(|_: ()| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok::<_, BoxError>(())
                }))
        };
        (stack("payments"), stack("search"))
    });
    assert!(a.ready().await.unwrap().call(()).await.is_err());
    assert!(b.ready().await.unwrap().call(()).await.is_err());
    assert!(b.ready().await.unwrap().call(()).await.is_err());
    let count = |label: &str| recorder.counter(names::TIMEOUTS, &[("timeout", label)]);
    assert_eq!(count("payments.attempt"), 1);
    assert_eq!(count("search.attempt"), 2);
    assert!(recorder.exists(names::TIMEOUTS, &[("timeout", "payments.total")]));
    assert!(!recorder.exists(names::TIMEOUTS, &[("timeout", "attempt")]));
}

#[tokio::test(start_paused = true)]
async fn timeouts_given_as_options_are_named_like_the_others() {
    let recorder = TestRecorder::new();
    let mut service = metrics::with_local_recorder(&recorder, || {
        harden::ResilienceLayer::builder()
            .name("config")
            .total_timeout(Some(Duration::from_millis(50)))
            .attempt_timeout(Some(Duration::from_millis(10)))
            .build()
            .unwrap()
            .layer(service_fn(|_: ()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, BoxError>(())
            }))
    });
    assert!(service.ready().await.unwrap().call(()).await.is_err());
    let count = |label: &str| recorder.counter(names::TIMEOUTS, &[("timeout", label)]);
    assert_eq!(count("config.attempt"), 1);
    assert!(recorder.exists(names::TIMEOUTS, &[("timeout", "config.total")]));
    assert!(!recorder.exists(names::TIMEOUTS, &[("timeout", "attempt")]));
}
