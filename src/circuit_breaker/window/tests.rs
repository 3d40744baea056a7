//! The window's unit tests and property tests against naive models.

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;

const MS: u64 = 1_000_000;

fn time_window(window_ms: u64, buckets: u32, stripes: usize) -> Window {
    Window::with_stripes(
        WindowSpec::Time {
            window: Duration::from_millis(window_ms),
            buckets,
        },
        stripes,
    )
}

#[test]
fn failures_age_out_bucket_by_bucket() {
    let w = time_window(1000, 10, 1);
    w.record(0, true, false);
    w.record(150 * MS, false, true);
    assert_eq!(
        w.counts(150 * MS),
        Counts {
            successes: 1,
            failures: 1,
            slow: 1
        }
    );
    // At 1000 ms the bucket [0, 100) has left the window; [100, 200) has not.
    assert_eq!(w.counts(1000 * MS).failures, 0);
    assert_eq!(w.counts(1000 * MS).successes, 1);
    assert_eq!(w.counts(1100 * MS), Counts::default());
}

// The epoch tag kept only its low bits but was compared in full: past 2^60 ns nothing counted.
#[test]
fn counts_hold_for_the_clocks_whole_range() {
    for (window_ms, buckets) in [
        (1000, 10),
        (1, 1),
        (10_000, 1000),
        (365 * 24 * 3600 * 1000, 1),
    ] {
        let bucket = window_ms * MS / buckets;
        for now in [1u64 << 60, 3 << 61, u64::MAX - 2 * bucket] {
            let w = time_window(window_ms, buckets as u32, 2);
            w.record_in(0, now, true, false);
            w.record_in(1, now, false, true);
            let both = Counts {
                successes: 1,
                failures: 1,
                slow: 1,
            };
            assert_eq!(w.counts(now), both, "{window_ms} ms at {now}");
            assert_eq!(
                w.judge_counts(now, true, |_| true),
                both,
                "{window_ms} ms at {now}"
            );
            // And they still age out a window later.
            if let Some(later) = now.checked_add(window_ms * MS) {
                assert_eq!(w.counts(later).calls(), 0);
            }
        }
    }
}

#[test]
fn slot_reuse_starts_from_zero() {
    let w = time_window(1000, 10, 1);
    w.record(5 * MS, true, false);
    w.record(5 * MS, true, false);
    // Same slot, one window later.
    w.record(1005 * MS, true, false);
    assert_eq!(w.counts(1005 * MS).failures, 1);
}

#[test]
fn a_record_older_than_its_slot_is_dropped() {
    let w = time_window(1000, 10, 1);
    w.record(1005 * MS, false, false);
    w.record(5 * MS, true, false); // stale clock reading, a window behind
    assert_eq!(
        w.counts(1005 * MS),
        Counts {
            successes: 1,
            failures: 0,
            slow: 0
        }
    );
}

#[test]
fn clear_forgets_and_later_records_count() {
    let w = time_window(1000, 10, 2);
    w.record_in(0, 10 * MS, true, true);
    w.record_in(1, 10 * MS, false, false);
    w.clear();
    assert_eq!(w.counts(10 * MS), Counts::default());
    w.record_in(1, 10 * MS, true, false);
    assert_eq!(w.counts(10 * MS).failures, 1);
}

#[test]
fn judges_read_the_current_bucket_fresh_and_the_rest_once_per_epoch() {
    let w = time_window(1000, 10, 2);
    w.record_in(0, 50 * MS, true, false);
    w.record_in(1, 150 * MS, false, false);
    // First judge of the epoch: reads everything, publishes the rest.
    assert_eq!(w.judge_counts(150 * MS, false, |_| true).calls(), 2);
    // Records into the current bucket are seen by the next judge at once.
    w.record_in(0, 160 * MS, true, false);
    w.record_in(1, 170 * MS, true, false);
    assert_eq!(w.judge_counts(170 * MS, false, |_| true).failures, 3);
    // A late record into an older bucket (its clock was read before the epoch turned) is
    // seen by stats at once and by judges from the next epoch on.
    w.record_in(0, 90 * MS, true, false);
    assert_eq!(w.counts(170 * MS).failures, 4);
    assert_eq!(w.judge_counts(180 * MS, false, |_| true).failures, 3);
    assert_eq!(w.judge_counts(250 * MS, false, |_| true).failures, 4);
    // A clear makes the published rest stale at once.
    w.clear();
    assert_eq!(w.judge_counts(250 * MS, true, |_| true), Counts::default());
    w.record_in(1, 260 * MS, true, false);
    assert_eq!(w.judge_counts(260 * MS, false, |_| true).failures, 1);
}

#[test]
fn count_window_keeps_the_last_n() {
    for w in [
        Window::new(WindowSpec::Count { calls: 3 }),
        Window::count_ring(3),
    ] {
        count_window_keeps_the_last_3(w);
    }
}

