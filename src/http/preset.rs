//! The standard stack with HTTP meaning and documented defaults.

use std::borrow::Cow;
use std::time::Duration;

use tower_layer::{Identity, Layer};

use super::classify::{HttpBreakerClassifier, HttpRetryClassifier};
use super::replay::HttpReplay;
use super::retry_after::DEFAULT_RETRY_AFTER_CAP;
use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::{self, CircuitBreaker, CircuitBreakerLayer};
use crate::deadline::{DeadlineHeader, PropagateDeadline, PropagateDeadlineLayer};
use crate::retry::{Backoff, Jitter, RetryBudget, RetryLayer, RetryPolicy};
use crate::stack::{
    IgnoreBulkheadFull, OptionalBulkheadLayer, OptionalTimeoutLayer, TOTAL_TIMEOUT_NAME,
};
use crate::{ConfigError, ResilienceLayer};

/// Default name of the preset's breaker and retry (metrics labels): `"http"`.
pub const DEFAULT_NAME: &str = "http";
/// Default total timeout, retries and backoff included: 30 s (.NET standard handler's
/// `TotalRequestTimeout`).
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout of each attempt: 10 s (.NET standard handler's `AttemptTimeout`).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default attempts, the first included: 4 (.NET standard handler's `MaxRetryAttempts` = 3).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default first backoff delay: 2 s, growing ×2 with full jitter (.NET standard handler's
/// `Delay`, exponential, jittered).
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(2);
/// Default cap on every delay, `Retry-After` included: [`DEFAULT_RETRY_AFTER_CAP`] = 300 s
/// (Envoy's).
pub const DEFAULT_MAX_DELAY: Duration = DEFAULT_RETRY_AFTER_CAP;
/// Default failure percentage that opens the breaker: 10 % (.NET standard handler's
/// `FailureRatio` = 0.1).
pub const DEFAULT_ERROR_THRESHOLD_PERCENTAGE: f64 = 10.0;
/// Default calls in the window before the breaker judges: 100 (.NET's `MinimumThroughput`).
pub const DEFAULT_VOLUME_THRESHOLD: u32 = 100;
/// Default breaker window: 30 s (.NET's `SamplingDuration`), in 10 buckets.
pub const DEFAULT_ROLLING_WINDOW: Duration = Duration::from_secs(30);
/// Default time the breaker stays open: 5 s (.NET's `BreakDuration`).
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bulkhead: 1000 concurrent attempts (.NET standard handler's concurrency limiter
/// `PermitLimit`, no queue).
pub const DEFAULT_MAX_CONCURRENT: usize = 1000;

/// The layer an [`HttpLayerBuilder`] builds: the standard stack with HTTP classifiers and replay.
/// `breaker()` is its circuit breaker.
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct HttpLayer {
    /// Ended by the retry itself (its policy's `enforcing_total_timeout`), not by a layer.
    total_timeout: Option<Duration>,
    inner: HttpResilienceLayer,
    breaker: CircuitBreaker,
    propagate: PropagateDeadlineLayer,
}

/// The [`ResilienceLayer`] inside an [`HttpLayer`]: the attempt timeout and the bulkhead can be
/// turned off at run time (`None`), so they are the stack's optional parts. The total timeout is
/// the retry's: a call answered by its first attempt, which the attempt timeout bounds, makes no
/// timer for the total.
type HttpResilienceLayer = ResilienceLayer<
    Identity,
    Identity,
    RetryLayer<HttpRetryClassifier, HttpReplay>,
    CircuitBreakerLayer<IgnoreBulkheadFull<HttpBreakerClassifier>>,
    OptionalBulkheadLayer,
    OptionalTimeoutLayer,
>;

impl std::fmt::Debug for HttpLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLayer")
            .field("total_timeout", &self.total_timeout)
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .field("propagate", &self.propagate)
            .finish()
    }
}

impl HttpLayer {
    /// A builder of the preset, on its defaults (see [`HttpLayerBuilder`]'s `# Defaults`).
    pub fn builder() -> HttpLayerBuilder {
        HttpLayerBuilder::new()
    }

    /// The preset's circuit breaker (state, stats, manual control).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

/// The stack ends at the deadline in scope (its retry does, as a
/// [`DeadlineCap`](crate::deadline::DeadlineCap) around it would) and sends what is left of it
/// with each attempt ([`PropagateDeadline`], innermost); see [`crate::deadline`].
impl<S> Layer<S> for HttpLayer
where
    HttpResilienceLayer: Layer<PropagateDeadline<S>>,
{
    type Service = <HttpResilienceLayer as Layer<PropagateDeadline<S>>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.inner.layer(self.propagate.layer(inner))
    }
}

