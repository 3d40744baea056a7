//! The event-driven engine: clients with harden's real breaker, bulkhead and retry budget, a
//! calendar of events in 1 ms ticks, and harden's clock moved by a paused tokio runtime.
//!
//! Each attempt goes through a real [`CircuitBreakerService`] wrapping a real
//! [`Bulkhead`] wrapping a *slot*: a service whose future stays
//! pending until the engine hands it the upstream's answer (or an attempt timeout) and polls it
//! once with a no-op waker. So admission, probes, counting, late results and permits are
//! harden's own code, and no task or timer is spawned per call: the engine keeps the timeouts,
//! the backoff sleeps and the upstream's latency as events in its calendar. The retry loop is
//! the engine's, with harden's parts: [`RetryBudget`] deposits and withdrawals, [`Backoff`]'s
//! delays (full jitter drawn from the run's seeded generator, so a seed gives one output) and
//! the HTTP preset's classifiers ([`HttpRetryClassifier`], [`HttpBreakerClassifier`]).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use harden::bulkhead::error::BulkheadFull;
use harden::bulkhead::{Bulkhead, BulkheadLayer};
use harden::circuit_breaker::{
    BreakerClassifier, CircuitBreaker, CircuitBreakerService, EventKind, Outcome, State,
};
use harden::http::{HttpBreakerClassifier, HttpRetryClassifier};
use harden::retry::{Backoff, Jitter, RetryBudget, RetryDecision};
use harden::{BoxError, ConfigError};
use http::{HeaderMap, StatusCode};
use tower::{Layer, Service};

/// The engine's time step: 1 ms. Latencies and delays are rounded up to whole ticks.
pub const TICK: Duration = Duration::from_millis(1);
const TICK_NS: u64 = 1_000_000;

/// Ticks in a duration, rounded up.
pub fn ticks(d: Duration) -> u64 {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    ns.div_ceil(TICK_NS)
}

/// A tick as seconds.
pub fn tick_secs(t: u64) -> f64 {
    t as f64 / 1000.0
}

/// The settings of one client's stack, named as harden's builders name them.
#[derive(Debug, Clone, PartialEq)]
pub struct StackSettings {
    /// Whether there is a circuit breaker at all.
    pub breaker: bool,
    /// Failure percentage that opens the breaker.
    pub error_threshold_percentage: f64,
    /// Calls in the window before the breaker judges.
    pub volume_threshold: u32,
    /// The breaker's window.
    pub rolling_window: Duration,
    /// Buckets of the window.
    pub buckets: u32,
    /// Time the breaker stays open.
    pub reset_timeout: Duration,
    /// Probes at once while half-open; that many successes close it.
    pub half_open_max_calls: u32,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff delay.
    pub initial_delay: Duration,
    /// Growth of the backoff.
    pub multiplier: f64,
    /// Cap on every delay.
    pub max_delay: Duration,
    /// Full jitter on the delays.
    pub jitter: bool,
    /// Whether retries draw from a retry budget.
    pub budget: bool,
    /// The budget's share of requests that may be retried.
    pub retry_ratio: f64,
    /// The budget's floor of retries per second.
    pub min_retries_per_sec: u32,
    /// The most tokens the budget saves up.
    pub burst: u32,
    /// Timeout of each attempt.
    pub attempt_timeout: Option<Duration>,
    /// Timeout of the whole call, retries and backoff included.
    pub total_timeout: Option<Duration>,
    /// Bulkhead limit.
    pub max_concurrent: Option<usize>,
}

