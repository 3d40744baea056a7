//! circuit_breaker (being written).

pub mod error;
