//! The settings a running retry policy can change: its attempts and its backoff.
//!
//! Every clone of a policy shares one [`RetryTune`]. A change bumps a version shared by every
//! policy; each service keeps a copy of the values and refreshes it when the version moved, so
//! the steady state pays one load and one compare per call, and the call path takes no lock.
//! A change of what `tracing` wants of the retry bumps the same version (see `super::trace`),
//! so the check that a call is traced costs nothing more.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use super::backoff::{Backoff, Jitter, Shape};
use crate::clock::duration_to_nanos;

/// Bumped after every change of any policy, and when `tracing`'s interest changes.
static VERSION: AtomicU64 = AtomicU64::new(0);

/// The version: the values a service loaded are current while it has not moved.
#[inline(always)]
pub(crate) fn version() -> u64 {
    // Acquire: pairs with the Release in `bump`, so the values (and the tracing interest) read
    // after it are at least those of this version.
    VERSION.load(Ordering::Acquire)
}

/// Tells every service to reload: values it holds (or whether it traces) may be stale.
pub(crate) fn bump() {
    // Release: publishes what was stored before the bump to every reader of the new version.
    VERSION.fetch_add(1, Ordering::Release);
}

/// The live values of one policy, always current (the built ones until the first change).
#[derive(Debug)]
pub(crate) struct RetryTune {
    max_attempts: AtomicU32,
    shape: AtomicU8,
    initial: AtomicU64,
    step: AtomicU64,
    multiplier: AtomicU64,
    jitter: AtomicU8,
    max_delay: AtomicU64,
}

impl RetryTune {
    pub(crate) fn new(max_attempts: u32, backoff: &Backoff) -> Self {
        let tune = RetryTune {
            max_attempts: AtomicU32::new(0),
            shape: AtomicU8::new(0),
            initial: AtomicU64::new(0),
            step: AtomicU64::new(0),
            multiplier: AtomicU64::new(0),
            jitter: AtomicU8::new(0),
            max_delay: AtomicU64::new(0),
        };
        tune.store(max_attempts, backoff);
        tune
    }

    /// Publishes validated values.
    pub(crate) fn set(&self, max_attempts: u32, backoff: &Backoff) {
        self.store(max_attempts, backoff);
        bump();
    }

    fn store(&self, max_attempts: u32, backoff: &Backoff) {
        // Relaxed for each value: the version's Release in `bump` publishes them. Two changes racing
        // may leave a mix of their values, each of which was validated on its own.
        let r = Ordering::Relaxed;
        self.max_attempts.store(max_attempts, r);
        let (shape, initial, step, multiplier) = match backoff.shape {
            Shape::Constant(d) => (0, d, Duration::ZERO, 0.0),
            Shape::Linear { initial, step } => (1, initial, step, 0.0),
            Shape::Exponential {
                initial,
                multiplier,
            } => (2, initial, Duration::ZERO, multiplier),
        };
        self.shape.store(shape, r);
        self.initial.store(duration_to_nanos(initial), r);
        self.step.store(duration_to_nanos(step), r);
        self.multiplier.store(f64::to_bits(multiplier), r);
        self.jitter.store(
            match backoff.jitter_kind() {
                Jitter::None => 0,
                Jitter::Full => 1,
                Jitter::Equal => 2,
                Jitter::Decorrelated => 3,
            },
            r,
        );
        self.max_delay
            .store(duration_to_nanos(backoff.delay_cap()), r);
    }

    /// The values of the last change.
    pub(crate) fn load(&self) -> (u32, Backoff) {
        // Relaxed: ordered after the version's Acquire by the caller.
        let r = Ordering::Relaxed;
        let nanos = |a: &AtomicU64| Duration::from_nanos(a.load(r));
        let initial = nanos(&self.initial);
        let backoff = match self.shape.load(r) {
            0 => Backoff::constant(initial),
            1 => Backoff::linear(initial, nanos(&self.step)),
            _ => Backoff::exponential(initial, f64::from_bits(self.multiplier.load(r))),
        }
        .jitter(match self.jitter.load(r) {
            0 => Jitter::None,
            1 => Jitter::Full,
            2 => Jitter::Equal,
            _ => Jitter::Decorrelated,
        })
        .max_delay(nanos(&self.max_delay));
        (self.max_attempts.load(r), backoff)
    }
}
