//! End to end on loopback: bare axum next to axum with harden's server layers (the error
//! response layer, graceful shutdown's accept loop and in-flight count, a breaker and a bulkhead
//! on the route), measured in the same run at 1 and 64 concurrent keep-alive connections:
//! requests per second, p50 and p99 latency. `cargo bench --bench http_server`.
//!
//! A second bare axum server ("again") is measured like the others: its ratio to the first is
//! the run's noise floor, which a difference between bare and harden must exceed to mean
//! anything. Two more rows split harden's cost: the route layers alone under `axum::serve`, and
//! `Shutdown::serve` alone with the plain route.
//!
//! Method: each server runs on its own multi-thread tokio runtime (2 workers, threads named
//! after it); the load generator is a minimal HTTP/1.1 keep-alive client on a current-thread
//! runtime (raw sockets, so client cost is small and identical for both). Repetitions are
//! interleaved (every row once per repetition, each repetition starting one row further), so a
//! noisy moment hits every row; requests/s is the median over repetitions, latencies are over every request
//! of a row. Server CPU per request is the on-CPU time of the server's worker threads
//! (`/proc/self/task/*/schedstat`, ns) over the requests served: unlike wall-clock throughput it
//! barely moves when other processes compete for the cores, so its ratio is the steadier
//! estimate of the layers' cost (for a CPU-bound server, throughput ∝ 1 / CPU per request).
//! A second configuration, *shared*, drives every server from its own runtime: the load
//! generator's connections run on the server's 2 workers, client and server in one process on
//! one runtime, so what the server spends the client loses (its CPU column then counts both).
//! Knobs: `HARDEN_BENCH_QUICK=1` (smoke run), `HARDEN_BENCH_REPS`, `HARDEN_BENCH_REP_MS`,
//! `HARDEN_BENCH_FILTER=text` (only rows whose label contains `text`; bare axum always runs),
//! `HARDEN_BENCH_CONFIG=separate|shared` (one configuration; both by default).

#[path = "harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use harden::bulkhead::BulkheadLayer;
use harden::circuit_breaker::CircuitBreaker;
use harden::http::ErrorResponseLayer;
use harden::shutdown::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceBuilder;

const REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n";

async fn hello() -> &'static str {
    "hello, world"
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

async fn start_bare() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hello", get(hello));
    // Same TCP_NODELAY as harden's accept loop.
    let listener = listener.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The route guarded by harden's layers (error response, breaker, bulkhead).
fn guarded_app() -> Router {
    let breaker = CircuitBreaker::builder().name("bench").build().unwrap();
    Router::new().route(
        "/hello",
        get(hello).layer(
            ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(breaker.layer())
                .layer(BulkheadLayer::new(10_000)),
        ),
    )
}

/// `axum::serve` with the guarded route: the route layers' share of the cost.
async fn start_route_layers_only() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, guarded_app()).await });
    addr
}

/// `Shutdown::serve` with the plain route: the accept loop's and in-flight count's share (with
/// or without hyper's per-request header-read timer).
async fn start_serve_only(header_timer: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut shutdown = Shutdown::builder().signals(false);
    if !header_timer {
        shutdown = shutdown.header_read_timeout(None);
    }
    let shutdown = shutdown.build().unwrap();
    tokio::spawn(shutdown.serve(listener, Router::new().route("/hello", get(hello))));
    addr
}

async fn start_harden() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Never triggered (no signals, the handle dropped): serves until the bench exits.
    let shutdown = Shutdown::builder().signals(false).build().unwrap();
    tokio::spawn(shutdown.serve(listener, guarded_app()));
    addr
}

/// One keep-alive connection sending requests back to back until `until`; latencies in ns.
async fn drive(addr: SocketAddr, until: Instant, latencies: &mut Vec<u64>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < until {
        let start = Instant::now();
        stream.write_all(REQUEST).await.unwrap();
        let mut filled = 0;
        loop {
            let n = stream.read(&mut buf[filled..]).await.unwrap();
            assert_ne!(n, 0, "server closed the connection");
            filled += n;
            if complete(&buf[..filled]) {
                break;
            }
        }
        assert!(buf.starts_with(b"HTTP/1.1 200"), "not a 200");
        latencies.push(start.elapsed().as_nanos() as u64);
    }
}

/// Whether `buf` holds a whole response (headers and a `content-length` body).
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    buf.len() >= end + 4 + length
}

