//! Servers: health endpoints, the graceful shutdown sequence, and `examples/axum_server.rs` as a
//! real process.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod axum_server_example;
mod health;
mod shutdown;
