//! A `reqwest::Client` behind the stack (feature `reqwest`).
//!
//! Three ways in, from the most to the least convenient. [`Client`] wraps a `reqwest::Client`
//! in one line and keeps reqwest's request-builder feel (`client.get(url).json(&x).send()`):
//! the [HTTP preset](crate::http::HttpLayerBuilder) (HTTP classification, retries with `Retry-After`,
//! idempotency and a budget, total and attempt timeouts) with a circuit breaker and a bulkhead
//! *per authority* (scheme, host, port), so one sick host does not open the circuit for the
//! others, and errors ([`Error`]) that say which layer stopped a request and why. [`HttpLayer::builder`](crate::http::HttpLayer::builder)
//! is the same stack as a `tower::Layer` around a `reqwest::Client`, which already is a
//! `tower::Service<reqwest::Request>`; any other harden stack applies to it the same way.
//!
//! reqwest (0.12.23+) has retries of its own; by default they only resend HTTP/2 requests the
//! server refused unprocessed (REFUSED_STREAM), but a client configured with
//! `ClientBuilder::retry` would multiply with harden's attempts. [`client_builder`] and
//! [`ClientBuilder::reqwest`] turn reqwest's retries off (`reqwest::retry::never()`); a
//! `reqwest::Client` passed in ready-made is trusted to have none.
//!
//! # Default
//!
//! ```
//! # use axum::{http::StatusCode, routing::get, Router};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), harden::BoxError> {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let base = format!("http://{}", listener.local_addr()?);
//! # let app = Router::new().route("/stock", get(|| async { "42" }));
//! # tokio::spawn(async move { axum::serve(listener, app).await });
//! let client = harden::reqwest::Client::new(reqwest::Client::new());
//!
//! let response = client.get(format!("{base}/stock")).send().await?;
//! assert_eq!(response.text().await?, "42");
//! # Ok(())
//! # }
//! ```
//!
//! # Customised
//!
//! ```no_run
//! use std::time::Duration;
//! use harden::http::{HttpLayer, HttpLayerBuilder};
//! use harden::reqwest::{Client, ErrorKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), harden::BoxError> {
//! let client = Client::builder()
//!     // reqwest's own settings; harden turns reqwest's retries off.
//!     .reqwest(reqwest::Client::builder().pool_max_idle_per_host(8))
//!     .preset(
//!         HttpLayer::builder()
//!             .name("payments")
//!             .total_timeout(Duration::from_secs(5))
//!             .attempt_timeout(Duration::from_secs(1))
//!             .max_attempts(3)
//!             .breaker(HttpLayerBuilder::default_breaker().volume_threshold(20))
//!             .bulkhead(64),
//!     )
//!     .max_authorities(256)
//!     .build()?;
//!
//! let charge = serde_json::json!({ "amount": 100 });
//! match client
//!     .post("https://payments.internal/charges")
//!     .idempotency_key("order-1234") // a POST is retried only with a key
//!     .json(&charge)
//!     .send()
//!     .await
//! {
//!     Ok(response) => println!("{}", response.status()),
//!     Err(e) if e.kind() == ErrorKind::CircuitOpen => println!("{e}; try in {:?}", e.retry_after()),
//!     Err(e) => println!("{e}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! [`Client`] returns [`Error`], whose [`kind`](Error::kind) names the layer: an open circuit
//! or a full bulkhead (request not sent; [`retry_after`](Error::retry_after) is the time to the
//! next probe), the total or the attempt timeout, an exhausted retry budget, a `Retry-After`
//! beyond the total timeout (carrying the server's delay), or reqwest's own error. A 5xx is a
//! response, not an error (use `error_for_status` if it should be one). [`ClientBuilder::build`]
//! returns a [`ConfigError`] for bad settings. The tower path ([`HttpLayer`]) returns
//! [`BoxError`] as every harden stack does.
//!
//! # Compared with reqwest-middleware + reqwest-retry
//!
//! Those retry a POST, ignore `Retry-After`, have no budget and no breaker, and fail a request
//! whose body is a stream even on its first attempt. Here a request is retried only when its
//! method is idempotent or it carries an `Idempotency-Key`, a stream is sent once and its real
//! response returned, `Retry-After` is honoured within a cap and the deadline, a budget bounds
//! the extra load, and breakers are kept per authority. The map of authorities is written by
//! hand (a `RwLock`ed hash map, bounded, idle entries swept; see the `keyed` source) because
//! none of the caching crates evicts by both size and idleness without a background task.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tower_service::Service;

