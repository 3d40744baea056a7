//! gRPC through tonic (feature `tonic`): the same guarantees as HTTP, by gRPC's own rules.
//!
//! **Client.** [`GrpcLayer`] wraps a tonic `Channel` (any tower service over
//! `http::Request<tonic::body::Body>`). Its circuit breaker classifies each attempt by its
//! `grpc-status` — from the headers of a trailers-only answer, or from the trailers at the end of
//! a stream ([`GrpcBreakerClassifier`]: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN`,
//! `DATA_LOSS` and transport errors fail, `RESOURCE_EXHAUSTED` is ignored, other codes are the
//! caller's mistakes). It retries by gRFC A6, configured from the standard service config JSON
//! ([`ServiceConfig`]: `methodConfig` with `name`, `retryPolicy`, `timeout`, and
//! `retryThrottling`), so the file that configures grpc-go and grpc-java configures harden:
//! `maxAttempts` (capped at 5), a random backoff in `[0, min(initialBackoff × multiplier^(n-1),
//! maxBackoff))`, `retryableStatusCodes`, `grpc-retry-pushback-ms` (a valid value replaces the
//! backoff, a negative or malformed one stops retries), and the token-bucket throttle. A call is
//! committed once response headers without a status arrive (a stream has begun): it is never
//! retried after that, and the breaker counts it once, at its end. The request body is kept for
//! replay up to [`DEFAULT_BUFFER_LIMIT`]; a larger one is sent once. A body that is all there
//! when the call is made (a unary message) is read then and sent with the end of its stream, a
//! frame fewer on the wire. Each attempt carries
//! `grpc-timeout` — the method's `timeout`, the caller's own (`Request::set_timeout`), or the
//! [deadline in scope](crate::deadline), whichever ends first, minus what was spent — and no
//! retry, backoff or pushback waits past it.
//!
//! **Server.** [`GrpcErrorLayer`] answers harden's errors as statuses ([`status_for`]), and
//! [`GrpcHealth`] serves `grpc.health.v1` from [`harden::health`](crate::health), so readiness
//! (shutting down, critical breakers, checks) reaches Kubernetes' gRPC probes. tonic's routes
//! (`tonic::service::Routes::into_axum_router`) run under
//! [`Shutdown::serve`](crate::shutdown::Shutdown::serve) with the REST routes, HTTP/2 included
//! (this feature turns on hyper's HTTP/2); put [`DeadlineLayer`](crate::deadline::DeadlineLayer)
//! on that router to hand handlers their caller's deadline.
//!
//! # Default
//!
//! ```no_run
//! use harden::tonic::GrpcLayer;
//! use tower::ServiceBuilder;
//! # async fn run() -> Result<(), harden::BoxError> {
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
//! let channel = ServiceBuilder::new().layer(GrpcLayer::builder().build()?).service(channel);
//! // let client = GreeterClient::new(channel);
//! # let _ = channel;
//! # Ok(())
//! # }
//! ```
//!
//! # Customised
//!
//! ```
//! use harden::http::HttpLayerBuilder;
//! use harden::tonic::{GrpcBreakerClassifier, GrpcLayer};
//! use tonic::Code;
//!
//! let layer = GrpcLayer::builder()
//!     .service_config_json(r#"{
//!       "methodConfig": [{
//!         "name": [{ "service": "helloworld.Greeter" }],
//!         "timeout": "1s",
//!         "retryPolicy": { "maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "0.5s",
//!                          "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"] }
//!       }],
//!       "retryThrottling": { "maxTokens": 10, "tokenRatio": 0.1 }
//!     }"#)
//!     .breaker(HttpLayerBuilder::default_breaker().name("greeter").volume_threshold(20))
//!     .breaker_classifier(GrpcBreakerClassifier::new().failure(Code::ResourceExhausted))
//!     .build()?;
//! assert_eq!(layer.breaker().unwrap().name(), "greeter");
//! # Ok::<(), harden::ConfigError>(())
//! ```
//!
//! # Errors
//!
//! The client's errors are `tonic::Status`es, so generated clients report them as they report
//! any status: an open circuit is `UNAVAILABLE` with `grpc-retry-pushback-ms`, a passed deadline
//! `DEADLINE_EXCEEDED`; the `Status`'s `source()` is harden's error
//! ([`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen),
//! [`Elapsed`](crate::timeout::error::Elapsed)). A transport error is passed through. A status
//! that is not retried, or whose retries ran out, is the RPC's answer. Configuration errors are
//! [`ConfigError`](crate::ConfigError)s naming the JSON path.
//!
//! # Compared with tonic
//!
//! tonic has no retries, no breaker, and its `Endpoint::timeout` does not send `grpc-timeout`.
//! Hedging policies in a service config are not implemented: their methods are sent once.

mod body;
mod classify;
mod client;
mod code;
mod config;
#[cfg(feature = "axum")]
mod health;
mod names;
mod status;

pub use body::GrpcBody;
pub use classify::GrpcBreakerClassifier;
pub use client::{
    GrpcClient, GrpcLayer, GrpcLayerBuilder, ResponseFuture, DEFAULT_BUFFER_LIMIT, DEFAULT_NAME,
};
pub use config::{
    GrpcRetryPolicy, MethodConfig, RetryThrottling, ServiceConfig, MAX_ATTEMPTS_CAP,
    MAX_TOKENS_LIMIT,
};
#[cfg(feature = "axum")]
pub use health::{GrpcHealth, WatchStream, DEFAULT_WATCH_INTERVAL};
pub use status::{status_for, GrpcErrorLayer, GrpcErrors, GrpcErrorsFuture, PUSHBACK};
