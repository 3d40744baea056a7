//! An admin endpoint for operating breakers in an incident: list them with their state, stats
//! and settings, force one open, disable it, reset it, change its settings.
//!
//! [`BreakerRegistry`] is a bounded set of named breakers; register yours, and the per-authority
//! [`reqwest` client](crate::reqwest::ClientBuilder::registry) registers each authority's
//! breaker. With the feature `axum`, [`Admin`] serves the registry as a JSON API.
//!
//! Secure by default: the endpoint refuses every request unless an authorizer is configured
//! (a bearer token compared in constant time, or a function of the headers), and
//! [`AdminBuilder::build`] without one is a [`ConfigError`](crate::ConfigError). Serve it on a
//! listener of its own, not the service's port.
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use harden::admin::{Admin, BreakerRegistry};
//! use harden::circuit_breaker::CircuitBreaker;
//!
//! # fn main() -> Result<(), harden::BoxError> {
//! let registry = BreakerRegistry::new();
//! let payments = CircuitBreaker::builder().name("payments").build()?;
//! registry.register(&payments);
//!
//! let token = std::env::var("ADMIN_TOKEN").unwrap_or_else(|_| "change me".into());
//! let admin = Admin::builder().registry(&registry).bearer_token(token).build()?;
//! let app: axum::Router = admin.router();
//! // axum::serve(TcpListener::bind("127.0.0.1:9091").await?, app).await?;
//! # let _ = app;
//! assert!(Admin::builder().registry(&registry).build().is_err(), "no authorizer");
//! # Ok(()) }
//! # main().unwrap();
//! # }
//! ```
//!
//! ```text
//! curl -H "Authorization: Bearer $TOKEN" localhost:9091/breakers
//! curl -X POST -H "Authorization: Bearer $TOKEN" localhost:9091/breakers/payments/force_open
//! curl -X PATCH -H "Authorization: Bearer $TOKEN" localhost:9091/breakers/payments/settings \
//!      -d '{"error_threshold_percentage": 20, "reset_timeout": "30s"}'
//! ```
//!
//! Answers: 401 without credentials, 403 with wrong ones, 404 for an unknown breaker, 400 for
//! a body that is not a JSON object of valid settings (`{"message": .., "field": ..}` names the
//! setting), else 200 with the breaker as `GET` shows it.

mod registry;
#[cfg(feature = "axum")]
mod router;

pub use registry::{BreakerRegistry, DEFAULT_REGISTRY_CAPACITY};
#[cfg(feature = "axum")]
pub use router::{Access, Admin, AdminBuilder};
