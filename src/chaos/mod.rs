//! Fault injection for tests and demos: failures, delays, hangs and HTTP statuses, each at a
//! rate, from a seeded generator, switchable while running (feature `chaos`).
//!
//! A [`Chaos`] is a handle on one set of [`Faults`]; [`chaos.layer()`](Chaos::layer) wraps any
//! tower service in a [`ChaosService`] that, call by call, fails with
//! [`InjectedError`](error::InjectedError) (error rate), never answers (hang rate), answers with
//! an HTTP status without calling the inner service (status rate; [`Chaos::http_layer`]), and
//! delays the answer (latency rate, with a fixed, uniform or exponential [`Latency`]). Which
//! calls get which fault is decided by a seeded generator, so a test or a demo tells the same
//! story on every run; the handle changes the rates or turns everything off while services are
//! running, and every clone of the layer and of its services follows it. It is opt-in all the
//! way: the feature is off by default, the types say `Chaos`, a new `Chaos` injects nothing until
//! a rate above 0 is set, and with every rate 0 (or [`disable`](Chaos::disable)d) a call reads
//! the settings (relaxed atomic loads: no lock, no random draw, no allocation) and passes
//! straight through. Use it to test your own
//! services under failure the way Polly's Simmy and `tower-resilience`'s chaos layer do, or wrap
//! an embedded upstream in it to show what the rest of harden does (`cargo run --example demo`).
//!
//! # Example
//!
//! Default use: one call in ten fails, on the default seed.
//!
//! ```
//! use harden::chaos::{error::InjectedError, Chaos};
//! use harden::BoxError;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let chaos = Chaos::builder().error_rate(0.1).build()?;
//! let service = chaos.layer().layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
//!
//! let mut failed = 0;
//! for i in 0..1000 {
//!     match service.clone().oneshot(i).await {
//!         Ok(x) => assert_eq!(x, i),
//!         Err(err) if err.is::<InjectedError>() => failed += 1,
//!         Err(err) => return Err(err),
//!     }
//! }
//! assert!((50..150).contains(&failed), "{failed}");
//! assert_eq!(chaos.stats().errors, failed);
//! # Ok(())
//! # }
//! ```
//!
//! Customised: an HTTP upstream that answers 503 to a fifth of the requests and is slow for a
//! third, on a seed of its own; then a test switches it to "down" and back while it runs (the
//! clock is paused so the delays take no time).
//!
//! ```
//! use std::time::Duration;
//! use harden::chaos::{Chaos, Faults, Latency};
//! use harden::BoxError;
//! use http::{Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let chaos = Chaos::builder()
//!     .name("inventory")                       // the `chaos` label of its metrics
//!     .seed(7)                                 // same seed, same calls: same faults
//!     .status(StatusCode::SERVICE_UNAVAILABLE, 0.2)
//!     .latency(Latency::uniform(Duration::from_millis(50), Duration::from_millis(250)), 0.3)
//!     .build()?;
//! let upstream = service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, BoxError>(Response::new(String::from("in stock")))
//! });
//! let service = chaos.http_layer().layer(upstream);
//!
//! let response = service.clone().oneshot(http::Request::new(())).await?;
//! assert!([StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(&response.status()));
//!
//! // Down: every request gets a 503, at once.
//! chaos.set(Faults::new().with_status(StatusCode::SERVICE_UNAVAILABLE, 1.0))?;
//! let response = service.clone().oneshot(http::Request::new(())).await?;
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//!
//! // Off: requests reach the upstream untouched; the settings are kept for `enable()`.
//! chaos.disable();
//! let response = service.oneshot(http::Request::new(())).await?;
//! assert_eq!(response.into_body(), "in stock");
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! The service's error type is [`BoxError`]. It holds either
//! [`InjectedError`](error::InjectedError) (an injected failure: the inner service was not
//! called) or the inner service's error, boxed unchanged; tell them apart with
//! `err.is::<InjectedError>()`. Errors of the inner `poll_ready` pass through boxed: chaos
//! acts on calls only. An injected status is a response
//! ([`HttpResponder`](crate::http::HttpResponder), with the feature `http`), or an `InjectedError` whose
//! [`status`](error::InjectedError::status) is set when the response type cannot carry one
//! ([`Plain`], the default of [`Chaos::layer`]).
//!
//! [`ChaosBuilder::build`] and [`Chaos::set`] return a [`ConfigError`] naming the setting for a
//! rate that is not a finite number in `[0, 1]`, for error + hang + status rates that add up to
//! more than 1 (they exclude each other), and for a uniform latency whose `min` is above its
//! `max`. A rejected [`set`](Chaos::set) leaves the running settings as they were.
//!
//! # What a call gets
//!
//! In `call`, a call is given at most one of error, hang and status (one draw against the three
//! rates laid end to end, so each rate is the fraction of all calls), and, unless it hangs,
//! possibly a delay (a second draw against the latency rate, then one from the distribution).
//! Injected errors, statuses and hangs do not call the inner service — the upstream never saw
//! the request, as when a connection is refused or a proxy answers for it — but its readiness
//! was polled, like any tower middleware that answers for its inner service (tower's `Filter`).
//! A delay is served before the answer: the inner future is created in `call` (so readiness is
//! used as tower expects) but first polled when the delay is over, so for services that work
//! when polled (async functions, axum handlers, hyper and reqwest clients) the delay comes on
//! top of their own time, as network latency on the way in would. A timeout above the chaos
//! layer that fires during the delay drops the inner future before it ran. A hang is a future
//! that is never ready and never wakes its task; something above must time it out.
//!
//! # Reproducibility
//!
//! Call number *i* (counting the calls made while the chaos is active, from 0) draws its faults
//! from a [`fastrand`] generator seeded with the chaos' seed and *i* only. So with the same seed,
//! the same settings and the calls made in the same order — one task, or a current-thread
//! runtime whose tasks are scheduled the same way — every run injects the same faults into the
//! same calls, whatever the delays drawn or the number of other chaos layers. Across threads
//! (or concurrent tasks whose order depends on timing) the calls still get the same sequence of
//! faults by number, but which request gets number *i* depends on which reaches `call` first.
//! Calls made while the chaos is disabled or has every rate 0 take no number. Changing the
//! settings while running does not reset the count. Two chaos values with the same seed inject
//! the same faults in step: give each its own seed (or [`ChaosBuilder::random_seed`]).
//!
//! # Run-time changes
//!
//! [`Chaos::set`], [`enable`](Chaos::enable) and [`disable`](Chaos::disable) take effect for
//! calls that start after they return on the same thread, or on a thread that synchronised with
//! it (a channel, a join, a lock); other threads see them within the time the CPU takes to
//! propagate a store. Each rate is its own atomic: a call that starts while `set` is running may
//! see some of the new rates and some of the old. Setters are serialised by a mutex (they are
//! rare); calls take no lock, except a read lock on the latency distribution for the calls that
//! are delayed (which are about to sleep).
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | faults | none: [`Faults::new`], every rate 0 |
//! | `name` | [`DEFAULT_NAME`] = `"chaos"` |
//! | `seed` | [`DEFAULT_SEED`] (fixed, so runs are reproducible unless asked otherwise) |
//! | enabled | yes ([`ChaosBuilder::enabled`]); with every rate 0 it still injects nothing |
//! | injected status | [`DEFAULT_STATUS`] = 503 |
//!
//! # Metrics
//!
//! With the feature `metrics`, `harden_chaos_injected_total{chaos, fault}` counts injected
//! faults (`fault` = `error`, `hang`, `status`, `latency`; a delayed error counts once for each)
//! and `harden_chaos_active{chaos}` is 1 while the chaos is enabled with a rate above 0, so a
//! dashboard (or an alert) shows at once that faults are being injected. Both are registered
//! when the chaos is built. [`Chaos::stats`] gives the same counts without a recorder.
//!
//! # Differences from other fault injectors
//!
//! tower, axum and reqwest have none. Polly's Simmy chains one strategy per fault, each drawing
//! on its own, so later faults see fewer calls; here the exclusive faults share one draw, so
//! `error_rate = 0.1` is one call in ten whatever else is on. `tower-resilience`'s chaos layer
//! and Simmy draw from one shared generator, so a fault drawn for one call shifts every later
//! call; here each call's faults depend on the seed and its number only. Statuses are real
//! responses ([`HttpResponder`](crate::http::HttpResponder)), not errors, so classifiers see what they would see from a real upstream.

