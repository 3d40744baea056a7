//! A `metrics` recorder for tests whose values can be read at any time (the debugging recorder
//! of `metrics-util` drains on every snapshot). Included with `#[path]` by the tests that need it.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// A recorder whose values can be read without resetting them (the debugging recorder of
/// `metrics-util` drains on every snapshot).
#[derive(Clone)]
pub(crate) struct TestRecorder(Arc<Registry<Key, AtomicStorage>>, Arc<Mutex<Descriptions>>);

/// Unit and help text of every described series, by name.
type Descriptions = HashMap<String, (Option<Unit>, String)>;

impl TestRecorder {
    pub(crate) fn new() -> Self {
        TestRecorder(Arc::new(Registry::atomic()), Arc::default())
    }

    /// The unit and help text `describe_*` gave the series `name`.
    pub(crate) fn description(&self, name: &str) -> Option<(Option<Unit>, String)> {
        self.1.lock().unwrap().get(name).cloned()
    }

    fn describe(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        let entry = (unit, help.into_owned());
        self.1
            .lock()
            .unwrap()
            .insert(name.as_str().to_owned(), entry);
    }

    pub(crate) fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Key> {
        let mut keys = Vec::new();
        let matches = |key: &Key| {
            key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        };
        self.0.visit_counters(|k, _| {
            if matches(k) {
                keys.push(k.clone())
            }
        });
        self.0.visit_gauges(|k, _| {
            if matches(k) {
                keys.push(k.clone())
            }
        });
        self.0.visit_histograms(|k, _| {
            if matches(k) {
                keys.push(k.clone())
            }
        });
        keys
    }

    pub(crate) fn exists(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        !self.find(name, labels).is_empty()
    }

    pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let keys = self.find(name, labels);
        assert_eq!(keys.len(), 1, "{name} {labels:?}: {keys:?}");
        self.0
            .get_counter(&keys[0])
            .map(|c| c.load(Ordering::SeqCst))
            .expect("a counter")
    }

    pub(crate) fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let keys = self.find(name, labels);
        assert_eq!(keys.len(), 1, "{name} {labels:?}: {keys:?}");
        self.0
            .get_gauge(&keys[0])
            .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
            .expect("a gauge")
    }

    pub(crate) fn histogram_len(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        let keys = self.find(name, labels);
        assert_eq!(keys.len(), 1, "{name} {labels:?}: {keys:?}");
        let mut n = 0;
        self.0
            .get_histogram(&keys[0])
            .expect("a histogram")
            .clear_with(|values| n = values.len());
        n
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(name, unit, help);
    }
    fn describe_gauge(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(name, unit, help);
    }
    fn describe_histogram(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(name, unit, help);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}