struct Row {
    label: &'static str,
    addr: SocketAddr,
    /// The server's runtime, which drives the load in the shared configuration.
    runtime: tokio::runtime::Handle,
    threads: &'static str,
    connections: usize,
    rps: Vec<f64>,
    cpu_ns: u64,
    latencies: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Nanoseconds on CPU of this process' threads whose name starts with `prefix` (Linux; 0 elsewhere).
fn cpu_ns(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

fn server_runtime(name: &'static str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let quick = std::env::var("HARDEN_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let reps = env_u64("HARDEN_BENCH_REPS").unwrap_or(if quick { 1 } else { 7 }) as usize;
    let rep = Duration::from_millis(env_u64("HARDEN_BENCH_REP_MS").unwrap_or(if quick {
        100
    } else {
        1500
    }));

    println!("## `http_server`\n");
    println!(
        "Machine: {}. Run: {reps} interleaved repetitions of {} ms per row{}.\n",
        harness::machine(),
        rep.as_millis(),
        if quick { " (quick)" } else { "" }
    );

    let bare_rt = server_runtime("srv-bare");
    let again_rt = server_runtime("srv-again");
    let harden_rt = server_runtime("srv-harden");
    let bare = bare_rt.block_on(start_bare());
    let again = again_rt.block_on(start_bare());
    let hardened = harden_rt.block_on(start_harden());
    let route_rt = server_runtime("srv-route");
    let route_only = route_rt.block_on(start_route_layers_only());
    let serve_rt = server_runtime("srv-serve");
    let serve_only = serve_rt.block_on(start_serve_only(true));
    let untimed_rt = server_runtime("srv-untimed");
    let untimed = untimed_rt.block_on(start_serve_only(false));
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // `HARDEN_BENCH_FILTER=text`: only rows whose label contains `text` (bare axum always runs).
    let filter = std::env::var("HARDEN_BENCH_FILTER").ok();
    let config = std::env::var("HARDEN_BENCH_CONFIG").unwrap_or_default();
    for shared in [false, true] {
        if !config.is_empty() && config != if shared { "shared" } else { "separate" } {
            continue;
        }
        println!(
            "{}\n",
            if shared {
                "Shared: the load generator on each server's own 2-worker runtime."
            } else {
                "Separate: each server on its own runtime, the load generator on the main thread."
            }
        );
        let client = if shared { None } else { Some(&client_rt) };
        let handles = [
            bare_rt.handle(),
            again_rt.handle(),
            harden_rt.handle(),
            route_rt.handle(),
            serve_rt.handle(),
            untimed_rt.handle(),
        ];
        measure(
            [bare, again, hardened, route_only, serve_only, untimed],
            handles.map(Clone::clone),
            client,
            filter.as_deref(),
            reps,
            rep,
        );
    }
    drop(client_rt);
    bare_rt.shutdown_timeout(Duration::from_millis(100));
    again_rt.shutdown_timeout(Duration::from_millis(100));
    route_rt.shutdown_timeout(Duration::from_millis(100));
    serve_rt.shutdown_timeout(Duration::from_millis(100));
    untimed_rt.shutdown_timeout(Duration::from_millis(100));
    harden_rt.shutdown_timeout(Duration::from_millis(100));
}

/// One configuration: every row, interleaved; `client` drives the load, or each row's own
/// server runtime when `None`.
fn measure(
    addrs: [SocketAddr; 6],
    handles: [tokio::runtime::Handle; 6],
    client: Option<&tokio::runtime::Runtime>,
    filter: Option<&str>,
    reps: usize,
    rep: Duration,
) {
    let [bare, again, hardened, route_only, serve_only, untimed] = addrs;
    let [bare_h, again_h, harden_h, route_h, serve_h, untimed_h] = handles;
    let load = |row: &Row, until: Instant| match client {
        Some(rt) => rt.block_on(run(row.addr, row.connections, until)),
        None => row.runtime.block_on(run(row.addr, row.connections, until)),
    };
    let mut rows = Vec::new();
    for connections in [1, 64] {
        for (label, addr, threads, runtime) in [
            ("bare axum", bare, "srv-bare", &bare_h),
            (
                "bare axum again (A/A: the noise floor)",
                again,
                "srv-again",
                &again_h,
            ),
            (
                "axum + harden server layers",
                hardened,
                "srv-harden",
                &harden_h,
            ),
            (
                "  share: route layers only (axum::serve)",
                route_only,
                "srv-route",
                &route_h,
            ),
            (
                "  share: Shutdown::serve only (plain route)",
                serve_only,
                "srv-serve",
                &serve_h,
            ),
            (
                "  share: Shutdown::serve only, no header-read timer",
                untimed,
                "srv-untimed",
                &untimed_h,
            ),
        ] {
            if label != "bare axum" && filter.is_some_and(|f| !label.contains(f)) {
                continue;
            }
            rows.push(Row {
                label,
                addr,
                runtime: runtime.clone(),
                threads,
                connections,
                rps: Vec::new(),
                cpu_ns: 0,
                latencies: Vec::new(),
            });
        }
    }
    // Warm-up: every row once, short.
    for row in &rows {
        let until = Instant::now() + rep.min(Duration::from_millis(200));
        load(row, until);
    }
    // Each repetition starts one row further, so every row takes every position in the order.
    let n = rows.len();
    for r in 0..reps {
        for k in 0..n {
            let row = &mut rows[(r + k) % n];
            let cpu_before = cpu_ns(row.threads);
            let started = Instant::now();
            let latencies = load(row, started + rep);
            let elapsed = started.elapsed().as_secs_f64();
            row.cpu_ns += cpu_ns(row.threads).saturating_sub(cpu_before);
            row.rps.push(latencies.len() as f64 / elapsed);
            row.latencies.extend(latencies);
        }
    }

    println!(
        "| server | connections | requests/s (median) | ratio to bare | p50 µs | p99 µs | server CPU µs/request | bare / this CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let per_group = rows.len() / 2;
    for pair in rows.chunks_mut(per_group) {
        let base = median(&mut pair[0].rps.clone());
        let cpu_per = |row: &Row| row.cpu_ns as f64 / 1000.0 / row.latencies.len().max(1) as f64;
        let base_cpu = cpu_per(&pair[0]);
        for row in pair.iter_mut() {
            let rps = median(&mut row.rps);
            row.latencies.sort_unstable();
            let cpu = cpu_per(row);
            println!(
                "| {} | {} | {:.0} | {:.3} | {:.1} | {:.1} | {:.2} | {:.3} |",
                row.label,
                row.connections,
                rps,
                rps / base,
                percentile(&row.latencies, 0.50),
                percentile(&row.latencies, 0.99),
                cpu,
                base_cpu / cpu,
            );
        }
    }
    println!();
}

async fn run(addr: SocketAddr, connections: usize, until: Instant) -> Vec<u64> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            drive(addr, until, &mut latencies).await;
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(latencies) = tasks.join_next().await {
        all.extend(latencies.unwrap());
    }
    all
}
