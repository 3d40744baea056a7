//! Which requests may be sent more than once.

use http::{HeaderMap, HeaderName, Method};

/// The `Idempotency-Key` header (IETF draft `httpapi-idempotency-key-header`): a request that
/// carries it asks the server to apply it at most once, so harden may retry it whatever its
/// method.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A request extension that opts an `http::Request` into retries whatever its method, without
/// sending a header: `request.extensions_mut().insert(Idempotent)`.
///
/// `reqwest::Request` has no public extensions in reqwest 0.13: use the [`IDEMPOTENCY_KEY`]
/// header there (`harden::reqwest::RequestBuilder::idempotency_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Idempotent;

/// Whether RFC 9110 calls the method idempotent: GET, HEAD, OPTIONS, TRACE, PUT, DELETE.
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a request may be retried: an idempotent method, an [`IDEMPOTENCY_KEY`] header, or
/// (for `http::Request`) the [`Idempotent`] extension.
pub fn may_retry(
    method: &Method,
    headers: &HeaderMap,
    extensions: Option<&http::Extensions>,
) -> bool {
    is_idempotent_method(method)
        || headers.contains_key(IDEMPOTENCY_KEY)
        || extensions.is_some_and(|e| e.get::<Idempotent>().is_some())
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;

    #[test]
    fn idempotent_methods_and_opt_ins() {
        let none = HeaderMap::new();
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(may_retry(&m, &none, None), "{m}");
        }
        for m in [
            Method::POST,
            Method::PATCH,
            Method::CONNECT,
            Method::from_bytes(b"PURGE").unwrap(),
        ] {
            assert!(!may_retry(&m, &none, None), "{m}");
        }
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, "8e03978e".parse().unwrap());
        assert!(may_retry(&Method::POST, &keyed, None));
        let mut ext = http::Extensions::new();
        assert!(!may_retry(&Method::POST, &none, Some(&ext)));
        ext.insert(Idempotent);
        assert!(may_retry(&Method::PATCH, &none, Some(&ext)));
    }
}
