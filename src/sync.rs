//! Atomics and `Arc`, swapped for loom's under `--cfg harden_loom` so the lock-free structures
//! can be model-checked. (`--cfg loom` is not used: it would switch tokio to its own loom mode.)

#[cfg(harden_loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    Arc,
};
#[cfg(not(harden_loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    Arc,
};

/// Runs a loom model with at most 3 preemptions per execution, which keeps every model well
/// under a minute in `--release` (unbounded, the seqlock's and the window's many plain loads
/// explode the search).
#[cfg(all(test, harden_loom))]
pub(crate) fn loom_model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}