/// The standard stack for an HTTP client, on documented defaults: HTTP classification for the
/// breaker and the retry, `Retry-After`, idempotency and replay, a retry budget, timeouts.
///
/// # Defaults
///
/// | setting | default | anchor |
/// |---|---|---|
/// | `total_timeout` | [`DEFAULT_TOTAL_TIMEOUT`] = 30 s | .NET standard handler |
/// | `attempt_timeout` | [`DEFAULT_ATTEMPT_TIMEOUT`] = 10 s | .NET |
/// | `max_attempts` | [`DEFAULT_MAX_ATTEMPTS`] = 4 (3 retries) | .NET |
/// | `backoff` | exponential from [`DEFAULT_INITIAL_DELAY`] = 2 s, ×2, full jitter, capped at [`DEFAULT_MAX_DELAY`] = 300 s | .NET; Envoy's `Retry-After` cap |
/// | `budget` | a new [`RetryBudget::new`]: 20 % of requests + 10/s, at most 10 saved up | Envoy's `budget_percent` 20 %, Finagle |
/// | retry classifier | [`HttpRetryClassifier::new`]: 502/503/504/408/429 and transport errors, `Retry-After` | .NET, reqwest-retry |
/// | replay | [`HttpReplay::new`]: idempotent methods or `Idempotency-Key`, replayable bodies | RFC 9110 |
/// | breaker | [`DEFAULT_ERROR_THRESHOLD_PERCENTAGE`] = 10 % over [`DEFAULT_VOLUME_THRESHOLD`] = 100 calls in [`DEFAULT_ROLLING_WINDOW`] = 30 s, open for [`DEFAULT_RESET_TIMEOUT`] = 5 s | .NET |
/// | breaker classifier | [`HttpBreakerClassifier::new`]: 5xx/408/errors fail, 429 ignored | .NET, Envoy |
/// | `bulkhead` | [`DEFAULT_MAX_CONCURRENT`] = 1000 | .NET |
/// | `name` | [`DEFAULT_NAME`] = `"http"` | |
/// | `deadline_header` (what is left of the deadline in scope, sent with each attempt) | [`DEFAULT_HEADER`](crate::deadline::DEFAULT_HEADER) = `x-envoy-expected-rq-timeout-ms` | Envoy, Istio |
///
/// The breaker's values are .NET's, checked with `harden-sim replay` (the workspace's
/// simulator, on harden's own breaker) on `sim/examples/slowdown.toml` — a slowdown and a burst
/// of 503s after minutes of healthy traffic — at 5, 20 and 200 calls/s against a grid of
/// thresholds, volumes, windows and probe counts: no candidate was better at every rate (a 10 s
/// window opens sooner at 200 calls/s, but with 100 calls never opens at 5 calls/s), so they
/// stay; the numbers are in BENCHMARKS.md.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct HttpLayerBuilder {
    pub(crate) deadline_header: DeadlineHeader,
    pub(crate) name: Cow<'static, str>,
    pub(crate) total_timeout: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) budget: Option<Option<RetryBudget>>,
    pub(crate) breaker: circuit_breaker::CircuitBreakerBuilder,
    pub(crate) max_concurrent: Option<usize>,
    pub(crate) retry_classifier: HttpRetryClassifier,
    pub(crate) breaker_classifier: HttpBreakerClassifier,
    pub(crate) replay: HttpReplay,
}

impl Default for HttpLayerBuilder {
    fn default() -> Self {
        HttpLayerBuilder::new()
    }
}

impl HttpLayerBuilder {
    /// The preset on its defaults (see `# Defaults`).
    pub fn new() -> Self {
        HttpLayerBuilder {
            deadline_header: DeadlineHeader::Millis(crate::deadline::DEFAULT_HEADER),
            name: Cow::Borrowed(DEFAULT_NAME),
            total_timeout: Some(DEFAULT_TOTAL_TIMEOUT),
            attempt_timeout: Some(DEFAULT_ATTEMPT_TIMEOUT),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::exponential(DEFAULT_INITIAL_DELAY, 2.0)
                .jitter(Jitter::Full)
                .max_delay(DEFAULT_MAX_DELAY),
            budget: None,
            breaker: HttpLayerBuilder::default_breaker(),
            max_concurrent: Some(DEFAULT_MAX_CONCURRENT),
            retry_classifier: HttpRetryClassifier::new(),
            breaker_classifier: HttpBreakerClassifier::new(),
            replay: HttpReplay::new(),
        }
    }

    /// The preset's breaker settings, to adjust and pass back to [`breaker`](Self::breaker).
    pub fn default_breaker() -> circuit_breaker::CircuitBreakerBuilder {
        CircuitBreaker::builder()
            .name(DEFAULT_NAME)
            .error_threshold_percentage(DEFAULT_ERROR_THRESHOLD_PERCENTAGE)
            .volume_threshold(DEFAULT_VOLUME_THRESHOLD)
            .rolling_window(DEFAULT_ROLLING_WINDOW, 10)
            .reset_timeout(DEFAULT_RESET_TIMEOUT)
    }

