//! harden's rows, shared by `benches/breaker.rs`, `benches/stack.rs` and the `harden-peers` bench
//! (each includes this file with `#[path]`), written against the DESIGN.md API contract and
//! configured with the same scenario constants as every peer (see the harness).
#![allow(dead_code, unreachable_pub)]

use super::harness::*;
use harden::bulkhead::BulkheadLayer;
use harden::circuit_breaker::{CircuitBreaker, State};
use harden::retry::{RetryLayer, RetryPolicy};
use harden::timeout::TimeoutLayer;
use harden::BoxError;
use std::time::Duration;
use tower::Layer;

/// Concurrency limit of the bulkhead in the stack rows (never reached: one call at a time).
pub const BULKHEAD: usize = 64;

/// A breaker configured like every peer: THRESHOLD %, VOLUME calls, WINDOW in BUCKETS buckets.
pub fn breaker(reset: Duration) -> CircuitBreaker {
    CircuitBreaker::builder()
        .name("bench")
        .error_threshold_percentage(THRESHOLD)
        .volume_threshold(VOLUME)
        .rolling_window(WINDOW, BUCKETS)
        .reset_timeout(reset)
        .half_open_max_calls(1)
        .build()
        .expect("bench breaker config")
}

/// The same breaker with a count window of the last VOLUME calls: the configuration equivalent
/// to recloser's ring and tower-resilience's count window (no clock read on a success).
pub fn breaker_count(reset: Duration) -> CircuitBreaker {
    CircuitBreaker::builder()
        .name("bench")
        .error_threshold_percentage(THRESHOLD)
        .volume_threshold(VOLUME)
        .count_window(VOLUME)
        .reset_timeout(reset)
        .half_open_max_calls(1)
        .build()
        .expect("bench breaker config")
}

/// True for harden's rejections (`CircuitOpen`, `BulkheadFull`): the call never reached the operation.
pub fn is_rejection(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.is::<harden::circuit_breaker::error::CircuitOpen>()
        || e.is::<harden::bulkhead::error::BulkheadFull>()
}

/// Outcome of a harden call.
pub fn classify(r: &Result<u64, BoxError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) if is_rejection(e.as_ref()) => Outcome::Rejected,
        Err(_) => Outcome::InnerError,
    }
}

/// Breaker rows while closed (`fail_every` 0: all succeed; 10: every 10th fails).
pub fn closed_rows(g: &mut Group, label: &str, fail_every: u64, expect: Expect) {
    for (window, b) in windows() {
        g.row(
            &format!("{label}: harden{window}"),
            "tower layer",
            expect,
            tower_body(b.layer().layer(bare(fail_every)), classify),
        );
    }
}

/// Outcome of a `CircuitBreaker::call`.
pub fn classify_call(r: &Result<u64, harden::circuit_breaker::CallError<OpError>>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(harden::circuit_breaker::CallError::Rejected(_)) => Outcome::Rejected,
        Err(_) => Outcome::InnerError,
    }
}

/// The same breaker without tower: `CircuitBreaker::call`, next to the peers' synchronous calls.
pub fn sync_closed_rows(g: &mut Group, label: &str, fail_every: u64, expect: Expect) {
    for (window, b) in windows() {
        g.row(
            &format!("{label}: harden sync call{window}"),
            "sync `CircuitBreaker::call`",
            expect,
            sync_body(move |i| classify_call(&b.call(|| op(i, fail_every)))),
        );
    }
}

/// The bench breaker with its default time window and with a count window: (label suffix, breaker).
fn windows() -> [(String, CircuitBreaker); 2] {
    [
        (String::new(), breaker(RESET)),
        (format!(" (count window {VOLUME})"), breaker_count(RESET)),
    ]
}

/// `CircuitBreaker::call` while open.
pub fn sync_open_rows(g: &mut Group, reset: Duration) {
    let b = breaker(reset);
    drive_open("harden sync", |i| classify_call(&b.call(|| op(i, 1))));
    g.row(
        "open rejection: harden sync call",
        "sync `CircuitBreaker::call`",
        Expect::AllRejected,
        sync_body(move |i| classify_call(&b.call(|| op(i, 0)))),
    );
}

