//! Fail a call that does not finish within a duration, with [`Elapsed`](error::Elapsed).
//!
//! [`TimeoutLayer::new(d)`](TimeoutLayer::new) wraps a service so that each response future
//! resolves to `Err(Elapsed)` (boxed into a [`BoxError`]) if the inner future is still pending `d`
//! after it first pended. The timer is created lazily: a call whose inner future is ready on its
//! first poll never touches the timer wheel or the clock, so the timeout costs almost nothing on
//! the fast path. Time is `tokio::time`, so the timeout follows `tokio::time::pause()` and
//! `advance()` in tests.
//!
//! # Example
//!
//! Default use: a 2 second budget for each call.
//!
//! ```
//! use std::time::Duration;
//! use harden::timeout::TimeoutLayer;
//! use harden::BoxError;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!     .service(service_fn(|req: u32| async move { Ok::<_, BoxError>(req + 1) }));
//!
//! assert_eq!(svc.oneshot(41).await?, 42);
//! # Ok(())
//! # }
//! ```
//!
//! Customised: a short timeout around a slow upstream, telling the timeout apart from the
//! upstream's own errors by downcasting (the clock is paused here so the example runs at once).
//!
//! ```
//! use std::time::Duration;
//! use harden::timeout::{error::Elapsed, TimeoutLayer};
//! use harden::BoxError;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slow = service_fn(|_req: ()| async {
//!     tokio::time::sleep(Duration::from_secs(60)).await;
//!     Ok::<_, std::io::Error>("late")
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_millis(250)))
//!     .service(slow);
//!
//! let err: BoxError = svc.oneshot(()).await.unwrap_err();
//! assert!(err.is::<Elapsed>());
//! # }
//! ```
//!
//! # Errors
//!
//! The service's error type is [`BoxError`]. It holds either
//! [`Elapsed`](error::Elapsed) (the deadline passed first) or the inner service's error, boxed
//! unchanged; tell them apart with `err.is::<Elapsed>()`. Errors from the inner `poll_ready` are
//! passed through boxed; no timeout applies to readiness.
//!
//! # When the timeout starts
//!
//! The deadline is `d` after the first poll of the response future that finds the inner future
//! pending — not `d` after [`call`](tower_service::Service::call). Reading a clock in `call`
//! (`Instant::now()`) would cost more than the rest of this layer, and
//! every tower driver (`ServiceBuilder` stacks, `oneshot`, axum, hyper) polls a response future
//! right after creating it, so the two starting points differ by the time the inner `call` and
//! its first poll take. That time is synchronous work, which no timeout can interrupt anyway.
//! A future that is created and then left unpolled is not timed until it is polled.
//!
//! A zero duration is allowed: calls whose inner future is ready on its first poll succeed, and
//! every call that has to wait fails with `Elapsed` on the poll where it first pends.
//!
//! The first poll that pends must run inside a tokio runtime with the time driver enabled
//! (`#[tokio::main]` and `#[tokio::test]` enable it), as for `tokio::time::sleep`.
//!
//! # Defaults
//!
//! None: the duration is the only setting and [`TimeoutLayer::new`] requires it.
//!
//! # Differences from tower's `Timeout`
//!
//! - tower's [`Timeout`](https://docs.rs/tower/latest/tower/timeout/struct.Timeout.html) builds
//!   a `tokio::time::Sleep` in every `call`, used or not; this one
//!   builds it only when the inner future first pends, so the timer's clock read and registration
//!   are paid only by calls that wait.
//! - Consequently the deadline counts from the first pending poll, not from `call` (see above).
//! - The error type, [`Elapsed`](error::Elapsed), is harden's own, so `err.is::<Elapsed>()`
//!   must name `harden::timeout::error::Elapsed`, not tower's.

pub mod error;
pub mod future;
mod layer;
mod settings;

pub use self::layer::TimeoutLayer;
pub use self::settings::TimeoutSettings;

use self::future::ResponseFuture;
use crate::metrics::Counter;
use crate::BoxError;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// A service that fails calls taking longer than a duration; made by [`TimeoutLayer`].
///
/// See the [module docs](self) for when the deadline starts.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
    timeouts: Counter,
}

impl<S> Timeout<S> {
    /// Wraps `inner` so that each call fails with [`Elapsed`](error::Elapsed) if it takes longer
    /// than `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        let name = crate::metrics::default_name();
        let timeouts = crate::metrics::counter(crate::metrics::names::TIMEOUTS, "timeout", &name);
        Timeout::with_counter(inner, timeout, timeouts)
    }

    pub(crate) fn with_counter(inner: S, timeout: Duration, timeouts: Counter) -> Self {
        Timeout {
            inner,
            timeout,
            timeouts,
        }
    }

    /// The duration each call is allowed.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    define_inner_service_accessors!();
}

impl<S, Request> Service<Request> for Timeout<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        // No timer and no clock read here: see "When the timeout starts" in the module docs.
        ResponseFuture::new(
            self.inner.call(request),
            Some(self.timeout),
            self.timeouts.clone(),
        )
    }
}
