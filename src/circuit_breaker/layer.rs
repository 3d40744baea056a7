use tower_layer::Layer;

use super::service::CircuitBreakerService;
use super::CircuitBreaker;
use crate::circuit_breaker::DefaultBreakerClassifier;

/// Wraps services in a [`CircuitBreakerService`] sharing one [`CircuitBreaker`].
///
/// Made by [`CircuitBreaker::layer`]; every service it makes, and every clone of those, shares the
/// breaker's state.
#[derive(Debug, Clone)]
#[must_use]
pub struct CircuitBreakerLayer<C = DefaultBreakerClassifier> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer for `breaker`; `Ok` is a success, `Err` a failure.
    pub fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: DefaultBreakerClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Decide success, failure or ignored with `classifier`, any
    /// [`BreakerClassifier<S::Response, S::Error>`](crate::circuit_breaker::BreakerClassifier).
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// Same as [`with_classifier`](Self::with_classifier).
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        self.with_classifier(classifier)
    }

    /// The breaker this layer shares.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The same breaker with its classifier wrapped by `f` (the standard stack uses it).
    pub(crate) fn map_classifier<C2>(self, f: impl FnOnce(C) -> C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier: f(self.classifier),
        }
    }

    /// Length of a time-based window; `None` for a count-based one.
    pub(crate) fn window_length(&self) -> Option<std::time::Duration> {
        match self.breaker.core().windows.spec() {
            super::window::WindowSpec::Time { window, .. } => Some(window),
            super::window::WindowSpec::Count { .. } => None,
        }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, &self.breaker, self.classifier.clone())
    }
}
