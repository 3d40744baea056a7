//! The response future of [`Bulkhead`](super::Bulkhead).

use super::error::BulkheadFull;
use super::Permit;
use crate::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// Response future of [`Bulkhead`](super::Bulkhead): the inner call holding a slot, or a
    /// rejection that fails with [`BulkheadFull`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            inner: F,
            // `None` once the call has finished: the slot goes back as soon as the answer is
            // ready, not when the caller gets round to dropping the future.
            permit: Option<Permit>,
        },
        Rejected,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(inner: F, permit: Permit) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                inner,
                permit: Some(permit),
            },
        }
    }

    /// The inner call without a slot (a stack's bulkhead turned off at run time).
    pub(crate) fn unlimited(inner: F) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                inner,
                permit: None,
            },
        }
    }

    pub(crate) fn rejected() -> Self {
        ResponseFuture {
            kind: Kind::Rejected,
        }
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
        match self.project().kind.project() {
            KindProj::Called { inner, permit } => match inner.poll(cx) {
                Poll::Ready(result) => {
                    drop(permit.take());
                    Poll::Ready(result.map_err(Into::into))
                }
                Poll::Pending => Poll::Pending,
            },
            // Zero-sized: boxing it does not allocate.
            KindProj::Rejected => Poll::Ready(Err(BulkheadFull::new().into())),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Called { .. } => "Called",
            Kind::Rejected => "Rejected",
        };
        f.debug_tuple("ResponseFuture").field(&kind).finish()
    }
}