pub mod error;
mod faults;
pub mod future;
mod layer;
mod settings;

pub use self::faults::{Faults, Latency, DEFAULT_STATUS};
pub use self::layer::ChaosLayer;
pub use self::settings::ChaosSettings;

use self::future::{Outcome, ResponseFuture};
use crate::metrics;
use crate::{BoxError, ConfigError};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use tower_service::Service;

/// The name a chaos reports under until [`ChaosBuilder::name`] gives it another: `"chaos"`.
pub const DEFAULT_NAME: &str = "chaos";
/// The seed until [`ChaosBuilder::seed`] sets another.
pub const DEFAULT_SEED: u64 = 0x6861_7264_656e_2121;

/// Builds a [`Chaos`]; see the [module docs](self) for the defaults.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ChaosBuilder {
    name: Arc<str>,
    seed: u64,
    faults: Faults,
    enabled: bool,
}

impl ChaosBuilder {
    /// Names this chaos: the `chaos` label of its metrics, and the name in its errors.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The seed of the generator; the same seed and call order give the same faults.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// A seed drawn from the process' own random source (read it back with [`Chaos::seed`] to
    /// replay a run).
    pub fn random_seed(mut self) -> Self {
        self.seed = fastrand::u64(..);
        self
    }

    /// Every fault at once, replacing those set before.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Fail this fraction of calls with [`InjectedError`](error::InjectedError), without calling the inner service.
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.faults = self.faults.with_error_rate(rate);
        self
    }

    /// Never answer this fraction of calls (see [`Faults::with_hang_rate`]).
    pub fn hang_rate(mut self, rate: f64) -> Self {
        self.faults = self.faults.with_hang_rate(rate);
        self
    }

    /// Delay this fraction of calls by a duration drawn from `latency`.
    pub fn latency(mut self, latency: Latency, rate: f64) -> Self {
        self.faults = self.faults.with_latency(latency, rate);
        self
    }

    /// Answer this fraction of calls with `status`, without calling the inner service.
    #[cfg(feature = "http")]
    pub fn status(mut self, status: http::StatusCode, rate: f64) -> Self {
        self.faults = self.faults.with_status(status, rate);
        self
    }

    /// Whether the chaos starts enabled (the default); a disabled one keeps its faults for
    /// [`Chaos::enable`].
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Checks the faults and returns the handle.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting, for a rate outside `[0, 1]` or not finite, exclusive
    /// rates adding up to more than 1, or an empty uniform latency range.
    pub fn build(self) -> Result<Chaos, ConfigError> {
        self.faults.validate()?;
        let faults = self.faults;
        let shared = Shared {
            metrics: ChaosMetrics::register(&self.name),
            name: self.name,
            seed: self.seed,
            calls: AtomicU64::new(0),
            enabled: AtomicBool::new(self.enabled),
            error_rate: AtomicU64::new(faults.error_rate.to_bits()),
            hang_rate: AtomicU64::new(faults.hang_rate.to_bits()),
            status_rate: AtomicU64::new(faults.status_rate.to_bits()),
            status: AtomicU16::new(faults.status),
            latency_rate: AtomicU64::new(faults.latency_rate.to_bits()),
            latency: RwLock::new(faults.latency),
            setter: Mutex::new(()),
            injected: Default::default(),
        };
        shared.publish_active();
        Ok(Chaos {
            shared: Arc::new(shared),
        })
    }
}

