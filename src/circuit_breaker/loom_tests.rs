//! Loom models of the breaker's state machine core.
//! Run with `RUSTFLAGS="--cfg harden_loom" cargo test -p harden --release --lib loom`.

use std::time::Duration;

use loom::thread;

use super::config::CircuitBreakerBuilder;
use super::core::Core;
use super::State;
use crate::circuit_breaker::Outcome;
use crate::clock::Clock;
use crate::sync::{Arc, AtomicUsize, Ordering};

const MS: u64 = 1_000_000;

/// A one-bucket window keeps the window's own interleavings (modelled in `window.rs`) out of the way.
fn core(b: CircuitBreakerBuilder) -> Arc<Core> {
    let b = b.rolling_window(Duration::from_secs(1), 1);
    Arc::new(Core::new(b.validate().expect("valid"), Clock::new(), 0))
}

use crate::sync::loom_model as model;

#[test]
fn loom_concurrent_failures_trip_closed_to_open_exactly_once() {
    model(|| {
        let core = core(
            CircuitBreakerBuilder::new()
                .volume_threshold(2)
                .error_threshold_percentage(50.0),
        );
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let core = core.clone();
                let permit = core.try_acquire(0).expect("closed admits");
                thread::spawn(move || core.on_result(permit, 0, Outcome::Failure, MS))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(core.state(), State::Open);
        // Every transition bumps the generation once: exactly one happened.
        assert_eq!(core.generation(), 1);
    });
}

#[test]
fn loom_half_open_never_admits_more_than_max_calls() {
    model(|| {
        let core = core(
            CircuitBreakerBuilder::new()
                .volume_threshold(1)
                .reset_timeout(Duration::from_millis(1))
                .half_open_max_calls(1),
        );
        let p = core.try_acquire(0).unwrap();
        core.on_result(p, 0, Outcome::Failure, 0);
        assert_eq!(core.state(), State::Open);
        let admitted = Arc::new(AtomicUsize::new(0));
        let probe = |core: Arc<Core>, admitted: Arc<AtomicUsize>, finish: bool| {
            move || {
                if let Ok(permit) = core.try_acquire(2 * MS) {
                    // SeqCst: a plain counter of holders, checked against the bound.
                    let holders = admitted.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(holders <= 1, "{holders} probes admitted at once");
                    admitted.fetch_sub(1, Ordering::SeqCst);
                    if finish {
                        core.on_result(permit, 0, Outcome::Ignored, 2 * MS);
                    } else {
                        core.release(permit); // what dropping the future does
                    }
                }
            }
        };
        let a = thread::spawn(probe(core.clone(), admitted.clone(), true));
        let b = thread::spawn(probe(core.clone(), admitted.clone(), false));
        probe(core.clone(), admitted.clone(), false)();
        a.join().unwrap();
        b.join().unwrap();
        // No slot leaked: a probe is admitted now.
        assert_eq!(core.state(), State::HalfOpen);
        assert!(core.try_acquire(2 * MS).is_ok());
    });
}

// Bound 2 (not 3): the record path is the longest in the crate, and bound 3 takes minutes. Two
// preemptions still put the reset between any two steps of the record and the record between
// any two steps of the reset; `LOOM_MAX_PREEMPTIONS=3` searches deeper.
#[test]
fn loom_reset_racing_record_leaves_a_consistent_state() {
    crate::sync::loom_model_bounded(2, || {
        let core = core(CircuitBreakerBuilder::new().volume_threshold(1));
        let permit = core.try_acquire(0).unwrap();
        let recorder = {
            let core = core.clone();
            thread::spawn(move || core.on_result(permit, 0, Outcome::Failure, MS))
        };
        core.set_manual(State::Closed);
        recorder.join().unwrap();
        assert_eq!(core.state(), State::Closed);
        // The `aux` protocol: the trip's publication of its (older) generation,
        // racing the reset's, never replaces the reset's.
        assert!(core.aux_is_current());
        let failures = core.counts(MS).failures;
        match core.generation() {
            // The call tripped the breaker before the reset: the reset cleared its failure.
            2 => assert_eq!(failures, 0),
            // The reset came first (or the trip lost its CAS): at most the racing record is left.
            1 => assert!(failures <= 1),
            g => panic!("generation {g}"),
        }
        assert!(core.try_acquire(MS).is_ok());
    });
}

// A reader that finds an Open generation without its deadline (the opener has not published
// yet) publishes one itself; opener and reader race, and the breaker is never left without one.
#[test]
fn loom_reader_racing_the_opener_never_leaves_open_without_a_deadline() {
    model(|| {
        let core = core(
            CircuitBreakerBuilder::new()
                .volume_threshold(1)
                .reset_timeout(Duration::from_millis(10)),
        );
        let permit = core.try_acquire(0).unwrap();
        let tripper = {
            let core = core.clone();
            thread::spawn(move || core.on_result(permit, 0, Outcome::Failure, MS))
        };
        let admitted = core.try_acquire(2 * MS);
        tripper.join().unwrap();
        assert!(core.aux_is_current());
        match admitted {
            // Before the trip: a closed call.
            Ok(p) => {
                assert_eq!(p.kind(), super::core::Kind::Closed);
                core.release(p);
            }
            Err(open) => assert!(open.retry_after() <= Some(Duration::from_millis(10))),
        }
        assert_eq!(core.state(), State::Open);
        let left = core.next_probe_in(2 * MS).expect("open");
        assert!(left <= Duration::from_millis(10), "{left:?}");
        assert!(
            core.try_acquire(13 * MS).is_ok(),
            "a probe once the deadline passed"
        );
    });
}

#[test]
fn loom_a_new_window_never_holds_a_call_that_started_on_the_old_one() {
    use super::window::WindowSpec;
    model(|| {
        let core = core(
            CircuitBreakerBuilder::new()
                .volume_threshold(2)
                .error_threshold_percentage(50.0),
        );
        // A call admitted on the window its service holds, failing while two changes race.
        let window = core.windows.load_full();
        let permit = core.try_acquire_with(&window, || 0).expect("closed admits");
        let caller = {
            let core = core.clone();
            thread::spawn(move || core.on_result_in(&window, permit, 0, Outcome::Failure, MS))
        };
        let changers: Vec<_> = [2, 4]
            .into_iter()
            .map(|secs| {
                let core = core.clone();
                thread::spawn(move || {
                    core.windows.replace(WindowSpec::Time {
                        window: Duration::from_secs(secs),
                        buckets: 1,
                    })
                })
            })
            .collect();
        caller.join().unwrap();
        for t in changers {
            t.join().unwrap();
        }
        let current = core.windows.load();
        assert_eq!(
            core.windows.version(),
            current.version(),
            "services compare against the window that is current"
        );
        assert_eq!(current.counts(MS).calls(), 0, "the new window starts empty");
        assert_eq!(
            core.state(),
            State::Closed,
            "one failure is under the volume"
        );
    });
}
