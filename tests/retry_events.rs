//! The retry's `tracing` span and events (the retry layer's and the gRPC client's), and the
//! attempt count on HTTP responses. A binary of its own: tracing caches per-callsite interest
//! globally, so tests running in parallel without a subscriber could hide these events from the
//! thread-local subscriber installed here.

#[allow(dead_code)]
#[path = "grpc/echo.rs"]
mod echo;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harden::http::{HttpLayer, HttpLayerBuilder, DEFAULT_RETRY_AFTER_CAP};
use harden::retry::{Attempts, Backoff, Jitter, RetryBudget, RetryPolicy};
use harden::BoxError;
use http::{Request, Response};
use tower::{service_fn, Layer, Service, ServiceExt};

/// A span as created: its name and fields, and the fields recorded later.
#[derive(Debug, Clone)]
struct SpanInfo {
    name: &'static str,
    target: &'static str,
    fields: String,
    metadata: &'static tracing::Metadata<'static>,
}

/// An event: its level, `"field=value ..."`, and its parent span.
type Event = (tracing::Level, String, Option<u64>);

/// Every event, and every span.
#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<Event>>>,
    spans: Arc<Mutex<Vec<SpanInfo>>>,
    stack: Arc<Mutex<Vec<u64>>>,
    next: Arc<AtomicU64>,
}

struct Text(String);

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!("{}={} ", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut text = Text(String::new());
        span.record(&mut text);
        let mut spans = self.spans.lock().unwrap();
        spans.push(SpanInfo {
            name: span.metadata().name(),
            target: span.metadata().target(),
            fields: text.0,
            metadata: span.metadata(),
        });
        self.next.fetch_add(1, Ordering::Relaxed);
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut text = Text(String::new());
        values.record(&mut text);
        self.spans.lock().unwrap()[id.into_u64() as usize - 1]
            .fields
            .push_str(&text.0);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        let current = match event.parent() {
            Some(parent) => Some(parent.into_u64()),
            None => self.stack.lock().unwrap().last().copied(),
        };
        self.events
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text.0, current));
    }
    fn enter(&self, id: &tracing::span::Id) {
        self.stack.lock().unwrap().push(id.into_u64());
    }
    fn exit(&self, _: &tracing::span::Id) {
        self.stack.lock().unwrap().pop();
    }
    fn current_span(&self) -> tracing_core::span::Current {
        match self.stack.lock().unwrap().last() {
            Some(&id) => tracing_core::span::Current::new(
                tracing::span::Id::from_u64(id),
                self.spans.lock().unwrap()[id as usize - 1].metadata,
            ),
            None => tracing_core::span::Current::none(),
        }
    }
}

impl Capture {
    /// The events of the span named `retry`, with the span's fields.
    fn retry_events(&self) -> (SpanInfo, Vec<String>) {
        let (id, span) = self.retry_span("harden::retry");
        let events = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, span)| *span == Some(id))
            .map(|(level, text, _)| {
                assert_eq!(*level, tracing::Level::DEBUG, "{text}");
                text.clone()
            })
            .collect();
        (span, events)
    }

    /// The id and fields of the first span named `retry` with target `target`.
    fn retry_span(&self, target: &str) -> (u64, SpanInfo) {
        let spans = self.spans.lock().unwrap().clone();
        let (index, span) = spans
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == "retry" && s.target == target)
            .expect("a retry span");
        (index as u64 + 1, span.clone())
    }

    /// `"field=value ..."` and the parent of every event whose text contains `part`.
    fn events_with(&self, part: &str) -> Vec<(String, Option<u64>)> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|(_, text, _)| text.contains(part))
            .map(|(_, text, parent)| (text.clone(), *parent))
            .collect()
    }
}

fn answer(status: u16, retry_after: Option<&str>) -> Result<Response<()>, BoxError> {
    let mut b = Response::builder().status(status);
    if let Some(v) = retry_after {
        b = b.header(http::header::RETRY_AFTER, v);
    }
    Ok(b.body(())?)
}

/// An in-process upstream answering attempt `n` (from 0) with `script(n)`.
fn upstream(
    script: impl Fn(u32) -> Result<Response<()>, BoxError> + Send + Sync + Clone + 'static,
) -> impl Service<Request<String>, Response = Response<()>, Error = BoxError, Future = impl Send> + Clone
{
    let calls = Arc::new(AtomicU32::new(0));
    service_fn(move |_req: Request<String>| {
        let answer = script(calls.fetch_add(1, Ordering::Relaxed));
        async move { answer }
    })
}