/// Counts of what a [`Chaos`] did since it was built; see [`Chaos::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ChaosStats {
    /// Calls made while the chaos was active (each took a number; see the module docs).
    pub calls: u64,
    /// Calls failed with [`InjectedError`](error::InjectedError).
    pub errors: u64,
    /// Calls that were made to hang.
    pub hangs: u64,
    /// Calls answered with the injected status.
    pub statuses: u64,
    /// Calls delayed (on top of any of the above but hangs).
    pub delayed: u64,
}

/// A fault injector: a cheap `Clone` handle on shared settings.
///
/// Build one with [`Chaos::builder`], wrap services with [`layer`](Self::layer) or
/// [`http_layer`](Self::http_layer), and change what it injects while they run with
/// [`set`](Self::set), [`enable`](Self::enable) and [`disable`](Self::disable).
#[derive(Clone)]
pub struct Chaos {
    shared: Arc<Shared>,
}

impl fmt::Debug for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("name", &self.name())
            .field("seed", &self.seed())
            .field("enabled", &self.is_enabled())
            .field("faults", &self.faults())
            .finish()
    }
}

impl Chaos {
    /// A builder with the defaults: no faults.
    pub fn builder() -> ChaosBuilder {
        ChaosBuilder {
            name: Arc::from(DEFAULT_NAME),
            seed: DEFAULT_SEED,
            faults: Faults::new(),
            enabled: true,
        }
    }

