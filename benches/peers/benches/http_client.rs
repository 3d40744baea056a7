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
//! Two configurations, one after the other. *Separate*: the server runs on its own thread (one
//! current-thread runtime), the callers on the main thread (another), so on a 2-core machine
//! each side has a core. *Shared*: client and server in one process on one 2-worker tokio
//! runtime, the way a service that both serves and calls runs, so every instruction either side
//! spends is one the other loses; this configuration also has the server rows (bare reqwest
//! against axum with hand-assembled tower-http layers, and against harden's server layers under
//! `Shutdown::serve`). Rows are interleaved per repetition (A, B, C, D, then B, C, D, A, ...) so
//! a noisy moment hits every row. Every row reads the whole body, and every row builds its
//! request from the same parsed `Url`. Then, with the breaker forced open, how long a caller
//! waits for its rejection (p50, p99). `HARDEN_BENCH_CONFIG=separate|shared|open`: one of them.
//!
//! Instructions per request: `HARDEN_BENCH_CALLGRIND=<row>` with `HARDEN_BENCH_REQUESTS=N` runs
//! one row's N sequential requests on one current-thread runtime holding client and server, and
//! exits; `benches/peers/callgrind.sh` runs every row under `valgrind --tool=callgrind` at N and
//! 2N requests and prints the difference over N (start-up cancels).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harden::http::HttpLayer;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use tower::{Layer, ServiceExt};

type Preset = <harden::http::HttpLayer as Layer<reqwest::Client>>::Service;
/// The general stack a user composes: total timeout, retry with the HTTP classifier and replay,
/// attempt timeout.
type StackLayer = harden::ResilienceLayer<
    tower::layer::util::Identity,
    harden::timeout::TimeoutLayer,
    harden::retry::RetryLayer<harden::http::HttpRetryClassifier, harden::http::HttpReplay>,
    tower::layer::util::Identity,
    tower::layer::util::Identity,
    harden::timeout::TimeoutLayer,
>;
type Stack = <StackLayer as Layer<reqwest::Client>>::Service;

/// The servers rows call: bare axum, the same route behind hand-assembled tower(-http) layers,
/// and behind harden's (`Shutdown::serve`, error responses, breaker, bulkhead, timeout).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Bare,
    TowerHttp,
    /// The same layers under `axum::serve(..).with_graceful_shutdown(..)` (a signal that never
    /// comes), and under hyper-util's `GracefulShutdown` watching each auto connection.
    TowerHttpGraceful,
    TowerHttpGracefulHyperUtil,
    /// The last with hyper's 30 s header-read timeout (a timer per request), as
    /// `Shutdown::serve` has by default: protection from clients that send headers slowly.
    TowerHttpGracefulHyperUtilHeaderTimeout,
    Harden,
    /// `Harden` without the header-read timeout: what that protection costs it.
    HardenNoHeaderTimeout,
    /// The same, the router's handlers turned into routes once before `Shutdown::serve` (what
    /// `axum::serve` does through `into_make_service`), rather than on every request.
    HardenPrepared,
}

