//! A circuit breaker in the style of opossum, on a lock-free rolling window.
//!
//! A [`CircuitBreaker`] watches the outcomes of the calls made through its layer. While *closed*
//! every call goes through and its outcome is recorded in a rolling window; once the window holds at
//! least `volume_threshold` calls and `failures * 100 / calls >= error_threshold_percentage` it
//! *opens* and rejects every call at once with [`CircuitOpen`](error::CircuitOpen), which tells the
//! caller how long until the next probe. After `reset_timeout` the next call is let through as a
//! *half-open* probe: failure opens the breaker again, `half_open_max_calls` successes close it. A
//! breaker is a cheap `Clone` handle; every layer and service made from it, and every clone of them,
//! shares its state.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), harden::BoxError> {
//! use harden::circuit_breaker::{CircuitBreaker, State};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! // Defaults: 50 % failures over at least 20 calls in 10 s opens it for 10 s.
//! let breaker = CircuitBreaker::builder().name("payments").build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(breaker.layer())
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x * 2) }));
//! assert_eq!(svc.oneshot(21).await?, 42);
//! assert_eq!(breaker.state(), State::Closed);
//! # Ok(()) }
//! ```
//!
//! Customised: a count-based window, extra trip rules, growing open periods and a classifier that
//! ignores client errors:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), harden::BoxError> {
//! use std::time::Duration;
//! use harden::circuit_breaker::{error::CircuitOpen, CircuitBreaker, State};
//! use harden::circuit_breaker::{breaker_classifier_fn, Outcome};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! let breaker = CircuitBreaker::builder()
//!     .name("inventory")
//!     .error_threshold_percentage(25.0)
//!     .volume_threshold(4)
//!     .count_window(100)                             // the last 100 calls, whatever their age
//!     .reset_timeout(Duration::from_secs(5))
//!     .half_open_max_calls(3)                        // 3 probes at once, 3 successes close it
//!     .consecutive_failures(10)                      // also open after 10 failures in a row
//!     .slow_call(Duration::from_secs(2), 50.0)       // also open when half the calls take >= 2 s
//!     .open_backoff(2.0, Duration::from_secs(60))    // 5 s, 10 s, 20 s, .. 60 s while probes fail
//!     .max_probe_duration(Duration::from_secs(30))
//!     .build()?;
//! // Status codes: 5xx fail, 4xx say nothing about the upstream's health.
//! let classifier = breaker_classifier_fn(|r: Result<&u16, &std::io::Error>| match r {
//!     Ok(s) if *s >= 500 => Outcome::Failure,
//!     Ok(s) if *s >= 400 => Outcome::Ignored,
//!     Ok(_) => Outcome::Success,
//!     Err(_) => Outcome::Failure,
//! });
//! let mut svc = ServiceBuilder::new()
//!     .layer(breaker.layer().with_classifier(classifier))
//!     .service(service_fn(|status: u16| async move { Ok::<_, std::io::Error>(status) }));
//! for _ in 0..4 {
//!     svc.ready().await?.call(503).await?;
//! }
//! assert_eq!(breaker.state(), State::Open);
//! let err = svc.ready().await?.call(200).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().expect("rejected by the breaker");
//! assert!(open.retry_after() <= Some(Duration::from_secs(5)));
//! # Ok(()) }
//! ```
//!
//! # Semantics
//!
//! - **Trip rule.** The failure rate is judged when a failure (or a slow call) is recorded: the
//!   breaker opens when the window holds `>= volume_threshold` calls and
//!   `failures * 100 / calls >= error_threshold_percentage`. This `>=` is what resilience4j, Polly
//!   and Hystrix do; opossum uses `>`, so opossum's 50 % needs a failure rate strictly above half. A
//!   success never opens the breaker.
//! - **What is counted.** Rejected calls are not counted in the rate (they are in
//!   [`Stats::rejections`]). Outcomes a classifier marks [`Ignored`](crate::circuit_breaker::Outcome::Ignored)
//!   are not counted at all. The default classifier ignores harden's own rejections coming from
//!   below (a full bulkhead's `BulkheadFull`, another breaker's `CircuitOpen`) on every path:
//!   local overload says nothing about the upstream, so put the breaker above the bulkhead (the
//!   standard order) without fear of it opening on a burst.
//! - **Readiness.** While the breaker rejects (open, forced open, half-open with every probe
//!   slot taken), `poll_ready` is ready at once without polling the inner service and `call`
//!   rejects — tower's `load_shed` pattern, so a caller never waits on a saturated inner service
//!   to be told the circuit is open. See [`CircuitBreakerService`]'s `# Readiness` for the
//!   races between `poll_ready` and `call`.
//! - **Age.** Every time the breaker keeps (open deadlines, probe bounds, window epochs) holds
//!   for the clock's whole `u64` range of nanoseconds, and no number of manual
//!   `reset`/`force_open`/`disable` calls wears anything out: a breaker may live for years.
//! - **Window.** Time-based by default: `buckets` buckets of `window / buckets`, the oldest aging
//!   out as time passes; or count-based ([`count_window`](CircuitBreakerBuilder::count_window)): the last N
//!   outcomes. Half-open probes are not recorded in it. It is cleared when the breaker closes
//!   (after probes succeed, or on [`reset`](CircuitBreaker::reset)). A time window's judge reads
//!   the current bucket fresh and the other buckets from totals refreshed once per bucket, so a
//!   result recorded late into an older bucket (its call read the clock just before the bucket
//!   turned) counts toward trips from the next bucket on; `stats()` sees it at once. Its
//!   counters are striped per thread, and while the window is far from tripping a judge reads
//!   only its own thread's stripe of the current bucket (it holds no more than its share of the
//!   headroom, and no thread said it holds more): during a failure storm below the threshold,
//!   threads judging at once touch no line another thread writes. Near the threshold every
//!   judge reads every stripe, and no trip is lost to a race (the proof is in the window's
//!   source, checked by loom). The failure-rate gauge shows what the judge read then: the
//!   other buckets exactly, the current one as the judging thread's stripe times the stripes.
//! - **Lazy transitions.** There are no timers or background tasks: the first call after the open
//!   period moves Open → HalfOpen and becomes the probe. [`CircuitBreaker::state`] reports the
//!   stored state, so an idle breaker reports `Open` past its open period until a call arrives.
//! - **Half-open.** At most `half_open_max_calls` probes run at once; other calls are rejected. A
//!   probe's slot is freed when it finishes or when its future is dropped (cancelled). Any probe
//!   failure (or slow probe, with the slow-call rule) opens the breaker again; `half_open_max_calls`
//!   probe successes close it. A probe whose outcome is ignored just frees its slot.
//! - **Hung probes.** If every probe slot is taken and no probe has been admitted or finished for
//!   `max_probe_duration`, the next call is admitted as a fresh probe and the old probes' results
//!   are ignored, so a hung probe cannot keep the breaker half-open forever.
//! - **Late results.** Every call remembers the *generation* it started in; every transition and
//!   manual change starts a new one. A result from an older generation is neither recorded nor
//!   judged: a slow success arriving while the breaker is open closes nothing. (A result racing a
//!   transition by nanoseconds may still land in the fresh window; it never causes a transition.)
//! - **Optional rules.** [`consecutive_failures`](CircuitBreakerBuilder::consecutive_failures) opens after N
//!   failures in a row (without waiting for `volume_threshold`; under concurrency the run length is
//!   approximate). [`slow_call`](CircuitBreakerBuilder::slow_call) counts calls lasting at least a duration as
//!   slow (whether they succeed or fail) and opens when the slow rate reaches a percentage, judged
//!   like the failure rate. [`open_backoff`](CircuitBreakerBuilder::open_backoff) lengthens the open period on
//!   every consecutive re-open, capped and jittered; closing resets it.
//! - **Manual control.** [`force_open`](CircuitBreaker::force_open) rejects everything until
//!   `reset` ([`CircuitOpen::retry_after`](error::CircuitOpen::retry_after) is then `None`);
//!   [`disable`](CircuitBreaker::disable) lets everything through and counts nothing;
//!   [`reset`](CircuitBreaker::reset) closes the breaker and clears the window.
//! - **Rejections.** [`CircuitOpen::retry_after`](error::CircuitOpen::retry_after) is the time
//!   until the next probe can be admitted (`None` when forced open).
//! - **Events.** Transitions are published to [`subscribe`](CircuitBreaker::subscribe) receivers
//!   (a `tokio::sync::watch`, which keeps only the latest state) and logged as `tracing` events at
//!   `INFO` (fields `breaker`, `from`, `to`); rejections are logged at `DEBUG`.
//!
//! # Defaults
//!
//! | setting | default | constant |
//! |---|---|---|
//! | `name` | `"circuit_breaker"` | [`DEFAULT_NAME`] |
//! | `error_threshold_percentage` | 50 % | [`DEFAULT_ERROR_THRESHOLD_PERCENTAGE`] |
//! | `volume_threshold` | 20 calls | [`DEFAULT_VOLUME_THRESHOLD`] |
//! | `rolling_window` | 10 s in 10 buckets | [`DEFAULT_ROLLING_WINDOW`], [`DEFAULT_ROLLING_WINDOW_BUCKETS`] |
//! | `reset_timeout` | 10 s | [`DEFAULT_RESET_TIMEOUT`] |
//! | `half_open_max_calls` | 1 | [`DEFAULT_HALF_OPEN_MAX_CALLS`] |
//! | `max_probe_duration` | 10 s | [`DEFAULT_MAX_PROBE_DURATION`] |
//! | `consecutive_failures`, `slow_call`, `open_backoff` | off | |
//!
//! `volume_threshold` is 20 like opossum's and Hystrix's default request volume, so a handful of
//! errors on a quiet upstream does not cut it off. `reset_timeout` is 10 s rather than opossum's
//! 30 s: with one probe at a time a probe is cheap, and 30 s keeps a recovered upstream cut off for
//! long (Hystrix and Polly use 5 s, resilience4j 60 s).
//!
//! # Errors
//!
//! The service's error type is [`BoxError`](crate::BoxError): the inner service's errors, boxed,
//! or [`CircuitOpen`](error::CircuitOpen) when the call was rejected; tell them apart with
//! `err.is::<CircuitOpen>()`; [`CircuitOpen::breaker`](error::CircuitOpen::breaker) names the
//! breaker that rejected. `poll_ready` never fails because the circuit is open: while the breaker
//! admits it forwards to the inner service, while it rejects it is ready at once, and the
//! rejection is the response future's result. [`CircuitBreakerBuilder::build`]
//! returns [`ConfigError`](crate::ConfigError) for settings outside their accepted range.
//!
//! # Compared with tower
//!
//! tower has no circuit breaker. The closest relative, `tower::load_shed`, rejects when the inner
//! service is not ready; this breaker rejects when the inner service has been failing, and it also
//! stays ready while open instead of erroring from `poll_ready`.