#[test]
fn small_count_windows_are_one_word_and_larger_ones_a_ring() {
    let packed = Window::new(WindowSpec::Count {
        calls: PACKED_MAX_CALLS,
    });
    assert!(matches!(packed.kind, Kind::Packed(_)));
    let ring = Window::new(WindowSpec::Count {
        calls: PACKED_MAX_CALLS + 1,
    });
    assert!(matches!(ring.kind, Kind::Count(_)));
    // The widest packed window keeps its last call and wraps without spilling into the
    // position and fill fields.
    for i in 0..3 * PACKED_MAX_CALLS {
        packed.record(0, i % 3 == 0, i % 9 == 0);
    }
    assert_eq!(
        packed.counts(0),
        Counts {
            successes: 18,
            failures: 9,
            slow: 3
        }
    );
}

fn count_window_keeps_the_last_3(w: Window) {
    for failure in [true, true, false, false, true] {
        w.record(0, failure, false);
    }
    assert_eq!(
        w.counts(0),
        Counts {
            successes: 2,
            failures: 1,
            slow: 0
        }
    );
    w.clear();
    assert_eq!(w.counts(0), Counts::default());
    w.record(0, false, true);
    assert_eq!(
        w.counts(0),
        Counts {
            successes: 1,
            failures: 0,
            slow: 1
        }
    );
}

#[test]
fn default_window_is_small() {
    let w = Window::new(WindowSpec::Time {
        window: Duration::from_secs(10),
        buckets: 10,
    });
    // 30 counters round up to 4 cache lines per stripe.
    assert!(w.heap_bytes() <= MAX_STRIPES * 256, "{}", w.heap_bytes());
}

#[test]
fn huge_buckets_do_not_overflow_the_layout() {
    let w = time_window(u64::MAX / 1_000_000 / 2, 1, 1);
    w.record(u64::MAX / 4, true, false);
    assert_eq!(w.counts(u64::MAX / 4).failures, 1);
}

