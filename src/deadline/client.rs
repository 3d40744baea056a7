//! The client side of deadlines: end a call at the deadline in scope, and send what is left of
//! it to the next service.
//!
//! A stack assembled by hand puts [`DeadlineCapLayer`] outermost and [`PropagateDeadlineLayer`]
//! around each attempt; each costs one thread-local read per call when no deadline is in scope.
//! [`HttpLayer`](crate::http::HttpLayer) has the second, and its retry does what the first
//! would, without a layer of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use super::{Deadline, DeadlineHeader};
use crate::timeout::error::Elapsed;
use crate::BoxError;

/// Ends every call at the deadline in scope ([`Deadline::current`], read when the call is
/// made), with [`Elapsed`]; a call made after its deadline fails at once without reaching the
/// inner service. Without a deadline in scope, calls pass through.
///
/// The inner future is polled inside the deadline's scope, so layers below it (a retry's later
/// attempts, [`PropagateDeadline`]) see the deadline even when the call is driven on another task.
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct DeadlineCapLayer {
    _priv: (),
}

impl DeadlineCapLayer {
    /// The layer.
    pub const fn new() -> Self {
        DeadlineCapLayer { _priv: () }
    }
}

impl<S> Layer<S> for DeadlineCapLayer {
    type Service = DeadlineCap<S>;

    fn layer(&self, inner: S) -> DeadlineCap<S> {
        DeadlineCap { inner }
    }
}

/// The service of a [`DeadlineCapLayer`].
#[derive(Debug, Clone)]
pub struct DeadlineCap<S> {
    inner: S,
}

impl<S> DeadlineCap<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        DeadlineCap { inner }
    }

    define_inner_service_accessors!();
}

impl<S, Req> Service<Req> for DeadlineCap<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match Deadline::current() {
            None => ResponseFuture {
                inner: Some(self.inner.call(request)),
                bound: None,
            },
            Some(deadline) if deadline.is_expired() => ResponseFuture {
                inner: None,
                bound: None,
            },
            Some(deadline) => ResponseFuture {
                inner: Some(deadline.sync_scope(|| self.inner.call(request))),
                bound: Some(Box::pin(Bound {
                    deadline,
                    sleep: tokio::time::sleep_until(deadline.instant()),
                })),
            },
        }
    }
}

pin_project! {
    struct Bound {
        deadline: Deadline,
        #[pin]
        sleep: Sleep,
    }
}

pin_project! {
    /// The response future of [`DeadlineCap`].
    pub struct ResponseFuture<F> {
        // `None`: the deadline had passed when the call was made.
        #[pin]
        inner: Option<F>,
        // The deadline's timer, boxed so that a call without a deadline does not carry it.
        bound: Option<Pin<Box<Bound>>>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("deadline", &self.bound.as_ref().map(|b| b.deadline))
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(Elapsed::new().into()));
        };
        let Some(bound) = this.bound.as_mut() else {
            return inner.poll(cx).map_err(Into::into);
        };
        let deadline = bound.deadline;
        if let Poll::Ready(result) = deadline.sync_scope(|| inner.poll(cx)) {
            return Poll::Ready(result.map_err(Into::into));
        }
        match bound.as_mut().project().sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed::new().into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A request whose headers a deadline can be written into: `http::Request` and, with the
/// feature `reqwest`, `reqwest::Request`.
pub trait DeadlineRequest {
    /// The request's headers.
    fn headers_mut(&mut self) -> &mut HeaderMap;
}

impl<B> DeadlineRequest for http::Request<B> {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        http::Request::headers_mut(self)
    }
}

#[cfg(feature = "reqwest")]
impl DeadlineRequest for reqwest::Request {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        reqwest::Request::headers_mut(self)
    }
}

/// Writes what is left of the deadline in scope into each request (a shorter timeout already in
/// the request is kept), so the next service knows its budget. Put it around each attempt: the
/// time spent before an attempt — earlier attempts, backoff — is not sent on.
#[derive(Debug, Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct PropagateDeadlineLayer {
    header: DeadlineHeader,
}

impl PropagateDeadlineLayer {
    /// Sends the deadline in `header`.
    pub fn new(header: DeadlineHeader) -> Self {
        PropagateDeadlineLayer { header }
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> PropagateDeadline<S> {
        PropagateDeadline {
            inner,
            header: self.header.clone(),
        }
    }
}

/// The service of a [`PropagateDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    header: DeadlineHeader,
}

impl<S> PropagateDeadline<S> {
    define_inner_service_accessors!();
}

impl<S, Req> Service<Req> for PropagateDeadline<S>
where
    S: Service<Req>,
    Req: DeadlineRequest,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Req) -> S::Future {
        if let Some(deadline) = Deadline::current() {
            self.header
                .write(request.headers_mut(), deadline.remaining());
        }
        self.inner.call(request)
    }
}
