//! HTTP meaning for the breaker's and the retry's classifiers.

use std::error::Error as StdError;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::retry_after::{retry_after, DEFAULT_RETRY_AFTER_CAP};
use crate::circuit_breaker::{BreakerClassifier, Outcome};
use crate::error::is_rejection;
use crate::retry::{RetryClassifier, RetryDecision};
use crate::BoxError;

/// A response with a status and headers: what the HTTP classifiers read. Implemented for
/// `http::Response<B>` and (feature `reqwest`) `reqwest::Response`.
pub trait HttpResponse {
    /// The status code.
    fn status(&self) -> StatusCode;
    /// The headers.
    fn headers(&self) -> &HeaderMap;
    /// The extensions, where the retry puts [`Attempts`](crate::retry::Attempts); `None` (the
    /// default) for a response that has none.
    fn extensions_mut(&mut self) -> Option<&mut http::Extensions> {
        None
    }
}

impl<B> HttpResponse for http::Response<B> {
    fn status(&self) -> StatusCode {
        http::Response::status(self)
    }
    fn headers(&self) -> &HeaderMap {
        http::Response::headers(self)
    }
    fn extensions_mut(&mut self) -> Option<&mut http::Extensions> {
        Some(http::Response::extensions_mut(self))
    }
}

#[cfg(feature = "reqwest")]
impl HttpResponse for reqwest::Response {
    fn status(&self) -> StatusCode {
        reqwest::Response::status(self)
    }
    fn headers(&self) -> &HeaderMap {
        reqwest::Response::headers(self)
    }
    fn extensions_mut(&mut self) -> Option<&mut http::Extensions> {
        Some(reqwest::Response::extensions_mut(self))
    }
}

/// An error the HTTP classifiers can look into: [`BoxError`] (what harden's layers return) and
/// (feature `reqwest`) `reqwest::Error` (what a bare `reqwest::Client` returns).
pub trait HttpError {
    /// The error, as a `std::error::Error`.
    fn as_error(&self) -> &(dyn StdError + 'static);
}

impl HttpError for BoxError {
    fn as_error(&self) -> &(dyn StdError + 'static) {
        &**self
    }
}

#[cfg(feature = "reqwest")]
impl HttpError for reqwest::Error {
    fn as_error(&self) -> &(dyn StdError + 'static) {
        self
    }
}

/// Whether an error is a transport failure worth retrying: an attempt timeout (harden's
/// [`Elapsed`](crate::timeout::error::Elapsed)), a connect, reset or timeout error
/// (`std::io::Error` of kind `ConnectionRefused`, `ConnectionReset`, `ConnectionAborted`,
/// `NotConnected`, `BrokenPipe`, `TimedOut`, `UnexpectedEof` anywhere in the `source()` chain),
/// or (feature `reqwest`) a `reqwest::Error` that is a connect, timeout or send error.
pub fn is_transport_error(err: &(dyn StdError + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<crate::timeout::error::Elapsed>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
            ) {
                return true;
            }
        }
        #[cfg(feature = "reqwest")]
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            if r.is_connect() || r.is_timeout() || r.is_request() {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// Whether the request never left: a `reqwest::Error` from building it (bad URL, bad header).
fn is_local(err: &(dyn StdError + 'static)) -> bool {
    #[cfg(feature = "reqwest")]
    if let Some(r) = err.downcast_ref::<reqwest::Error>() {
        return r.is_builder();
    }
    let _ = err;
    false
}

/// The circuit breaker's HTTP classifier (anchor: .NET's standard resilience handler).
///
/// | outcome | counts as |
/// |---|---|
/// | 5xx, 408 | failure |
/// | 429 | ignored by default (the caller is too fast; the upstream is not sick — Envoy's outlier detection does not count it either); [`too_many_requests`](Self::too_many_requests) |
/// | other statuses (1xx–4xx) | success |
/// | harden's rejections (`CircuitOpen`, `BulkheadFull`) from below | ignored |
/// | a request that could not be built (`reqwest::Error::is_builder`) | ignored |
/// | any other error (connect, reset, timeout, attempt timeout, body) | failure |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpBreakerClassifier {
    too_many_requests: Outcome,
}

impl Default for HttpBreakerClassifier {
    fn default() -> Self {
        HttpBreakerClassifier::new()
    }
}

impl HttpBreakerClassifier {
    /// The classifier of the table above.
    pub const fn new() -> Self {
        HttpBreakerClassifier {
            too_many_requests: Outcome::Ignored,
        }
    }

    /// How a 429 counts (default [`Outcome::Ignored`]).
    #[must_use]
    pub const fn too_many_requests(self, outcome: Outcome) -> Self {
        HttpBreakerClassifier {
            too_many_requests: outcome,
        }
    }

    /// The outcome of a status.
    pub fn status(&self, status: StatusCode) -> Outcome {
        match status.as_u16() {
            429 => self.too_many_requests,
            408 | 500..=599 => Outcome::Failure,
            _ => Outcome::Success,
        }
    }
}

impl<R: HttpResponse, E: HttpError> BreakerClassifier<R, E> for HttpBreakerClassifier {
    #[inline]
    fn classify(&self, result: Result<&R, &E>) -> Outcome {
        match result {
            Ok(response) => self.status(response.status()),
            Err(e) if is_rejection(e.as_error()) || is_local(e.as_error()) => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        }
    }
}

/// The retry's HTTP classifier (anchors: .NET's standard resilience handler, reqwest-retry).
///
/// Retried: 502, 503, 504, 408 and 429 (unless [`too_many_requests`](Self::too_many_requests)
/// is off), after the server's `Retry-After` when it sends a valid one (delta-seconds or an
/// HTTP-date, capped by [`retry_after_cap`](Self::retry_after_cap), default
/// [`DEFAULT_RETRY_AFTER_CAP`] = 300 s; a past date is 0; garbage falls back to the backoff),
/// and [transport errors](is_transport_error). Not retried: every other status (500 included:
/// a server bug is rarely transient) and every other error. Whether a request may be sent again
/// at all (method, body) is the [`HttpReplay`](super::HttpReplay) hook's decision, and the
/// retry itself never retries harden's rejections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRetryClassifier {
    too_many_requests: bool,
    retry_after_cap: Duration,
}

impl Default for HttpRetryClassifier {
    fn default() -> Self {
        HttpRetryClassifier::new()
    }
}

impl HttpRetryClassifier {
    /// The classifier described above.
    pub const fn new() -> Self {
        HttpRetryClassifier {
            too_many_requests: true,
            retry_after_cap: DEFAULT_RETRY_AFTER_CAP,
        }
    }

