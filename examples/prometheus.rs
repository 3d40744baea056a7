//! An axum service that calls an in-process upstream through the harden stack and serves its
//! metrics to Prometheus.
//!
//! ```text
//! cargo run --example prometheus --features metrics -- --port 3000
//! curl http://127.0.0.1:3000/call                       # one call through the stack
//! curl -X POST http://127.0.0.1:3000/admin/upstream/outage
//! curl http://127.0.0.1:3000/metrics                    # harden_* series, Prometheus text format
//! curl -X POST http://127.0.0.1:3000/admin/upstream/healthy
//! ```
//!
//! The stack, outermost first, every layer named `upstream` in metrics: fallback (answers
//! rejections with a degraded response) → retry (budgeted) → circuit breaker → bulkhead →
//! attempt timeout → chaos → upstream. The upstream answers at once; its faults come from
//! [`harden::chaos`]: none while healthy, and in an outage three calls in four fail after 5 ms
//! and one in four hangs until the attempt timeout cuts it off (drawn from a fixed seed, so every
//! run sees the same sequence); `POST /admin/upstream/{mode}` switches the chaos at run time. The port comes from `--port N` or `PORT` (default 0: any free port); the service binds
//! 127.0.0.1 only and prints `listening on http://127.0.0.1:<port>` once it accepts connections.
//! `.ci/prometheus-test` drives it and checks what a real Prometheus scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use harden::bulkhead::{error::BulkheadFull, BulkheadLayer};
use harden::chaos::{Chaos, Faults, Latency};
use harden::circuit_breaker::{error::CircuitOpen, CircuitBreaker};
use harden::fallback::FallbackLayer;
use harden::metrics::names;
use harden::retry::{Backoff, RetryBudget, RetryLayer, RetryPolicy};
use harden::timeout::TimeoutLayer;
use harden::BoxError;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// Histogram buckets for `harden_call_duration_seconds`, in seconds. Without buckets the
/// exporter renders histograms as summaries, which `histogram_quantile` cannot aggregate.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The in-process upstream: always answers; an outage is injected in front of it.
#[derive(Debug)]
struct Upstream {
    chaos: Chaos,
    calls: AtomicU64,
}

impl Upstream {
    /// Built after the recorder is installed: the chaos registers its series when built.
    fn new() -> Result<Self, BoxError> {
        Ok(Upstream {
            chaos: Chaos::builder().name("upstream").seed(1).build()?,
            calls: AtomicU64::new(0),
        })
    }

    /// The faults of an outage: 3 calls in 4 fail after 5 ms, 1 in 4 hangs.
    fn outage() -> Faults {
        Faults::new()
            .with_error_rate(0.75)
            .with_hang_rate(0.25)
            .with_latency(Latency::fixed(Duration::from_millis(5)), 1.0)
    }

    async fn call(&self) -> Result<String, BoxError> {
        // Relaxed: a counter for the answer's text; it orders nothing.
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(format!("upstream answer #{n}"))
    }
}

type Stack = BoxCloneSyncService<(), String, BoxError>;

#[derive(Clone)]
struct App {
    upstream: Arc<Upstream>,
    breaker: CircuitBreaker,
    stack: Stack,
    metrics: PrometheusHandle,
}

fn stack(upstream: Arc<Upstream>, breaker: &CircuitBreaker) -> Result<Stack, BoxError> {
    let budget = RetryBudget::builder()
        .min_retries_per_sec(1)
        .retry_ratio(0.1)
        .build()?;
    let retry = RetryPolicy::builder()
        .name("upstream")
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .budget(budget)
        .build()?;
    let fallback =
        FallbackLayer::new(|err: BoxError| async move { Ok(format!("degraded: {err}")) })
            .when(|err: &BoxError| err.is::<CircuitOpen>() || err.is::<BulkheadFull>())
            .name("upstream");
    let svc = ServiceBuilder::new()
        .layer(fallback)
        .layer(RetryLayer::new(retry))
        .layer(breaker.layer())
        .layer(BulkheadLayer::new(16).name("upstream"))
        .layer(TimeoutLayer::new(Duration::from_millis(250)).name("upstream"))
        .layer(upstream.chaos.layer())
        .service(service_fn(move |()| {
            let upstream = upstream.clone();
            async move { upstream.call().await }
        }));
    Ok(BoxCloneSyncService::new(svc))
}

async fn call(State(app): State<App>) -> (StatusCode, String) {
    match app.stack.oneshot(()).await {
        Ok(body) => (StatusCode::OK, body),
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()),
    }
}

async fn set_upstream(State(app): State<App>, Path(mode): Path<String>) -> (StatusCode, String) {
    let faults = match mode.as_str() {
        "healthy" => Faults::new(),
        "outage" => Upstream::outage(),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "mode is healthy or outage\n".into(),
            )
        }
    };
    match app.upstream.chaos.set(faults) {
        Ok(()) => (StatusCode::OK, format!("upstream {mode}\n")),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
    }
}

async fn breaker_state(State(app): State<App>) -> String {
    format!("{:?}\n", app.breaker.state())
}

async fn render_metrics(State(app): State<App>) -> String {
    app.metrics.render()
}

fn port() -> Result<u16, BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = match args.as_slice() {
        [] => match std::env::var("PORT") {
            Ok(value) => value,
            Err(_) => return Ok(0),
        },
        [flag, value] if flag == "--port" => value.clone(),
        [arg] if arg.starts_with("--port=") => arg["--port=".len()..].to_string(),
        _ => return Err("usage: prometheus [--port N]".into()),
    };
    Ok(value.parse()?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let port = port()?;

    // The application installs the recorder; harden only describes its series.
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(names::CALL_DURATION.into()), DURATION_BUCKETS)?
        .install_recorder()?;
    harden::metrics::describe();
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });

    let breaker = CircuitBreaker::builder()
        .name("upstream")
        .error_threshold_percentage(50.0)
        .volume_threshold(5)
        .rolling_window(Duration::from_secs(10), 10)
        .reset_timeout(Duration::from_secs(3))
        .half_open_max_calls(1)
        .build()?;
    let upstream = Arc::new(Upstream::new()?);
    let app = App {
        stack: stack(upstream.clone(), &breaker)?,
        upstream,
        breaker,
        metrics,
    };

    let router = Router::new()
        .route("/call", get(call))
        .route("/metrics", get(render_metrics))
        .route("/admin/upstream/{mode}", post(set_upstream))
        .route("/admin/breaker", get(breaker_state))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
