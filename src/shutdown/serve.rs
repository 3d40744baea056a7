//! The accept loop, the connections and the sequence of [`Shutdown::serve`](super::Shutdown::serve).

use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower_layer::Layer;

use super::layer::ShutdownLayer;
use super::state::{Phase, Shared};
use super::{HookOutcome, HookReport, Report, Shutdown};

/// How the drain (steps 3–4) ended.
struct Drained {
    deadline_reached: bool,
    in_flight_at_trigger: usize,
    completed_at_trigger: u64,
}

pub(super) async fn serve(
    shutdown: Shutdown,
    listener: TcpListener,
    router: Router,
) -> io::Result<Report> {
    let shared = Arc::clone(&shutdown.shared);
    let started = tokio::time::Instant::now();
    if shutdown.config.signals {
        spawn_signal_watcher(Arc::clone(&shared))?;
    }
    let service = ShutdownLayer::new(Arc::clone(&shared)).layer(router);
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    if let Some(timeout) = shutdown.config.header_read_timeout {
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout);
    }
    let builder = Arc::new(builder);

    let mut connections = JoinSet::new();
    let mut sequence = pin!(drain(&shared, &shutdown));
    let drained = loop {
        tokio::select! {
            biased;
            drained = &mut sequence => break drained,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(connection(
                        stream,
                        service.clone(),
                        Arc::clone(&builder),
                    ));
                }
                // Per-connection errors (reset before accept) and resource exhaustion (EMFILE):
                // keep serving; back off a little so a full fd table is not a busy loop.
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    // Step 4 end: the listener closes; whatever is left is aborted. Connections still open here
    // hold no request (idle keep-alive, unfinished headers) unless the deadline was reached.
    drop(listener);
    let aborted = shared.in_flight();
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    let tasks_left = shared.tracker.len();

    // Step 5: hooks in order, each with its own timeout; a forced exit skips them.
    shared.set_phase(Phase::CleaningUp);
    let hooks = std::mem::take(&mut *shared.hooks.lock().unwrap_or_else(|e| e.into_inner()));
    let mut reports = Vec::with_capacity(hooks.len());
    for hook in hooks {
        let hook_started = tokio::time::Instant::now();
        let outcome = if shared.forced.is_cancelled() {
            HookOutcome::Skipped
        } else {
            let run = tokio::time::timeout(hook.timeout, (hook.run)());
            tokio::select! {
                biased;
                _ = shared.forced.cancelled() => HookOutcome::Skipped,
                result = run => match result {
                    Ok(Ok(())) => HookOutcome::Completed,
                    Ok(Err(err)) => HookOutcome::Failed(err.to_string()),
                    Err(_) => HookOutcome::TimedOut,
                },
            }
        };
        if outcome != HookOutcome::Completed {
            tracing::warn!(hook = %hook.name, outcome = ?outcome, "shutdown hook did not complete");
        }
        reports.push(HookReport {
            name: hook.name,
            outcome,
            elapsed: hook_started.elapsed(),
        });
    }
    // Relaxed: every connection task has been joined, so every count is in.
    let completed = shared.completed.load(std::sync::atomic::Ordering::Relaxed);
    let report = Report {
        in_flight_at_trigger: drained.in_flight_at_trigger,
        completed: completed - drained.completed_at_trigger,
        aborted,
        tasks_left,
        deadline_reached: drained.deadline_reached,
        forced: shared.forced.is_cancelled(),
        hooks: reports,
        elapsed: started.elapsed(),
    };
    shared.set_phase(Phase::Done);
    tracing::info!(%report, "shutdown complete");
    Ok(report)
}

/// Steps 1–4 up to the point where the server closes.
async fn drain(shared: &Shared, shutdown: &Shutdown) -> Drained {
    shared.triggered.cancelled().await;
    let in_flight_at_trigger = shared.in_flight();
    // Relaxed: a statistic; the difference is taken after every connection is joined.
    let completed_at_trigger = shared.completed.load(std::sync::atomic::Ordering::Relaxed);
    tracing::info!(in_flight = in_flight_at_trigger, "shutdown triggered");
    shared.set_phase(Phase::Draining);
    let forced = shared.forced.cancelled();
    let mut forced = pin!(forced);
    tokio::select! {
        biased;
        _ = &mut forced => {},
        _ = tokio::time::sleep(shutdown.config.drain_delay) => {},
    }
    shared.start_refusing();
    let done = async {
        shared.idle().await;
        shared.tracker.wait().await;
        // A request that arrived while the tasks were awaited is awaited too.
        shared.idle().await;
    };
    let deadline_reached = tokio::select! {
        biased;
        _ = &mut forced => false,
        _ = done => false,
        _ = tokio::time::sleep(shutdown.config.deadline) => true,
    };
    Drained {
        deadline_reached,
        in_flight_at_trigger,
        completed_at_trigger,
    }
}

async fn connection(
    stream: TcpStream,
    service: super::layer::ShutdownService<Router>,
    builder: Arc<ConnBuilder<TokioExecutor>>,
) {
    // Like `axum::serve`'s listener with `tcp_nodelay`: small responses are not held back.
    let _ = stream.set_nodelay(true);
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    // NOTE: no connection is told to close when refusing starts. A keep-alive connection that
    // looks idle may be carrying its client's next request at that very moment, and closing it
    // would lose that request (HTTP/1.1 cannot tell the client the close came first). So every
    // request on it, now or later, gets an answer — the 503 with `Connection: close` once
    // refusing, after which hyper closes it — and connections still open when the drain is over
    // are dropped then, when load balancers have long stopped sending (`serve`).
    let _ = conn.await;
}

fn spawn_signal_watcher(shared: Arc<Shared>) -> io::Result<()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut phase = shared.phase.subscribe();
    tokio::spawn(async move {
        let mut count = 0u32;
        loop {
            let signal = async {
                #[cfg(unix)]
                let got = tokio::select! {
                    s = term.recv() => s.is_some(),
                    c = tokio::signal::ctrl_c() => c.is_ok(),
                };
                #[cfg(not(unix))]
                let got = tokio::signal::ctrl_c().await.is_ok();
                got
            };
            let got = tokio::select! {
                got = signal => got,
                // The watcher ends with `serve`.
                _ = phase.wait_for(|p| *p == Phase::Done) => false,
            };
            if !got {
                return;
            }
            count += 1;
            if count == 1 {
                tracing::info!("signal received: graceful shutdown");
                shared.triggered.cancel();
            } else {
                tracing::warn!("second signal received: forcing shutdown");
                shared.forced.cancel();
                return;
            }
        }
    });
    Ok(())
}
