//! Graceful shutdown for axum servers (feature `axum`): readiness down first, a drain delay,
//! then refuse, drain, abort at a deadline, run cleanup hooks, report.
//!
//! [`Shutdown::serve`] runs an axum [`Router`](axum::Router) on a `TcpListener` (HTTP/1.1 and
//! HTTP/2 through hyper-util's `auto` connection builder) and, on SIGTERM/SIGINT or
//! [`ShutdownHandle::trigger`], runs this sequence:
//!
//! 1. **Draining**: readiness (see [`harden::health`](crate::health)) reports `shutting_down`
//!    with 503 at once; requests are still served for [`drain_delay`](ShutdownBuilder::drain_delay), the
//!    time load balancers need to stop sending traffic (use 0 when the pod has a preStop sleep).
//! 2. **Refusing**: new requests get 503 + `Connection: close` + `Retry-After` and
//!    `{"statusCode":503,"message":"server is shutting down","retryAfter":5}` (the
//!    [exempt paths](ShutdownBuilder::exempt_path), `/health/live` by default, are still answered);
//!    a keep-alive connection is closed after its next answer (that 503), or when the drain is
//!    over, whichever comes first.
//! 3. In-flight requests finish; the [`CancellationToken`] of [`ShutdownHandle::token`] is
//!    cancelled, so long-lived handlers (SSE, WebSocket) end themselves; tasks spawned on
//!    [`ShutdownHandle::tracker`] are awaited.
//! 4. At [`deadline`](ShutdownBuilder::deadline) (counted from the end of the drain delay) whatever is
//!    left is aborted. A second signal (or [`ShutdownHandle::force`]) aborts at once and skips
//!    the hooks.
//! 5. Cleanup hooks ([`ShutdownHandle::on_shutdown`]) run in the order registered, each with its
//!    own timeout; one that hangs is cut at its timeout and reported.
//! 6. `serve` returns a [`Report`]: requests in flight at the trigger, completed, aborted, hooks
//!    and their outcomes.
//!
//! A request is *in flight* from the moment it reaches the router until its response body has
//! been sent (or dropped): an SSE stream counts until it ends. Connections that hold no request
//! — idle keep-alive connections, a client that sent half its headers — never hold shutdown:
//! they are dropped when the last request is done, as if they were not there (hyper's
//! `header_read_timeout` also closes the latter while serving). Idle keep-alive connections are
//! *not* closed when refusing starts, as DESIGN's step 2 reads: a client may be sending its next
//! request on one at that instant, and HTTP/1.1 gives it no way to tell that the close came
//! first, so the request would be lost. Left open, the request gets the 503 with
//! `Connection: close`. That race remains only at the very end, when the connections still open
//! are dropped, after the drain delay has taken the pod out of its load balancers' rotation.
//!
//! Decisions where DESIGN was silent or could be read two ways:
//! - The listener keeps accepting while refusing, until the drain is done, so a client that
//!   still reaches the pod gets a clear, retriable 503 + `Retry-After` rather than a refused or
//!   reset connection; the listener closes (new connections are refused by the kernel) as soon
//!   as the in-flight requests and tracked tasks are done.
//! - The token is cancelled when refusing starts, not at the trigger: during the drain delay the
//!   pod still takes traffic, so streams keep running until it is over.
//! - Tracked tasks still running at the deadline cannot be aborted through a `TaskTracker`; they
//!   are counted in [`Report::tasks_left`] and end with the runtime.
//! - A forced shutdown (second signal) does not call `std::process::exit`: `serve` returns at
//!   once with [`Report::forced`] set, and the application decides (the example exits 1).
//!
//! Only the accept loop, the in-flight count and the sequence are written here: connections are
//! hyper-util's, token and tracker tokio-util's, signals `tokio::signal`. No maintained crate
//! combines readiness, a drain delay, 503 answers while refusing, a deadline and ordered hooks.
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | [`drain_delay`](ShutdownBuilder::drain_delay) | [`DEFAULT_DRAIN_DELAY`] = 5 s |
//! | [`deadline`](ShutdownBuilder::deadline) | [`DEFAULT_DEADLINE`] = 20 s |
//! | [`retry_after`](ShutdownBuilder::retry_after) | [`DEFAULT_RETRY_AFTER`] = 5 s |
//! | [`header_read_timeout`](ShutdownBuilder::header_read_timeout) | [`DEFAULT_HEADER_READ_TIMEOUT`] = 30 s (hyper's) |
//! | [`exempt_path`](ShutdownBuilder::exempt_path) | [`DEFAULT_EXEMPT_PATH`] = `/health/live` |
//! | [`signals`](ShutdownBuilder::signals) | `true`: SIGTERM and SIGINT (Ctrl-C) trigger |
//! | hook timeout | [`DEFAULT_HOOK_TIMEOUT`] = 5 s ([`ShutdownHandle::on_shutdown`]) |
//!
//! With the defaults, the drain delay, the deadline and one hook exactly fill Kubernetes' default
//! `terminationGracePeriodSeconds: 30` (5 + 20 + 5): raise it for more hooks or a margin
//! (`examples/k8s/deployment.yaml` shows the sum).
//!
//! # Example
//!
//! Default use: serve until SIGTERM, then drain.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use harden::shutdown::Shutdown;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), harden::BoxError> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! let report = Shutdown::builder().build()?.serve(listener, app).await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! Customised: no in-process delay (the pod has a preStop hook), a 10 s deadline, a cleanup
//! hook, readiness wired to health, and the sequence started by hand instead of a signal.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use harden::health::Health;
//! use harden::shutdown::{HookOutcome, Shutdown};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), harden::BoxError> {
//! let shutdown = Shutdown::builder()
//!     .drain_delay(Duration::ZERO)
//!     .deadline(Duration::from_secs(10))
//!     .signals(false)
//!     .build()?;
//! let handle = shutdown.handle();
//! handle.on_shutdown("close pool", Duration::from_secs(2), || async { Ok(()) });
//! let health = Health::builder().shutdown(&handle).build()?;
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(health.router());
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = tokio::spawn(shutdown.serve(listener, app));
//! handle.trigger();
//! let report = server.await??;
//! assert_eq!(report.aborted, 0);
//! assert_eq!(report.hooks[0].outcome, HookOutcome::Completed);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! [`ShutdownBuilder::build`] fails with [`ConfigError`] for a zero `deadline` or `header_read_timeout`,
//! or a `retry_after` over a day. [`Shutdown::serve`] fails with an `io::Error` only when the signal handler cannot
//! be installed; accept errors are logged and serving goes on.
//!
//! Unlike `axum::serve(..).with_graceful_shutdown(..)`, which stops accepting at once, waits
//! without a deadline and is held open by an SSE stream, an idle keep-alive connection or a
//! client that never finishes its headers, and unlike hyper-util's `GracefulShutdown` (a watch
//! channel with no deadline), this adds readiness, the drain delay, 503 answers, the deadline,
//! the hooks and the report.

