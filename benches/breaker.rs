//! harden's circuit breaker, per call, next to a bare `tower::service_fn` measured in the same
//! run: `cargo bench --bench breaker` (`HARDEN_BENCH_QUICK=1` for a smoke run).
//!
//! NOTE: benches of the `harden` package build harden with its dev-dependency features, i.e. with
//! `test-util`, whose clock is `tokio::time::Instant`; the production build (coarse monotonic
//! clock) is measured by `cargo bench -p harden-peers`, which depends on harden without it.

#[path = "rows/harden_rows.rs"]
mod harden_rows;
#[path = "harness/mod.rs"]
mod harness;

use harness::*;

fn main() {
    let cfg = Config::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    header("breaker", &cfg);
    println!("harden built with its dev-dependency features (`test-util` clock); see `cargo bench -p harden-peers` for the production build.\n");

    let mut g = Group::new("Circuit breaker, one thread, synchronous poll", &cfg);
    g.baseline(
        "baseline: bare tower::service_fn",
        "poll_ready + call + poll once",
        Expect::AllOk,
        tower_body(bare(0), classify_bare),
    );
    harden_rows::closed_rows(&mut g, "closed success", 0, Expect::AllOk);
    harden_rows::sync_closed_rows(&mut g, "closed success", 0, Expect::AllOk);
    harden_rows::open_rows(&mut g, RESET);
    harden_rows::sync_open_rows(&mut g, RESET);
    harden_rows::closed_rows(
        &mut g,
        "10% failures",
        FAIL_EVERY,
        Expect::InnerErrorEvery(FAIL_EVERY),
    );
    harden_rows::sync_closed_rows(
        &mut g,
        "10% failures",
        FAIL_EVERY,
        Expect::InnerErrorEvery(FAIL_EVERY),
    );
    g.run();
    println!("{}", g.table());

    let mut mt = MtGroup::new(
        "Threads sharing one breaker, closed success, time-based",
        &cfg,
    );
    let mut add = |label: &str, note: &str, make: MakeWorker| {
        let one = format!("{label}: 1 thread");
        mt.threads(&one, note, 1, Some(&one), Expect::AllOk, make.clone());
        mt.threads(
            &format!("{label}: 2 threads"),
            note,
            2,
            Some(&one),
            Expect::AllOk,
            make,
        );
    };
    add(
        "baseline (bare service_fn)",
        "own clone per thread",
        mt_tower(bare(0), classify_bare),
    );
    for (label, make) in harden_rows::mt_workers() {
        add(
            &label,
            "one breaker, own service clone per thread (one layer)",
            make,
        );
    }
    mt.run();
    println!("{}", mt.table());

    println!("### Heap bytes per breaker instance\n");
    println!("| breaker | bytes per instance |\n|---|---:|");
    for (label, bytes) in harden_rows::heap_rows() {
        println!("| {label} | {bytes:.0} |");
    }
}
