//! Bulkhead semantics: limit, immediate rejection, slot release, sharing across clones.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use harden::bulkhead::{error::BulkheadFull, Bulkhead, BulkheadLayer};
use harden::BoxError;
use tokio::sync::oneshot;
use tower::{service_fn, Layer, Service, ServiceExt};

/// A service whose calls finish when the test sends on the returned channel.
fn gated(
    calls: Arc<AtomicUsize>,
) -> impl Service<
    oneshot::Receiver<u32>,
    Response = u32,
    Error = BoxError,
    Future = impl Future<Output = Result<u32, BoxError>>,
> + Clone {
    service_fn(move |rx: oneshot::Receiver<u32>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { rx.await.map_err(BoxError::from) }
    })
}

fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    fut.poll(&mut Context::from_waker(&waker))
}

#[tokio::test]
async fn admits_up_to_max_then_rejects_at_once_without_calling_inner() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = BulkheadLayer::new(2);
    let mut svc = layer.layer(gated(calls.clone()));

    let (tx1, rx1) = oneshot::channel();
    let (tx2, rx2) = oneshot::channel();
    let (_tx3, rx3) = oneshot::channel();
    let a = svc.ready().await.unwrap().call(rx1);
    let b = svc.ready().await.unwrap().call(rx2);
    assert_eq!(layer.in_flight(), 2);

    // poll_ready stays ready while full; the rejection comes from the future, on its first poll.
    let rejected = svc.ready().await.unwrap().call(rx3);
    let err = rejected
        .now_or_never()
        .expect("rejected at once")
        .unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    assert_eq!(err.to_string(), "bulkhead is full");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a rejected call must not reach the inner service"
    );

    tx1.send(1).unwrap();
    tx2.send(2).unwrap();
    assert_eq!(a.await.unwrap(), 1);
    assert_eq!(b.await.unwrap(), 2);
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test]
async fn slot_is_released_when_the_call_ends_even_if_the_future_is_kept() {
    let layer = BulkheadLayer::new(1);
    let mut svc = layer.layer(gated(Arc::default()));
    let (tx, rx) = oneshot::channel();
    let mut fut = pin!(svc.ready().await.unwrap().call(rx));
    assert!(poll_once(fut.as_mut()).is_pending());
    assert_eq!(layer.in_flight(), 1);

    tx.send(7).unwrap();
    assert!(matches!(poll_once(fut.as_mut()), Poll::Ready(Ok(7))));
    // The finished future is still alive, but its slot is already back.
    assert_eq!(layer.in_flight(), 0);
    let (tx, rx) = oneshot::channel();
    tx.send(8).unwrap();
    assert_eq!(svc.ready().await.unwrap().call(rx).await.unwrap(), 8);
}

#[tokio::test]
async fn slot_is_released_when_the_future_is_dropped() {
    let layer = BulkheadLayer::new(1);
    let mut svc = layer.layer(gated(Arc::default()));

    // Dropped before being polled.
    let (_tx, rx) = oneshot::channel();
    let fut = svc.ready().await.unwrap().call(rx);
    assert_eq!(layer.in_flight(), 1);
    drop(fut);
    assert_eq!(layer.in_flight(), 0);

    // Dropped while pending (e.g. cancelled by a timeout).
    let (_tx, rx) = oneshot::channel();
    {
        let mut fut = pin!(svc.ready().await.unwrap().call(rx));
        assert!(poll_once(fut.as_mut()).is_pending());
        assert_eq!(layer.in_flight(), 1);
    }
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test]
async fn clones_of_layer_and_service_share_one_limit() {
    let layer = BulkheadLayer::new(2);
    // As axum does: one service made once, then cloned per connection; plus a second service
    // made from a clone of the layer.
    let svc = layer.layer(gated(Arc::default()));
    let mut conn1 = svc.clone();
    let mut conn2 = svc.clone();
    let mut other = layer.clone().layer(gated(Arc::default()));

    let (_t1, r1) = oneshot::channel();
    let (_t2, r2) = oneshot::channel();
    let (_t3, r3) = oneshot::channel();
    let _a = conn1.ready().await.unwrap().call(r1);
    let _b = conn2.ready().await.unwrap().call(r2);
    assert_eq!(other.in_flight(), 2);
    assert_eq!(svc.in_flight(), 2);

    let err = other.ready().await.unwrap().call(r3).await.unwrap_err();
    assert!(err.is::<BulkheadFull>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_never_exceed_the_limit() {
    let max = 3;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let inner = {
        let (running, peak) = (running.clone(), peak.clone());
        service_fn(move |()| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(())
            }
        })
    };
    let layer = BulkheadLayer::new(max);
    let svc = layer.layer(inner);
    let tasks: Vec<_> = (0..64)
        .map(|_| tokio::spawn(svc.clone().oneshot(())))
        .collect();
    let mut rejected = 0;
    for t in tasks {
        if let Err(err) = t.await.unwrap() {
            assert!(err.is::<BulkheadFull>());
            rejected += 1;
        }
    }
    assert!(peak.load(Ordering::SeqCst) <= max);
    assert!(rejected < 64);
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test]
async fn inner_error_passes_through_boxed_and_releases_the_slot() {
    let layer = BulkheadLayer::new(1);
    let svc = layer.layer(service_fn(|()| async {
        Err::<(), _>(std::io::Error::other("upstream broke"))
    }));
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(!err.is::<BulkheadFull>());
    assert!(err.is::<std::io::Error>());
    assert_eq!(layer.in_flight(), 0);
}

