//! The layer `serve` puts around the application: counts requests in flight (until their
//! response body is finished) and refuses new ones once the sequence is refusing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::state::{InFlightGuard, Shared};
use crate::http::json_response;

/// Counts requests in flight for the shutdown sequence and, once it is refusing, answers new
/// requests with 503 + `Connection: close` + `Retry-After` and the JSON body
/// `{"statusCode":503,"message":"server is shutting down","retryAfter":5}` (the exempt paths,
/// the health probes by default, are still served). From the trigger on, every HTTP/1
/// response carries `Connection: close`.
///
/// [`Shutdown::serve`](super::Shutdown::serve) puts it around the application itself; made by
/// [`ShutdownHandle::layer`](super::ShutdownHandle::layer) for an application served by its own
/// loop, with [`Shutdown::run`](super::Shutdown::run) running the sequence (see the
/// [module docs](super#with-your-own-server) for what only `serve` can do).
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct ShutdownLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for ShutdownLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownLayer")
            .field("phase", &*self.shared.phase.borrow())
            .finish_non_exhaustive()
    }
}

impl ShutdownLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ShutdownLayer { shared }
    }
}

impl<S> Layer<S> for ShutdownLayer {
    type Service = ShutdownService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ShutdownService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`ShutdownLayer`].
#[derive(Clone)]
pub struct ShutdownService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ShutdownService<S> {
    define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for ShutdownService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for ShutdownService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let exempt = || {
            let path = req.uri().path();
            shared.exempt_paths.iter().any(|p| p == path)
        };
        // HTTP/2 has no `Connection` header: its connection gets a GOAWAY instead.
        let http1 = req.version() <= Version::HTTP_11;
        match shared.enter(exempt) {
            Some(guard) => ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                    guard: Some(guard),
                    http1,
                },
            },
            None => ResponseFuture {
                kind: Kind::Refused {
                    shared: Some(Arc::clone(&self.shared)),
                    http1,
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`ShutdownService`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F, guard: Option<InFlightGuard>, http1: bool },
        Refused { shared: Option<Arc<Shared>>, http1: bool },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner {
                future,
                guard,
                http1,
            } => {
                let mut response = match future.poll(cx) {
                    Poll::Ready(Ok(response)) => response,
                    other => return other,
                };
                let Some(guard) = guard.take() else {
                    return Poll::Ready(Ok(response));
                };
                if *http1 && guard.shared().is_shutting_down() {
                    close_connection(&mut response);
                }
                Poll::Ready(Ok(response.map(|inner| {
                    Body::new(TrackedBody {
                        inner,
                        guard: Some(guard),
                    })
                })))
            }
            KindProj::Refused { shared, http1 } => {
                let retry_after = shared.take().map(|s| s.retry_after);
                let mut response = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server is shutting down",
                    retry_after,
                );
                if *http1 {
                    close_connection(&mut response);
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

fn close_connection<B>(response: &mut Response<B>) {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

/// A response body that keeps its request counted in flight until it ends or is dropped.
struct TrackedBody {
    // axum's `Body` is a pinned box, so `Unpin`: no projection needed.
    inner: Body,
    guard: Option<InFlightGuard>,
}

impl HttpBody for TrackedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            if let Some(guard) = this.guard.take() {
                guard.finish();
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        // hyper may stop at `is_end_stream` without polling the last `None`: a body that says
        // it has ended was delivered.
        if self.inner.is_end_stream() {
            if let Some(guard) = self.guard.take() {
                guard.finish();
            }
        }
    }
}
