//! PLACEHOLDER rolling window (naive, locking) used only until the lead's lock-free window lands on
//! `main`; the merge replaces this file wholesale. Same API as the lead's.

use std::sync::Mutex;
use std::time::Duration;

/// What the window covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowSpec {
    /// `buckets` buckets of `window / buckets` each.
    Time { window: Duration, buckets: u32 },
    /// The last `calls` outcomes.
    Count { calls: u32 },
}

/// Totals over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// Outcomes of recent calls.
#[derive(Debug)]
pub(crate) struct Window {
    spec: WindowSpec,
    records: Mutex<Vec<(u64, bool, bool)>>,
}

impl Window {
    pub(crate) fn new(spec: WindowSpec) -> Window {
        Window {
            spec,
            records: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn record(&self, now: u64, failure: bool, slow: bool) {
        let mut r = self.records.lock().unwrap_or_else(|e| e.into_inner());
        r.push((now, failure, slow));
        if let WindowSpec::Count { calls } = self.spec {
            let excess = r.len().saturating_sub(calls as usize);
            r.drain(..excess);
        }
    }

    pub(crate) fn counts(&self, now: u64) -> Counts {
        let r = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let mut c = Counts::default();
        for &(t, failure, slow) in r.iter() {
            if let WindowSpec::Time { window, buckets } = self.spec {
                let width = (window.as_nanos() / u128::from(buckets)) as u64;
                if now / width >= t / width + u64::from(buckets) {
                    continue;
                }
            }
            if failure {
                c.failures += 1;
            } else {
                c.successes += 1;
            }
            if slow {
                c.slow += 1;
            }
        }
        c
    }

    pub(crate) fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        0
    }
}
