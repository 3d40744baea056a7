//! The two wire formats of a deadline: gRPC's `grpc-timeout` and a header of milliseconds.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The gRPC deadline header.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Envoy's header: the timeout Envoy's router set for the request, in milliseconds.
pub const ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");

/// Most digits either format accepts: gRPC's `TimeoutValue` is at most 8 digits, and a header of
/// milliseconds is held to the same (27 hours): anything longer is garbage, not a deadline.
const MAX_DIGITS: usize = 8;

fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > MAX_DIGITS {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Reads a `grpc-timeout` value: 1 to 8 ASCII digits and a unit, `H` `M` `S` `m` `u` `n`
/// (hours to nanoseconds). Anything else — a sign, spaces, more digits, another unit — is `None`.
///
/// ```
/// use std::time::Duration;
/// use harden::deadline::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout(b"250m"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(b"-1S"), None);
/// assert_eq!(parse_grpc_timeout(b"123456789S"), None);
/// ```
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, number) = value.split_last()?;
    let n = digits(number)?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Reads a header of whole milliseconds (Envoy's `x-envoy-expected-rq-timeout-ms`): 1 to 8
/// ASCII digits; anything else is `None`.
///
/// ```
/// use std::time::Duration;
/// use harden::deadline::parse_millis;
///
/// assert_eq!(parse_millis(b"1500"), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_millis(b"1.5"), None);
/// ```
pub fn parse_millis(value: &[u8]) -> Option<Duration> {
    digits(value).map(Duration::from_millis)
}

/// `d` as a `grpc-timeout` value: the finest unit whose count fits in 8 digits, rounded down
/// (a deadline sent on must never be later than the one held).
pub fn grpc_timeout_value(d: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let (count, unit) = units
        .iter()
        .map(|&(per, unit)| (nanos / per, unit))
        .find(|&(count, _)| count <= MAX)
        .unwrap_or((MAX, 'H'));
    // At most 8 digits and the unit, written in place: no intermediate `String`.
    let mut buf = [0u8; 9];
    let mut at = buf.len() - 1;
    buf[at] = unit as u8;
    let mut rest = count;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&buf[at..])
        .unwrap_or_else(|_| unreachable!("digits and an ASCII letter"))
}

/// `d` in whole milliseconds (rounded down, at most 8 digits), for a header such as Envoy's.
pub fn millis_value(d: Duration) -> HeaderValue {
    HeaderValue::from(d.as_millis().min(99_999_999) as u64)
}

/// Where a deadline travels on a request: `grpc-timeout`, or a header of milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadlineHeader {
    /// gRPC's `grpc-timeout` (`250m`, `3S`, ...).
    GrpcTimeout,
    /// A header of whole milliseconds, such as [`ENVOY_EXPECTED_RQ_TIMEOUT_MS`].
    Millis(HeaderName),
}

impl DeadlineHeader {
    /// The header's name.
    pub fn name(&self) -> HeaderName {
        match self {
            DeadlineHeader::GrpcTimeout => GRPC_TIMEOUT,
            DeadlineHeader::Millis(name) => name.clone(),
        }
    }

    /// The timeout this header carries in `headers`, if it is there and readable.
    pub fn read(&self, headers: &HeaderMap) -> Option<Duration> {
        match self {
            DeadlineHeader::GrpcTimeout => {
                parse_grpc_timeout(headers.get(GRPC_TIMEOUT)?.as_bytes())
            }
            DeadlineHeader::Millis(name) => parse_millis(headers.get(name)?.as_bytes()),
        }
    }

    /// Writes `remaining` into `headers`, keeping a shorter timeout already there.
    pub fn write(&self, headers: &mut HeaderMap, remaining: Duration) {
        if self.read(headers).is_some_and(|own| own <= remaining) {
            return;
        }
        let value = match self {
            DeadlineHeader::GrpcTimeout => grpc_timeout_value(remaining),
            DeadlineHeader::Millis(_) => millis_value(remaining),
        };
        headers.insert(self.name(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let cases: [(&[u8], Duration); 6] = [
            (b"2H", Duration::from_secs(7200)),
            (b"3M", Duration::from_secs(180)),
            (b"4S", Duration::from_secs(4)),
            (b"5m", Duration::from_millis(5)),
            (b"6u", Duration::from_micros(6)),
            (b"7n", Duration::from_nanos(7)),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_grpc_timeout(value), Some(expected));
        }
        assert_eq!(
            parse_grpc_timeout(b"99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn grpc_timeout_garbage_is_none() {
        for value in [
            &b""[..],
            b"S",
            b"10",
            b"10s",
            b"-10S",
            b"+10S",
            b" 10S",
            b"10S ",
            b"1.5S",
            b"123456789m",
            b"10\xffS",
        ] {
            assert_eq!(parse_grpc_timeout(value), None, "{value:?}");
        }
    }

    #[test]
    fn millis_garbage_is_none() {
        for value in [
            &b""[..],
            b"-1",
            b"1e3",
            b"1.5",
            b"0x10",
            b"123456789",
            b" 1",
        ] {
            assert_eq!(parse_millis(value), None, "{value:?}");
        }
        assert_eq!(parse_millis(b"0"), Some(Duration::ZERO));
    }

    #[test]
    fn grpc_timeout_round_trips_rounded_down() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(99_999_999),
            Duration::from_millis(1500),
            Duration::from_secs(100_000_000),
            Duration::from_secs(99_999_999 * 3600),
            Duration::MAX,
        ] {
            let value = grpc_timeout_value(d);
            let back = parse_grpc_timeout(value.as_bytes()).expect("well formed");
            assert!(back <= d, "{d:?} became {back:?}");
        }
        assert_eq!(grpc_timeout_value(Duration::from_millis(1500)), "1500000u");
    }

    #[test]
    fn write_keeps_a_shorter_timeout() {
        let header = DeadlineHeader::Millis(ENVOY_EXPECTED_RQ_TIMEOUT_MS);
        let mut headers = HeaderMap::new();
        header.write(&mut headers, Duration::from_millis(900));
        assert_eq!(headers[&ENVOY_EXPECTED_RQ_TIMEOUT_MS], "900");
        header.write(&mut headers, Duration::from_secs(5));
        assert_eq!(headers[&ENVOY_EXPECTED_RQ_TIMEOUT_MS], "900");
        header.write(&mut headers, Duration::from_millis(100));
        assert_eq!(headers[&ENVOY_EXPECTED_RQ_TIMEOUT_MS], "100");
    }
}
