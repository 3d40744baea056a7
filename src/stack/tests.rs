use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::{BoxErrors, IgnoreBulkheadFull, OptionalBulkheadLayer, OptionalTimeoutLayer};
use crate::bulkhead::error::BulkheadFull;
use crate::circuit_breaker::{BreakerClassifier, Outcome};
use crate::BoxError;
use std::future::{ready, Ready};
use tower::ServiceExt;

/// Not ready on its first `poll_ready`, then ready; answers `Ok(x)` or, for `x == 0`, an
/// `std::io::Error`.
#[derive(Clone, Default)]
struct Slow {
    polled: bool,
    calls: u32,
}

impl Service<u32> for Slow {
    type Response = u32;
    type Error = std::io::Error;
    type Future = Ready<Result<u32, std::io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.polled {
            Poll::Ready(Ok(()))
        } else {
            self.polled = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn call(&mut self, x: u32) -> Self::Future {
        self.calls += 1;
        ready(if x == 0 {
            Err(std::io::Error::other("zero"))
        } else {
            Ok(x)
        })
    }
}

/// Answers `x` after `x` milliseconds.
fn slow() -> impl Service<u64, Response = u64, Error = BoxError, Future = impl Send> + Clone {
    tower::service_fn(|x: u64| async move {
        tokio::time::sleep(std::time::Duration::from_millis(x)).await;
        Ok::<_, BoxError>(x)
    })
}

#[tokio::test(start_paused = true)]
async fn optional_timeout_on_ends_calls_and_off_makes_no_timer() {
    use crate::timeout::{error::Elapsed, TimeoutLayer};
    let ms = std::time::Duration::from_millis;
    let on = OptionalTimeoutLayer(Some(TimeoutLayer::new(ms(50)))).layer(slow());
    let off = OptionalTimeoutLayer(None).layer(slow());
    assert_eq!((on.timeout(), off.timeout()), (Some(ms(50)), None));
    assert_eq!(on.clone().oneshot(10).await.unwrap(), 10);
    assert!(on.oneshot(3_600_000).await.unwrap_err().is::<Elapsed>());
    assert_eq!(off.oneshot(3_600_000).await.unwrap(), 3_600_000);
    // poll_ready is forwarded and errors come out boxed with the original inside.
    let mut off = OptionalTimeoutLayer(None).layer(Slow::default());
    assert!(matches!(
        futures::poll!(std::future::poll_fn(|cx| off.poll_ready(cx))),
        Poll::Pending
    ));
    let err = off.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(err.to_string(), "zero");
}

#[tokio::test(start_paused = true)]
async fn optional_bulkhead_on_limits_calls_and_off_admits_all() {
    use crate::bulkhead::BulkheadLayer;
    let on = OptionalBulkheadLayer(Some(BulkheadLayer::new(1))).layer(slow());
    let off = OptionalBulkheadLayer(None).layer(slow());
    let first = tokio::spawn(on.clone().oneshot(100));
    tokio::task::yield_now().await;
    assert_eq!(on.in_flight(), Some(1));
    let err = on.clone().oneshot(1).await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    assert_eq!(first.await.unwrap().unwrap(), 100);
    // The slot went back with the answer.
    assert_eq!(on.in_flight(), Some(0));
    assert_eq!(on.oneshot(1).await.unwrap(), 1);
    let (a, b) = tokio::join!(off.clone().oneshot(100), off.clone().oneshot(100));
    assert_eq!((a.unwrap(), b.unwrap()), (100, 100));
    assert_eq!(off.in_flight(), None);
}

#[test]
fn stack_classifier_ignores_only_bulkhead_full() {
    // Every `Err` a failure, so only the wrapper can ignore anything (the default classifier
    // also ignores `CircuitOpen`).
    let c = IgnoreBulkheadFull(crate::circuit_breaker::breaker_classifier_fn(
        |r: Result<&(), &BoxError>| match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        },
    ));
    let full: BoxError = Box::new(BulkheadFull::new());
    let open: BoxError = Box::new(crate::circuit_breaker::error::CircuitOpen::new(None));
    let other: BoxError = "boom".into();
    assert_eq!(
        BreakerClassifier::<(), _>::classify(&c, Err(&full)),
        Outcome::Ignored
    );
    assert_eq!(
        BreakerClassifier::<(), _>::classify(&c, Err(&open)),
        Outcome::Failure
    );
    assert_eq!(
        BreakerClassifier::<(), _>::classify(&c, Err(&other)),
        Outcome::Failure
    );
    assert_eq!(
        BreakerClassifier::<(), BoxError>::classify(&c, Ok(&())),
        Outcome::Success
    );
}

/// Compiles only when both values have one type.
fn same_type<T>(_: &T, _: &T) {}

/// An upstream that answers at once.
#[derive(Clone)]
struct Upstream;

impl Service<()> for Upstream {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        ready(Ok(1))
    }
}

#[test]
fn every_part_set_is_the_hand_built_stack_type_for_type() {
    use std::time::Duration;

    use tower::ServiceBuilder;

    use crate::bulkhead::BulkheadLayer;
    use crate::circuit_breaker::{CircuitBreaker, DefaultBreakerClassifier};
    use crate::fallback::FallbackLayer;
    use crate::retry::{RetryLayer, RetryPolicy};
    use crate::timeout::TimeoutLayer;
    use crate::ResilienceLayer;

    let breaker = CircuitBreaker::builder().build().unwrap();
    let fallback = FallbackLayer::new(|_err: BoxError| async { Ok(0) });
    let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
    let bulkhead = BulkheadLayer::new(4);
    let stack = ResilienceLayer::builder()
        .fallback(fallback.clone())
        .total_timeout(Duration::from_secs(5))
        .retry(policy.clone())
        .circuit_breaker(breaker.layer())
        .bulkhead(bulkhead.clone())
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(Upstream);
    // The retry ends the call at the total timeout: no timeout layer around it.
    let by_hand = ServiceBuilder::new()
        .layer(fallback)
        .layer(RetryLayer::new(policy))
        .layer(
            breaker
                .layer()
                .with_classifier(IgnoreBulkheadFull(DefaultBreakerClassifier)),
        )
        .layer(bulkhead)
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .service(BoxErrors::new(Upstream));
    same_type(&stack, &by_hand);
    assert_eq!(
        std::mem::size_of_val(&stack),
        std::mem::size_of_val(&by_hand)
    );

    // Without a retry, the total timeout is a timeout layer.
    let total = ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .layer(Upstream);
    let by_hand = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .service(BoxErrors::new(Upstream));
    same_type(&total, &by_hand);

    let empty = ResilienceLayer::builder().build().unwrap().layer(Upstream);
    same_type(&empty, &BoxErrors::new(Upstream));
}
