//! What is retried, how often, how far apart, and how requests are replayed.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use super::backoff::Backoff;
use super::budget::RetryBudget;
use super::trace::Trace;
use crate::error::is_rejection;
use crate::metrics;
use crate::{BoxError, ConfigError};

/// Default number of attempts, the first call included: 3.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Largest accepted `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;
/// Default name, the `retry` label of metrics: `"retry"`.
pub const DEFAULT_NAME: &str = "retry";

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryDecision {
    /// Return this outcome to the caller.
    DoNotRetry,
    /// Retry after the policy's backoff.
    Retry,
    /// Retry after this delay, which the server asked for (e.g. an HTTP `Retry-After`); capped
    /// by the backoff's `max_delay`, not jittered.
    RetryAfter(Duration),
}

/// Decides whether an outcome is retried. Errors arrive boxed, as [`BoxError`].
///
/// Whatever a classifier says, harden's own rejections
/// ([`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen),
/// [`BulkheadFull`](crate::bulkhead::error::BulkheadFull)) are never retried.
pub trait RetryClassifier<Res> {
    /// The decision for one attempt's outcome.
    fn classify(&self, result: Result<&Res, &BoxError>) -> RetryDecision;

    /// Names an attempt's outcome in the retry's `tracing` events (called only when a
    /// subscriber listens to them). By default `response` for a response and `error: ` and the
    /// error's message for an error; the HTTP classifier names the status.
    fn describe(&self, result: Result<&Res, &BoxError>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match result {
            Ok(_) => f.write_str("response"),
            Err(e) => write!(f, "error: {e}"),
        }
    }

    /// Sees the response the retry returns and the attempts it took, the first included. Does
    /// nothing by default; the HTTP classifier puts [`Attempts`](super::Attempts) in the
    /// extensions of a response that took more than one attempt.
    #[inline(always)]
    fn returned(&self, response: &mut Res, attempts: u32) {
        let _ = (response, attempts);
    }
}

/// Retry every error except harden's rejections; never retry a response.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRetryClassifier;

impl<Res> RetryClassifier<Res> for DefaultRetryClassifier {
    #[inline]
    fn classify(&self, result: Result<&Res, &BoxError>) -> RetryDecision {
        match result {
            Ok(_) => RetryDecision::DoNotRetry,
            Err(e) if is_rejection(&**e) => RetryDecision::DoNotRetry,
            Err(_) => RetryDecision::Retry,
        }
    }
}

/// A classifier made from a function; see [`RetryPolicyBuilder::retry_on`].
#[derive(Clone, Copy)]
pub struct RetryClassifierFn<F> {
    f: F,
}

impl<F> fmt::Debug for RetryClassifierFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryClassifierFn").finish_non_exhaustive()
    }
}

impl<F, Res> RetryClassifier<Res> for RetryClassifierFn<F>
where
    F: Fn(Result<&Res, &BoxError>) -> RetryDecision,
{
    #[inline]
    fn classify(&self, result: Result<&Res, &BoxError>) -> RetryDecision {
        (self.f)(result)
    }
}

/// Makes the copy of a request that a retry sends; `None` means "send once, do not retry".
pub trait CopyRequest<Req> {
    /// A copy of `req` for a later attempt, or `None` if it cannot be replayed.
    fn copy_request(&self, req: &Req) -> Option<Req>;
}

/// Replays requests by cloning them (the default; needs `Req: Clone`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRequest;

impl<Req: Clone> CopyRequest<Req> for CloneRequest {
    #[inline]
    fn copy_request(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// A request copier made from a function; see [`RetryPolicyBuilder::copy_request_with`].
#[derive(Clone, Copy)]
pub struct CopyWith<F> {
    f: F,
}

impl<F> fmt::Debug for CopyWith<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyWith").finish_non_exhaustive()
    }
}

impl<F, Req> CopyRequest<Req> for CopyWith<F>
where
    F: Fn(&Req) -> Option<Req>,
{
    #[inline]
    fn copy_request(&self, req: &Req) -> Option<Req> {
        (self.f)(req)
    }
}

#[derive(Debug, Clone)]
enum BudgetChoice {
    Default,
    Shared(RetryBudget),
    None,
}

