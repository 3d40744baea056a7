//! A test server: an app with slow and streaming routes, a server on 127.0.0.1:0, raw HTTP/1.1.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use harden::shutdown::{Report, Shutdown, ShutdownHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// `/api/hello`, `/api/slow?ms=N`, `/api/events` (SSE ending on the shutdown token) and the probes.
pub fn app(handle: &ShutdownHandle) -> Router {
    let token = handle.token();
    let health = harden::health::Health::builder()
        .shutdown(handle)
        .build()
        .expect("health");
    Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .route(
            "/api/slow",
            get(|RawQuery(q): RawQuery| async move {
                let ms: u64 = q
                    .as_deref()
                    .and_then(|q| q.strip_prefix("ms="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "slow done"
            }),
        )
        .route(
            "/api/events",
            get(move || {
                let token = token.clone();
                async move {
                    let ticks = futures::stream::unfold(token, |token| async move {
                        tokio::select! {
                            _ = token.cancelled() => None,
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                                Some((Ok::<_, Infallible>(Event::default().data("tick")), token))
                            }
                        }
                    });
                    Sse::new(ticks).into_response()
                }
            }),
        )
        .merge(health.router())
}

pub struct Server {
    pub addr: SocketAddr,
    pub handle: ShutdownHandle,
    pub task: JoinHandle<std::io::Result<Report>>,
}

impl Server {
    /// Waits for `serve` to return, failing the test if it takes more than `limit`.
    pub async fn report(self, limit: Duration) -> Report {
        tokio::time::timeout(limit, self.task)
            .await
            .expect("serve did not return in time")
            .expect("serve panicked")
            .expect("serve failed")
    }
}

pub async fn start(shutdown: Shutdown) -> Server {
    let handle = shutdown.handle();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(&handle);
    let task = tokio::spawn(shutdown.serve(listener, router));
    Server { addr, handle, task }
}

pub async fn wait_in_flight(handle: &ShutdownHandle, n: usize) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while handle.in_flight() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("requests did not arrive");
}

/// A parsed HTTP/1.1 response: status, lower-cased header lines, body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` on a new connection and reads until the server closes it (or, without
/// `Connection: close`, until the `Content-Length` body is in).
pub async fn raw_get(addr: SocketAddr, path: &str) -> std::io::Result<RawResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    raw_get_on(&mut stream, path).await
}

pub async fn raw_get_on(stream: &mut TcpStream, path: &str) -> std::io::Result<RawResponse> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(response) = parse(&buf) {
            return Ok(response);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return parse(&buf).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before a response",
                )
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse(buf: &[u8]) -> Option<RawResponse> {
    let text = std::str::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")?
        .1
        .parse()
        .ok()?;
    (body.len() >= length).then(|| RawResponse {
        status,
        headers,
        body: body[..length].to_owned(),
    })
}
