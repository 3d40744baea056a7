//! Errors → HTTP responses: [`ErrorResponseLayer`] (its docs hold the mapping and examples).

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::bulkhead::error::BulkheadFull;
use crate::circuit_breaker::error::CircuitOpen;
use crate::retry::error::{BudgetExhausted, RetryAfterTooLong};
use crate::timeout::error::Elapsed;
use crate::BoxError;

/// Turns the wrapped service's errors into HTTP responses.
///
/// The layer wraps a service whose error is anything `Into<BoxError>` and whose response is an
/// `http::Response<B>`, and makes it infallible: every error becomes a response with a JSON
/// body, so an axum route guarded by harden's layers needs no `HandleErrorLayer` (axum requires
/// `Error = Infallible`). The error is matched by walking its [`source`](std::error::Error::source)
/// chain from the outside in; the first harden error found decides:
///
/// | error (anywhere in the chain) | status | `Retry-After` |
/// |---|---|---|
/// | `CircuitOpen` | 503 | time to the next probe, rounded up to whole seconds (none when forced open) |
/// | `BulkheadFull` | 503 | — |
/// | `Elapsed` | 504 | — |
/// | `BudgetExhausted` | 503 | — |
/// | `RetryAfterTooLong` | 503 | the upstream's delay, rounded up |
/// | anything else | 500 | — |
///
/// The body is `{"statusCode":503,"message":"circuit breaker is open","retryAfter":5}`
/// (`retryAfter` only when `Retry-After` is sent), `Content-Type: application/json`. The message
/// of an unknown error is *not* sent to the client (it may hold internal details): the body says
/// `internal server error` and the error is logged with `tracing` at `error` level.
///
/// Generic over the body: any `B: From<String>` works — axum's `Body`, http-body-util's `Full`
/// and `String` itself — so the layer serves axum and plain hyper alike and needs only the
/// `http` feature. An error from the inner service's `poll_ready` (harden's own layers never
/// fail there) is kept and answered by the next `call`, so the layer's own `poll_ready` never
/// fails either.
///
/// # Example
///
/// Default use: a route behind a breaker and a bulkhead, mounted directly.
///
/// ```
/// use axum::{body::Body, http::{Request, StatusCode}, routing::get, Router};
/// use harden::bulkhead::BulkheadLayer;
/// use harden::circuit_breaker::CircuitBreaker;
/// use harden::http::ErrorResponseLayer;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), harden::BoxError> {
/// let breaker = CircuitBreaker::builder().name("reports").build()?;
/// let app = Router::new().route(
///     "/report",
///     get(|| async { "report" }).layer(
///         ServiceBuilder::new()
///             .layer(ErrorResponseLayer::new())
///             .layer(breaker.layer())
///             .layer(BulkheadLayer::new(100)),
///     ),
/// );
/// breaker.force_open();
/// let response = app.oneshot(Request::get("/report").body(Body::empty())?).await?;
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// # Ok(())
/// # }
/// ```
///
/// Customised: the same answer built by hand from an error, e.g. inside a handler that calls a
/// breaker directly, with a plain `String` body.
///
/// ```
/// use harden::http::error_response;
/// use harden::timeout::TimeoutLayer;
/// use harden::BoxError;
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), BoxError> {
/// let slow = TimeoutLayer::new(Duration::from_millis(10)).layer(service_fn(|()| async {
///     tokio::time::sleep(Duration::from_secs(1)).await;
///     Ok::<_, BoxError>(())
/// }));
/// let err = slow.oneshot(()).await.unwrap_err();
/// let response: http::Response<String> = error_response(&*err);
/// assert_eq!(response.status(), 504);
/// assert_eq!(response.body(), r#"{"statusCode":504,"message":"request timed out"}"#);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// None: the service's error type is `Infallible`.
///
/// Unlike axum's `HandleErrorLayer`, no handler has to be written and the layer works on any
/// `tower::Service` returning `http::Response`, not only inside a `Router`; unlike
/// tower-http's `CatchPanicLayer` it converts errors, not panics.
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct ErrorResponseLayer {
    _priv: (),
}

impl ErrorResponseLayer {
    /// The layer; it has no settings.
    pub const fn new() -> Self {
        ErrorResponseLayer { _priv: () }
    }
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorResponse {
            inner,
            ready_error: None,
        }
    }
}

/// The service made by [`ErrorResponseLayer`].
pub struct ErrorResponse<S> {
    inner: S,
    // An error from the inner `poll_ready`, answered by the next `call`.
    ready_error: Option<BoxError>,
}

