//! Liveness and readiness endpoints (feature `axum`).