    /// Whether a 429 is retried (default `true`, after its `Retry-After`).
    #[must_use]
    pub const fn too_many_requests(self, retry: bool) -> Self {
        HttpRetryClassifier {
            too_many_requests: retry,
            ..self
        }
    }

    /// The cap on a server-requested delay (default [`DEFAULT_RETRY_AFTER_CAP`]). The retry's
    /// `max_delay` caps it too.
    #[must_use]
    pub const fn retry_after_cap(self, cap: Duration) -> Self {
        HttpRetryClassifier {
            retry_after_cap: cap,
            ..self
        }
    }

    /// The decision for a response's status and headers.
    pub fn response(&self, status: StatusCode, headers: &HeaderMap) -> RetryDecision {
        match status.as_u16() {
            502 | 503 | 504 | 408 => {}
            429 if self.too_many_requests => {}
            _ => return RetryDecision::DoNotRetry,
        }
        match retry_after(headers, self.retry_after_cap) {
            Some(delay) => RetryDecision::RetryAfter(delay),
            None => RetryDecision::Retry,
        }
    }
}

impl<R: HttpResponse> RetryClassifier<R> for HttpRetryClassifier {
    #[inline]
    fn classify(&self, result: Result<&R, &BoxError>) -> RetryDecision {
        match result {
            Ok(response) if response.status().is_success() => RetryDecision::DoNotRetry,
            Ok(response) => self.response(response.status(), response.headers()),
            Err(e) if is_transport_error(&**e) => RetryDecision::Retry,
            Err(_) => RetryDecision::DoNotRetry,
        }
    }