mod layer;
mod serve;
mod settings;
mod state;

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use settings::ShutdownSettings;
pub use state::Phase;
pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;

use crate::{BoxError, ConfigError};
use state::{Hook, Shared};

/// Default [`ShutdownBuilder::drain_delay`]: 5 s, time for endpoints to be removed from load balancers.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// Default [`ShutdownBuilder::deadline`]: 20 s after the drain delay.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);
/// Default [`ShutdownBuilder::retry_after`]: 5 s.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Default [`ShutdownBuilder::header_read_timeout`]: 30 s, hyper's.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default exempt path: liveness, which stays 200 during shutdown.
pub const DEFAULT_EXEMPT_PATH: &str = crate::health::DEFAULT_LIVE_PATH;
/// Default timeout of a cleanup hook: 5 s.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);

const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone)]
struct Config {
    drain_delay: Duration,
    deadline: Duration,
    retry_after: Duration,
    header_read_timeout: Option<Duration>,
    exempt_paths: Vec<String>,
    signals: bool,
}

/// Configures a [`Shutdown`]; see the [defaults](self#defaults).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ShutdownBuilder {
    config: Config,
    custom_exempt: bool,
}

impl Default for ShutdownBuilder {
    fn default() -> Self {
        ShutdownBuilder::new()
    }
}

impl ShutdownBuilder {
    /// Every setting at its default.
    pub fn new() -> Self {
        ShutdownBuilder {
            config: Config {
                drain_delay: DEFAULT_DRAIN_DELAY,
                deadline: DEFAULT_DEADLINE,
                retry_after: DEFAULT_RETRY_AFTER,
                header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
                exempt_paths: vec![DEFAULT_EXEMPT_PATH.to_owned()],
                signals: true,
            },
            custom_exempt: false,
        }
    }

    /// How long requests are still served after the trigger while readiness is already down
    /// (step 1). Zero when the pod has a preStop sleep.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.config.drain_delay = delay;
        self
    }

    /// How long in-flight requests and tracked tasks may take once refusing starts, before
    /// they are aborted (step 4). Must be more than zero.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = deadline;
        self
    }

    /// The `Retry-After` of the 503 answers while refusing, rounded up to whole seconds; at most
    /// a day.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.config.retry_after = retry_after;
        self
    }

    /// How long a client may take to send a request's headers (hyper's `header_read_timeout`,
    /// which arms a timer per request); `None` turns it off, as `axum::serve` has it. Either way
    /// such a client never holds shutdown.
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.header_read_timeout = timeout.into();
        self
    }

    /// A path still served while refusing (exact match). The first call replaces the default
    /// `/health/live`; call it once per path.
    pub fn exempt_path(mut self, path: impl Into<String>) -> Self {
        if !self.custom_exempt {
            self.config.exempt_paths.clear();
            self.custom_exempt = true;
        }
        self.config.exempt_paths.push(path.into());
        self
    }

    /// Whether SIGTERM and SIGINT start the sequence (and a second one forces it); `false` leaves
    /// [`ShutdownHandle::trigger`] as the only way, e.g. in tests.
    pub fn signals(mut self, on: bool) -> Self {
        self.config.signals = on;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a zero `deadline` or `header_read_timeout`, or a `retry_after` over a
    /// day.
    pub fn build(self) -> Result<Shutdown, ConfigError> {
        let c = &self.config;
        if c.header_read_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "header_read_timeout",
                "0 is outside (0, ∞); use `None` to turn it off",
            ));
        }
        if c.deadline.is_zero() {
            return Err(ConfigError::new("deadline", "0 is outside (0, ∞)"));
        }
        if c.retry_after > MAX_RETRY_AFTER {
            return Err(ConfigError::new(
                "retry_after",
                format!("{:?} is outside [0, 86400 s]", c.retry_after),
            ));
        }
        let shared = Arc::new(Shared::new(c.retry_after, c.exempt_paths.clone()));
        Ok(Shutdown {
            config: self.config,
            shared,
        })
    }
}