/// How a [`RetryLayer`](super::RetryLayer) retries: attempts, backoff, budget, classifier,
/// request copier.
///
/// `C` is the [`RetryClassifier`], `H` the [`CopyRequest`] hook. Cloning a policy shares its
/// budget.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | `max_attempts` (the first call included) | [`DEFAULT_MAX_ATTEMPTS`] = 3, accepted [1, [`MAX_ATTEMPTS_LIMIT`]] |
/// | `backoff` | [`Backoff::new`]: exponential from [`DEFAULT_INITIAL_DELAY`](super::DEFAULT_INITIAL_DELAY) = 100 ms, × [`DEFAULT_MULTIPLIER`](super::DEFAULT_MULTIPLIER) = 2 |
/// | `jitter` | [`DEFAULT_JITTER`](super::DEFAULT_JITTER) = [`Jitter::Full`](super::Jitter::Full) |
/// | `max_delay` | [`DEFAULT_MAX_DELAY`](super::DEFAULT_MAX_DELAY) = 10 s |
/// | `budget` | a new [`RetryBudget::new`] per `build()` (20 % of requests + 10/s, burst 10) |
/// | classifier | [`DefaultRetryClassifier`]: every error except harden's rejections |
/// | request copy | [`CloneRequest`] |
/// | `name` | [`DEFAULT_NAME`] = `"retry"` |
/// | `total_timeout` (deadline for server-requested delays) | none; set by [`ResilienceLayerBuilder`](crate::ResilienceLayerBuilder) to its total timeout |
pub struct RetryPolicy<C = DefaultRetryClassifier, H = CloneRequest> {
    pub(crate) max_attempts: u32,
    /// The deadline a server-requested delay is judged against, from the call's start; `None`:
    /// no deadline known.
    pub(crate) total_timeout: Option<Duration>,
    /// Whether the retry also ends the call at `total_timeout` (see [`EnforceTotal`]).
    pub(crate) enforce_total: EnforceTotal,
    /// The total timeout the retry ends the call at minus `total_timeout`, in nanoseconds: zero
    /// unless the policy's own `total_timeout` differs from a stack's it enforces.
    pub(crate) total_skew: i64,
    /// Whether the retry also ends each call at the deadline in scope when it is made (see
    /// `crate::deadline`), as a `DeadlineCap` around it would: what the HTTP preset does.
    pub(crate) caps_scope: bool,
    pub(crate) clock: crate::clock::Clock,
    pub(crate) backoff: Backoff,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) classifier: C,
    pub(crate) copy: H,
    // An `Arc`, so that cloning a policy (a service stack per request) never copies a string.
    name: std::sync::Arc<str>,
    pub(crate) metrics: metrics::Handles<RetryMetrics>,
    /// Attempts and backoff as changed by `retune`, shared by every clone.
    tune: std::sync::Arc<super::tune::RetryTune>,
    /// The version (see `super::tune`) whose values this clone's `max_attempts` and `backoff`
    /// hold, with [`COLD`] set while its calls take the cold path: a subscriber wants the
    /// retry's span, or that is not yet asked.
    seen: u64,
}

/// The bit of [`RetryPolicy::seen`] no version reaches (2^63 changes).
const COLD: u64 = 1 << 63;

/// The retry's series, registered once per policy.
#[derive(Debug, Clone)]
pub(crate) struct RetryMetrics {
    pub(crate) done: metrics::Counter,
    pub(crate) retried: metrics::Counter,
    pub(crate) gave_up: metrics::Counter,
    pub(crate) budget_exhausted: metrics::Counter,
    /// `harden_timeouts_total` of the total timeout, when the retry enforces it.
    pub(crate) total_timeouts: Option<metrics::Counter>,
}

/// Whether a retry ends the call at its total timeout itself, instead of a timeout layer
/// around it: what a `ResilienceLayer` with a total timeout, the HTTP preset and the reqwest
/// client do, so that a call answered by its first attempt makes no timer for the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnforceTotal {
    /// A layer around the retry enforces it (or there is none).
    No,
    /// From the first poll that waits: no attempt timeout shorter than the total bounds the
    /// first attempt.
    Always,
    /// Only once a retry is due: while the first attempt is in flight its attempt timeout,
    /// shorter than the total and started no later, ends it first.
    AfterFirstAttempt,
}

