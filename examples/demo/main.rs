//! # The harden demo: a client that stays up while its upstream fails, and a server that
//! # shuts down without dropping a request
//!
//! ```text
//! cargo run --example demo                   # about 13 s, all on 127.0.0.1
//! cargo run --example demo -- --svg demo.svg # and a timeline to open in a browser
//! ```
//!
//! **Scene 1, the client.** An upstream HTTP server (axum, on an ephemeral port of 127.0.0.1)
//! gets its faults from [`harden::chaos`]: healthy, then failing (most requests answered 503),
//! then slow (answers later than the caller's attempt timeout, a few never), then healthy
//! again. The faults are drawn from a fixed seed, so every run draws them alike; the story
//! varies only as much as the machine's timing moves which calls are the breaker's probes. A
//! caller sends it 50 requests a second through `reqwest::Client` wrapped in harden's standard
//! stack — fallback, total timeout, retry with a budget, circuit breaker, attempt timeout (see
//! `resilient_client`) — and prints a line per phase, per breaker transition and per second:
//! what the upstream produced, what the caller saw, the retries sent and the calls the open
//! breaker answered without a network round trip. It ends with a summary (p50/p99 latency,
//! calls kept off the sick upstream).
//!
//! The caller is harden's HTTP preset for reqwest on the tower path
//! (`harden::http::HttpLayer::builder()` around `reqwest::Client`, see `resilient_client`) rather
//! than the one-line `harden::reqwest::Client`, on purpose: the convenience client wraps a
//! finished `reqwest::Client`, so nothing sits between its retry layer and the network to count
//! the attempts of each call, and the per-second "retries" column is half of what the scene
//! shows; it also has no fallback (it returns [`harden::reqwest::Error`], which is right for an
//! application and would make "fallbacks" a count of errors). The preset is the same stack the
//! client uses per host, with a counting `map_request` under it and a fallback on top.
//!
//! **Scene 2, the server** (`server.rs`): [`harden::shutdown`]'s `Shutdown::serve` with
//! [`harden::health`]'s probes and a 100–300 ms route under load from 8 client tasks; a
//! shutdown is triggered midway. It shows readiness turning 503, requests served through the
//! drain delay, in-flight requests finishing, the first refusal (503, `Connection: close`,
//! `Retry-After`, JSON body) and the count at both ends: in flight at the signal, completed,
//! refused, lost. A lost request (one with no HTTP answer) makes the demo exit with an error,
//! so the smoke run in `.ci/run` checks it.
//!
//! Output fits 80 columns; colours only when stdout is a terminal (and `NO_COLOR` is unset).
//!
//! `--svg FILE` writes scene 1's timeline (breaker state as a band, calls per second by
//! outcome, every call's latency) and scene 2's (the server's shutdown phases as a band, the
//! trigger marked, the final count) as an SVG document. It is plain SVG text written by `svg.rs`, not a
//! plotting crate: `plotters` lays out text by measuring it with a system font (its default
//! `ttf` feature loads fonts through `font-kit` and builds against the system's fontconfig;
//! without it, text needs a font file bundled into the binary), so a fresh machine with
//! nothing but the Rust toolchain could not build or run it. An SVG `<text>` element needs no
//! font to be written: the viewer picks one.

mod closed;
mod server;
mod svg;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use harden::chaos::{Chaos, Faults, Latency};
use harden::circuit_breaker::error::CircuitOpen;
use harden::circuit_breaker::{CircuitBreaker, EventKind, State};
use harden::fallback::FallbackLayer;
use harden::http::ErrorResponseLayer;
use harden::retry::{Backoff, RetryBudget};
use harden::shutdown::Phase as ServerPhase;
use harden::BoxError;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

/// The upstream's faults are drawn from this seed (one whose probes let the breaker close
/// during the slow phase, so the picture shows timeouts and retries as well as rejections).
const SEED: u64 = 4;
/// Length of each phase.
const PHASE: Duration = Duration::from_millis(2500);
/// One call every 20 ms: 50 a second.
const CALL_EVERY: Duration = Duration::from_millis(20);
/// The header the fallback marks its answers with: `open` (the breaker rejected the call) or
/// `error` (an error or timeout).
const FALLBACK_HEADER: &str = "x-demo-fallback";

