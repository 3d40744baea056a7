//! Replaying HTTP requests for retries.

use crate::retry::CopyRequest;

use super::idempotency::may_retry;

/// The [`CopyRequest`] hook for HTTP: a request is copied for a retry only when it
/// [may be retried](super::may_retry) (idempotent method, `Idempotency-Key` header or the
/// [`Idempotent`](super::Idempotent) extension) and its body can be replayed. Anything else is
/// sent exactly once and its real response (or error) returned — never a "cannot clone" error.
///
/// - `http::Request<B>` with `B: Clone` (e.g. `Full<Bytes>`, `String`) is cloned;
/// - `reqwest::Request` (feature `reqwest`) is copied with `try_clone`, which is `None` for a
///   streaming body.
///
/// [`HttpReplay::any_method`] drops the method rule, for upstreams whose writes are known to be
/// idempotent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpReplay {
    any_method: bool,
}

impl HttpReplay {
    /// Replays requests that may be retried, when their body can be replayed.
    pub const fn new() -> Self {
        HttpReplay { any_method: false }
    }

    /// Replays every request whose body can be replayed, whatever its method.
    pub const fn any_method() -> Self {
        HttpReplay { any_method: true }
    }
}

impl<B: Clone> CopyRequest<http::Request<B>> for HttpReplay {
    fn copy_request(&self, req: &http::Request<B>) -> Option<http::Request<B>> {
        (self.any_method || may_retry(req.method(), req.headers(), Some(req.extensions())))
            .then(|| req.clone())
    }
}

#[cfg(feature = "reqwest")]
impl CopyRequest<reqwest::Request> for HttpReplay {
    fn copy_request(&self, req: &reqwest::Request) -> Option<reqwest::Request> {
        if self.any_method || may_retry(req.method(), req.headers(), None) {
            req.try_clone()
        } else {
            None
        }
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn copies_what_may_be_retried() {
        let get = http::Request::get("/").body("x".to_string()).unwrap();
        let post = http::Request::post("/").body("x".to_string()).unwrap();
        assert!(HttpReplay::new().copy_request(&get).is_some());
        assert!(HttpReplay::new().copy_request(&post).is_none());
        assert!(HttpReplay::any_method().copy_request(&post).is_some());
        let mut marked = post.clone();
        marked.extensions_mut().insert(super::super::Idempotent);
        let copy = HttpReplay::new().copy_request(&marked).unwrap();
        assert_eq!(copy.method(), Method::POST);
        assert_eq!(copy.body(), "x");
    }

    #[cfg(feature = "reqwest")]
    #[test]
    fn a_reqwest_copy_keeps_every_part() {
        use std::time::Duration;
        let client = reqwest::Client::new();
        let get = client
            .get("http://example.test/a?b=c")
            .header("x-trace", "1")
            .timeout(Duration::from_secs(3))
            .version(http::Version::HTTP_2)
            .build()
            .unwrap();
        let copy = HttpReplay::new().copy_request(&get).unwrap();
        assert_eq!(copy.method(), Method::GET);
        assert_eq!(copy.url(), get.url());
        assert_eq!(copy.headers(), get.headers());
        assert_eq!(copy.timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(copy.version(), http::Version::HTTP_2);
        assert!(copy.body().is_none());

        let put = client
            .put("http://example.test/")
            .body("x")
            .build()
            .unwrap();
        let copy = HttpReplay::new().copy_request(&put).unwrap();
        assert_eq!(
            copy.body().and_then(reqwest::Body::as_bytes),
            Some(&b"x"[..])
        );
        let post = client.post("http://example.test/").build().unwrap();
        assert!(HttpReplay::new().copy_request(&post).is_none());
    }
}
