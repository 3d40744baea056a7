//! # harden
//!
//! Resilience middleware for [`tower`](https://docs.rs/tower): a circuit breaker in the style of
//! Node's opossum on a lock-free rolling window, retry with backoff, jitter and a retry budget,
//! timeout, bulkhead and fallback. Each is a `tower::Layer`; [`ResilienceLayerBuilder`] composes them in the
//! standard order, and the feature `metrics` exports their state through the
//! [`metrics`](https://docs.rs/metrics) facade.
//!
//! ```text
//! fallback → total timeout → retry (backoff, budget) → circuit breaker → bulkhead → attempt timeout → service
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`circuit_breaker`] | opossum-style breaker: error %, volume threshold, rolling window, reset timeout, half-open probes |
//! | [`retry`] | retries with backoff + jitter, a retry budget, server-requested delays |
//! | [`timeout`] | per-call deadline; no timer for calls that finish at once |
//! | [`bulkhead`] | concurrency limit that rejects instead of queueing |
//! | [`fallback`] | turns chosen errors into a response |
//! | [`stack`] | [`ResilienceLayerBuilder`]: all of the above in the recommended order |
//! | [`circuit_breaker`] | what counts as success, failure or ignored |
//! | [`metrics`] | series names, label values, `describe()` |
//! | [`http`] | HTTP classification, `Retry-After`, idempotency, the HTTP preset, and errors as HTTP answers ([`ErrorResponseLayer`](http::ErrorResponseLayer)) (feature `http`) |
//! | [`reqwest`] | the one-line resilient `reqwest` client, per-host breakers (feature `reqwest`) |
//! | [`health`] | terminus-shaped `/health/live` and `/health/ready` (feature `axum`) |
//! | [`shutdown`] | graceful shutdown: drain delay, 503 while refusing, deadline, hooks, report (feature `axum`) |
//! | [`deadline`] | deadlines across services: `grpc-timeout` / `x-envoy-expected-rq-timeout-ms` read, enforced, handed to harden's clients (feature `http`) |
//! | [`tonic`] | gRPC: breaker by `grpc-status`, gRFC A6 retries from a service config, `grpc.health.v1`, errors as statuses (feature `tonic`) |
//!
//! ## A client: `reqwest` behind the stack
//!
//! One line makes a `reqwest::Client` resilient: HTTP-aware retries (idempotent methods only,
//! `Retry-After` honoured, a retry budget), total and attempt timeouts, and a circuit breaker and
//! bulkhead per host, on documented defaults ([`http::HttpLayerBuilder`]). Requests keep reqwest's
//! builder feel; errors say which layer stopped them ([`reqwest::Error`]).
//!
//! ```no_run
//! use harden::reqwest::{Client, ErrorKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), harden::BoxError> {
//! let client = Client::new(reqwest::Client::new());
//!
//! let order = serde_json::json!({ "sku": "A-1", "quantity": 2 });
//! match client
//!     .post("http://orders.internal/orders")
//!     .idempotency_key("order-7f3a") // POSTs are retried only with a key
//!     .json(&order)
//!     .send()
//!     .await
//! {
//!     Ok(response) => println!("{}", response.status()),
//!     Err(e) if e.kind() == ErrorKind::CircuitOpen => println!("{e}"), // no network round trip
//!     Err(e) => println!("{e}"),
//! }
//! let orders = "http://orders.internal/".parse()?;
//! println!("breaker: {:?}", client.breaker(&orders).map(|b| b.state()));
//! # Ok(())
//! # }
//! ```
//!
//! The same stack is a `tower::Layer` around the `reqwest::Client` itself, which is a
//! `tower::Service<reqwest::Request>`: `harden::http::HttpLayer::builder().build()?.layer(client)`.
//!
//! ## A server: an axum route guarded by a breaker and a bulkhead
//!
//! [`http::ErrorResponseLayer`] turns harden's errors into HTTP answers (503 + `Retry-After`,
//! 504, JSON body), so the stack mounts on a route directly, without `HandleErrorLayer`;
//! [`health`] adds the probes and [`shutdown`] serves the router with a graceful shutdown.
//!
//! ```
//! use std::time::Duration;
//! use axum::{http::StatusCode, routing::get, Router};
//! use harden::bulkhead::BulkheadLayer;
//! use harden::circuit_breaker::CircuitBreaker;
//! use harden::health::Health;
//! use harden::http::ErrorResponseLayer;
//! use harden::shutdown::Shutdown;
//! use harden::timeout::TimeoutLayer;
//! use harden::BoxError;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = CircuitBreaker::builder().name("reports").build()?;
//! let shutdown = Shutdown::builder().build()?; // SIGTERM: readiness 503, drain, hooks
//! let health = Health::builder()
//!     .breaker(&breaker)
//!     .shutdown(&shutdown.handle())
//!     .build()?;
//! let app = Router::new()
//!     .route(
//!         "/report",
//!         get(|| async { "report" }).layer(
//!             ServiceBuilder::new()
//!                 .layer(ErrorResponseLayer::new())
//!                 .layer(breaker.layer())
//!                 .layer(BulkheadLayer::new(100))
//!                 .layer(TimeoutLayer::new(Duration::from_secs(2))),
//!         ),
//!     )
//!     .merge(health.router());
//!
//! // Served with `shutdown.serve(listener, app).await?`; here one request, in process.
//! let request = axum::http::Request::get("/report").body(axum::body::Body::empty())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! breaker.force_open();
//! let request = axum::http::Request::get("/report").body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! # drop(shutdown);
//! # Ok(())
//! # }
//! ```
//!
//! ## Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `test-util` | the crate's clock follows `tokio::time::pause()` / `advance()`; enable it in `[dev-dependencies]` |
//! | `metrics` | state and counters exported through the [`metrics`](https://docs.rs/metrics) facade; the crate never installs a recorder |
//! | `http` | `harden::http`: HTTP status classification, `Retry-After`, idempotency, errors as HTTP answers |
//! | `reqwest` | `harden::reqwest`: a `reqwest::Client` behind the stack (implies `http`) |
//! | `axum` | `harden::health` and `harden::shutdown`: probes and graceful shutdown for axum servers; [`admin::Admin`], the admin endpoint (implies `http` and `serde`) |
//! | `serde` | every `*Settings` struct and [`settings::ServiceSettings`] read and write with serde, durations as `"10s"` |
//! | `chaos` | `harden::chaos`: fault injection for tests and demos |
//! | `tonic` | `harden::tonic`: the gRPC client layer, statuses for harden's errors, and (with `axum`) `grpc.health.v1` and HTTP/2 serving (implies `http`) |
//!
//! ## Time
//!
//! Everything the crate judges (windows, reset timeouts, probe bounds, slow calls) is read from
//! one clock: `CLOCK_MONOTONIC_COARSE` on Linux (cheap to read; the kernel tick, 1–4 ms, is
//! its resolution), `std::time::Instant` elsewhere, and `tokio::time::Instant` with `test-util`,
//! so tests of time-dependent behaviour run on paused time, instantly and deterministically.
//!
//! ## MSRV
//!
//! Rust 1.88, the highest `rust-version` in the locked dependency graph with every feature on
//! (tonic 0.14 and tonic-health, `icu_*` through reqwest → url → idna, and proptest for the tests). CI checks it
//! (`.ci/msrv`).
#![forbid(unsafe_code)]
// docs.rs (`--cfg docsrs`, nightly): `doc_cfg` marks every item behind a feature with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's Rust snippets, compiled (and run where they need no network) by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[macro_use]
mod macros;

pub mod admin;
mod builder;
pub mod bulkhead;
#[cfg(feature = "chaos")]
pub mod chaos;
pub mod circuit_breaker;
pub(crate) mod clock;
#[cfg(feature = "http")]
pub mod deadline;
mod error;
pub mod fallback;
#[cfg(feature = "axum")]
pub mod health;
#[cfg(feature = "http")]
pub mod http;
pub mod metrics;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub mod retry;
pub mod settings;
#[cfg(feature = "axum")]
pub mod shutdown;
pub mod stack;
mod stripe;
pub(crate) mod sync;
pub mod timeout;
#[cfg(feature = "tonic")]
pub mod tonic;

pub use builder::ServiceBuilderExt;
pub use error::{BoxError, ConfigError};
pub use stack::{ResilienceLayer, ResilienceLayerBuilder};
