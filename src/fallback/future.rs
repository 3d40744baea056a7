//! The response future of [`Fallback`](super::Fallback).

use super::Shared;
use crate::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pin_project! {
    /// Response future of [`Fallback`](super::Fallback): the inner call, then, if it failed with
    /// a chosen error, the fallback function's future.
    pub struct ResponseFuture<Fut, F, P, FFut> {
        #[pin]
        state: State<Fut, F, P, FFut>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, F, P, FFut> {
        Calling {
            #[pin]
            inner: Fut,
            shared: Arc<Shared<F, P>>,
        },
        FallingBack {
            #[pin]
            fallback: FFut,
        },
    }
}

impl<Fut, F, P, FFut> ResponseFuture<Fut, F, P, FFut> {
    pub(crate) fn new(inner: Fut, shared: Arc<Shared<F, P>>) -> Self {
        ResponseFuture {
            state: State::Calling { inner, shared },
        }
    }
}

impl<Fut, F, P, FFut, T, E> Future for ResponseFuture<Fut, F, P, FFut>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    F: Fn(BoxError) -> FFut,
    FFut: Future<Output = Result<T, BoxError>>,
    P: Fn(&BoxError) -> bool,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { inner, shared } => {
                    let err = match inner.poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(response)) => return Poll::Ready(Ok(response)),
                        Poll::Ready(Err(err)) => err.into(),
                    };
                    if !(shared.predicate)(&err) {
                        return Poll::Ready(Err(err));
                    }
                    shared.note_fallback();
                    let fallback = (shared.fallback)(err);
                    this.state.set(State::FallingBack { fallback });
                }
                StateProj::FallingBack { fallback } => return fallback.poll(cx),
            }
        }
    }
}

impl<Fut, F, P, FFut> fmt::Debug for ResponseFuture<Fut, F, P, FFut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "Calling",
            State::FallingBack { .. } => "FallingBack",
        };
        f.debug_tuple("ResponseFuture").field(&state).finish()
    }
}
