//! End to end on loopback, in one run: bare `reqwest::Client`, reqwest through harden's HTTP
//! preset (the tower path and the convenience client), and reqwest-middleware + reqwest-retry,
//! all against one local axum server, at 1 and 64 concurrent callers.
//!
//! `cargo bench -p harden-peers --bench http_client` (`HARDEN_BENCH_QUICK=1`: a smoke run).
//! `HARDEN_BENCH_HTTP_MS` sets the time per row and repetition (default 200 ms, 15 repetitions:
//! 3 s per row and concurrency; many short interleaved repetitions, so that a burst of load
//! from elsewhere on the machine lands in a few repetitions of every row, and the median
//! repetition is read).
//!
//! The server runs on its own thread (one current-thread runtime), the callers on the main
//! thread (another), so on a 2-core machine each side has a core. Rows are interleaved per
//! repetition (A, B, C, D, then B, C, D, A, ...) so a noisy moment hits every row. Every row
//! reads the whole body, and every row builds its request from the same parsed `Url`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harden::http::HttpLayer;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use tower::{Layer, ServiceExt};

type Preset = <harden::http::HttpLayer as Layer<reqwest::Client>>::Service;

enum Client {
    Bare(reqwest::Client),
    Preset(Preset),
    Harden(harden::reqwest::Client),
    Middleware(ClientWithMiddleware),
}

struct Row {
    name: &'static str,
    client: Client,
}

impl Client {
    async fn get(&self, url: &reqwest::Url) -> bool {
        let response = match self {
            Client::Bare(c) => c.get(url.clone()).send().await.map_err(drop),
            Client::Preset(s) => s
                .clone()
                .oneshot(reqwest::Request::new(reqwest::Method::GET, url.clone()))
                .await
                .map_err(drop),
            Client::Harden(c) => c.get(url.clone()).send().await.map_err(drop),
            Client::Middleware(c) => c.get(url.clone()).send().await.map_err(drop),
        };
        match response {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(()) => false,
        }
    }
}

struct Sample {
    calls: u64,
    failures: u64,
    elapsed: Duration,
    latencies_ns: Vec<u64>,
}

/// `callers` tasks calling `row` back to back for `time`.
async fn run(row: &Arc<Row>, url: &reqwest::Url, callers: usize, time: Duration) -> Sample {
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + time;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (row, url, failures) = (row.clone(), url.clone(), failures.clone());
            tokio::task::spawn_local(async move {
                let mut latencies = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if !row.client.get(&url).await {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(t0.elapsed().as_nanos() as u64);
                }
                latencies
            })
        })
        .collect();
    let mut latencies_ns = Vec::new();
    for t in tasks {
        latencies_ns.extend(t.await.expect("caller task"));
    }
    Sample {
        calls: latencies_ns.len() as u64,
        failures: failures.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies_ns,
    }
}

fn server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
            axum::serve(listener, app).await.expect("serve");
        });
    });
    format!("http://{addr}/")
}

fn rows() -> Vec<Arc<Row>> {
    let bare = || {
        harden::reqwest::client_builder()
            .build()
            .expect("reqwest client")
    };
    let preset = HttpLayer::builder().build().expect("preset").layer(bare());
    // The same without its two timeouts: what the timers cost (a wheel entry each per request).
    let untimed = HttpLayer::builder()
        .total_timeout(None)
        .attempt_timeout(None)
        .build()
        .expect("preset")
        .layer(bare());
    let middleware = reqwest_middleware::ClientBuilder::new(bare())
        .with(RetryTransientMiddleware::new_with_policy(
            ExponentialBackoff::builder().build_with_max_retries(3),
        ))
        .build();
    vec![
        Arc::new(Row {
            name: "bare reqwest",
            client: Client::Bare(bare()),
        }),
        Arc::new(Row {
            name: "harden preset (tower path)",
            client: Client::Preset(preset),
        }),
        Arc::new(Row {
            name: "harden preset, no timeouts",
            client: Client::Preset(untimed),
        }),
        Arc::new(Row {
            name: "harden::reqwest::Client",
            client: Client::Harden(harden::reqwest::Client::new(bare())),
        }),
        Arc::new(Row {
            name: "reqwest-middleware + reqwest-retry",
            client: Client::Middleware(middleware),
        }),
    ]
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let quick = std::env::var("HARDEN_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let ms: u64 = std::env::var("HARDEN_BENCH_HTTP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 150 } else { 200 });
    let reps = if quick { 1 } else { 15 };
    let time = Duration::from_millis(ms);

    let url: reqwest::Url = server().parse().expect("url");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let rows = rows();
        println!(
            "http_client: {} ms x {reps} per row and concurrency{}",
            ms,
            if quick { " (quick)" } else { "" }
        );
        println!();
        println!("| client | callers | req/s | vs bare | p50 µs | p99 µs | p50 added µs |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for callers in [1usize, 64] {
            // Warm-up: connections open, pools full.
            for row in &rows {
                run(
                    row,
                    &url,
                    callers,
                    Duration::from_millis(if quick { 50 } else { 300 }),
                )
                .await;
            }
            let mut samples: Vec<Vec<Sample>> = rows.iter().map(|_| Vec::new()).collect();
            for rep in 0..reps {
                for k in 0..rows.len() {
                    let i = (k + rep) % rows.len();
                    samples[i].push(run(&rows[i], &url, callers, time).await);
                }
            }
            let summary: Vec<(f64, f64, f64)> = samples
                .iter_mut()
                .zip(&rows)
                .map(|(reps, row)| {
                    let failures: u64 = reps.iter().map(|s| s.failures).sum();
                    assert_eq!(failures, 0, "{}: {failures} failed calls", row.name);
                    // Throughput: the median repetition; latency: every call of every repetition.
                    let mut rps: Vec<f64> = reps
                        .iter()
                        .map(|s| s.calls as f64 / s.elapsed.as_secs_f64())
                        .collect();
                    rps.sort_by(f64::total_cmp);
                    let mut lat: Vec<u64> = reps
                        .iter_mut()
                        .flat_map(|s| s.latencies_ns.drain(..))
                        .collect();
                    lat.sort_unstable();
                    (
                        rps[rps.len() / 2],
                        percentile(&lat, 0.5),
                        percentile(&lat, 0.99),
                    )
                })
                .collect();
            let (bare_rps, bare_p50, _) = summary[0];
            for (row, (rps, p50, p99)) in rows.iter().zip(&summary) {
                println!(
                    "| {} | {callers} | {rps:.0} | {:.3} | {p50:.1} | {p99:.1} | {:+.2} |",
                    row.name,
                    rps / bare_rps,
                    p50 - bare_p50
                );
            }
        }
    });
}