impl StackSettings {
    /// harden's HTTP preset on its defaults (`harden::http::HttpLayer::builder()`).
    pub fn http_preset() -> Self {
        use harden::http as h;
        StackSettings {
            breaker: true,
            error_threshold_percentage: h::DEFAULT_ERROR_THRESHOLD_PERCENTAGE,
            volume_threshold: h::DEFAULT_VOLUME_THRESHOLD,
            rolling_window: h::DEFAULT_ROLLING_WINDOW,
            buckets: harden::circuit_breaker::DEFAULT_ROLLING_WINDOW_BUCKETS,
            reset_timeout: h::DEFAULT_RESET_TIMEOUT,
            half_open_max_calls: harden::circuit_breaker::DEFAULT_HALF_OPEN_MAX_CALLS,
            max_attempts: h::DEFAULT_MAX_ATTEMPTS,
            initial_delay: h::DEFAULT_INITIAL_DELAY,
            multiplier: 2.0,
            max_delay: h::DEFAULT_MAX_DELAY,
            jitter: true,
            budget: true,
            retry_ratio: harden::retry::DEFAULT_RETRY_RATIO,
            min_retries_per_sec: harden::retry::DEFAULT_MIN_RETRIES_PER_SEC,
            burst: harden::retry::DEFAULT_BURST,
            attempt_timeout: Some(h::DEFAULT_ATTEMPT_TIMEOUT),
            total_timeout: Some(h::DEFAULT_TOTAL_TIMEOUT),
            max_concurrent: Some(h::DEFAULT_MAX_CONCURRENT),
        }
    }

    /// No resilience: one attempt, no breaker, no budget, no bulkhead; the timeouts kept.
    #[must_use]
    pub fn bare(&self) -> Self {
        StackSettings {
            breaker: false,
            max_attempts: 1,
            budget: false,
            max_concurrent: None,
            ..self.clone()
        }
    }

    /// Naive retries: `attempts` attempts, no budget, no breaker, no bulkhead.
    #[must_use]
    pub fn naive(&self, attempts: u32) -> Self {
        StackSettings {
            breaker: false,
            max_attempts: attempts,
            budget: false,
            max_concurrent: None,
            ..self.clone()
        }
    }

    /// Checks the settings the way harden's builders do.
    ///
    /// # Errors
    ///
    /// harden's [`ConfigError`], naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.breaker_builder().build()?;
        if self.budget {
            self.budget_builder().build()?;
        }
        let backoff = self.backoff();
        harden::retry::RetryPolicy::builder()
            .max_attempts(self.max_attempts)
            .backoff(backoff)
            .build()?;
        if let Some(n) = self.max_concurrent {
            let _checked = BulkheadLayer::try_new(n)?;
        }
        Ok(())
    }

    fn breaker_builder(&self) -> harden::circuit_breaker::CircuitBreakerBuilder {
        CircuitBreaker::builder()
            .name("sim")
            .error_threshold_percentage(self.error_threshold_percentage)
            .volume_threshold(self.volume_threshold)
            .rolling_window(self.rolling_window, self.buckets)
            .reset_timeout(self.reset_timeout)
            .half_open_max_calls(self.half_open_max_calls)
    }

    fn budget_builder(&self) -> harden::retry::RetryBudgetBuilder {
        RetryBudget::builder()
            .burst(self.burst)
            .min_retries_per_sec(self.min_retries_per_sec)
            .retry_ratio(self.retry_ratio)
    }

    fn backoff(&self) -> Backoff {
        Backoff::exponential(self.initial_delay, self.multiplier)
            .jitter(if self.jitter {
                Jitter::Full
            } else {
                Jitter::None
            })
            .max_delay(self.max_delay)
    }
}

/// What the upstream did with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// An HTTP status after this many ticks.
    Status(u16, u64),
    /// A transport error (connection refused, reset) after this many ticks.
    Error(u64),
    /// No answer, ever: only a timeout ends the attempt.
    Hang,
}

/// The upstream a simulation calls.
pub trait Upstream {
    /// The reply to an attempt sent at tick `now` for call `call` (its arrival's tag).
    fn send(&mut self, now: u64, call: u64, attempt: u32, rng: &mut fastrand::Rng) -> Reply;
}

/// How a call ended, as its caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// An answer that is not a failure.
    Answer,
    /// A failure reached the caller (5xx, error, attempt or total timeout).
    Failure,
    /// harden rejected the call without sending it (open breaker, full bulkhead).
    Shed,
}

/// Counts of a run, and the caller's latencies.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Calls started.
    pub calls: u64,
    /// Calls that ended with an answer.
    pub answers: u64,
    /// Calls whose failure reached the caller.
    pub failures: u64,
    /// Calls harden rejected.
    pub shed: u64,
    /// Attempts sent upstream, retries included.
    pub upstream: u64,
    /// Retries sent.
    pub retries: u64,
    /// Retries the budget refused.
    pub budget_refused: u64,
    /// Caller latency histogram, one bin per tick (the last bin holds everything longer).
    pub latency: Vec<u64>,
}

