//! Nothing to link: this package holds `tests/real_clock.rs` and `examples/under_valgrind.rs`,
//! which run harden on its production clock (see `Cargo.toml`).
