//! The client layer: breaker, gRFC A6 retries and deadlines around a tonic `Channel`.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use super::body::{once, GrpcBody, Kept};
use super::classify::{GrpcBreakerClassifier, Throttle};
use super::code::{headers_status, CodeSet};
use super::config::{GrpcRetryPolicy, MethodConfig, ServiceConfig};
use super::status::{status_error, PUSHBACK};
use crate::circuit_breaker::{CallPermit, CircuitBreaker, CircuitBreakerBuilder, Outcome};
use crate::deadline::{grpc_timeout_value, Deadline, DeadlineHeader, Scoped, GRPC_TIMEOUT};
use crate::timeout::error::Elapsed;
use crate::{BoxError, ConfigError};

/// Default name of the layer's breaker: `"grpc"`.
pub const DEFAULT_NAME: &str = "grpc";
/// Default most bytes of a request body kept for retries: 1 MiB (grpc-java's per-RPC buffer
/// limit). A call whose body grows past it is committed to its current attempt.
pub const DEFAULT_BUFFER_LIMIT: usize = 1 << 20;

/// Breaker, retries and deadlines for a tonic client: a layer over `tonic::transport::Channel`
/// (any tower service over `http::Request<tonic::body::Body>`); see the
/// [module docs](super).
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | service config (retries, timeouts) | none: every call is sent once, with no timeout of its own |
/// | breaker | [`HttpLayerBuilder::default_breaker`](crate::http::HttpLayerBuilder::default_breaker) named [`DEFAULT_NAME`] = `"grpc"` (10 % over 100 calls in 30 s, open 5 s) |
/// | breaker classifier | [`GrpcBreakerClassifier::new`] |
/// | `buffer_limit` | [`DEFAULT_BUFFER_LIMIT`] = 1 MiB |
#[derive(Debug, Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct GrpcLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    config: ServiceConfig,
    breaker: Option<CircuitBreaker>,
    classifier: GrpcBreakerClassifier,
    throttle: Option<Throttle>,
    buffer_limit: usize,
}

impl GrpcLayer {
    /// A builder holding the defaults.
    pub fn builder() -> GrpcLayerBuilder {
        GrpcLayerBuilder {
            config: Config::None,
            breaker: Breaker::Default,
            classifier: GrpcBreakerClassifier::new(),
            buffer_limit: DEFAULT_BUFFER_LIMIT,
        }
    }

    /// The breaker, if any.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.shared.breaker.as_ref()
    }

    /// The service config.
    pub fn service_config(&self) -> &ServiceConfig {
        &self.shared.config
    }
}

#[derive(Debug, Clone)]
enum Config {
    None,
    Parsed(ServiceConfig),
    Json(Cow<'static, str>),
}

#[derive(Debug, Clone)]
enum Breaker {
    Default,
    Builder(CircuitBreakerBuilder),
    Shared(CircuitBreaker),
    None,
}

/// Builder of a [`GrpcLayer`]; see its `# Defaults`.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct GrpcLayerBuilder {
    config: Config,
    breaker: Breaker,
    classifier: GrpcBreakerClassifier,
    buffer_limit: usize,
}

impl GrpcLayerBuilder {
    /// Retries, timeouts and throttling from a service config as JSON, read at `build()`.
    pub fn service_config_json(mut self, json: impl Into<Cow<'static, str>>) -> Self {
        self.config = Config::Json(json.into());
        self
    }

    /// Retries, timeouts and throttling from a parsed service config.
    pub fn service_config(mut self, config: ServiceConfig) -> Self {
        self.config = Config::Parsed(config);
        self
    }

    /// The breaker's settings (start from
    /// [`HttpLayerBuilder::default_breaker`](crate::http::HttpLayerBuilder::default_breaker)).
    pub fn breaker(mut self, breaker: CircuitBreakerBuilder) -> Self {
        self.breaker = Breaker::Builder(breaker);
        self
    }

    /// Share an existing breaker (e.g. one that health reports on).
    pub fn shared_breaker(mut self, breaker: &CircuitBreaker) -> Self {
        self.breaker = Breaker::Shared(breaker.clone());
        self
    }

