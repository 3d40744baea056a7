//! Scene 2: harden's server (health, graceful shutdown) under load, shut down midway.
//!
//! The server is [`Shutdown::serve`] with [`Health`]'s probes and one route, `/api/work`,
//! that takes 100–300 ms. [`CLIENTS`] client tasks send it requests back to back over plain
//! `reqwest` (reqwest's own retries off, so every request is counted once). At [`TRIGGER`] the
//! sequence is started with [`ShutdownHandle::trigger`]: readiness turns 503 at once, requests
//! are still served for the drain delay, then new requests get 503 + `Connection: close` while
//! the ones in flight finish.
//!
//! The client tasks stand for the pool behind a load balancer: the first 503 +
//! `Connection: close` any of them gets takes the server out of rotation, and no task starts a
//! request after that (a request already started goes on). Without this, the task whose
//! request is the last to finish would send its next request after the listener closed, and
//! that request could reach no server at all. A request is *lost* when it got no HTTP answer
//! (a connection reset, a refused connection, a timeout): every `reqwest` error counts, none is
//! filtered, and the demo exits with an error when there is one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use harden::health::Health;
use harden::shutdown::{Phase, Report, Shutdown, ShutdownHandle};
use harden::BoxError;
use tokio::time::Instant;

use super::closed::closed_under_it;
use super::{secs, Style};

/// Where scene 2's settings are (this file, this line), printed at start.
pub(crate) const SETTINGS_AT: (&str, u32) = (file!(), line!());
/// Concurrent client tasks, each sending one request after another.
pub(crate) const CLIENTS: usize = 8;
/// When the shutdown is triggered, from the start of the scene.
pub(crate) const TRIGGER: Duration = Duration::from_millis(1500);
/// The server's drain delay: readiness is down, requests are still served.
pub(crate) const DRAIN_DELAY: Duration = Duration::from_millis(700);
/// The server's deadline for in-flight requests, after the drain delay.
pub(crate) const DEADLINE: Duration = Duration::from_secs(3);
/// How often readiness is polled until it turns 503.
const READY_POLL: Duration = Duration::from_millis(50);
/// One request's client-side limit: past it the request counts as lost.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the clients saw, counted at the client.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    ok: AtomicU64,
    ok_after_trigger: AtomicU64,
    refused: AtomicU64,
    lost: AtomicU64,
    other: AtomicU64,
    resent: AtomicU64,
}

/// The first refusal's status, headers and body, as the client got it.
struct Refusal {
    at: Duration,
    status: u16,
    connection: String,
    retry_after: String,
    body: String,
}

/// What the scene hands back to `main`.
pub(crate) struct Outcome {
    /// Scene 2 for the SVG timeline.
    pub(crate) panel: super::svg::Server,
    pub(crate) lost: u64,
    pub(crate) other: u64,
    pub(crate) report: Report,
}

/// A route that works for 100–300 ms (the spread is a fixed sequence, not a random draw).
fn app(health: &Health) -> Router {
    let next = Arc::new(AtomicU64::new(0));
    Router::new()
        .route(
            "/api/work",
            get(move || {
                // Relaxed: only spreads the delays; no other memory depends on it.
                let n = next.fetch_add(1, Ordering::Relaxed);
                async move {
                    let ms = 100 + (n * 67) % 201;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    format!("done in {ms} ms")
                }
            }),
        )
        .merge(health.router())
}