mod classify;
mod config;
mod core;
pub mod error;
pub mod future;
mod layer;
mod name;
mod observe;
#[cfg(feature = "tonic")]
mod permit;
mod service;
mod settings;
mod tune;
mod window;

#[cfg(all(test, harden_loom))]
mod loom_tests;
#[cfg(all(test, not(harden_loom)))]
mod model_tests;

use std::fmt;

pub use self::classify::{
    breaker_classifier_fn, BreakerClassifier, BreakerClassifierFn, DefaultBreakerClassifier,
    Outcome,
};
pub use self::config::{
    CircuitBreakerBuilder, DEFAULT_ERROR_THRESHOLD_PERCENTAGE, DEFAULT_HALF_OPEN_MAX_CALLS,
    DEFAULT_MAX_PROBE_DURATION, DEFAULT_NAME, DEFAULT_RESET_TIMEOUT, DEFAULT_ROLLING_WINDOW,
    DEFAULT_ROLLING_WINDOW_BUCKETS, DEFAULT_VOLUME_THRESHOLD, MAX_BUCKETS, MAX_COUNT_WINDOW,
    MAX_DURATION, MAX_HALF_OPEN_MAX_CALLS,
};
pub use self::error::CallError;
pub use self::layer::CircuitBreakerLayer;
pub use self::observe::{Event, EventKind};
#[cfg(feature = "tonic")]
pub(crate) use self::permit::CallPermit;
pub use self::service::CircuitBreakerService;
pub use self::settings::{CircuitBreakerSettings, OpenBackoffSettings, SlowCallSettings};

