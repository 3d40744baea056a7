//! bulkhead (being written).

pub mod error;