use crate::circuit_breaker::CircuitBreaker;
use crate::deadline::{Deadline, PropagateDeadlineLayer};
use crate::http::{HttpLayer, HttpLayerBuilder, HttpReplay, HttpRetryClassifier, IDEMPOTENCY_KEY};
use crate::retry::{RetryBudget, RetryPolicy};
use crate::stack::{BoxErrors, OptionalTimeoutLayer, ATTEMPT_TIMEOUT_NAME, TOTAL_TIMEOUT_NAME};
use crate::timeout::error::Elapsed;
use crate::timeout::TimeoutLayer;
use crate::{BoxError, ConfigError};

#[cfg(feature = "chaos")]
mod chaos;
mod error;
mod keyed;

pub use error::{Error, ErrorKind};
pub use keyed::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_AUTHORITIES, DEFAULT_MAX_LABELED_AUTHORITIES};

use keyed::{Entry, Keys};

/// `reqwest::Client::builder()` with reqwest's own retries off, so that they never multiply
/// with harden's. The HTTP preset applies as a `tower::Layer` around the client it builds:
///
/// ```
/// use tower::{Layer, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), harden::BoxError> {
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let url = format!("http://{}/", listener.local_addr()?);
/// # tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/", axum::routing::get(|| async { "ok" }))).await });
/// let layer = harden::http::HttpLayer::builder().build()?;
/// let breaker = layer.breaker().clone();
/// let client = layer.layer(harden::reqwest::client_builder().build()?);
/// let response = client.oneshot(reqwest::Request::new(reqwest::Method::GET, url.parse()?)).await?;
/// assert!(response.status().is_success());
/// assert_eq!(breaker.stats().successes, 1);
/// # Ok(())
/// # }
/// ```
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().retry(reqwest::retry::never())
}

struct Inner {
    http: reqwest::Client,
    /// The retry, composed per request above the authority's service; it enforces the total
    /// timeout.
    policy: RetryPolicy<HttpRetryClassifier, HttpReplay>,
    keys: Arc<Keys>,
    total_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    budget: Option<RetryBudget>,
}

