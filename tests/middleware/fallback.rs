//! Fallback semantics: which errors are replaced, by what, and what passes through.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harden::fallback::{Fallback, FallbackLayer};
use harden::timeout::{error::Elapsed, TimeoutLayer};
use harden::BoxError;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

/// A stand-in for a rejection from a layer further in (harden's own cannot be built here).
#[derive(Debug)]
struct Rejected;

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rejected")
    }
}

impl std::error::Error for Rejected {}

fn failing_with(
    make: fn() -> BoxError,
) -> impl Service<(), Response = String, Error = BoxError, Future = impl Send> + Clone {
    service_fn(move |()| async move { Err::<String, BoxError>(make()) })
}

#[tokio::test]
async fn every_error_is_replaced_by_default_and_the_fallback_sees_it() {
    let layer =
        FallbackLayer::new(|err: BoxError| async move { Ok(format!("fallback for {err}")) });
    for make in [
        (|| "boom".into()) as fn() -> BoxError,
        || Box::new(Rejected),
        || Box::new(std::io::Error::other("io")),
    ] {
        let expected = format!("fallback for {}", make());
        let svc = layer.layer(failing_with(make));
        assert_eq!(svc.oneshot(()).await.unwrap(), expected);
    }
}

#[tokio::test]
async fn predicate_chooses_which_errors_fall_back() {
    let layer = FallbackLayer::new(|_err: BoxError| async { Ok("fallback".to_string()) })
        .when(|err: &BoxError| err.is::<Rejected>());

    let chosen = layer.layer(failing_with(|| Box::new(Rejected)));
    assert_eq!(chosen.oneshot(()).await.unwrap(), "fallback");

    let other = layer.layer(failing_with(|| Box::new(std::io::Error::other("io"))));
    let err = other.oneshot(()).await.unwrap_err();
    // Unchanged: still the same concrete error, not wrapped.
    assert!(err.is::<std::io::Error>(), "{err}");
}

#[tokio::test]
async fn the_fallbacks_own_error_propagates() {
    let layer = FallbackLayer::new(|err: BoxError| async move {
        Err::<String, BoxError>(format!("fallback failed too after: {err}").into())
    });
    let err = layer
        .layer(failing_with(|| "boom".into()))
        .oneshot(())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "fallback failed too after: boom");
}

#[tokio::test]
async fn success_is_untouched_and_the_fallback_not_called() {
    let called = Arc::new(AtomicUsize::new(0));
    let layer = FallbackLayer::new({
        let called = called.clone();
        move |_err: BoxError| {
            called.fetch_add(1, Ordering::SeqCst);
            async { Ok(0u32) }
        }
    });
    let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) }));
    assert_eq!(svc.oneshot(1).await.unwrap(), 2);
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_fallback_may_wait() {
    let layer = FallbackLayer::new(|_err: BoxError| async {
        tokio::task::yield_now().await;
        Ok("after waiting".to_string())
    });
    let svc = layer.layer(failing_with(|| "boom".into()));
    assert_eq!(svc.oneshot(()).await.unwrap(), "after waiting");
}

#[tokio::test(start_paused = true)]
async fn composes_with_a_timeout_inside() {
    let svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::new(|_err: BoxError| async { Ok("timed out, default") })
                .when(|err: &BoxError| err.is::<Elapsed>()),
        )
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .service(service_fn(|()| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, BoxError>("slow")
        }));
    assert_eq!(svc.oneshot(()).await.unwrap(), "timed out, default");
}

#[tokio::test]
async fn clones_share_one_fallback_function() {
    let called = Arc::new(AtomicUsize::new(0));
    let layer = FallbackLayer::new({
        let called = called.clone();
        move |_err: BoxError| {
            called.fetch_add(1, Ordering::SeqCst);
            async { Ok(String::new()) }
        }
    });
    let svc = layer.clone().layer(failing_with(|| "boom".into()));
    for s in [svc.clone(), svc.clone(), svc] {
        s.oneshot(()).await.unwrap();
    }
    assert_eq!(called.load(Ordering::SeqCst), 3);
    // The layer holds the function once, behind an Arc, whatever the number of clones.
    drop(layer);
}

#[test]
fn accessors() {
    let layer = FallbackLayer::new(|_err: BoxError| async { Ok(()) });
    let mut svc: Fallback<u8, _> = layer.layer(1);
    *svc.get_mut() = 2;
    assert_eq!(*svc.get_ref(), 2);
    assert!(format!("{svc:?}").starts_with("Fallback"));
    assert_eq!(svc.into_inner(), 2);
}

#[test]
fn services_and_futures_are_send_and_sync_for_axum() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}
    let mut svc = FallbackLayer::new(|_err: BoxError| async { Ok(String::new()) })
        .layer(failing_with(|| "boom".into()));
    assert_send_sync(&svc);
    assert_send(&svc.call(()));
}
