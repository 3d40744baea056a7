//! The circuit breaker's `tracing` events. A binary of its own: tracing caches per-callsite
//! interest globally, so tests running in parallel without a subscriber could hide these events
//! from the thread-local subscriber installed here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use harden::circuit_breaker::error::CircuitOpen;
use harden::circuit_breaker::{CircuitBreaker, State};
use tower::{Layer, Service, ServiceExt};

/// Collects `(level, "field=value ...")` of every event.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", field.name(), value));
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(start_paused = true)]
async fn transitions_are_info_events_and_rejections_debug_events() {
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let breaker = CircuitBreaker::builder()
        .name("payments")
        .volume_threshold(2)
        .reset_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut svc = breaker
        .layer()
        .layer(tower::service_fn(|ok: bool| async move {
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::other("no"))
            }
        }));
    for _ in 0..2 {
        svc.ready().await.unwrap().call(false).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
    let err = svc.ready().await.unwrap().call(true).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    let events = events.0.lock().unwrap().clone();
    let info: Vec<_> = events
        .iter()
        .filter(|(l, _)| *l == tracing::Level::INFO)
        .collect();
    assert_eq!(info.len(), 1, "{events:?}");
    assert!(
        info[0].1.contains("breaker=payments")
            && info[0].1.contains("from=Closed")
            && info[0].1.contains("to=Open"),
        "{info:?}"
    );
    assert!(
        events
            .iter()
            .any(|(l, t)| *l == tracing::Level::DEBUG && t.contains("rejected")),
        "{events:?}"
    );
}