/// A resilient HTTP client: a `reqwest::Client` behind the HTTP preset, with breakers and
/// bulkheads per authority. A cheap `Clone` handle; clones share everything. See the
/// [module docs](self).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authorities", &self.authorities())
            .field("total_timeout", &self.inner.total_timeout)
            .field("attempt_timeout", &self.inner.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `http` behind the HTTP preset on its defaults. `http` is trusted to have no retries of
    /// its own (reqwest's default retries only unprocessed HTTP/2 requests); build it with
    /// [`client_builder`] to be sure, or use [`ClientBuilder::reqwest`].
    pub fn new(http: reqwest::Client) -> Client {
        Client::builder()
            .client(http)
            .build()
            .unwrap_or_else(|_| unreachable!("the default preset is valid"))
    }

    /// A builder holding the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            preset: HttpLayer::builder(),
            http: Http::Default,
            max_authorities: DEFAULT_MAX_AUTHORITIES,
            max_labels: DEFAULT_MAX_LABELED_AUTHORITIES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            registry: None,
        }
    }

    /// Start a request.
    ///
    /// While the breaker of the URL's authority rejects, nothing is built: the URL is kept as
    /// given (its authority read, not parsed in full) until a builder method needs the request,
    /// and [`send`](RequestBuilder::send) answers [`ErrorKind::CircuitOpen`] unless the breaker
    /// admits the request by then.
    pub fn request(&self, method: reqwest::Method, url: impl reqwest::IntoUrl) -> RequestBuilder {
        let Some((scheme, host, port)) = keyed::plain_authority(url.as_str()) else {
            // Only the full parse reads this URL: reqwest's builder does it.
            return RequestBuilder {
                client: self.clone(),
                inner: Pending::Built {
                    builder: self.inner.http.request(method, url),
                    entry: None,
                },
            };
        };
        let entry = self.inner.keys.find_unparsed(scheme, host, port);
        if let Some(entry) = entry.as_ref().filter(|e| {
            !e.breaker()
                .core()
                .admits_with(|| e.breaker().core().clock.now())
        }) {
            return RequestBuilder {
                client: self.clone(),
                inner: Pending::Unbuilt {
                    method,
                    url: url.as_str().into(),
                    entry: entry.clone(),
                },
            };
        }
        // A URL in the plain form has no user info, the one thing reqwest's builder would move
        // out of it (into an `Authorization` header): the request is made as reqwest makes it.
        let inner = match url.into_url() {
            Ok(url) => Pending::Request {
                request: reqwest::Request::new(method, url),
                entry,
            },
            Err(e) => Pending::Failed(e),
        };
        RequestBuilder {
            client: self.clone(),
            inner,
        }
    }

    /// Start a GET.
    pub fn get(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::GET, url)
    }

    /// Start a POST (retried only with an `Idempotency-Key`).
    pub fn post(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::POST, url)
    }

    /// Start a PUT.
    pub fn put(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::PUT, url)
    }

    /// Start a PATCH (retried only with an `Idempotency-Key`).
    pub fn patch(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::PATCH, url)
    }

    /// Start a DELETE.
    pub fn delete(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::DELETE, url)
    }

    /// Start a HEAD.
    pub fn head(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(reqwest::Method::HEAD, url)
    }

    /// Send a request through the stack.
    ///
    /// # Errors
    ///
    /// [`Error`], naming the layer that stopped the request.
    pub async fn execute(&self, request: reqwest::Request) -> Result<reqwest::Response, Error> {
        // Every attempt of a request goes to one authority: look it up once.
        let entry = self.inner.keys.entry(request.url());
        Client::send_to(self, Ok((entry, request))).await
    }

    /// The answer to a request while `entry`'s breaker rejects, or `None` if it admits one:
    /// what the stack would answer (the budget counts the request, the retry records it, the
    /// breaker counts its rejection), without a copy of the request, a retry or a clock read
    /// for a total timeout.
    fn rejected(&self, entry: &Entry) -> Option<Error> {
        let core = entry.breaker().core();
        if core.admits_with(|| core.clock.now()) {
            return None;
        }
        self.reject(entry)
    }

    #[cold]
    #[inline(never)]
    fn reject(&self, entry: &Entry) -> Option<Error> {
        let core = entry.breaker().core();
        if let Some(budget) = &self.inner.budget {
            budget.deposit();
        }
        self.inner.policy.metrics.done.increment(1);
        let open = core
            .shed(&core.windows.load(), core.clock.now())
            .into_error(core.config.rejection_name.clone());
        Some(self.error(Box::new(open), entry.authority().clone(), false))
    }

    /// Sends the request through the retry on its authority's service, or answers what
    /// stopped it before. One future from [`RequestBuilder::send`] to the retry, so that the
    /// request is moved into it once.
    async fn send_to<C: std::borrow::Borrow<Client>>(
        client: C,
        prepared: Result<(Arc<Entry>, reqwest::Request), Error>,
    ) -> Result<reqwest::Response, Error> {
        let (entry, request) = prepared?;
        let client = client.borrow();
        if let Some(e) = client.rejected(&entry) {
            return Err(e);
        }
        let authority = entry.authority().clone();
        let deadline = Deadline::current();
        if deadline.as_ref().is_some_and(Deadline::is_expired) {
            return Err(client.error(Elapsed::new().into(), authority, false));
        }
        // The retry ends the call at the total timeout (its policy enforces it); the breaker is
        // ready at once (open or not), and so are the bulkhead and reqwest.
        let mut service = entry.service();
        if let Err(e) = std::future::poll_fn(|cx| service.poll_ready(cx)).await {
            return Err(client.error(e, authority, false));
        }
        let mut future = std::pin::pin!(client.inner.policy.call_owned(service, request));
        // The deadline in scope, if any, ends the call too (see `crate::deadline`), as
        // `tokio::time::timeout_at` would, polled in this future rather than around another.
        let mut sleep = std::pin::pin!(deadline.map(|d| tokio::time::sleep_until(d.instant())));
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            match sleep.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        })
        .await;
        let (result, total_elapsed) = match outcome {
            Some(result) => (result, future.total_elapsed()),
            None => (Err(Elapsed::new().into()), false),
        };
        result.map_err(|e| client.error(e, authority, total_elapsed))
    }

    #[cold]
    fn error(&self, e: BoxError, authority: Arc<str>, total_elapsed: bool) -> Error {
        Error::new(
            e,
            authority,
            total_elapsed,
            (self.inner.total_timeout, self.inner.attempt_timeout),
        )
    }

    /// The circuit breaker of `url`'s authority, if the client has one (it is made on the first
    /// request and dropped when idle or evicted).
    pub fn breaker(&self, url: &reqwest::Url) -> Option<CircuitBreaker> {
        self.inner.keys.breaker(url)
    }

    /// How many authorities the client keeps a breaker and bulkhead for.
    pub fn authorities(&self) -> usize {
        self.inner.keys.len()
    }

    /// The retry policy every authority shares; [`RetryPolicy::retune`] changes its attempts
    /// and backoff while the client runs.
    pub fn retry_policy(&self) -> &RetryPolicy<HttpRetryClassifier, HttpReplay> {
        &self.inner.policy
    }

    /// The retry budget, shared by every authority, if any.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.inner.budget.as_ref()
    }

    /// The `reqwest::Client` inside (requests sent on it bypass harden).
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.inner.http
    }
}

