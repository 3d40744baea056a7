//! An axum server with harden's health endpoints, graceful shutdown and a guarded route.
//!
//! ```text
//! cargo run --example axum_server -- [--addr 127.0.0.1:8080] [--drain-delay-ms 5000] [--deadline-ms 20000]
//! ```
//!
//! Defaults: `--addr 127.0.0.1:8080`, `--drain-delay-ms 5000`
//! ([`harden::shutdown::DEFAULT_DRAIN_DELAY`]), `--deadline-ms 20000`
//! ([`harden::shutdown::DEFAULT_DEADLINE`]). The first line on stdout is
//! `listening on http://ADDR`, the routes follow; the shutdown report is printed to stdout when
//! the sequence ends.
//!
//! Routes:
//! - `GET /health/live`, `GET /health/ready`: terminus-shaped probes (the `flaky` breaker is
//!   informational: reported, never making the pod unready);
//! - `GET /api/hello`: 200 `hello`;
//! - `GET /api/slow?ms=N`: 200 after N ms (400 for a missing or bad `ms`);
//! - `GET /api/events`: server-sent events, a `tick` every 200 ms, ending when shutdown refuses;
//! - `GET /api/flaky`: a dependency failing every third call, behind a breaker and a bulkhead of
//!   8, whose errors become 500/503 JSON answers through `ErrorResponseLayer`.
//!
//! SIGTERM or Ctrl-C runs the shutdown sequence and exits 0; a second signal forces exit (1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use harden::bulkhead::BulkheadLayer;
use harden::circuit_breaker::CircuitBreaker;
use harden::health::Health;
use harden::http::ErrorResponseLayer;
use harden::shutdown::{
    CancellationToken, Shutdown, DEFAULT_DEADLINE, DEFAULT_DRAIN_DELAY, DEFAULT_HOOK_TIMEOUT,
};
use harden::BoxError;
use tower::{service_fn, ServiceBuilder};

struct Args {
    addr: SocketAddr,
    drain_delay: Duration,
    deadline: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        drain_delay: DEFAULT_DRAIN_DELAY,
        deadline: DEFAULT_DEADLINE,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let ms = || {
            value
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("{flag} {value:?}: {e}"))
        };
        match flag.as_str() {
            "--addr" => {
                args.addr = value
                    .parse()
                    .map_err(|e| format!("--addr {value:?}: {e}"))?
            }
            "--drain-delay-ms" => args.drain_delay = ms()?,
            "--deadline-ms" => args.deadline = ms()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

async fn slow(RawQuery(query): RawQuery) -> impl IntoResponse {
    let ms = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms=").and_then(|v| v.parse::<u64>().ok()));
    match ms {
        Some(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (StatusCode::OK, format!("slept {ms} ms")).into_response()
        }
        None => (StatusCode::BAD_REQUEST, "expected ?ms=<milliseconds>").into_response(),
    }
}

fn events(token: CancellationToken) -> impl IntoResponse {
    let ticks = futures::stream::unfold((0u64, token), |(n, token)| async move {
        tokio::select! {
            _ = token.cancelled() => None,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let event = Event::default().event("tick").data(n.to_string());
                Some((Ok::<_, Infallible>(event), (n + 1, token)))
            }
        }
    });
    Sse::new(ticks)
}

/// Printed at start, as listed in the module docs.
const ROUTES: [(&str, &str); 6] = [
    ("GET /health/live", "liveness (terminus JSON)"),
    (
        "GET /health/ready",
        "readiness: 503 shutting_down once SIGTERM arrives",
    ),
    ("GET /api/hello", "200 hello"),
    ("GET /api/slow?ms=N", "200 after N ms"),
    (
        "GET /api/events",
        "server-sent events until shutdown refuses",
    ),
    (
        "GET /api/flaky",
        "every third call fails, behind a breaker and a bulkhead",
    ),
];

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("axum_server: {message}");
            std::process::exit(2);
        }
    };

    let shutdown = Shutdown::builder()
        .drain_delay(args.drain_delay)
        .deadline(args.deadline)
        .build()?;
    let handle = shutdown.handle();
    handle.on_shutdown("flush", DEFAULT_HOOK_TIMEOUT, || async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    });

    let breaker = CircuitBreaker::builder()
        .name("flaky")
        .volume_threshold(5)
        .reset_timeout(Duration::from_secs(5))
        .build()?;
    let calls = Arc::new(AtomicU64::new(0));
    let flaky = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(breaker.layer())
        .layer(BulkheadLayer::new(8))
        .service(service_fn(move |_req: axum::extract::Request| {
            // Relaxed: a call counter, nothing else is published through it.
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if n % 3 == 2 {
                    Err::<axum::response::Response, BoxError>("flaky dependency failed".into())
                } else {
                    Ok("flaky dependency answered".into_response())
                }
            }
        }));

    let health = Health::builder()
        .breaker(&breaker)
        .shutdown(&handle)
        .build()?;
    let token = handle.token();
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .route("/api/slow", get(slow))
        .route("/api/events", get(move || async move { events(token) }))
        .route_service("/api/flaky", flaky)
        .merge(health.router());

    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    println!("routes:");
    for (route, what) in ROUTES {
        println!("  {route:<22} {what}");
    }
    let report = shutdown.serve(listener, app).await?;
    println!("shutdown: {report}");
    if report.forced {
        std::process::exit(1);
    }
    Ok(())
}
