//! Graceful shutdown for axum servers (feature `axum`): readiness down first, a drain delay,
//! then refuse, drain, close connections, abort at a deadline, run cleanup hooks, report.
//!
//! [`Shutdown::serve`] takes what `axum::serve` takes: any [`axum::serve::Listener`] (a tokio
//! `TcpListener`, a `UnixListener`, a TLS listener over tokio-rustls) and a [`Router`] (its
//! state given with `with_state`), or `router.into_make_service_with_connect_info::<C>()` for
//! handlers that take [`ConnectInfo`] (see [`MakeApp`]). It serves
//! HTTP/1.1 (with upgrades, e.g. WebSocket) and HTTP/2 (h2c, or over TLS) on each connection,
//! and on SIGTERM/SIGINT or [`ShutdownHandle::trigger`] runs this sequence:
//!
//! 1. **Draining**: readiness (see [`harden::health`](crate::health)) reports `shutting_down`
//!    with 503 at once; requests are still served for [`drain_delay`](ShutdownBuilder::drain_delay),
//!    the time load balancers need to stop sending traffic (use 0 when the pod has a preStop
//!    sleep). Keep-alive is off from the trigger on, so pooled callers move to other pods while
//!    this one still serves: every HTTP/1 response carries `Connection: close`, and every
//!    HTTP/2 connection gets a GOAWAY (the client then knows exactly which streams were taken
//!    and opens new ones elsewhere; streams in flight finish), one opened after the trigger
//!    after its first response.
//! 2. **Refusing**: new requests get 503 + `Connection: close` + `Retry-After` and
//!    `{"statusCode":503,"message":"server is shutting down","retryAfter":5}` (the
//!    [exempt paths](ShutdownBuilder::exempt_path), the health probes by default, are still
//!    answered, so readiness keeps its `shutting_down` body); the [`CancellationToken`] of
//!    [`ShutdownHandle::token`] is cancelled, so long-lived handlers (SSE, WebSocket) end
//!    themselves. The listener still accepts, so a client that still reaches the pod gets a
//!    clear, retriable 503 rather than a reset.
//! 3. In-flight requests finish, upgraded sessions end, tasks spawned on
//!    [`ShutdownHandle::tracker`] are awaited. Then the listener closes (connections the kernel
//!    had already completed are accepted first) and every connection is closed: an HTTP/2
//!    connection once its streams are done; an HTTP/1 connection after a grace of half a second
//!    in which what its client already sent is read and answered (503 + `Connection: close`),
//!    then at once if idle, after the response being written if one is.
//! 4. At [`deadline`](ShutdownBuilder::deadline) (counted from the start of refusing) whatever is
//!    left is aborted: requests, connections still writing, upgraded sessions (their reads and
//!    writes fail). A second signal (or [`ShutdownHandle::force`]) aborts at once and skips the
//!    hooks.
//! 5. Cleanup hooks ([`ShutdownHandle::on_shutdown`]) run in the order registered, each on its
//!    own task with its own timeout: one that hangs is cut at its timeout, one that panics is
//!    reported as [`HookOutcome::Panicked`], and the next one still runs.
//! 6. `serve` returns a [`Report`]: what was in flight, completed, refused, aborted and cut, and
//!    the hooks' outcomes.
//!
//! A request is *in flight* from the moment it reaches the application until its response body
//! has been handed to hyper (or dropped): an SSE stream counts until it ends. Connections that
//! hold no request — idle keep-alive connections, a client that sent half its headers — never
//! hold shutdown. A client that sends nothing (or half the HTTP/2 preface) is closed after
//! [`header_read_timeout`](ShutdownBuilder::header_read_timeout), as one that sends half its
//! headers is.
//!
//! **HTTP/1** has no way to tell a client that a close came before its next request, so a
//! connection is only closed where no request can be on it, as far as the server can see: from
//! the trigger every response carries `Connection: close`, so a client that keeps sending
//! learns it during the drain delay; idle connections are not closed when refusing starts (a
//! request on one gets the 503 with `Connection: close`), only when the drain is over, after
//! the drain delay took the pod out of rotation; and then not under a request that has arrived.
//! hyper's own graceful close drops a connection it sees as idle even with a request half read or
//! unread in the socket; here a request on the wire, in the socket or half read gets the grace
//! to arrive and its 503, and a connection is closed only once it is idle with nothing readable.
//! What stays is the race HTTP/1 cannot close: a client that writes on an idle connection just
//! after the server closed it (no response had told it) sees the connection closed without an
//! answer — EOF, hyper's `IncompleteMessage`, reqwest's "connection closed before message
//! completed". A pool that checks a connection before reusing it (hyper's, Go's) sees the close
//! and opens a new one elsewhere; a write at that very instant loses its request, safe to retry
//! only when idempotent. After that close the server reads on for the grace (a lingering close,
//! as nginx's), so such a request is counted in [`Report::unanswered`] and its client sees the
//! close (EOF) rather than a reset. A request still incomplete after the grace, and a connection
//! accepted whose first request had not arrived by then (its client connected as the listener
//! closed), are closed and counted there too. A connection the kernel completes after the
//! listener's last accept is reset by the kernel (`ECONNRESET`); `serve` never saw it.
//! **HTTP/2** has that way (GOAWAY names the last stream taken; later ones are refused and safe
//! to retry), so it is used at the trigger on every connection opened before it. A connection
//! opened after the trigger (the drain delay, when load balancers may still route to the pod
//! and Kubernetes opens one for each gRPC probe) is served like an HTTP/1 one: its first request
//! is answered (a 503 once refusing), and its GOAWAY follows that first response, so the client
//! keeps the stream and opens its next ones elsewhere; one that sends nothing is closed when the
//! drain is over. **Upgraded connections** (WebSocket) are sessions
//! hyper no longer sees: they count from the upgrade until their IO is dropped, end through the
//! token, and are cut at the deadline ([`Report::upgraded_aborted`]).
//!
//! - Tracked tasks still running at the deadline cannot be aborted through a `TaskTracker`; they
//!   are counted in [`Report::tasks_left`] and end with the runtime.
//! - A forced shutdown (second signal) does not call `std::process::exit`: `serve` returns at
//!   once with [`Report::forced`] set, and the application decides (the example exits 1).
//! - Accept errors other than a connection's own (EMFILE under a full fd table) pause accepting
//!   for a second; on a tokio `TcpListener` they are logged once per episode.
//!
//! Only the accept loop, the in-flight count and the sequence are written here: connections are
//! hyper's, token and tracker tokio-util's, signals `tokio::signal`. No maintained crate
//! combines readiness, a drain delay, 503 answers while refusing, a deadline and ordered hooks.
//!
//! # With your own server
//!
//! An application that keeps its own `axum::serve` or hyper loop wraps its router in
//! [`ShutdownHandle::layer`] and runs the sequence with [`Shutdown::run`] instead of `serve`:
//! readiness, the drain delay, `Connection: close` from the trigger, the 503 answers, the
//! token, tracked tasks, the deadline on in-flight requests, the hooks and the report all work.
//! What only `serve` can do, because it owns the connections: GOAWAY on HTTP/2, the graceful
//! close of each connection with its own deadline, cutting connections and upgraded sessions
//! at the deadline, the detection timeout, and the connection counts of the [`Report`].
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use harden::shutdown::Shutdown;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), harden::BoxError> {
//! let shutdown = Shutdown::builder().build()?;
//! let handle = shutdown.handle();
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(handle.layer());
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! // axum closes its connections once refusing starts (the token is cancelled then).
//! let server = axum::serve(listener, app).with_graceful_shutdown(handle.token().cancelled_owned());
//! let server = tokio::spawn(async move { server.await });
//! let report = shutdown.run().await?;
//! println!("{report}");
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | [`drain_delay`](ShutdownBuilder::drain_delay) | [`DEFAULT_DRAIN_DELAY`] = 5 s |
//! | [`deadline`](ShutdownBuilder::deadline) | [`DEFAULT_DEADLINE`] = 20 s |
//! | [`retry_after`](ShutdownBuilder::retry_after) | [`DEFAULT_RETRY_AFTER`] = 5 s |
//! | [`header_read_timeout`](ShutdownBuilder::header_read_timeout) | [`DEFAULT_HEADER_READ_TIMEOUT`] = 30 s (hyper's) |
//! | [`exempt_path`](ShutdownBuilder::exempt_path) | [`DEFAULT_EXEMPT_PATHS`] = `/health/live`, `/health/ready` |
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
//! hook, readiness wired to health, handlers that read the peer address, and the sequence
//! started by hand instead of a signal.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use axum::{extract::ConnectInfo, routing::get, Router};
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
//!     .route("/", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }))
//!     .merge(health.router());
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let app = app.into_make_service_with_connect_info::<SocketAddr>();
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
//! [`ShutdownBuilder::build`] fails with [`ConfigError`] for a zero `deadline` or
//! `header_read_timeout`, or a `retry_after` over a day. [`Shutdown::serve`] and
//! [`Shutdown::run`] fail with an `io::Error` only when the signal handler cannot be installed;
//! accept errors are logged and serving goes on.
//!
//! Unlike `axum::serve(..).with_graceful_shutdown(..)`, which stops accepting at once, waits
//! without a deadline and is held open by an SSE stream or an upgraded connection, and unlike
//! hyper-util's `GracefulShutdown` (a watch channel with no deadline), this adds readiness, the
//! drain delay, keep-alive off from the trigger, 503 answers, the deadline, the hooks and the
//! report.

mod conn;
mod layer;
mod serve;
mod settings;
mod state;
mod timer;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::{self, ConnectInfo, Connected, IntoMakeServiceWithConnectInfo};
use axum::middleware::AddExtension;
use axum::serve::Listener;
use axum::Router;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::watch;
use tower_service::Service;

pub use layer::{ResponseFuture, ShutdownLayer, ShutdownService};
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
/// Default exempt paths: the health probes, answered by health during shutdown (liveness 200,
/// readiness 503 `shutting_down`).
pub const DEFAULT_EXEMPT_PATHS: [&str; 2] = [
    crate::http::DEFAULT_LIVE_PATH,
    crate::http::DEFAULT_READY_PATH,
];
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
                exempt_paths: DEFAULT_EXEMPT_PATHS.map(str::to_owned).to_vec(),
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

    /// How long a client may take to send a request's headers (hyper's `header_read_timeout`;
    /// on a keep-alive connection it counts from the previous response, so an idle one is closed
    /// after it too), and a new connection its first bytes (enough to tell HTTP/1 from HTTP/2);
    /// `None` turns both off, as `axum::serve` has it. Either way such a client never holds
    /// shutdown.
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.header_read_timeout = timeout.into();
        self
    }

    /// A path still served while refusing (exact match). The first call replaces the defaults
    /// (the health probes' default paths); call it once per path, the probes' too when they
    /// moved.
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

    /// Serves `app` (a [`Router`], or one made with
    /// `into_make_service_with_connect_info`) on `listener` until the sequence is over, then
    /// returns its [`Report`].
    ///
    /// # Errors
    ///
    /// An `io::Error` when the signal handlers cannot be installed.
    pub async fn serve<L, M>(self, listener: L, app: M) -> io::Result<Report>
    where
        L: Listener,
        L::Addr: Send + 'static,
        M: MakeApp<L::Addr>,
    {
        serve::serve(self, listener, app).await
    }

    /// Runs the sequence without serving, for an application served by its own loop with
    /// [`ShutdownHandle::layer`] around it (see [with your own server](self#with-your-own-server)):
    /// waits for the trigger, then the drain delay, refusing, the in-flight requests and tracked
    /// tasks up to the deadline, the hooks, and returns the [`Report`].
    ///
    /// # Errors
    ///
    /// An `io::Error` when the signal handlers cannot be installed.
    pub async fn run(self) -> io::Result<Report> {
        serve::run(self).await
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
        self.shared.trigger();
    }

    /// Aborts whatever is left at once and skips the hooks, as a second signal does.
    pub fn force(&self) {
        self.shared.forced.cancel();
        self.shared.trigger();
    }

    /// The refusing/in-flight layer, for an application served by its own loop (see
    /// [`ShutdownLayer`]); [`Shutdown::serve`] adds it itself.
    pub fn layer(&self) -> ShutdownLayer {
        ShutdownLayer::new(Arc::clone(&self.shared))
    }

    /// Whether the sequence has started (readiness is down from then on).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.triggered.is_cancelled()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.shared.phase.borrow()
    }

    /// Requests in flight now (from the application's call to the end of the response body).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Upgraded sessions (WebSocket) open now, under [`Shutdown::serve`].
    pub fn upgraded(&self) -> usize {
        self.shared.upgraded()
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
    /// Requests answered with 503 because the sequence was refusing.
    pub refused: u64,
    /// Upgraded sessions (WebSocket) open when the sequence was triggered.
    pub upgraded_at_trigger: usize,
    /// Upgraded sessions still open at the deadline (or forced), cut then.
    pub upgraded_aborted: usize,
    /// Connections still open at the deadline (or forced), cut with bytes unsent: a response
    /// still being written to a slow client, a request in flight, an HTTP/2 connection whose
    /// streams had not ended.
    pub connections_cut: usize,
    /// HTTP/1 connections closed when the drain was over with a request never answered: request
    /// bytes that arrived and were not answered (a request still incomplete after the grace, or
    /// one that raced the close of an idle connection, the race HTTP/1 cannot avoid), or a
    /// connection accepted whose first request had not arrived by the end of the grace.
    pub unanswered: usize,
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
            "in flight at trigger {}, completed {}, aborted {}, refused {}, tasks left {}",
            self.in_flight_at_trigger, self.completed, self.aborted, self.refused, self.tasks_left
        )?;
        if self.upgraded_at_trigger > 0 || self.upgraded_aborted > 0 {
            write!(
                f,
                ", upgraded at trigger {}, upgraded aborted {}",
                self.upgraded_at_trigger, self.upgraded_aborted
            )?;
        }
        if self.connections_cut > 0 {
            write!(f, ", connections cut {}", self.connections_cut)?;
        }
        if self.unanswered > 0 {
            write!(f, ", unanswered {}", self.unanswered)?;
        }
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
    /// It panicked (the panic's message); the hooks after it still ran.
    Panicked(String),
    /// A forced shutdown skipped it.
    Skipped,
}