/// A graceful shutdown sequence for one server; see the [module docs](self).
#[derive(Debug)]
pub struct Shutdown {
    config: Config,
    shared: Arc<Shared>,
}

impl Shutdown {
    /// A builder with every setting at its default.
    pub fn builder() -> ShutdownBuilder {
        ShutdownBuilder::new()
    }

    /// A handle to trigger the sequence and to reach its token, tracker and hooks.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves `router` on `listener` until the sequence is over, then returns its [`Report`].
    ///
    /// # Errors
    ///
    /// An `io::Error` when the signal handlers cannot be installed.
    pub async fn serve(self, listener: TcpListener, router: axum::Router) -> io::Result<Report> {
        serve::serve(self, listener, router).await
    }
}

/// A cheap `Clone` handle on a [`Shutdown`]: trigger it, watch it, and give long-lived work a
/// way to notice it.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl ShutdownHandle {
    /// Starts the sequence, as SIGTERM does. Idempotent.
    pub fn trigger(&self) {
        self.shared.triggered.cancel();
    }

    /// Aborts whatever is left at once and skips the hooks, as a second signal does.
    pub fn force(&self) {
        self.shared.forced.cancel();
        self.shared.triggered.cancel();
    }

    /// Whether the sequence has started (readiness is down from then on).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.triggered.is_cancelled()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.shared.phase.borrow()
    }

    /// Requests in flight now (from the router's call to the end of the response body).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// A receiver of every phase change.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.shared.phase.subscribe()
    }

    /// Cancelled when refusing starts (step 2): long-lived handlers (SSE, WebSocket, long polls)
    /// select on [`cancelled`](CancellationToken::cancelled) to end themselves.
    pub fn token(&self) -> CancellationToken {
        self.shared.token.clone()
    }

    /// Background work spawned here (`tracker().spawn(..)`) is awaited before the hooks run,
    /// within the deadline.
    pub fn tracker(&self) -> TaskTracker {
        self.shared.tracker.clone()
    }

    /// Registers a cleanup hook: run after the server closed, after the hooks registered before
    /// it, cut after `timeout` ([`DEFAULT_HOOK_TIMEOUT`] is a sensible value).
    pub fn on_shutdown<F, Fut>(&self, name: impl Into<String>, timeout: Duration, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let hook = Hook {
            name: name.into(),
            timeout,
            run: Box::new(move || Box::pin(hook())),
        };
        self.shared
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }
}

/// What happened during the sequence, returned by [`Shutdown::serve`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Requests in flight when the sequence was triggered.
    pub in_flight_at_trigger: usize,
    /// Requests whose response was sent in full after the trigger.
    pub completed: u64,
    /// Requests still in flight when the server closed (at the deadline or forced).
    pub aborted: usize,
    /// Tracked tasks still running when the server closed.
    pub tasks_left: usize,
    /// Whether the deadline cut the drain.
    pub deadline_reached: bool,
    /// Whether a second signal or [`ShutdownHandle::force`] cut it.
    pub forced: bool,
    /// The hooks, in the order they ran.
    pub hooks: Vec<HookReport>,
    /// From the start of `serve` to its end.
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in flight at trigger {}, completed {}, aborted {}, tasks left {}",
            self.in_flight_at_trigger, self.completed, self.aborted, self.tasks_left
        )?;
        if self.deadline_reached {
            f.write_str(", deadline reached")?;
        }
        if self.forced {
            f.write_str(", forced")?;
        }
        for hook in &self.hooks {
            write!(f, "; hook {:?}: {:?}", hook.name, hook.outcome)?;
        }
        Ok(())
    }
}

/// One cleanup hook in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookReport {
    /// The name it was registered with.
    pub name: String,
    /// How it ended.
    pub outcome: HookOutcome,
    /// How long it ran.
    pub elapsed: Duration,
}

/// How a cleanup hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookOutcome {
    /// It returned `Ok`.
    Completed,
    /// It returned an error (its message).
    Failed(String),
    /// It was cut at its timeout.
    TimedOut,
    /// A forced shutdown skipped it.
    Skipped,
}
