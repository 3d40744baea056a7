//! A circuit breaker with a fallback in front of an upstream that goes
//! healthy → failing → slow → healthy, on a fixed seed, in about 12 seconds.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! It prints a line for every state transition of the breaker, a line per second with the
//! counts of that second, and a summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harden::circuit_breaker::error::CircuitOpen;
use harden::circuit_breaker::{CircuitBreaker, EventKind, State};
use harden::fallback::FallbackLayer;
use harden::timeout::TimeoutLayer;
use harden::BoxError;
use tokio::time::Instant;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

const PHASE: Duration = Duration::from_secs(3);
const CALL_EVERY: Duration = Duration::from_millis(10);
const SEED: u64 = 0x5eed_2026;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Healthy,
    Failing,
    Slow,
    Recovered,
}

impl Phase {
    fn at(elapsed: Duration) -> Option<Phase> {
        match elapsed.as_millis() / PHASE.as_millis() {
            0 => Some(Phase::Healthy),
            1 => Some(Phase::Failing),
            2 => Some(Phase::Slow),
            3 => Some(Phase::Recovered),
            _ => None,
        }
    }
}

/// xorshift64*: deterministic, so every run tells the same story.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default)]
struct Counts {
    successes: AtomicU64,
    failures: AtomicU64,
    rejections: AtomicU64,
    fallbacks: AtomicU64,
}

impl Counts {
    fn take(&self) -> [u64; 4] {
        [
            self.successes.swap(0, Ordering::Relaxed),
            self.failures.swap(0, Ordering::Relaxed),
            self.rejections.swap(0, Ordering::Relaxed),
            self.fallbacks.swap(0, Ordering::Relaxed),
        ]
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let counts = Arc::new(Counts::default());

    let breaker = CircuitBreaker::builder()
        .name("upstream")
        .error_threshold_percentage(50.0)
        .volume_threshold(20)
        .rolling_window(Duration::from_secs(2), 10)
        .reset_timeout(Duration::from_secs(1))
        .half_open_max_calls(1)
        // One line per transition, reported by the breaker as it happens: no polling.
        .on_event(move |event| {
            if let EventKind::Transition { from, to } = event.kind {
                println!(
                    "[{:>5.2}s] transition  {from} -> {to}",
                    start.elapsed().as_secs_f64()
                );
            }
        })
        .build()?;

    // The upstream: its behaviour depends on the phase; failures drawn from a seeded RNG.
    let rng = Arc::new(std::sync::Mutex::new(Rng(SEED)));
    let upstream = service_fn(move |_: ()| {
        let failure_draw = rng.lock().expect("rng lock").next_f64();
        async move {
            match Phase::at(start.elapsed()) {
                Some(Phase::Failing) if failure_draw < 0.8 => {
                    Err::<&str, BoxError>("503 from upstream".into())
                }
                Some(Phase::Slow) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok("late answer")
                }
                _ if failure_draw < 0.01 => Err("occasional error".into()),
                _ => Ok("fresh answer"),
            }
        }
    });

    let fallback_counts = counts.clone();
    let service = ServiceBuilder::new()
        .layer(FallbackLayer::new(move |err: BoxError| {
            let counts = fallback_counts.clone();
            async move {
                if err.is::<CircuitOpen>() {
                    counts.rejections.fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.failures.fetch_add(1, Ordering::Relaxed);
                }
                counts.fallbacks.fetch_add(1, Ordering::Relaxed);
                Ok("cached answer")
            }
        }))
        .layer(breaker.layer())
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .service(upstream);

    println!(
        "calling every {CALL_EVERY:?}; phases of {PHASE:?}: healthy, failing (80% errors), slow (300 ms > 100 ms timeout), healthy"
    );
    let mut totals = [0u64; 4];
    let mut ticker = tokio::time::interval(CALL_EVERY);
    let mut next_report = Duration::from_secs(1);
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(phase) = Phase::at(start.elapsed()) {
        ticker.tick().await;
        let mut service = service.clone();
        let call_counts = counts.clone();
        in_flight.spawn(async move {
            let answer = service.ready().await?.call(()).await?;
            if answer != "cached answer" {
                call_counts.successes.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, BoxError>(())
        });
        while let Some(done) = in_flight.try_join_next() {
            done??;
        }
        if start.elapsed() >= next_report {
            let [ok, failed, rejected, fallbacks] = counts.take();
            for (total, n) in totals.iter_mut().zip([ok, failed, rejected, fallbacks]) {
                *total += n;
            }
            println!(
                "[{:>5.2}s] {:<9} state={:<9} successes={ok:>3} failures={failed:>3} rejections={rejected:>3} fallbacks={fallbacks:>3}",
                start.elapsed().as_secs_f64(),
                format!("{phase:?}"),
                breaker.state().to_string(),
            );
            next_report += Duration::from_secs(1);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        done??;
    }
    for (total, n) in totals.iter_mut().zip(counts.take()) {
        *total += n;
    }

    let stats = breaker.stats();
    println!();
    println!("summary after {:.1}s:", start.elapsed().as_secs_f64());
    println!(
        "  successes={} failures={} rejections={} fallbacks={}",
        totals[0], totals[1], totals[2], totals[3]
    );
    println!("  final state: {}", breaker.state());
    println!("  breaker stats: {stats:?}");
    if breaker.state() != State::Closed {
        println!("  (the breaker had not closed again when the demo ended)");
    }
    Ok(())
}