fn preset() -> HttpLayerBuilder {
    HttpLayer::builder()
        .name("inventory")
        .max_attempts(3)
        .backoff(
            Backoff::constant(Duration::from_millis(100))
                .jitter(Jitter::None)
                .max_delay(DEFAULT_RETRY_AFTER_CAP),
        )
        .no_budget()
}

fn get() -> Request<String> {
    Request::get("http://upstream/")
        .body(String::new())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_attempt_is_a_debug_event_in_the_calls_span_with_its_delay_and_why() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let client = preset().build().unwrap().layer(upstream(|n| match n {
        0 => answer(503, Some("7")),
        1 => answer(502, None),
        _ => answer(200, None),
    }));
    let response = client.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(3)));

    let (span, events) = capture.retry_events();
    assert!(span.fields.contains("retry=inventory"), "{span:?}");
    assert!(span.fields.contains("attempts=3"), "{span:?}");
    assert_eq!(events.len(), 3, "{events:?}");
    for (event, want) in events.iter().zip([
        [
            "attempt=1",
            "outcome=HTTP 503 (Retry-After: 7)",
            "delay=7s",
            "reason=retry-after",
            "retry_after=7s",
        ],
        [
            "attempt=2",
            "outcome=HTTP 502",
            "delay=100ms",
            "reason=backoff",
            "message=retrying",
        ],
        ["attempt=3", "outcome=HTTP 200", "message=done", "", ""],
    ]) {
        for part in want {
            assert!(event.contains(part), "{part:?} in {event}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_after_one_attempt_carries_no_attempts_and_reads_as_one() {
    let client = preset()
        .build()
        .unwrap()
        .layer(upstream(|_| answer(404, None)));
    let response = client.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.extensions().get::<Attempts>(), None);
    assert_eq!(Attempts::of(response.extensions()), 1);
}

/// The last event of one call through `client` that fails, and the error.
async fn last_event<S>(client: S) -> (String, BoxError)
where
    S: Service<Request<String>, Response = Response<()>, Error = BoxError>,
{
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let err = client.oneshot(get()).await.unwrap_err();
    let (_, events) = capture.retry_events();
    (events.last().cloned().expect("an event"), err)
}

fn refused() -> Result<Response<()>, BoxError> {
    Err(Box::new(std::io::Error::from(
        std::io::ErrorKind::ConnectionRefused,
    )))
}

#[tokio::test(start_paused = true)]
async fn giving_up_says_why_attempts_budget_and_total_timeout() {
    let (event, _) = last_event(preset().build().unwrap().layer(upstream(|_| refused()))).await;
    assert!(event.contains("attempt=3"), "{event}");
    assert!(event.contains("outcome=transport error: "), "{event}");
    assert!(event.contains("reason=attempts exhausted"), "{event}");

    let empty = RetryBudget::builder()
        .min_retries_per_sec(0)
        .retry_ratio(0.0)
        .burst(0)
        .build()
        .unwrap();
    let client = preset()
        .budget(empty)
        .build()
        .unwrap()
        .layer(upstream(|_| refused()));
    let (event, err) = last_event(client).await;
    assert!(err.is::<harden::retry::error::BudgetExhausted>());
    assert!(event.contains("attempt=1"), "{event}");
    assert!(event.contains("reason=budget exhausted"), "{event}");

    let client = preset()
        .total_timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .layer(upstream(|_| answer(503, Some("45"))));
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let err = client.oneshot(get()).await.unwrap_err();
    assert!(err.is::<harden::retry::error::RetryAfterTooLong>());
    let (_, events) = capture.retry_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("reason=total timeout"), "{events:?}");
    assert!(events[0].contains("Retry-After: 45"), "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn a_plain_retry_layer_names_errors_and_its_policy() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let policy = disk_policy();
    let calls = Arc::new(AtomicU32::new(0));
    let svc = policy.layer().layer(service_fn(move |()| {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        async move {
            match n {
                0 => Err::<u32, BoxError>("flaky".into()),
                _ => Ok(n),
            }
        }
    }));
    assert_eq!(svc.oneshot(()).await.unwrap(), 1);
    let (span, events) = capture.retry_events();
    assert!(span.fields.contains("retry=disk"), "{span:?}");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains("outcome=error: flaky"), "{events:?}");
    assert!(events[0].contains("delay=5ms"), "{events:?}");
    assert!(events[1].contains("outcome=response"), "{events:?}");
}

