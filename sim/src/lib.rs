//! harden-sim: harden's own breaker, retry budget, backoff, bulkhead and timeouts on a
//! simulated clock.
//!
//! - `replay` scores candidate settings on a recorded trace (CSV or JSON lines) or a scenario
//!   of phases (TOML, in `harden::chaos`'s words) and recommends one for an objective.
//! - `fleet` runs thousands of clients, each with its own stack, against one upstream of
//!   finite capacity through a transient overload, and compares no resilience, naive retries
//!   and harden's HTTP preset.
//!
//! # Time
//!
//! The simulated clock is harden's own: this package turns on harden's `test-util` feature,
//! so harden reads `tokio::time::Instant`, and each run happens inside a current-thread tokio
//! runtime started paused, which the engine moves forward with `tokio::time::advance` one
//! 1 ms tick at a time. Nothing sleeps; an hour of traffic runs in seconds, and a run is a
//! function of its inputs and its seed: the same seed gives the same output. See
//! [`engine`] for how calls go through harden's services without a task per call.

#![forbid(unsafe_code)]

pub mod engine;
pub mod fleet;
pub mod input;
pub mod replay;
pub mod svg;
