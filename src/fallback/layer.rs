use super::{every_error, EveryError, Fallback, Shared};
use crate::BoxError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use tower_layer::Layer;

/// Wraps services in a [`Fallback`]. See the [module docs](super).
///
/// Cloning the layer, and every service it makes, shares the fallback function.
#[must_use = "a layer does nothing until it wraps a service"]
pub struct FallbackLayer<F, P = EveryError> {
    shared: Arc<Shared<F, P>>,
}

impl<F> FallbackLayer<F> {
    /// A layer answering every error of the wrapped service with `fallback(err).await`.
    ///
    /// `fallback` receives the error (downcast it to see what failed) and returns the response,
    /// or an error of its own, which the caller then gets instead.
    pub fn new<Fut, Response>(fallback: F) -> Self
    where
        F: Fn(BoxError) -> Fut,
        Fut: Future<Output = Result<Response, BoxError>>,
    {
        FallbackLayer {
            shared: Arc::new(Shared::new(
                Arc::new(fallback),
                every_error as EveryError,
                crate::metrics::default_name(),
            )),
        }
    }
}

impl<F, P> FallbackLayer<F, P> {
    /// Falls back only for errors `predicate` returns `true` for; the others reach the caller
    /// unchanged. Replaces any previous predicate.
    ///
    /// ```
    /// # use harden::{fallback::FallbackLayer, timeout::error::Elapsed, BoxError};
    /// let layer = FallbackLayer::new(|_err: BoxError| async { Ok("stale") })
    ///     .when(|err: &BoxError| err.is::<Elapsed>());
    /// ```
    pub fn when<Q>(self, predicate: Q) -> FallbackLayer<F, Q>
    where
        Q: Fn(&BoxError) -> bool,
    {
        FallbackLayer {
            shared: Arc::new(Shared::new(
                Arc::clone(&self.shared.fallback),
                predicate,
                Arc::clone(&self.shared.name),
            )),
        }
    }

    /// Names this fallback in metrics (`harden_fallbacks_total{fallback="<name>"}`);
    /// `"default"` if not set.
    pub fn name(self, name: impl Into<Arc<str>>) -> Self
    where
        P: Clone,
    {
        FallbackLayer {
            shared: Arc::new(Shared::new(
                Arc::clone(&self.shared.fallback),
                self.shared.predicate.clone(),
                name.into(),
            )),
        }
    }
}

impl<F, P> Clone for FallbackLayer<F, P> {
    fn clone(&self) -> Self {
        FallbackLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<F, P> fmt::Debug for FallbackLayer<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer").finish_non_exhaustive()
    }
}

impl<S, F, P> Layer<S> for FallbackLayer<F, P> {
    type Service = Fallback<S, F, P>;

    fn layer(&self, inner: S) -> Self::Service {
        self.shared.register_metrics();
        Fallback::from_shared(inner, Arc::clone(&self.shared))
    }
}
