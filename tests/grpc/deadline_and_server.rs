//! Servers: deadlines through two gRPC hops, health during shutdown, GOAWAY at the trigger,
//! errors as statuses, all served by harden's `Shutdown::serve` (HTTP/2) from tonic routes in an
//! axum router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use harden::circuit_breaker::CircuitBreaker;
use harden::deadline::{parse_grpc_timeout, DeadlineLayer};
use harden::health::Health;
use harden::shutdown::Shutdown;
use harden::tonic::{GrpcClient, GrpcErrorLayer, GrpcHealth, GrpcLayer};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Code, Request, Response};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_prost::ProstCodec;
use tower::Layer;

use super::echo::{channel, serve_tonic, unary, Echo, EchoReply, EchoRequest};

/// Serves `router` under harden's graceful shutdown; returns the address and the shutdown.
async fn serve_harden(router: axum::Router, shutdown: Shutdown) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(shutdown.serve(listener, router));
    addr
}

fn shutdown() -> Shutdown {
    Shutdown::builder()
        .signals(false)
        .drain_delay(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A middle hop: spends 300 ms, then calls the upstream through harden and answers with what
/// the upstream answered.
#[derive(Clone)]
struct Middle {
    upstream: GrpcClient<Channel>,
}

impl NamedService for Middle {
    const NAME: &'static str = "test.Echo";
}

impl tower::Service<http::Request<Body>> for Middle {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let upstream = self.upstream.clone();
        Box::pin(async move {
            let svc = tower::service_fn(move |r: Request<EchoRequest>| {
                let upstream = upstream.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    unary(upstream, &r.get_ref().message)
                        .await
                        .map(Response::new)
                }
            });
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            Ok(grpc.unary(svc, req).await)
        })
    }
}

