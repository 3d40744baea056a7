//! A `reqwest::Client` behind the stack (feature `reqwest`).
