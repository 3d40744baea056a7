//! fallback (being written).