impl RetryMetrics {
    fn register(name: &str, total: Option<&str>) -> metrics::Handles<RetryMetrics> {
        let name: std::sync::Arc<str> = name.into();
        let [done, retried, gave_up] = metrics::labels::RETRY_OUTCOMES;
        let attempts = |outcome| {
            metrics::counter2(
                metrics::names::RETRY_ATTEMPTS,
                "retry",
                &name,
                "outcome",
                outcome,
            )
        };
        metrics::handles(RetryMetrics {
            done: attempts(done),
            retried: attempts(retried),
            gave_up: attempts(gave_up),
            budget_exhausted: metrics::counter(
                metrics::names::RETRY_BUDGET_EXHAUSTED,
                "retry",
                &name,
            ),
            total_timeouts: total
                .map(|label| metrics::counter(metrics::names::TIMEOUTS, "timeout", &label.into())),
        })
    }
}

impl<C: Clone, H: Clone> Clone for RetryPolicy<C, H> {
    fn clone(&self) -> Self {
        // A clone starts from the live values, so one made per request (as the reqwest client
        // does) does not reload them on every call after a retune.
        let mut policy = RetryPolicy {
            max_attempts: self.max_attempts,
            total_timeout: self.total_timeout,
            enforce_total: self.enforce_total,
            total_skew: self.total_skew,
            caps_scope: self.caps_scope,
            clock: self.clock,
            backoff: self.backoff,
            budget: self.budget.clone(),
            classifier: self.classifier.clone(),
            copy: self.copy.clone(),
            name: self.name.clone(),
            metrics: self.metrics.clone(),
            tune: self.tune.clone(),
            seen: self.seen,
        };
        policy.refresh();
        policy
    }
}

impl<C, H> fmt::Debug for RetryPolicy<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("total_timeout", &self.total_timeout)
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new()
    }
}

impl RetryPolicy {
    /// The default policy (see `# Defaults`), with a budget of its own.
    pub fn new() -> Self {
        RetryPolicy::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the default retry policy is valid"))
    }

    /// A builder holding the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            total_timeout: None,
            backoff: Backoff::new(),
            budget: BudgetChoice::Default,
            classifier: DefaultRetryClassifier,
            copy: CloneRequest,
            name: Cow::Borrowed(DEFAULT_NAME),
        }
    }
}

impl<C: Clone, H: Clone> RetryPolicy<C, H> {
    /// A layer applying this policy; layers made from one policy share its budget.
    pub fn layer(&self) -> super::RetryLayer<C, H> {
        super::RetryLayer::new(self.clone())
    }
}

impl<C, H> RetryPolicy<C, H> {
    /// Attempts per request, the first call included (as last [retuned](Self::retune)).
    pub fn max_attempts(&self) -> u32 {
        self.live().0
    }

    /// The backoff between attempts (as last [retuned](Self::retune)).
    pub fn backoff(&self) -> Backoff {
        self.live().1
    }

    /// The attempts and backoff a call starts with now: this clone's, or those of a later
    /// [`retune`](Self::retune) it has not taken yet.
    #[inline(always)]
    pub(crate) fn live(&self) -> (u32, Backoff) {
        // The cold bit says only whether calls are traced: the values are current whatever it is.
        if super::tune::version() == self.seen & !COLD {
            (self.max_attempts, self.backoff)
        } else {
            self.tuned()
        }
    }

    #[cold]
    #[inline(never)]
    fn tuned(&self) -> (u32, Backoff) {
        self.tune.load()
    }

    /// Takes the values of the last [`retune`](Self::retune) if this clone has not yet.
    #[inline(always)]
    pub(crate) fn refresh(&mut self) {
        let version = super::tune::version();
        if version != self.seen {
            self.reload(version);
            // Whether calls are traced is asked by the next call.
            self.seen |= COLD;
        }
    }

    /// [`refresh`](Self::refresh) before a call, and the call's span if a subscriber wants it.
    /// A call that is not traced pays the version check `refresh` pays anyway, no more.
    #[inline(always)]
    pub(crate) fn start_call(&mut self) -> Trace {
        let version = super::tune::version();
        if version != self.seen {
            return self.start_cold(version);
        }
        Trace::off()
    }

    #[cold]
    #[inline(never)]
    fn start_cold(&mut self, version: u64) -> Trace {
        self.reload(version);
        match Trace::start(&self.name) {
            Some(trace) => {
                self.seen |= COLD;
                trace
            }
            None => Trace::off(),
        }
    }

    #[cold]
    #[inline(never)]
    fn reload(&mut self, version: u64) {
        if self.seen & !COLD != version {
            (self.max_attempts, self.backoff) = self.tune.load();
        }
        self.seen = version;
    }

