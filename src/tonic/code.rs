//! gRPC status codes: names, numbers, sets, and where a response carries them.

use http::HeaderMap;

pub(crate) use super::names::code_from_name;

/// `grpc-status`, parsed once rather than on every lookup.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// A set of status codes, one bit per code (codes beyond 31 are never members).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CodeSet(u32);

impl CodeSet {
    pub(crate) const fn of(codes: &[tonic::Code]) -> CodeSet {
        let mut bits = 0;
        let mut i = 0;
        while i < codes.len() {
            bits |= 1 << codes[i] as i32;
            i += 1;
        }
        CodeSet(bits)
    }

    pub(crate) fn insert(&mut self, code: i32) {
        if (0..32).contains(&code) {
            self.0 |= 1 << code;
        }
    }

    pub(crate) fn remove(&mut self, code: i32) {
        if (0..32).contains(&code) {
            self.0 &= !(1 << code);
        }
    }

    pub(crate) fn contains(self, code: i32) -> bool {
        (0..32).contains(&code) && self.0 & (1 << code) != 0
    }
}

/// The `grpc-status` in `headers` (trailers, or the headers of a trailers-only answer); a value
/// that is not a number reads as `UNKNOWN`.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    let value = headers.get(GRPC_STATUS)?;
    Some(
        std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .unwrap_or(tonic::Code::Unknown as i32),
    )
}

/// The status of an answer that is not gRPC (no `grpc-status`, HTTP status not 200), as gRPC
/// maps HTTP statuses (`doc/http-grpc-status-mapping.md`).
pub(crate) fn from_http_status(status: http::StatusCode) -> i32 {
    use tonic::Code;
    (match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }) as i32
}

/// The status of an answer whose headers arrived: `Some` for a trailers-only answer (or one
/// that is not gRPC at all), `None` for a stream whose status comes in its trailers.
pub(crate) fn headers_status<B>(response: &http::Response<B>) -> Option<i32> {
    if let Some(code) = grpc_status(response.headers()) {
        return Some(code);
    }
    (response.status() != http::StatusCode::OK).then(|| from_http_status(response.status()))
}

#[cfg(test)]
mod tests {
    use super::super::names::NAMES;
    use super::*;

    #[test]
    fn names_and_numbers_agree_with_tonic() {
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(code_from_name(name), Some(i as i32));
            assert_eq!(tonic::Code::from_i32(i as i32) as i32, i as i32);
        }
        assert_eq!(code_from_name("unavailable"), None);
    }

    #[test]
    fn garbage_status_is_unknown() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(grpc_status(&headers), Some(2));
    }
}