    /// No breaker.
    pub fn no_breaker(mut self) -> Self {
        self.breaker = Breaker::None;
        self
    }

    /// How statuses count for the breaker.
    pub fn breaker_classifier(mut self, classifier: GrpcBreakerClassifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Most bytes of a request body kept so that it can be sent again; accepted [0, ∞).
    pub fn buffer_limit(mut self, bytes: usize) -> Self {
        self.buffer_limit = bytes;
        self
    }

    /// Reads the service config, builds the breaker, and returns the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`]: the service config's (naming the JSON path) or the breaker's.
    pub fn build(self) -> Result<GrpcLayer, ConfigError> {
        let config = match self.config {
            Config::None => ServiceConfig::default(),
            Config::Parsed(c) => c,
            Config::Json(json) => ServiceConfig::from_json(&json)?,
        };
        let breaker = match self.breaker {
            Breaker::Default => Some(
                crate::http::HttpLayerBuilder::default_breaker()
                    .name(DEFAULT_NAME)
                    .build()?,
            ),
            Breaker::Builder(b) => Some(b.build()?),
            Breaker::Shared(b) => Some(b),
            Breaker::None => None,
        };
        Ok(GrpcLayer {
            shared: Arc::new(Shared {
                throttle: config.retry_throttling().map(Throttle::new),
                config,
                breaker,
                classifier: self.classifier,
                buffer_limit: self.buffer_limit,
            }),
        })
    }
}

impl<S> Layer<S> for GrpcLayer {
    type Service = GrpcClient<S>;

    fn layer(&self, inner: S) -> GrpcClient<S> {
        GrpcClient {
            inner,
            spare: Arc::default(),
            shared: self.shared.clone(),
        }
    }
}

/// The service of a [`GrpcLayer`]; give it to a generated client (`GreeterClient::new(..)`).
#[derive(Debug, Clone)]
pub struct GrpcClient<S> {
    inner: S,
    /// A clone of `inner` for the later attempts of calls that may be retried, made at the
    /// first such call and shared with this client's clones: a call holds a refcount to it
    /// rather than a clone of `inner`.
    spare: Arc<OnceLock<Arc<Mutex<S>>>>,
    shared: Arc<Shared>,
}

impl<S> GrpcClient<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably; later attempts go through a clone of it as changed.
    pub fn get_mut(&mut self) -> &mut S {
        self.spare = Arc::default();
        &mut self.inner
    }

    /// The wrapped service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

type Boxed<B> = Pin<Box<dyn Future<Output = Result<Response<GrpcBody<B>>, BoxError>> + Send>>;

/// The response future of [`GrpcClient`].
pub struct ResponseFuture<B> {
    inner: Boxed<B>,
}

impl<B> std::fmt::Debug for ResponseFuture<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<B: Send + 'static> ResponseFuture<B> {
    fn error(error: BoxError) -> Self {
        ResponseFuture {
            inner: Box::pin(std::future::ready(Err(error))),
        }
    }
}

