//! Graceful shutdown for axum servers (feature `axum`).
