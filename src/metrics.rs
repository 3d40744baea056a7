//! Metric names, label values and the glue to the [`metrics`](https://docs.rs/metrics) facade.
//!
//! With the feature `metrics`, every breaker, retry, timeout, bulkhead and fallback layer
//! registers its series once, when it is built, and updates them through the handles; nothing
//! is looked up per call. The crate never installs a recorder: install one (for example
//! `metrics-exporter-prometheus`) and call [`describe`] once to give every series its help text
//! and unit. Without the feature the same calls compile to nothing.
//!
//! Every label has a bounded set of values: names are chosen by the user when building a layer,
//! outcomes and states are the fixed strings in [`labels`].
//!
//! | series | type | labels |
//! |---|---|---|
//! | `harden_circuit_breaker_state` | gauge, one-hot: 1 for the current state, 0 for the others | `breaker`, `state` |
//! | `harden_circuit_breaker_calls_total` | counter | `breaker`, `outcome` = success, failure, ignored, rejected |
//! | `harden_circuit_breaker_slow_calls_total` | counter | `breaker` |
//! | `harden_circuit_breaker_transitions_total` | counter | `breaker`, `from`, `to` |
//! | `harden_circuit_breaker_failure_rate` | gauge, a ratio from 0 to 1 (no unit), as last judged | `breaker` |
//! | `harden_call_duration_seconds` | histogram | `breaker` |
//! | `harden_retry_attempts_total` | counter | `retry`, `outcome` = done, retried, gave_up |
//! | `harden_retry_budget_exhausted_total` | counter | `retry` |
//! | `harden_timeouts_total` | counter | `timeout` |
//! | `harden_bulkhead_in_flight` | gauge | `bulkhead` |
//! | `harden_bulkhead_rejected_total` | counter | `bulkhead` |
//! | `harden_fallbacks_total` | counter | `fallback` |
//! | `harden_chaos_injected_total` | counter | `chaos`, `fault` = error, hang, status, latency |
//! | `harden_chaos_active` | gauge: 1 while the chaos is enabled with a rate above 0 | `chaos` |
//!
//! Register handles after installing the recorder: a layer binds its handles to the recorder
//! installed when it wraps a service (a breaker and a retry policy, when they are built).

use std::sync::Arc;

/// The name of every series.
pub mod names {
    /// Gauge, one-hot per breaker: 1 for the current state, 0 for the others.
    pub const CIRCUIT_BREAKER_STATE: &str = "harden_circuit_breaker_state";
    /// Counter of finished or rejected calls by outcome.
    pub const CIRCUIT_BREAKER_CALLS: &str = "harden_circuit_breaker_calls_total";
    /// Counter of calls slower than the breaker's slow-call threshold.
    pub const CIRCUIT_BREAKER_SLOW_CALLS: &str = "harden_circuit_breaker_slow_calls_total";
    /// Counter of state transitions by `from` and `to`.
    pub const CIRCUIT_BREAKER_TRANSITIONS: &str = "harden_circuit_breaker_transitions_total";
    /// Gauge: failures / calls in the window, as last judged (0..1).
    pub const CIRCUIT_BREAKER_FAILURE_RATE: &str = "harden_circuit_breaker_failure_rate";
    /// Histogram of call durations through a breaker, in seconds.
    pub const CALL_DURATION: &str = "harden_call_duration_seconds";
    /// Counter of attempts by outcome.
    pub const RETRY_ATTEMPTS: &str = "harden_retry_attempts_total";
    /// Counter of retries not made because the retry budget was empty.
    pub const RETRY_BUDGET_EXHAUSTED: &str = "harden_retry_budget_exhausted_total";
    /// Counter of calls that timed out.
    pub const TIMEOUTS: &str = "harden_timeouts_total";
    /// Gauge of calls in flight through a bulkhead.
    pub const BULKHEAD_IN_FLIGHT: &str = "harden_bulkhead_in_flight";
    /// Counter of calls a full bulkhead rejected.
    pub const BULKHEAD_REJECTED: &str = "harden_bulkhead_rejected_total";
    /// Counter of errors turned into responses by a fallback.
    pub const FALLBACKS: &str = "harden_fallbacks_total";

    // ---- chaos (feature "chaos") ----
    /// Counter of faults injected by a chaos layer, by `fault`.
    pub const CHAOS_INJECTED: &str = "harden_chaos_injected_total";
    /// Gauge: 1 while a chaos is enabled with a rate above 0, else 0.
    pub const CHAOS_ACTIVE: &str = "harden_chaos_active";

