//! The accept loop and the sequence of [`Shutdown::serve`](super::Shutdown::serve) and
//! [`Shutdown::run`](super::Shutdown::run).

use std::any::Any;
use std::io;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_layer::Layer;

use super::conn::{serve_connection, Builders};
use super::layer::ShutdownLayer;
use super::state::{Phase, Shared};
use super::{Config, HookOutcome, HookReport, MakeApp, Report, Shutdown};

/// How long accepting pauses after an error other than a connection's own (EMFILE, ENFILE,
/// ENOBUFS): axum's and hyper 0.14's value, time for the process to close some fds.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// How the drain (steps 1–4) ended.
struct Drained {
    deadline_reached: bool,
    /// When refusing started plus the deadline.
    deadline_at: Instant,
    in_flight_at_trigger: usize,
    upgraded_at_trigger: usize,
    completed_at_trigger: u64,
}

/// What was cut when the server closed.
#[derive(Default)]
struct Cut {
    aborted: usize,
    upgraded_aborted: usize,
    connections_cut: usize,
}

pub(super) async fn serve<L, M>(shutdown: Shutdown, mut listener: L, app: M) -> io::Result<Report>
where
    L: Listener,
    L::Addr: Send + 'static,
    M: MakeApp<L::Addr>,
{
    let mut app = app.prepare();
    let shared = Arc::clone(&shutdown.shared);
    let started = Instant::now();
    if shutdown.config.signals {
        spawn_signal_watcher(Arc::clone(&shared))?;
    }
    let layer = ShutdownLayer::new(Arc::clone(&shared));
    let builders = Arc::new(Builders::new(shutdown.config.header_read_timeout));
    let mut accept_errors = AcceptErrors::default();
    let mut connections = JoinSet::new();
    let mut spawn = |connections: &mut JoinSet<()>, (io, addr): (L::Io, L::Addr)| {
        let make = app.make(addr);
        let (layer, shared, builders) = (layer.clone(), Arc::clone(&shared), Arc::clone(&builders));
        connections.spawn(async move {
            let Ok(service) = make.await;
            serve_connection(io, layer.layer(service), shared, builders).await;
        });
    };

    let mut sequence = pin!(drain(&shared, &shutdown.config));
    let drained = loop {
        tokio::select! {
            biased;
            drained = &mut sequence => break drained,
            accepted = accept(&mut listener, &mut accept_errors) => spawn(&mut connections, accepted),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    // Connections the kernel completed but nobody accepted yet are taken too: closing the
    // listener would reset them, and their clients may have written a request already.
    if !drained.deadline_reached && !shared.forced.is_cancelled() {
        loop {
            tokio::select! {
                biased;
                accepted = accept(&mut listener, &mut accept_errors) => spawn(&mut connections, accepted),
                () = std::future::ready(()) => break,
            }
        }
    }
    drop(listener);
    // Every connection closes the way hyper means it: a response being written is finished,
    // idle HTTP/1 connections close, HTTP/2 ones once their streams are done.
    shared.closing.fire();
    let deadline_reached = drained.deadline_reached || {
        let closed = async { while connections.join_next().await.is_some() {} };
        tokio::select! {
            biased;
            () = shared.forced.cancelled() => false,
            () = closed => false,
            () = tokio::time::sleep_until(drained.deadline_at) => true,
        }
    };
    while connections.try_join_next().is_some() {}
    let cut = Cut {
        connections_cut: connections.len(),
        ..cut_what_is_left(&shared)
    };
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(finish(&shared, started, &drained, deadline_reached, cut).await)
}

/// The sequence without a server: the application serves with [`ShutdownLayer`] itself.
pub(super) async fn run(shutdown: Shutdown) -> io::Result<Report> {
    let shared = Arc::clone(&shutdown.shared);
    let started = Instant::now();
    if shutdown.config.signals {
        spawn_signal_watcher(Arc::clone(&shared))?;
    }
    let drained = drain(&shared, &shutdown.config).await;
    shared.closing.fire();
    let cut = cut_what_is_left(&shared);
    let deadline_reached = drained.deadline_reached;
    Ok(finish(&shared, started, &drained, deadline_reached, cut).await)
}

/// Steps 1–4 up to the point where the server closes.
async fn drain(shared: &Shared, config: &Config) -> Drained {
    shared.triggered.cancelled().await;
    let in_flight_at_trigger = shared.in_flight();
    let upgraded_at_trigger = shared.upgraded();
    // Relaxed: a statistic; the difference is taken after every connection is joined.
    let completed_at_trigger = shared.completed.load(Ordering::Relaxed);
    tracing::info!(in_flight = in_flight_at_trigger, "shutdown triggered");
    shared.set_phase(Phase::Draining);
    let mut forced = pin!(shared.forced.cancelled());
    tokio::select! {
        biased;
        () = &mut forced => {},
        () = tokio::time::sleep(config.drain_delay) => {},
    }
    shared.start_refusing();
    let deadline_at = Instant::now() + config.deadline;
    let done = async {
        shared.idle().await;
        shared.tracker.wait().await;
        // A request that arrived while the tasks were awaited is awaited too.
        shared.idle().await;
    };
    let deadline_reached = tokio::select! {
        biased;
        () = &mut forced => false,
        () = done => false,
        () = tokio::time::sleep_until(deadline_at) => true,
    };
    Drained {
        deadline_reached,
        deadline_at,
        in_flight_at_trigger,
        upgraded_at_trigger,
        completed_at_trigger,
    }
}

/// Step 4's end: counts what is still running and cuts upgraded sessions.
fn cut_what_is_left(shared: &Shared) -> Cut {
    let cut = Cut {
        aborted: shared.in_flight(),
        upgraded_aborted: shared.upgraded(),
        connections_cut: 0,
    };
    shared.cut.fire();
    cut
}

/// Steps 5 and 6: the hooks, then the report.
async fn finish(
    shared: &Shared,
    started: Instant,
    drained: &Drained,
    deadline_reached: bool,
    cut: Cut,
) -> Report {
    let tasks_left = shared.tracker.len();
    shared.set_phase(Phase::CleaningUp);
    let hooks = run_hooks(shared).await;
    // Relaxed: every connection task has been joined, so every count is in.
    let completed = shared.completed.load(Ordering::Relaxed);
    let report = Report {
        in_flight_at_trigger: drained.in_flight_at_trigger,
        completed: completed - drained.completed_at_trigger,
        aborted: cut.aborted,
        // Relaxed: as `completed`.
        refused: shared.refused.load(Ordering::Relaxed),
        upgraded_at_trigger: drained.upgraded_at_trigger,
        upgraded_aborted: cut.upgraded_aborted,
        connections_cut: cut.connections_cut,
        // Relaxed: as `completed`.
        unanswered: shared.unanswered.load(Ordering::Relaxed),
        tasks_left,
        deadline_reached,
        forced: shared.forced.is_cancelled(),
        hooks,
        elapsed: started.elapsed(),
    };
    shared.set_phase(Phase::Done);
    tracing::info!(%report, "shutdown complete");
    report
}

/// Step 5: hooks in order, each on its own task with its own timeout, so a hook that panics or
/// hangs is reported and the next one still runs; a forced exit skips them.
async fn run_hooks(shared: &Shared) -> Vec<HookReport> {
    let hooks = std::mem::take(&mut *shared.hooks.lock().unwrap_or_else(|e| e.into_inner()));
    let mut reports = Vec::with_capacity(hooks.len());
    for hook in hooks {
        let hook_started = Instant::now();
        let outcome = if shared.forced.is_cancelled() {
            HookOutcome::Skipped
        } else {
            let run = hook.run;
            let mut task = tokio::spawn(async move { run().await });
            let outcome = tokio::select! {
                biased;
                () = shared.forced.cancelled() => HookOutcome::Skipped,
                result = tokio::time::timeout(hook.timeout, &mut task) => match result {
                    Ok(Ok(Ok(()))) => HookOutcome::Completed,
                    Ok(Ok(Err(err))) => HookOutcome::Failed(err.to_string()),
                    Ok(Err(join)) if join.is_panic() => HookOutcome::Panicked(panic_message(join.into_panic())),
                    Ok(Err(_)) => HookOutcome::Failed("hook task was cancelled".to_owned()),
                    Err(_) => HookOutcome::TimedOut,
                },
            };
            task.abort();
            outcome
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
    reports
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => "hook panicked".to_owned(),
        },
    }
}

/// Accept failures of one episode (from the first error to the next accepted connection).
#[derive(Default)]
struct AcceptErrors {
    failures: u64,
}

/// The next connection. A tokio `TcpListener` is accepted here rather than through axum's
/// `Listener`, so its errors are logged once per episode (not once per retry) and its
/// connections get `TCP_NODELAY`; any other listener handles its own errors, as axum asks.
async fn accept<L>(listener: &mut L, errors: &mut AcceptErrors) -> (L::Io, L::Addr)
where
    L: Listener,
    L::Addr: 'static,
{
    let Some(tcp) = (listener as &mut dyn Any).downcast_mut::<TcpListener>() else {
        return listener.accept().await;
    };
    loop {
        match TcpListener::accept(tcp).await {
            Ok((stream, addr)) => {
                if errors.failures > 0 {
                    tracing::info!(failures = errors.failures, "accepting connections again");
                    errors.failures = 0;
                }
                // Small responses are not held back by Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                return (same_type(stream), same_type(addr));
            }
            // The connection's own trouble (reset before it was accepted): take the next one.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(err) => {
                if errors.failures == 0 {
                    tracing::warn!(
                        error = %err,
                        "accept failed; retrying every second, logged again once it recovers"
                    );
                }
                errors.failures += 1;
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// `T` as `U` when they are the same type (checked by `accept`'s downcast), without allocating.
fn same_type<T: 'static, U: 'static>(value: T) -> U {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
        .expect("the listener was downcast to tokio's TcpListener")
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
                shared.trigger();
            } else {
                tracing::warn!("second signal received: forcing shutdown");
                shared.forced.cancel();
                return;
            }
        }
    });
    Ok(())
}
