//! Loom models of the window's lock-free kinds.

use super::*;
use crate::sync::Arc;

const MS: u64 = 1_000_000;

fn window() -> Window {
    // 4 buckets of 100 ms, 2 stripes.
    Window::with_stripes(
        WindowSpec::Time {
            window: Duration::from_millis(400),
            buckets: 4,
        },
        2,
    )
}

/// Two threads on one word: both outcomes counted, in one bucket.
#[test]
fn loom_same_word_records_are_not_lost() {
    loom::model(|| {
        let w = Arc::new(window());
        let w2 = w.clone();
        let t = loom::thread::spawn(move || w2.record_in(0, 10 * MS, true, false));
        w.record_in(0, 20 * MS, true, false);
        t.join().unwrap();
        assert_eq!(w.counts(20 * MS).failures, 2);
    });
}

/// A record racing with the rotation of its slot to a window later: whatever the
/// interleaving, the snapshot at the later time holds exactly the later outcome, and the
/// later outcome is counted exactly once.
#[test]
fn loom_rotation_neither_loses_nor_double_counts() {
    loom::model(|| {
        let w = Arc::new(window());
        let w2 = w.clone();
        let w3 = w.clone();
        // Slot 0 at epoch 0 (old) and epoch 4 (a window later), plus a second record at 4.
        let old = loom::thread::spawn(move || w2.record_in(0, 50 * MS, true, false));
        let new = loom::thread::spawn(move || w3.record_in(0, 410 * MS, false, false));
        w.record_in(0, 420 * MS, false, true);
        old.join().unwrap();
        new.join().unwrap();
        assert_eq!(
            w.counts(420 * MS),
            Counts {
                successes: 2,
                failures: 0,
                slow: 1
            }
        );
    });
}

/// A record racing with clear: each of its counters is kept or forgotten whole (the outcome
/// and the slow mark are separate words), and the window stays usable.
#[test]
fn loom_clear_racing_with_record() {
    loom::model(|| {
        let w = Arc::new(window());
        let w2 = w.clone();
        let t = loom::thread::spawn(move || w2.record_in(0, 10 * MS, true, true));
        w.clear();
        t.join().unwrap();
        let c = w.counts(10 * MS);
        assert!(c.failures <= 1 && c.slow <= 1 && c.successes == 0, "{c:?}");
        w.record_in(0, 10 * MS, true, false);
        assert_eq!(w.counts(10 * MS).failures, c.failures + 1);
    });
}

fn judged_window() -> Window {
    // 2 buckets of 100 ms, 1 stripe: the smallest window with a current bucket and a rest.
    let w = Window::with_stripes(
        WindowSpec::Time {
            window: Duration::from_millis(200),
            buckets: 2,
        },
        1,
    );
    // Epoch 0 holds two failures (one slow) and a success; the judges run in epoch 1.
    w.record_in(0, 10 * MS, true, false);
    w.record_in(0, 20 * MS, true, true);
    w.record_in(0, 30 * MS, false, false);
    w
}

use crate::sync::loom_model as model;

/// A judge publishing the rest races a clear: once both are done, no judge uses totals
/// read before the clear.
#[test]
fn loom_published_rest_never_outlives_a_clear() {
    model(|| {
        let w = Arc::new(judged_window());
        let w2 = w.clone();
        let t = loom::thread::spawn(move || {
            w2.judge_counts(110 * MS, true, |_| true);
        });
        w.clear();
        t.join().unwrap();
        assert_eq!(w.judge_counts(120 * MS, true, |_| true), Counts::default());
    });
}

/// Two judges publish at once: each reads whole totals (never a mix of two publications
/// or a half-written one), and so does a judge afterwards.
#[test]
fn loom_judges_read_whole_published_totals() {
    model(|| {
        let w = Arc::new(judged_window());
        let expected = w.counts(110 * MS);
        let w2 = w.clone();
        let t = loom::thread::spawn(move || w2.judge_counts(110 * MS, true, |_| true));
        let mine = w.judge_counts(110 * MS, true, |_| true);
        assert_eq!(t.join().unwrap(), expected);
        assert_eq!(mine, expected);
        assert_eq!(w.judge_counts(110 * MS, true, |_| true), expected);
    });
}

