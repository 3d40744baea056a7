//! gRPC's status code names by number. Free of any dependency: the simulator (`sim/`) includes
//! this file as well (`#[path]`), as it reads traces without harden's `tonic` feature.

/// The names of gRPC's status codes, by number.
pub(crate) const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A status code's number from its name (`"UNAVAILABLE"`), as a service config spells it.
pub(crate) fn code_from_name(name: &str) -> Option<i32> {
    NAMES.iter().position(|n| *n == name).map(|i| i as i32)
}