enum Http {
    Default,
    Client(reqwest::Client),
    Builder(Box<reqwest::ClientBuilder>),
}

/// Builds a [`Client`]; start with [`Client::builder`].
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | `preset` | [`HttpLayerBuilder::new`] (see its `# Defaults`) |
/// | reqwest client | [`client_builder`]`().build()` |
/// | `max_authorities` | [`DEFAULT_MAX_AUTHORITIES`] = 1024 |
/// | `idle_timeout` | [`DEFAULT_IDLE_TIMEOUT`] = 5 min |
/// | `max_labeled_authorities` | [`DEFAULT_MAX_LABELED_AUTHORITIES`] = 64 |
///
/// Each authority's breaker and bulkhead are named `{preset name}/{scheme}://{host}:{port}`
/// (the `breaker` and `bulkhead` metric labels) for the first `max_labeled_authorities`
/// authorities, and `{preset name}/other` after that, so labels stay bounded.
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    preset: HttpLayerBuilder,
    http: Http,
    max_authorities: usize,
    max_labels: usize,
    idle_timeout: Duration,
    registry: Option<crate::admin::BreakerRegistry>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("preset", &self.preset)
            .field("max_authorities", &self.max_authorities)
            .field("max_labeled_authorities", &self.max_labels)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The stack's settings; the breaker and bulkhead settings apply to each authority.
    pub fn preset(mut self, preset: HttpLayerBuilder) -> Self {
        self.preset = preset;
        self
    }

    /// Use this `reqwest::Client` as it is (trusted to have no retries of its own).
    pub fn client(mut self, http: reqwest::Client) -> Self {
        self.http = Http::Client(http);
        self
    }

    /// Build the `reqwest::Client` from these settings, with reqwest's own retries turned off.
    pub fn reqwest(mut self, builder: reqwest::ClientBuilder) -> Self {
        self.http = Http::Builder(Box::new(builder));
        self
    }

    /// List each authority's breaker in `registry` (e.g. for the
    /// [admin endpoint](crate::admin)) as it is created, under its metrics label
    /// (`<preset name>/<scheme>://<host>:<port>`).
    pub fn registry(mut self, registry: &crate::admin::BreakerRegistry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// At most this many authorities keep a breaker and bulkhead; accepted [1, usize::MAX].
    pub fn max_authorities(mut self, max: usize) -> Self {
        self.max_authorities = max;
        self
    }

    /// How many authorities get their own metric label; the rest share `{name}/other`.
    pub fn max_labeled_authorities(mut self, max: usize) -> Self {
        self.max_labels = max;
        self
    }

    /// An authority unused for this long loses its breaker and bulkhead; accepted (0, ∞),
    /// counted in whole seconds (at least 1).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Checks the settings and builds the client.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending setting (the preset's included), or `reqwest` when
    /// reqwest cannot build its client (e.g. its TLS backend fails to initialise).
    pub fn build(self) -> Result<Client, ConfigError> {
        let registry = self.registry;
        let preset = self.preset;
        preset.validate()?;
        let reqwest_error = |e: reqwest::Error| ConfigError::new("reqwest", e.to_string());
        let http = match self.http {
            Http::Default => client_builder().build().map_err(reqwest_error)?,
            Http::Client(http) => http,
            Http::Builder(b) => b
                .retry(reqwest::retry::never())
                .build()
                .map_err(reqwest_error)?,
        };
        let attempt_layer = OptionalTimeoutLayer(
            preset
                .attempt_timeout
                .map(|d| TimeoutLayer::new(d).name(ATTEMPT_TIMEOUT_NAME)),
        );
        let propagate = PropagateDeadlineLayer::new(preset.deadline_header.clone());
        let attempt = tower_layer::Layer::layer(
            &attempt_layer,
            BoxErrors::new(tower_layer::Layer::layer(&propagate, http.clone())),
        );
        let policy = preset
            .retry_policy()?
            .enforcing_total_timeout(preset.attempt_timeout, TOTAL_TIMEOUT_NAME);
        let budget = policy.budget().cloned();
        let (total_timeout, attempt_timeout) = (preset.total_timeout, preset.attempt_timeout);
        let keys = Arc::new(
            Keys::new(
                preset,
                attempt,
                self.max_authorities,
                self.max_labels,
                self.idle_timeout,
            )?
            .with_registry(registry),
        );
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                policy,
                keys,
                total_timeout,
                attempt_timeout,
                budget,
            }),
        })
    }
}