impl<B> Future for ResponseFuture<B> {
    type Output = Result<Response<GrpcBody<B>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, B> Service<Request<tonic::body::Body>> for GrpcClient<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<GrpcBody<B>>;
    type Error = BoxError;
    type Future = ResponseFuture<B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> ResponseFuture<B> {
        // The call's span (as the retry layer's): the attempts' events, and what the layers
        // below log while an attempt runs, are its children.
        let span = tracing::debug_span!(target: "harden::tonic", "retry", method = %request.uri().path(), attempts = tracing::field::Empty);
        let shared = self.shared.clone();
        let method = shared.config.method(request.uri().path());
        // The call's deadline: the shortest of the method's timeout, the one tonic's caller set
        // (`Request::set_timeout` writes `grpc-timeout`), and the deadline in scope. One clock
        // read serves the check and the first attempt's `grpc-timeout`.
        let now = tokio::time::Instant::now();
        let own = [
            method.and_then(MethodConfig::timeout),
            DeadlineHeader::GrpcTimeout.read(request.headers()),
        ]
        .into_iter()
        .flatten()
        .min()
        .and_then(|timeout| now.checked_add(timeout))
        .map(Deadline::at);
        let deadline = match (own, Deadline::current()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if deadline.is_some_and(|d| d.instant() <= now) {
            return ResponseFuture::error(status_error(&Elapsed::new()));
        }
        let policy = method.and_then(|m| m.retry_policy().cloned());
        let permit = match &shared.breaker {
            None => None,
            Some(breaker) => match breaker.try_acquire() {
                Ok(permit) => Some(permit),
                Err(open) => return ResponseFuture::error(status_error(&open)),
            },
        };
        let retryable = policy.as_ref().map_or(CodeSet::default(), |p| p.retryable);
        let settle = Settle {
            shared: shared.clone(),
            permit,
            retryable,
        };
        // Only a call that may be retried keeps its body, its headers and a service for later
        // attempts; the service driven to readiness makes the first.
        let (mut request, replay) = match &policy {
            None => (request.map(once), None),
            Some(_) => {
                let (parts, body) = request.into_parts();
                let (body, kept) = Kept::new(body, shared.buffer_limit);
                let first = rebuild(&parts, body);
                let spare = self
                    .spare
                    .get_or_init(|| Arc::new(Mutex::new(self.inner.clone())));
                let replay = Replay {
                    parts,
                    body: kept,
                    spare: spare.clone(),
                    service: None,
                };
                (first, Some(replay))
            }
        };
        let first = match deadline {
            None => self.inner.call(request),
            Some(deadline) => {
                // No shorter `grpc-timeout` can be there: the deadline counted the caller's.
                request.headers_mut().insert(
                    GRPC_TIMEOUT,
                    grpc_timeout_value(deadline.instant().saturating_duration_since(now)),
                );
                deadline.sync_scope(|| self.inner.call(request))
            }
        };
        let attempts = attempts(first, settle, replay, shared, policy);
        ResponseFuture {
            inner: match deadline {
                None => Box::pin(attempts.instrument(span)),
                Some(deadline) => Box::pin(Within::new(deadline, attempts).instrument(span)),
            },
        }
    }
}

/// What a call that may be retried keeps for its later attempts.
struct Replay<S> {
    parts: http::request::Parts,
    body: Kept,
    spare: Arc<Mutex<S>>,
    /// The spare's clone the retries are sent through, made at the first retry.
    service: Option<S>,
}

/// Holds an attempt's breaker permit until its outcome is known; dropped unsettled (a
/// cancelled call), the permit is freed without counting anything.
pub(crate) struct Settle {
    shared: Arc<Shared>,
    permit: Option<CallPermit>,
    retryable: CodeSet,
}

impl Settle {
    /// Counts the attempt's status for the breaker and the throttle.
    pub(crate) fn finish(mut self, code: i32) {
        if let Some(permit) = self.permit.take() {
            permit.finish(self.shared.classifier.outcome_of(code));
        }
        if let Some(throttle) = &self.shared.throttle {
            if code == 0 {
                throttle.succeed();
            } else if self.retryable.contains(code) {
                throttle.fail();
            }
        }
    }

    /// Counts a transport error.
    fn fail(mut self) {
        if let Some(permit) = self.permit.take() {
            permit.finish(Outcome::Failure);
        }
        if let Some(throttle) = &self.shared.throttle {
            if self.retryable.contains(tonic::Code::Unavailable as i32) {
                throttle.fail();
            }
        }
    }
}

/// What `grpc-retry-pushback-ms` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushback {
    /// Retry after this delay, instead of the backoff.
    After(Duration),
    /// Do not retry (a negative or malformed value).
    Stop,
}

/// Reads `grpc-retry-pushback-ms`: an ASCII signed 32-bit integer without needless leading
/// zeros (gRFC A6); anything else means "do not retry".
fn pushback(headers: &http::HeaderMap) -> Option<Pushback> {
    let value = headers.get(PUSHBACK)?.as_bytes();
    let text = std::str::from_utf8(value).ok();
    let well_formed = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
    };
    Some(
        match text
            .filter(|s| well_formed(s))
            .and_then(|s| s.parse::<i32>().ok())
        {
            Some(ms) if ms >= 0 => Pushback::After(Duration::from_millis(ms as u64)),
            _ => Pushback::Stop,
        },
    )
}

