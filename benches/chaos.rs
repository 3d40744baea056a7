//! What `harden::chaos` costs a call, next to a bare `tower::service_fn` measured in the same
//! run: `cargo bench --bench chaos`. The rows that matter are the pass-through ones (a chaos
//! layer left in a build with every rate 0, or disabled); the others show the price of the
//! per-call decision and of an injected error.
//!
//! NOTE: built with harden's dev-dependency features (`test-util` clock), as the other benches.

#[path = "harness/mod.rs"]
mod harness;

use harden::chaos::{Chaos, Faults};
use harness::*;
use tower::Layer;

fn main() {
    let cfg = Config::from_env();
    header("chaos", &cfg);
    let chaos = |faults: Faults, enabled: bool| {
        Chaos::builder()
            .faults(faults)
            .enabled(enabled)
            .build()
            .expect("valid faults")
    };
    let mut g = Group::new("harden::chaos, one thread, synchronous poll", &cfg);
    g.baseline(
        "baseline: bare tower::service_fn",
        "poll_ready + call + poll once",
        Expect::AllOk,
        tower_body(bare(0), classify_bare),
    );
    g.row(
        "reference: harden TimeoutLayer, ready at once",
        "another pass-through layer (boxes errors, wraps the future)",
        Expect::AllOk,
        tower_body(
            harden::timeout::TimeoutLayer::new(std::time::Duration::from_secs(1)).layer(bare(0)),
            classify_any,
        ),
    );
    g.row(
        "chaos, every rate 0",
        "pass-through: four relaxed loads",
        Expect::AllOk,
        tower_body(
            chaos(Faults::new(), true).layer().layer(bare(0)),
            classify_any,
        ),
    );
    g.row(
        "chaos, disabled",
        "pass-through: one relaxed load",
        Expect::AllOk,
        tower_body(
            chaos(Faults::new().with_error_rate(1.0), false)
                .layer()
                .layer(bare(0)),
            classify_any,
        ),
    );
    g.row(
        "chaos, active, no fault drawn",
        "error rate 1e-12: call number, seeded generator, two draws",
        Expect::AllOk,
        tower_body(
            chaos(Faults::new().with_error_rate(1e-12), true)
                .layer()
                .layer(bare(0)),
            classify_any,
        ),
    );
    g.row(
        "chaos, every call an injected error",
        "error rate 1: the decision plus a boxed InjectedError",
        Expect::InnerErrorEvery(1),
        tower_body(
            chaos(Faults::new().with_error_rate(1.0), true)
                .layer()
                .layer(bare(0)),
            classify_any,
        ),
    );
    g.run();
    println!("{}", g.table());
}

fn classify_any(r: &Result<u64, tower::BoxError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(_) => Outcome::InnerError,
    }
}
