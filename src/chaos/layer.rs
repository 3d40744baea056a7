use super::{Chaos, ChaosService, Plain};
use tower_layer::Layer;

/// Wraps services in a [`ChaosService`] driven by one [`Chaos`].
///
/// Made by [`Chaos::layer`] (and [`Chaos::http_layer`] with the feature `http`); every service
/// it makes, and every clone of those, shares the chaos' settings, seed and call counter. `R`
/// says how an injected status becomes a response (see [`InjectStatus`](super::InjectStatus)).
#[derive(Debug, Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct ChaosLayer<R = Plain> {
    chaos: Chaos,
    respond: R,
}

impl ChaosLayer {
    /// A layer for `chaos` whose injected statuses are errors (see [`Plain`]).
    pub fn new(chaos: Chaos) -> Self {
        ChaosLayer {
            chaos,
            respond: Plain,
        }
    }
}

impl<R> ChaosLayer<R> {
    /// Build the responses of injected statuses with `respond`, any
    /// [`InjectStatus`](super::InjectStatus) for the wrapped service's response type.
    pub fn respond_with<R2>(self, respond: R2) -> ChaosLayer<R2> {
        ChaosLayer {
            chaos: self.chaos,
            respond,
        }
    }

    /// The chaos this layer shares.
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }
}

impl<S, R: Clone> Layer<S> for ChaosLayer<R> {
    type Service = ChaosService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ChaosService::new(inner, self.chaos.clone(), self.respond.clone())
    }
}
