use super::{Bulkhead, State};
use crate::sync::Arc;
use crate::ConfigError;
use std::fmt;
use tower_layer::Layer;

/// Wraps services in a [`Bulkhead`]; also the handle to read the bulkhead's live count.
///
/// The count lives in an `Arc` created by the constructor: every clone of this layer and every
/// service it makes (and their clones) share one limit. See the [module docs](super).
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct BulkheadLayer {
    state: Arc<State>,
}

impl BulkheadLayer {
    /// A bulkhead admitting at most `max_concurrent` calls at once.
    ///
    /// A limit of `0` is accepted and rejects every call; use [`try_new`](Self::try_new) to
    /// treat `0` as a configuration error instead.
    pub fn new(max_concurrent: usize) -> Self {
        BulkheadLayer {
            state: Arc::new(State::new(max_concurrent, crate::metrics::default_name())),
        }
    }

    /// Names this bulkhead in metrics (`harden_bulkhead_in_flight{bulkhead="<name>"}`);
    /// `"default"` if not set.
    ///
    /// Names the bulkhead itself: every clone of this layer, and every service made from it,
    /// keeps sharing one limit. Name it before the layer wraps a service: the
    /// metrics are registered then, and keep the name they were registered under (a later
    /// rename is logged as a warning and shows in `Debug` only).
    pub fn name(self, name: impl Into<std::sync::Arc<str>>) -> Self {
        let name = name.into();
        if !self.state.rename(name.clone()) {
            tracing::warn!(bulkhead = %name, "bulkhead renamed after its metrics were registered; they keep the first name");
        }
        self
    }

    /// Like [`new`](Self::new), but a limit of `0` is a [`ConfigError`] (field
    /// `max_concurrent`, accepted range `[1, usize::MAX]`) — for limits read from configuration.
    pub fn try_new(max_concurrent: usize) -> Result<Self, ConfigError> {
        if max_concurrent == 0 {
            return Err(ConfigError::new(
                "max_concurrent",
                "0 is outside [1, usize::MAX]; a bulkhead of 0 would reject every call",
            ));
        }
        Ok(Self::new(max_concurrent))
    }

    /// Calls in flight now, across every service made from this layer or its clones.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight()
    }

    /// The most calls admitted at once.
    pub fn max_concurrent(&self) -> usize {
        self.state.max()
    }

    /// Changes the limit of the running bulkhead, for every clone and every service made from
    /// it, without pausing calls. Raised, it admits more calls at once; lowered below the calls
    /// in flight, those keep their slots and new calls are rejected until fewer than the new
    /// limit run.
    ///
    /// ```
    /// use harden::bulkhead::{BulkheadLayer, BulkheadSettings};
    ///
    /// let bulkhead = BulkheadLayer::try_new(10)?;
    /// bulkhead.retune(&BulkheadSettings::new(50))?;
    /// assert_eq!(bulkhead.max_concurrent(), 50);
    /// # Ok::<(), harden::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_concurrent` for a limit of 0; the limit is then kept.
    pub fn retune(&self, settings: &super::BulkheadSettings) -> Result<(), ConfigError> {
        if settings.max_concurrent == 0 {
            return Err(ConfigError::new(
                "max_concurrent",
                "0 is outside [1, usize::MAX]; a bulkhead of 0 would reject every call",
            ));
        }
        self.state.set_max(settings.max_concurrent);
        tracing::info!(bulkhead = %self.state.name(), max_concurrent = settings.max_concurrent, "bulkhead retuned");
        Ok(())
    }
}

impl fmt::Debug for BulkheadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("name", &self.state.name())
            .field("max_concurrent", &self.state.max())
            .field("in_flight", &self.state.in_flight())
            .finish()
    }
}

impl BulkheadLayer {
    /// The shared state, its metrics registered: what a service made from this layer holds.
    pub(crate) fn service_state(&self) -> Arc<State> {
        self.state.register_metrics();
        Arc::clone(&self.state)
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.state.register_metrics();
        Bulkhead::from_state(inner, Arc::clone(&self.state))
    }
}