use self::config::Config;
use self::core::Core;
use crate::clock::Clock;
use crate::sync::Arc;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls go through and are counted.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A limited number of probe calls go through; the rest are rejected.
    HalfOpen,
    /// Every call is rejected until [`CircuitBreaker::reset`].
    ForcedOpen,
    /// Every call goes through and nothing is counted, until [`CircuitBreaker::reset`].
    Disabled,
}

impl State {
    /// The state's name in snake case, as used in metric labels: `closed`, `open`, `half_open`,
    /// `forced_open`, `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of a breaker's state and counts; see [`CircuitBreaker::stats`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The state when the snapshot was taken.
    pub state: State,
    /// Successes in the current window.
    pub successes: u64,
    /// Failures in the current window.
    pub failures: u64,
    /// Calls rejected since the breaker was built (not part of the window).
    pub rejections: u64,
    /// Slow calls in the current window (successes or failures; only with the slow-call rule).
    pub slow_calls: u64,
    /// `failures * 100 / (successes + failures)`; `None` while the window holds fewer than
    /// `volume_threshold` calls.
    pub failure_percentage: Option<f64>,
    /// `slow_calls * 100 / (successes + failures)`; `None` below `volume_threshold` or without the
    /// slow-call rule.
    pub slow_call_percentage: Option<f64>,
}

