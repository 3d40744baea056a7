//! [`ResilienceLayerBuilder`]: the parts, and the checks that they fit together.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Identity;

use super::part;
use super::{IgnoreBulkheadFull, ResilienceLayer, ATTEMPT_TIMEOUT_NAME, TOTAL_TIMEOUT_NAME};
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::fallback::FallbackLayer;
use crate::retry::RetryLayer;
use crate::ConfigError;

/// Builds a [`ResilienceLayer`]: the standard stack, each part optional.
///
/// Each part is a type parameter, in stack order: `F` fallback, `T` total timeout, `R` retry,
/// `B` circuit breaker, `C` bulkhead (concurrency limit), `A` attempt timeout. A part not set is
/// [`Identity`] and costs nothing; setting it changes the builder's type. The timeouts and the
/// bulkhead also take an `Option`, for parts decided at run time (see
/// [the module docs](crate::stack#absent-parts-cost-nothing)).
#[must_use = "a builder does nothing until `build` is called"]
pub struct ResilienceLayerBuilder<
    F = Identity,
    T = Identity,
    R = Identity,
    B = Identity,
    C = Identity,
    A = Identity,
> {
    fallback: F,
    total_timeout: T,
    retry: R,
    breaker: B,
    breaker_window: Option<Duration>,
    bulkhead: C,
    attempt_timeout: A,
    name: Option<Arc<str>>,
}

impl ResilienceLayerBuilder {
    /// An empty stack: every part off (the same as [`ResilienceLayer::builder`]).
    pub fn new() -> Self {
        ResilienceLayerBuilder {
            fallback: Identity::new(),
            total_timeout: Identity::new(),
            retry: Identity::new(),
            breaker: Identity::new(),
            breaker_window: None,
            bulkhead: Identity::new(),
            attempt_timeout: Identity::new(),
            name: None,
        }
    }
}

impl Default for ResilienceLayerBuilder {
    fn default() -> Self {
        ResilienceLayerBuilder::new()
    }
}

