//! State shared by the handle, the layer, the accept loop and the sequence.

use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::futures::Notified;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::BoxError;

/// Where the shutdown sequence is; see the [module docs](super) for the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Not triggered: serving normally, readiness up.
    Serving,
    /// Step 1: triggered; readiness reports `shutting_down`, requests are still served until
    /// the drain delay is over.
    Draining,
    /// Steps 2–4: new requests are refused (503 + `Connection: close` + `Retry-After`), the
    /// cancellation token is cancelled, in-flight requests and tracked tasks are awaited until
    /// the deadline.
    Refusing,
    /// Step 5: the server is closed; cleanup hooks run in order (each on its own task, so one
    /// that panics is reported and the next one still runs).
    CleaningUp,
    /// Step 6: everything is over; `serve` returns its [`Report`](super::Report).
    Done,
}

impl Phase {
    /// The phase's name in snake case: `serving`, `draining`, `refusing`, `cleaning_up`, `done`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Serving => "serving",
            Phase::Draining => "draining",
            Phase::Refusing => "refusing",
            Phase::CleaningUp => "cleaning_up",
            Phase::Done => "done",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) type HookFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

pub(crate) struct Hook {
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    pub(crate) run: Box<dyn FnOnce() -> HookFuture + Send>,
}

pub(crate) struct Shared {
    pub(crate) phase: watch::Sender<Phase>,
    /// Set at the trigger: responses from then on close their HTTP/1 connection. Read once per
    /// response, so a flag rather than the token (whose check takes a lock).
    pub(crate) shutting_down: AtomicBool,
    /// Set when refusing starts. SeqCst with `in_flight` (see `InFlight::enter`): either a request
    /// sees the flag, or the sequence sees the request's count.
    pub(crate) refusing: AtomicBool,
    pub(crate) triggered: CancellationToken,
    pub(crate) forced: CancellationToken,
    /// Fired at the trigger: HTTP/2 connections send their GOAWAY.
    pub(crate) goaway: Signal,
    /// Fired when the drain is over: every connection is told to close gracefully.
    pub(crate) closing: Signal,
    /// Fired at the deadline or when forced: upgraded sessions still open are cut.
    pub(crate) cut: Signal,
    /// Cancelled when refusing starts: long-lived handlers end, connections close.
    pub(crate) token: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) idle: Notify,
    pub(crate) completed: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// Upgraded sessions (WebSocket) still open; `idle` is notified when it falls to 0 while
    /// refusing, like `in_flight`.
    pub(crate) upgraded: AtomicUsize,
    /// HTTP/1 connections closed at the end of the drain with request bytes never answered.
    pub(crate) unanswered: AtomicUsize,
    pub(crate) hooks: Mutex<Vec<Hook>>,
    pub(crate) retry_after: Duration,
    pub(crate) exempt_paths: Vec<String>,
}

impl Shared {
    pub(crate) fn new(retry_after: Duration, exempt_paths: Vec<String>) -> Self {
        Shared {
            phase: watch::channel(Phase::Serving).0,
            shutting_down: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            triggered: CancellationToken::new(),
            forced: CancellationToken::new(),
            goaway: Signal::default(),
            closing: Signal::default(),
            cut: Signal::default(),
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            completed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            upgraded: AtomicUsize::new(0),
            unanswered: AtomicUsize::new(0),
            hooks: Mutex::new(Vec::new()),
            retry_after,
            exempt_paths,
        }
    }