const LATENCY_BINS: usize = 120_000;

impl Tally {
    fn new() -> Self {
        Tally {
            latency: vec![0; LATENCY_BINS],
            ..Tally::default()
        }
    }

    /// The `q` quantile of the caller's latency (0 < q <= 1), in ms; 0 without calls.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ms as f64;
            }
        }
        (LATENCY_BINS - 1) as f64
    }
}

thread_local! {
    /// The answer the next polled slot future returns.
    static ANSWER: Cell<Option<Answer>> = const { Cell::new(None) };
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    Error,
    Timeout,
}

/// The service under harden's layers: its future waits for the engine's answer.
#[derive(Debug, Clone, Copy)]
struct Slot;

#[derive(Debug)]
struct SlotFuture;

impl Future for SlotFuture {
    type Output = Result<u16, BoxError>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match ANSWER.with(Cell::take) {
            None => Poll::Pending,
            Some(Answer::Status(s)) => Poll::Ready(Ok(s)),
            Some(Answer::Error) => Poll::Ready(Err(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )))),
            Some(Answer::Timeout) => Poll::Ready(Err(Box::new(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))),
        }
    }
}

impl Service<()> for Slot {
    type Response = u16;
    type Error = BoxError;
    type Future = SlotFuture;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: ()) -> SlotFuture {
        SlotFuture
    }
}

/// The HTTP preset's breaker classifier on statuses; a full bulkhead is ignored, as harden's
/// default does; every other error is a failure.
#[derive(Debug, Clone, Copy)]
struct SimClassifier(HttpBreakerClassifier);

impl BreakerClassifier<u16, BoxError> for SimClassifier {
    fn classify(&self, result: Result<&u16, &BoxError>) -> Outcome {
        match result {
            Ok(s) => StatusCode::from_u16(*s).map_or(Outcome::Failure, |s| self.0.status(s)),
            Err(e) if e.is::<BulkheadFull>() => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        }
    }
}

type Svc = CircuitBreakerService<Bulkhead<Slot>, SimClassifier>;
type AttemptFuture = <Svc as Service<()>>::Future;

/// One client: its own breaker, bulkhead and budget.
struct Client {
    breaker: CircuitBreaker,
    svc: Svc,
    budget: Option<RetryBudget>,
}

/// Lists the calls that start in a tick, as `(client, tag)`, given the run's generator.
pub type Arrivals<'a> = dyn FnMut(u64, &mut fastrand::Rng, &mut Vec<(u32, u64)>) + 'a;

/// A breaker transition, at a tick.
pub type Transition = (u64, State);

struct Call {
    client: u32,
    tag: u64,
    start: u64,
    attempts: u32,
    attempt: Option<usize>,
    generation: u32,
    live: bool,
}

struct Attempt {
    future: AttemptFuture,
    call: usize,
    generation: u32,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Reply {
        attempt: usize,
        generation: u32,
        answer: ReplyAnswer,
    },
    Retry {
        call: usize,
        generation: u32,
    },
    Deadline {
        call: usize,
        generation: u32,
    },
}

#[derive(Debug, Clone, Copy)]
enum ReplyAnswer {
    Status(u16),
    Error,
    Timeout,
}

const RING: usize = 1 << 17;

/// Events by tick: a ring of 2^17 ticks (131 s) and a spill-over for later ones.
struct Calendar {
    ring: Vec<Vec<Event>>,
    later: std::collections::BTreeMap<u64, Vec<Event>>,
}

impl Calendar {
    fn new() -> Self {
        Calendar {
            ring: (0..RING).map(|_| Vec::new()).collect(),
            later: std::collections::BTreeMap::new(),
        }
    }

    fn push(&mut self, now: u64, at: u64, event: Event) {
        let at = at.max(now);
        if at - now < RING as u64 {
            self.ring[(at % RING as u64) as usize].push(event);
        } else {
            self.later.entry(at).or_default().push(event);
        }
    }