    /// Every series name above.
    pub const ALL: &[&str] = &[
        CIRCUIT_BREAKER_STATE,
        CIRCUIT_BREAKER_CALLS,
        CIRCUIT_BREAKER_SLOW_CALLS,
        CIRCUIT_BREAKER_TRANSITIONS,
        CIRCUIT_BREAKER_FAILURE_RATE,
        CALL_DURATION,
        RETRY_ATTEMPTS,
        RETRY_BUDGET_EXHAUSTED,
        TIMEOUTS,
        BULKHEAD_IN_FLIGHT,
        BULKHEAD_REJECTED,
        FALLBACKS,
        CHAOS_INJECTED,
        CHAOS_ACTIVE,
    ];
}

/// The fixed label values.
pub mod labels {
    /// Values of the `state`, `from` and `to` labels, in the order of the one-hot gauges.
    pub const STATES: [&str; 5] = ["closed", "open", "half_open", "forced_open", "disabled"];
    /// Values of the breaker's `outcome` label.
    pub const CALL_OUTCOMES: [&str; 4] = ["success", "failure", "ignored", "rejected"];
    /// Values of the retry's `outcome` label: the attempt's result was returned because it was
    /// not retryable (`done`), another attempt follows (`retried`), or it was retryable but
    /// attempts or budget ran out (`gave_up`).
    pub const RETRY_OUTCOMES: [&str; 3] = ["done", "retried", "gave_up"];

    // ---- chaos (feature "chaos") ----
    /// Values of the chaos' `fault` label.
    pub const CHAOS_FAULTS: [&str; 4] = ["error", "hang", "status", "latency"];
}

/// Give every series its help text and unit in the installed recorder.
///
/// Call it once after installing a recorder; without the feature `metrics` it does nothing.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_gauge!(
            names::CIRCUIT_BREAKER_STATE,
            "Circuit breaker state, one-hot: 1 for the current state, 0 for the others"
        );
        describe_counter!(
            names::CIRCUIT_BREAKER_CALLS,
            Unit::Count,
            "Calls through a circuit breaker by outcome"
        );
        describe_counter!(
            names::CIRCUIT_BREAKER_SLOW_CALLS,
            Unit::Count,
            "Calls slower than the circuit breaker's slow-call threshold"
        );
        describe_counter!(
            names::CIRCUIT_BREAKER_TRANSITIONS,
            Unit::Count,
            "Circuit breaker state transitions"
        );
        // A ratio from 0 to 1, so no unit: `Unit::Percent` would read as 0 to 100.
        describe_gauge!(
            names::CIRCUIT_BREAKER_FAILURE_RATE,
            "Failure rate in the rolling window as last judged, a ratio from 0 to 1"
        );
        describe_histogram!(
            names::CALL_DURATION,
            Unit::Seconds,
            "Duration of calls through a circuit breaker"
        );
        describe_counter!(
            names::RETRY_ATTEMPTS,
            Unit::Count,
            "Attempts made by a retry layer by outcome"
        );
        describe_counter!(
            names::RETRY_BUDGET_EXHAUSTED,
            Unit::Count,
            "Retries not made because the retry budget was empty"
        );
        describe_counter!(names::TIMEOUTS, Unit::Count, "Calls that timed out");
        describe_gauge!(
            names::BULKHEAD_IN_FLIGHT,
            Unit::Count,
            "Calls in flight through a bulkhead"
        );
        describe_counter!(
            names::BULKHEAD_REJECTED,
            Unit::Count,
            "Calls rejected by a full bulkhead"
        );
        describe_counter!(
            names::FALLBACKS,
            Unit::Count,
            "Errors turned into responses by a fallback"
        );

        // ---- chaos (feature "chaos") ----
        describe_counter!(
            names::CHAOS_INJECTED,
            Unit::Count,
            "Faults injected by a chaos layer by fault"
        );
        describe_gauge!(
            names::CHAOS_ACTIVE,
            "1 while a chaos layer is enabled with a fault rate above 0"
        );
    }
}

// ---- internal glue: handles that compile to nothing without the feature ----

#[cfg(feature = "metrics")]
pub(crate) use metrics::{Counter, Gauge, Histogram};

#[cfg(not(feature = "metrics"))]
pub(crate) use noop::{Counter, Gauge, Histogram};

#[cfg(not(feature = "metrics"))]
mod noop {
    /// Stands in for `metrics::Counter` when the feature is off.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Counter;
    impl Counter {
        #[inline(always)]
        pub(crate) fn increment(&self, _: u64) {}
    }