struct Phase {
    name: &'static str,
    what: &'static str,
    faults: Faults,
}

/// Where the upstream's faults are set, printed at start.
const PHASES_AT: u32 = line!();
fn phases() -> [Phase; 4] {
    let healthy = Faults::new().with_status(StatusCode::SERVICE_UNAVAILABLE, 0.02);
    [
        Phase {
            name: "healthy",
            what: "2% of requests get a 503",
            faults: healthy,
        },
        Phase {
            name: "failing",
            what: "80% of requests get a 503",
            faults: Faults::new().with_status(StatusCode::SERVICE_UNAVAILABLE, 0.8),
        },
        Phase {
            name: "slow",
            what: "60% of answers take 150-400 ms, 3% never come",
            faults: Faults::new()
                .with_latency(
                    Latency::uniform(Duration::from_millis(150), Duration::from_millis(400)),
                    0.6,
                )
                .with_hang_rate(0.03),
        },
        Phase {
            name: "healthy",
            what: "recovered, 2% of requests get a 503 again",
            faults: healthy,
        },
    ]
}

/// Where the caller's stack is set, printed at start.
const CLIENT_AT: u32 = line!();
/// The caller: harden's HTTP preset for reqwest (`harden::http::HttpLayer::builder()`: HTTP
/// classification for the breaker and the retry, `Retry-After`, idempotent replay, a retry
/// budget, total and attempt timeouts, a bulkhead), tuned for a 10-second story, around a
/// `reqwest::Client` without its own retries, and a fallback on top. Returns the service and
/// the preset's breaker.
fn resilient_client(
    breaker: harden::circuit_breaker::CircuitBreakerBuilder,
    budget: &RetryBudget,
    attempts: &Attempts,
) -> Result<
    (
        impl Service<
                reqwest::Request,
                Response = reqwest::Response,
                Error = BoxError,
                Future = impl Send,
            > + Clone
            + Send
            + 'static,
        CircuitBreaker,
    ),
    BoxError,
> {
    // Only harden retries, so attempts never multiply.
    let http = harden::reqwest::client_builder().no_proxy().build()?;
    let attempts = attempts.clone();
    let network = ServiceBuilder::new()
        .map_request(move |request: reqwest::Request| {
            attempts.note(&request);
            request
        })
        .service(http);

    let preset = harden::http::HttpLayer::builder()
        .name("upstream")
        .total_timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_millis(100))
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(10), 2.0))
        .budget(budget.clone())
        .breaker(breaker)
        .build()?;
    let breaker = preset.breaker().clone();
    let fallback = FallbackLayer::new(|err: BoxError| async move {
        let why = if err.is::<CircuitOpen>() {
            "open"
        } else {
            "error"
        };
        let cached = http::Response::builder()
            .header(FALLBACK_HEADER, why)
            .body("41 (cached)")?;
        Ok(reqwest::Response::from(cached))
    });
    let client = ServiceBuilder::new()
        .layer(fallback)
        .layer(preset)
        .service(network);
    Ok((client, breaker))
}

/// Network attempts by call, keyed by the call's number in a header (which `try_clone` copies
/// into every retry).
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<HashMap<u64, u32>>>);

const CALL_HEADER: &str = "x-demo-call";

impl Attempts {
    fn note(&self, request: &reqwest::Request) {
        let call = request.headers().get(CALL_HEADER);
        if let Some(call) = call.and_then(|v| v.to_str().ok()?.parse().ok()) {
            *self.0.lock().expect("attempts").entry(call).or_default() += 1;
        }
    }

    /// The attempts of a finished call.
    fn take(&self, call: u64) -> u32 {
        self.0.lock().expect("attempts").remove(&call).unwrap_or(0)
    }
}

/// What one call came back with, as the caller saw it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Ok,
    ServerError,
    Fallback,
    Rejected,
}

struct Record {
    finished: Duration,
    latency: Duration,
    seen: Seen,
    retries: u32,
}

