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

/// Runs a loom model with at most `LOOM_MAX_PREEMPTIONS` preemptions per execution (3 when
/// unset): unbounded, the seqlock's and the window's many plain loads explode the search.
#[cfg(all(test, harden_loom))]
pub(crate) fn loom_model(f: impl Fn() + Sync + Send + 'static) {
    loom_model_bounded(3, f);
}

/// [`loom_model`] with another default bound, for a model whose threads take so many atomic
/// steps that bound 3 takes minutes; `LOOM_MAX_PREEMPTIONS` still overrides it.
#[cfg(all(test, harden_loom))]
pub(crate) fn loom_model_bounded(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // `Builder::new` reads `LOOM_MAX_PREEMPTIONS` itself; only the default is ours.
    builder.preemption_bound = builder.preemption_bound.or(Some(bound));
    builder.check(f);
}