impl<S: Clone> Clone for ErrorResponse<S> {
    fn clone(&self) -> Self {
        // A readiness error belongs to the clone that saw it.
        ErrorResponse {
            inner: self.inner.clone(),
            ready_error: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ErrorResponse<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorResponse")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> ErrorResponse<S> {
    define_inner_service_accessors!();
}

impl<S, Req, B> Service<Req> for ErrorResponse<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: From<String>,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ErrorResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => {
                self.ready_error = Some(err.into());
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.ready_error.take() {
            Some(err) => ErrorResponseFuture {
                kind: Kind::Failed { error: Some(err) },
            },
            None => ErrorResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`ErrorResponse`].
    pub struct ErrorResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Failed { error: Option<BoxError> },
    }
}

impl<F> fmt::Debug for ErrorResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorResponseFuture")
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ErrorResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: From<String>,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let err: BoxError = match self.project().kind.project() {
            KindProj::Inner { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => return Poll::Ready(Ok(response)),
                Poll::Ready(Err(err)) => err.into(),
                Poll::Pending => return Poll::Pending,
            },
            KindProj::Failed { error } => error
                .take()
                .unwrap_or_else(|| "error response polled after completion".into()),
        };
        Poll::Ready(Ok(error_response(&*err)))
    }
}

/// The HTTP answer for `err` as described in [`ErrorResponseLayer`]: status, `Retry-After`,
/// `Content-Type: application/json` and the JSON body.
pub fn error_response<B: From<String>>(err: &(dyn StdError + 'static)) -> Response<B> {
    let (status, message, retry_after) = classify(err);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %err, "unhandled error answered with 500");
    }
    json_response(status, message, retry_after)
}

/// Status, message and `Retry-After` for an error: the first harden error in its chain.
fn classify(err: &(dyn StdError + 'static)) -> (StatusCode, &'static str, Option<Duration>) {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(open) = e.downcast_ref::<CircuitOpen>() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "circuit breaker is open",
                open.retry_after(),
            );
        }
        if e.is::<BulkheadFull>() {
            return (StatusCode::SERVICE_UNAVAILABLE, "bulkhead is full", None);
        }
        if e.is::<Elapsed>() {
            return (StatusCode::GATEWAY_TIMEOUT, "request timed out", None);
        }
        if e.is::<BudgetExhausted>() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "retry budget exhausted",
                None,
            );
        }
        if let Some(too_long) = e.downcast_ref::<RetryAfterTooLong>() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream asked to retry later",
                Some(too_long.retry_after()),
            );
        }
        next = e.source();
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal server error",
        None,
    )
}

/// Whole seconds, rounded up (a client told `0` for 300 ms would retry too early).
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `{"statusCode":..,"message":..,"retryAfter":..}` with its headers. `message` is one of the
/// crate's own ASCII texts, so it needs no JSON escaping.
pub(crate) fn json_response<B: From<String>>(
    status: StatusCode,
    message: &'static str,
    retry_after: Option<Duration>,
) -> Response<B> {
    debug_assert!(!message.contains(['"', '\\']));
    let secs = retry_after.map(ceil_secs);
    let body = match secs {
        Some(secs) => format!(
            r#"{{"statusCode":{},"message":"{message}","retryAfter":{secs}}}"#,
            status.as_u16()
        ),
        None => format!(
            r#"{{"statusCode":{},"message":"{message}"}}"#,
            status.as_u16()
        ),
    };
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = secs {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;

    #[test]
    fn rounds_retry_after_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(5)), 5);
        assert_eq!(ceil_secs(Duration::from_millis(5001)), 6);
    }

    #[test]
    fn looks_through_source_chains() {
        #[derive(Debug)]
        struct Wrapper(BoxError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&*self.0)
            }
        }
        let err = Wrapper(Box::new(CircuitOpen::new(Some(Duration::from_millis(
            4200,
        )))));
        let response: Response<String> = error_response(&err);
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[RETRY_AFTER], "5");
        assert_eq!(
            response.body(),
            r#"{"statusCode":503,"message":"circuit breaker is open","retryAfter":5}"#
        );
        // The outermost harden error wins: a budget exhausted after timeouts is a 503.
        let err = BudgetExhausted::new(Box::new(Elapsed::new()));
        let response: Response<String> = error_response(&err);
        assert_eq!(response.status(), 503);
        let err = RetryAfterTooLong::new(Duration::from_millis(7500), Duration::from_secs(1));
        let response: Response<String> = error_response(&err);
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[RETRY_AFTER], "8");
        let response: Response<String> = error_response(&*BoxError::from("secret detail"));
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.body(),
            r#"{"statusCode":500,"message":"internal server error"}"#
        );
    }
}
