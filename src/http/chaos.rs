//! HTTP responses for [`harden::chaos`](crate::chaos)'s injected statuses (features `http` and
//! `chaos`).

use crate::chaos::{Chaos, ChaosLayer, InjectStatus};

/// Injected statuses are responses with that status and an empty (`Default`) body:
/// `http::Response<B>` (axum handlers and routers, hyper services) and, with the feature
/// `reqwest`, `reqwest::Response`. Made by [`Chaos::http_layer`](crate::chaos::Chaos::http_layer).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpResponder;

pub(crate) fn status_code(status: u16) -> http::StatusCode {
    // Every status stored came from an `http::StatusCode`; 500 is unreachable, not a panic.
    http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}

impl<B: Default> InjectStatus<http::Response<B>> for HttpResponder {
    fn status_response(&self, status: u16) -> Option<http::Response<B>> {
        let mut response = http::Response::new(B::default());
        *response.status_mut() = status_code(status);
        Some(response)
    }
}

impl Chaos {
    /// A layer for HTTP services: an injected status is a response with that status and an
    /// empty body (see [`HttpResponder`]).
    pub fn http_layer(&self) -> ChaosLayer<HttpResponder> {
        self.layer().respond_with(HttpResponder)
    }
}