/// Breaker rows while open (driven open by failures first, then every call is rejected).
pub fn open_rows(g: &mut Group, reset: Duration) {
    let b = breaker(reset);
    let mut svc = b.layer().layer(bare(1));
    drive_open("harden", |i| classify(&call_now(&mut svc, i)));
    assert_eq!(b.state(), State::Open, "harden breaker should be open");
    g.row(
        "open rejection: harden",
        "tower layer",
        Expect::AllRejected,
        tower_body(svc, classify),
    );
}

/// Timeout rows with an inner future ready at once.
pub fn timeout_rows(g: &mut Group, timeout: Duration) {
    g.row(
        "timeout ready at once: harden TimeoutLayer",
        "tower layer (timer created only if the inner future pends)",
        Expect::AllOk,
        tower_body(TimeoutLayer::new(timeout).layer(bare(0)), classify),
    );
}

/// harden's retry policy for the bench: `attempts` attempts, default backoff; with the default
/// retry budget or without one.
pub fn retry_policy(attempts: usize, budget: bool) -> RetryPolicy {
    let b = RetryPolicy::builder().max_attempts(attempts as u32);
    let b = if budget { b } else { b.no_budget() };
    b.build().expect("bench retry config")
}

/// Retry rows that never need to retry (the operation succeeds).
pub fn retry_rows(g: &mut Group, attempts: usize) {
    g.row(
        "retry, no retry needed: harden RetryLayer (default budget)",
        "tower layer; deposits into the retry budget per request",
        Expect::AllOk,
        tower_body(
            RetryLayer::new(retry_policy(attempts, true)).layer(bare(0)),
            classify,
        ),
    );
    g.row(
        "retry, no retry needed: harden RetryLayer (no budget)",
        "tower layer; like tower's Retry, no budget",
        Expect::AllOk,
        tower_body(
            RetryLayer::new(retry_policy(attempts, false)).layer(bare(0)),
            classify,
        ),
    );
}

/// The full stack, outermost first: timeout + retry (default budget) + breaker + bulkhead.
pub fn stack_rows(g: &mut Group, timeout: Duration, attempts: usize, reset: Duration) {
    let svc = tower::ServiceBuilder::new()
        .layer(TimeoutLayer::new(timeout))
        .layer(RetryLayer::new(retry_policy(attempts, true)))
        .layer(breaker(reset).layer())
        .layer(BulkheadLayer::new(BULKHEAD))
        .service(bare(0));
    g.row(
        "full stack: harden timeout + retry + breaker + bulkhead",
        "tower layers in a ServiceBuilder",
        Expect::AllOk,
        tower_body(svc, classify),
    );
    let layer = harden::ResilienceLayer::builder()
        .total_timeout(timeout)
        .retry(retry_policy(attempts, true))
        .circuit_breaker(breaker(reset).layer())
        .bulkhead(BulkheadLayer::new(BULKHEAD))
        .build()
        .expect("bench stack config");
    g.row(
        "full stack: harden::ResilienceLayerBuilder (same parts)",
        "`ResilienceLayer::builder()...build()` layer",
        Expect::AllOk,
        tower_body(layer.layer(bare(0)), classify),
    );
}

/// Thread workers sharing one breaker: (label, maker).
pub fn mt_workers() -> Vec<(String, MakeWorker)> {
    let svc = breaker(RESET).layer().layer(bare(0));
    vec![("harden".to_string(), mt_tower(svc, classify))]
}

/// Thread workers sharing one breaker while every 10th call fails: (label, maker). Every
/// failure makes the breaker judge its window, so this shows what judging costs across threads.
pub fn mt_failure_workers() -> Vec<(String, MakeWorker)> {
    windows()
        .into_iter()
        .map(|(window, b)| {
            let svc = b.layer().layer(bare(FAIL_EVERY));
            (format!("harden{window}"), mt_tower(svc, classify))
        })
        .collect()
}

