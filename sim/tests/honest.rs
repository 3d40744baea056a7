//! The simulator against reality: the demo's scene 1 over real HTTP on 127.0.0.1 (harden's
//! HTTP preset around reqwest, an axum upstream behind `harden::chaos`) and the same scenario
//! through `replay` agree on when the breaker first opens and when it closes for good.
//!
//! Real time (10 s): the real times must lie within one bucket of the window (100 ms) of the
//! range the simulator predicts over 64 seeds (the real run's faults follow the seed, but
//! which calls become probes moves with the machine's timing, so no single seed is the truth).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use harden::chaos::{Chaos, Faults, Latency};
use harden::circuit_breaker::{CircuitBreaker, EventKind, State};
use harden::http::ErrorResponseLayer;
use harden::retry::{Backoff, RetryBudget};
use harden_sim::engine::StackSettings;
use harden_sim::input::{candidates, parse_scenario};
use harden_sim::replay::{self, Source};
use http::StatusCode;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

const DEMO: &str = include_str!("../examples/demo-scene1.toml");
const DEMO_STACK: &str = include_str!("../examples/demo-stack.toml");
const BUCKET: f64 = 0.1;

/// The demo's phases (examples/demo/main.rs), 2.5 s each.
fn phases() -> [Faults; 4] {
    let healthy = Faults::new().with_status(StatusCode::SERVICE_UNAVAILABLE, 0.02);
    [
        healthy,
        Faults::new().with_status(StatusCode::SERVICE_UNAVAILABLE, 0.8),
        Faults::new()
            .with_latency(
                Latency::uniform(Duration::from_millis(150), Duration::from_millis(400)),
                0.6,
            )
            .with_hang_rate(0.03),
        healthy,
    ]
}

/// First open and last close (seconds), and whether the breaker ended closed.
fn first_open_last_close(transitions: &[(f64, State)]) -> (Option<f64>, Option<f64>, bool) {
    let open = transitions
        .iter()
        .find(|(_, s)| *s == State::Open)
        .map(|(t, _)| *t);
    let close = transitions
        .iter()
        .rev()
        .find(|(_, s)| *s == State::Closed)
        .map(|(t, _)| *t);
    let closed = transitions.last().is_none_or(|(_, s)| *s == State::Closed);
    (open, close, closed)
}

async fn real_scene() -> Vec<(f64, State)> {
    let chaos = Chaos::builder().name("upstream").seed(4).build().unwrap();
    let app = Router::new().route("/price", get(|| async { "42" })).layer(
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(chaos.http_layer()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url: reqwest::Url = format!("http://{addr}/price").parse().unwrap();

    let start = Instant::now();
    let log: Arc<Mutex<Vec<(f64, State)>>> = Arc::default();
    let events = log.clone();
    let breaker = CircuitBreaker::builder()
        .error_threshold_percentage(50.0)
        .volume_threshold(10)
        .rolling_window(Duration::from_secs(1), 10)
        .reset_timeout(Duration::from_millis(800))
        .half_open_max_calls(1)
        .on_event(move |event| {
            if let EventKind::Transition { to, .. } = event.kind {
                let at = start.elapsed().as_secs_f64();
                events.lock().unwrap().push((at, to));
            }
        });
    let preset = harden::http::HttpLayer::builder()
        .name("upstream")
        .total_timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_millis(100))
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(10), 2.0))
        .budget(RetryBudget::new())
        .breaker(breaker)
        .build()
        .unwrap();
    let http = harden::reqwest::client_builder()
        .no_proxy()
        .build()
        .unwrap();
    let client = ServiceBuilder::new().layer(preset).service(http);

    let phases = phases();
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut in_flight = tokio::task::JoinSet::new();
    let mut phase = None;
    loop {
        ticker.tick().await;
        let now = start.elapsed();
        if now >= Duration::from_secs(10) {
            break;
        }
        let index = (now.as_millis() / 2500) as usize;
        if phase != Some(index) {
            phase = Some(index);
            chaos.set(phases[index]).unwrap();
        }
        let request = reqwest::Request::new(reqwest::Method::GET, url.clone());
        let client = client.clone();
        in_flight.spawn(async move {
            let _ = client.oneshot(request).await;
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
    let list = log.lock().unwrap().clone();
    list
}

fn simulated(seed: u64) -> Vec<(f64, State)> {
    let scenario = parse_scenario(&DEMO.replace("seed = 4", &format!("seed = {seed}"))).unwrap();
    let c = candidates(Some(DEMO_STACK), &[], &StackSettings::http_preset()).unwrap();
    let score = replay::run(&Source::Scenario(scenario), &c[0].settings, "demo").unwrap();
    score
        .transitions
        .iter()
        .map(|&(t, s)| (t as f64 / 1000.0, s))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_predicts_the_demo_over_real_http() {
    let real = real_scene().await;
    let (real_open, real_close, real_closed) = first_open_last_close(&real);
    // The simulator blocks on its own paused runtimes: on a plain thread.
    let (same_seed, runs) = std::thread::spawn(|| {
        let same_seed = first_open_last_close(&simulated(4));
        let runs: Vec<_> = (0..64)
            .map(|seed| first_open_last_close(&simulated(seed)))
            .collect();
        (same_seed, runs)
    })
    .join()
    .unwrap();
    println!("real: {real:?}");
    println!("simulated, seed 4: {same_seed:?}; seeds 0..64: {runs:?}");

    let real_open = real_open.expect("the failing phase opens the real breaker");
    let opens: Vec<f64> = runs.iter().filter_map(|r| r.0).collect();
    assert_eq!(opens.len(), runs.len(), "every seed opens");
    let lo = opens.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = opens.iter().copied().fold(0.0, f64::max);
    assert!(
        real_open >= lo - BUCKET && real_open <= hi + BUCKET,
        "first open: real {real_open:.3} s outside the simulated [{lo:.3}, {hi:.3}]"
    );

    assert!(real_closed, "the real breaker ends closed: {real:?}");
    assert!(
        runs.iter().all(|r| r.2),
        "every simulated breaker ends closed"
    );
    let real_close = real_close.expect("the real breaker closed");
    let closes: Vec<f64> = runs.iter().filter_map(|r| r.1).collect();
    let lo = closes.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = closes.iter().copied().fold(0.0, f64::max);
    assert!(
        real_close >= lo - BUCKET && real_close <= hi + BUCKET,
        "last close: real {real_close:.3} s outside the simulated [{lo:.3}, {hi:.3}]"
    );
}
