//! In-crate tests: they need harden's rejections, whose constructors are crate-private.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::bulkhead::error::BulkheadFull;
use crate::circuit_breaker::error::CircuitOpen;

fn rejecting(
    calls: Arc<AtomicU32>,
    make: fn() -> BoxError,
) -> impl Service<(), Response = (), Error = BoxError, Future = impl Send> + Clone {
    service_fn(move |()| {
        calls.fetch_add(1, Ordering::Relaxed);
        let err = make();
        async move { Err::<(), _>(err) }
    })
}

async fn attempts_with(
    make: fn() -> BoxError,
    policy: RetryPolicy<impl RetryClassifier<()> + Clone>,
) -> (u32, BoxError) {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = RetryLayer::new(policy).layer(rejecting(calls.clone(), make));
    let err = svc.oneshot(()).await.unwrap_err();
    (calls.load(Ordering::Relaxed), err)
}

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(5)
        .backoff(Backoff::constant(Duration::ZERO))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn circuit_open_is_never_retried() {
    let (calls, err) = attempts_with(
        || Box::new(CircuitOpen::new(Some(Duration::from_secs(1)))),
        policy(),
    )
    .await;
    assert_eq!(calls, 1);
    assert_eq!(
        err.downcast_ref::<CircuitOpen>().unwrap().retry_after(),
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn bulkhead_full_is_never_retried() {
    let (calls, err) = attempts_with(|| Box::new(BulkheadFull::new()), policy()).await;
    assert_eq!(calls, 1);
    assert!(err.is::<BulkheadFull>());
}

#[tokio::test(start_paused = true)]
async fn rejections_are_not_retried_even_if_the_classifier_says_so() {
    let eager = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_on(|_: Result<&(), &BoxError>| RetryDecision::Retry)
        .build()
        .unwrap();
    let (calls, err) = attempts_with(|| Box::new(CircuitOpen::new(None)), eager.clone()).await;
    assert_eq!(calls, 1);
    assert!(err.is::<CircuitOpen>());
    let (calls, _) = attempts_with(|| Box::new(BulkheadFull::new()), eager.clone()).await;
    assert_eq!(calls, 1);
    // Sanity: another error is retried by that classifier.
    let (calls, _) = attempts_with(|| "boom".into(), eager).await;
    assert_eq!(calls, 5);
    // No withdrawal was made for the rejections.
}

#[tokio::test(start_paused = true)]
async fn rejections_do_not_touch_the_budget() {
    let budget = RetryBudget::builder()
        .min_retries_per_sec(0)
        .retry_ratio(0.0)
        .burst(0)
        .build()
        .unwrap();
    let p = RetryPolicy::builder()
        .max_attempts(5)
        .budget(budget.clone())
        .build()
        .unwrap();
    let (calls, _) = attempts_with(|| Box::new(BulkheadFull::new()), p).await;
    assert_eq!(calls, 1);
    assert_eq!(budget.exhausted(), 0);
}
