//! harden's rows, shared by `benches/breaker.rs`, `benches/stack.rs` and the `harden-peers` bench
//! (included with `#[path]`). Written against the DESIGN.md API contract.
#![allow(dead_code)]

use super::harness::*;
use std::time::Duration;

/// True for harden's rejections (`CircuitOpen`, `BulkheadFull`): the call never reached the operation.
pub fn is_rejection(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.is::<harden::circuit_breaker::error::CircuitOpen>()
        || e.is::<harden::bulkhead::error::BulkheadFull>()
}

/// Breaker rows while closed (`fail_every` 0: all succeed; 10: every 10th fails).
pub fn closed_rows(_g: &mut Group, _label: &str, _fail_every: u64, _expect: Expect) {}

/// Breaker rows while open.
pub fn open_rows(_g: &mut Group, _reset: Duration) {}

/// Timeout rows with an inner future ready at once.
pub fn timeout_rows(_g: &mut Group, _timeout: Duration) {}

/// Retry rows that never need to retry.
pub fn retry_rows(_g: &mut Group, _attempts: usize) {}

/// The full stack: timeout + retry + breaker + bulkhead.
pub fn stack_rows(_g: &mut Group, _timeout: Duration, _attempts: usize, _reset: Duration) {}

/// Thread workers sharing one breaker: (label, maker).
pub fn mt_workers() -> Vec<(String, MakeWorker)> {
    Vec::new()
}

/// Task loops sharing one breaker: (label, maker).
pub fn mt_tasks() -> Vec<(String, MakeTask)> {
    Vec::new()
}

/// Heap bytes per breaker: (label, bytes).
pub fn heap_rows() -> Vec<(String, f64)> {
    Vec::new()
}
