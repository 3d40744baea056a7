//! The one time source of the crate.
//!
//! Every duration the crate judges (rolling windows, reset timeouts, half-open bounds, slow calls)
//! is read from a [`Clock`]. Two flavours, chosen at compile time:
//!
//! - default: on Linux `CLOCK_MONOTONIC_COARSE` (several times cheaper to read than
//!   `Instant::now()`, with the kernel tick as resolution, 1–4 ms); elsewhere `std::time::Instant`.
//! - feature `test-util`: `tokio::time::Instant`, so `tokio::time::pause()` and `advance()` move
//!   the crate's time too and time-dependent tests run instantly and deterministically.
//!
//! Readings are nanoseconds since the clock's origin, as `u64` (584 years of range).

#[cfg(feature = "test-util")]
pub(crate) type Instant = tokio::time::Instant;
#[cfg(not(feature = "test-util"))]
#[cfg_attr(all(not(feature = "metrics"), target_os = "linux"), allow(dead_code))] // see `precise`
pub(crate) type Instant = std::time::Instant;

/// A cheap monotonic clock; `Copy`, read with [`Clock::now`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    #[cfg(any(feature = "test-util", not(target_os = "linux")))]
    origin: Instant,
}

impl Clock {
    /// A clock whose readings start near zero now.
    pub(crate) fn new() -> Self {
        Clock {
            #[cfg(any(feature = "test-util", not(target_os = "linux")))]
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since an origin fixed before this clock was created; never decreases.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        #[cfg(any(feature = "test-util", not(target_os = "linux")))]
        {
            duration_to_nanos(Instant::now().saturating_duration_since(self.origin))
        }
        #[cfg(all(not(feature = "test-util"), target_os = "linux"))]
        {
            let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
            // Monotonic clocks never report negative fields.
            (ts.tv_sec as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(ts.tv_nsec as u64)
        }
    }

    /// A precise instant, for latency histograms; follows paused tokio time with `test-util`.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // read by the latency histogram only
    pub(crate) fn precise() -> Instant {
        Instant::now()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Saturating conversion of a duration to nanoseconds in a `u64`.
#[inline]
pub(crate) fn duration_to_nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn never_decreases() {
        let clock = Clock::new();
        let mut last = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }

    #[cfg(feature = "test-util")]
    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = Clock::new();
        let start = clock.now();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.now() - start, 5_000_000_000);
    }

    #[test]
    fn conversion_saturates() {
        assert_eq!(duration_to_nanos(Duration::MAX), u64::MAX);
        assert_eq!(duration_to_nanos(Duration::from_millis(3)), 3_000_000);
    }
}
