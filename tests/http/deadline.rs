//! Deadlines across services: the server layer hands the incoming budget to the handler, and
//! harden's HTTP preset called from there ends at it, sends what is left on, and never waits past
//! it. In-process under paused time first, then over real HTTP through two hops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use harden::deadline::{Deadline, DeadlineHeader, DeadlineLayer};
use harden::http::{error_response, HttpLayer, HttpLayerBuilder, DEFAULT_RETRY_AFTER_CAP};
use harden::retry::error::RetryAfterTooLong;
use harden::retry::{Backoff, Jitter};
use harden::timeout::error::Elapsed;
use harden::BoxError;
use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};

const BUDGET_HEADER: &str = "x-envoy-expected-rq-timeout-ms";

/// What an in-process upstream saw of each attempt: when, and the budget header.
type Log = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

fn upstream(
    answer: impl Fn(u32) -> Response<()> + Send + Sync + 'static,
    delay: Duration,
) -> (
    impl Service<Request<String>, Response = Response<()>, Error = BoxError, Future = impl Send> + Clone,
    Log,
) {
    let log: Log = Arc::default();
    let l = log.clone();
    let answer = Arc::new(answer);
    let svc = service_fn(move |req: Request<String>| {
        let n = {
            let mut log = l.lock().unwrap();
            let header = req
                .headers()
                .get(BUDGET_HEADER)
                .map(|v| v.to_str().unwrap().to_owned());
            log.push((Instant::now(), header));
            log.len() as u32 - 1
        };
        let answer = answer(n);
        async move {
            tokio::time::sleep(delay).await;
            Ok::<_, BoxError>(answer)
        }
    });
    (svc, log)
}

fn status(code: u16) -> Response<()> {
    Response::builder().status(code).body(()).unwrap()
}

fn preset(backoff: Duration) -> HttpLayerBuilder {
    HttpLayer::builder()
        .max_attempts(3)
        .backoff(
            Backoff::constant(backoff)
                .jitter(Jitter::None)
                .max_delay(DEFAULT_RETRY_AFTER_CAP),
        )
        .no_budget()
}

