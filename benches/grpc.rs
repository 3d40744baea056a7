//! End to end on loopback: bare tonic unary calls next to the same calls through harden's
//! `GrpcLayer` (breaker, a service-config retry policy and timeout, `grpc-timeout` on every
//! call), measured in the same run at 1 and 64 concurrent callers on one channel; bare tonic
//! with its own timeout (the like-for-like baseline of harden's policy, which carries a
//! deadline) and the layer with its breaker only; and the answer a caller gets while the
//! breaker is open, which needs no network round trip.
//! `cargo bench --bench grpc`.
//!
//! Method: the tonic server runs on its own 2-worker runtime; the callers on another. A second
//! bare row ("bare again") is the run's noise floor. Repetitions are interleaved (every row once
//! per repetition), calls per second is the median over repetitions. Knobs:
//! `HARDEN_BENCH_QUICK=1` (smoke run), `HARDEN_BENCH_REPS`, `HARDEN_BENCH_REP_MS`.
//!
//! Instructions per call: `HARDEN_BENCH_CALLGRIND=<row>` with `HARDEN_BENCH_REQUESTS=N` makes
//! one row's N sequential calls on one current-thread runtime holding client and server, and
//! exits; `benches/grpc_callgrind.sh` runs each row under `valgrind --tool=callgrind` at N and
//! 2N calls and prints the difference over N (start-up cancels). Rows: `bare`, `bare-timeout`
//! (tonic's own 10 s timeout per call), `harden` (the policy above), `harden-timeout` (the
//! timeout, no retry policy), `harden-breaker` (no service config).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harden::tonic::GrpcLayer;
use tonic::codegen::tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tower::Layer;

// The tests' echo service: the bench calls only its unary method.
#[allow(dead_code)]
#[path = "../tests/grpc/echo.rs"]
mod echo;

use echo::{unary, Echo, EchoReply, EchoRequest};

const CONFIG: &str = r#"{"methodConfig":[{"name":[{"service":"test.Echo"}],"timeout":"10s",
  "retryPolicy":{"maxAttempts":3,"initialBackoff":"0.01s","maxBackoff":"0.1s","backoffMultiplier":2,
  "retryableStatusCodes":["UNAVAILABLE"]}}],"retryThrottling":{"maxTokens":10,"tokenRatio":0.1}}"#;

#[derive(Clone)]
enum Client {
    Bare(Channel),
    /// Bare tonic with its own timeout on each call (`Request::set_timeout`).
    BareTimed(Channel),
    Harden(harden::tonic::GrpcClient<Channel>),
}

/// A unary call with tonic's own 10 s timeout: `grpc-timeout` and tonic's timer, no harden.
async fn unary_timed(channel: Channel) -> Result<EchoReply, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(EchoRequest {
        message: "hello".into(),
    });
    request.set_timeout(Duration::from_secs(10));
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static("/test.Echo/Unary"),
        tonic_prost::ProstCodec::<EchoRequest, EchoReply>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

impl Client {
    async fn call(&self) {
        let r = match self {
            Client::Bare(c) => unary(c.clone(), "hello").await,
            Client::BareTimed(c) => unary_timed(c.clone()).await,
            Client::Harden(c) => unary(c.clone(), "hello").await,
        };
        r.expect("the echo answers");
    }
}

