//! Error type of the chaos layer.

use std::fmt;
use std::sync::Arc;

/// A failure injected by a [`ChaosService`](super::ChaosService): the inner service was not
/// called.
///
/// It names the [`Chaos`](super::Chaos) that injected it, so a test failing on it can tell
/// injected failures from real ones (`err.is::<InjectedError>()`). An injected HTTP status on a
/// layer whose response cannot carry one (a [`Plain`](super::Plain) layer) is reported as this
/// error too, with [`status`](InjectedError::status) set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedError {
    chaos: Arc<str>,
    status: Option<u16>,
}

impl InjectedError {
    pub(crate) fn new(chaos: Arc<str>, status: Option<u16>) -> Self {
        InjectedError { chaos, status }
    }

    /// The name of the [`Chaos`](super::Chaos) that injected this failure.
    pub fn chaos(&self) -> &str {
        &self.chaos
    }

    /// The injected HTTP status, when this error stands for one (see the type's docs).
    pub fn status(&self) -> Option<u16> {
        self.status
    }
}

impl fmt::Display for InjectedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "status {status} injected by chaos `{}`", self.chaos),
            None => write!(f, "failure injected by chaos `{}`", self.chaos),
        }
    }
}

impl std::error::Error for InjectedError {}
