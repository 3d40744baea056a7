//! `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date, read defensively.

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::HeaderMap;

/// Default cap on a server-requested delay: 300 s, Envoy's cap on `Retry-After`-driven
/// back-off (`rate_limited_retry_back_off.max_interval`).
pub const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// The delay a `Retry-After` value asks for, at most `cap`; `None` for a value that is neither
/// delta-seconds nor an HTTP-date.
///
/// Accepted: `delay-seconds` (`1*DIGIT`; any number of digits, saturating), and the three
/// HTTP-date forms through [`httpdate`] (IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, the
/// obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`),
/// with optional surrounding whitespace. A date in the past (or equal to `now`) is
/// `Duration::ZERO`. Never panics, whatever the bytes.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use harden::http::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
/// let cap = Duration::from_secs(300);
/// assert_eq!(parse_retry_after(b"120", now, cap), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after(b"99999999999999999999", now, cap), Some(cap));
/// assert_eq!(parse_retry_after(b"Sun, 06 Nov 1994 08:50:37 GMT", now, cap), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after(b"Sunday, 06-Nov-94 08:49:00 GMT", now, cap), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after(b"soon", now, cap), None);
/// ```
pub fn parse_retry_after(value: &[u8], now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = trim_ows(value);
    if value.is_empty() {
        return None;
    }
    if value.iter().all(u8::is_ascii_digit) {
        let secs = value.iter().fold(0u64, |acc, &d| {
            acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        return Some(Duration::from_secs(secs).min(cap));
    }
    let date = httpdate::parse_http_date(std::str::from_utf8(value).ok()?).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO).min(cap))
}

/// The delay the first `Retry-After` header of `headers` asks for, at most `cap`, judged
/// against the system clock; `None` when there is none or it is garbage.
pub fn retry_after(headers: &HeaderMap, cap: Duration) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?;
    parse_retry_after(value.as_bytes(), SystemTime::now(), cap)
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CAP: Duration = Duration::from_secs(300);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after(b"0", now, CAP), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(b" 7\t", now, CAP),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after(b"301", now, CAP), Some(CAP));
        assert_eq!(parse_retry_after(&[b'9'; 400], now, CAP), Some(CAP));
        for garbage in [
            &b""[..],
            b" ",
            b"-1",
            b"1.5",
            b"+3",
            b"1 2",
            b"0x10",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_retry_after(garbage, now, CAP), None, "{garbage:?}");
        }
    }

    #[test]
    fn the_three_date_forms() {
        // 1994-11-06 08:49:37 UTC, RFC 9110's example date.
        let date = 784_111_777;
        for form in [
            &b"Sun, 06 Nov 1994 08:49:37 GMT"[..],
            b"Sunday, 06-Nov-94 08:49:37 GMT",
            b"Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(form, at(date - 30), CAP),
                Some(Duration::from_secs(30))
            );
            assert_eq!(
                parse_retry_after(form, at(date + 30), CAP),
                Some(Duration::ZERO)
            );
            assert_eq!(parse_retry_after(form, at(date), CAP), Some(Duration::ZERO));
            assert_eq!(parse_retry_after(form, at(date - 3600), CAP), Some(CAP));
        }
        assert_eq!(
            parse_retry_after(b"Sun, 32 Nov 1994 08:49:37 GMT", at(date), CAP),
            None
        );
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic_nor_exceed_the_cap(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            now in 0u64..4_000_000_000,
            cap in 0u64..100_000,
        ) {
            let cap = Duration::from_millis(cap);
            if let Some(d) = parse_retry_after(&bytes, at(now), cap) {
                prop_assert!(d <= cap);
            }
        }

        #[test]
        fn digits_and_dates_never_exceed_the_cap(secs in any::<u64>(), now in 0u64..4_000_000_000) {
            let text = secs.to_string();
            prop_assert!(parse_retry_after(text.as_bytes(), at(now), CAP).unwrap() <= CAP);
            let date = httpdate::fmt_http_date(at(secs % 253_402_300_799));
            prop_assert!(parse_retry_after(date.as_bytes(), at(now), CAP).unwrap() <= CAP);
        }
    }
}
