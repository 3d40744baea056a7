//! The retry budget under overload, on loopback: `cargo bench -p harden-peers --bench budget_overload`.
//!
//! An upstream with a fixed capacity (`WORKERS` requests served at once, `SERVICE` each) and a
//! bounded queue in front (`QUEUE`; a full queue answers 503 at once) that still serves the
//! requests whose callers have left. Open-loop load at `HARDEN_OVERLOAD_LOAD` of its capacity
//! (default 0.8; several separated by commas); after `HEALTHY` the service time triples for
//! `SLOW`, then the run goes on for `AFTER`. Every client has a 200 ms attempt timeout. Rows: no
//! retries, harden's HTTP preset with its breaker disabled (the budget alone bounds retries),
//! and the full preset (`HttpLayer::builder()`, defaults but the attempt timeout).
//!
//! Printed per row: the extra load, (attempts at the upstream - requests sent) / requests sent, in
//! the worst second (any 1 s, in steps of 100 ms) from the start of the slowdown to the end, next
//! to what the default budget allows in that second (20 % + 20), and the recovery time: from the end of the slowdown to the start of
//! the first half second from which every later half second had ≥ 90 % of its requests answered
//! 200 within the attempt timeout ("never" if the run ended first). About 45 s per load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harden::http::HttpLayer;
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};

const WORKERS: usize = 8;
const SERVICE: Duration = Duration::from_millis(20);
/// Capacity: WORKERS / SERVICE = 400 requests/s; a third of it while slow.
const CAPACITY: f64 = WORKERS as f64 / 0.020;
const QUEUE: usize = 100;
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(200);
const HEALTHY: Duration = Duration::from_secs(2);
const SLOW: Duration = Duration::from_secs(4);
const AFTER: Duration = Duration::from_secs(9);
const BUCKET: Duration = Duration::from_millis(500);

struct Upstream {
    /// Places in the queue and at the workers: a request that finds none gets 503 at once.
    admitted: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    slow: AtomicBool,
    start: Instant,
    /// Attempts arrived, per 100 ms since `start`.
    arrivals: Mutex<Vec<u32>>,
}

async fn serve(up: Arc<Upstream>) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    {
        let tick = (up.start.elapsed().as_millis() / 100) as usize;
        let mut arrivals = up.arrivals.lock().unwrap();
        if arrivals.len() <= tick {
            arrivals.resize(tick + 1, 0);
        }
        arrivals[tick] += 1;
    }
    let Ok(place) = up.admitted.clone().try_acquire_owned() else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    // The work runs on its own task: a caller that gives up does not cancel it.
    let work = tokio::spawn(async move {
        let _place = place;
        let _worker = up.workers.acquire().await.expect("workers");
        let service = if up.slow.load(Ordering::Relaxed) {
            3 * SERVICE
        } else {
            SERVICE
        };
        tokio::time::sleep(service).await;
    });
    match work.await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Starts an upstream on its own thread; its URL and handle.
fn upstream() -> (reqwest::Url, Arc<Upstream>) {
    let up = Arc::new(Upstream {
        admitted: Arc::new(Semaphore::new(WORKERS + QUEUE)),
        workers: Arc::new(Semaphore::new(WORKERS)),
        slow: AtomicBool::new(false),
        start: Instant::now(),
        arrivals: Mutex::new(Vec::new()),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local addr");
    let state = up.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app =
                axum::Router::new().route("/", axum::routing::get(move || serve(state.clone())));
            axum::serve(listener, app).await.expect("serve");
        });
    });
    (format!("http://{addr}/").parse().expect("url"), up)
}

type Preset = <HttpLayer as Layer<reqwest::Client>>::Service;

// One per client task, built once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Client {
    NoRetries(reqwest::Client),
    Preset(Preset),
}

impl Client {
    async fn get(&self, url: &reqwest::Url) -> bool {
        let request = reqwest::Request::new(reqwest::Method::GET, url.clone());
        let response = match self {
            Client::NoRetries(c) => {
                match tokio::time::timeout(ATTEMPT_TIMEOUT, c.execute(request)).await {
                    Ok(r) => r.map_err(drop),
                    Err(_) => Err(()),
                }
            }
            Client::Preset(s) => s.clone().oneshot(request).await.map_err(drop),
        };
        match response {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(()) => false,
        }
    }
}

fn reqwest_client() -> reqwest::Client {
    harden::reqwest::client_builder()
        .build()
        .expect("reqwest client")
}

fn rows() -> Vec<(&'static str, Client)> {
    let preset = || {
        HttpLayer::builder()
            .attempt_timeout(ATTEMPT_TIMEOUT)
            .build()
            .expect("preset")
    };
    let budget_only = preset();
    budget_only.breaker().disable();
    vec![
        (
            "no retries (reqwest, 200 ms timeout)",
            Client::NoRetries(reqwest_client()),
        ),
        (
            "budget only (preset, breaker disabled)",
            Client::Preset(budget_only.layer(reqwest_client())),
        ),
        (
            "full preset (HttpLayer::builder())",
            Client::Preset(preset().layer(reqwest_client())),
        ),
    ]
}