    /// `HTTP 503` (and its `Retry-After`, if any) for a response; `transport error: ` or
    /// `error: ` and the message for an error.
    fn describe(
        &self,
        result: Result<&R, &BoxError>,
        f: &mut std::fmt::Formatter<'_>,
    ) -> std::fmt::Result {
        match result {
            Ok(response) => {
                write!(f, "HTTP {}", response.status().as_u16())?;
                match response.headers().get(http::header::RETRY_AFTER) {
                    Some(v) => write!(
                        f,
                        " (Retry-After: {})",
                        String::from_utf8_lossy(v.as_bytes())
                    ),
                    None => Ok(()),
                }
            }
            Err(e) if is_transport_error(&**e) => write!(f, "transport error: {e}"),
            Err(e) => write!(f, "error: {e}"),
        }
    }

    /// Puts [`Attempts`](crate::retry::Attempts) in the extensions of a response that took
    /// more than one attempt (absent: one attempt).
    #[inline]
    fn returned(&self, response: &mut R, attempts: u32) {
        if attempts == 1 {
            return;
        }
        if let Some(extensions) = response.extensions_mut() {
            extensions.insert(crate::retry::Attempts(attempts));
        }
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use crate::bulkhead::error::BulkheadFull;
    use crate::circuit_breaker::error::CircuitOpen;

    fn response(status: u16, retry_after: Option<&str>) -> http::Response<()> {
        let mut b = http::Response::builder().status(status);
        if let Some(v) = retry_after {
            b = b.header(http::header::RETRY_AFTER, v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn breaker_table() {
        let c = HttpBreakerClassifier::new();
        let outcome = |s| BreakerClassifier::<_, BoxError>::classify(&c, Ok(&response(s, None)));
        for s in [500, 502, 503, 504, 599, 408] {
            assert_eq!(outcome(s), Outcome::Failure, "{s}");
        }
        for s in [200, 204, 301, 400, 401, 404, 409, 422] {
            assert_eq!(outcome(s), Outcome::Success, "{s}");
        }
        assert_eq!(outcome(429), Outcome::Ignored);
        let strict = c.too_many_requests(Outcome::Failure);
        assert_eq!(
            BreakerClassifier::<_, BoxError>::classify(&strict, Ok(&response(429, None))),
            Outcome::Failure
        );
        let open: BoxError = Box::new(CircuitOpen::new(None));
        let full: BoxError = Box::new(BulkheadFull::new());
        let reset: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let ignored =
            |e: &BoxError| BreakerClassifier::<http::Response<()>, _>::classify(&c, Err(e));
        assert_eq!(ignored(&open), Outcome::Ignored);
        assert_eq!(ignored(&full), Outcome::Ignored);
        assert_eq!(ignored(&reset), Outcome::Failure);
    }

    #[test]
    fn retry_table() {
        let c = HttpRetryClassifier::new();
        let decide = |s, ra| RetryClassifier::classify(&c, Ok(&response(s, ra)));
        for s in [502, 503, 504, 408, 429] {
            assert_eq!(decide(s, None), RetryDecision::Retry, "{s}");
        }
        for s in [200, 201, 400, 404, 500, 501] {
            assert_eq!(decide(s, None), RetryDecision::DoNotRetry, "{s}");
        }
        assert_eq!(
            decide(503, Some("3")),
            RetryDecision::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(decide(503, Some("junk")), RetryDecision::Retry);
        assert_eq!(
            decide(429, Some("Sun, 06 Nov 1994 08:49:37 GMT")),
            RetryDecision::RetryAfter(Duration::ZERO)
        );
        assert_eq!(
            decide(503, Some("100000")),
            RetryDecision::RetryAfter(DEFAULT_RETRY_AFTER_CAP)
        );
        let no429 = c.too_many_requests(false);
        assert_eq!(
            RetryClassifier::classify(&no429, Ok(&response(429, Some("1")))),
            RetryDecision::DoNotRetry
        );
        let err = |e: BoxError| RetryClassifier::<http::Response<()>>::classify(&c, Err(&e));
        assert_eq!(
            err(Box::new(crate::timeout::error::Elapsed::new())),
            RetryDecision::Retry
        );
        assert_eq!(
            err(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused
            ))),
            RetryDecision::Retry
        );
        assert_eq!(err("a bug".into()), RetryDecision::DoNotRetry);
        assert_eq!(
            err(Box::new(std::io::Error::from(
                std::io::ErrorKind::InvalidData
            ))),
            RetryDecision::DoNotRetry
        );
    }
}