/// What [`Shutdown::serve`] serves, made once per connection from the peer's address: a
/// [`Router`] (with its state given), or `router.into_make_service_with_connect_info::<C>()`,
/// whose handlers can take [`ConnectInfo<C>`] for any `C: Connected<L::Addr>` — the address
/// itself (`SocketAddr` for TCP), or the application's own type.
pub trait MakeApp<A>: Send + 'static {
    /// The service answering one connection's requests.
    type Service: Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static;
    /// The future of [`make`](MakeApp::make).
    type Future: Future<Output = Result<Self::Service, Infallible>> + Send + 'static;

    /// The service for a connection from `remote`.
    fn make(&mut self, remote: A) -> Self::Future;

    /// Called once before the first connection: the chance to do per-server work once rather
    /// than per request (a `Router` turns its handlers into services here, as `axum::serve`
    /// does, instead of on every request).
    #[must_use]
    fn prepare(self) -> Self
    where
        Self: Sized,
    {
        self
    }
}

impl<A: Send + 'static> MakeApp<A> for Router {
    type Service = Router;
    type Future = std::future::Ready<Result<Router, Infallible>>;

    fn make(&mut self, _remote: A) -> Self::Future {
        std::future::ready(Ok(self.clone()))
    }

    fn prepare(self) -> Self {
        self.with_state(())
    }
}

impl<A, C> MakeApp<A> for IntoMakeServiceWithConnectInfo<Router, C>
where
    A: Send + 'static,
    C: Connected<A> + Clone + Send + Sync + 'static,
{
    type Service = AddExtension<Router, ConnectInfo<C>>;
    type Future = connect_info::ResponseFuture<Router, C>;

    fn make(&mut self, remote: A) -> Self::Future {
        Service::call(self, remote)
    }
}
