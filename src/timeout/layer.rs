use super::Timeout;
use crate::metrics;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Applies a [`Timeout`] to every call of the wrapped service.
///
/// See the [module docs](super) for examples and semantics.
#[derive(Debug, Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct TimeoutLayer {
    timeout: Duration,
    name: Option<Arc<str>>,
}

impl TimeoutLayer {
    /// A layer failing calls that take longer than `timeout` with
    /// [`Elapsed`](super::error::Elapsed). A zero duration fails every call that has to wait.
    pub const fn new(timeout: Duration) -> Self {
        TimeoutLayer {
            timeout,
            name: None,
        }
    }

    /// Names this timeout in metrics (`harden_timeouts_total{timeout="<name>"}`); `"default"`
    /// if not set.
    pub fn name(self, name: impl Into<Arc<str>>) -> Self {
        TimeoutLayer {
            name: Some(name.into()),
            ..self
        }
    }

    /// The duration each call is allowed.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl TimeoutLayer {
    /// The counter of this timeout's expiries, under its name.
    pub(crate) fn counter(&self) -> metrics::Counter {
        let name = self.name.clone().unwrap_or_else(metrics::default_name);
        metrics::counter(metrics::names::TIMEOUTS, "timeout", &name)
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::with_counter(inner, self.timeout, self.counter())
    }
}
