//! A call admitted now whose outcome is reported later, for callers that are not a tower
//! service (a gRPC stream is judged when its trailers arrive).

use super::core::{Core, Permit};
use super::error::CircuitOpen;
use super::window::Window;
use super::{CircuitBreaker, Outcome};
use crate::sync::Arc;

/// An admitted call; [`finish`](Self::finish) reports its outcome, and dropping it unreported
/// (a cancelled call) frees a half-open probe slot without counting anything.
pub(crate) struct CallPermit {
    core: Arc<Core>,
    window: std::sync::Arc<Window>,
    permit: Option<Permit>,
    start: u64,
}

impl CircuitBreaker {
    /// Admits a call or rejects it, as the breaker's service does.
    pub(crate) fn try_acquire(&self) -> Result<CallPermit, CircuitOpen> {
        let core = &self.core;
        let window = match core.windows.first() {
            Some(first) => first.clone(),
            None => core.windows.load_full(),
        };
        let permit = core
            .try_acquire_with(&window, || core.clock.now())
            .map_err(|rejection| rejection.into_error(core.config.rejection_name.clone()))?;
        Ok(CallPermit {
            start: core.call_start(),
            core: core.clone(),
            window,
            permit: Some(permit),
        })
    }
}

impl CallPermit {
    /// Records the call's outcome.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.core.finish(&self.window, permit, self.start, outcome);
        }
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.core.release(permit);
        }
    }
}
