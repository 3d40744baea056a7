//! harden's reqwest client against real axum servers on 127.0.0.1 (ephemeral ports).
//!
//! Real sockets run on real time (paused tokio time would jump to the next timer while a socket
//! waits), so delays are checked with generous bounds on what the server saw, never on speed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use harden::circuit_breaker::State;
use harden::http::{HttpLayer, HttpLayerBuilder};
use harden::reqwest::{Client, ErrorKind};
use harden::retry::Backoff;
use tower::{Layer, ServiceExt};

/// What the upstream saw.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    method: Method,
    body: Bytes,
}

type Answer =
    dyn Fn(u32, &Method, &HeaderMap) -> (StatusCode, Vec<(&'static str, String)>) + Send + Sync;

#[derive(Clone)]
struct Upstream {
    base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

#[derive(Clone)]
struct AppState {
    hits: Arc<Mutex<Vec<Hit>>>,
    answer: Arc<Answer>,
}

async fn handle(
    AxumState(state): AxumState<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = {
        let mut hits = state.hits.lock().unwrap();
        hits.push(Hit {
            at: Instant::now(),
            method: method.clone(),
            body,
        });
        hits.len() as u32 - 1
    };
    let (status, extra) = (state.answer)(n, &method, &headers);
    let mut response = status.into_response();
    for (name, value) in extra {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    response
}

/// An upstream answering request `n` (0-based) with `answer(n, method, headers)`.
async fn upstream(
    answer: impl Fn(u32, &Method, &HeaderMap) -> (StatusCode, Vec<(&'static str, String)>)
        + Send
        + Sync
        + 'static,
) -> Upstream {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let state = AppState {
        hits: hits.clone(),
        answer: Arc::new(answer),
    };
    let app = Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Upstream { base, hits }
}

impl Upstream {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn gap(&self, i: usize) -> Duration {
        let hits = self.hits();
        hits[i + 1].at - hits[i].at
    }
}

fn status(s: StatusCode) -> (StatusCode, Vec<(&'static str, String)>) {
    (s, vec![])
}

/// A preset for tests: short timeouts, a fixed backoff, no budget unless asked.
fn preset(attempts: u32) -> HttpLayerBuilder {
    HttpLayer::builder()
        .total_timeout(Duration::from_secs(20))
        .attempt_timeout(Duration::from_secs(5))
        .max_attempts(attempts)
        .backoff(Backoff::constant(Duration::from_millis(10)).jitter(harden::retry::Jitter::None))
        .no_budget()
}

fn client(preset: HttpLayerBuilder) -> Client {
    Client::builder().preset(preset).build().unwrap()
}

// 1. Outage: opens within volume_threshold + 1 requests, rejects locally, heals.
#[tokio::test]
async fn outage_opens_the_breaker_rejects_locally_and_heals() {
    const VOLUME: u32 = 5;
    const RESET: Duration = Duration::from_millis(300);
    let healthy = Arc::new(AtomicBool::new(false));
    let up = {
        let healthy = healthy.clone();
        upstream(move |_, _, _| {
            status(if healthy.load(Ordering::SeqCst) {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            })
        })
        .await
    };
    let client = client(
        preset(3).breaker(
            HttpLayerBuilder::default_breaker()
                .volume_threshold(VOLUME)
                .error_threshold_percentage(50.0)
                .reset_timeout(RESET),
        ),
    );
    let url: reqwest::Url = up.url("/orders").parse().unwrap();

    let mut answered_by_upstream = 0;
    for _ in 0..=VOLUME {
        match client.get(url.clone()).send().await {
            // A 500 is a response (not retried), and a breaker failure.
            Ok(r) => {
                assert_eq!(r.status(), 500);
                answered_by_upstream += 1;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::CircuitOpen, "{e}"),
        }
    }
    let breaker = client.breaker(&url).unwrap();
    assert_eq!(breaker.state(), State::Open);
    assert!(answered_by_upstream <= VOLUME as usize + 1);
    assert_eq!(up.count(), answered_by_upstream);

    // While open: nothing reaches the upstream; callers get the breaker's answer.
    let before = up.count();
    for _ in 0..20 {
        let e = client.get(url.clone()).send().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CircuitOpen);
        assert!(e.is_rejection());
        assert!(e.retry_after().unwrap() <= RESET);
        assert!(e.to_string().contains("is open: request not sent"), "{e}");
        assert!(e.to_string().contains(&up.base["http://".len()..]), "{e}");
    }
    assert_eq!(up.count(), before);

    // Healed: after the reset timeout a probe goes through and closes the circuit.
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(RESET + Duration::from_millis(200)).await;
    let r = client.get(url.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(up.count(), before + 1);
    for _ in 0..5 {
        assert_eq!(client.get(url.clone()).send().await.unwrap().status(), 200);
    }
}

fn then_ok(
    first: StatusCode,
    retry_after: impl Fn() -> String + Send + Sync + 'static,
) -> impl Fn(u32, &Method, &HeaderMap) -> (StatusCode, Vec<(&'static str, String)>) + Send + Sync + 'static
{
    move |n, _, _| match n {
        0 => (first, vec![("retry-after", retry_after())]),
        _ => status(StatusCode::OK),
    }
}

// 2. Retry-After.
#[tokio::test]
async fn retry_after_seconds_is_waited_for() {
    let up = upstream(then_ok(StatusCode::SERVICE_UNAVAILABLE, || "1".into())).await;
    let r = client(preset(3)).get(up.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 2);
    assert!(up.gap(0) >= Duration::from_secs(1), "{:?}", up.gap(0));
}

#[tokio::test]
async fn retry_after_http_date_is_waited_for() {
    let up = upstream(then_ok(StatusCode::SERVICE_UNAVAILABLE, || {
        httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2))
    }))
    .await;
    let r = client(preset(3)).get(up.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The date has whole seconds: 2 s ahead, truncated, is more than 1 s ahead.
    assert!(up.gap(0) >= Duration::from_secs(1), "{:?}", up.gap(0));
}

#[tokio::test]
async fn retry_after_in_the_past_retries_at_once_and_garbage_uses_the_backoff() {
    // A backoff of 3 s: a past date must not wait for it.
    let slow = preset(3)
        .backoff(Backoff::constant(Duration::from_secs(3)).jitter(harden::retry::Jitter::None));
    let up = upstream(then_ok(StatusCode::TOO_MANY_REQUESTS, || {
        "Sun, 06 Nov 1994 08:49:37 GMT".into()
    }))
    .await;
    let r = client(slow.clone()).get(up.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(up.gap(0) < Duration::from_secs(2), "{:?}", up.gap(0));

    let backoff = preset(3)
        .backoff(Backoff::constant(Duration::from_millis(400)).jitter(harden::retry::Jitter::None));
    let up = upstream(then_ok(StatusCode::SERVICE_UNAVAILABLE, || {
        "in a while".into()
    }))
    .await;
    let r = client(backoff).get(up.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(up.gap(0) >= Duration::from_millis(400), "{:?}", up.gap(0));
}

#[tokio::test]
async fn retry_after_beyond_the_total_timeout_fails_at_once_with_the_servers_delay() {
    let up = upstream(then_ok(StatusCode::SERVICE_UNAVAILABLE, || "120".into())).await;
    let c = client(preset(3).total_timeout(Duration::from_secs(10)));
    let started = Instant::now();
    let e = c.get(up.url("/")).send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RetryAfterTooLong, "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(up.count(), 1);
    // It did not sleep into the deadline.
    assert!(started.elapsed() < Duration::from_secs(12));
    assert!(e.to_string().contains("120s"), "{e}");
}

// 3. Idempotency and replay.
fn always(
    s: StatusCode,
) -> impl Fn(u32, &Method, &HeaderMap) -> (StatusCode, Vec<(&'static str, String)>) + Send + Sync + 'static
{
    move |_, _, _| status(s)
}

#[tokio::test]
async fn post_is_sent_once_unless_it_has_an_idempotency_key() {
    let up = upstream(always(StatusCode::SERVICE_UNAVAILABLE)).await;
    let c = client(preset(3));
    let r = c
        .post(up.url("/charges"))
        .json(&serde_json::json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(up.count(), 1);

    let r = c
        .post(up.url("/charges"))
        .idempotency_key("order-1")
        .json(&serde_json::json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(up.count(), 1 + 3);
    let hits = up.hits();
    assert!(hits[1..]
        .iter()
        .all(|h| h.method == Method::POST && h.body == r#"{"amount":1}"#));
}

#[tokio::test]
async fn put_is_retried() {
    let up = upstream(|n, _, _| {
        status(if n < 2 {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        })
    })
    .await;
    let r = client(preset(3))
        .put(up.url("/item/1"))
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 3);
    assert!(up.hits().iter().all(|h| h.body == "v2"));
}

#[tokio::test]
async fn a_streaming_body_is_sent_once_and_its_503_returned() {
    let up = upstream(always(StatusCode::SERVICE_UNAVAILABLE)).await;
    let chunks = futures::stream::iter(["chunk-1 ", "chunk-2"].map(Ok::<_, std::io::Error>));
    let r = client(preset(3))
        .put(up.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(up.count(), 1);
    assert_eq!(up.hits()[0].body, "chunk-1 chunk-2");
}

#[tokio::test]
async fn reqwest_own_retries_never_multiply_harden_attempts() {
    let eager = || {
        reqwest::Client::builder().retry(
            reqwest::retry::for_host("127.0.0.1")
                .max_retries_per_request(2)
                .classify_fn(|rr| match rr.status() {
                    Some(s) if s == 503 => rr.retryable(),
                    _ => rr.success(),
                }),
        )
    };
    // Control: reqwest alone does retry this 503.
    let up = upstream(always(StatusCode::SERVICE_UNAVAILABLE)).await;
    let bare = eager().build().unwrap();
    assert_eq!(bare.get(up.url("/")).send().await.unwrap().status(), 503);
    assert_eq!(up.count(), 3);

    // Through harden: exactly max_attempts requests.
    let up = upstream(always(StatusCode::SERVICE_UNAVAILABLE)).await;
    let c = Client::builder()
        .reqwest(eager())
        .preset(preset(4))
        .build()
        .unwrap();
    assert_eq!(c.get(up.url("/")).send().await.unwrap().status(), 503);
    assert_eq!(up.count(), 4);

    // The tower path with a client from `client_builder`, the same.
    let up = upstream(always(StatusCode::SERVICE_UNAVAILABLE)).await;
    let svc = preset(4)
        .build()
        .unwrap()
        .layer(harden::reqwest::client_builder().build().unwrap());
    let request = reqwest::Request::new(Method::GET, up.url("/").parse().unwrap());
    assert_eq!(svc.oneshot(request).await.unwrap().status(), 503);
    assert_eq!(up.count(), 4);
}

// 4. 404 and 429.
#[tokio::test]
async fn not_found_is_neither_retried_nor_a_failure() {
    let up = upstream(always(StatusCode::NOT_FOUND)).await;
    let c = client(preset(3));
    let url: reqwest::Url = up.url("/missing").parse().unwrap();
    assert_eq!(c.get(url.clone()).send().await.unwrap().status(), 404);
    assert_eq!(up.count(), 1);
    let stats = c.breaker(&url).unwrap().stats();
    assert_eq!((stats.successes, stats.failures), (1, 0));
}

#[tokio::test]
async fn too_many_requests_follows_its_settings() {
    use harden::circuit_breaker::Outcome;
    use harden::http::{HttpBreakerClassifier, HttpRetryClassifier};
    let throttled = || always(StatusCode::TOO_MANY_REQUESTS);

    // Default: retried, and ignored by the breaker.
    let up = upstream(throttled()).await;
    let c = client(preset(3));
    let url: reqwest::Url = up.url("/").parse().unwrap();
    assert_eq!(c.get(url.clone()).send().await.unwrap().status(), 429);
    assert_eq!(up.count(), 3);
    let stats = c.breaker(&url).unwrap().stats();
    assert_eq!((stats.successes, stats.failures), (0, 0));

    // Not retried, and a breaker failure.
    let up = upstream(throttled()).await;
    let c = client(
        preset(3)
            .retry_classifier(HttpRetryClassifier::new().too_many_requests(false))
            .breaker_classifier(HttpBreakerClassifier::new().too_many_requests(Outcome::Failure)),
    );
    let url: reqwest::Url = up.url("/").parse().unwrap();
    assert_eq!(c.get(url.clone()).send().await.unwrap().status(), 429);
    assert_eq!(up.count(), 1);
    assert_eq!(c.breaker(&url).unwrap().stats().failures, 1);
}

// 5. Keyed breakers.
#[tokio::test]
async fn one_sick_host_opens_only_its_own_breaker() {
    let sick = upstream(always(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let well = upstream(always(StatusCode::OK)).await;
    let c = client(preset(1).breaker(HttpLayerBuilder::default_breaker().volume_threshold(3)));
    for _ in 0..10 {
        let _ = c.get(sick.url("/")).send().await;
        assert_eq!(c.get(well.url("/")).send().await.unwrap().status(), 200);
    }
    let (a, b): (reqwest::Url, reqwest::Url) = (
        sick.url("/").parse().unwrap(),
        well.url("/").parse().unwrap(),
    );
    assert_eq!(c.breaker(&a).unwrap().state(), State::Open);
    assert_eq!(c.breaker(&b).unwrap().state(), State::Closed);
    assert_eq!(well.count(), 10);
    assert!(sick.count() <= 4);
    assert_eq!(c.authorities(), 2);
    assert!(c
        .breaker(&a)
        .unwrap()
        .name()
        .starts_with("http/http://127.0.0.1:"));
}

#[tokio::test]
async fn the_authority_map_stays_within_its_bound() {
    const MAX: usize = 100;
    let c = Client::builder()
        .preset(preset(1).attempt_timeout(Duration::from_secs(2)))
        .max_authorities(MAX)
        .max_labeled_authorities(3)
        .build()
        .unwrap();
    // 10 000 distinct loopback hosts, port 1: each connection is refused at once.
    let urls: Vec<String> = (0..10_000u32)
        .map(|i| {
            format!(
                "http://127.{}.{}.{}:1/",
                1 + i / 65_536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    let mut max_seen = 0;
    let mut sends =
        futures::stream::iter(urls.iter().map(|u| c.get(u).send())).buffer_unordered(64);
    while let Some(result) = sends.next().await {
        let e = result.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Request | ErrorKind::AttemptTimeout),
            "{e}"
        );
        max_seen = max_seen.max(c.authorities());
    }
    assert!(max_seen <= MAX, "{max_seen}");
    assert!(c.authorities() > 0);
    // Labels: the first three authorities by name, the others share one.
    let last: reqwest::Url = urls[9_999].parse().unwrap();
    assert_eq!(c.breaker(&last).unwrap().name(), "http/other");
}

#[tokio::test]
async fn errors_name_the_timeout_that_fired() {
    let up = upstream(always(StatusCode::OK)).await;
    // An upstream that never answers: a listener that accepts nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let c = client(
        preset(2)
            .attempt_timeout(Duration::from_millis(200))
            .total_timeout(Duration::from_secs(10)),
    );
    let e = c.get(&silent_url).send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AttemptTimeout, "{e}");
    assert!(e.to_string().contains("attempt timeout of 200ms"), "{e}");

    let c = client(
        preset(10)
            .attempt_timeout(Duration::from_millis(200))
            .total_timeout(Duration::from_millis(500))
            .breaker(
                HttpLayerBuilder::default_breaker().rolling_window(Duration::from_secs(10), 10),
            ),
    );
    let e = c.get(&silent_url).send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TotalTimeout, "{e}");
    assert!(e.to_string().contains("total timeout of 500ms"), "{e}");
    // And a healthy upstream is still fine.
    assert_eq!(c.get(up.url("/")).send().await.unwrap().status(), 200);
    drop(silent);
}

#[tokio::test]
async fn bad_configuration_is_an_error() {
    let e = Client::builder().max_authorities(0).build().unwrap_err();
    assert_eq!(e.field(), "max_authorities");
    let e = Client::builder()
        .preset(HttpLayer::builder().attempt_timeout(Duration::from_secs(60)))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "attempt_timeout");
    let e = Client::builder()
        .preset(HttpLayer::builder().max_attempts(0))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_attempts");
    let e = Client::builder()
        .preset(HttpLayer::builder().breaker(
            HttpLayerBuilder::default_breaker().rolling_window(Duration::from_secs(5), 10),
        ))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "circuit_breaker");
    let e = client(preset(1)).get("not a url").send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Request);
}

#[tokio::test]
async fn the_client_and_its_futures_can_move_between_threads() {
    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    fn send<T: Send + 'static>(t: T) -> T {
        t
    }
    let up = upstream(always(StatusCode::OK)).await;
    let c = client(preset(1));
    send_sync(&c);
    let task = tokio::spawn(send(c.get(up.url("/")).send()));
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    let e = c.get("http://127.0.0.1:1/").send().await.unwrap_err();
    send_sync(&e);
    let boxed: harden::BoxError = Box::new(e);
    assert!(boxed.to_string().contains("127.0.0.1:1"), "{boxed}");
}

#[tokio::test]
async fn the_total_timeout_bounds_the_backoff_after_a_fast_first_attempt() {
    // The total's timer is made when a retry is due; a backoff past it must still end the call.
    let up = upstream(always(StatusCode::SERVICE_UNAVAILABLE)).await;
    let c = client(
        preset(3)
            .attempt_timeout(Duration::from_millis(200))
            .total_timeout(Duration::from_millis(400))
            .backoff(Backoff::constant(Duration::from_secs(60)).jitter(harden::retry::Jitter::None))
            .breaker(
                HttpLayerBuilder::default_breaker().rolling_window(Duration::from_secs(10), 10),
            ),
    );
    let e = c.get(up.url("/")).send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TotalTimeout, "{e}");
}

#[tokio::test]
async fn without_an_attempt_timeout_the_total_timeout_bounds_the_first_attempt() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let c = client(
        preset(3)
            .attempt_timeout(None)
            .total_timeout(Duration::from_millis(300)),
    );
    let e = c.get(&silent_url).send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TotalTimeout, "{e}");
    drop(silent);
}

#[tokio::test]
async fn a_request_started_while_the_breaker_is_open_is_answered_then_or_sent_once_it_admits() {
    let up = upstream(|_, _, _| status(StatusCode::OK)).await;
    let client = client(preset(3));
    let url = up.url("/stock");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let breaker = client.breaker(&url.parse().unwrap()).unwrap();
    breaker.force_open();

    // Open at the start and at `send`: the breaker's answer, one rejection counted; the same
    // through the plain string, a parsed `Url`, and a form only the full parse reads.
    let upper = url.replacen("http://", "HTTP://", 1);
    let parsed: reqwest::Url = url.parse().unwrap();
    for e in [
        client.get(&url).send().await.unwrap_err(),
        client.get(parsed.clone()).send().await.unwrap_err(),
        client.get(&upper).send().await.unwrap_err(),
        client
            .get(&url)
            .header("x-a", "1")
            .send()
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::CircuitOpen, "{e}");
        assert_eq!(e.authority(), &up.base[..]);
    }
    assert_eq!(breaker.stats().rejections, 4);
    assert_eq!(up.count(), 1);

    // Started while open, sent after the breaker closed: sent as built from the URL given.
    let pending = client.get(format!("{url}?q=1")).header("x-b", "2");
    let bare = client.get(&url);
    breaker.reset();
    assert_eq!(pending.send().await.unwrap().status(), 200);
    assert_eq!(bare.send().await.unwrap().status(), 200);
    assert_eq!(up.count(), 3);
}

// The client reads its shared retry policy in place per request: a retune must still reach it.
#[tokio::test]
async fn a_retune_of_the_clients_policy_changes_its_next_requests() {
    let up = upstream(always(StatusCode::SERVICE_UNAVAILABLE)).await;
    let client = client(preset(3));
    let r = client.get(up.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(up.count(), 3);
    let mut settings = harden::retry::RetrySettings::from(client.retry_policy());
    settings.max_attempts = 2;
    client.retry_policy().retune(&settings).unwrap();
    let r = client.get(up.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(up.count(), 5);
}

// A request started from a plain URL skips reqwest's builder: it must still be the request the
// builder makes (user info as basic auth, builder methods applied, a bad URL reqwest's error).
#[tokio::test]
async fn requests_are_made_as_reqwests_builder_makes_them() {
    let up = upstream(|_, _, headers| {
        let seen = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        // "user:pw" in base64.
        let auth_ok = seen("authorization") == Some("Basic dXNlcjpwdw==");
        let header_ok = seen("x-a") == Some("1");
        status(if auth_ok || header_ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        })
    })
    .await;
    let client = client(preset(1));
    let with_user = up.base.replacen("http://", "http://user:pw@", 1);
    for url in [format!("{with_user}/a"), up.url("/a")] {
        let r = client.get(&url).header("x-a", "1").send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
    let r = client.get(format!("{with_user}/a")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let built = client
        .get(up.url("/a?q=1"))
        .with(|b| b.header("x-b", "2"))
        .build()
        .unwrap();
    assert_eq!(built.url().as_str(), up.url("/a?q=1"));
    assert_eq!(built.headers()["x-b"], "2");
    assert_eq!(up.count(), 3);

    // A host of plain letters that is not a valid IDNA label: reqwest's error, nothing sent.
    let bad = "http://xn--a.test/";
    assert!(reqwest::Client::new().get(bad).build().is_err());
    assert!(client.get(bad).build().is_err());
    assert!(client.get(bad).header("x-a", "1").build().is_err());
    let e = client.get(bad).header("x-a", "1").send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Request, "{e}");
    assert_eq!(client.authorities(), 1);
}

// The client polls the deadline in scope itself: it must still end a slow call, and an
// expired one must answer without sending.
#[tokio::test]
async fn the_deadline_in_scope_ends_the_call_or_stops_it_before_it_is_sent() {
    let up = upstream(|_, _, _| status(StatusCode::OK)).await;
    let slow = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let app = Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            "late"
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    };
    // Timeouts far beyond the deadline: only the deadline can end the slow call in time.
    let client = client(
        preset(1)
            .attempt_timeout(Duration::from_secs(14))
            .total_timeout(Duration::from_secs(20)),
    );
    let scoped = harden::deadline::Deadline::after(Duration::from_millis(200)).unwrap();
    let started = Instant::now();
    let e = scoped.scope(client.get(&slow).send()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AttemptTimeout, "{e}");
    assert!(started.elapsed() < Duration::from_secs(12));

    let expired = harden::deadline::Deadline::at(tokio::time::Instant::now());
    let e = expired
        .scope(client.get(up.url("/")).send())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AttemptTimeout, "{e}");
    assert_eq!(up.count(), 0);
    // Out of the scope, the same request is sent.
    assert_eq!(client.get(up.url("/")).send().await.unwrap().status(), 200);
    assert_eq!(up.count(), 1);
}
