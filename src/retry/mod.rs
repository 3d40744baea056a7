//! Retry failed calls with backoff, jitter and a retry budget.
//!
//! [`RetryLayer`] re-sends a request whose attempt failed, up to `max_attempts` attempts in all
//! (the first call included), waiting between attempts as a [`Backoff`] says (constant, linear or
//! exponential, with [`Jitter`] and a cap: every delay is within `[0, max_delay]`). A classifier
//! decides which outcomes are retried (by default every error except harden's own rejections) and
//! may ask for a specific delay, such as a server's `Retry-After`. A shared [`RetryBudget`] caps
//! the extra load retries add when the upstream is down, against the current load: in any second
//! at most `retry_ratio` of that second's requests plus a small floor and burst. `Clone` requests are replayed by cloning;
//! others through a copy hook, and a request that cannot be copied is sent once. The inner
//! service's `poll_ready` is awaited before every attempt, retries included.
//!
//! # Default
//!
//! Three attempts, exponential backoff from 100 ms with full jitter capped at 10 s, and a budget
//! of 20 % of requests plus 10 retries a second, at most 10 saved up:
//!
//! ```
//! use harden::retry::RetryLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! # use std::sync::atomic::{AtomicU32, Ordering};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), harden::BoxError> {
//!
//! static CALLS: AtomicU32 = AtomicU32::new(0);
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::default())
//!     .service(service_fn(|name: &'static str| async move {
//!         // Fails once, then succeeds.
//!         match CALLS.fetch_add(1, Ordering::Relaxed) {
//!             0 => Err("flaky".into()),
//!             _ => Ok::<_, harden::BoxError>(format!("hello, {name}")),
//!         }
//!     }));
//! assert_eq!(service.oneshot("world").await?, "hello, world");
//! assert_eq!(CALLS.load(Ordering::Relaxed), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Customised
//!
//! ```
//! use std::time::Duration;
//! use harden::retry::{Backoff, Jitter, RetryBudget, RetryDecision, RetryLayer, RetryPolicy};
//! use harden::BoxError;
//!
//! // One budget for every client of the same upstream.
//! let budget = RetryBudget::builder()
//!     .min_retries_per_sec(5)
//!     .retry_ratio(0.1)
//!     .burst(20)
//!     .build()?;
//! let policy = RetryPolicy::builder()
//!     .name("inventory")
//!     .max_attempts(4)
//!     .backoff(Backoff::linear(Duration::from_millis(50), Duration::from_millis(50)))
//!     .jitter(Jitter::Equal)
//!     .max_delay(Duration::from_secs(2))
//!     .budget(budget.clone())
//!     // Responses are status codes here: retry 503 after the server's delay, 500 with backoff.
//!     .retry_on(|result: Result<&u16, &BoxError>| match result {
//!         Ok(503) => RetryDecision::RetryAfter(Duration::from_secs(1)),
//!         Ok(500) | Err(_) => RetryDecision::Retry,
//!         Ok(_) => RetryDecision::DoNotRetry,
//!     })
//!     .build()?;
//! let layer = RetryLayer::new(policy);
//! # let _ = layer;
//! // Later, for metrics: how many retries the budget refused.
//! assert_eq!(budget.exhausted(), 0);
//! # Ok::<(), harden::ConfigError>(())
//! ```
//!
//! # Errors
//!
//! The service's error is [`BoxError`]: the inner service's error, boxed, or one of the two
//! errors of the retry itself ([`error`]):
//! - [`BudgetExhausted`](error::BudgetExhausted): a retry was due but the budget had no token;
//!   it wraps the last attempt's error (`source()`, `into_inner()`). A *response* the budget
//!   kept from being retried is returned as it is. Either way the refusal is counted in
//!   [`RetryBudget::exhausted`].
//! - [`RetryAfterTooLong`](error::RetryAfterTooLong): the classifier asked for a server delay
//!   ([`RetryDecision::RetryAfter`], after the `max_delay` cap) longer than what is left of the
//!   total timeout, which the retry learns from
//!   [`RetryPolicyBuilder::total_timeout`] or from [`ResilienceLayerBuilder`](crate::ResilienceLayerBuilder)'s
//!   `total_timeout`. The call fails at once, carrying the server's delay, instead of sleeping
//!   into its deadline. Without a known total timeout the delay is slept.
//!
//! When attempts run out or the classifier says no, the caller gets the last attempt's own
//! outcome (error *or* response). An error from the inner service's `poll_ready` before a retry
//! is returned as is. Harden's rejections
//! ([`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen),
//! [`BulkheadFull`](crate::bulkhead::error::BulkheadFull)) and the retry's own errors (from a
//! retry nested below) are never retried, whatever the
//! classifier says. Bad configuration is a [`ConfigError`](crate::ConfigError) from `build()`.
//!
//! # Tracing
//!
//! Each call is a debug-level `retry` span (target `harden::retry`; fields `retry`, the policy's
//! name, and `attempts` once it ends) with a debug event per attempt: `attempt`, `outcome` as the
//! classifier names it ([`RetryClassifier::describe`]), and either `delay` and `reason`
//! (`backoff`, or `retry-after` with the server's `retry_after`) or, when the call ends there,
//! `done` or a `reason`: `attempts exhausted`, `not replayable`, `budget exhausted`, `deadline`
//! (the backoff would end past the deadline in scope) or `total timeout` (the server asked for
//! longer than is left). The span is entered while the call's attempts and backoff are polled
//! and its later attempts are sent, so what the layers below log then (the breaker, the HTTP
//! client) is its child; the first attempt is sent by `call`, before that. A classifier may
//! also see the response it returns ([`RetryClassifier::returned`]): the HTTP one puts
//! [`Attempts`] in the extensions of a response that took more than one attempt (a response
//! without it was answered by its first attempt: read it with `Attempts::of`).
//!
//! With nobody listening a call builds no span and asks no level: whether a subscriber wants
//! the span is not asked per call but learned from `tracing` whenever its interest changes (a
//! subscriber set, a filter reloaded), through the version check per call that live retuning
//! already makes; what is left is a null span pointer in the response future. A subscriber
//! that filters `harden::retry` below debug (`RUST_LOG=info`) counts as nobody. To compile the
//! span and its events out entirely, turn on one of `tracing`'s static level features below
//! debug in the application:
//!
//! ```toml
//! tracing = { version = "0.1", features = ["release_max_level_info"] }
//! ```
//!
//! # What a call that is not retried costs
//!
//! The response future carries what a retry needs: a clone of the inner service and a copy of
//! the request (as tower's `Retry` does), the classifier, the backoff and, with a budget, a
//! handle on it. Its `poll` handles inline only an attempt whose response the classifier keeps;
//! errors, retries and later attempts run out of line and hand their outcome back through an
//! out-slot, so the common path returns its response in registers. With a budget, a call also
//! deposits (a store into its thread's stripe; see [`RetryBudget`]) and the `'static` future
//! owns a counted reference to the budget: that reference count, one locked increment and one
//! decrement, is most of what a budget costs a call. The settings are copied into the future
//! rather than shared behind an `Arc`, because without a budget that `Arc` would be the call's
//! only reference count.
//!
//! # Compared with `tower::retry`
//!
//! tower's `Retry` is a frame for a user-written `Policy`; backoff, jitter and the budget are
//! left to the user, and tower's `TpsBudget` takes a `Mutex` on every deposit and can overdraw
//! between its check and its update. Here the policy is configuration: backoff shapes, four
//! jitters, a cap that also bounds server-requested delays, a lock-free striped budget whose
//! withdrawals cannot overdraw, a copy hook under which an uncopyable request is sent once
//! instead of failing, and no clock read, timer or allocation on a call that is not retried.

