use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::util::Either;
use tower_layer::Layer;
use tower_service::Service;

use super::{option_service, BoxErrors, IgnoreBulkheadFull};
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

/// A layer adding 100 to every answer, so that "on" is visible.
struct Plus100;

#[derive(Clone)]
struct Plus100Service<S>(S);

impl<S> Layer<S> for Plus100 {
    type Service = Plus100Service<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Plus100Service(inner)
    }
}

impl<S: Service<u32, Response = u32>> Service<u32> for Plus100Service<S> {
    type Response = u32;
    type Error = S::Error;
    type Future = Plus100Future<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, x: u32) -> Self::Future {
        Plus100Future(Box::pin(self.0.call(x)))
    }
}

struct Plus100Future<F>(Pin<Box<F>>);

impl<F: Future<Output = Result<u32, E>>, E> Future for Plus100Future<F> {
    type Output = Result<u32, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map_ok(|x| x + 100)
    }
}

#[tokio::test]
async fn option_service_on_wraps_and_off_passes_through() {
    let on = option_service(Some(&Plus100), Slow::default());
    let off = option_service(None::<&Plus100>, Slow::default());
    assert!(matches!(on, Either::Left(_)));
    assert!(matches!(off, Either::Right(_)));

    for (mut service, expected) in [(on, 107), (off, 7)] {
        // poll_ready is forwarded: pending once, then ready.
        assert!(matches!(
            futures::poll!(std::future::poll_fn(|cx| service.poll_ready(cx))),
            Poll::Pending
        ));
        service.ready().await.unwrap();
        assert_eq!(service.call(7).await.unwrap(), expected);
        // Errors come out boxed with the original inside.
        let err = service.ready().await.unwrap().call(0).await.unwrap_err();
        assert_eq!(err.to_string(), "zero");
        let inner = match &service {
            Either::Left(Plus100Service(s)) | Either::Right(s) => s,
        };
        assert_eq!(inner.calls, 2);
    }
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
