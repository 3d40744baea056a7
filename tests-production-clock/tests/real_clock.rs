//! harden on its production clock (`CLOCK_MONOTONIC_COARSE` on Linux), on real time.
//!
//! Everything else in the suite runs with harden's `test-util`, where the crate's clock is
//! tokio's pausable one; these tests are the only ones that run the clock users get. Durations
//! are short, bounds generous (the coarse clock ticks every 1–4 ms, CI machines are loaded), and
//! every test asserts outcomes, never how long something took.

use std::time::{Duration, Instant};

use harden::circuit_breaker::error::CallError;
use harden::circuit_breaker::{CircuitBreaker, State};
use harden::retry::RetryBudget;
use harden::timeout::error::Elapsed;
use harden::timeout::TimeoutLayer;
use harden::BoxError;
use tower::{Layer, Service, ServiceExt};

/// How long a test waits for something that should happen within a few tens of milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

fn fail(breaker: &CircuitBreaker) -> CallError<&'static str> {
    breaker
        .call(|| Err::<(), _>("upstream failed"))
        .expect_err("the call fails either way")
}

/// Polls `done` every few milliseconds until it holds or [`PATIENCE`] runs out.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let give_up = Instant::now() + PATIENCE;
    while Instant::now() < give_up {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

#[test]
fn breaker_trips_and_recovers_on_real_time() {
    let breaker = CircuitBreaker::builder()
        .volume_threshold(4)
        .reset_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    for _ in 0..4 {
        assert!(matches!(fail(&breaker), CallError::Inner(_)));
    }
    assert_eq!(breaker.state(), State::Open);
    let CallError::Rejected(open) = fail(&breaker) else {
        panic!("an open breaker runs nothing");
    };
    assert!(open
        .retry_after()
        .is_some_and(|d| d <= Duration::from_millis(50)));

    // Once the reset timeout has passed on the real clock, a probe runs and closes the breaker.
    assert!(eventually(|| breaker.call(|| Ok::<_, &str>(7)).is_ok()));
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn failures_age_out_of_the_time_window() {
    let breaker = CircuitBreaker::builder()
        .rolling_window(Duration::from_millis(100), 2)
        .volume_threshold(100)
        .build()
        .unwrap();
    for _ in 0..3 {
        fail(&breaker);
    }
    assert_eq!(breaker.stats().failures, 3);
    assert!(eventually(|| breaker.stats().failures == 0));
    // A failure after the window moved on is counted afresh.
    fail(&breaker);
    assert_eq!(breaker.stats().failures, 1);
}

#[test]
fn slow_calls_are_measured_on_real_time() {
    let breaker = CircuitBreaker::builder()
        .volume_threshold(100)
        .slow_call(Duration::from_millis(5), 50.0)
        .build()
        .unwrap();
    // Far above the threshold and the coarse clock's tick, so the call is slow on any machine.
    breaker
        .call(|| {
            std::thread::sleep(Duration::from_millis(60));
            Ok::<_, &str>(())
        })
        .unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.slow_calls), (1, 1));
}

#[test]
fn budget_floor_refills_on_real_time() {
    let budget = RetryBudget::builder()
        .min_retries_per_sec(5)
        .retry_ratio(0.1)
        .burst(1)
        .build()
        .unwrap();
    assert!(budget.try_withdraw(), "a new budget holds its burst");
    for _ in 0..10 {
        budget.deposit();
    }
    assert!(budget.try_withdraw(), "ten requests earn one retry");
    // Spend whatever the floor (a token per 200 ms) added meanwhile, then wait for more.
    let _ = budget.try_withdraw();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        budget.try_withdraw(),
        "half a second of the floor earns a retry"
    );
}

#[tokio::test]
async fn timeout_fires_on_real_time() {
    let mut svc =
        TimeoutLayer::new(Duration::from_millis(20)).layer(tower::service_fn(|()| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, BoxError>(())
        }));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
}

/// The canary: if harden's `test-util` ever leaks into this build (a dependency turning it on,
/// a workspace change), harden's clock follows paused tokio time and this fails.
#[tokio::test(start_paused = true)]
async fn paused_tokio_time_does_not_move_the_production_clock() {
    let breaker = CircuitBreaker::builder()
        .volume_threshold(1)
        .reset_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    fail(&breaker);
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(breaker.state(), State::Open);
    assert!(breaker.next_probe_in().unwrap() > Duration::from_secs(30));
}
