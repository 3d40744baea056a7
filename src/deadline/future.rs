//! The response future of [`DeadlineService`](super::DeadlineService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{Deadline, Scoped};

pin_project! {
    /// The response future of [`DeadlineService`](super::DeadlineService): the handler's
    /// future inside its deadline's scope, raced against the deadline.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        // No deadline: the handler's future as it is.
        Plain { #[pin] inner: F },
        Bounded {
            #[pin]
            inner: Scoped<F>,
            #[pin]
            sleep: Sleep,
            grpc: bool,
        },
        // The deadline had passed before the handler was called.
        Expired { grpc: bool },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn plain(inner: F) -> Self {
        ResponseFuture {
            kind: Kind::Plain { inner },
        }
    }

    pub(super) fn bounded(inner: Scoped<F>, deadline: Deadline, grpc: bool) -> Self {
        ResponseFuture {
            kind: Kind::Bounded {
                inner,
                sleep: tokio::time::sleep_until(deadline.instant()),
                grpc,
            },
        }
    }

    pub(super) fn expired(grpc: bool) -> Self {
        ResponseFuture {
            kind: Kind::Expired { grpc },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Plain { inner } => inner.poll(cx),
            KindProj::Bounded { inner, sleep, grpc } => {
                // The handler first: an answer that is ready wins over a deadline that passed.
                if let Poll::Ready(result) = inner.poll(cx) {
                    return Poll::Ready(result);
                }
                match sleep.poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Ok(super::deadline_exceeded(*grpc))),
                    Poll::Pending => Poll::Pending,
                }
            }
            KindProj::Expired { grpc } => Poll::Ready(Ok(super::deadline_exceeded(*grpc))),
        }
    }
}