    /// Moves spilled events of tick `t` into the ring.
    fn promote(&mut self, t: u64) {
        if let Some(events) = self.later.remove(&t) {
            self.ring[(t % RING as u64) as usize].extend(events);
        }
    }
}

/// A sample of a run, taken once per simulated second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Second {
    /// Attempts sent upstream during the second.
    pub offered: u64,
    /// Calls that ended with an answer during the second.
    pub goodput: u64,
    /// Clients whose breaker is open or half-open at the end of the second.
    pub open: u64,
}

/// A simulation: clients, an upstream, the calendar, a seeded generator.
pub struct Sim<U> {
    clients: Vec<Client>,
    settings: StackSettings,
    upstream: U,
    calendar: Calendar,
    calls: Vec<Call>,
    free_calls: Vec<usize>,
    attempts: Vec<Option<Attempt>>,
    free_attempts: Vec<usize>,
    rng: fastrand::Rng,
    now: u64,
    clock_at: u64,
    backoff: Backoff,
    retry_classifier: HttpRetryClassifier,
    no_headers: HeaderMap,
    /// Counts of the run.
    pub tally: Tally,
    /// One entry per simulated second.
    pub seconds: Vec<Second>,
    current: Second,
    transitions: Arc<Mutex<Vec<Transition>>>,
    clock_tick: Arc<AtomicU64>,
}

impl<U> std::fmt::Debug for Sim<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("clients", &self.clients.len())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl<U: Upstream> Sim<U> {
    /// `clients` clients on `settings` calling `upstream`. Must be created inside the paused
    /// runtime the run uses (harden's clocks start there). Transitions are recorded for the
    /// first client only (`transitions`).
    ///
    /// # Errors
    ///
    /// harden's [`ConfigError`] for settings outside their range.
    pub fn new(
        settings: &StackSettings,
        clients: usize,
        upstream: U,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        settings.validate()?;
        let transitions: Arc<Mutex<Vec<Transition>>> = Arc::default();
        let clock_tick = Arc::new(AtomicU64::new(0));
        let mut list = Vec::with_capacity(clients);
        for i in 0..clients {
            let mut builder = settings.breaker_builder();
            if i == 0 {
                let log = transitions.clone();
                let tick = clock_tick.clone();
                builder = builder.on_event(move |event| {
                    if let EventKind::Transition { to, .. } = event.kind {
                        // Relaxed: written and read by the one thread that runs the simulation.
                        let at = tick.load(Ordering::Relaxed);
                        log.lock().expect("transitions").push((at, to));
                    }
                });
            }
            let breaker = builder.build()?;
            if !settings.breaker {
                breaker.disable();
            }
            let bulkhead = BulkheadLayer::try_new(settings.max_concurrent.unwrap_or(1 << 30))?;
            let svc = breaker
                .layer()
                .with_classifier(SimClassifier(HttpBreakerClassifier::new()))
                .layer(bulkhead.layer(Slot));
            let budget = if settings.budget {
                Some(settings.budget_builder().build()?)
            } else {
                None
            };
            list.push(Client {
                breaker,
                svc,
                budget,
            });
        }
        Ok(Sim {
            clients: list,
            backoff: settings.backoff(),
            settings: settings.clone(),
            upstream,
            calendar: Calendar::new(),
            calls: Vec::new(),
            free_calls: Vec::new(),
            attempts: Vec::new(),
            free_attempts: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            now: 0,
            clock_at: 0,
            retry_classifier: HttpRetryClassifier::new(),
            no_headers: HeaderMap::new(),
            tally: Tally::new(),
            seconds: Vec::new(),
            current: Second::default(),
            transitions,
            clock_tick,
        })
    }

    /// The current tick.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The upstream.
    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// The first client's breaker transitions so far.
    pub fn transitions(&self) -> Vec<Transition> {
        self.transitions.lock().expect("transitions").clone()
    }

    /// Clients whose breaker is open or half-open now.
    pub fn open_breakers(&self) -> u64 {
        self.clients
            .iter()
            .filter(|c| matches!(c.breaker.state(), State::Open | State::HalfOpen))
            .count() as u64
    }

