use super::Timeout;
use std::time::Duration;
use tower_layer::Layer;

/// Applies a [`Timeout`] to every call of the wrapped service.
///
/// See the [module docs](super) for examples and semantics.
#[derive(Debug, Clone, Copy)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct TimeoutLayer {
    // NOTE: private fields so a metrics name (`harden_timeouts_total{timeout}`) can be added
    // later without breaking anyone.
    timeout: Duration,
}

impl TimeoutLayer {
    /// A layer failing calls that take longer than `timeout` with
    /// [`Elapsed`](super::error::Elapsed). A zero duration fails every call that has to wait.
    pub const fn new(timeout: Duration) -> Self {
        TimeoutLayer { timeout }
    }

    /// The duration each call is allowed.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.timeout)
    }
}
