//! timeout (being written).

pub mod error;