    /// Changes the attempts and the backoff of the running policy, for every clone and every
    /// service made from it, without pausing calls. A call already started keeps the attempts
    /// and backoff it started with; calls from then on use the new ones. `total_timeout` and
    /// the budget are fixed when the policy is built.
    ///
    /// ```
    /// use std::time::Duration;
    /// use harden::retry::{RetryPolicy, RetrySettings};
    ///
    /// let policy = RetryPolicy::builder().build()?;
    /// let mut settings = RetrySettings::from(&policy);
    /// settings.max_attempts = 5;
    /// settings.backoff.initial_delay = Duration::from_millis(20);
    /// policy.retune(&settings)?;
    /// assert_eq!(policy.max_attempts(), 5);
    /// assert_eq!(RetrySettings::from(&policy), settings);
    /// # Ok::<(), harden::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_attempts` or `backoff.multiplier` outside its range, or
    /// `total_timeout` or `budget` when they differ from the policy's; the policy then keeps
    /// its settings.
    pub fn retune(&self, settings: &super::RetrySettings) -> Result<(), ConfigError> {
        let fixed = |field| {
            ConfigError::new(
                field,
                "is fixed when the policy is built: build a new policy to change it",
            )
        };
        if settings.total_timeout != self.total_timeout {
            return Err(fixed("total_timeout"));
        }
        if settings.budget != super::RetryBudgetSettings::from(self.budget()) {
            return Err(fixed("budget"));
        }
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&settings.max_attempts) {
            return Err(ConfigError::new(
                "max_attempts",
                format!(
                    "{} is outside [1, {MAX_ATTEMPTS_LIMIT}]",
                    settings.max_attempts
                ),
            ));
        }
        let backoff = settings.backoff.backoff()?;
        self.tune.set(settings.max_attempts, &backoff);
        tracing::info!(retry = %self.name, max_attempts = settings.max_attempts, ?backoff, "retry policy retuned");
        Ok(())
    }

    /// The budget, if any; shared by every clone of this policy.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// The name, used as the `retry` label of metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The total timeout server-requested delays are judged against, if known.
    pub fn total_timeout(&self) -> Option<Duration> {
        self.total_timeout
    }

    /// This policy, ending each call at its `total_timeout` itself (`attempt_timeout`: the
    /// attempts' own timeout, if any), counted under `label` in `harden_timeouts_total`. With
    /// an attempt timeout shorter than the total, the total's timer is made only when a retry
    /// is due; a call answered by its first attempt makes none.
    #[cfg(feature = "http")]
    pub(crate) fn enforcing_total_timeout(
        self,
        attempt_timeout: Option<Duration>,
        label: &str,
    ) -> Self {
        match self.total_timeout {
            Some(total) => self.enforcing(total, attempt_timeout, label),
            None => self,
        }
    }

    /// This policy inside a stack whose total timeout is `total` (what
    /// [`ResilienceLayerBuilder::build`](crate::stack::ResilienceLayerBuilder::build) does): it
    /// ends each call at `total` as [`enforcing_total_timeout`](Self::enforcing_total_timeout)
    /// does, and judges server-requested delays against its own `total_timeout` if it has one,
    /// else against `total`.
    pub(crate) fn enforcing_stack_total(
        mut self,
        total: Duration,
        attempt_timeout: Option<Duration>,
        label: &str,
    ) -> Self {
        match self.total_timeout {
            None => self.total_timeout = Some(total),
            Some(own) => {
                let nanos = |d: Duration| i128::from(crate::clock::duration_to_nanos(d));
                let skew = (nanos(total) - nanos(own)).clamp(i64::MIN.into(), i64::MAX.into());
                self.total_skew = i64::try_from(skew).unwrap_or(0);
            }
        }
        self.enforcing(total, attempt_timeout, label)
    }

    /// This policy ending each call also at the deadline in scope when the call is made, with
    /// [`Elapsed`](crate::timeout::error::Elapsed), and polling its attempts inside that scope
    /// (so later attempts see it wherever the call is driven); a call made after its deadline
    /// fails at once without an attempt. What a `DeadlineCap` around the retry does, without
    /// its layer.
    #[cfg(feature = "http")]
    pub(crate) fn capping_at_scope(mut self) -> Self {
        self.caps_scope = true;
        self
    }

    /// Ends each call at `total` (see [`EnforceTotal`]), counting it under `label`.
    fn enforcing(
        mut self,
        total: Duration,
        attempt_timeout: Option<Duration>,
        label: &str,
    ) -> Self {
        self.enforce_total = match attempt_timeout {
            Some(attempt) if attempt < total => EnforceTotal::AfterFirstAttempt,
            _ => EnforceTotal::Always,
        };
        self.metrics = RetryMetrics::register(&self.name, Some(label));
        self
    }
}

