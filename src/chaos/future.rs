//! The response future of [`ChaosService`](super::ChaosService).

use super::error::InjectedError;
use super::InjectStatus;
use crate::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

pin_project! {
    /// Response future of [`ChaosService`](super::ChaosService): an optional delay, then the
    /// inner future or the injected outcome.
    pub struct ResponseFuture<F, R> {
        #[pin]
        kind: Kind<F>,
        // Boxed so a pass-through call's future stays the size of the inner one plus a word;
        // only delayed calls allocate, and they are about to sleep anyway.
        delay: Delay,
        respond: R,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Fail { chaos: Arc<str> },
        Status { chaos: Arc<str>, status: u16 },
        Hang,
    }
}

enum Delay {
    None,
    /// The timer starts at the first poll (a `Sleep` needs the runtime's timer, which `call`
    /// may run without).
    Start(Duration),
    Sleeping(Pin<Box<Sleep>>),
}

/// What [`ChaosService::call`](super::ChaosService) decided for one call.
pub(crate) enum Outcome<F> {
    Inner(F),
    Fail(Arc<str>),
    Status(Arc<str>, u16),
    Hang,
}

impl<F, R> ResponseFuture<F, R> {
    pub(crate) fn new(outcome: Outcome<F>, delay: Option<Duration>, respond: R) -> Self {
        let kind = match outcome {
            Outcome::Inner(future) => Kind::Inner { future },
            Outcome::Fail(chaos) => Kind::Fail { chaos },
            Outcome::Status(chaos, status) => Kind::Status { chaos, status },
            Outcome::Hang => Kind::Hang,
        };
        ResponseFuture {
            kind,
            delay: delay.map_or(Delay::None, Delay::Start),
            respond,
        }
    }
}

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Fail { .. } => "error",
            Kind::Status { .. } => "status",
            Kind::Hang => "hang",
        };
        let delayed = !matches!(self.delay, Delay::None);
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .field("delayed", &delayed)
            .finish_non_exhaustive()
    }
}

impl<F, R, T, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    R: InjectStatus<T>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        loop {
            match this.delay {
                Delay::None => break,
                Delay::Start(delay) => {
                    *this.delay = Delay::Sleeping(Box::pin(tokio::time::sleep(*delay)));
                }
                Delay::Sleeping(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    *this.delay = Delay::None;
                }
            }
        }
        match this.kind.project() {
            KindProj::Inner { future } => future.poll(cx).map_err(Into::into),
            KindProj::Fail { chaos } => {
                Poll::Ready(Err(InjectedError::new(Arc::clone(chaos), None).into()))
            }
            KindProj::Status { chaos, status } => {
                Poll::Ready(match this.respond.status_response(*status) {
                    Some(response) => Ok(response),
                    None => Err(InjectedError::new(Arc::clone(chaos), Some(*status)).into()),
                })
            }
            // Never ready and never woken: the caller's timeout (or drop) ends it.
            KindProj::Hang => Poll::Pending,
        }
    }
}
