//! A small harden program on the production clock, for CI to run under valgrind.
//!
//! `cargo build -p harden-production-clock --example under_valgrind` then
//! `valgrind --tool=memcheck --error-exitcode=1 target/debug/examples/under_valgrind`.
//!
//! It reads the clock through every path a service takes (breaker, retry budget, timeout), so a
//! clock that cannot start under valgrind fails here rather than in a user's profiling session.

use std::time::Duration;

use harden::circuit_breaker::CircuitBreaker;
use harden::retry::RetryBudget;
use harden::timeout::TimeoutLayer;
use harden::BoxError;
use tower::{Layer, ServiceExt};

fn main() -> Result<(), BoxError> {
    let breaker = CircuitBreaker::builder().build()?;
    for i in 0..100u32 {
        let _ = breaker.call(|| if i % 10 == 0 { Err("failed") } else { Ok(i) });
    }
    let budget = RetryBudget::default();
    budget.deposit();
    let _ = budget.try_withdraw();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        let service = TimeoutLayer::new(Duration::from_secs(5)).layer(tower::service_fn(
            |x: u32| async move { Ok::<_, BoxError>(x + 1) },
        ));
        let answer = service.oneshot(41).await?;
        assert_eq!(answer, 42);
        Ok::<_, BoxError>(())
    })?;
    println!("breaker state {:?}", breaker.state());
    Ok(())
}