    /// The name of the breaker and the retry (metrics labels); the breaker builder's own name is
    /// replaced by it.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The header that carries what is left of the deadline in scope to the upstream, with each
    /// attempt (e.g. [`DeadlineHeader::GrpcTimeout`]); see [`crate::deadline`].
    pub fn deadline_header(mut self, header: DeadlineHeader) -> Self {
        self.deadline_header = header;
        self
    }

    /// Bounds the whole call (`None`: no bound; then `Retry-After` is only capped). A deadline
    /// in scope ([`Deadline::current`](crate::deadline::Deadline::current)) bounds it further.
    pub fn total_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.total_timeout = timeout.into();
        self
    }

    /// Bounds each attempt (`None`: no bound).
    pub fn attempt_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.attempt_timeout = timeout.into();
        self
    }

    /// Attempts per request, the first included; 1 turns retries off.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The backoff between attempts; its `max_delay` also caps `Retry-After`.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Share this retry budget (e.g. between clients of one upstream).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(Some(budget));
        self
    }

    /// No retry budget: retries are bounded by `max_attempts` only.
    pub fn no_budget(mut self) -> Self {
        self.budget = Some(None);
        self
    }

    /// The breaker's settings (start from [`default_breaker`](Self::default_breaker)).
    pub fn breaker(mut self, breaker: circuit_breaker::CircuitBreakerBuilder) -> Self {
        self.breaker = breaker;
        self
    }

    /// The bulkhead's limit (`None`: no bulkhead).
    pub fn bulkhead(mut self, max_concurrent: impl Into<Option<usize>>) -> Self {
        self.max_concurrent = max_concurrent.into();
        self
    }

    /// The retry's classifier (e.g. `HttpRetryClassifier::new().too_many_requests(false)`).
    pub fn retry_classifier(mut self, classifier: HttpRetryClassifier) -> Self {
        self.retry_classifier = classifier;
        self
    }

    /// The breaker's classifier (e.g. `HttpBreakerClassifier::new().too_many_requests(Outcome::Failure)`).
    pub fn breaker_classifier(mut self, classifier: HttpBreakerClassifier) -> Self {
        self.breaker_classifier = classifier;
        self
    }

    /// Which requests are replayed for retries (e.g. [`HttpReplay::any_method`]).
    pub fn replay(mut self, replay: HttpReplay) -> Self {
        self.replay = replay;
        self
    }

    pub(crate) fn retry_policy(
        &self,
    ) -> Result<RetryPolicy<HttpRetryClassifier, HttpReplay>, ConfigError> {
        let b = RetryPolicy::builder()
            .name(self.name.clone())
            .max_attempts(self.max_attempts)
            .backoff(self.backoff);
        let b = match &self.budget {
            None => b,
            Some(Some(budget)) => b.budget(budget.clone()),
            Some(None) => b.no_budget(),
        };
        let b = b
            .classifier(self.retry_classifier)
            .copy_request(self.replay);
        match self.total_timeout {
            Some(total) => b.total_timeout(total).build(),
            None => b.build(),
        }
    }

    pub(crate) fn bulkhead_layer(&self, name: &str) -> Result<Option<BulkheadLayer>, ConfigError> {
        self.max_concurrent
            .map(|n| BulkheadLayer::try_new(n).map(|b| b.name(name)))
            .transpose()
    }

    /// The checks of [`ResilienceLayerBuilder::build`], without building a breaker.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let window = self.breaker.checked_window()?;
        let probe = ResilienceLayer::builder()
            .total_timeout(self.total_timeout)
            .attempt_timeout(self.attempt_timeout);
        let _checked = probe.build()?;
        if let (Some(attempt), Some(window)) = (self.attempt_timeout, window) {
            if window < attempt.saturating_mul(2) {
                return Err(ConfigError::new(
                    "circuit_breaker",
                    format!(
                        "a rolling window of {window:?} is shorter than twice the attempt timeout ({attempt:?})"
                    ),
                ));
            }
        }
        self.bulkhead_layer(&self.name)?;
        Ok(())
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a setting outside its range (naming it), and the checks of
    /// [`ResilienceLayerBuilder::build`](crate::ResilienceLayerBuilder::build).
    pub fn build(self) -> Result<HttpLayer, ConfigError> {
        self.validate()?;
        let breaker = self.breaker.clone().name(&*self.name).build()?;
        let retry = self
            .retry_policy()?
            .enforcing_total_timeout(self.attempt_timeout, TOTAL_TIMEOUT_NAME)
            .capping_at_scope();
        let inner = ResilienceLayer::builder()
            .retry(retry)
            .circuit_breaker(breaker.layer().with_classifier(self.breaker_classifier))
            .bulkhead(self.bulkhead_layer(&self.name)?)
            .attempt_timeout(self.attempt_timeout)
            .build()?;
        Ok(HttpLayer {
            total_timeout: self.total_timeout,
            inner,
            breaker,
            propagate: PropagateDeadlineLayer::new(self.deadline_header),
        })
    }
}
