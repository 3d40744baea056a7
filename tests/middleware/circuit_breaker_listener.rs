//! The breaker's event listener: every finished call, rejection and transition, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use harden::circuit_breaker::{CircuitBreaker, EventKind, State};
use harden::BoxError;
use tower::{service_fn, Layer, ServiceExt};

#[tokio::test(start_paused = true)]
async fn listener_sees_every_call_rejection_and_transition() {
    let seen: Arc<Mutex<Vec<(String, EventKind)>>> = Arc::default();
    let sink = seen.clone();
    let breaker = CircuitBreaker::builder()
        .name("search")
        .volume_threshold(2)
        .reset_timeout(Duration::from_secs(1))
        .slow_call(Duration::from_millis(500), 100.0)
        .on_event(move |event| {
            sink.lock()
                .unwrap()
                .push((event.breaker.to_owned(), event.kind))
        })
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

    svc.clone().oneshot((false, true)).await.unwrap();
    svc.clone().oneshot((true, false)).await.unwrap_err();
    svc.clone().oneshot((false, false)).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    // The probe fails at once: HalfOpen and back to Open within one call, a pair of transitions a
    // `watch` receiver would see coalesced.
    svc.clone().oneshot((true, false)).await.unwrap_err();

    let events = seen.lock().unwrap().clone();
    assert!(events.iter().all(|(name, _)| name == "search"));
    let kinds: Vec<EventKind> = events.into_iter().map(|(_, kind)| kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Success,
            EventKind::SlowCall,
            EventKind::Failure,
            EventKind::Transition {
                from: State::Closed,
                to: State::Open
            },
            EventKind::Rejected {
                retry_after: Some(Duration::from_secs(1))
            },
            EventKind::Transition {
                from: State::Open,
                to: State::HalfOpen
            },
            EventKind::Failure,
            EventKind::Transition {
                from: State::HalfOpen,
                to: State::Open
            },
        ]
    );
}

#[tokio::test]
async fn manual_changes_are_events_too() {
    let seen: Arc<Mutex<Vec<EventKind>>> = Arc::default();
    let sink = seen.clone();
    let breaker = CircuitBreaker::builder()
        .on_event(move |event| sink.lock().unwrap().push(event.kind))
        .build()
        .unwrap();
    breaker.force_open();
    breaker.reset();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            EventKind::Transition {
                from: State::Closed,
                to: State::ForcedOpen
            },
            EventKind::Transition {
                from: State::ForcedOpen,
                to: State::Closed
            },
        ]
    );
}
