//! harden's timeout, retry and full stack next to tower's `Timeout` and `Retry`, per call, with a
//! bare `tower::service_fn` baseline measured in the same run: `cargo bench --bench stack`.
//!
//! NOTE: built with harden's dev-dependency features (`test-util` clock); see breaker.rs.

#[path = "rows/harden_rows.rs"]
mod harden_rows;
#[path = "harness/mod.rs"]
mod harness;

use harness::*;
use tower::Layer;

fn main() {
    let cfg = Config::from_env();
    // tower's `Timeout` creates a tokio `Sleep` per call: it needs a time driver in context.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    header("stack", &cfg);
    println!("harden built with its dev-dependency features (`test-util` clock); see `cargo bench -p harden-peers` for the production build.\n");

    let mut g = Group::new(
        "Timeout, retry and the full stack, one thread, synchronous poll",
        &cfg,
    );
    g.baseline(
        "baseline: bare tower::service_fn",
        "poll_ready + call + poll once",
        Expect::AllOk,
        tower_body(bare(0), classify_bare),
    );
    harden_rows::timeout_rows(&mut g, TIMEOUT);
    g.row(
        "timeout ready at once: tower Timeout",
        "tower layer (creates a tokio Sleep per call)",
        Expect::AllOk,
        tower_body(
            tower::timeout::TimeoutLayer::new(TIMEOUT).layer(bare(0)),
            classify_any,
        ),
    );
    harden_rows::retry_rows(&mut g, ATTEMPTS);
    g.row(
        "retry, no retry needed: tower Retry",
        "tower layer, policy: retry errors up to 3 attempts",
        Expect::AllOk,
        tower_body(
            tower::retry::RetryLayer::new(TowerRetry(ATTEMPTS)).layer(bare(0)),
            classify_bare,
        ),
    );
    harden_rows::stack_rows(&mut g, TIMEOUT, ATTEMPTS, RESET);
    g.run();
    println!("{}", g.table());

    println!("### Response future sizes\n");
    println!("| service | bytes |\n|---|---:|");
    for (label, bytes) in harden_rows::future_sizes() {
        println!("| {label} | {bytes} |");
    }
}

fn classify_any(r: &Result<u64, tower::BoxError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) if harden_rows::is_rejection(e.as_ref()) => Outcome::Rejected,
        Err(_) => Outcome::InnerError,
    }
}