    /// A layer whose services inject this chaos' faults into any service; an injected status
    /// is an [`InjectedError`](error::InjectedError) with its status set (see [`Plain`]).
    pub fn layer(&self) -> ChaosLayer {
        ChaosLayer::new(self.clone())
    }

    /// The name: the `chaos` label of its metrics.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The seed of the generator.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// The faults now in force (whether or not the chaos is enabled).
    pub fn faults(&self) -> Faults {
        let s = &self.shared;
        // Relaxed: a snapshot of independent settings; see "Run-time changes".
        let load = |rate: &AtomicU64| f64::from_bits(rate.load(Ordering::Relaxed));
        Faults {
            error_rate: load(&s.error_rate),
            hang_rate: load(&s.hang_rate),
            latency: *s.latency.read().unwrap_or_else(PoisonError::into_inner),
            latency_rate: load(&s.latency_rate),
            // Relaxed: read with the rate it belongs to, which carries the ordering.
            status: s.status.load(Ordering::Relaxed),
            status_rate: load(&s.status_rate),
        }
    }

    /// Replaces the faults of every service made from this chaos, from their next call on.
    ///
    /// # Errors
    ///
    /// [`ConfigError`], as for [`ChaosBuilder::build`]; the faults in force are then unchanged.
    pub fn set(&self, faults: Faults) -> Result<(), ConfigError> {
        faults.validate()?;
        let s = &self.shared;
        let _serialised = s.setter.lock().unwrap_or_else(PoisonError::into_inner);
        *s.latency.write().unwrap_or_else(PoisonError::into_inner) = faults.latency;
        // Relaxed: each rate is an independent setting and publishes no other memory.
        s.error_rate
            .store(faults.error_rate.to_bits(), Ordering::Relaxed);
        s.hang_rate
            .store(faults.hang_rate.to_bits(), Ordering::Relaxed);
        s.latency_rate
            .store(faults.latency_rate.to_bits(), Ordering::Relaxed);
        // Relaxed: the status code is published by the Release store of its rate below.
        s.status.store(faults.status, Ordering::Relaxed);
        // Release: a call that reads this rate (Acquire) also reads the code stored before it.
        s.status_rate
            .store(faults.status_rate.to_bits(), Ordering::Release);
        s.publish_active();
        Ok(())
    }

    /// Turns every fault on again with the settings in force.
    pub fn enable(&self) {
        let _serialised = self
            .shared
            .setter
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Relaxed: a switch publishing no other memory; the rates are read on their own.
        self.shared.enabled.store(true, Ordering::Relaxed);
        self.shared.publish_active();
    }

    /// Turns every fault off, keeping the settings: calls pass straight through.
    pub fn disable(&self) {
        let _serialised = self
            .shared
            .setter
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Relaxed: as in `enable`.
        self.shared.enabled.store(false, Ordering::Relaxed);
        self.shared.publish_active();
    }

    /// Whether the chaos is enabled (it may still have every rate 0).
    pub fn is_enabled(&self) -> bool {
        // Relaxed: a status read.
        self.shared.enabled.load(Ordering::Relaxed)
    }