    /// Starts the sequence (SIGTERM, `trigger`). Idempotent.
    pub(crate) fn trigger(&self) {
        // Relaxed: only decides `Connection: close`; the token below orders the sequence.
        self.shutting_down.store(true, Ordering::Relaxed);
        self.triggered.cancel();
        self.goaway.fire();
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        // Relaxed: a late read only keeps one more connection alive until the drain closes it.
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    pub(crate) fn start_refusing(&self) {
        // SeqCst: pairs with the SeqCst count in `enter` (store-load on both sides, Dekker).
        self.refusing.store(true, Ordering::SeqCst);
        self.set_phase(Phase::Refusing);
        self.token.cancel();
        self.tracker.close();
    }

    pub(crate) fn is_refusing(&self) -> bool {
        // SeqCst: see `start_refusing`.
        self.refusing.load(Ordering::SeqCst)
    }

    /// Counts a request in; `None` (and not counted) when it must be refused. `exempt` is asked
    /// only while refusing, so a request is not matched against the exempt paths before then.
    #[inline]
    pub(crate) fn enter(self: &Arc<Self>, exempt: impl FnOnce() -> bool) -> Option<InFlightGuard> {
        // SeqCst: the count is published before the flag is read (see `start_refusing`).
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.is_refusing() && !exempt() {
            self.leave();
            // Relaxed: a statistic read after the connections are gone.
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlightGuard {
            shared: Arc::clone(self),
        })
    }

    pub(crate) fn in_flight(&self) -> usize {
        // SeqCst: read after `refusing` was stored (see `start_refusing`).
        self.in_flight.load(Ordering::SeqCst)
    }

    fn leave(&self) {
        // SeqCst: same total order as `enter` and `in_flight`.
        // Only the drain (after `start_refusing`) waits for zero, so no lock per request before.
        // SeqCst on both sides (Dekker with `start_refusing` + `idle`): either `idle` sees this
        // decrement, or this sees the flag and wakes it.
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.is_refusing() {
            self.idle.notify_waiters();
        }
    }

    /// Counts an upgraded session in (its connection's IO outlived hyper's connection).
    pub(crate) fn upgrade_started(&self) {
        // SeqCst: same Dekker pairing with `refusing` as `in_flight` (see `leave`).
        self.upgraded.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts an upgraded session out (its IO was dropped).
    pub(crate) fn upgrade_ended(&self) {
        // SeqCst: see `upgrade_started`.
        if self.upgraded.fetch_sub(1, Ordering::SeqCst) == 1 && self.is_refusing() {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn upgraded(&self) -> usize {
        // SeqCst: see `upgrade_started`.
        self.upgraded.load(Ordering::SeqCst)
    }

    /// Resolves once no request is in flight and no upgraded session is open (either may rise
    /// again afterwards). Only called after `start_refusing` (see `leave`).
    pub(crate) async fn idle(&self) {
        loop {
            let mut notified = pin!(self.idle.notified());
            // Registered before the check, so a `leave` between the check and the await wakes us.
            notified.as_mut().enable();
            if self.in_flight() == 0 && self.upgraded() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A one-shot broadcast to every connection: a flag read without a lock, and a `Notify` for
/// the waiters (a `CancellationToken` takes a lock on each poll, and connections poll on every
/// wake-up).
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    notify: Notify,
}

impl Signal {
    pub(crate) fn fire(&self) {
        // Release: pairs with the Acquire in `is_fired`; the waiters woken below see it.
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_fired(&self) -> bool {
        // Acquire: see `fire`.
        self.fired.load(Ordering::Acquire)
    }

    /// Resolves once fired.
    pub(crate) fn wait(&self) -> SignalWait<'_> {
        SignalWait {
            signal: self,
            notified: self.notify.notified(),
            waker: None,
        }
    }
}

pin_project! {
    /// The future of [`Signal::wait`]: registers with the `Notify` only when polled by a new
    /// waker, so polling it again is one atomic load.
    pub(crate) struct SignalWait<'a> {
        signal: &'a Signal,
        #[pin]
        notified: Notified<'a>,
        waker: Option<Waker>,
    }
}

impl Future for SignalWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.signal.is_fired() {
            return Poll::Ready(());
        }
        if this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        // Created with the future, so a `fire` after that makes it ready even if unregistered.
        if this.notified.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        *this.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One request in flight; dropped when its response body is finished or dropped.
pub(crate) struct InFlightGuard {
    shared: Arc<Shared>,
}

impl InFlightGuard {
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn finish(self) {
        // Relaxed: a statistic read after the connections are gone.
        self.shared.completed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.shared.leave();
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("phase", &*self.phase.borrow())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}
