//! `grpc.health.v1` answered from [`harden::health`](crate::health).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health as HealthRpc, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::health::Health;

/// Default time between two readiness evaluations of a `Watch` stream: 1 s.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The standard gRPC health service (`grpc.health.v1.Health`, what Kubernetes' native gRPC
/// probes and `grpc_health_probe` call), answering from a [`Health`]'s readiness: `SERVING`
/// when it is ready, `NOT_SERVING` while shutting down, when a critical breaker is open or a
/// check fails. The empty service name is the server as a whole; other names are served when
/// listed with [`service`](Self::service), `NOT_FOUND` otherwise.
///
/// ```
/// use harden::health::Health;
/// use harden::tonic::GrpcHealth;
///
/// let health = Health::builder().build()?;
/// let server = GrpcHealth::new(health).service("helloworld.Greeter").into_server();
/// // `server` is a tonic service: add it to a `tonic::service::Routes`.
/// # let _ = server;
/// # Ok::<(), harden::ConfigError>(())
/// ```
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | services besides `""` | none |
/// | `watch_interval` | [`DEFAULT_WATCH_INTERVAL`] = 1 s |
#[derive(Debug, Clone)]
#[must_use]
pub struct GrpcHealth {
    health: Health,
    services: Arc<Vec<String>>,
    interval: Duration,
}

impl GrpcHealth {
    /// Answers from `health`'s readiness.
    pub fn new(health: Health) -> GrpcHealth {
        GrpcHealth {
            health,
            services: Arc::new(Vec::new()),
            interval: DEFAULT_WATCH_INTERVAL,
        }
    }

    /// Also answer for this service name (`package.Service`), with the server's readiness.
    pub fn service(mut self, name: impl Into<String>) -> GrpcHealth {
        Arc::make_mut(&mut self.services).push(name.into());
        self
    }

    /// How often a `Watch` stream evaluates readiness (zero is taken as 1 ms).
    pub fn watch_interval(mut self, interval: Duration) -> GrpcHealth {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The tonic service.
    pub fn into_server(self) -> HealthServer<GrpcHealth> {
        HealthServer::new(self)
    }

    fn known(&self, service: &str) -> bool {
        service.is_empty() || self.services.iter().any(|s| s == service)
    }

    async fn status(&self) -> ServingStatus {
        if self.health.readiness().await.0.is_success() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

/// The stream of a `Watch` call.
pub type WatchStream =
    Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl HealthRpc for GrpcHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if !self.known(&request.get_ref().service) {
            return Err(Status::not_found("unknown service"));
        }
        Ok(Response::new(answer(self.status().await)))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let known = self.known(&request.get_ref().service);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let this = self.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let status = if known {
                    this.status().await
                } else {
                    ServingStatus::ServiceUnknown
                };
                if last != Some(status) {
                    last = Some(status);
                    // The watcher hung up: stop.
                    if tx.send(Ok(answer(status))).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(this.interval) => {}
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
