//! The one transport error scene 2 resends on (`tests/contrib/demo_closed.rs` checks it).

/// Whether a request failed because its keep-alive connection was closed before any answer
/// (hyper's "connection closed before message completed"), the one error a resend may fix.
pub(crate) fn closed_under_it(err: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            return e.is_incomplete_message();
        }
        source = e.source();
    }
    false
}