/// A request being built, with reqwest's builder methods; [`send`](Self::send) sends it
/// through the client's stack.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: Client,
    inner: Pending,
}

/// What a [`RequestBuilder`] holds.
// The request is the common case: boxing it would allocate for every request.
#[allow(clippy::large_enum_variant)]
enum Pending {
    /// Started while the authority's breaker rejected: the method and the URL as given.
    Unbuilt {
        method: reqwest::Method,
        url: Box<str>,
        entry: Arc<Entry>,
    },
    /// The request, made without reqwest's builder from a URL in the plain form, and its
    /// authority's entry when the map held it at the start.
    Request {
        request: reqwest::Request,
        entry: Option<Arc<Entry>>,
    },
    /// reqwest's builder, and the authority's entry when it was known at the start (a builder
    /// method may have changed the URL since).
    Built {
        builder: reqwest::RequestBuilder,
        entry: Option<Arc<Entry>>,
    },
    /// The URL did not parse: what reqwest's builder would return.
    Failed(reqwest::Error),
}

impl std::fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RequestBuilder");
        match &self.inner {
            Pending::Unbuilt { method, url, .. } => d.field("method", method).field("url", url),
            Pending::Request { request, .. } => d
                .field("method", request.method())
                .field("url", &request.url().as_str()),
            Pending::Built { builder, .. } => d.field("inner", builder),
            Pending::Failed(e) => d.field("error", e),
        };
        d.finish_non_exhaustive()
    }
}

