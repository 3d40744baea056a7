//! What the retry tells `tracing`: a `retry` span per call (debug level) and an event per
//! attempt (the attempt's number, its outcome, and what follows: the delay and why, or why the
//! call ends there).
//!
//! Whether anyone listens is asked once per call, when it starts: with no subscriber interested
//! in debug events of `harden::retry`, no span is built and the call carries a null pointer.
//! The span is the events' parent; it is not entered while attempts run (entering it on every
//! poll cost the calls nobody traces more than the rest of this), so events of the layers
//! below are not its children.

use std::fmt;
use std::mem::ManuallyDrop;
use std::time::Duration;

use tracing::Span;

use super::policy::RetryClassifier;
use crate::BoxError;

/// The number of attempts a response took, the first included: the HTTP retry path
/// ([`HttpRetryClassifier`](crate::http::HttpRetryClassifier), so the HTTP preset and
/// `harden::reqwest::Client`) and the gRPC layer put it in the extensions of the response they
/// return.
///
/// ```
/// # fn f(response: http::Response<()>) {
/// use harden::retry::Attempts;
///
/// if let Some(Attempts(n)) = response.extensions().get::<Attempts>() {
///     println!("answered after {n} attempts");
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attempts(pub u32);

/// The span of one call, when a subscriber listens.
///
/// Its drop is a null check inline and the span's own drop out of line, as the retry's timer's:
/// left to the compiler, it was a call on every response future.
#[derive(Debug)]
pub(crate) struct Trace(ManuallyDrop<Option<Box<Span>>>);

impl Drop for Trace {
    #[inline]
    fn drop(&mut self) {
        if self.0.is_some() {
            drop_span(ManuallyDrop::into_inner(std::mem::replace(
                &mut self.0,
                ManuallyDrop::new(None),
            )));
        }
    }
}

#[cold]
#[inline(never)]
fn drop_span(span: Option<Box<Span>>) {
    drop(span);
}

impl Trace {
    /// The span of a call starting now through the policy named `retry`.
    #[inline]
    pub(crate) fn start(retry: &str) -> Trace {
        // The global level first (one load): the span's own check looks up its callsite.
        use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
        if STATIC_MAX_LEVEL >= LevelFilter::DEBUG && LevelFilter::current() >= LevelFilter::DEBUG {
            Trace::span(retry)
        } else {
            Trace(ManuallyDrop::new(None))
        }
    }

    #[cold]
    #[inline(never)]
    fn span(retry: &str) -> Trace {
        let span = tracing::debug_span!(target: "harden::retry", "retry", retry, attempts = tracing::field::Empty);
        Trace(ManuallyDrop::new(
            (!span.is_disabled()).then(|| Box::new(span)),
        ))
    }

    /// Whether events are wanted.
    #[inline(always)]
    pub(crate) fn on(&self) -> bool {
        self.0.is_some()
    }

    /// The event of attempt `attempt`, which ended with `result`; `what` says what follows.
    #[cold]
    #[inline(never)]
    pub(crate) fn attempt<Res, C: RetryClassifier<Res>>(
        &self,
        attempt: u32,
        classifier: &C,
        result: Result<&Res, &BoxError>,
        what: What,
    ) {
        let outcome = Outcome { classifier, result };
        let Some(span) = self.0.as_deref() else {
            return;
        };
        if what.is_last() {
            span.record("attempts", attempt);
        }
        match what {
            What::Retry {
                delay,
                retry_after: Some(asked),
            } => {
                tracing::debug!(target: "harden::retry", parent: span, attempt, %outcome, ?delay, reason = "retry-after", retry_after = ?asked, "retrying")
            }
            What::Retry { delay, .. } => {
                tracing::debug!(target: "harden::retry", parent: span, attempt, %outcome, ?delay, reason = "backoff", "retrying")
            }
            What::Done => {
                tracing::debug!(target: "harden::retry", parent: span, attempt, %outcome, "done")
            }
            What::GiveUp(reason) => {
                tracing::debug!(target: "harden::retry", parent: span, attempt, %outcome, reason = reason.as_str(), "giving up")
            }
        }
    }
}

/// What follows an attempt, for its event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum What {
    /// The outcome is not retried: it is the caller's.
    Done,
    /// The next attempt after `delay`; `retry_after` is what the server asked for, if it did.
    Retry {
        delay: Duration,
        retry_after: Option<Duration>,
    },
    /// A retry was due and is not made.
    GiveUp(GiveUp),
}

impl What {
    fn is_last(self) -> bool {
        !matches!(self, What::Retry { .. })
    }
}

/// Why a retry that was due is not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// `max_attempts` attempts were made.
    AttemptsExhausted,
    /// The request cannot be replayed.
    NotReplayable,
    /// The retry budget refused.
    Budget,
    /// The backoff would end past the deadline in scope.
    Deadline,
    /// The server asked for longer than is left of the total timeout (or the deadline).
    TotalTimeout,
}

impl GiveUp {
    fn as_str(self) -> &'static str {
        match self {
            GiveUp::AttemptsExhausted => "attempts exhausted",
            GiveUp::NotReplayable => "not replayable",
            GiveUp::Budget => "budget exhausted",
            GiveUp::Deadline => "deadline",
            GiveUp::TotalTimeout => "total timeout",
        }
    }
}

/// An attempt's outcome as its classifier names it.
struct Outcome<'a, Res, C> {
    classifier: &'a C,
    result: Result<&'a Res, &'a BoxError>,
}

impl<Res, C: RetryClassifier<Res>> fmt::Display for Outcome<'_, Res, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.classifier.describe(self.result, f)
    }
}