#[tokio::test]
async fn reqwest_responses_carry_their_attempts() {
    use axum::routing::get;
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let app = axum::Router::new()
        .route("/once", get(|| async { "ok" }))
        .route(
            "/thrice",
            get(move || {
                let n = c.fetch_add(1, Ordering::Relaxed);
                async move {
                    if n < 2 {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            [(axum::http::header::RETRY_AFTER, "0")],
                        )
                            .into_response()
                    } else {
                        "ok".into_response()
                    }
                }
            }),
        );
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = harden::reqwest::Client::new(harden::reqwest::client_builder().build().unwrap());
    let once = client
        .get(format!("http://{addr}/once"))
        .send()
        .await
        .unwrap();
    assert_eq!(once.extensions().get::<Attempts>(), None);
    assert_eq!(Attempts::of(once.extensions()), 1);
    let thrice = client
        .get(format!("http://{addr}/thrice"))
        .send()
        .await
        .unwrap();
    assert_eq!(thrice.status(), 200);
    assert_eq!(thrice.extensions().get::<Attempts>(), Some(&Attempts(3)));
    assert_eq!(Attempts::of(thrice.extensions()), 3);
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn what_an_attempt_logs_is_a_child_of_the_calls_retry_span() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let policy = disk_policy();
    let calls = Arc::new(AtomicU32::new(0));
    let svc = policy.layer().layer(service_fn(move |()| {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        async move {
            tracing::info!(target: "upstream", n, "attempt running");
            tokio::task::yield_now().await;
            tracing::info!(target: "upstream", n, "attempt answering");
            match n {
                0 => Err::<u32, BoxError>("flaky".into()),
                _ => Ok(n),
            }
        }
    }));
    assert_eq!(svc.oneshot(()).await.unwrap(), 1);
    let (id, _) = capture.retry_span("harden::retry");
    let inner = capture.events_with("message=attempt ");
    assert_eq!(inner.len(), 4, "{inner:?}");
    for (text, parent) in inner {
        assert_eq!(parent, Some(id), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_built_before_the_subscriber_is_traced_once_one_listens() {
    let policy = RetryPolicy::builder()
        .name("early")
        .max_attempts(2)
        .no_budget()
        .build()
        .unwrap();
    let mut svc = policy
        .layer()
        .layer(service_fn(|()| async { Ok::<_, BoxError>(7) }));
    assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 7);

    // The retry asks whether anyone listens only when tracing's interest changes: setting a
    // subscriber must reach a service that already answered calls nobody traced.
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), 7);
    let (span, events) = capture.retry_events();
    assert!(span.fields.contains("retry=early"), "{span:?}");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("message=done"), "{events:?}");
}

#[tokio::test]
async fn a_grpc_calls_span_holds_its_attempts_with_pushback_and_backoff() {
    use echo::{serve_tonic, unary_response, Echo, EchoReply};
    use tonic::Status;

    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let echo = Echo::new(|n, _| match n {
        0 => {
            let mut status = Status::unavailable("wait a little");
            status
                .metadata_mut()
                .insert(harden::tonic::PUSHBACK, "5".parse().unwrap());
            Err(status)
        }
        1 => Err(Status::unavailable("still warming up")),
        _ => Ok(EchoReply {
            message: "hi".into(),
        }),
    });
    let layer = harden::tonic::GrpcLayer::builder()
        .service_config_json(
            r#"{"methodConfig":[{"name":[{"service":"test.Echo"}],
                "retryPolicy":{"maxAttempts":3,"initialBackoff":"0.01s","maxBackoff":"0.01s",
                               "backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}"#,
        )
        .no_breaker()
        .build()
        .unwrap();
    let client = layer.layer(serve_tonic(echo).await);
    let response = unary_response(client, "hi").await.unwrap();
    assert_eq!(response.get_ref().message, "hi");
    assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(3)));

    let (id, span) = capture.retry_span("harden::tonic");
    assert!(span.fields.contains("method=/test.Echo/Unary"), "{span:?}");
    assert!(span.fields.contains("attempts=3"), "{span:?}");
    let attempts: Vec<String> = capture
        .events_with("message=grpc attempt")
        .into_iter()
        .map(|(text, parent)| {
            assert_eq!(parent, Some(id), "{text}");
            text
        })
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    for (event, want) in attempts.iter().zip([
        [
            "attempt=1",
            "grpc_status=Some(14)",
            "reason=pushback",
            "delay=Some(5ms)",
        ],
        [
            "attempt=2",
            "grpc_status=Some(14)",
            "reason=backoff",
            "delay=Some(",
        ],
        // An answer's status comes in its trailers: the call is committed to its stream.
        [
            "attempt=3",
            "grpc_status=None",
            "reason=committed",
            "delay=None",
        ],
    ]) {
        for part in want {
            assert!(event.contains(part), "{part:?} in {event}");
        }
    }
}

/// Two attempts 5 ms apart, no budget, named "disk".
fn disk_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .name("disk")
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::from_millis(5)).jitter(Jitter::None))
        .no_budget()
        .build()
        .unwrap()
}