use std::task::{Context, Poll};

use tower_service::Service;

use crate::BoxError;

mod backoff;
mod budget;
pub mod error;
pub mod future;
mod layer;
mod policy;
mod settings;
mod trace;
mod tune;

pub use backoff::{
    Backoff, Jitter, DEFAULT_INITIAL_DELAY, DEFAULT_JITTER, DEFAULT_MAX_DELAY, DEFAULT_MULTIPLIER,
};
pub use budget::{
    RetryBudget, RetryBudgetBuilder, DEFAULT_BURST, DEFAULT_MIN_RETRIES_PER_SEC,
    DEFAULT_RETRY_RATIO,
};
pub use layer::RetryLayer;
pub use policy::{
    CloneRequest, CopyRequest, CopyWith, DefaultRetryClassifier, RetryClassifier,
    RetryClassifierFn, RetryDecision, RetryPolicy, RetryPolicyBuilder, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_NAME, MAX_ATTEMPTS_LIMIT,
};
pub use settings::{BackoffSettings, BackoffShape, RetryBudgetSettings, RetrySettings};
pub use trace::Attempts;

use future::{Replay, ResponseFuture};

/// Retries the inner service's failed attempts as a [`RetryPolicy`] says; made by [`RetryLayer`].
///
/// The inner service is cloned into each response future that may retry (as tower's `Retry`
/// does), and that clone is driven to readiness before every retry.
#[derive(Debug, Clone)]
pub struct Retry<S, C = DefaultRetryClassifier, H = CloneRequest> {
    inner: S,
    policy: RetryPolicy<C, H>,
}