#[test]
fn threads_on_their_own_stripes_lose_nothing() {
    let w = std::sync::Arc::new(time_window(10_000, 10, 4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u64 {
                    w.record(5 * MS, i % 10 == 0, i % 100 == 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        w.counts(5 * MS),
        Counts {
            successes: 36_000,
            failures: 4_000,
            slow: 400
        }
    );
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Record {
        stripe: usize,
        failure: bool,
        slow: bool,
    },
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..400 * MS).prop_map(Op::Advance),
        6 => (0usize..4, any::<bool>(), any::<bool>())
            .prop_map(|(stripe, failure, slow)| Op::Record { stripe, failure, slow }),
        1 => Just(Op::Clear),
    ]
}

fn model_counts(records: &[(u64, bool, bool)], keep: impl Fn(u64) -> bool) -> Counts {
    let mut c = Counts::default();
    for &(_key, failure, slow) in records.iter().filter(|r| keep(r.0)) {
        if failure {
            c.failures += 1;
        } else {
            c.successes += 1;
        }
        if slow {
            c.slow += 1;
        }
    }
    c
}

/// A breaker's rate rule: failures at or over `threshold` percent of calls, or (if set) slow
/// calls at or over `slow` percent — linear in the counts, as the share judge requires.
fn rule(threshold: f64, slow: Option<f64>) -> impl Fn(&Counts) -> bool {
    move |c: &Counts| {
        let total = c.calls() as f64;
        c.failures as f64 * 100.0 >= threshold * total
            || matches!(slow, Some(pct) if c.slow as f64 * 100.0 >= pct * total)
    }
}

#[test]
fn a_judge_within_its_share_reads_only_its_stripe_and_one_over_it_reads_all() {
    let over = rule(50.0, None);
    let w = time_window(1000, 10, 2);
    // A healthy rest: 10 successes in the first bucket.
    for _ in 0..10 {
        w.record_in(0, 10 * MS, false, false);
    }
    w.record_in(0, 150 * MS, true, false);
    // First judge of the epoch: exact, and publishes the rest.
    assert_eq!(w.judge_counts_in(0, 150 * MS, false, &over).failures, 1);
    // Stripe 1 records failures nobody judges (the breaker never does this): a judge of
    // stripe 0 within its share does not see them; the view it returns does not trip.
    for _ in 0..20 {
        w.record_in(1, 160 * MS, true, false);
    }
    w.record_in(0, 160 * MS, false, false);
    let view = w.judge_counts_in(0, 160 * MS, false, &over);
    assert_eq!(
        view,
        Counts {
            successes: 10 + 2,
            failures: 2,
            slow: 0
        },
        "rest + 2 x stripe 0's current bucket"
    );
    assert!(!over(&view));
    // A judge of stripe 1 is over its share: it reads every stripe, and so does every judge
    // of the epoch after it.
    assert_eq!(w.judge_counts_in(1, 160 * MS, false, &over).failures, 21);
    assert_eq!(w.judge_counts_in(0, 170 * MS, false, &over).failures, 21);
    // The next epoch publishes a new rest and starts without an escalation.
    w.record_in(0, 250 * MS, false, false);
    assert_eq!(w.judge_counts_in(0, 250 * MS, false, &over).failures, 21);
    // That rest (21 failures of 32 calls) is over 50% alone: no shares, every stripe is read.
    w.record_in(1, 260 * MS, true, false);
    assert_eq!(w.judge_counts_in(0, 260 * MS, false, &over).failures, 22);
}

#[test]
fn a_rest_over_the_threshold_leaves_no_share_to_idle_stripes() {
    // The share rule: with a rest at or over the threshold, an idle stripe
    // (nothing in the current bucket) already holds more than a share, so a judge reads all.
    let over = rule(50.0, None);
    let w = time_window(1000, 10, 2);
    for _ in 0..10 {
        w.record_in(1, 10 * MS, true, false);
    }
    w.record_in(0, 150 * MS, false, false);
    w.record_in(0, 150 * MS, true, false);
    let _ = w.judge_counts_in(0, 150 * MS, false, &over);
    for _ in 0..9 {
        w.record_in(0, 160 * MS, false, false);
    }
    w.record_in(0, 160 * MS, true, false);
    // Exact: 12 failures of 22 calls, over 50%; rest + 2 x own would be 14 of 34.
    let c = w.judge_counts_in(0, 160 * MS, false, &over);
    assert_eq!((c.failures, c.successes), (12, 10));
    assert!(over(&c));
}

proptest! {
    /// The time window against a list of (epoch, outcome) filtered by age.
    #[test]
    fn time_window_matches_a_naive_model(
        window_ms in 1u64..2_000,
        buckets in 1u32..12,
        stripes in 1usize..5,
        ops in proptest::collection::vec(op(), 1..200),
        threshold in 1.0f64..=100.0,
        slow_pct in proptest::option::of(1.0f64..=100.0),
    ) {
        let over = rule(threshold, slow_pct);
        let window_ms = window_ms.max(u64::from(buckets));
        let w = time_window(window_ms, buckets, stripes);
        let bucket = window_ms * MS / u64::from(buckets);
        let mut now = 0u64;
        let mut records: Vec<(u64, bool, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Advance(d) => now += d,
                Op::Record { stripe, failure, slow } => {
                    w.record_in(stripe, now, failure, slow);
                    records.push((now / bucket, failure, slow));
                    if failure || slow {
                        // As the breaker does: the recorder judges. Its view decides the rule
                        // as the exact counts do (shares, `judge`'s docs).
                        let epoch = now / bucket;
                        let exact = model_counts(&records, |e| e + u64::from(buckets) > epoch);
                        let judged = w.judge_counts_in(stripe, now, slow_pct.is_some(), &over);
                        prop_assert_eq!(over(&judged), over(&exact), "judged {:?}, exact {:?}", judged, exact);
                    }
                }
                Op::Clear => {
                    w.clear();
                    records.clear();
                }
            }
            let epoch = now / bucket;
            let expected = model_counts(&records, |e| e + u64::from(buckets) > epoch);
            prop_assert_eq!(w.counts(now), expected);
            // A judge reads the same through the published totals of the other buckets.
            prop_assert_eq!(w.judge_counts(now, true, |_| true), expected);
            let judged = w.judge_counts(now, false, |_| true);
            prop_assert_eq!((judged.successes, judged.failures), (expected.successes, expected.failures));
        }
    }

    /// The count window against a queue of the last N outcomes.
    #[test]
    fn count_window_matches_a_naive_model(
        calls in 1u32..40,
        ring in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        // Small windows are one packed word unless `ring` asks for the general ring.
        let w = if ring {
            Window::count_ring(calls)
        } else {
            Window::new(WindowSpec::Count { calls })
        };
        let mut last: VecDeque<(u64, bool, bool)> = VecDeque::new();
        for op in ops {
            match op {
                Op::Advance(_) => {}
                Op::Record { stripe, failure, slow } => {
                    w.record_in(stripe, 0, failure, slow);
                    last.push_back((0, failure, slow));
                    if last.len() > calls as usize {
                        last.pop_front();
                    }
                    if failure || slow {
                        // The recorder's judge sees exactly the last N calls.
                        let records: Vec<_> = last.iter().copied().collect();
                        prop_assert_eq!(
                            w.judge_counts_in(stripe, 0, true, |_| true),
                            model_counts(&records, |_| true)
                        );
                    }
                }
                Op::Clear => {
                    w.clear();
                    last.clear();
                }
            }
            let records: Vec<_> = last.iter().copied().collect();
            prop_assert_eq!(w.counts(0), model_counts(&records, |_| true));
        }
    }
}
