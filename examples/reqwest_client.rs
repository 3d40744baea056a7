//! A resilient reqwest client against a flaky local server it starts itself.
//!
//! `cargo run --example reqwest_client`
//!
//! The server answers in phases: healthy, then a 503 asking to come back in 1 s, then an outage
//! (500 to everything), then healthy again. For each request the example prints what the caller
//! got, how many attempts reached the server, and the state of that host's circuit breaker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use harden::http::{HttpLayer, HttpLayerBuilder};
use harden::retry::{Backoff, Jitter};

/// What the server does now; changed by `main` between phases.
#[derive(Default)]
struct Flaky {
    phase: AtomicU32,
    hits: AtomicU32,
}

const HEALTHY: u32 = 0;
const BUSY_ONCE: u32 = 1;
const OUTAGE: u32 = 2;

async fn prices(State(flaky): State<Arc<Flaky>>) -> Response {
    flaky.hits.fetch_add(1, Ordering::SeqCst);
    match flaky.phase.load(Ordering::SeqCst) {
        BUSY_ONCE => {
            // Busy for this request only: come back in a second.
            flaky.phase.store(HEALTHY, Ordering::SeqCst);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "busy",
            )
                .into_response()
        }
        OUTAGE => (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response(),
        _ => "EUR 42".into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), harden::BoxError> {
    let flaky = Arc::new(Flaky::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/prices", listener.local_addr()?);
    let app = Router::new()
        .route("/prices", get(prices))
        .with_state(flaky.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The preset with a breaker that trips quickly, so the demo is short.
    let client = harden::reqwest::Client::builder()
        .preset(
            HttpLayer::builder()
                .name("prices")
                .total_timeout(Duration::from_secs(5))
                .attempt_timeout(Duration::from_secs(1))
                .backoff(Backoff::exponential(Duration::from_millis(50), 2.0).jitter(Jitter::Full))
                .breaker(
                    HttpLayerBuilder::default_breaker()
                        .volume_threshold(4)
                        .error_threshold_percentage(50.0)
                        .reset_timeout(Duration::from_secs(1)),
                ),
        )
        .build()?;
    let key: reqwest::Url = url.parse()?;

    let phases = [
        ("healthy", HEALTHY, 2),
        ("busy once (503, Retry-After: 1)", BUSY_ONCE, 1),
        ("outage (500 to everything)", OUTAGE, 7),
        ("healed, within the reset timeout", HEALTHY, 2),
    ];
    let mut n = 0;
    for (name, phase, requests) in phases {
        println!("-- {name}");
        flaky.phase.store(phase, Ordering::SeqCst);
        for _ in 0..requests {
            n += 1;
            report(n, &client, &url, &key, &flaky).await;
        }
    }
    println!("-- healed, after the reset timeout");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..2 {
        n += 1;
        report(n, &client, &url, &key, &flaky).await;
    }
    Ok(())
}

async fn report(
    n: u32,
    client: &harden::reqwest::Client,
    url: &str,
    key: &reqwest::Url,
    flaky: &Flaky,
) {
    let before = flaky.hits.load(Ordering::SeqCst);
    let start = Instant::now();
    let outcome = match client.get(url).send().await {
        Ok(response) => format!("{}", response.status()),
        Err(e) => format!("error ({:?}): {e}", e.kind()),
    };
    let attempts = flaky.hits.load(Ordering::SeqCst) - before;
    let state = client
        .breaker(key)
        .map(|b| b.state().to_string())
        .unwrap_or_default();
    println!(
        "request {n:>2}: {outcome}; {attempts} attempt(s) reached the server in {:.0?}; breaker {state}",
        start.elapsed()
    );
}
