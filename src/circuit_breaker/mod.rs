//! circuit_breaker (being written).

pub mod error;
#[allow(dead_code)]
pub(crate) mod window;
