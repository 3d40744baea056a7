//! Error types of the bulkhead.

use std::fmt;

/// A call rejected because the bulkhead already has its maximum number of calls in flight.
///
/// Zero-sized, so boxing it into a `BoxError` does not allocate. Never retried by harden's retry layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BulkheadFull {
    _priv: (),
}

impl BulkheadFull {
    pub(crate) const fn new() -> Self {
        BulkheadFull { _priv: () }
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bulkhead is full")
    }
}

impl std::error::Error for BulkheadFull {}
