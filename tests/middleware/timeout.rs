//! Timeout semantics under paused tokio time.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use harden::timeout::{error::Elapsed, Timeout, TimeoutLayer};
use harden::BoxError;
use tokio::time::{advance, sleep, Instant};
use tower::{service_fn, Layer, Service, ServiceExt};

const SECOND: Duration = Duration::from_secs(1);

fn sleeper(
    delay: Duration,
) -> impl Service<
    (),
    Response = &'static str,
    Error = BoxError,
    Future = impl Future<Output = Result<&'static str, BoxError>>,
> + Clone {
    service_fn(move |()| async move {
        sleep(delay).await;
        Ok::<_, BoxError>("done")
    })
}

#[tokio::test(start_paused = true)]
async fn ready_at_once_passes_through() {
    let svc = TimeoutLayer::new(SECOND)
        .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) }));
    // Ready on the first poll, without any time passing.
    assert_eq!(svc.oneshot(21).now_or_never().map(|r| r.unwrap()), Some(42));
}

#[tokio::test(start_paused = true)]
async fn slow_inner_fails_with_elapsed_after_exactly_the_duration() {
    let mut svc = TimeoutLayer::new(SECOND).layer(sleeper(Duration::from_secs(60)));
    let start = Instant::now();
    let mut fut = pin!(svc.ready().await.unwrap().call(()));

    // Just before the deadline it is still pending.
    assert!(poll_once(fut.as_mut()).is_pending());
    advance(SECOND - Duration::from_nanos(1_000_000)).await;
    assert!(poll_once(fut.as_mut()).is_pending());

    advance(Duration::from_millis(1)).await;
    let err = match poll_once(fut.as_mut()) {
        Poll::Ready(Err(err)) => err,
        other => panic!("expected an error, got {:?}", other.map(|r| r.map(|_| ()))),
    };
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(err.to_string(), "request timed out");
    assert_eq!(start.elapsed(), SECOND);
}

#[tokio::test(start_paused = true)]
async fn elapsed_when_awaited_with_auto_advance() {
    let svc = TimeoutLayer::new(Duration::from_millis(300)).layer(sleeper(SECOND));
    let start = Instant::now();
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(err.is::<Elapsed>());
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn inner_error_passes_through_boxed() {
    let svc = TimeoutLayer::new(SECOND).layer(service_fn(|()| async {
        Err::<(), _>(std::io::Error::other("upstream broke"))
    }));
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(!err.is::<Elapsed>());
    let io = err
        .downcast::<std::io::Error>()
        .expect("the inner error, boxed unchanged");
    assert_eq!(io.to_string(), "upstream broke");
}

#[tokio::test(start_paused = true)]
async fn inner_error_after_waiting_passes_through() {
    let svc = TimeoutLayer::new(SECOND).layer(service_fn(|()| async {
        sleep(Duration::from_millis(10)).await;
        Err::<(), _>(std::io::Error::other("late failure"))
    }));
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(err.is::<std::io::Error>());
}

#[tokio::test(start_paused = true)]
async fn inner_finishing_just_before_the_deadline_wins() {
    let svc = TimeoutLayer::new(SECOND).layer(sleeper(SECOND - Duration::from_nanos(1_000_000)));
    assert_eq!(svc.oneshot(()).await.unwrap(), "done");
}

#[tokio::test(start_paused = true)]
async fn inner_ready_at_the_deadline_wins_because_it_is_polled_first() {
    // Both timers fire on the same tick; the inner future is polled first and wins.
    let svc = TimeoutLayer::new(SECOND).layer(sleeper(SECOND));
    let mut fut = pin!(svc.oneshot(()));
    assert!(poll_once(fut.as_mut()).is_pending());
    advance(SECOND).await;
    assert!(matches!(poll_once(fut.as_mut()), Poll::Ready(Ok("done"))));
}

#[tokio::test(start_paused = true)]
async fn zero_duration_admits_only_calls_ready_at_once() {
    let layer = TimeoutLayer::new(Duration::ZERO);
    let ready = layer.layer(service_fn(|()| async { Ok::<_, BoxError>(1) }));
    assert_eq!(ready.oneshot(()).await.unwrap(), 1);

    let mut waiting = layer.layer(sleeper(Duration::from_millis(1)));
    let mut fut = pin!(waiting.ready().await.unwrap().call(()));
    match poll_once(fut.as_mut()) {
        Poll::Ready(Err(err)) => assert!(err.is::<Elapsed>()),
        other => panic!(
            "expected Elapsed at once, got {:?}",
            other.map(|r| r.map(|_| ()))
        ),
    }
}

#[tokio::test(start_paused = true)]
async fn a_huge_duration_does_not_overflow() {
    let svc = TimeoutLayer::new(Duration::MAX).layer(sleeper(SECOND));
    assert_eq!(svc.oneshot(()).await.unwrap(), "done");
}

#[test]
fn accessors() {
    let layer = TimeoutLayer::new(SECOND);
    assert_eq!(layer.timeout(), SECOND);
    let mut svc: Timeout<u8> = layer.layer(7);
    assert_eq!(svc.timeout(), SECOND);
    assert_eq!(*svc.get_ref(), 7);
    *svc.get_mut() = 8;
    assert_eq!(svc.into_inner(), 8);
}

fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    fut.poll(&mut cx)
}

#[test]
fn services_and_futures_are_send_and_sync_for_axum() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}
    let mut svc = TimeoutLayer::new(SECOND).layer(service_fn(|()| async { Ok::<_, BoxError>(()) }));
    assert_send_sync(&svc);
    assert_send(&svc.call(()));
}

/// Pending on its first poll (waking itself at once), then `Ok(7)`.
struct PendsOnce(bool);

impl Future for PendsOnce {
    type Output = Result<u32, BoxError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(Ok(7))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

// A zero timeout let a call that pends once succeed (real time: paused time hid it).
#[tokio::test]
async fn a_zero_timeout_fails_on_the_first_pending_poll() {
    let mut svc = TimeoutLayer::new(Duration::ZERO).layer(service_fn(|_: ()| PendsOnce(false)));
    let mut call = pin!(svc.ready().await.unwrap().call(()));
    match poll_once(call.as_mut()) {
        Poll::Ready(Err(err)) => assert!(err.is::<Elapsed>(), "{err}"),
        Poll::Ready(Ok(v)) => panic!("succeeded with {v}"),
        Poll::Pending => panic!("pending past the poll where the inner future first pended"),
    }
    // Ready at once still passes.
    let svc =
        TimeoutLayer::new(Duration::ZERO).layer(service_fn(|_: ()| async { Ok::<_, BoxError>(1) }));
    assert_eq!(svc.oneshot(()).await.unwrap(), 1);
}