    /// Moves the simulation (and harden's clock) to tick `to`, running every event due on the
    /// way; `arrivals(tick, rng)` lists the calls that start in a tick as `(client, tag)`.
    pub async fn run_until(&mut self, to: u64, arrivals: &mut Arrivals<'_>) {
        let mut new = Vec::new();
        let mut events = Vec::new();
        while self.now < to {
            let next = self.now + 1;
            self.now = next;
            // Relaxed: only this thread reads it (in the breaker's event listener).
            self.clock_tick.store(next, Ordering::Relaxed);
            self.calendar.promote(next);
            new.clear();
            arrivals(next, &mut self.rng, &mut new);
            let slot = (next % RING as u64) as usize;
            if !new.is_empty() || !self.calendar.ring[slot].is_empty() {
                // harden reads its clock only while the engine calls into it: move the clock
                // only for ticks with work, in one step.
                let behind = next - self.clock_at;
                tokio::time::advance(TICK * u32::try_from(behind).unwrap_or(u32::MAX)).await;
                self.clock_at = next;
            }
            for &(client, tag) in &new {
                self.arrive(client, tag);
            }
            loop {
                std::mem::swap(&mut events, &mut self.calendar.ring[slot]);
                if events.is_empty() {
                    break;
                }
                for event in events.drain(..) {
                    self.handle(event);
                }
            }
            if next % 1000 == 0 {
                self.current.open = self.open_breakers();
                self.seconds.push(std::mem::take(&mut self.current));
            }
        }
    }

    fn arrive(&mut self, client: u32, tag: u64) {
        self.tally.calls += 1;
        if let Some(budget) = &self.clients[client as usize].budget {
            budget.deposit();
        }
        let call = Call {
            client,
            tag,
            start: self.now,
            attempts: 0,
            attempt: None,
            generation: 0,
            live: true,
        };
        let id = match self.free_calls.pop() {
            Some(id) => {
                let generation = self.calls[id].generation.wrapping_add(1);
                self.calls[id] = Call { generation, ..call };
                id
            }
            None => {
                self.calls.push(call);
                self.calls.len() - 1
            }
        };
        if let Some(total) = self.settings.total_timeout {
            let generation = self.calls[id].generation;
            self.calendar.push(
                self.now,
                self.now + ticks(total),
                Event::Deadline {
                    call: id,
                    generation,
                },
            );
        }
        self.attempt(id);
    }