/// Readiness is the inner service's, unchanged by the bulkhead.
struct Readiness(Poll<Result<(), &'static str>>);

impl Service<()> for Readiness {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.map(|r| r.map_err(Into::into))
    }
    fn call(&mut self, _: ()) -> Self::Future {
        std::future::ready(Ok(()))
    }
}

#[test]
fn poll_ready_forwards_inner_readiness() {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let layer = BulkheadLayer::new(1);
    assert!(layer
        .layer(Readiness(Poll::Pending))
        .poll_ready(&mut cx)
        .is_pending());
    match layer
        .layer(Readiness(Poll::Ready(Err("down"))))
        .poll_ready(&mut cx)
    {
        Poll::Ready(Err(err)) => assert_eq!(err.to_string(), "down"),
        other => panic!("expected the inner error, got {other:?}"),
    }
    assert!(matches!(
        layer
            .layer(Readiness(Poll::Ready(Ok(()))))
            .poll_ready(&mut cx),
        Poll::Ready(Ok(()))
    ));
}

#[tokio::test]
async fn zero_rejects_everything_and_try_new_refuses_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = BulkheadLayer::new(0);
    let (_tx, rx) = oneshot::channel();
    let err = layer
        .layer(gated(calls.clone()))
        .oneshot(rx)
        .await
        .unwrap_err();
    assert!(err.is::<BulkheadFull>());
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let err = BulkheadLayer::try_new(0).unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
    assert!(err.to_string().contains("[1, usize::MAX]"), "{err}");
    assert_eq!(BulkheadLayer::try_new(5).unwrap().max_concurrent(), 5);
}

#[test]
fn accessors_and_debug() {
    let layer = BulkheadLayer::new(4);
    assert_eq!(layer.max_concurrent(), 4);
    assert_eq!(layer.in_flight(), 0);
    let mut svc: Bulkhead<u8> = layer.layer(1);
    assert_eq!(svc.max_concurrent(), 4);
    assert_eq!(*svc.get_ref(), 1);
    *svc.get_mut() = 2;
    assert!(format!("{svc:?}").contains("max_concurrent: 4"));
    assert!(format!("{layer:?}").contains("in_flight: 0"));
    assert_eq!(svc.into_inner(), 2);
}

#[test]
fn services_and_futures_are_send_and_sync_for_axum() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}
    let layer = BulkheadLayer::new(1);
    assert_send_sync(&layer);
    let mut svc = layer.layer(service_fn(|()| async { Ok::<_, BoxError>(()) }));
    assert_send_sync(&svc);
    assert_send(&svc.call(()));
}

// Naming a layer created a new bulkhead: a clone from before and the named layer each had a limit.
#[tokio::test]
async fn naming_keeps_one_shared_bulkhead() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = BulkheadLayer::new(1);
    let before = layer.clone();
    let layer = layer.name("db");
    let mut a = before.layer(gated(calls.clone()));
    let mut b = layer.layer(gated(calls.clone()));
    let (_tx, rx) = oneshot::channel();
    let _held = a.ready().await.unwrap().call(rx);
    assert_eq!(
        layer.in_flight(),
        1,
        "the named layer sees the clone's call"
    );
    let (_tx2, rx2) = oneshot::channel();
    let err = b.ready().await.unwrap().call(rx2).await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    assert!(format!("{layer:?}").contains("\"db\""), "{layer:?}");
    assert!(format!("{before:?}").contains("\"db\""), "{before:?}");
}