/// The packed count window: two recorders and a clear racing; every record lands wholly
/// before the clear (forgotten) or after it (counted with its slow mark), none is lost
/// otherwise.
#[test]
fn loom_packed_count_window_records_and_clears_whole() {
    loom::model(|| {
        let w = Arc::new(Window::new(WindowSpec::Count { calls: 2 }));
        let (w2, w3) = (w.clone(), w.clone());
        let a = loom::thread::spawn(move || w2.record(0, true, true));
        let b = loom::thread::spawn(move || w3.record(0, false, false));
        w.clear();
        a.join().unwrap();
        b.join().unwrap();
        let c = w.counts(0);
        assert!(c.calls() <= 2 && c.failures == c.slow, "{c:?}");
        // Once all are done, the window keeps exactly the last 2 of what follows.
        w.record(0, false, false);
        w.record(0, true, false);
        assert_eq!(
            w.counts(0),
            Counts {
                successes: 1,
                failures: 1,
                slow: 0
            }
        );
    });
}

/// Without a clear, two racing records into a packed window are both kept.
#[test]
fn loom_packed_count_window_loses_nothing() {
    loom::model(|| {
        let w = Arc::new(Window::new(WindowSpec::Count { calls: 3 }));
        let w2 = w.clone();
        let t = loom::thread::spawn(move || w2.record(0, true, false));
        w.record(0, false, true);
        t.join().unwrap();
        assert_eq!(
            w.counts(0),
            Counts {
                successes: 1,
                failures: 1,
                slow: 1
            }
        );
    });
}

/// The count ring keeps the newest outcome of a slot two recorders race for.
#[test]
fn loom_count_window_keeps_exactly_the_last_n() {
    loom::model(|| {
        let w = Arc::new(Window::count_ring(1));
        let w2 = w.clone();
        let t = loom::thread::spawn(move || w2.record(0, true, false));
        w.record(0, false, false);
        t.join().unwrap();
        assert_eq!(w.counts(0).calls(), 1);
    });
}

/// The breaker's rule at 50%, without volume.
fn half(c: &Counts) -> bool {
    c.failures * 2 >= c.calls()
}

/// Shares (`judge`'s docs): two failures on two stripes race; one judge stays within its share
/// and reads only its stripe, the other is over its share and escalates. Together they reach
/// 50%: at least one of them must see it.
#[test]
fn loom_judges_on_their_shares_never_both_miss_a_trip() {
    model(|| {
        let w = Arc::new(Window::with_stripes(
            WindowSpec::Time {
                window: Duration::from_millis(200),
                buckets: 2,
            },
            2,
        ));
        // Rest: 3 successes in epoch 0. Epoch 1: stripe 0 has one judged failure.
        for _ in 0..3 {
            w.record_in(0, 10 * MS, false, false);
        }
        w.record_in(0, 110 * MS, true, false);
        assert!(!half(&w.judge_counts_in(0, 110 * MS, false, half)));
        let w2 = w.clone();
        // Stripe 0 then holds 2 failures: rest + 2 x own = 4 of 7, over its share.
        let a = loom::thread::spawn(move || {
            w2.record_in(0, 120 * MS, true, false);
            half(&w2.judge_counts_in(0, 120 * MS, false, half))
        });
        // Stripe 1 holds 1 failure: rest + 2 x own = 2 of 5, within its share.
        w.record_in(1, 120 * MS, true, false);
        let b = half(&w.judge_counts_in(1, 120 * MS, false, half));
        let a = a.join().unwrap();
        assert!(a || b, "3 failures of 6 calls: a trip is due");
    });
}

/// The general ring: two failures race into their slots; the judges' fences make at least one
/// of them see both.
#[test]
fn loom_ring_judges_never_both_miss_a_racing_failure() {
    model(|| {
        let w = Arc::new(Window::count_ring(4));
        w.record_in(1, 0, false, false);
        let w2 = w.clone();
        let a = loom::thread::spawn(move || {
            w2.record_in(0, 0, true, false);
            w2.judge_counts_in(0, 0, false, |_| true)
        });
        w.record_in(1, 0, true, false);
        let b = w.judge_counts_in(1, 0, false, |_| true);
        let a = a.join().unwrap();
        assert_eq!(a.failures.max(b.failures), 2, "{a:?} {b:?}");
        assert_eq!(
            w.counts(0),
            Counts {
                successes: 1,
                failures: 2,
                slow: 0
            }
        );
    });
}