/// Calls per second with `callers` concurrent callers for `window`.
async fn measure(client: &Client, callers: usize, window: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (client, stop, done) = (client.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                // Relaxed: a flag and a counter read after the tasks are joined.
                while !stop.load(Ordering::Relaxed) {
                    client.call().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// The client of a `HARDEN_BENCH_CALLGRIND` row.
fn row(id: &str, channel: Channel) -> Client {
    let config = match id {
        "bare" => return Client::Bare(channel),
        "bare-timeout" => return Client::BareTimed(channel),
        "harden" => CONFIG,
        "harden-timeout" => {
            r#"{"methodConfig":[{"name":[{"service":"test.Echo"}],"timeout":"10s"}]}"#
        }
        "harden-breaker" => "{}",
        other => panic!("unknown row {other:?}"),
    };
    let layer = GrpcLayer::builder()
        .service_config_json(config)
        .build()
        .unwrap();
    Client::Harden(layer.layer(channel))
}

fn callgrind(id: &str, n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = row(id, echo::serve_tonic(Echo::echoing()).await);
        for _ in 0..n {
            client.call().await;
        }
    });
}

fn main() {
    if let Ok(id) = std::env::var("HARDEN_BENCH_CALLGRIND") {
        return callgrind(&id, env_u64("HARDEN_BENCH_REQUESTS").unwrap_or(1000));
    }
    let quick = std::env::var_os("HARDEN_BENCH_QUICK").is_some();
    let reps = env_u64("HARDEN_BENCH_REPS").unwrap_or(if quick { 1 } else { 7 }) as usize;
    let window = Duration::from_millis(env_u64("HARDEN_BENCH_REP_MS").unwrap_or(if quick {
        100
    } else {
        1000
    }));
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let addr = server.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(Echo::echoing())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        addr
    });
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("callers")
        .enable_all()
        .build()
        .unwrap();
    clients.block_on(async move {
        let channel = echo::channel(addr).await;
        let layer = GrpcLayer::builder()
            .service_config_json(CONFIG)
            .build()
            .unwrap();
        let breaker_only = GrpcLayer::builder().build().unwrap();
        // Ratios are to the first row; the two timed rows are also compared with each other.
        let rows = [
            ("bare tonic", Client::Bare(channel.clone())),
            ("tonic through harden", Client::Harden(layer.layer(channel.clone()))),
            ("bare tonic again", Client::Bare(channel.clone())),
            ("bare tonic with its own timeout", Client::BareTimed(channel.clone())),
            ("harden breaker only", Client::Harden(breaker_only.layer(channel.clone()))),
        ];
        println!(
            "gRPC unary calls on loopback, {reps} interleaved repetitions of {window:?}, median calls/s"
        );
        println!("| row | 1 caller | ratio | 64 callers | ratio |");
        println!("|---|---|---|---|---|");
        let mut results = vec![[Vec::new(), Vec::new()]; rows.len()];
        for rep in 0..reps {
            for i in 0..rows.len() {
                let i = (i + rep) % rows.len();
                for (j, callers) in [1, 64].into_iter().enumerate() {
                    let rate = measure(&rows[i].1, callers, window).await;
                    results[i][j].push(rate);
                }
            }
        }
        let medians: Vec<[f64; 2]> = results
            .iter_mut()
            .map(|[a, b]| [median(a), median(b)])
            .collect();
        for (i, (name, _)) in rows.iter().enumerate() {
            println!(
                "| {name} | {:.0}/s | {:.3} | {:.0}/s | {:.3} |",
                medians[i][0],
                medians[i][0] / medians[0][0],
                medians[i][1],
                medians[i][1] / medians[0][1]
            );
        }
        // Like for like: harden's policy (retries + timeout) against tonic with a timeout too.
        println!(
            "\ntonic through harden / bare tonic with its own timeout: {:.3} (1 caller), {:.3} (64 callers)",
            medians[1][0] / medians[3][0],
            medians[1][1] / medians[3][1]
        );

        // While the breaker is open, an answer without a network round trip.
        let breaker = layer.breaker().unwrap();
        breaker.force_open();
        let client = Client::Harden(layer.layer(channel.clone()));
        let n = if quick { 1_000 } else { 100_000 };
        let start = Instant::now();
        for _ in 0..n {
            let r = match &client {
                Client::Harden(c) => unary(c.clone(), "hello").await,
                _ => unreachable!(),
            };
            assert_eq!(r.unwrap_err().code(), tonic::Code::Unavailable);
        }
        let per = start.elapsed() / n;
        breaker.reset();
        println!("\nbreaker open: {per:?} per rejected call through tonic's client (no network round trip)");
    });
}