/// The upstream: one route behind the chaos layer, on 127.0.0.1.
async fn start_upstream(chaos: &Chaos, served: Arc<AtomicU64>) -> Result<SocketAddr, BoxError> {
    let app = Router::new()
        .route(
            "/price",
            get(move || {
                served.fetch_add(1, Ordering::Relaxed);
                async { "42" }
            }),
        )
        .layer(
            ServiceBuilder::new()
                // axum routes cannot fail: an injected error would become a JSON 500 (this
                // demo injects statuses, delays and hangs, which are answers or silence).
                .layer(ErrorResponseLayer::new())
                .layer(chaos.http_layer()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Terminal styling, off when stdout is not a terminal.
struct Style {
    colour: bool,
}

impl Style {
    fn detect() -> Self {
        Style {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// `text`, padded to `width`, in the breaker state's colour.
    fn state(&self, state: State, width: usize) -> String {
        let text = format!("{:<width$}", state.to_string());
        let code = match state {
            State::Closed => "32",
            State::Open | State::ForcedOpen => "31",
            State::HalfOpen => "33",
            _ => return text,
        };
        self.paint(&text, code)
    }

    /// The server's shutdown phase, padded to `width`, coloured like the breaker's states.
    fn phase(&self, phase: ServerPhase, width: usize) -> String {
        let text = format!("{:<width$}", phase.to_string());
        let code = match phase {
            ServerPhase::Serving => "32",
            ServerPhase::Draining => "33",
            _ => "31",
        };
        self.paint(&text, code)
    }

    fn bold(&self, text: &str) -> String {
        self.paint(text, "1")
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

fn band(state: State) -> svg::Band {
    match state {
        State::Closed | State::Disabled => svg::Band::Closed,
        State::HalfOpen => svg::Band::HalfOpen,
        _ => svg::Band::Open,
    }
}

fn secs(d: Duration) -> String {
    format!("{:>5.1}s", d.as_secs_f64())
}

struct Options {
    svg: Option<std::path::PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options { svg: None };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--svg" => match args.next() {
                Some(path) => options.svg = Some(path.into()),
                None => return Err("--svg needs a file name".into()),
            },
            "-h" | "--help" => {
                return Err("usage: cargo run --example demo [-- --svg FILE]".into());
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let style = Style::detect();
    print_where_the_code_is();
    let mut timeline = client_scene(&style).await?;
    let served = server::scene(&style).await?;
    timeline.server = Some(served.panel.clone());
    if let Some(path) = options.svg {
        std::fs::write(&path, svg::render(&timeline))?;
        println!("\ntimeline written to {}", path.display());
    }
    // The smoke test in `.ci/run` only checks the exit code: make it mean something.
    let report = &served.report;
    if served.lost > 0 || served.other > 0 || report.aborted > 0 || report.deadline_reached {
        return Err(format!(
            "scene 2 lost {} requests ({} unexpected answers; server: {report})",
            served.lost, served.other
        )
        .into());
    }
    Ok(())
}

/// Where to read or change what the demo does: file and line of each scene's settings.
fn print_where_the_code_is() {
    let here = file!();
    let server = server::SETTINGS_AT;
    println!(
        "The demo's code and settings, to read or change:\n  \
         {here}:{PHASES_AT}  upstream faults per phase (`phases`)\n  \
         {here}:{CLIENT_AT}  caller's retry, timeouts (`resilient_client`)\n  \
         {here}:{BREAKER_AT}  caller's circuit breaker (`client_scene`)\n  \
         {}:{}  scene 2's server: drain delay, deadline\n",
        server.0, server.1
    );
}

/// Where the caller's breaker is set, printed at start.
const BREAKER_AT: u32 = line!();
/// Scene 1: the client through an upstream that fails, slows down and recovers.
async fn client_scene(style: &Style) -> Result<svg::Timeline, BoxError> {
    let phases = phases();
    let chaos = Chaos::builder().name("upstream").seed(SEED).build()?;
    let served = Arc::new(AtomicU64::new(0));
    let addr = start_upstream(&chaos, served.clone()).await?;
    let url: reqwest::Url = format!("http://{addr}/price").parse()?;

    let start = Instant::now();
    let (transitions_tx, mut transitions) = tokio::sync::mpsc::unbounded_channel();
    let breaker = CircuitBreaker::builder()
        .error_threshold_percentage(50.0)
        .volume_threshold(10)
        .rolling_window(Duration::from_secs(1), 10)
        .reset_timeout(Duration::from_millis(800))
        .half_open_max_calls(1)
        // Transitions are pushed by the breaker as they happen: no polling.
        .on_event(move |event| {
            if let EventKind::Transition { from, to } = event.kind {
                let _ = transitions_tx.send((start.elapsed(), from, to));
            }
        });
    let budget = RetryBudget::new();
    let attempts = Attempts::default();
    let (client, breaker) = resilient_client(breaker, &budget, &attempts)?;

    println!(
        "{}",
        style.bold("harden demo, scene 1: a client that stays up while its upstream fails")
    );
    println!(
        "An upstream on {addr} gets its faults from harden::chaos (seed {SEED}).\n\
         A caller sends it 50 requests/s through harden::reqwest's HTTP preset (retry:\n\
         3 attempts, budget; a circuit breaker; 100 ms per attempt, 1 s in all) and a\n\
         fallback.\n\n\
         upstream made: 200s served, 503s injected, answers delayed; caller saw: calls\n\
         finished, fresh answers, 5xx after retries, fallbacks (open: the breaker\n\
         answered at once), retries sent.\n"
    );
    println!("                 | upstream made    | caller saw");
    println!("  time breaker   |  200  503  slow  | calls   ok  5xx  fallbk  open  retries");

    let records: Arc<Mutex<Vec<Record>>> = Arc::default();
    let mut all: Vec<Record> = Vec::new();
    let mut timeline = svg::Timeline {
        breaker: vec![(0.0, svg::Band::Closed)],
        ..svg::Timeline::default()
    };
    let mut last_upstream = (0, 0, 0);
    let mut report = |at: Duration, all: &mut Vec<Record>, timeline: &mut svg::Timeline| {
        let finished: Vec<Record> = std::mem::take(&mut *records.lock().expect("records"));
        let count = |seen| finished.iter().filter(|r| r.seen == seen).count() as u32;
        let row = svg::Second {
            ok: count(Seen::Ok),
            server_error: count(Seen::ServerError),
            fallback: count(Seen::Fallback),
            rejected: count(Seen::Rejected),
        };
        let retries: u32 = finished.iter().map(|r| r.retries).sum();
        let stats = chaos.stats();
        let upstream = (
            served.load(Ordering::Relaxed),
            stats.statuses,
            stats.delayed,
        );
        println!(
            "{} {} | {:>4} {:>4} {:>5}  | {:>5} {:>4} {:>4} {:>7} {:>5} {:>8}",
            secs(at),
            style.state(breaker.state(), 9),
            upstream.0 - last_upstream.0,
            upstream.1 - last_upstream.1,
            upstream.2 - last_upstream.2,
            finished.len(),
            row.ok,
            row.server_error,
            row.fallback + row.rejected,
            row.rejected,
            retries,
        );
        last_upstream = upstream;
        timeline.seconds.push(row);
        timeline.latencies.extend(
            finished
                .iter()
                .map(|r| (r.finished.as_secs_f64(), r.latency.as_secs_f64() * 1e3)),
        );
        all.extend(finished);
    };

    let total = PHASE * phases.len() as u32;
    let mut ticker = tokio::time::interval(CALL_EVERY);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut phase = None;
    let mut next_report = Duration::from_secs(1);
    let mut calls = 0u64;
    loop {
        ticker.tick().await;
        let now = start.elapsed();
        while let Ok((at, from, to)) = transitions.try_recv() {
            print_transition(style, at, from, to, &breaker);
            timeline.breaker.push((at.as_secs_f64(), band(to)));
        }
        if now >= next_report {
            report(next_report, &mut all, &mut timeline);
            next_report += Duration::from_secs(1);
        }
        if now >= total {
            break;
        }
        let index = (now.as_nanos() / PHASE.as_nanos()) as usize;
        if phase != Some(index) {
            phase = Some(index);
            let p = &phases[index];
            chaos.set(p.faults)?;
            println!(
                "{} {}",
                secs(now),
                style.bold(&format!("-- {}: {}", p.name, p.what))
            );
            timeline
                .phases
                .push((now.as_secs_f64(), p.name.to_string()));
        }
        let client = client.clone();
        let records = records.clone();
        let url = url.clone();
        let attempts = attempts.clone();
        let call = calls;
        calls += 1;
        in_flight.spawn(async move {
            let mut request = reqwest::Request::new(reqwest::Method::GET, url);
            request
                .headers_mut()
                .insert(CALL_HEADER, reqwest::header::HeaderValue::from(call));
            let sent = Instant::now();
            let seen = match client.oneshot(request).await {
                Ok(response) => match response.headers().get(FALLBACK_HEADER) {
                    Some(why) if why == "open" => Seen::Rejected,
                    Some(_) => Seen::Fallback,
                    None if response.status().is_server_error() => Seen::ServerError,
                    None => Seen::Ok,
                },
                // The fallback answers every error; this is only for completeness.
                Err(_) => Seen::Fallback,
            };
            let record = Record {
                finished: start.elapsed(),
                latency: sent.elapsed(),
                seen,
                retries: attempts.take(call).saturating_sub(1),
            };
            records.lock().expect("records").push(record);
        });
        while in_flight.try_join_next().is_some() {}
    }
    // Calls still in flight end within the total timeout.
    while in_flight.join_next().await.is_some() {}
    while let Ok((at, from, to)) = transitions.try_recv() {
        print_transition(style, at, from, to, &breaker);
        timeline.breaker.push((at.as_secs_f64(), band(to)));
    }
    let end = start.elapsed();
    if !records.lock().expect("records").is_empty() {
        report(end, &mut all, &mut timeline);
    }
    timeline.duration = end.as_secs_f64().max(timeline.seconds.len() as f64);

    summary(
        style,
        &all,
        &chaos,
        &breaker,
        &budget,
        served.load(Ordering::Relaxed),
        end,
    );
    Ok(timeline)
}

fn print_transition(style: &Style, at: Duration, from: State, to: State, breaker: &CircuitBreaker) {
    let why = match (from, to, breaker.stats().failure_percentage) {
        (State::HalfOpen, State::Open, _) => " (the probe failed)".to_string(),
        (_, State::Open, Some(rate)) => format!(" (failure rate {rate:.0}% in the window)"),
        (_, State::HalfOpen, _) => " (reset timeout over: one probe may pass)".to_string(),
        (State::HalfOpen, State::Closed, _) => " (the probe succeeded)".to_string(),
        _ => String::new(),
    };
    println!(
        "{}   breaker {} -> {}{why}",
        secs(at),
        from,
        style.state(to, 0)
    );
}

fn summary(
    style: &Style,
    all: &[Record],
    chaos: &Chaos,
    breaker: &CircuitBreaker,
    budget: &RetryBudget,
    served: u64,
    took: Duration,
) {
    let count = |seen| all.iter().filter(|r| r.seen == seen).count();
    let mut latencies: Vec<Duration> = all.iter().map(|r| r.latency).collect();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let retries: u32 = all.iter().map(|r| r.retries).sum();
    let stats = chaos.stats();
    let breaker_stats = breaker.stats();
    println!();
    println!(
        "{}",
        style.bold(&format!(
            "summary: {} calls in {:.1} s",
            all.len(),
            took.as_secs_f64()
        ))
    );
    println!(
        "  upstream   {served} answers (200), {} injected 503s, {} delayed, {} hung",
        stats.statuses, stats.delayed, stats.hangs
    );
    println!(
        "  caller     {} fresh, {} 5xx got through, {} fallbacks ({} while open)",
        count(Seen::Ok),
        count(Seen::ServerError),
        count(Seen::Fallback) + count(Seen::Rejected),
        count(Seen::Rejected),
    );
    println!(
        "  retries    {retries} sent; the budget refused {} more",
        budget.exhausted()
    );
    println!(
        "  latency    p50 {:.1} ms, p99 {:.1} ms (as the caller saw it)",
        pct(0.50),
        pct(0.99)
    );
    println!(
        "  breaker    kept {} calls off the sick upstream; now {}",
        breaker_stats.rejections,
        breaker.state()
    );
}