/// Builder of a [`RetryPolicy`]; see its `# Defaults`.
#[must_use]
pub struct RetryPolicyBuilder<C = DefaultRetryClassifier, H = CloneRequest> {
    max_attempts: u32,
    total_timeout: Option<Duration>,
    backoff: Backoff,
    budget: BudgetChoice,
    classifier: C,
    copy: H,
    name: Cow<'static, str>,
}

impl<C, H> fmt::Debug for RetryPolicyBuilder<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("total_timeout", &self.total_timeout)
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<C, H> RetryPolicyBuilder<C, H> {
    /// Attempts per request, the first call included; 1 never retries. Accepted
    /// [1, [`MAX_ATTEMPTS_LIMIT`]].
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The deadline of the whole call, counted from when the retry's future first waits (as a
    /// [`TimeoutLayer`](crate::timeout::TimeoutLayer) around it counts; a call whose attempts
    /// never waited counts from its first server-requested delay): a server-requested
    /// delay ([`RetryDecision::RetryAfter`], after the `max_delay` cap) longer than what is left
    /// of it fails the call at once with
    /// [`RetryAfterTooLong`](super::error::RetryAfterTooLong), carrying the server's delay
    /// (before the cap),
    /// instead of sleeping into the deadline. A [`RetryLayer`](super::RetryLayer) alone does
    /// not end the call at it (a total timeout layer around it would); inside a
    /// [`ResilienceLayerBuilder`](crate::ResilienceLayerBuilder) stack with a `total_timeout`,
    /// the retry ends the call at the stack's, and judges delays against this one if set, else
    /// against the stack's. Accepted (0, ∞).
    pub fn total_timeout(mut self, total_timeout: Duration) -> Self {
        self.total_timeout = Some(total_timeout);
        self
    }

    /// The backoff between attempts (shape, jitter and cap).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Replace the backoff's jitter.
    pub fn jitter(mut self, jitter: super::Jitter) -> Self {
        self.backoff = self.backoff.jitter(jitter);
        self
    }

    /// Replace the backoff's cap on every delay (server-requested ones included).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.backoff = self.backoff.max_delay(max_delay);
        self
    }

    /// Share this budget (e.g. with other policies calling the same upstream).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = BudgetChoice::Shared(budget);
        self
    }

    /// No budget: retries are limited by `max_attempts` only.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetChoice::None;
        self
    }

    /// The name, used as the `retry` label of metrics.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Decide what is retried with a function of the outcome.
    ///
    /// ```
    /// use std::time::Duration;
    /// use harden::retry::{RetryDecision, RetryPolicy};
    /// use harden::BoxError;
    ///
    /// // Retry 503s after the delay the server asked for (here: always 1 s), and every error.
    /// let policy = RetryPolicy::builder()
    ///     .retry_on(|result: Result<&u16, &BoxError>| match result {
    ///         Ok(503) => RetryDecision::RetryAfter(Duration::from_secs(1)),
    ///         Ok(_) => RetryDecision::DoNotRetry,
    ///         Err(_) => RetryDecision::Retry,
    ///     })
    ///     .build()?;
    /// # let _ = policy;
    /// # Ok::<(), harden::ConfigError>(())
    /// ```
    pub fn retry_on<F>(self, f: F) -> RetryPolicyBuilder<RetryClassifierFn<F>, H> {
        self.classifier(RetryClassifierFn { f })
    }

    /// Decide what is retried with a [`RetryClassifier`].
    pub fn classifier<C2>(self, classifier: C2) -> RetryPolicyBuilder<C2, H> {
        RetryPolicyBuilder {
            max_attempts: self.max_attempts,
            total_timeout: self.total_timeout,
            backoff: self.backoff,
            budget: self.budget,
            classifier,
            copy: self.copy,
            name: self.name,
        }
    }

    /// Copy requests for retries with a function, for requests that are not `Clone` (or whose
    /// body may not be replayable). `None` means "send this request once and do not retry it";
    /// the caller then gets the first attempt's outcome, never an error of its own.
    ///
    /// ```
    /// use harden::retry::RetryPolicy;
    ///
    /// struct Upload { body: Option<Vec<u8>> } // `None`: a stream that cannot be replayed
    ///
    /// let policy = RetryPolicy::builder()
    ///     .copy_request_with(|req: &Upload| req.body.clone().map(|b| Upload { body: Some(b) }))
    ///     .build()?;
    /// # let _ = policy;
    /// # Ok::<(), harden::ConfigError>(())
    /// ```
    pub fn copy_request_with<F>(self, f: F) -> RetryPolicyBuilder<C, CopyWith<F>> {
        self.copy_request(CopyWith { f })
    }

    /// Copy requests for retries with a [`CopyRequest`] hook, such as
    /// `harden::http::HttpReplay` (idempotent methods only, bodies that can be replayed).
    pub fn copy_request<H2>(self, copy: H2) -> RetryPolicyBuilder<C, H2> {
        RetryPolicyBuilder {
            max_attempts: self.max_attempts,
            total_timeout: self.total_timeout,
            backoff: self.backoff,
            budget: self.budget,
            classifier: self.classifier,
            copy,
            name: self.name,
        }
    }

    /// Validate and create the policy.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_attempts`, `total_timeout` or `backoff.multiplier` when
    /// outside the accepted range.
    pub fn build(self) -> Result<RetryPolicy<C, H>, ConfigError> {
        if self.total_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new("total_timeout", "0 is outside (0, ∞)"));
        }
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return Err(ConfigError::new(
                "max_attempts",
                format!("{} is outside [1, {MAX_ATTEMPTS_LIMIT}]", self.max_attempts),
            ));
        }
        self.backoff.validate()?;
        let budget = match self.budget {
            BudgetChoice::Default => Some(RetryBudget::new()),
            BudgetChoice::Shared(b) => Some(b),
            BudgetChoice::None => None,
        };
        super::trace::register();
        Ok(RetryPolicy {
            max_attempts: self.max_attempts,
            total_timeout: self.total_timeout,
            enforce_total: EnforceTotal::No,
            total_skew: 0,
            caps_scope: false,
            clock: crate::clock::Clock::new(),
            backoff: self.backoff,
            budget,
            classifier: self.classifier,
            copy: self.copy,
            metrics: RetryMetrics::register(&self.name, None),
            name: self.name.into(),
            tune: std::sync::Arc::new(super::tune::RetryTune::new(
                self.max_attempts,
                &self.backoff,
            )),
            // The values are the current ones as of this version (registered above, so the
            // probe's first interest is counted); the first call still asks whether it is traced.
            seen: super::tune::version() | COLD,
        })
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use crate::bulkhead::error::BulkheadFull;
    use crate::circuit_breaker::error::CircuitOpen;

    #[test]
    fn default_classifier_never_retries_rejections_or_responses() {
        let c = DefaultRetryClassifier;
        let open: BoxError = Box::new(CircuitOpen::new(Some(Duration::from_secs(1))));
        let full: BoxError = Box::new(BulkheadFull::new());
        let other: BoxError = "boom".into();
        assert_eq!(
            RetryClassifier::<()>::classify(&c, Err(&open)),
            RetryDecision::DoNotRetry
        );
        assert_eq!(
            RetryClassifier::<()>::classify(&c, Err(&full)),
            RetryDecision::DoNotRetry
        );
        assert_eq!(
            RetryClassifier::<()>::classify(&c, Err(&other)),
            RetryDecision::Retry
        );
        assert_eq!(c.classify(Ok(&())), RetryDecision::DoNotRetry);
    }

    #[test]
    fn bad_config_names_the_field() {
        for n in [0, MAX_ATTEMPTS_LIMIT + 1] {
            let e = RetryPolicy::builder().max_attempts(n).build().unwrap_err();
            assert_eq!(e.field(), "max_attempts");
        }
        let e = RetryPolicy::builder()
            .backoff(Backoff::exponential(Duration::ZERO, 0.9))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "backoff.multiplier");
    }

    #[test]
    fn clones_share_the_budget() {
        let p = RetryPolicy::builder()
            .budget(
                RetryBudget::builder()
                    .min_retries_per_sec(0)
                    .burst(0)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let q = p.clone();
        assert!(!p.budget().unwrap().try_withdraw());
        assert_eq!(q.budget().unwrap().exhausted(), 1);
        assert!(RetryPolicy::builder()
            .no_budget()
            .build()
            .unwrap()
            .budget()
            .is_none());
    }
}