/// A random duration in `[0, bound)`.
fn random_below(bound: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let nanos = bound.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nanos);
    Duration::from_nanos(h.finish() % nanos)
}

fn rebuild(parts: &http::request::Parts, body: tonic::body::Body) -> Request<tonic::body::Body> {
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request
}

pin_project_lite::pin_project! {
    /// Attempts run with the call's deadline as the one in scope, and ended there; a named
    /// future, so the attempts are moved once into the box rather than again at the first poll.
    struct Within<F> {
        #[pin]
        inner: tokio::time::Timeout<Scoped<F>>,
        deadline: Deadline,
    }
}

impl<F> Within<F>
where
    F: Future,
{
    fn new(deadline: Deadline, attempts: F) -> Self {
        Within {
            inner: tokio::time::timeout_at(deadline.instant(), deadline.scope(attempts)),
            deadline,
        }
    }
}

impl<F, B> Future for Within<F>
where
    F: Future<Output = Result<Response<GrpcBody<B>>, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let deadline = *this.deadline;
        Poll::Ready(match std::task::ready!(this.inner.poll(cx)) {
            // A failure that arrives with the deadline (the server's own timer, started a
            // little later, may answer in the same instant) is the deadline's.
            Ok(Ok(response)) if failed(&response) && deadline.is_expired() => {
                Err(status_error(&Elapsed::new()))
            }
            Ok(Err(_)) if deadline.is_expired() => Err(status_error(&Elapsed::new())),
            Ok(result) => result,
            Err(_) => Err(status_error(&Elapsed::new())),
        })
    }
}

/// Whether an answer is a trailers-only failure.
fn failed<B>(response: &Response<B>) -> bool {
    headers_status(response).is_some_and(|code| code != 0)
}

/// `response` with the number of attempts it took in its extensions when it took more than
/// one (absent: one attempt).
fn counted<B>(mut response: Response<B>, attempts: u32) -> Response<B> {
    if attempts > 1 {
        response
            .extensions_mut()
            .insert(crate::retry::Attempts(attempts));
    }
    response
}

/// The debug event of one attempt (as the retry layer's): its gRPC status (`None` for a stream
/// that started without one), and the delay before the next attempt and why, or why the call
/// ends there.
fn attempt_event(
    attempt: u32,
    grpc_status: Option<i32>,
    reason: &'static str,
    delay: Option<Duration>,
) {
    tracing::debug!(target: "harden::tonic", attempt, ?grpc_status, reason, ?delay, "grpc attempt");
    if delay.is_none() {
        // The call's last attempt: its span records how many there were.
        let span = tracing::Span::current();
        if span
            .metadata()
            .is_some_and(|m| m.target() == "harden::tonic")
        {
            span.record("attempts", attempt);
        }
    }
}