/// The bench breaker with another error threshold, on its time window or (`count`) a count
/// window of VOLUME calls: the failure-storm rows use 75% so that 50% failures keep it closed.
pub fn breaker_with_threshold(threshold: f64, count: bool) -> CircuitBreaker {
    let b = CircuitBreaker::builder()
        .name("bench")
        .error_threshold_percentage(threshold)
        .volume_threshold(VOLUME)
        .reset_timeout(RESET)
        .half_open_max_calls(1);
    let b = if count {
        b.count_window(VOLUME)
    } else {
        b.rolling_window(WINDOW, BUCKETS)
    };
    b.build().expect("bench breaker config")
}

/// Failure-storm workers sharing one breaker (time window, then count window): every
/// `fail_every`-th call fails against a 75% threshold, so the breaker stays closed and judges
/// its window after each failure. (label, maker).
pub fn mt_storm_workers(fail_every: u64) -> Vec<(String, MakeWorker)> {
    [false, true]
        .into_iter()
        .map(|count| {
            let b = breaker_with_threshold(75.0, count);
            let svc = b.layer().layer(bare(fail_every));
            let window = if count {
                format!(" (count window {VOLUME})")
            } else {
                String::new()
            };
            (format!("harden{window}"), mt_tower(svc, classify))
        })
        .collect()
}

/// Workers sharing one open breaker (driven open by failures first, the operation keeps
/// failing, the reset timeout is an hour): every call is a rejection. (label, maker).
pub fn mt_open_workers() -> Vec<(String, MakeWorker)> {
    windows()
        .into_iter()
        .map(|(window, b)| {
            let mut svc = b.layer().layer(bare(1));
            drive_open("harden", |i| classify(&call_now(&mut svc, i)));
            assert_eq!(b.state(), State::Open, "harden breaker should be open");
            (format!("harden{window}"), mt_tower(svc, classify))
        })
        .collect()
}

/// Task loops sharing one breaker: (label, maker).
pub fn mt_tasks() -> Vec<(String, MakeTask)> {
    let svc = breaker(RESET).layer().layer(bare(0));
    vec![("tasks: harden".to_string(), task_tower(svc, classify))]
}

/// Heap bytes per breaker: (label, bytes).
pub fn heap_rows() -> Vec<(String, f64)> {
    let default = heap_bytes_per_instance(1000, || {
        CircuitBreaker::builder().build().expect("default config")
    });
    let bench = heap_bytes_per_instance(1000, || breaker(RESET));
    vec![
        ("harden (default config)".to_string(), default),
        ("harden (bench config)".to_string(), bench),
    ]
}

fn future_size<S: tower::Service<u64>>(_: &S) -> usize {
    std::mem::size_of::<S::Future>()
}

/// Size in bytes of each harden service's response future over the bare operation (moved by
/// value on every call, so it is part of the per-call cost): (label, bytes).
pub fn future_sizes() -> Vec<(String, usize)> {
    let stack = tower::ServiceBuilder::new()
        .layer(TimeoutLayer::new(TIMEOUT))
        .layer(RetryLayer::new(retry_policy(ATTEMPTS, true)))
        .layer(breaker(RESET).layer())
        .layer(BulkheadLayer::new(BULKHEAD))
        .service(bare(0));
    vec![
        (
            "bare `service_fn` (`Ready<Result<u64, _>>`)".to_string(),
            future_size(&bare(0)),
        ),
        (
            "circuit breaker".to_string(),
            future_size(&breaker(RESET).layer().layer(bare(0))),
        ),
        (
            "timeout".to_string(),
            future_size(&TimeoutLayer::new(TIMEOUT).layer(bare(0))),
        ),
        (
            "retry".to_string(),
            future_size(&RetryLayer::new(retry_policy(ATTEMPTS, true)).layer(bare(0))),
        ),
        (
            "bulkhead".to_string(),
            future_size(&BulkheadLayer::new(BULKHEAD).layer(bare(0))),
        ),
        ("full stack".to_string(), future_size(&stack)),
        (
            "full stack as `harden::ResilienceLayerBuilder` (same parts)".to_string(),
            future_size(
                &harden::ResilienceLayer::builder()
                    .total_timeout(TIMEOUT)
                    .retry(retry_policy(ATTEMPTS, true))
                    .circuit_breaker(breaker(RESET).layer())
                    .bulkhead(BulkheadLayer::new(BULKHEAD))
                    .build()
                    .expect("bench stack config")
                    .layer(bare(0)),
            ),
        ),
    ]
}
