//! What the retry tells `tracing`: a `retry` span per call (debug level) and an event per
//! attempt (the attempt's number, its outcome, and what follows: the delay and why, or why the
//! call ends there).
//!
//! Whether anyone listens is not asked per call: a callsite of the retry span's shape
//! (`retry`, target `harden::retry`, debug) is registered with `tracing`, which tells it the
//! subscribers' interest whenever that changes (a subscriber set, a filter reloaded). A change
//! bumps the version every retry service already compares per call for live retuning (see
//! `super::tune`), so a call nobody traces pays no check of its own: only a null span pointer,
//! stored in its future and tested before the first attempt is polled and when the future
//! drops. A service whose calls a subscriber may want takes the cold path on each call. With
//! `tracing`'s `max_level_*` or `release_max_level_*` features below debug, the callsite is
//! never registered and no span or event is compiled in.
//!
//! While a traced call's attempts and backoff are polled, its span is entered, so the events of
//! the layers below (the breaker's, the HTTP client's) are its children.

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::Span;
use tracing_core::callsite::Callsite;
use tracing_core::field::FieldSet;
use tracing_core::metadata::Kind;
use tracing_core::subscriber::Interest;
use tracing_core::{Level, Metadata};

use super::policy::RetryClassifier;
use crate::BoxError;

/// The number of attempts a response took, the first included: the HTTP retry path
/// ([`HttpRetryClassifier`](crate::http::HttpRetryClassifier), so the HTTP preset and
/// `harden::reqwest::Client`) and the gRPC layer put it in the extensions of a response that
/// took more than one attempt.
///
/// A response without it was answered by its first attempt (so a response that needed no
/// retry carries no extension, which would cost it an allocation); `Attempts::of` (feature
/// `http`) reads it that way.
///
/// ```
/// # fn f(response: http::Response<()>) {
/// use harden::retry::Attempts;
///
/// let n = Attempts::of(response.extensions());
/// if n > 1 {
///     println!("answered after {n} attempts");
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attempts(pub u32);

impl Attempts {
    /// The attempts a response with these extensions took: its [`Attempts`], or 1 when it has
    /// none (a response without it was answered by its first attempt).
    #[cfg(feature = "http")]
    #[must_use]
    pub fn of(extensions: &http::Extensions) -> u32 {
        extensions.get::<Attempts>().map_or(1, |a| a.0)
    }
}

/// The span of one call, when a subscriber listens.
///
/// Its drop is a null check inline and the span's own drop out of line, in a function that
/// cannot unwind: left to the compiler, it made the response future's drop a call of its own.
#[derive(Debug)]
pub(crate) struct Trace(ManuallyDrop<Option<Box<Span>>>);

impl Drop for Trace {
    #[inline]
    fn drop(&mut self) {
        if self.0.is_some() {
            drop_span(self);
        }
    }
}

/// Closes the span. `extern "C"`, so that it cannot unwind and the future's drop needs no
/// cleanup path for it; a subscriber that panics while closing the span is ignored here.
#[cold]
#[inline(never)]
extern "C" fn drop_span(trace: &mut Trace) {
    let span = ManuallyDrop::into_inner(std::mem::replace(&mut trace.0, ManuallyDrop::new(None)));
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(span)));
}

/// A callsite of the span's shape, registered to hear the subscribers' interest in it.
struct Probe;

static PROBE: Probe = Probe;

static PROBE_META: Metadata<'static> = Metadata::new(
    "retry",
    "harden::retry",
    Level::DEBUG,
    Some(file!()),
    Some(line!()),
    Some(module_path!()),
    FieldSet::new(
        &["retry", "attempts"],
        tracing_core::identify_callsite!(&PROBE),
    ),
    Kind::SPAN,
);

/// Whether some subscriber may want the span (its interest is not "never").
static WANTED: AtomicBool = AtomicBool::new(false);

impl Callsite for Probe {
    fn set_interest(&self, interest: Interest) {
        // Relaxed: the version's Release in `bump` publishes it to the services that reload.
        WANTED.store(!interest.is_never(), Ordering::Relaxed);
        super::tune::bump();
    }

    fn metadata(&self) -> &Metadata<'_> {
        &PROBE_META
    }
}

/// Registers the probe (once), unless `tracing`'s static level leaves out debug spans.
pub(crate) fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if STATIC_MAX_LEVEL >= LevelFilter::DEBUG {
        ONCE.call_once(|| tracing_core::callsite::register(&PROBE));
    }
}

impl Trace {
    /// No span: nobody listens.
    #[inline(always)]
    pub(crate) const fn off() -> Trace {
        Trace(ManuallyDrop::new(None))
    }

    /// The span of a call starting now through the policy named `retry`, or `None` when no
    /// subscriber wants it: not even asked per call then (asked on the cold path only).
    pub(crate) fn start(retry: &str) -> Option<Trace> {
        Trace::start_at(retry, STATIC_MAX_LEVEL)
    }

    /// [`start`](Self::start) under the static maximum level `max`.
    fn start_at(retry: &str, max: LevelFilter) -> Option<Trace> {
        // Relaxed: read after the version's Acquire (see `super::tune::version`).
        (max >= LevelFilter::DEBUG && WANTED.load(Ordering::Relaxed)).then(|| Trace::span(retry))
    }

    #[cold]
    #[inline(never)]
    fn span(retry: &str) -> Trace {
        let span = tracing::debug_span!(target: "harden::retry", "retry", retry, attempts = tracing::field::Empty);
        Trace(ManuallyDrop::new(
            (!span.is_disabled()).then(|| Box::new(span)),
        ))
    }

    /// The span entered until the guard drops, if there is one.
    #[inline(always)]
    pub(crate) fn enter(&self) -> InSpan<'_> {
        match self.0.as_deref() {
            Some(span) => InSpan::enter(span),
            None => InSpan(None),
        }
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

/// A traced call's span, entered while its attempts and backoff are polled: what the layers
/// below log is the span's.
pub(crate) struct InSpan<'a>(Option<&'a Span>);

impl<'a> InSpan<'a> {
    #[cold]
    #[inline(never)]
    fn enter(span: &'a Span) -> InSpan<'a> {
        span.with_subscriber(|(id, dispatch)| dispatch.enter(id));
        InSpan(Some(span))
    }
}

impl Drop for InSpan<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(span) = self.0 {
            exit(span);
        }
    }
}

#[cold]
#[inline(never)]
fn exit(span: &Span) {
    span.with_subscriber(|(id, dispatch)| dispatch.exit(id));
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

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;

    /// Wants everything; counts the spans made.
    struct Count(Arc<AtomicUsize>);

    impl tracing::Subscriber for Count {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1 + self.0.fetch_add(1, Ordering::Relaxed) as u64)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn a_static_max_level_below_debug_builds_no_span_even_for_a_listening_subscriber() {
        let spans = Arc::new(AtomicUsize::new(0));
        let _guard = tracing::subscriber::set_default(Count(spans.clone()));
        register();
        // What `max_level_info` / `release_max_level_info` make `STATIC_MAX_LEVEL`.
        assert!(Trace::start_at("t", LevelFilter::INFO).is_none());
        assert!(Trace::start_at("t", LevelFilter::OFF).is_none());
        assert_eq!(spans.load(Ordering::Relaxed), 0);
        // The same subscriber at the default static level gets the span.
        let trace = Trace::start_at("t", LevelFilter::DEBUG).expect("wanted");
        assert!(trace.on());
        assert_eq!(spans.load(Ordering::Relaxed), 1);
    }
}