impl<S, C, H> Retry<S, C, H> {
    /// Wrap `inner` with `policy`.
    pub fn new(inner: S, policy: RetryPolicy<C, H>) -> Self {
        Retry { inner, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy<C, H> {
        &self.policy
    }

    define_inner_service_accessors!();
}

impl<S, Req, C, H> Service<Req> for Retry<S, C, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: RetryClassifier<S::Response> + Clone,
    H: CopyRequest<Req> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let Some(scope) = future::Scope::current(self.policy.caps_scope) else {
            return self.expired();
        };
        // No clock read: the total timeout starts when the future first waits (`Deadline`).
        let deadline = future::Deadline::new(self.policy.total_timeout, self.policy.total_skew);
        // The policy's version check (the total timeout above is fixed when it is built), and
        // the call's span if a subscriber wants it.
        let trace = self.policy.start_call();
        let policy = &self.policy;
        let budget = policy.budget.as_ref().map(RetryBudget::deposit_and_handle);
        let copy = if policy.max_attempts > 1 {
            policy.copy.copy_request(&request)
        } else {
            None
        };
        // Call the service that was driven to readiness; retries use a clone, readied afresh.
        let future = self.inner.call(request);
        let service = copy.as_ref().map(|_| self.inner.clone());
        let replay = Replay {
            next: copy,
            service,
            classifier: policy.classifier.clone(),
            copy: policy.copy.clone(),
            backoff: policy.backoff,
            budget,
            max_attempts: policy.max_attempts,
            attempts: 1,
            deadline,
            enforce_total: policy.enforce_total,
            total_elapsed: false,
            clock: policy.clock,
            timer: future::Timer::new(),
            metrics: policy.metrics.clone(),
            scope,
        };
        ResponseFuture::new(future, replay, trace)
    }
}

impl<S, C, H> Retry<S, C, H> {
    /// A call made after the deadline in scope, by a policy that ends calls there: no attempt,
    /// no deposit in the budget.
    #[cold]
    #[inline(never)]
    fn expired<Req>(&self) -> ResponseFuture<S, Req, C, H>
    where
        S: Service<Req>,
        C: Clone,
        H: Clone,
    {
        let policy = &self.policy;
        ResponseFuture::expired(Replay {
            next: None,
            service: None,
            classifier: policy.classifier.clone(),
            copy: policy.copy.clone(),
            backoff: policy.backoff,
            budget: None,
            max_attempts: policy.max_attempts,
            attempts: 0,
            deadline: future::Deadline::new(None, 0),
            enforce_total: policy.enforce_total,
            total_elapsed: false,
            clock: policy.clock,
            timer: future::Timer::new(),
            metrics: policy.metrics.clone(),
            scope: future::Scope::none(),
        })
    }
}

impl<C: Clone, H: Clone> RetryPolicy<C, H> {
    /// A call of `service`, which was driven to readiness, under this policy without a
    /// [`Retry`] around it (what [`Retry::call`] does, written out again so that neither
    /// path's code shape changes the other's): the service itself is kept for the retries (no
    /// clone), and the policy is read in place (no clone of it either).
    #[cfg(feature = "reqwest")]
    #[inline]
    pub(crate) fn call_owned<S, Req>(
        &self,
        mut service: S,
        request: Req,
    ) -> ResponseFuture<S, Req, C, H>
    where
        S: Service<Req>,
        H: CopyRequest<Req>,
    {
        let (max_attempts, backoff) = self.live();
        let budget = self.budget.as_ref().map(RetryBudget::deposit_and_handle);
        let deadline = future::Deadline::new(self.total_timeout, self.total_skew);
        let copy = if max_attempts > 1 {
            self.copy.copy_request(&request)
        } else {
            None
        };
        let trace = trace::Trace::start(self.name()).unwrap_or_else(trace::Trace::off);
        let future = service.call(request);
        let service = copy.as_ref().map(|_| service);
        let replay = Replay {
            next: copy,
            service,
            classifier: self.classifier.clone(),
            copy: self.copy.clone(),
            backoff,
            budget,
            max_attempts,
            attempts: 1,
            deadline,
            enforce_total: self.enforce_total,
            total_elapsed: false,
            clock: self.clock,
            timer: future::Timer::new(),
            metrics: self.metrics.clone(),
            scope: future::Scope::none(),
        };
        ResponseFuture::new(future, replay, trace)
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests;
