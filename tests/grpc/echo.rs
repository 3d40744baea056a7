//! A tonic service written by hand (what tonic-build would generate), with prost messages.
//! Shared by the tests and `benches/grpc.rs` (`#[path]`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::codegen::tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoRequest {
    #[prost(string, tag = "1")]
    pub(crate) message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoReply {
    #[prost(string, tag = "1")]
    pub(crate) message: String,
}

type Behaviour = dyn Fn(u32, &Request<EchoRequest>) -> Result<EchoReply, Status> + Send + Sync;

/// `/test.Echo/Unary` answers call `n` with `behaviour(n, request)`; `/test.Echo/Stream` sends
/// `count` messages, then ends with `behaviour`'s status.
#[derive(Clone)]
pub(crate) struct Echo {
    behaviour: Arc<Behaviour>,
    delay: Duration,
    /// When set, a unary call waits for a permit before it answers.
    gate: Option<Arc<tokio::sync::Semaphore>>,
    pub(crate) calls: Arc<AtomicU32>,
    pub(crate) stream_calls: Arc<AtomicU32>,
}

impl Echo {
    pub(crate) fn new(
        behaviour: impl Fn(u32, &Request<EchoRequest>) -> Result<EchoReply, Status>
            + Send
            + Sync
            + 'static,
    ) -> Echo {
        Echo {
            behaviour: Arc::new(behaviour),
            delay: Duration::ZERO,
            gate: None,
            calls: Arc::default(),
            stream_calls: Arc::default(),
        }
    }

    /// Answers each call with its own message.
    pub(crate) fn echoing() -> Echo {
        Echo::new(|_, r| {
            Ok(EchoReply {
                message: r.get_ref().message.clone(),
            })
        })
    }

    /// Answers after `delay`.
    pub(crate) fn slow(delay: Duration) -> Echo {
        Echo {
            delay,
            ..Echo::echoing()
        }
    }

    /// Echoes once the returned semaphore gives each call a permit.
    pub(crate) fn gated() -> (Echo, Arc<tokio::sync::Semaphore>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let echo = Echo {
            gate: Some(gate.clone()),
            ..Echo::echoing()
        };
        (echo, gate)
    }
}

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            Ok(match req.uri().path() {
                "/test.Echo/Unary" => {
                    let svc = tower::service_fn(move |r: Request<EchoRequest>| {
                        let this = this.clone();
                        async move {
                            let n = this.calls.fetch_add(1, Ordering::SeqCst);
                            if !this.delay.is_zero() {
                                tokio::time::sleep(this.delay).await;
                            }
                            if let Some(gate) = &this.gate {
                                gate.acquire().await.unwrap().forget();
                            }
                            (this.behaviour)(n, &r).map(Response::new)
                        }
                    });
                    grpc.unary(svc, req).await
                }
                "/test.Echo/Stream" => {
                    let svc = tower::service_fn(move |r: Request<EchoRequest>| {
                        let this = this.clone();
                        async move {
                            let n = this.stream_calls.fetch_add(1, Ordering::SeqCst);
                            let count: u32 = r.get_ref().message.parse().unwrap_or(0);
                            let end = (this.behaviour)(n, &r);
                            let mut items: Vec<Result<EchoReply, Status>> = (0..count)
                                .map(|i| {
                                    Ok(EchoReply {
                                        message: i.to_string(),
                                    })
                                })
                                .collect();
                            if let Err(status) = end {
                                items.push(Err(status));
                            }
                            let stream: Pin<
                                Box<dyn futures::Stream<Item = Result<EchoReply, Status>> + Send>,
                            > = Box::pin(futures::stream::iter(items));
                            Ok::<_, Status>(Response::new(stream))
                        }
                    });
                    grpc.server_streaming(svc, req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// Serves `echo` with tonic's own server on 127.0.0.1 and connects a channel to it.
pub(crate) async fn serve_tonic(echo: Echo) -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(echo)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    channel(addr).await
}

pub(crate) async fn channel(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A unary call through any gRPC transport (a channel, or one wrapped in harden).
pub(crate) async fn unary<T>(transport: T, message: &str) -> Result<EchoReply, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<harden::BoxError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<harden::BoxError> + Send,
{
    unary_response(transport, message)
        .await
        .map(Response::into_inner)
}

/// [`unary`], keeping the response (its extensions).
pub(crate) async fn unary_response<T>(
    transport: T,
    message: &str,
) -> Result<Response<EchoReply>, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<harden::BoxError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<harden::BoxError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(transport);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.into().to_string()))?;
    let request = Request::new(EchoRequest {
        message: message.into(),
    });
    let codec = ProstCodec::<EchoRequest, EchoReply>::default();
    grpc.unary(
        request,
        PathAndQuery::from_static("/test.Echo/Unary"),
        codec,
    )
    .await
}

/// A server-streaming call asking for `count` messages.
pub(crate) async fn stream<T>(transport: T, count: u32) -> Result<Streaming<EchoReply>, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<harden::BoxError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<harden::BoxError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(transport);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.into().to_string()))?;
    let request = Request::new(EchoRequest {
        message: count.to_string(),
    });
    let codec = ProstCodec::<EchoRequest, EchoReply>::default();
    grpc.server_streaming(
        request,
        PathAndQuery::from_static("/test.Echo/Stream"),
        codec,
    )
    .await
    .map(Response::into_inner)
}
