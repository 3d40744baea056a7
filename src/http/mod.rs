//! HTTP meaning for harden's layers (feature `http`).
//!
//! The core knows no HTTP; this module says what a status, a `Retry-After` header and a method
//! mean to a circuit breaker and a retry, for any client whose responses have a status and
//! headers ([`HttpResponse`]: `http::Response<B>`, `reqwest::Response`). [`HttpBreakerClassifier`]
//! tells the breaker that 5xx, 408 and transport errors are failures and that a 429 or harden's
//! own rejections say nothing about the upstream; [`HttpRetryClassifier`] retries
//! 502/503/504/408/429 and transport errors after the server's [`Retry-After`](parse_retry_after);
//! [`HttpReplay`] sends a request again only when its method is idempotent (or it opted in with
//! an [`Idempotency-Key`](IDEMPOTENCY_KEY) header or the [`Idempotent`] extension) and its
//! body can be replayed — anything else is sent exactly once and its real response returned.
//! [`HttpLayerBuilder`] puts them together in the standard stack on documented defaults.
//!
//! Server side, [`ErrorResponseLayer`]: harden's errors become proper HTTP answers, so an axum
//! route (or a plain hyper service) wrapped in harden's layers needs no `HandleErrorLayer` —
//! `CircuitOpen` → 503 + `Retry-After`, `BulkheadFull` → 503, `Elapsed` → 504, a retry budget
//! exhausted → 503, a server-requested delay longer than the deadline → 503 + `Retry-After`,
//! anything else → 500, each with the JSON body `{"statusCode":503,"message":"...","retryAfter":5}`.
//! [`error_response`] builds the same answer from an error, for handlers and custom layers.
//!
//! # Default
//!
//! The preset around any `tower::Service<http::Request<B>>` (here an in-process one that fails
//! once with a 503 and `Retry-After: 1`):
//!
//! ```
//! use harden::http::{HttpLayer, HttpLayerBuilder};
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//! # use std::sync::atomic::{AtomicU32, Ordering};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), harden::BoxError> {
//! static CALLS: AtomicU32 = AtomicU32::new(0);
//! let layer = HttpLayer::builder().build()?;
//! let client = layer.layer(service_fn(|_req: Request<String>| async {
//!     let status = match CALLS.fetch_add(1, Ordering::Relaxed) {
//!         0 => StatusCode::SERVICE_UNAVAILABLE,
//!         _ => StatusCode::OK,
//!     };
//!     Ok::<_, harden::BoxError>(Response::builder().status(status).header("retry-after", "1").body(())?)
//! }));
//! let response = client.oneshot(Request::get("/").body(String::new())?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(CALLS.load(Ordering::Relaxed), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Customised
//!
//! ```
//! use std::time::Duration;
//! use harden::circuit_breaker::Outcome;
//! use harden::http::{HttpBreakerClassifier, HttpLayer, HttpLayerBuilder, HttpReplay, HttpRetryClassifier};
//!
//! let layer = HttpLayer::builder()
//!     .name("inventory")
//!     .total_timeout(Duration::from_secs(5))
//!     .attempt_timeout(Duration::from_secs(1))
//!     .max_attempts(3)
//!     .breaker(HttpLayerBuilder::default_breaker().volume_threshold(20).error_threshold_percentage(50.0))
//!     // This upstream's 429s mean trouble; do not retry them, count them as failures.
//!     .retry_classifier(HttpRetryClassifier::new().too_many_requests(false))
//!     .breaker_classifier(HttpBreakerClassifier::new().too_many_requests(Outcome::Failure))
//!     // Its writes are idempotent: replay any method whose body can be replayed.
//!     .replay(HttpReplay::any_method())
//!     .bulkhead(64)
//!     .build()?;
//! assert_eq!(layer.breaker().name(), "inventory");
//! # Ok::<(), harden::ConfigError>(())
//! ```
//!
//! # Errors
//!
//! A stack made by the preset returns [`BoxError`](crate::BoxError): the client's error, or
//! [`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen),
//! [`BulkheadFull`](crate::bulkhead::error::BulkheadFull),
//! [`Elapsed`](crate::timeout::error::Elapsed),
//! [`BudgetExhausted`](crate::retry::error::BudgetExhausted) (a retry was due, the budget said
//! no, the last attempt was an error) or
//! [`RetryAfterTooLong`](crate::retry::error::RetryAfterTooLong) (the server asked for a delay
//! beyond what is left of the total timeout: the call fails at once, carrying that delay).
//! A 5xx that is not retried, or whose retries ran out, is a *response*, not an error.
//! [`HttpLayerBuilder::build`] returns a [`ConfigError`](crate::ConfigError) for bad settings. Header
//! values never cause an error or a panic: a `Retry-After` that cannot be read is ignored.
//!
//! # Compared with `tower-http` and `reqwest-retry`
//!
//! tower-http classifies responses for tracing and metrics, not for a breaker or a retry, and
//! has no `Retry-After`. reqwest-retry (with reqwest-middleware) retries POSTs, ignores
//! `Retry-After`, has no budget, and fails a request whose body is a stream even on its first
//! attempt; here a stream is sent once, `Retry-After` is honoured within a cap and the deadline,
//! and a budget bounds the extra load. Hand-written parts: `Retry-After`'s delta-seconds (the
//! dates go through `httpdate`) and the classifiers, which no crate provides for tower.

#[cfg(feature = "chaos")]
pub(crate) mod chaos;
mod classify;
mod idempotency;
mod preset;
mod replay;
mod response;
mod retry_after;
mod settings;

#[cfg(feature = "chaos")]
pub use chaos::HttpResponder;
pub use classify::{
    is_transport_error, HttpBreakerClassifier, HttpError, HttpResponse, HttpRetryClassifier,
};
pub use idempotency::{is_idempotent_method, may_retry, Idempotent, IDEMPOTENCY_KEY};
pub use preset::{
    HttpLayer, HttpLayerBuilder, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_ERROR_THRESHOLD_PERCENTAGE,
    DEFAULT_INITIAL_DELAY, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_DELAY,
    DEFAULT_NAME, DEFAULT_RESET_TIMEOUT, DEFAULT_ROLLING_WINDOW, DEFAULT_TOTAL_TIMEOUT,
    DEFAULT_VOLUME_THRESHOLD,
};
pub use replay::HttpReplay;
#[cfg(feature = "axum")]
pub(crate) use response::{ceil_secs, json_response};
pub use response::{error_response, ErrorResponse, ErrorResponseFuture, ErrorResponseLayer};
pub use retry_after::{parse_retry_after, retry_after, DEFAULT_RETRY_AFTER_CAP};

/// Default liveness path of `harden::health`, exempt from refusing in `harden::shutdown`.
pub const DEFAULT_LIVE_PATH: &str = "/health/live";
/// Default readiness path of `harden::health`, exempt from refusing in `harden::shutdown`.
pub const DEFAULT_READY_PATH: &str = "/health/ready";
pub use settings::HttpLayerSettings;