const SERVER_TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    /// Binds 127.0.0.1:0, spawns the server on the current runtime, returns its URL.
    async fn start(self) -> reqwest::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let route = axum::routing::get(|| async { "ok" });
        match self {
            Server::Bare => {
                let app = axum::Router::new().route("/", route);
                tokio::spawn(async move { axum::serve(listener, app).await });
            }
            Server::TowerHttp
            | Server::TowerHttpGraceful
            | Server::TowerHttpGracefulHyperUtil
            | Server::TowerHttpGracefulHyperUtilHeaderTimeout => {
                let layers = tower::ServiceBuilder::new()
                    .layer(axum::error_handling::HandleErrorLayer::new(
                        |_: tower::BoxError| async { axum::http::StatusCode::SERVICE_UNAVAILABLE },
                    ))
                    .load_shed()
                    .concurrency_limit(10_000)
                    .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        SERVER_TIMEOUT,
                    ));
                let app = axum::Router::new().route("/", route.layer(layers));
                match self {
                    Server::TowerHttp => {
                        tokio::spawn(async move { axum::serve(listener, app).await });
                    }
                    Server::TowerHttpGraceful => {
                        let signal = std::future::pending::<()>(); // never comes during the run
                        let serve = axum::serve(listener, app).with_graceful_shutdown(signal);
                        tokio::spawn(async move { serve.await });
                    }
                    _ => {
                        use hyper_util::{rt, server};
                        // As `axum::serve` does: the router prepared once, one auto connection each.
                        let service =
                            hyper_util::service::TowerToHyperService::new(app.with_state(()));
                        tokio::spawn(async move {
                            let graceful = server::graceful::GracefulShutdown::new();
                            let mut builder =
                                server::conn::auto::Builder::new(rt::TokioExecutor::new());
                            if self == Server::TowerHttpGracefulHyperUtilHeaderTimeout {
                                builder
                                    .http1()
                                    .timer(rt::TokioTimer::new())
                                    .header_read_timeout(Duration::from_secs(30));
                            }
                            while let Ok((tcp, _)) = listener.accept().await {
                                let io = rt::TokioIo::new(tcp);
                                let conn =
                                    builder.serve_connection_with_upgrades(io, service.clone());
                                tokio::spawn(graceful.watch(conn.into_owned()));
                            }
                        });
                    }
                }
            }
            Server::Harden | Server::HardenPrepared | Server::HardenNoHeaderTimeout => {
                let breaker = harden::circuit_breaker::CircuitBreaker::builder()
                    .name("bench")
                    .build()
                    .expect("breaker");
                let layers = tower::ServiceBuilder::new()
                    .layer(harden::http::ErrorResponseLayer::new())
                    .layer(breaker.layer())
                    .layer(harden::bulkhead::BulkheadLayer::new(10_000))
                    .layer(harden::timeout::TimeoutLayer::new(SERVER_TIMEOUT));
                let mut app = axum::Router::new().route("/", route.layer(layers));
                if self == Server::HardenPrepared {
                    app = app.with_state(());
                }
                // Never triggered (no signals, the handle dropped): serves until the bench exits.
                let shutdown = harden::shutdown::Shutdown::builder()
                    .signals(false)
                    .header_read_timeout(
                        (self != Server::HardenNoHeaderTimeout)
                            .then_some(harden::shutdown::DEFAULT_HEADER_READ_TIMEOUT),
                    )
                    .build()
                    .expect("shutdown");
                tokio::spawn(shutdown.serve(listener, app));
            }
        }
        format!("http://{addr}/").parse().expect("url")
    }
}

// One per row, built once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Bare(reqwest::Client),
    Preset(Preset),
    Stack(Stack),
    Harden(harden::reqwest::Client),
    /// The convenience client given a built request, as the preset row is: like for like.
    HardenExecute(harden::reqwest::Client),
    Middleware(ClientWithMiddleware),
}

struct Row {
    name: &'static str,
    client: Client,
    url: reqwest::Url,
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
            Client::Stack(s) => s
                .clone()
                .oneshot(reqwest::Request::new(reqwest::Method::GET, url.clone()))
                .await
                .map_err(drop),
            Client::Harden(c) => c.get(url.clone()).send().await.map_err(drop),
            Client::HardenExecute(c) => c
                .execute(reqwest::Request::new(reqwest::Method::GET, url.clone()))
                .await
                .map_err(drop),
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
async fn run(row: &Arc<Row>, callers: usize, time: Duration) -> Sample {
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + time;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (row, failures) = (row.clone(), failures.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if !row.client.get(&row.url).await {
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

/// A bare axum server on its own thread and current-thread runtime.
fn server_on_own_thread() -> reqwest::Url {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            tx.send(Server::Bare.start().await).expect("send url");
            std::future::pending::<()>().await
        });
    });
    rx.recv().expect("server url")
}

fn bare() -> reqwest::Client {
    harden::reqwest::client_builder()
        .build()
        .expect("reqwest client")
}

fn stack() -> StackLayer {
    let retry = harden::retry::RetryPolicy::builder()
        .classifier(harden::http::HttpRetryClassifier::new())
        .copy_request(harden::http::HttpReplay::new())
        .build()
        .expect("retry");
    harden::ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(30))
        .retry(retry)
        .attempt_timeout(Duration::from_secs(10))
        .build()
        .expect("stack")
}