/// A circuit breaker: a cheap `Clone` handle on shared state.
///
/// Build one with [`CircuitBreaker::builder`], wrap services with [`layer`](Self::layer); see the
/// [module docs](self) for the semantics.
#[derive(Clone)]
pub struct CircuitBreaker {
    core: Arc<Core>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A builder with every setting at its default (see [Defaults](self#defaults)).
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
    }

    pub(crate) fn from_config(config: Config) -> CircuitBreaker {
        let clock = Clock::new();
        let epoch = clock.now();
        CircuitBreaker {
            core: Arc::new(Core::new(config, clock, epoch)),
        }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The breaker's settings now, as plain data (see [`CircuitBreakerSettings`]).
    pub fn settings(&self) -> CircuitBreakerSettings {
        let mut s = CircuitBreakerSettings::from_config(&self.core.config);
        s.retuned(&self.core.tune, self.core.windows.spec());
        s
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        self.core.name()
    }

    /// The current state. Transitions are lazy: an `Open` breaker stays `Open` past its open
    /// period until a call arrives.
    pub fn state(&self) -> State {
        self.core.state()
    }

    /// While [`Open`](State::Open): how long until the breaker admits its next probe —
    /// [`Duration::ZERO`](std::time::Duration::ZERO) once the open period is over and the next call will probe (health
    /// checks report such a breaker as ready to probe, not down). `None` in every other state.
    pub fn next_probe_in(&self) -> Option<std::time::Duration> {
        self.core.next_probe_in(self.core.clock.now())
    }

    /// Counts over the current window, rejections, and the failure percentage.
    pub fn stats(&self) -> Stats {
        self.core.stats(self.core.clock.now())
    }

    /// Reject every call until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.core.set_manual(State::ForcedOpen);
    }

    /// Let every call through and count nothing until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.core.set_manual(State::Disabled);
    }

    /// Close the breaker and clear its window, from any state. Results of calls started before
    /// are ignored.
    pub fn reset(&self) {
        self.core.set_manual(State::Closed);
    }

