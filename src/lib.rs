//! # harden
//!
//! Resilience middleware for [`tower`](https://docs.rs/tower): a circuit breaker in the style of
//! opossum on a lock-free rolling window, retry with backoff and a retry budget, timeout, bulkhead
//! and fallback.
//!
//! ## Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `test-util` | the crate's clock follows `tokio::time::pause()` / `advance()`; enable it in `[dev-dependencies]` |
//! | `metrics` | state and counters exported through the [`metrics`](https://docs.rs/metrics) facade |
//!
//! ## MSRV
//!
//! Rust 1.75.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod builder;
pub mod bulkhead;
pub mod circuit_breaker;
pub mod classify;
pub(crate) mod clock;
mod error;
pub mod fallback;
pub mod metrics;
pub mod retry;
pub mod stack;
pub(crate) mod sync;
pub mod timeout;

pub use builder::ServiceBuilderExt;
pub use error::{BoxError, ConfigError};
pub use stack::{Resilience, ResilienceLayer};