impl<F, T, R, B, C, A> ResilienceLayerBuilder<F, T, R, B, C, A> {
    /// The outermost part: turns errors into responses.
    pub fn fallback<Fb, P>(
        self,
        fallback: FallbackLayer<Fb, P>,
    ) -> ResilienceLayerBuilder<FallbackLayer<Fb, P>, T, R, B, C, A> {
        ResilienceLayerBuilder {
            fallback,
            total_timeout: self.total_timeout,
            retry: self.retry,
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Names the stack: the labels of its own parts (the timeouts) are prefixed with it,
    /// `harden_timeouts_total{timeout="<name>.total"}` and `"<name>.attempt"`. Without a name
    /// they are `"total"` and `"attempt"`, which collide when a process runs two stacks.
    pub fn name(self, name: impl Into<Arc<str>>) -> Self {
        ResilienceLayerBuilder {
            name: Some(name.into()),
            ..self
        }
    }

    /// Bounds the whole call, retries and backoff sleeps included.
    ///
    /// A [`Duration`] puts the part in the stack's type; an `Option<Duration>` decides at run
    /// time (`None`: no total timeout), at the cost of a branch and the timeout's size.
    pub fn total_timeout<D: part::IntoTimeout>(
        self,
        timeout: D,
    ) -> ResilienceLayerBuilder<F, D::Slot, R, B, C, A> {
        ResilienceLayerBuilder {
            fallback: self.fallback,
            total_timeout: timeout.into_slot(),
            retry: self.retry,
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Retries failed attempts; takes a [`RetryLayer`] or a
    /// [`RetryPolicy`](crate::retry::RetryPolicy).
    pub fn retry<Rc, Rh>(
        self,
        retry: impl Into<RetryLayer<Rc, Rh>>,
    ) -> ResilienceLayerBuilder<F, T, RetryLayer<Rc, Rh>, B, C, A> {
        ResilienceLayerBuilder {
            fallback: self.fallback,
            total_timeout: self.total_timeout,
            retry: retry.into(),
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Counts every attempt and rejects calls while open (`breaker.layer()`).
    ///
    /// The breaker's classifier is wrapped so that the bulkhead's rejections are not counted; every other outcome is judged by the layer's classifier.
    pub fn circuit_breaker<Cl>(
        self,
        breaker: CircuitBreakerLayer<Cl>,
    ) -> ResilienceLayerBuilder<F, T, R, CircuitBreakerLayer<IgnoreBulkheadFull<Cl>>, C, A> {
        ResilienceLayerBuilder {
            fallback: self.fallback,
            total_timeout: self.total_timeout,
            retry: self.retry,
            breaker_window: breaker.window_length(),
            breaker: breaker.map_classifier(IgnoreBulkheadFull),
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Limits concurrent attempts, rejecting the excess.
    ///
    /// A [`BulkheadLayer`](crate::bulkhead::BulkheadLayer) puts the part in the stack's type;
    /// an `Option<BulkheadLayer>` decides at run time (`None`: no bulkhead), at the cost of a
    /// branch and the bulkhead's size.
    pub fn bulkhead<K: part::IntoBulkhead>(
        self,
        bulkhead: K,
    ) -> ResilienceLayerBuilder<F, T, R, B, K::Slot, A> {
        ResilienceLayerBuilder {
            fallback: self.fallback,
            total_timeout: self.total_timeout,
            retry: self.retry,
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: bulkhead.into_slot(),
            attempt_timeout: self.attempt_timeout,
            name: self.name,
        }
    }

    /// Bounds each attempt; a timed-out attempt is a breaker failure and may be retried.
    ///
    /// A [`Duration`] puts the part in the stack's type; an `Option<Duration>` decides at run
    /// time (`None`: no attempt timeout), at the cost of a branch and the timeout's size.
    pub fn attempt_timeout<D: part::IntoTimeout>(
        self,
        timeout: D,
    ) -> ResilienceLayerBuilder<F, T, R, B, C, D::Slot> {
        ResilienceLayerBuilder {
            fallback: self.fallback,
            total_timeout: self.total_timeout,
            retry: self.retry,
            breaker: self.breaker,
            breaker_window: self.breaker_window,
            bulkhead: self.bulkhead,
            attempt_timeout: timeout.into_slot(),
            name: self.name,
        }
    }

    /// Checks that the parts fit together and returns the layer.
    ///
    /// The retry learns the total timeout here and ends the call at it (the stack then has no
    /// timeout layer around the retry); unless its policy has a
    /// [`total_timeout`](crate::retry::RetryPolicyBuilder::total_timeout) of its own, a
    /// server-requested delay longer than what is left of this stack's total timeout fails the
    /// call at once with [`RetryAfterTooLong`](crate::retry::error::RetryAfterTooLong).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an attempt timeout longer than the total timeout, or a breaker window
    /// shorter than twice the attempt timeout.
    pub fn build(self) -> Result<ResilienceLayer<F, T, R, B, C, A>, ConfigError>
    where
        T: part::TimeoutSlot,
        R: part::RetrySlot,
        A: part::TimeoutSlot,
    {
        let total = self.total_timeout.duration();
        let attempt = self.attempt_timeout.duration();
        if let (Some(attempt), Some(total)) = (attempt, total) {
            if attempt > total {
                return Err(ConfigError::new(
                    "attempt_timeout",
                    format!(
                        "{attempt:?} is outside (0, total_timeout = {total:?}]: an attempt may not outlast the whole call"
                    ),
                ));
            }
        }
        if let (Some(attempt), Some(window)) = (attempt, self.breaker_window) {
            if window < attempt.saturating_mul(2) {
                return Err(ConfigError::new(
                    "circuit_breaker",
                    format!(
                        "a rolling window of {window:?} is shorter than twice the attempt timeout ({attempt:?}); \
                         use a window of at least {:?}",
                        attempt.saturating_mul(2)
                    ),
                ));
            }
        }
        let name = self.name.as_deref();
        Ok(ResilienceLayer {
            fallback: self.fallback,
            total_timeout: self.total_timeout.named(name, TOTAL_TIMEOUT_NAME),
            retry: self.retry.with_total_timeout(
                total,
                attempt,
                &part::label(name, TOTAL_TIMEOUT_NAME),
            ),
            breaker: self.breaker,
            bulkhead: self.bulkhead,
            attempt_timeout: self.attempt_timeout.named(name, ATTEMPT_TIMEOUT_NAME),
        })
    }
}

impl<F, T, R, B, C, A> fmt::Debug for ResilienceLayerBuilder<F, T, R, B, C, A>
where
    T: part::TimeoutSlot,
    C: part::BulkheadSlot,
    A: part::TimeoutSlot,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceLayerBuilder")
            .field("total_timeout", &self.total_timeout.duration())
            .field("breaker_window", &self.breaker_window)
            .field("bulkhead", &self.bulkhead.get())
            .field("attempt_timeout", &self.attempt_timeout.duration())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
