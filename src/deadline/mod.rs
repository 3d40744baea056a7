//! Deadlines that cross services (feature `http`): one mechanism, two wire formats.
//!
//! A server reads the deadline its caller sent — gRPC's `grpc-timeout`, or for plain HTTP a
//! header of milliseconds — with [`DeadlineLayer`], answers `504 Gateway Timeout` (or, for a
//! gRPC request, `DEADLINE_EXCEEDED`) when it passes, and runs the handler inside a scope where
//! [`Deadline::current`] is that deadline (also in the request's extensions, for axum's
//! `Extension<Deadline>`). harden's clients called from there read it: the HTTP preset
//! ([`HttpLayer`](crate::http::HttpLayer)) ends the whole call at the deadline (its retry does
//! what a [`DeadlineCapLayer`] around it would) and sends what is left of it to the next
//! service, per attempt ([`PropagateDeadlineLayer`]); the retry never backs off or honours a
//! `Retry-After` past it.
//! A deadline only ever shortens: a nested scope, an incoming header or a local timeout can
//! make it earlier, never later.
//!
//! The HTTP header is [`ENVOY_EXPECTED_RQ_TIMEOUT_MS`] by default: Envoy (and so Istio) sets it on
//! every request it routes to a service, with the time its router will wait, so a service behind
//! a sidecar receives its budget without any change upstream; and when harden sends it on, an
//! egress Envoy configured with `respect_expected_rq_timeout` honours it. Any other header of
//! milliseconds can be chosen.
//!
//! Values that cannot be read — a sign, a fraction, spaces, more than 8 digits, a wrong
//! unit — are ignored, as if absent: never an error, never a panic. A deadline too far away to
//! represent is ignored too, and none is ever longer than a local timeout set on the layer.
//!
//! # Default
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use harden::deadline::{Deadline, DeadlineLayer};
//!
//! // A handler sees what is left of its caller's budget.
//! async fn report() -> String {
//!     let left = Deadline::current().map(|d| d.remaining());
//!     format!("{left:?}")
//! }
//! let app: Router = Router::new().route("/report", get(report)).layer(DeadlineLayer::new());
//! # let _ = app;
//! ```
//!
//! # Customised
//!
//! ```
//! use std::time::Duration;
//! use harden::deadline::DeadlineLayer;
//! use http::HeaderName;
//!
//! let layer = DeadlineLayer::builder()
//!     .header(HeaderName::from_static("x-request-timeout-ms"))
//!     .grpc_timeout(false)
//!     .timeout(Duration::from_secs(10)) // no request runs longer, whatever it asks
//!     .build()?;
//! # let _ = layer;
//! # Ok::<(), harden::ConfigError>(())
//! ```
//!
//! # Errors
//!
//! [`DeadlineLayer`] never fails a request itself: a passed deadline is an answer (504 with
//! harden's JSON body, or a trailers-only gRPC answer with `grpc-status: 4`). On the client side,
//! a call whose deadline passes fails with [`Elapsed`](crate::timeout::error::Elapsed), the
//! error of a timeout, which `harden::http`'s error answers turn into a 504.
//!
//! # Compared with tonic and Envoy
//!
//! tonic's server reads `grpc-timeout` and enforces it, but hands the handler nothing, and its
//! client does not send one; Envoy enforces its own route timeouts but cannot know what the
//! service behind it spends before calling further. Here the budget follows the work: every
//! harden client below a handler is bounded by what its caller has left.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::ConfigError;

pub mod client;
pub mod future;
mod wire;

pub use client::{
    DeadlineCap, DeadlineCapLayer, DeadlineRequest, PropagateDeadline, PropagateDeadlineLayer,
};
pub use wire::{
    grpc_timeout_value, millis_value, parse_grpc_timeout, parse_millis, DeadlineHeader,
    ENVOY_EXPECTED_RQ_TIMEOUT_MS, GRPC_TIMEOUT,
};

/// Default HTTP header [`DeadlineLayer`] reads: [`ENVOY_EXPECTED_RQ_TIMEOUT_MS`].
pub const DEFAULT_HEADER: HeaderName = ENVOY_EXPECTED_RQ_TIMEOUT_MS;

std::thread_local! {
    /// The deadline of the future being polled on this thread, set around each poll of a
    /// scope's future and put back after (what a tokio task-local does, without its `RefCell`).
    static CURRENT: Cell<Option<Deadline>> = const { Cell::new(None) };
}

/// A point in time by which the work must be done; `Copy`, read on tokio's clock (so
/// `tokio::time::pause` moves it in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline `timeout` from now; `None` when it is too far away to represent.
    pub fn after(timeout: Duration) -> Option<Deadline> {
        Instant::now().checked_add(timeout).map(Deadline::at)
    }

    /// The deadline at `instant`.
    pub fn at(instant: Instant) -> Deadline {
        Deadline { at: instant }
    }

    /// When it passes.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn is_expired(&self) -> bool {
        self.at <= Instant::now()
    }

    /// The deadline of the work being done: set by [`DeadlineLayer`] around a handler, or by
    /// [`scope`](Self::scope). `None` outside any scope (and on a task spawned from one: pass
    /// the deadline along with [`scope`](Self::scope)).
    pub fn current() -> Option<Deadline> {
        CURRENT.try_with(Cell::get).ok().flatten()
    }

    /// Runs `future` with this deadline as [`current`](Self::current), or with the current one
    /// if that is earlier (a deadline only shortens; judged each time the future is polled).
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            deadline: self,
            inner: future,
        }
    }

    /// Runs `f` with this deadline, or the current one if that is earlier, as current.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        /// Puts the outer deadline back when `f` returns or unwinds.
        struct Restore(Option<Deadline>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let _ = CURRENT.try_with(|current| current.set(self.0));
            }
        }
        let outer = CURRENT.try_with(|current| {
            let outer = current.get();
            current.set(Some(outer.map_or(self, |outer| outer.min(self))));
            outer
        });
        match outer {
            Ok(outer) => {
                let _restore = Restore(outer);
                f()
            }
            // The thread is exiting: no scope to set.
            Err(_) => f(),
        }
    }
}