struct Outcome {
    /// Extra load in the worst second from the slowdown on, and the default budget's bound for
    /// that second.
    worst_second: (f64, f64),
    /// From the end of the slowdown; `None`: not recovered when the run ended.
    recovery: Option<Duration>,
    /// Requests answered 200 within the attempt timeout, over all sent after the slowdown began.
    fast_share_after: f64,
}

async fn run(client: Client, load: f64) -> Outcome {
    let (url, up) = upstream();
    let rate = load * CAPACITY;
    let total = HEALTHY + SLOW + AFTER;
    let n = (rate * total.as_secs_f64()) as usize;
    let start = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(n);
    let mut slow = false;
    for _ in 0..n {
        interval.tick().await;
        let at = start.elapsed();
        let should_be_slow = at >= HEALTHY && at < HEALTHY + SLOW;
        if should_be_slow != slow {
            slow = should_be_slow;
            up.slow.store(slow, Ordering::Relaxed);
        }
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let ok = client.get(&url).await;
            (at, ok && t0.elapsed() <= ATTEMPT_TIMEOUT)
        }));
    }
    // Requests still waiting (in backoff) a second after the load ends count as not answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut fast: Vec<(Duration, bool)> = Vec::with_capacity(n);
    for task in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout_at(deadline, task).await {
            Ok(r) => fast.push(r.expect("request task")),
            Err(_) => abort.abort(),
        }
    }
    let buckets = (total.as_millis() / BUCKET.as_millis()) as usize;
    let mut per_bucket = vec![(0u32, 0u32); buckets];
    for &(at, ok) in &fast {
        let b = (at.as_millis() / BUCKET.as_millis()) as usize;
        if let Some(slot) = per_bucket.get_mut(b) {
            slot.0 += 1;
            slot.1 += u32::from(ok);
        }
    }
    let slow_end = ((HEALTHY + SLOW).as_millis() / BUCKET.as_millis()) as usize;
    let healthy = |b: &(u32, u32)| b.0 > 0 && f64::from(b.1) >= 0.9 * f64::from(b.0);
    let recovered_from = (slow_end..buckets).find(|&i| per_bucket[i..].iter().all(healthy));
    let recovery = recovered_from.map(|i| BUCKET * (i - slow_end) as u32);
    let arrivals = up.arrivals.lock().unwrap().clone();
    let mut sent = vec![0u32; arrivals.len().max(1)];
    for &(at, _) in &fast {
        if let Some(slot) = sent.get_mut((at.as_millis() / 100) as usize) {
            *slot += 1;
        }
    }
    let first = (HEALTHY.as_millis() / 100) as usize;
    let last = (total.as_millis() / 100) as usize;
    let worst_second = (first..last.saturating_sub(9))
        .map(|t| {
            let window = |v: &[u32]| f64::from(v.iter().skip(t).take(10).sum::<u32>());
            let (attempts, requests) = (window(&arrivals), window(&sent).max(1.0));
            (
                (attempts - requests) / requests,
                (0.2 * requests + 20.0) / requests,
            )
        })
        .fold((f64::MIN, 0.0), |w, s| if s.0 > w.0 { s } else { w });
    let after: Vec<_> = fast.iter().filter(|f| f.0 >= HEALTHY).collect();
    let fast_share_after = after.iter().filter(|f| f.1).count() as f64 / after.len().max(1) as f64;
    Outcome {
        worst_second,
        recovery,
        fast_share_after,
    }
}

fn main() {
    let loads: Vec<f64> = std::env::var("HARDEN_OVERLOAD_LOAD")
        .ok()
        .map(|v| v.split(',').filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0.8]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    println!(
        "upstream: {WORKERS} workers x {} ms ({CAPACITY:.0}/s), queue {QUEUE}; service time x3 \
         from {} s for {} s; attempt timeout {} ms\n",
        SERVICE.as_millis(),
        HEALTHY.as_secs(),
        SLOW.as_secs(),
        ATTEMPT_TIMEOUT.as_millis()
    );
    println!("| load | client | extra load, worst second (budget's bound) | recovery after the slowdown | answered in time after it began |");
    println!("|---|---|---:|---:|---:|");
    for load in loads {
        for (name, client) in rows() {
            eprintln!("{name} at {:.0}% ...", load * 100.0);
            let o = rt.block_on(run(client, load));
            let recovery = o.recovery.map_or_else(
                || "never".to_string(),
                |d| format!("{:.1} s", d.as_secs_f64()),
            );
            println!(
                "| {:.0}% | {name} | +{:.0}% (+{:.0}%) | {recovery} | {:.0}% |",
                load * 100.0,
                o.worst_second.0 * 100.0,
                o.worst_second.1 * 100.0,
                o.fast_share_after * 100.0
            );
        }
    }
}