    /// Stands in for `metrics::Gauge` when the feature is off.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Gauge;
    impl Gauge {
        #[inline(always)]
        pub(crate) fn set(&self, _: f64) {}
        #[inline(always)]
        pub(crate) fn increment(&self, _: f64) {}
        #[inline(always)]
        pub(crate) fn decrement(&self, _: f64) {}
    }

    /// Stands in for `metrics::Histogram` when the feature is off.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Histogram;
    impl Histogram {
        #[inline(always)]
        // Mirrors `metrics::Histogram`; only code behind feature `metrics` records durations.
        #[allow(dead_code)]
        pub(crate) fn record(&self, _: f64) {}
    }
}

/// A counter that records nothing.
pub(crate) fn noop_counter() -> Counter {
    #[cfg(feature = "metrics")]
    return Counter::noop();
    #[cfg(not(feature = "metrics"))]
    Counter
}

/// Registers a counter with one label; the noop handle without the feature.
#[allow(unused_variables)]
pub(crate) fn counter(name: &'static str, key: &'static str, value: &Arc<str>) -> Counter {
    #[cfg(feature = "metrics")]
    return metrics::counter!(name, key => Arc::clone(value));
    #[cfg(not(feature = "metrics"))]
    Counter
}

/// Registers a counter with two labels whose second value is fixed.
#[allow(unused_variables, dead_code)]
pub(crate) fn counter2(
    name: &'static str,
    key: &'static str,
    value: &Arc<str>,
    key2: &'static str,
    value2: &'static str,
) -> Counter {
    #[cfg(feature = "metrics")]
    return metrics::counter!(name, key => Arc::clone(value), key2 => value2);
    #[cfg(not(feature = "metrics"))]
    Counter
}

/// Registers a gauge with one label.
#[allow(unused_variables, dead_code)]
pub(crate) fn gauge(name: &'static str, key: &'static str, value: &Arc<str>) -> Gauge {
    #[cfg(feature = "metrics")]
    return metrics::gauge!(name, key => Arc::clone(value));
    #[cfg(not(feature = "metrics"))]
    Gauge
}

/// Registers a gauge with two labels whose second value is fixed.
#[allow(unused_variables, dead_code)]
pub(crate) fn gauge2(
    name: &'static str,
    key: &'static str,
    value: &Arc<str>,
    key2: &'static str,
    value2: &'static str,
) -> Gauge {
    #[cfg(feature = "metrics")]
    return metrics::gauge!(name, key => Arc::clone(value), key2 => value2);
    #[cfg(not(feature = "metrics"))]
    Gauge
}

/// Registers a histogram with one label.
#[allow(unused_variables, dead_code)]
pub(crate) fn histogram(name: &'static str, key: &'static str, value: &Arc<str>) -> Histogram {
    #[cfg(feature = "metrics")]
    return metrics::histogram!(name, key => Arc::clone(value));
    #[cfg(not(feature = "metrics"))]
    Histogram
}

/// A bundle of handles as a per-call future carries it: one `Arc` with the feature (one
/// reference count to bump instead of one per handle), the zero-sized bundle itself without.
#[cfg(feature = "metrics")]
pub(crate) type Handles<T> = Arc<T>;
#[cfg(not(feature = "metrics"))]
pub(crate) type Handles<T> = T;

/// Wraps a bundle of handles as [`Handles`].
pub(crate) fn handles<T>(bundle: T) -> Handles<T> {
    #[cfg(feature = "metrics")]
    return Arc::new(bundle);
    #[cfg(not(feature = "metrics"))]
    bundle
}

/// The name a layer reports under until `.name(..)` gives it another.
pub(crate) const DEFAULT_NAME: &str = "default";

/// A name for metric labels, shared without copying.
pub(crate) fn default_name() -> Arc<str> {
    Arc::from(DEFAULT_NAME)
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        for name in names::ALL {
            assert!(name.starts_with("harden_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        let counters = [
            names::CIRCUIT_BREAKER_CALLS,
            names::CIRCUIT_BREAKER_SLOW_CALLS,
            names::CIRCUIT_BREAKER_TRANSITIONS,
            names::RETRY_ATTEMPTS,
            names::RETRY_BUDGET_EXHAUSTED,
            names::TIMEOUTS,
            names::BULKHEAD_REJECTED,
            names::FALLBACKS,
            names::CHAOS_INJECTED,
        ];
        for counter in counters {
            assert!(counter.ends_with("_total"), "{counter}");
        }
    }

    #[test]
    fn describe_without_a_recorder_is_harmless() {
        describe();
    }
}
