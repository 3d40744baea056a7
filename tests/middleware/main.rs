//! The middleware through their public API: circuit breaker, retry, timeout, bulkhead, fallback,
//! chaos, the whole stack, and every layer's metrics series.

#[path = "../support/mod.rs"]
mod support;

mod bulkhead;
#[cfg(feature = "chaos")]
mod chaos;
mod circuit_breaker;
mod circuit_breaker_call;
mod circuit_breaker_listener;
mod circuit_breaker_regressions;
mod fallback;
#[cfg(feature = "metrics")]
mod metrics_series;
mod retry;
mod retune;
mod settings;
mod stack;
mod timeout;
