//! `ErrorResponseLayer` mounted directly on axum routes (no `HandleErrorLayer`), served by a real
//! server on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use harden::bulkhead::BulkheadLayer;
use harden::circuit_breaker::CircuitBreaker;
use harden::http::ErrorResponseLayer;
use harden::timeout::TimeoutLayer;
use harden::BoxError;
use tower::{service_fn, ServiceBuilder};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: String,
}

async fn get_answer(addr: SocketAddr, path: &str) -> Answer {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Answer {
        status: response.status().as_u16(),
        retry_after: header("retry-after"),
        content_type: header("content-type"),
        body: response.text().await.unwrap(),
    }
}

#[tokio::test]
async fn an_open_breaker_is_503_with_retry_after_rounded_up() {
    let breaker = CircuitBreaker::builder()
        .name("reports")
        .volume_threshold(1)
        .reset_timeout(Duration::from_millis(4200))
        .build()
        .unwrap();
    let _ = breaker.call(|| Err::<(), _>("down"));
    let app = Router::new().route(
        "/report",
        get(|| async { "report" }).layer(
            ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(breaker.layer())
                .layer(BulkheadLayer::new(10)),
        ),
    );
    let answer = get_answer(serve(app).await, "/report").await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.retry_after.as_deref(), Some("5"));
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        answer.body,
        r#"{"statusCode":503,"message":"circuit breaker is open","retryAfter":5}"#
    );
}

#[tokio::test]
async fn a_forced_open_breaker_is_503_without_retry_after() {
    let breaker = CircuitBreaker::builder().name("reports").build().unwrap();
    breaker.force_open();
    let app = Router::new().route_service(
        "/report",
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(breaker.layer())
            .service(service_fn(|_req: axum::extract::Request| async {
                Ok::<_, BoxError>(axum::response::Response::new(axum::body::Body::from("ok")))
            })),
    );
    let answer = get_answer(serve(app).await, "/report").await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.retry_after, None);
    assert_eq!(
        answer.body,
        r#"{"statusCode":503,"message":"circuit breaker is open"}"#
    );
}

#[tokio::test]
async fn a_full_bulkhead_is_503_and_a_timeout_is_504() {
    let app = Router::new()
        .route(
            "/busy",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "done"
            })
            .layer(
                ServiceBuilder::new()
                    .layer(ErrorResponseLayer::new())
                    .layer(BulkheadLayer::new(1)),
            ),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            })
            .layer(
                ServiceBuilder::new()
                    .layer(ErrorResponseLayer::new())
                    .layer(TimeoutLayer::new(Duration::from_millis(50))),
            ),
        );
    let addr = serve(app).await;
    let first = tokio::spawn(get_answer(addr, "/busy"));
    // Until the first holds the only slot, a second call may still get in; retry until one is shed.
    let shed = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let answer = get_answer(addr, "/busy").await;
        if answer.status == 503 {
            break answer;
        }
    };
    assert_eq!(
        shed.body,
        r#"{"statusCode":503,"message":"bulkhead is full"}"#
    );
    assert_eq!(shed.retry_after, None);
    assert_eq!(first.await.unwrap().status, 200);

    let late = get_answer(addr, "/slow").await;
    assert_eq!(late.status, 504);
    assert_eq!(
        late.body,
        r#"{"statusCode":504,"message":"request timed out"}"#
    );
}

#[tokio::test]
async fn other_errors_are_500_without_their_message() {
    let app = Router::new().route_service(
        "/boom",
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .service(service_fn(|_req: axum::extract::Request| async {
                Err::<axum::response::Response, BoxError>("password=hunter2 rejected".into())
            })),
    );
    let answer = get_answer(serve(app).await, "/boom").await;
    assert_eq!(answer.status, 500);
    assert_eq!(
        answer.body,
        r#"{"statusCode":500,"message":"internal server error"}"#
    );
}

#[tokio::test]
async fn a_poll_ready_error_becomes_a_response() {
    use std::task::{Context, Poll};
    #[derive(Clone)]
    struct NeverReady;
    impl tower::Service<axum::extract::Request> for NeverReady {
        type Response = axum::response::Response;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Self::Response, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Err(Box::new(
                harden::bulkhead::error::BulkheadFull::default(),
            )))
        }
        fn call(&mut self, _: axum::extract::Request) -> Self::Future {
            unreachable!("not ready")
        }
    }
    let app = Router::new().route_service(
        "/x",
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .service(NeverReady),
    );
    let answer = get_answer(serve(app).await, "/x").await;
    assert_eq!(answer.status, 503);
}
