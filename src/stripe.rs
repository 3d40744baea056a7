//! Thread identity and striping, shared by the breaker's time window and the retry budget.
//!
//! Both stripe their hot counters the way Java's `LongAdder` does: each thread writes its own
//! copy (on its own cache lines) and readers add the copies up, so threads recording into one
//! breaker or depositing into one budget do not fight over a line. A thread picks its stripe from
//! [`thread_token`], a number handed out in order on first use, so the first threads land on
//! different stripes; the breaker's service also uses it to tell which thread its per-thread
//! state belongs to. [`count`] sizes the stripes for this machine.

/// Stripes for a structure allowed at most `max` (a power of two): `available_parallelism()`
/// rounded up to a power of two, at most `max`. Read from the system once per process.
#[cfg(not(harden_loom))]
pub(crate) fn count(max: usize) -> usize {
    use std::sync::OnceLock;

    static PARALLELISM: OnceLock<usize> = OnceLock::new();
    let parallelism =
        *PARALLELISM.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    parallelism.next_power_of_two().clamp(1, max.max(1))
}

/// Under loom, two stripes whatever the machine, so models explore the same state space
/// everywhere (models that need a race across stripes pick stripes explicitly).
#[cfg(harden_loom)]
pub(crate) fn count(max: usize) -> usize {
    2.min(max.max(1))
}

/// A number fixed per thread on first use, handed out in order (see the module docs).
#[cfg(not(harden_loom))]
#[inline]
pub(crate) fn thread_token() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // NOTE: std atomics on purpose: this counter only spreads threads over stripes and is not
    // part of any loom model.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static TOKEN: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    TOKEN.with(|token| {
        let mut value = token.get();
        if value == usize::MAX {
            // Relaxed: only uniqueness matters, not ordering with other memory.
            value = NEXT.fetch_add(1, Ordering::Relaxed);
            token.set(value);
        }
        value
    })
}

/// Under loom every thread uses stripe 0 unless a model picks one explicitly: the interesting
/// races are on one word.
#[cfg(harden_loom)]
pub(crate) fn thread_token() -> usize {
    0
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;

    #[test]
    fn stripe_counts_are_powers_of_two_within_the_bound() {
        for max in [1, 2, 4, 64] {
            let n = count(max);
            assert!(n.is_power_of_two() && n <= max, "{n} for {max}");
        }
    }

    #[test]
    fn threads_get_distinct_tokens_that_stay_fixed() {
        let mine = thread_token();
        assert_eq!(thread_token(), mine);
        let theirs = std::thread::spawn(thread_token).join().unwrap();
        assert_ne!(theirs, mine);
    }
}
