//! A tonic server with harden's health and graceful shutdown, and a tonic client with a service
//! config retry policy and a breaker, against it while it fails.
//!
//! `cargo run --example grpc` runs both and prints what happened;
//! `cargo run --example grpc -- --serve 0.0.0.0:50051` runs the server alone until SIGTERM
//! (what `examples/k8s/grpc.yaml` deploys).
//!
//! The server answers `/demo.Greeter/SayHello` in phases: healthy, flaky (every other call
//! `UNAVAILABLE`), down (`UNAVAILABLE` to everything), healthy again. Messages are prost
//! derives and the service is written by hand, so no `protoc` is needed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use harden::circuit_breaker::CircuitBreaker;
use harden::deadline::DeadlineLayer;
use harden::health::Health;
use harden::http::HttpLayerBuilder;
use harden::shutdown::Shutdown;
use harden::tonic::{GrpcErrorLayer, GrpcHealth, GrpcLayer};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_prost::ProstCodec;
use tower::{Layer, ServiceBuilder};

#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

const HEALTHY: u32 = 0;
const FLAKY: u32 = 1;
const DOWN: u32 = 2;

/// The greeter; `phase` says how it behaves, `hits` counts the calls that reached it.
#[derive(Clone, Default)]
struct Greeter {
    phase: Arc<AtomicU32>,
    hits: Arc<AtomicU32>,
}

impl NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

impl tower::Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if req.uri().path() != "/demo.Greeter/SayHello" {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let handler = tower::service_fn(move |r: Request<HelloRequest>| {
                let this = this.clone();
                async move {
                    let n = this.hits.fetch_add(1, Ordering::SeqCst);
                    match this.phase.load(Ordering::SeqCst) {
                        FLAKY if n.is_multiple_of(2) => Err(Status::unavailable("flaky")),
                        DOWN => Err(Status::unavailable("down")),
                        _ => Ok(Response::new(HelloReply {
                            message: format!("hello, {}", r.get_ref().name),
                        })),
                    }
                }
            });
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
            Ok(grpc.unary(handler, req).await)
        })
    }
}

/// The server's router: the greeter behind a breaker (answered as statuses), the deadline
/// layer, and `grpc.health.v1` from harden's readiness.
fn router(greeter: Greeter, health: Health, breaker: &CircuitBreaker) -> axum::Router {
    Routes::new(greeter)
        .add_service(
            GrpcHealth::new(health)
                .service("demo.Greeter")
                .into_server(),
        )
        .into_axum_router()
        .layer(
            ServiceBuilder::new()
                .layer(GrpcErrorLayer::new())
                .layer(breaker.layer()),
        )
        .layer(DeadlineLayer::new())
}

const SERVICE_CONFIG: &str = r#"{
  "methodConfig": [{
    "name": [{ "service": "demo.Greeter" }],
    "timeout": "2s",
    "retryPolicy": {
      "maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "0.2s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }],
  "retryThrottling": { "maxTokens": 10, "tokenRatio": 0.5 }
}"#;

async fn say_hello<T>(client: T, name: &str) -> Result<HelloReply, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<harden::BoxError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<harden::BoxError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(client);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.into().to_string()))?;
    let request = Request::new(HelloRequest { name: name.into() });
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static("/demo.Greeter/SayHello"),
        ProstCodec::<HelloRequest, HelloReply>::default(),
    )
    .await
    .map(Response::into_inner)
}

#[tokio::main]
async fn main() -> Result<(), harden::BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let serve = args
        .iter()
        .position(|a| a == "--serve")
        .and_then(|i| args.get(i + 1));
    let breaker = CircuitBreaker::builder().name("greeter").build()?;
    let shutdown = Shutdown::builder()
        .signals(serve.is_some())
        .drain_delay(Duration::from_millis(if serve.is_some() { 0 } else { 300 }))
        .deadline(Duration::from_secs(20))
        .build()?;
    let handle = shutdown.handle();
    let health = Health::builder().shutdown(&handle).build()?;
    let greeter = Greeter::default();
    let app = router(greeter.clone(), health, &breaker);

    if let Some(addr) = serve {
        let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
        println!("serving gRPC on {}", listener.local_addr()?);
        let report = shutdown.serve(listener, app).await?;
        println!("{report}");
        return Ok(());
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(shutdown.serve(listener, app));
    println!("gRPC server on {addr} (HTTP/2 through harden's Shutdown::serve)\n");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let layer = GrpcLayer::builder()
        .service_config_json(SERVICE_CONFIG)
        .breaker(
            HttpLayerBuilder::default_breaker()
                .name("greeter-client")
                .volume_threshold(6)
                .error_threshold_percentage(50.0)
                .reset_timeout(Duration::from_millis(500)),
        )
        .build()?;
    let client = layer.layer(channel.clone());
    let client_breaker = layer.breaker().expect("the layer has a breaker").clone();

    for (phase, name, calls) in [
        (HEALTHY, "healthy", 3),
        (FLAKY, "flaky: every other call UNAVAILABLE", 4),
        (DOWN, "down: UNAVAILABLE to everything", 8),
        (HEALTHY, "healthy again", 3),
    ] {
        greeter.phase.store(phase, Ordering::SeqCst);
        println!("== server {name}");
        if phase == HEALTHY && greeter.hits.load(Ordering::SeqCst) > 0 {
            // Past the client breaker's reset timeout, so a probe is let through.
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        for i in 0..calls {
            let before = greeter.hits.load(Ordering::SeqCst);
            let outcome = match say_hello(client.clone(), &format!("caller {i}")).await {
                Ok(reply) => reply.message,
                Err(status) => {
                    let pushback = status
                        .metadata()
                        .get(harden::tonic::PUSHBACK)
                        .map(|v| format!(", pushback {} ms", v.to_str().unwrap_or("?")))
                        .unwrap_or_default();
                    format!("{:?}: {}{pushback}", status.code(), status.message())
                }
            };
            let reached = greeter.hits.load(Ordering::SeqCst) - before;
            println!(
                "  call {i}: {outcome:<48} attempts reaching the server: {reached}, client breaker: {:?}",
                client_breaker.state()
            );
        }
    }

    let mut health = HealthClient::new(channel);
    let check = || HealthCheckRequest {
        service: "demo.Greeter".into(),
    };
    let status = health.check(check()).await?.into_inner().status();
    println!("\n== grpc.health.v1 before shutdown: {status:?}");
    handle.trigger();
    // Keep-alive is off from the trigger on: the connection above got a GOAWAY, so the probe
    // asks on a new connection, as a Kubernetes probe does (a request racing the GOAWAY is
    // asked again).
    let mut status = None;
    for _ in 0..5 {
        let fresh = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        if let Ok(answer) = HealthClient::new(fresh).check(check()).await {
            status = Some(answer.into_inner().status());
            break;
        }
    }
    let status = status.ok_or("no answer to the health probe during the drain delay")?;
    println!("== grpc.health.v1 once shutdown is triggered: {status:?}");
    let report = server.await??;
    println!("== server stopped: {report}");
    Ok(())
}