/// Every client row's client, by the id `HARDEN_BENCH_CALLGRIND` takes.
fn client(id: &str) -> Client {
    match id {
        "bare" => Client::Bare(bare()),
        "preset" => Client::Preset(HttpLayer::builder().build().expect("preset").layer(bare())),
        // The preset without its two timeouts: what the timers cost.
        "preset-untimed" => Client::Preset(
            HttpLayer::builder()
                .total_timeout(None)
                .attempt_timeout(None)
                .build()
                .expect("preset")
                .layer(bare()),
        ),
        "stack" => Client::Stack(stack().layer(bare())),
        "client" => Client::Harden(harden::reqwest::Client::new(bare())),
        "client-execute" => Client::HardenExecute(harden::reqwest::Client::new(bare())),
        "middleware" => Client::Middleware(
            reqwest_middleware::ClientBuilder::new(bare())
                .with(RetryTransientMiddleware::new_with_policy(
                    ExponentialBackoff::builder().build_with_max_retries(3),
                ))
                .build(),
        ),
        other => panic!("unknown client row {other:?}"),
    }
}

/// Row ids, names, and the server each calls.
const ROWS: &[(&str, &str, Server)] = &[
    ("bare", "bare reqwest", Server::Bare),
    ("preset", "harden preset (tower path)", Server::Bare),
    ("preset-untimed", "harden preset, no timeouts", Server::Bare),
    (
        "stack",
        "ResilienceLayer: total timeout + retry + attempt timeout",
        Server::Bare,
    ),
    ("client", "harden::reqwest::Client", Server::Bare),
    (
        "client-execute",
        "harden::reqwest::Client, execute(Request) as the preset row",
        Server::Bare,
    ),
    (
        "middleware",
        "reqwest-middleware + reqwest-retry",
        Server::Bare,
    ),
    (
        "tower-http",
        "server: axum + tower-http timeout + load-shed/concurrency limit",
        Server::TowerHttp,
    ),
    (
        "tower-http-graceful",
        "  the same, axum::serve(..).with_graceful_shutdown(..)",
        Server::TowerHttpGraceful,
    ),
    (
        "tower-http-graceful-hyper-util",
        "  the same, hyper-util GracefulShutdown watching auto connections",
        Server::TowerHttpGracefulHyperUtil,
    ),
    (
        "tower-http-graceful-hyper-util-header-timeout",
        "  the same, with hyper's 30 s header-read timeout",
        Server::TowerHttpGracefulHyperUtilHeaderTimeout,
    ),
    (
        "harden-server",
        "server: Shutdown::serve + ErrorResponseLayer + breaker + bulkhead + timeout",
        Server::Harden,
    ),
    (
        "harden-server-prepared",
        "  the same, router given `with_state(())` before `Shutdown::serve`",
        Server::HardenPrepared,
    ),
    (
        "harden-server-no-header-timeout",
        "  the same, without the header-read timeout",
        Server::HardenNoHeaderTimeout,
    ),
];

/// The server rows call with bare reqwest.
fn client_of(id: &str) -> &str {
    match id {
        "tower-http" | "harden-server" | "harden-server-prepared" => "bare",
        "tower-http-graceful" | "tower-http-graceful-hyper-util" => "bare",
        "tower-http-graceful-hyper-util-header-timeout" | "harden-server-no-header-timeout" => {
            "bare"
        }
        id => id,
    }
}

/// The rows of one configuration; `bare_url` is the bare server's (on its own thread or not).
async fn rows(bare_url: &reqwest::Url, with_server_rows: bool) -> Vec<Arc<Row>> {
    let mut rows = Vec::new();
    for &(id, name, server) in ROWS {
        let url = match server {
            Server::Bare => bare_url.clone(),
            _ if !with_server_rows => continue,
            other => other.start().await,
        };
        rows.push(Arc::new(Row {
            name,
            client: client(client_of(id)),
            url,
        }));
    }
    rows
}

