//! HTTP meaning for harden (feature `http`).
//!
//! Server side, [`ErrorResponseLayer`]: harden's errors become proper HTTP answers, so an axum
//! route (or a plain hyper service) wrapped in harden's layers needs no `HandleErrorLayer` —
//! `CircuitOpen` → 503 + `Retry-After`, `BulkheadFull` → 503, `Elapsed` → 504, a retry budget
//! exhausted → 503, a server-requested delay longer than the deadline → 503 + `Retry-After`,
//! anything else → 500, each with the JSON body `{"statusCode":503,"message":"...","retryAfter":5}`.
//! [`error_response`] builds the same answer from an error, for handlers and custom layers.

mod response;

#[cfg(feature = "axum")]
pub(crate) use response::{ceil_secs, json_response};
pub use response::{error_response, ErrorResponse, ErrorResponseFuture, ErrorResponseLayer};