    /// Whether calls made now can get a fault: enabled, with some rate above 0.
    pub fn is_active(&self) -> bool {
        self.is_enabled() && self.faults().any()
    }

    /// What this chaos did since it was built, across every service made from it.
    pub fn stats(&self) -> ChaosStats {
        let s = &self.shared;
        // Relaxed: independent counters, read as a snapshot.
        let n = |i: usize| s.injected[i].load(Ordering::Relaxed);
        ChaosStats {
            calls: s.calls.load(Ordering::Relaxed),
            errors: n(ERROR),
            hangs: n(HANG),
            statuses: n(STATUS),
            delayed: n(LATENCY),
        }
    }
}

const ERROR: usize = 0;
const HANG: usize = 1;
const STATUS: usize = 2;
const LATENCY: usize = 3;

/// The state every clone of a [`Chaos`] and every service made from it share.
struct Shared {
    name: Arc<str>,
    seed: u64,
    /// Numbers the calls made while active; see "Reproducibility".
    calls: AtomicU64,
    enabled: AtomicBool,
    // Rates as `f64` bits.
    error_rate: AtomicU64,
    hang_rate: AtomicU64,
    status_rate: AtomicU64,
    status: AtomicU16,
    latency_rate: AtomicU64,
    /// Read only by calls that are delayed.
    latency: RwLock<Latency>,
    /// Serialises setters, so the `active` gauge matches the last of them.
    setter: Mutex<()>,
    /// Injected faults by kind: error, hang, status, latency.
    injected: [AtomicU64; 4],
    metrics: ChaosMetrics,
}

/// What one call gets.
struct Decision {
    terminal: Terminal,
    delay: Option<std::time::Duration>,
}

enum Terminal {
    None,
    Error,
    Hang,
    Status(u16),
}

impl Shared {
    /// Decides the faults of one call; `None` when the chaos is off (the fast path).
    #[inline]
    fn decide(&self) -> Option<Decision> {
        // Relaxed, here and for the rates: independent settings (see "Run-time changes").
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let error = f64::from_bits(self.error_rate.load(Ordering::Relaxed));
        let hang = f64::from_bits(self.hang_rate.load(Ordering::Relaxed));
        // Acquire: pairs with the Release store in `set`, so the code read below is the rate's.
        let status = f64::from_bits(self.status_rate.load(Ordering::Acquire));
        let latency = f64::from_bits(self.latency_rate.load(Ordering::Relaxed));
        if error <= 0.0 && hang <= 0.0 && status <= 0.0 && latency <= 0.0 {
            return None;
        }
        self.decide_active(error, hang, status, latency)
    }