/// One row's `n` sequential requests on one current-thread runtime holding client and server.
fn callgrind(id: &str, n: u64) {
    let &(_, _, server) = ROWS
        .iter()
        .find(|r| r.0 == id)
        .unwrap_or_else(|| panic!("unknown row {id:?}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let url = server.start().await;
        let client = client(client_of(id));
        for _ in 0..n {
            assert!(client.get(&url).await, "{id}: a request failed");
        }
    });
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    if let Ok(id) = std::env::var("HARDEN_BENCH_CALLGRIND") {
        let n = std::env::var("HARDEN_BENCH_REQUESTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        return callgrind(&id, n);
    }
    let quick = std::env::var("HARDEN_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let ms: u64 = std::env::var("HARDEN_BENCH_HTTP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 150 } else { 200 });
    let reps = if quick { 1 } else { 15 };
    let time = Duration::from_millis(ms);
    let config = std::env::var("HARDEN_BENCH_CONFIG").unwrap_or_default();
    println!(
        "http_client: {} ms x {reps} per row and concurrency{}",
        ms,
        if quick { " (quick)" } else { "" }
    );

    if config.is_empty() || config == "separate" {
        println!();
        println!("Separate: the server on its own thread, the callers on the main thread.");
        let url = server_on_own_thread();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        rt.block_on(async {
            let rows = rows(&url, false).await;
            measure(&rows, quick, reps, time).await;
        });
    }
    if config.is_empty() || config == "open" {
        open_breaker(if quick { 2_000 } else { 200_000 });
    }
    if config.is_empty() || config == "shared" {
        println!();
        println!("Shared: client and server on one 2-worker tokio runtime.");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("shared runtime");
        rt.block_on(async {
            let url = Server::Bare.start().await;
            let rows = rows(&url, true).await;
            measure(&rows, quick, reps, time).await;
        });
    }
}

async fn measure(rows: &[Arc<Row>], quick: bool, reps: usize, time: Duration) {
    println!();
    println!("| client | callers | req/s | vs bare | p50 µs | p99 µs | p50 added µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for callers in [1usize, 64] {
        // Warm-up: connections open, pools full.
        for row in rows {
            run(
                row,
                callers,
                Duration::from_millis(if quick { 50 } else { 300 }),
            )
            .await;
        }
        let mut samples: Vec<Vec<Sample>> = rows.iter().map(|_| Vec::new()).collect();
        for rep in 0..reps {
            for k in 0..rows.len() {
                let i = (k + rep) % rows.len();
                samples[i].push(run(&rows[i], callers, time).await);
            }
        }
        let summary: Vec<(f64, f64, f64)> = samples
            .iter_mut()
            .zip(rows)
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
}

/// p50 and p99 of the caller's answer while the authority's breaker is open: the preset (a
/// parsed `Url`, a `reqwest::Request` built by the caller) and the convenience client (from a
/// parsed `Url`, and from a `&str` it must parse).
fn open_breaker(calls: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let url = Server::Bare.start().await;
        let text = url.to_string();
        let layer = HttpLayer::builder().build().expect("preset");
        let preset = layer.layer(bare());
        let client = harden::reqwest::Client::new(bare());
        // One request each, so the client has the authority's entry; then open both breakers.
        assert!(Client::Preset(preset.clone()).get(&url).await);
        assert!(client.get(url.clone()).send().await.is_ok());
        layer.breaker().force_open();
        client.breaker(&url).expect("entry").force_open();

        println!();
        println!("Open breaker: the caller's answer ({calls} calls per row, one task).");
        println!();
        println!("| row | p50 ns | p99 ns |");
        println!("|---|---:|---:|");
        let mut times = Vec::with_capacity(calls);
        macro_rules! row {
            ($name:expr, $call:expr) => {{
                times.clear();
                for _ in 0..calls {
                    let t0 = Instant::now();
                    let rejected = $call.is_err();
                    times.push(t0.elapsed().as_nanos() as u64);
                    assert!(rejected, "{}: not rejected", $name);
                }
                times.sort_unstable();
                println!(
                    "| {} | {} | {} |",
                    $name,
                    times[times.len() / 2],
                    times[times.len() * 99 / 100]
                );
            }};
        }
        row!(
            "harden preset (tower path)",
            preset
                .clone()
                .oneshot(reqwest::Request::new(reqwest::Method::GET, url.clone()))
                .await
        );
        row!(
            "harden::reqwest::Client, parsed Url",
            client.get(url.clone()).send().await
        );
        row!(
            "harden::reqwest::Client, &str",
            client.get(text.as_str()).send().await
        );
    });
}