pub(crate) async fn scene(style: &Style) -> Result<Outcome, BoxError> {
    let shutdown = Shutdown::builder()
        .drain_delay(DRAIN_DELAY)
        .deadline(DEADLINE)
        // The demo triggers by hand; Ctrl-C still ends the process as usual.
        .signals(false)
        .build()?;
    let handle = shutdown.handle();
    let health = Health::builder().shutdown(&handle).build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(shutdown.serve(listener, app(&health)));

    println!(
        "\n{}",
        style.bold("scene 2: a server that shuts down without dropping a request")
    );
    println!(
        "harden::shutdown serves /api/work (100-300 ms) and harden::health's probes on\n\
         {addr}. {CLIENTS} clients send requests back to back; at {:.1} s the shutdown is\n\
         triggered (drain delay {} ms, deadline {} s). The first 503 takes the server\n\
         out of the clients' rotation.\n",
        TRIGGER.as_secs_f64(),
        DRAIN_DELAY.as_millis(),
        DEADLINE.as_secs(),
    );

    let http = reqwest::Client::builder()
        .no_proxy()
        .retry(reqwest::retry::never())
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let start = Instant::now();
    let counts = Arc::new(Counts::default());
    let triggered = Arc::new(AtomicBool::new(false));
    let out_of_rotation = Arc::new(AtomicBool::new(false));
    let refusal: Arc<Mutex<Option<Refusal>>> = Arc::default();
    let work = format!("http://{addr}/api/work");

    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (http, work, counts) = (http.clone(), work.clone(), counts.clone());
        let (triggered, out_of_rotation, refusal) =
            (triggered.clone(), out_of_rotation.clone(), refusal.clone());
        clients.spawn(async move {
            // Acquire pairs with the Release store below: a task that sees the flag also sees
            // the refusal it was set for (it reads nothing else, so Relaxed would do as well).
            while !out_of_rotation.load(Ordering::Acquire) {
                counts.sent.fetch_add(1, Ordering::Relaxed);
                // Relaxed: a flag read for counting, not for ordering other memory.
                let after_trigger = triggered.load(Ordering::Relaxed);
                let mut answer = http.get(&work).send().await;
                if answer.as_ref().is_err_and(closed_under_it) {
                    // The server closed this idle keep-alive connection as the request reached
                    // it (it does so only once the drain is over). A GET is idempotent and
                    // nothing was answered: send it once more on a fresh connection, as
                    // browsers and Go's `http.Transport` do.
                    counts.resent.fetch_add(1, Ordering::Relaxed);
                    answer = http.get(&work).send().await;
                }
                match answer {
                    Ok(response) if response.status().is_success() => {
                        // Read the body: a request is complete when its answer is.
                        match response.text().await {
                            Ok(_) => {
                                counts.ok.fetch_add(1, Ordering::Relaxed);
                                if after_trigger || triggered.load(Ordering::Relaxed) {
                                    counts.ok_after_trigger.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(_) => {
                                counts.lost.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(response) if response.status() == 503 => {
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                        let header = |name: &str| {
                            response
                                .headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        let (connection, retry_after) =
                            (header("connection"), header("retry-after"));
                        let status = response.status().as_u16();
                        let body = response.text().await.unwrap_or_default();
                        let mut first = refusal.lock().expect("refusal");
                        if first.is_none() {
                            *first = Some(Refusal {
                                at: start.elapsed(),
                                status,
                                connection,
                                retry_after,
                                body,
                            });
                        }
                        // Release: see the Acquire load above.
                        out_of_rotation.store(true, Ordering::Release);
                    }
                    Ok(_) => {
                        counts.other.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        counts.lost.fetch_add(1, Ordering::Relaxed);
                        eprintln!("lost at {:.2} s: {err:?}", start.elapsed().as_secs_f64());
                    }
                }
            }
        });
    }

    // Readiness, polled until it turns 503; then the poller stops (it is a client too).
    let ready_url = format!("http://{addr}/health/ready");
    let poller = {
        let http = http.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(READY_POLL);
            loop {
                ticker.tick().await;
                if let Ok(response) = http.get(&ready_url).send().await {
                    if response.status() == 503 {
                        let body = response.text().await.unwrap_or_default();
                        return (start.elapsed(), body);
                    }
                }
            }
        })
    };

    println!("  time phase     | sent   ok  refused  lost | in flight (server)");
    let mut phases = handle.subscribe();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    ticker.tick().await;
    let mut trigger = Box::pin(tokio::time::sleep(TRIGGER));
    let mut fired = false;
    let mut refusal_shown = false;
    let mut phase_starts = vec![(0.0, Phase::Serving.to_string())];
    let mut poller = Some(poller);
    loop {
        tokio::select! {
            _ = ticker.tick() => line(style, start.elapsed(), &handle, &counts),
            () = &mut trigger, if !fired => {
                fired = true;
                // Relaxed: the clients read it only to count what they saw after the signal.
                triggered.store(true, Ordering::Relaxed);
                let in_flight = handle.in_flight();
                handle.trigger();
                println!(
                    "{} {}",
                    secs(start.elapsed()),
                    style.bold(&format!("-- shutdown triggered, {in_flight} requests in flight"))
                );
            }
            changed = phases.changed() => {
                if changed.is_err() {
                    break;
                }
                let phase = *phases.borrow_and_update();
                phase_starts.push((start.elapsed().as_secs_f64(), phase.to_string()));
                print_phase(style, start.elapsed(), phase, handle.in_flight());
                // The watch keeps only the latest phase: print the refusal once either of the
                // last two is seen.
                if phase >= Phase::CleaningUp && !refusal_shown {
                    refusal_shown = true;
                    print_refusal(&refusal);
                }
                if phase == Phase::Draining {
                    if let Some(poller) = poller.take() {
                        // Readiness is 503 from the trigger on; the poller sees it within a poll.
                        if let Ok((at, body)) = poller.await {
                            let status = serde_json::from_str::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|v| Some(v.get("status")?.as_str()?.to_owned()))
                                .unwrap_or(body);
                            println!(
                                "       /health/ready answered 503 at {:.2} s: status {status:?}",
                                at.as_secs_f64()
                            );
                        }
                    }
                }
                if phase == Phase::Done {
                    break;
                }
            }
        }
    }
    let report = server.await??;
    while clients.join_next().await.is_some() {}
    line(style, start.elapsed(), &handle, &counts);
    let lost = counts.lost.load(Ordering::Relaxed);
    let other = counts.other.load(Ordering::Relaxed);

    println!();
    println!(
        "{}",
        style.bold(&format!(
            "summary: {} requests in {:.1} s",
            counts.sent.load(Ordering::Relaxed),
            start.elapsed().as_secs_f64()
        ))
    );
    println!(
        "  server     in flight at the signal {}, completed after it {} (probes too),\n\
         \x20            aborted {}",
        report.in_flight_at_trigger, report.completed, report.aborted
    );
    println!(
        "  clients    {} answered 200 ({} after the signal), {} refused with 503,",
        counts.ok.load(Ordering::Relaxed),
        counts.ok_after_trigger.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
    );
    println!("             {other} other answers, lost {lost} (no HTTP answer, even when resent)");
    println!(
        "  resent     {} GETs whose idle keep-alive connection the server closed as they\n\
         \x20            arrived (it closes them only once the drain is over)",
        counts.resent.load(Ordering::Relaxed)
    );
    let panel = super::svg::Server {
        duration: start.elapsed().as_secs_f64(),
        trigger: TRIGGER.as_secs_f64(),
        // `done` is the instant serve returned: not a band of its own.
        phases: phase_starts
            .into_iter()
            .filter(|(_, phase)| phase != Phase::Done.as_str())
            .collect(),
        summary: format!(
            "in flight at the signal {}, completed after it {}, refused {}, lost {lost}",
            report.in_flight_at_trigger,
            report.completed,
            counts.refused.load(Ordering::Relaxed)
        ),
    };
    Ok(Outcome {
        panel,
        lost,
        other,
        report,
    })
}

fn line(style: &Style, at: Duration, handle: &ShutdownHandle, counts: &Counts) {
    println!(
        "{} {} | {:>4} {:>4} {:>8} {:>5} | {:>4}",
        secs(at),
        style.phase(handle.phase(), 9),
        counts.sent.load(Ordering::Relaxed),
        counts.ok.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed),
        handle.in_flight(),
    );
}

fn print_phase(style: &Style, at: Duration, phase: Phase, in_flight: usize) {
    let what = match phase {
        Phase::Draining => "readiness 503, still serving".to_owned(),
        Phase::Refusing => format!("new requests: 503; {in_flight} in flight go on"),
        Phase::CleaningUp => "all answered, listener closed".to_owned(),
        Phase::Done => "serve returned its report".to_owned(),
        _ => String::new(),
    };
    println!("{}   server {}: {what}", secs(at), style.phase(phase, 0));
}

fn print_refusal(refusal: &Mutex<Option<Refusal>>) {
    if let Some(r) = refusal.lock().expect("refusal").as_ref() {
        println!(
            "       first refusal at {:.2} s: {}, Connection: {}, Retry-After: {}",
            r.at.as_secs_f64(),
            r.status,
            r.connection,
            r.retry_after
        );
        println!("       {}", r.body);
    }
}
