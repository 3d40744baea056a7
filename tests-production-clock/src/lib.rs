//! Nothing to link: this package only holds `tests/real_clock.rs`, which runs harden on its
//! production clock (see `Cargo.toml`).
