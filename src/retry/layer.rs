use tower_layer::Layer;

use super::policy::{CloneRequest, DefaultRetryClassifier, RetryPolicy};
use super::Retry;

/// Applies [`Retry`] to services: retries failed attempts as its [`RetryPolicy`] says.
///
/// Every service made by this layer (and by its clones) shares the policy's budget.
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryLayer<C = DefaultRetryClassifier, H = CloneRequest> {
    policy: RetryPolicy<C, H>,
}

impl Default for RetryLayer {
    /// A layer with the default policy ([`RetryPolicy::new`]).
    fn default() -> Self {
        RetryLayer::new(RetryPolicy::new())
    }
}

impl<C, H> RetryLayer<C, H> {
    /// A layer with this policy.
    pub fn new(policy: RetryPolicy<C, H>) -> Self {
        RetryLayer { policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy<C, H> {
        &self.policy
    }

    pub(crate) fn map_policy(self, f: impl FnOnce(RetryPolicy<C, H>) -> RetryPolicy<C, H>) -> Self {
        RetryLayer {
            policy: f(self.policy),
        }
    }
}

impl<S, C: Clone, H: Clone> Layer<S> for RetryLayer<C, H> {
    type Service = Retry<S, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.policy.clone())
    }
}

impl<C, H> From<RetryPolicy<C, H>> for RetryLayer<C, H> {
    fn from(policy: RetryPolicy<C, H>) -> Self {
        RetryLayer::new(policy)
    }
}