impl RequestBuilder {
    /// Add a header.
    pub fn header<K, V>(self, key: K, value: V) -> Self
    where
        reqwest::header::HeaderName: TryFrom<K>,
        <reqwest::header::HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        reqwest::header::HeaderValue: TryFrom<V>,
        <reqwest::header::HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.with(|b| b.header(key, value))
    }

    /// Add headers.
    pub fn headers(self, headers: reqwest::header::HeaderMap) -> Self {
        self.with(|b| b.headers(headers))
    }

    /// Opt this request into retries whatever its method: sets the `Idempotency-Key` header,
    /// which asks the server to apply the request at most once.
    pub fn idempotency_key(self, key: impl AsRef<str>) -> Self {
        let key = key.as_ref().to_owned();
        self.with(|b| b.header(IDEMPOTENCY_KEY, key))
    }

    /// HTTP basic authentication.
    pub fn basic_auth<U: std::fmt::Display, P: std::fmt::Display>(
        self,
        username: U,
        password: Option<P>,
    ) -> Self {
        self.with(|b| b.basic_auth(username, password))
    }

    /// A bearer token.
    pub fn bearer_auth<T: std::fmt::Display>(self, token: T) -> Self {
        self.with(|b| b.bearer_auth(token))
    }

    /// The body. A streaming body (`reqwest::Body::wrap_stream`) is sent once, never retried.
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        self.with(|b| b.body(body))
    }

    /// A JSON body, with `Content-Type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(self, json: &T) -> Self {
        self.with(|b| b.json(json))
    }

    /// reqwest's own per-request timeout (each attempt; harden's attempt timeout applies too).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|b| b.timeout(timeout))
    }

    /// The HTTP version.
    pub fn version(self, version: reqwest::Version) -> Self {
        self.with(|b| b.version(version))
    }

    /// Any other `reqwest::RequestBuilder` method (`query`, `form`, `multipart` when reqwest's
    /// features for them are on).
    pub fn with(self, f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        let client = self.client;
        let (builder, entry) = match self.inner {
            Pending::Unbuilt { method, url, entry } => {
                (client.inner.http.request(method, &*url), Some(entry))
            }
            Pending::Request { request, entry } => (
                reqwest::RequestBuilder::from_parts(client.inner.http.clone(), request),
                entry,
            ),
            Pending::Built { builder, entry } => (builder, entry),
            // reqwest's builder methods leave a failed builder as it is.
            Pending::Failed(e) => {
                return RequestBuilder {
                    client,
                    inner: Pending::Failed(e),
                }
            }
        };
        RequestBuilder {
            inner: Pending::Built {
                builder: f(builder),
                entry,
            },
            client,
        }
    }

    /// The request, without sending it.
    ///
    /// # Errors
    ///
    /// reqwest's builder error (bad URL, bad header).
    pub fn build(self) -> Result<reqwest::Request, reqwest::Error> {
        match self.inner {
            Pending::Unbuilt { method, url, .. } => {
                self.client.inner.http.request(method, &*url).build()
            }
            Pending::Request { request, .. } => Ok(request),
            Pending::Built { builder, .. } => builder.build(),
            Pending::Failed(e) => Err(e),
        }
    }

    /// Send the request through the client's stack. While the authority's breaker rejects, the
    /// answer is [`ErrorKind::CircuitOpen`] and a request that was not built is not built.
    ///
    /// # Errors
    ///
    /// [`Error`], naming the layer that stopped the request.
    // Inline: the caller builds the future in its own place instead of moving it there.
    #[inline]
    pub fn send(self) -> impl Future<Output = Result<reqwest::Response, Error>> + Send + 'static {
        // The request is made here, as reqwest's `send` makes it: the future holds the request,
        // not its builder.
        let prepared = self.client.prepare(self.inner);
        Client::send_to(self.client, prepared)
    }
}

impl Client {
    /// The request of a [`RequestBuilder`] and its authority's entry, or the answer without
    /// them.
    fn prepare(&self, pending: Pending) -> Result<(Arc<Entry>, reqwest::Request), Error> {
        let client = self;
        let (request, entry) = match pending {
            Pending::Request { request, entry } => {
                let entry = match entry {
                    Some(entry) => entry,
                    None => client.inner.keys.entry(request.url()),
                };
                return Ok((entry, request));
            }
            Pending::Unbuilt { method, url, entry } => {
                if let Some(e) = client.rejected(&entry) {
                    return Err(e);
                }
                (
                    client.inner.http.request(method, &*url).build(),
                    Some(entry),
                )
            }
            Pending::Built { builder, entry } => (builder.build(), entry),
            Pending::Failed(e) => (Err(e), None),
        };
        let request = match request {
            Ok(request) => request,
            Err(e) => return Err(Error::new(Box::new(e), Arc::from(""), false, (None, None))),
        };
        // The entry found from the URL as given, unless a builder method changed the authority.
        let entry = match entry {
            Some(entry) if entry.serves(request.url()) => entry,
            _ => client.inner.keys.entry(request.url()),
        };
        Ok((entry, request))
    }
}
