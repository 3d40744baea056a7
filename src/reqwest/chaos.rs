//! `reqwest::Response`s for [`harden::chaos`](crate::chaos)'s injected statuses (features
//! `reqwest` and `chaos`).

use crate::chaos::InjectStatus;
use crate::http::HttpResponder;

impl InjectStatus<reqwest::Response> for HttpResponder {
    fn status_response(&self, status: u16) -> Option<reqwest::Response> {
        let mut response = http::Response::new(Vec::<u8>::new());
        *response.status_mut() = crate::http::chaos::status_code(status);
        Some(reqwest::Response::from(response))
    }
}
