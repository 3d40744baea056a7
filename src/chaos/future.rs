//! The response future of [`ChaosService`](super::ChaosService).

use super::error::InjectedError;
use super::InjectStatus;
use crate::BoxError;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
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

/// The delay still to serve, if any.
///
/// The timer starts at the first poll (a `Sleep` needs the runtime's timer, which `call` may
/// run without) and is boxed, so only delayed calls allocate (they are about to sleep anyway).
/// `ManuallyDrop` with a `Drop` of its own keeps dropping a pass-through future to one inline
/// compare: the compiler's drop glue for a `Sleep` is a call it does not inline.
struct Delay(ManuallyDrop<DelayState>);

enum DelayState {
    None,
    Start(Duration),
    Sleeping(Pin<Box<Sleep>>),
}

impl Delay {
    #[inline]
    const fn none() -> Self {
        Delay(ManuallyDrop::new(DelayState::None))
    }

    #[inline]
    fn is_pending(&self) -> bool {
        !matches!(*self.0, DelayState::None)
    }

    /// Serves the delay; out of line, so pass-through calls carry none of it.
    #[inline(never)]
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut *self.0 {
                DelayState::None => return Poll::Ready(()),
                DelayState::Start(delay) => {
                    *self.0 = DelayState::Sleeping(Box::pin(tokio::time::sleep(*delay)));
                }
                DelayState::Sleeping(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.release();
                }
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn release(&mut self) {
        drop(std::mem::replace(&mut *self.0, DelayState::None));
    }
}

impl Drop for Delay {
    #[inline]
    fn drop(&mut self) {
        // What is left in the `ManuallyDrop` afterwards is `None`, which owns nothing.
        if let DelayState::Sleeping(_) = *self.0 {
            self.release();
        }
    }
}

#[cold]
fn injected(chaos: &Arc<str>, status: Option<u16>) -> BoxError {
    InjectedError::new(Arc::clone(chaos), status).into()
}

/// What [`ChaosService::call`](super::ChaosService) decided for one call.
pub(crate) enum Outcome<F> {
    Inner(F),
    Fail(Arc<str>),
    Status(Arc<str>, u16),
    Hang,
}

impl<F, R> ResponseFuture<F, R> {
    /// The pass-through future: the inner one, no delay.
    #[inline]
    pub(crate) fn pass(future: F, respond: R) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
            delay: Delay::none(),
            respond,
        }
    }

    pub(crate) fn new(outcome: Outcome<F>, delay: Option<Duration>, respond: R) -> Self {
        let kind = match outcome {
            Outcome::Inner(future) => Kind::Inner { future },
            Outcome::Fail(chaos) => Kind::Fail { chaos },
            Outcome::Status(chaos, status) => Kind::Status { chaos, status },
            Outcome::Hang => Kind::Hang,
        };
        ResponseFuture {
            kind,
            delay: Delay(ManuallyDrop::new(match delay {
                Some(delay) => DelayState::Start(delay),
                None => DelayState::None,
            })),
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
        let delayed = self.delay.is_pending();
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
        if this.delay.is_pending() {
            ready!(this.delay.poll(cx));
        }
        match this.kind.project() {
            KindProj::Inner { future } => future.poll(cx).map_err(Into::into),
            KindProj::Fail { chaos } => Poll::Ready(Err(injected(chaos, None))),
            KindProj::Status { chaos, status } => {
                Poll::Ready(match this.respond.status_response(*status) {
                    Some(response) => Ok(response),
                    None => Err(injected(chaos, Some(*status))),
                })
            }
            // Never ready and never woken: the caller's timeout (or drop) ends it.
            KindProj::Hang => Poll::Pending,
        }
    }
}
