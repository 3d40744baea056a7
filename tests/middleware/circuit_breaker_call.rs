//! `CircuitBreaker::call`: the breaker without tower.

use std::time::Duration;

use harden::circuit_breaker::{breaker_classifier_fn, Outcome};
use harden::circuit_breaker::{CallError, CircuitBreaker, State};

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder()
        .name("sync")
        .volume_threshold(4)
        .error_threshold_percentage(50.0)
        .reset_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn counts_trips_rejects_and_recovers() {
    let b = breaker();
    assert_eq!(b.call(|| Ok::<_, &str>(1)), Ok(1));
    assert_eq!(b.call(|| Ok::<u8, &str>(2)), Ok(2));
    assert_eq!(
        b.call(|| Err::<u8, _>("boom")),
        Err(CallError::Inner("boom"))
    );
    assert_eq!(b.state(), State::Closed);
    assert_eq!(
        b.call(|| Err::<u8, _>("boom")),
        Err(CallError::Inner("boom"))
    );
    assert_eq!(b.state(), State::Open, "2 of 4 failed: >= 50 %");

    let mut ran = false;
    match b.call(|| {
        ran = true;
        Ok::<u8, &str>(0)
    }) {
        Err(CallError::Rejected(open)) => {
            assert_eq!(open.retry_after(), Some(Duration::from_secs(1)))
        }
        other => panic!("{other:?}"),
    }
    assert!(!ran, "a rejected call does not run");
    assert_eq!(b.stats().rejections, 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(b.call(|| Ok::<_, &str>(3)), Ok(3));
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_gives_its_slot_back() {
    let b = breaker();
    b.force_open();
    b.reset();
    for _ in 0..4 {
        let _ = b.call(|| Err::<(), _>("boom"));
    }
    assert_eq!(b.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.call(|| -> Result<(), &str> { panic!("probe blew up") })
    }));
    assert!(panicked.is_err());
    assert_eq!(b.state(), State::HalfOpen);
    // With the slot returned, the next call is admitted as the probe and closes the breaker.
    assert_eq!(b.call(|| Ok::<_, &str>(())), Ok(()));
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_classifier_can_ignore_outcomes() {
    let b = breaker();
    let ignore_not_found = breaker_classifier_fn(|r: Result<&u8, &&str>| match r {
        Err(&"not found") => Outcome::Ignored,
        Err(_) => Outcome::Failure,
        Ok(_) => Outcome::Success,
    });
    for _ in 0..10 {
        let r = b.call_classified(&ignore_not_found, || Err::<u8, _>("not found"));
        assert_eq!(r, Err(CallError::Inner("not found")));
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!((b.stats().successes, b.stats().failures), (0, 0));
}

#[test]
fn call_error_is_transparent() {
    let e: CallError<std::io::Error> = CallError::Inner(std::io::Error::other("disk gone"));
    assert_eq!(e.to_string(), "disk gone");
    let open = breaker();
    open.force_open();
    let rejected = open.call(|| Ok::<(), std::io::Error>(())).unwrap_err();
    assert_eq!(rejected.to_string(), "circuit breaker is open");
    assert!(matches!(rejected, CallError::Rejected(ref o) if o.retry_after().is_none()));
}
