//! What a breaker tells the outside world: per-call events to a listener, and metrics.
//!
//! Both cost nothing when unused: without a listener an event is one branch on a `None`; without
//! the feature `metrics` the handles are zero-sized and their calls empty.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use super::State;
use crate::circuit_breaker::Outcome;
use crate::metrics;

/// Something that happened in a breaker, passed to the listener set with
/// [`CircuitBreakerBuilder::on_event`](super::CircuitBreakerBuilder::on_event).
///
/// Borrowed, so reporting it costs no allocation and no clone of the name.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Event<'a> {
    /// The breaker's name.
    pub breaker: &'a str,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A call finished and counted as a success.
    Success,
    /// A call finished and counted as a failure.
    Failure,
    /// A call finished and its outcome was ignored.
    Ignored,
    /// A call finished slower than the slow-call threshold (also reported as its outcome).
    SlowCall,
    /// A call was rejected without reaching the service.
    Rejected {
        /// Time until the next probe, as in [`CircuitOpen::retry_after`](super::error::CircuitOpen::retry_after).
        retry_after: Option<Duration>,
    },
    /// The breaker changed state.
    Transition {
        /// The state it left.
        from: State,
        /// The state it entered.
        to: State,
    },
}

pub(crate) type Listener = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// An optional listener that can sit in a `Debug` + `Clone` configuration.
#[derive(Clone, Default)]
pub(crate) struct ListenerSlot(pub(crate) Option<Listener>);

impl fmt::Debug for ListenerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(Fn(&Event))"
        } else {
            "None"
        })
    }
}

/// Listener and metrics of one breaker.
pub(crate) struct Observe {
    listener: Option<Listener>,
    metrics: BreakerMetrics,
}

struct BreakerMetrics {
    /// Indexed like [`metrics::labels::CALL_OUTCOMES`]: success, failure, ignored, rejected.
    calls: [metrics::Counter; 4],
    slow: metrics::Counter,
    failure_rate: metrics::Gauge,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // see `duration`
    duration: metrics::Histogram,
    /// Indexed like [`metrics::labels::STATES`].
    states: [metrics::Gauge; 5],
    /// `[from][to]`, every pair registered up front so each series starts at 0 (a counter born
    /// at its first increment loses that increment in `rate()`).
    transitions: [[metrics::Counter; 5]; 5],
    name: Arc<str>,
    /// Serialises the one-hot update so the last writer leaves exactly the current state at 1.
    one_hot: Mutex<()>,
}

const REJECTED: usize = 3;

#[allow(unused_variables)]
fn transition_counter(name: &Arc<str>, from: &'static str, to: &'static str) -> metrics::Counter {
    #[cfg(feature = "metrics")]
    return ::metrics::counter!(
        metrics::names::CIRCUIT_BREAKER_TRANSITIONS,
        "breaker" => Arc::clone(name),
        "from" => from,
        "to" => to
    );
    #[cfg(not(feature = "metrics"))]
    metrics::noop_counter()
}

fn state_index(state: State) -> usize {
    match state {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
        State::ForcedOpen => 3,
        State::Disabled => 4,
    }
}

impl Observe {
    pub(crate) fn new(name: &Arc<str>, listener: Option<Listener>) -> Observe {
        let outcome = |value| {
            metrics::counter2(
                metrics::names::CIRCUIT_BREAKER_CALLS,
                "breaker",
                name,
                "outcome",
                value,
            )
        };
        let state = |value| {
            metrics::gauge2(
                metrics::names::CIRCUIT_BREAKER_STATE,
                "breaker",
                name,
                "state",
                value,
            )
        };
        let [success, failure, ignored, rejected] = metrics::labels::CALL_OUTCOMES;
        let [closed, open, half_open, forced_open, disabled] = metrics::labels::STATES;
        let observe = Observe {
            listener,
            metrics: BreakerMetrics {
                calls: [
                    outcome(success),
                    outcome(failure),
                    outcome(ignored),
                    outcome(rejected),
                ],
                slow: metrics::counter(metrics::names::CIRCUIT_BREAKER_SLOW_CALLS, "breaker", name),
                failure_rate: metrics::gauge(
                    metrics::names::CIRCUIT_BREAKER_FAILURE_RATE,
                    "breaker",
                    name,
                ),
                duration: metrics::histogram(metrics::names::CALL_DURATION, "breaker", name),
                states: [
                    state(closed),
                    state(open),
                    state(half_open),
                    state(forced_open),
                    state(disabled),
                ],
                transitions: std::array::from_fn(|from| {
                    std::array::from_fn(|to| {
                        if from == to {
                            return metrics::noop_counter();
                        }
                        transition_counter(
                            name,
                            metrics::labels::STATES[from],
                            metrics::labels::STATES[to],
                        )
                    })
                }),
                name: Arc::clone(name),
                one_hot: Mutex::new(()),
            },
        };
        observe.state_gauges(State::Closed);
        observe
    }

    #[inline]
    fn emit(&self, kind: EventKind) {
        if let Some(listener) = &self.listener {
            listener(&Event {
                breaker: &self.metrics.name,
                kind,
            });
        }
    }

    /// A call finished with `outcome`.
    #[inline]
    pub(crate) fn finished(&self, outcome: Outcome, slow: bool) {
        let (index, kind) = match outcome {
            Outcome::Success => (0, EventKind::Success),
            Outcome::Failure => (1, EventKind::Failure),
            Outcome::Ignored => (2, EventKind::Ignored),
        };
        self.metrics.calls[index].increment(1);
        self.emit(kind);
        if slow {
            self.metrics.slow.increment(1);
            self.emit(EventKind::SlowCall);
        }
    }

    /// A call was rejected: counted here; the event goes out through [`Self::emit_rejected`]
    /// when [`Self::has_listener`].
    #[inline]
    pub(crate) fn rejected(&self) {
        self.metrics.calls[REJECTED].increment(1);
    }

    /// Sends the rejection event to the listener.
    pub(crate) fn emit_rejected(&self, retry_after: Option<Duration>) {
        self.emit(EventKind::Rejected { retry_after });
    }

    /// True if an event listener is set.
    #[inline]
    pub(crate) fn has_listener(&self) -> bool {
        self.listener.is_some()
    }

    /// The failure rate the breaker just judged, 0..1.
    #[inline]
    pub(crate) fn judged(&self, failure_rate: f64) {
        self.metrics.failure_rate.set(failure_rate);
    }

    /// A call's duration, for the latency histogram.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // read by the latency histogram only
    pub(crate) fn duration(&self, duration: Duration) {
        self.metrics.duration.record(duration.as_secs_f64());
    }

    /// The breaker moved `from` → `to`.
    pub(crate) fn transition(&self, from: State, to: State) {
        self.metrics.transitions[state_index(from)][state_index(to)].increment(1);
        self.emit(EventKind::Transition { from, to });
    }

    /// Sets the one-hot state gauges to `current`. Call it with the state read *inside* the
    /// closure the breaker runs under its notification lock, so the last update wins.
    pub(crate) fn state_gauges(&self, current: State) {
        let _serialised = self
            .metrics
            .one_hot
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let on = state_index(current);
        for (i, gauge) in self.metrics.states.iter().enumerate() {
            gauge.set(if i == on { 1.0 } else { 0.0 });
        }
    }
}

impl fmt::Debug for Observe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observe")
            .field("listener", &self.listener.as_ref().map(|_| "Fn(&Event)"))
            .finish_non_exhaustive()
    }
}
