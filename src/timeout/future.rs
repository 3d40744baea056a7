//! The response future of [`Timeout`](super::Timeout).

use super::error::Elapsed;
use crate::metrics::Counter;
use crate::BoxError;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

pin_project! {
    /// Response future of [`Timeout`](super::Timeout): the inner future, and a timer created the
    /// first time the inner future is pending.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // `None` until the inner future first pends; pinned in place, so no allocation.
        #[pin]
        sleep: Option<Sleep>,
        // `None`: no timeout (a stack's timeout turned off at run time); no timer is made.
        timeout: Option<Duration>,
        timeouts: Counter,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, timeout: Option<Duration>, timeouts: Counter) -> Self {
        ResponseFuture {
            inner,
            sleep: None,
            timeout,
            timeouts,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    // Always: one instance serves both a stack's fixed and its optional timeout around the same
    // service, and left to the compiler a second caller put it out of line.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();

        // The inner future first: an answer that is ready wins over a deadline that has passed.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }

        if this.sleep.is_none() {
            let Some(timeout) = *this.timeout else {
                return Poll::Pending;
            };
            if timeout.is_zero() {
                // A zero timeout fails on the poll where the inner future first pends (its docs):
                // a `Sleep` of zero is only seen elapsed on a later poll, after the timer fires.
                this.timeouts.increment(1);
                return Poll::Ready(Err(Elapsed::new().into()));
            }
            this.sleep.set(Some(tokio::time::sleep(timeout)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        this.timeouts.increment(1);
        Poll::Ready(Err(Elapsed::new().into()))
    }
}
