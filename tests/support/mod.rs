//! Helpers shared by the integration tests; each test binary includes this folder with
//! `#[path = "../support/mod.rs"] mod support;`.
#![allow(dead_code, unreachable_pub)] // each binary uses its own subset

pub mod recorder;
pub mod server;