#[tokio::test]
async fn the_upstream_sees_the_budget_reduced_by_each_grpc_hop() {
    let upstream = Echo::new(|_, req| {
        Ok(EchoReply {
            message: req
                .metadata()
                .get("grpc-timeout")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
        })
    });
    let upstream = GrpcLayer::builder()
        .build()
        .unwrap()
        .layer(serve_tonic(upstream).await);
    let router = Routes::new(Middle { upstream })
        .into_axum_router()
        .layer(DeadlineLayer::new());
    let addr = serve_harden(router, shutdown()).await;

    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready().await.unwrap();
    let mut request = Request::new(EchoRequest {
        message: "hi".into(),
    });
    request.set_timeout(Duration::from_secs(2));
    let reply = grpc
        .unary(
            request,
            http::uri::PathAndQuery::from_static("/test.Echo/Unary"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let seen = parse_grpc_timeout(reply.message.as_bytes()).expect("the upstream got a budget");
    // The middle hop spent at least 300 ms of the caller's 2 s.
    assert!(
        !seen.is_zero() && seen <= Duration::from_millis(1700),
        "{seen:?}"
    );
}

#[tokio::test]
async fn health_is_serving_then_not_serving_once_shutdown_starts() {
    let shutdown = shutdown();
    let handle = shutdown.handle();
    let health = Health::builder().shutdown(&handle).build().unwrap();
    let router =
        Routes::new(GrpcHealth::new(health).service("test.Echo").into_server()).into_axum_router();
    let addr = serve_harden(router, shutdown).await;
    let mut client = HealthClient::new(channel(addr).await);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let status = client.check(check("")).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let status = client
        .check(check("test.Echo"))
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    assert_eq!(
        client
            .check(check("other.Service"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    handle.trigger();
    // Still served during the drain delay (the same connection), now NOT_SERVING.
    let status = client.check(check("")).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::NotServing as i32);
}

#[tokio::test]
async fn health_reports_a_critical_breaker_open() {
    let breaker = CircuitBreaker::builder().name("db").build().unwrap();
    let health = Health::builder()
        .critical_breaker(&breaker)
        .build()
        .unwrap();
    let router = Routes::new(GrpcHealth::new(health).into_server()).into_axum_router();
    let addr = serve_harden(router, shutdown()).await;
    let mut client = HealthClient::new(channel(addr).await);
    let request = || HealthCheckRequest {
        service: String::new(),
    };
    let status = client.check(request()).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);
    breaker.force_open();
    let status = client.check(request()).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::NotServing as i32);
}

#[tokio::test]
async fn harden_rejections_reach_grpc_clients_as_statuses() {
    let breaker = CircuitBreaker::builder().name("echo").build().unwrap();
    breaker.force_open();
    let echo = Echo::new(|_, _| {
        Ok(EchoReply {
            message: "never".into(),
        })
    });
    let router = Routes::new(echo.clone()).into_axum_router().layer(
        tower::ServiceBuilder::new()
            .layer(GrpcErrorLayer::new())
            .layer(breaker.layer()),
    );
    let addr = serve_harden(router, shutdown()).await;
    let status = unary(channel(addr).await, "x").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "circuit open");
    assert_eq!(echo.calls.load(std::sync::atomic::Ordering::SeqCst), 0);

    let timeout_router = Routes::new(Echo::slow(Duration::from_secs(5)))
        .into_axum_router()
        .layer(
            tower::ServiceBuilder::new()
                .layer(GrpcErrorLayer::new())
                .layer(harden::timeout::TimeoutLayer::new(Duration::from_millis(
                    50,
                ))),
        );
    let addr = serve_harden(timeout_router, shutdown()).await;
    let status = unary(channel(addr).await, "x").await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
}

/// A unary `/test.Echo/Unary` request as an HTTP/2 client sends it: a length-prefixed message.
fn raw_unary(addr: std::net::SocketAddr) -> (http::Request<()>, bytes::Bytes) {
    let message = prost::Message::encode_to_vec(&EchoRequest {
        message: "in flight".into(),
    });
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = http::Request::post(format!("http://{addr}/test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    (request, frame.into())
}

#[tokio::test]
async fn an_h2_grpc_client_gets_a_goaway_at_the_trigger_and_its_call_in_flight_completes() {
    let (echo, gate) = Echo::gated();
    let shutdown = shutdown();
    let handle = shutdown.handle();
    let addr = serve_harden(Routes::new(echo.clone()).into_axum_router(), shutdown).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let (request, body) = raw_unary(addr);
    let (response, mut stream) = send.send_request(request, false).unwrap();
    stream.send_data(body, true).unwrap();
    while echo.calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    handle.trigger();
    // The GOAWAY arrives with the call still held by the server; the client may open no
    // stream on this connection from then on.
    expect_goaway(&mut send, "no GOAWAY reached the client after the trigger").await;
    let (request, _) = raw_unary(addr);
    assert!(send.send_request(request, true).unwrap_err().is_go_away());

    // The stream in flight was below the GOAWAY's last stream id: it is answered in full.
    gate.add_permits(1);
    let response = response.await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(data) = body.data().await {
        received += data.unwrap().len();
    }
    assert!(received > 5, "a reply message");
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    // Then the server closes the connection cleanly.
    let closed = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the connection closes after its last stream");
    assert!(matches!(closed, Ok(Ok(()))), "{closed:?}");
}

#[tokio::test]
async fn an_h2_grpc_client_that_connects_during_the_drain_delay_is_answered() {
    // A probe that connects after the trigger (Kubernetes opens a connection per gRPC probe)
    // got a GOAWAY before its request and no answer at all.
    let shutdown = shutdown();
    let handle = shutdown.handle();
    let addr = serve_harden(Routes::new(Echo::echoing()).into_axum_router(), shutdown).await;
    handle.trigger();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    // Whatever the server sends first has arrived by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut send = send.ready().await.expect("a stream may be opened");
    let (request, body) = raw_unary(addr);
    let (response, mut stream) = send.send_request(request, false).unwrap();
    stream.send_data(body, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        data.unwrap();
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    // Answered, the client is told to go elsewhere: a GOAWAY after its first response.
    expect_goaway(
        &mut send,
        "no GOAWAY reached the client after its first response",
    )
    .await;
}

/// Waits until the server's GOAWAY (remote, `NO_ERROR`) refuses new streams on `send`;
/// `context` names the moment a failure is about.
async fn expect_goaway(send: &mut h2::client::SendRequest<bytes::Bytes>, context: &str) {
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match std::future::poll_fn(|cx| send.poll_ready(cx)).await {
                Err(e) => break e,
                Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{context}"));
    assert!(refused.is_go_away() && refused.is_remote(), "{refused:?}");
    assert_eq!(refused.reason(), Some(h2::Reason::NO_ERROR));
}
