//! harden's errors as gRPC statuses.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;

use crate::bulkhead::error::BulkheadFull;
use crate::circuit_breaker::error::CircuitOpen;
use crate::retry::error::{BudgetExhausted, RetryAfterTooLong};
use crate::timeout::error::Elapsed;
use crate::BoxError;

/// gRFC A6's pushback header: how many milliseconds a client should wait before retrying.
pub const PUSHBACK: &str = "grpc-retry-pushback-ms";

fn with_pushback(mut status: Status, delay: Option<std::time::Duration>) -> Status {
    if let Some(delay) = delay {
        // Whole milliseconds, rounded up, within the i32 gRFC A6 allows.
        let ms = delay.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
        if let Ok(value) = ms.to_string().parse() {
            status.metadata_mut().insert(PUSHBACK, value);
        }
    }
    status
}

/// The gRPC status for an error out of harden's layers:
///
/// | error | status |
/// |---|---|
/// | [`CircuitOpen`] | `UNAVAILABLE`, with `grpc-retry-pushback-ms` = time to the next probe |
/// | [`BulkheadFull`] | `RESOURCE_EXHAUSTED` |
/// | [`Elapsed`] | `DEADLINE_EXCEEDED` |
/// | [`BudgetExhausted`] | `UNAVAILABLE` |
/// | [`RetryAfterTooLong`] | `UNAVAILABLE`, with `grpc-retry-pushback-ms` = the delay the upstream asked for |
/// | a [`Status`] | itself |
/// | anything else | `INTERNAL`, without the error's message (which may hold internals) |
///
/// ```
/// use harden::tonic::status_for;
/// use tonic::Code;
///
/// let err: harden::BoxError = "db password rejected for user x".into();
/// let status = status_for(&*err);
/// assert_eq!(status.code(), Code::Internal);
/// assert_eq!(status.message(), "internal error");
/// ```
pub fn status_for(err: &(dyn StdError + 'static)) -> Status {
    if let Some(open) = err.downcast_ref::<CircuitOpen>() {
        return with_pushback(Status::unavailable("circuit open"), open.retry_after());
    }
    if err.is::<BulkheadFull>() {
        return Status::resource_exhausted("too many concurrent requests");
    }
    if err.is::<Elapsed>() {
        return Status::deadline_exceeded("deadline exceeded");
    }
    if err.is::<BudgetExhausted>() {
        return Status::unavailable("retry budget exhausted");
    }
    if let Some(too_long) = err.downcast_ref::<RetryAfterTooLong>() {
        return with_pushback(
            Status::unavailable("upstream asked to retry after the deadline"),
            Some(too_long.retry_after()),
        );
    }
    if let Some(status) = err.downcast_ref::<Status>() {
        return status.clone();
    }
    Status::new(Code::Internal, "internal error")
}

/// [`status_for`] as a boxed error carrying `err` as its source, so a caller holding the
/// `Status` can still downcast to harden's error.
pub(crate) fn status_error<E: StdError + Clone + Send + Sync + 'static>(err: &E) -> BoxError {
    let mut status = status_for(err);
    status.set_source(Arc::new(err.clone()));
    Box::new(status)
}

/// Turns the errors of the services it wraps into gRPC answers ([`status_for`]), so a tonic
/// route behind harden's layers needs no `HandleErrorLayer`: the service becomes infallible.
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct GrpcErrorLayer {
    _priv: (),
}

impl GrpcErrorLayer {
    /// The layer.
    pub const fn new() -> Self {
        GrpcErrorLayer { _priv: () }
    }
}

impl<S> Layer<S> for GrpcErrorLayer {
    type Service = GrpcErrors<S>;

    fn layer(&self, inner: S) -> GrpcErrors<S> {
        GrpcErrors { inner }
    }
}

/// The service of a [`GrpcErrorLayer`].
#[derive(Debug, Clone)]
pub struct GrpcErrors<S> {
    inner: S,
}

impl<S> GrpcErrors<S> {
    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcErrors<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = GrpcErrorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // An error here would close the connection: keep it, and answer the call instead.
        match ready!(self.inner.poll_ready(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                tracing::warn!(error = %e.into(), "gRPC service failed in poll_ready");
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        GrpcErrorsFuture {
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The response future of [`GrpcErrors`].
    pub struct GrpcErrorsFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F> std::fmt::Debug for GrpcErrorsFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcErrorsFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for GrpcErrorsFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match ready!(self.project().inner.poll(cx)) {
            Ok(response) => response,
            Err(e) => status_for(&*e.into()).into_http(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn harden_errors_become_their_statuses() {
        let open = CircuitOpen::new(Some(Duration::from_micros(1500)));
        let s = status_for(&open);
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.metadata().get(PUSHBACK).unwrap(), "2");
        assert_eq!(
            status_for(&BulkheadFull::new()).code(),
            Code::ResourceExhausted
        );
        assert_eq!(status_for(&Elapsed::new()).code(), Code::DeadlineExceeded);
        let budget = BudgetExhausted::new("last".into());
        assert_eq!(status_for(&budget).code(), Code::Unavailable);
        let too_long = RetryAfterTooLong::new(Duration::from_secs(3), Duration::from_secs(1));
        let s = status_for(&too_long);
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.metadata().get(PUSHBACK).unwrap(), "3000");
        let s = status_for(&Status::not_found("no such user"));
        assert_eq!((s.code(), s.message()), (Code::NotFound, "no such user"));
    }

    #[test]
    fn a_boxed_status_keeps_harden_s_error_as_its_source() {
        let err = status_error(&CircuitOpen::new(None));
        let status = err.downcast_ref::<Status>().unwrap();
        assert!(status.source().unwrap().is::<CircuitOpen>());
    }
}
