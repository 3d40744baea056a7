//! What a retry that does not retry cannot avoid, next to the retry rows, in one run:
//! `cargo bench -p harden-peers --bench retry_floor` (production build: the coarse clock).
//!
//! The retry rows of `peers` minus these micro-rows is what harden's own code costs. A response
//! future is `'static`, so with a budget it must own a counted reference to it (the `Arc`
//! rows); the budget's deposit is a store, with a coarse clock read on one in eight
//! (`RetryBudget::deposit`).
#![allow(clippy::type_complexity)]

#[path = "../../rows/harden_rows.rs"]
mod harden_rows;
#[path = "../../harness/mod.rs"]
mod harness;

use harness::*;
use std::hint::black_box;
use std::sync::Arc;
use tower::Layer;

/// The shape of the budget's per-stripe handle: one reference-counted line of its own.
#[repr(align(128))]
struct Carrier(#[allow(dead_code)] u64);

fn main() {
    let cfg = Config::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    harness::header("harden-peers, retry floor", &cfg);

    let mut g = Group::new(
        "Retry that does not retry, and the operations it cannot avoid, one thread",
        &cfg,
    );
    g.baseline(
        "baseline: bare tower::service_fn",
        "poll_ready + call + poll once",
        Expect::AllOk,
        tower_body(bare(0), classify_bare),
    );
    harden_rows::retry_rows(&mut g, ATTEMPTS);
    let budget = harden::retry::RetryBudget::new();
    g.row(
        "floor: RetryBudget::deposit, then the bare call",
        "an increment of this thread's stripe, no clock read",
        Expect::AllOk,
        {
            let mut svc = bare(0);
            let mut i = 0u64;
            Box::new(move |n| {
                let mut c = Counts::default();
                for _ in 0..n {
                    black_box(&budget).deposit();
                    c.record(classify_bare(&call_now(&mut svc, i)));
                    i += 1;
                }
                c
            })
        },
    );
    let carrier = Arc::new(Carrier(0));
    g.row(
        "floor: Arc clone + drop, then the bare call",
        "the budget handle a 'static future owns: two locked instructions",
        Expect::AllOk,
        {
            let mut svc = bare(0);
            let mut i = 0u64;
            Box::new(move |n| {
                let mut c = Counts::default();
                for _ in 0..n {
                    let handle = black_box(Arc::clone(&carrier));
                    c.record(classify_bare(&call_now(&mut svc, i)));
                    drop(handle);
                    i += 1;
                }
                c
            })
        },
    );
    // In the full stack the retry's inner service is the breaker over the bulkhead: the clone
    // each response future keeps for a replay costs their reference counts.
    let inner = harden::bulkhead::BulkheadLayer::new(harden_rows::BULKHEAD).layer(bare(0));
    let inner = harden_rows::breaker(RESET).layer().layer(inner);
    g.row(
        "floor: clone + drop of the full stack's inner service (breaker + bulkhead), then the bare call",
        "what the retry's replay copy of the service costs in the full stack",
        Expect::AllOk,
        {
            let mut svc = bare(0);
            let mut i = 0u64;
            Box::new(move |n| {
                let mut c = Counts::default();
                for _ in 0..n {
                    let clone = black_box(inner.clone());
                    c.record(classify_bare(&call_now(&mut svc, i)));
                    drop(clone);
                    i += 1;
                }
                c
            })
        },
    );
    g.run();
    println!("{}", g.table());

    println!("### Response future sizes (production build)\n");
    println!("| service | bytes |\n|---|---:|");
    for (label, bytes) in harden_rows::future_sizes() {
        println!("| {label} | {bytes} |");
    }
}