    #[inline(never)]
    fn decide_active(&self, error: f64, hang: f64, status: f64, latency: f64) -> Option<Decision> {
        // Relaxed: a unique number per call is all that is needed; it orders nothing else.
        let number = self.calls.fetch_add(1, Ordering::Relaxed);
        // Each call has its own generator, seeded by (seed, number): see "Reproducibility".
        let mut rng =
            fastrand::Rng::with_seed(self.seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let draw = rng.f64();
        let terminal = if draw < error {
            Terminal::Error
        } else if draw < error + hang {
            Terminal::Hang
        } else if draw < error + hang + status {
            // Relaxed: ordered by the Acquire load of the status rate in `decide`.
            Terminal::Status(self.status.load(Ordering::Relaxed))
        } else {
            Terminal::None
        };
        let delayed = rng.f64() < latency && !matches!(terminal, Terminal::Hang);
        let delay = if delayed {
            let distribution = *self.latency.read().unwrap_or_else(PoisonError::into_inner);
            Some(distribution.sample(&mut rng))
        } else {
            None
        };
        let kind = match terminal {
            Terminal::None => None,
            Terminal::Error => Some(ERROR),
            Terminal::Hang => Some(HANG),
            Terminal::Status(_) => Some(STATUS),
        };
        if let Some(kind) = kind {
            self.note(kind);
        }
        if delayed {
            self.note(LATENCY);
        }
        Some(Decision { terminal, delay })
    }

    fn note(&self, kind: usize) {
        // Relaxed: a statistic, read on its own.
        self.injected[kind].fetch_add(1, Ordering::Relaxed);
        self.metrics.injected[kind].increment(1);
    }

    /// Sets the `active` gauge from the settings; called with the setter lock held.
    fn publish_active(&self) {
        let any = [
            &self.error_rate,
            &self.hang_rate,
            &self.status_rate,
            &self.latency_rate,
        ]
        .iter()
        // Relaxed: the stores being read were made by this thread, under the setter lock.
        .any(|rate| f64::from_bits(rate.load(Ordering::Relaxed)) > 0.0);
        // Relaxed: as above.
        let on = any && self.enabled.load(Ordering::Relaxed);
        self.metrics.active.set(if on { 1.0 } else { 0.0 });
    }
}

/// The chaos' series, registered once when it is built.
struct ChaosMetrics {
    injected: [metrics::Counter; 4],
    active: metrics::Gauge,
}

impl ChaosMetrics {
    fn register(name: &Arc<str>) -> Self {
        let injected = |fault| {
            metrics::counter2(
                metrics::names::CHAOS_INJECTED,
                "chaos",
                name,
                "fault",
                fault,
            )
        };
        let [error, hang, status, latency] = metrics::labels::CHAOS_FAULTS;
        ChaosMetrics {
            injected: [
                injected(error),
                injected(hang),
                injected(status),
                injected(latency),
            ],
            active: metrics::gauge(metrics::names::CHAOS_ACTIVE, "chaos", name),
        }
    }
}

/// How a [`ChaosService`] turns an injected HTTP status into a response of type `T`.
///
/// Implement it on a type of your own for a response type harden does not know, and give it to
/// [`ChaosLayer::respond_with`].
pub trait InjectStatus<T> {
    /// A response carrying `status` (always a valid HTTP status code, 100 to 999), or `None` if
    /// `T` cannot carry one; the call then fails with an [`InjectedError`](error::InjectedError) whose
    /// [`status`](error::InjectedError::status) is set.
    fn status_response(&self, status: u16) -> Option<T>;
}

/// Injected statuses are errors: for services whose responses are not HTTP (the default of
/// [`Chaos::layer`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl<T> InjectStatus<T> for Plain {
    #[inline]
    fn status_response(&self, _status: u16) -> Option<T> {
        None
    }
}

/// A service injecting a [`Chaos`]' faults into the calls of the service it wraps; made by
/// [`ChaosLayer`].
///
/// Clones share the chaos. See the [module docs](self) for what a call gets.
#[derive(Clone)]
pub struct ChaosService<S, R = Plain> {
    inner: S,
    chaos: Chaos,
    respond: R,
}

impl<S, R> ChaosService<S, R> {
    /// Wraps `inner` with `chaos`' faults, building injected statuses with `respond`.
    pub fn new(inner: S, chaos: Chaos, respond: R) -> Self {
        ChaosService {
            inner,
            chaos,
            respond,
        }
    }

    /// The chaos this service follows.
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }

    define_inner_service_accessors!();
}

impl<S: fmt::Debug, R> fmt::Debug for ChaosService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosService")
            .field("inner", &self.inner)
            .field("chaos", &self.chaos)
            .finish_non_exhaustive()
    }
}

impl<S, R, Request> Service<Request> for ChaosService<S, R>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    R: InjectStatus<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        // NOTE: with every rate 0 or disabled this is the whole cost of the layer.
        let Some(decision) = self.chaos.shared.decide() else {
            return ResponseFuture::pass(self.inner.call(request), self.respond.clone());
        };
        let name = Arc::clone(&self.chaos.shared.name);
        let outcome = match decision.terminal {
            Terminal::None => Outcome::Inner(self.inner.call(request)),
            Terminal::Error => Outcome::Fail(name),
            Terminal::Status(status) => Outcome::Status(name, status),
            Terminal::Hang => Outcome::Hang,
        };
        ResponseFuture::new(outcome, decision.delay, self.respond.clone())
    }
}