fn get_req() -> Request<String> {
    Request::get("http://upstream/")
        .body(String::new())
        .unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn the_preset_ends_at_the_deadline_before_its_total_timeout() {
    let (svc, log) = upstream(|_| status(200), Duration::from_secs(20));
    let client = preset(ms(100)).build().unwrap().layer(svc);
    let start = Instant::now();
    let deadline = Deadline::after(ms(800)).unwrap();
    let err = deadline.scope(client.oneshot(get_req())).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), ms(800));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_preset_sends_what_is_left_with_each_attempt() {
    let (svc, log) = upstream(|n| status(if n == 0 { 503 } else { 200 }), ms(50));
    let client = preset(ms(100)).build().unwrap().layer(svc);
    let deadline = Deadline::after(ms(1000)).unwrap();
    let response = deadline.scope(client.oneshot(get_req())).await.unwrap();
    assert_eq!(response.status(), 200);
    let sent: Vec<_> = log.lock().unwrap().iter().map(|(_, h)| h.clone()).collect();
    // The second attempt starts after 50 ms of the first and 100 ms of backoff.
    assert_eq!(sent, [Some("1000".to_owned()), Some("850".to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn the_preset_sends_grpc_timeout_when_asked() {
    let (svc, _log) = upstream(|_| status(200), ms(0));
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let svc = tower::ServiceBuilder::new()
        .map_request(move |req: Request<String>| {
            *s.lock().unwrap() = req.headers().get("grpc-timeout").cloned();
            req
        })
        .service(svc);
    let client = preset(ms(100))
        .deadline_header(DeadlineHeader::GrpcTimeout)
        .build()
        .unwrap()
        .layer(svc);
    let deadline = Deadline::after(ms(250)).unwrap();
    deadline.scope(client.oneshot(get_req())).await.unwrap();
    assert_eq!(seen.lock().unwrap().clone().unwrap(), "250000u");
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_nothing_is_sent() {
    let (svc, log) = upstream(|_| status(200), ms(0));
    let client = preset(ms(100)).build().unwrap().layer(svc);
    client.oneshot(get_req()).await.unwrap();
    assert_eq!(log.lock().unwrap()[0].1, None);
}

#[tokio::test(start_paused = true)]
async fn the_preset_never_backs_off_past_the_deadline() {
    let (svc, log) = upstream(|_| status(503), ms(0));
    let client = preset(ms(500)).build().unwrap().layer(svc);
    let start = Instant::now();
    let deadline = Deadline::after(ms(300)).unwrap();
    let response = deadline.scope(client.oneshot(get_req())).await.unwrap();
    // The upstream's own answer, at once: no sleep into the deadline, no second attempt.
    assert_eq!(response.status(), 503);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_fails_at_once() {
    let (svc, log) = upstream(
        |_| {
            Response::builder()
                .status(503)
                .header("retry-after", "2")
                .body(())
                .unwrap()
        },
        ms(0),
    );
    let client = preset(ms(10)).build().unwrap().layer(svc);
    let start = Instant::now();
    let deadline = Deadline::after(ms(1500)).unwrap();
    let err = deadline.scope(client.oneshot(get_req())).await.unwrap_err();
    let too_long = err
        .downcast_ref::<RetryAfterTooLong>()
        .expect("RetryAfterTooLong");
    assert_eq!(too_long.retry_after(), Duration::from_secs(2));
    assert_eq!(too_long.remaining(), ms(1500));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_made_after_the_deadline_never_leaves() {
    let (svc, log) = upstream(|_| status(200), ms(0));
    let client = preset(ms(10)).build().unwrap().layer(svc);
    let deadline = Deadline::after(ms(100)).unwrap();
    tokio::time::advance(ms(200)).await;
    let err = deadline.scope(client.oneshot(get_req())).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_call_made_in_scope_keeps_its_deadline_when_driven_on_another_task() {
    let (svc, log) = upstream(|n| status(if n == 0 { 503 } else { 200 }), ms(400));
    let mut client = preset(ms(100)).build().unwrap().layer(svc);
    let deadline = Deadline::after(ms(700)).unwrap();
    // The call is made in the scope and its future handed out, to be driven elsewhere.
    #[allow(clippy::async_yields_async)]
    let call = deadline
        .scope(async move {
            client.ready().await.unwrap();
            client.call(get_req())
        })
        .await;
    let start = Instant::now();
    // Driven outside the scope: the retry still sends what is left and ends at the deadline.
    let err = tokio::spawn(call).await.unwrap().unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), ms(700));
    let sent: Vec<_> = log.lock().unwrap().iter().map(|(_, h)| h.clone()).collect();
    // The second attempt starts after 400 ms of the first and 100 ms of backoff.
    assert_eq!(sent, [Some("700".to_owned()), Some("200".to_owned())]);
}

// Two hops over real HTTP: edge → service → upstream, each behind `DeadlineLayer`, each calling
// the next through reqwest behind the preset.

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

type Client = <harden::http::HttpLayer as Layer<reqwest::Client>>::Service;

fn client() -> Client {
    HttpLayer::builder()
        .build()
        .unwrap()
        .layer(harden::reqwest::client_builder().build().unwrap())
}

/// A hop that spends `spend`, then calls `next` and answers with its body (or harden's error
/// answer when the call fails).
fn hop(next: String, spend: Duration) -> Router {
    async fn handler(
        State((next, spend, client)): State<(String, Duration, Client)>,
    ) -> Response<axum::body::Body> {
        tokio::time::sleep(spend).await;
        let request = reqwest::Request::new(reqwest::Method::GET, next.parse().unwrap());
        match client.oneshot(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                Response::builder()
                    .status(status.as_u16())
                    .body(body.into())
                    .unwrap()
            }
            Err(e) => error_response(&*e),
        }
    }
    Router::new()
        .route("/", get(handler))
        .with_state((next, spend, client()))
        .layer(DeadlineLayer::new())
}

/// The last hop: answers with the budget header it received and what its handler had left.
fn last_hop(wait: Duration) -> Router {
    Router::new()
        .route(
            "/",
            get(move |headers: HeaderMap| async move {
                tokio::time::sleep(wait).await;
                let header = headers
                    .get(BUDGET_HEADER)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let left = Deadline::current().map(|d| d.remaining().as_millis());
                format!("{header} {left:?}")
            }),
        )
        .layer(DeadlineLayer::new())
}

#[tokio::test]
async fn the_upstream_sees_the_budget_reduced_by_every_hop() {
    let upstream = serve(last_hop(Duration::ZERO)).await;
    let service = serve(hop(upstream, ms(300))).await;
    let edge = serve(hop(service, ms(300))).await;
    let response = reqwest::Client::new()
        .get(&edge)
        .header(BUDGET_HEADER, "5000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let (header, left) = body.split_once(' ').unwrap();
    let header: u64 = header.parse().unwrap();
    // At least the two hops' 300 ms each were spent before the upstream was called.
    assert!((1..=4400).contains(&header), "{body}");
    assert!(left.starts_with("Some("), "{body}");
}

#[tokio::test]
async fn a_slow_upstream_costs_the_edge_its_budget_not_more() {
    let upstream = serve(last_hop(Duration::from_secs(60))).await;
    let service = serve(hop(upstream, Duration::ZERO)).await;
    let edge = serve(hop(service, Duration::ZERO)).await;
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        reqwest::Client::new()
            .get(&edge)
            .header(BUDGET_HEADER, "500")
            .send(),
    )
    .await
    .expect("the edge answers by its deadline, not after the upstream's minute")
    .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn a_grpc_timeout_is_read_over_http_too() {
    let upstream = serve(last_hop(Duration::ZERO)).await;
    let service = serve(hop(upstream, Duration::ZERO)).await;
    let response = reqwest::Client::new()
        .get(&service)
        .header("grpc-timeout", "2S")
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    let header: u64 = body.split_once(' ').unwrap().0.parse().unwrap();
    assert!((1..=2000).contains(&header), "{body}");
}

#[tokio::test]
async fn the_convenience_client_sends_the_budget_too() {
    let upstream = serve(last_hop(Duration::ZERO)).await;
    let client = harden::reqwest::Client::new(harden::reqwest::client_builder().build().unwrap());
    let service = serve(
        Router::new()
            .route(
                "/",
                get(move || async move {
                    tokio::time::sleep(ms(200)).await;
                    let response = client.get(&upstream).send().await.unwrap();
                    response.text().await.unwrap()
                }),
            )
            .layer(DeadlineLayer::new()),
    )
    .await;
    let body = reqwest::Client::new()
        .get(&service)
        .header(BUDGET_HEADER, "3000")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let header: u64 = body.split_once(' ').unwrap().0.parse().unwrap();
    assert!((1..=2800).contains(&header), "{body}");
}
