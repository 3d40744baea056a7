//! Error types of the timeout.

use std::fmt;

/// The inner service did not answer within the timeout.
///
/// Opaque and zero-sized (boxing it does not allocate), like tower's `Elapsed`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Elapsed(());

impl Elapsed {
    pub(crate) const fn new() -> Self {
        Elapsed(())
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request timed out")
    }
}

impl std::error::Error for Elapsed {}
