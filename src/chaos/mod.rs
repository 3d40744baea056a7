//! Fault injection (feature `chaos`).
