//! HTTP meaning for harden (feature `http`).