/// The first attempt (already sent), then the retries its policy allows.
async fn attempts<S, B>(
    first: S::Future,
    settle: Settle,
    mut replay: Option<Replay<S>>,
    shared: Arc<Shared>,
    policy: Option<GrpcRetryPolicy>,
) -> Result<Response<GrpcBody<B>>, BoxError>
where
    S: Service<Request<tonic::body::Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    let retryable = settle.retryable;
    let mut pending = first;
    let mut settle = settle;
    let mut attempt = 1u32;
    let mut backoff = policy
        .as_ref()
        .map_or(Duration::ZERO, |p| p.initial_backoff);
    loop {
        let result: Result<_, BoxError> = pending.await.map_err(Into::into);
        let (code, push, outcome) = match result {
            Err(e) => {
                settle.fail();
                (tonic::Code::Unavailable as i32, None, Err(e))
            }
            Ok(response) => match headers_status(&response) {
                // Response headers without a status: a stream is starting, the call is
                // committed; the breaker judges it when its status arrives.
                None => {
                    attempt_event(attempt, None, "committed", None);
                    return Ok(counted(
                        response.map(|b| GrpcBody::new(b, Some(settle))),
                        attempt,
                    ));
                }
                Some(code) => {
                    settle.finish(code);
                    let push = pushback(response.headers());
                    if push == Some(Pushback::Stop) && !retryable.contains(code) {
                        // Pushback saying "do not retry" counts as a failure for the throttle.
                        if let Some(t) = &shared.throttle {
                            t.fail();
                        }
                    }
                    (code, push, Ok(response.map(|b| GrpcBody::new(b, None))))
                }
            },
        };
        let (Some(policy), Some(replay)) = (&policy, &mut replay) else {
            attempt_event(attempt, Some(code), "done", None);
            return outcome.map(|r| counted(r, attempt));
        };
        let ends = if code == 0 || !retryable.contains(code) {
            Some("done")
        } else if attempt >= policy.max_attempts {
            Some("attempts exhausted")
        } else if push == Some(Pushback::Stop) {
            Some("pushback")
        } else if !shared.throttle.as_ref().is_none_or(Throttle::allows_retry) {
            Some("throttled")
        } else if !replay.body.replayable() {
            Some("not replayable")
        } else {
            None
        };
        if let Some(reason) = ends {
            attempt_event(attempt, Some(code), reason, None);
            return outcome.map(|r| counted(r, attempt));
        }
        let (delay, why) = match push {
            Some(Pushback::After(d)) => {
                backoff = policy.initial_backoff;
                (d, "pushback")
            }
            _ => {
                let d = random_below(backoff);
                backoff = backoff
                    .mul_f64(policy.backoff_multiplier)
                    .min(policy.max_backoff);
                (d, "backoff")
            }
        };
        // Never wait past the deadline: the last answer now, not at the deadline.
        if Deadline::current().is_some_and(|d| delay >= d.remaining()) {
            attempt_event(attempt, Some(code), "deadline", None);
            return outcome.map(|r| counted(r, attempt));
        }
        attempt_event(attempt, Some(code), why, Some(delay));
        drop(outcome);
        tokio::time::sleep(delay).await;

        attempt += 1;
        let permit = match &shared.breaker {
            None => None,
            Some(breaker) => match breaker.try_acquire() {
                Ok(permit) => Some(permit),
                Err(open) => return Err(status_error(&open)),
            },
        };
        settle = Settle {
            shared: shared.clone(),
            permit,
            retryable,
        };
        let mut request = rebuild(&replay.parts, replay.body.attempt());
        if let Some(deadline) = Deadline::current() {
            DeadlineHeader::GrpcTimeout.write(request.headers_mut(), deadline.remaining());
        }
        request
            .headers_mut()
            .insert("grpc-previous-rpc-attempts", HeaderValue::from(attempt - 1));
        let service = match &mut replay.service {
            Some(service) => service,
            None => {
                let spare = replay.spare.lock().unwrap_or_else(PoisonError::into_inner);
                replay.service.insert(spare.clone())
            }
        };
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        pending = service.call(request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(value: &'static str) -> Option<Pushback> {
        let mut headers = http::HeaderMap::new();
        headers.insert(PUSHBACK, HeaderValue::from_static(value));
        pushback(&headers)
    }

    #[test]
    fn pushback_values() {
        assert_eq!(push("0"), Some(Pushback::After(Duration::ZERO)));
        assert_eq!(
            push("250"),
            Some(Pushback::After(Duration::from_millis(250)))
        );
        for stop in ["-1", "", "abc", "007", "1.5", " 5", "2147483648", "-"] {
            assert_eq!(push(stop), Some(Pushback::Stop), "{stop:?}");
        }
        assert_eq!(pushback(&http::HeaderMap::new()), None);
    }

    #[test]
    fn random_backoff_stays_below_its_bound() {
        for _ in 0..1000 {
            assert!(random_below(Duration::from_millis(10)) < Duration::from_millis(10));
        }
        assert_eq!(random_below(Duration::ZERO), Duration::ZERO);
    }
}