    /// A receiver of the breaker's state, updated at every transition (it keeps only the latest).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<State> {
        self.core.subscribe()
    }

    /// A layer whose services all share this breaker; `Ok` counts as success, `Err` as failure
    /// until you set a classifier with [`CircuitBreakerLayer::with_classifier`].
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self.clone())
    }

    /// Run `f` under the breaker, without tower: rejected with [`CallError::Rejected`] while
    /// open, otherwise `f` runs and its result counts (`Ok` a success, `Err` a failure, harden's
    /// own rejections ignored: see [`DefaultBreakerClassifier`]).
    ///
    /// Borrows the breaker for the call, so it bumps no reference count and a rejection
    /// allocates nothing; this is the cheapest way through a breaker. If `f` panics, a half-open
    /// probe slot it held is given back.
    ///
    /// ```
    /// use harden::circuit_breaker::{CallError, CircuitBreaker};
    ///
    /// let breaker = CircuitBreaker::builder().name("disk").build()?;
    /// match breaker.call(|| std::fs::metadata("/")) {
    ///     Ok(meta) => assert!(meta.is_dir()),
    ///     Err(CallError::Rejected(open)) => println!("open, next probe in {:?}", open.retry_after()),
    ///     Err(CallError::Inner(io)) => println!("failed: {io}"),
    /// }
    /// # Ok::<(), harden::ConfigError>(())
    /// ```
    pub fn call<T, E: 'static>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>> {
        self.call_classified(&crate::circuit_breaker::DefaultBreakerClassifier, f)
    }

    /// [`call`](Self::call) with a classifier deciding success, failure or ignored.
    pub fn call_classified<T, E, C>(
        &self,
        classifier: &C,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, CallError<E>>
    where
        C: crate::circuit_breaker::BreakerClassifier<T, E>,
    {
        let core = &*self.core;
        let loaded;
        let window = match core.windows.first() {
            Some(first) => &**first,
            None => {
                loaded = core.windows.load();
                &**loaded
            }
        };
        let permit = core
            .try_acquire_with(window, || core.clock.now())
            .map_err(|rejection| {
                CallError::Rejected(rejection.into_error(core.config.rejection_name.clone()))
            })?;
        let start = core.call_start();
        if permit.kind() != self::core::Kind::Probe {
            // Closed and pass-through calls hold no slot: nothing to give back if `f` unwinds.
            let result = f();
            core.finish(window, permit, start, classifier.classify(result.as_ref()));
            return result.map_err(CallError::Inner);
        }
        // Gives a probe slot back if `f` unwinds; defused once the result is recorded.
        struct Unwind<'a> {
            core: &'a Core,
            permit: Option<self::core::Permit>,
        }
        impl Drop for Unwind<'_> {
            fn drop(&mut self) {
                if let Some(permit) = self.permit.take() {
                    self.core.release(permit);
                }
            }
        }
        let mut guard = Unwind {
            core,
            permit: Some(permit),
        };
        let result = f();
        // BreakerClassifier while the guard still holds the permit: a classifier that panics frees the slot.
        let outcome = classifier.classify(result.as_ref());
        if let Some(permit) = guard.permit.take() {
            core.finish(window, permit, start, outcome);
        }
        result.map_err(CallError::Inner)
    }

    /// Heap bytes owned by this breaker (its shared state and window).
    #[cfg(all(test, not(harden_loom)))]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.core.heap_bytes()
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;

    #[test]
    fn default_breaker_fits_in_two_kib() {
        let breaker = CircuitBreaker::builder().build().unwrap();
        let bytes = breaker.heap_bytes();
        println!("heap bytes per default breaker: {bytes}");
        assert!(bytes <= 2048, "{bytes} bytes");
        // And on a machine of 4 or more cores, whose window has the most stripes (without the
        // `metrics` feature, whose handles add their own bytes: the goal is the default build's).
        #[cfg(not(feature = "metrics"))]
        let widest = window::Window::with_stripes(
            window::WindowSpec::Time {
                window: DEFAULT_ROLLING_WINDOW,
                buckets: DEFAULT_ROLLING_WINDOW_BUCKETS,
            },
            window::MAX_STRIPES,
        );
        #[cfg(not(feature = "metrics"))]
        {
            let bytes = std::mem::size_of::<core::Core>()
                + std::mem::size_of::<window::Window>()
                + widest.heap_bytes()
                + "default".len();
            assert!(
                bytes <= 2048,
                "{bytes} bytes with {} stripes",
                window::MAX_STRIPES
            );
        }
    }

    #[test]
    fn state_names() {
        assert_eq!(State::HalfOpen.to_string(), "half_open");
        assert_eq!(State::ForcedOpen.as_str(), "forced_open");
    }
}
