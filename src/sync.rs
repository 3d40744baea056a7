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