    fn attempt(&mut self, id: usize) {
        let now = self.now;
        let call = &mut self.calls[id];
        call.attempts += 1;
        let (client, tag, attempt_no) = (call.client, call.tag, call.attempts);
        let svc = &mut self.clients[client as usize].svc;
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {}
            // The slot and the bulkhead are always ready; the breaker never fails here.
            _ => {
                self.end(id, End::Shed);
                return;
            }
        }
        let mut future = svc.call(());
        ANSWER.with(|a| a.set(None));
        if Pin::new(&mut future).poll(&mut cx).is_ready() {
            // Rejected by the breaker or the bulkhead: nothing was sent.
            self.end(id, End::Shed);
            return;
        }
        self.tally.upstream += 1;
        self.current.offered += 1;
        if attempt_no > 1 {
            self.tally.retries += 1;
        }
        let reply = self.upstream.send(now, tag, attempt_no, &mut self.rng);
        let slot = match self.free_attempts.pop() {
            Some(slot) => slot,
            None => {
                self.attempts.push(None);
                self.attempts.len() - 1
            }
        };
        let generation = self.calls[id].generation;
        self.attempts[slot] = Some(Attempt {
            future,
            call: id,
            generation,
        });
        self.calls[id].attempt = Some(slot);
        let timeout = self.settings.attempt_timeout.map(ticks);
        let (after, answer) = match reply {
            Reply::Status(s, after) => (Some(after), ReplyAnswer::Status(s)),
            Reply::Error(after) => (Some(after), ReplyAnswer::Error),
            Reply::Hang => (None, ReplyAnswer::Timeout),
        };
        let (after, answer) = match (after, timeout) {
            (Some(a), Some(t)) if a >= t => (Some(t), ReplyAnswer::Timeout),
            (None, Some(t)) => (Some(t), ReplyAnswer::Timeout),
            (a, _) => (a, answer),
        };
        if let Some(after) = after {
            self.calendar.push(
                now,
                now + after.max(1),
                Event::Reply {
                    attempt: slot,
                    generation,
                    answer,
                },
            );
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Reply {
                attempt,
                generation,
                answer,
            } => self.reply(attempt, generation, answer),
            Event::Retry { call, generation } => {
                let c = &self.calls[call];
                if c.live && c.generation == generation {
                    self.attempt(call);
                }
            }
            Event::Deadline { call, generation } => {
                let c = &self.calls[call];
                if c.live && c.generation == generation {
                    // The total timeout drops the attempt in flight: harden records nothing.
                    if let Some(slot) = self.calls[call].attempt.take() {
                        self.attempts[slot] = None;
                        self.free_attempts.push(slot);
                    }
                    self.end(call, End::Failure);
                }
            }
        }
    }

    fn reply(&mut self, slot: usize, generation: u32, answer: ReplyAnswer) {
        let Some(attempt) = self.attempts[slot].as_mut() else {
            return;
        };
        let id = attempt.call;
        if attempt.generation != generation || self.calls[id].attempt != Some(slot) {
            return;
        }
        let mut attempt = self.attempts[slot].take().expect("attempt");
        self.free_attempts.push(slot);
        self.calls[id].attempt = None;
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        ANSWER.with(|a| {
            a.set(Some(match answer {
                ReplyAnswer::Status(s) => Answer::Status(s),
                ReplyAnswer::Error => Answer::Error,
                ReplyAnswer::Timeout => Answer::Timeout,
            }))
        });
        let polled = Pin::new(&mut attempt.future).poll(&mut cx);
        ANSWER.with(|a| a.set(None));
        drop(attempt);
        let (decision, end) = match polled {
            Poll::Ready(Ok(status)) => {
                let decision = match StatusCode::from_u16(status) {
                    Ok(s) if s.is_success() => RetryDecision::DoNotRetry,
                    Ok(s) => self.retry_classifier.response(s, &self.no_headers),
                    Err(_) => RetryDecision::DoNotRetry,
                };
                let failed = status >= 500 || status == 408 || status == 429;
                (decision, if failed { End::Failure } else { End::Answer })
            }
            Poll::Ready(Err(_)) => (RetryDecision::Retry, End::Failure),
            Poll::Pending => (RetryDecision::DoNotRetry, End::Failure),
        };
        let call = &self.calls[id];
        let retry = !matches!(decision, RetryDecision::DoNotRetry)
            && call.attempts < self.settings.max_attempts;
        if !retry {
            self.end(id, end);
            return;
        }
        if let Some(budget) = &self.clients[call.client as usize].budget {
            if !budget.try_withdraw() {
                self.tally.budget_refused += 1;
                self.end(id, end);
                return;
            }
        }
        let d = self.backoff.delay(call.attempts);
        let delay = if self.settings.jitter {
            let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(self.rng.u64(0..=nanos))
        } else {
            d
        };
        let generation = call.generation;
        self.calendar.push(
            self.now,
            self.now + ticks(delay).max(1),
            Event::Retry {
                call: id,
                generation,
            },
        );
    }

    fn end(&mut self, id: usize, end: End) {
        let call = &mut self.calls[id];
        if !call.live {
            return;
        }
        call.live = false;
        let latency = (self.now - call.start) as usize;
        self.tally.latency[latency.min(LATENCY_BINS - 1)] += 1;
        match end {
            End::Answer => {
                self.tally.answers += 1;
                self.current.goodput += 1;
            }
            End::Failure => self.tally.failures += 1,
            End::Shed => self.tally.shed += 1,
        }
        self.free_calls.push(id);
    }
}

/// A current-thread tokio runtime with paused time: harden's clock (feature `test-util`)
/// follows it, and the engine moves it forward one tick at a time.
///
/// Runs block on it: call them from plain threads, not from inside an async task.
///
/// # Errors
///
/// If the operating system refuses to start the runtime.
pub fn paused_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
}