pin_project! {
    /// A future running inside a deadline's scope; see [`Deadline::scope`].
    pub struct Scoped<F> {
        deadline: Deadline,
        #[pin]
        inner: F,
    }
}

impl<F> std::fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let inner = this.inner;
        this.deadline.sync_scope(|| inner.poll(cx))
    }
}

/// What a [`DeadlineLayer`] reads, shared by its services.
#[derive(Debug)]
struct Config {
    header: Option<DeadlineHeader>,
    grpc_timeout: bool,
    timeout: Option<Duration>,
}

impl Config {
    /// The timeout this request gets: the shortest of the readable incoming ones and the local one.
    fn timeout(&self, headers: &http::HeaderMap) -> Option<Duration> {
        let grpc = self
            .grpc_timeout
            .then(|| DeadlineHeader::GrpcTimeout.read(headers))
            .flatten();
        let http = self.header.as_ref().and_then(|h| h.read(headers));
        [grpc, http, self.timeout].into_iter().flatten().min()
    }
}

/// Reads, enforces and scopes the incoming deadline of each request; see the
/// [module docs](self).
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | `header` (HTTP, milliseconds) | [`DEFAULT_HEADER`] = `x-envoy-expected-rq-timeout-ms` |
/// | `grpc_timeout` (read `grpc-timeout`) | on |
/// | `timeout` (local bound on every request) | none |
#[derive(Debug, Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct DeadlineLayer {
    config: Arc<Config>,
}

impl Default for DeadlineLayer {
    fn default() -> Self {
        DeadlineLayer::new()
    }
}

impl DeadlineLayer {
    /// The layer on its defaults.
    pub fn new() -> DeadlineLayer {
        DeadlineLayer::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }

    /// A builder holding the defaults.
    pub fn builder() -> DeadlineLayerBuilder {
        DeadlineLayerBuilder {
            header: Some(DEFAULT_HEADER),
            grpc_timeout: true,
            timeout: None,
        }
    }
}

/// Builder of a [`DeadlineLayer`]; see its `# Defaults`.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct DeadlineLayerBuilder {
    header: Option<HeaderName>,
    grpc_timeout: bool,
    timeout: Option<Duration>,
}

impl DeadlineLayerBuilder {
    /// The HTTP header carrying the caller's timeout in whole milliseconds.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = Some(name);
        self
    }

    /// Read no HTTP header (only `grpc-timeout`, if on).
    pub fn no_header(mut self) -> Self {
        self.header = None;
        self
    }

    /// Whether `grpc-timeout` is read.
    pub fn grpc_timeout(mut self, on: bool) -> Self {
        self.grpc_timeout = on;
        self
    }

    /// A local bound on every request, whatever its caller sent; accepted (0, ∞).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a zero `timeout`.
    pub fn build(self) -> Result<DeadlineLayer, ConfigError> {
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new("timeout", "0 is outside (0, ∞)"));
        }
        Ok(DeadlineLayer {
            config: Arc::new(Config {
                header: self.header.map(DeadlineHeader::Millis),
                grpc_timeout: self.grpc_timeout,
                timeout: self.timeout,
            }),
        })
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> DeadlineService<S> {
        DeadlineService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of a [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> DeadlineService<S> {
    define_inner_service_accessors!();
}

/// Whether a request speaks gRPC (its answers carry a status, not an HTTP error).
pub(crate) fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The answer to a request whose deadline passed.
pub(crate) fn deadline_exceeded<B: From<String>>(grpc: bool) -> Response<B> {
    if !grpc {
        return crate::http::error_response(&crate::timeout::error::Elapsed::new());
    }
    // A trailers-only gRPC answer: the status travels in the headers.
    let mut response = Response::new(B::from(String::new()));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static("4"));
    headers.insert(
        "grpc-message",
        HeaderValue::from_static("deadline exceeded"),
    );
    response
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for DeadlineService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let local = self
            .config
            .timeout(request.headers())
            .and_then(Deadline::after);
        let deadline = match (local, Deadline::current()) {
            (Some(d), Some(outer)) => Some(d.min(outer)),
            (d, outer) => d.or(outer),
        };
        let Some(deadline) = deadline else {
            return future::ResponseFuture::plain(self.inner.call(request));
        };
        let grpc = is_grpc(&request);
        if deadline.is_expired() {
            return future::ResponseFuture::expired(grpc);
        }
        request.extensions_mut().insert(deadline);
        let inner = deadline.sync_scope(|| self.inner.call(request));
        let inner = deadline.scope(inner);
        future::ResponseFuture::bounded(inner, deadline, grpc)
    }
}

#[cfg(test)]
mod tests;
