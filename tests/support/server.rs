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

/// Size of `/api/big`'s body: more than the socket buffers hold.
pub const BIG: usize = 8 << 20;

/// `/api/hello`, `/api/slow?ms=N`, `/api/big` (8 MiB), `/api/events` (SSE ending on the
/// shutdown token) and the probes.
pub fn app(handle: &ShutdownHandle) -> Router {
    let token = handle.token();
    let health = harden::health::Health::builder()
        .shutdown(handle)
        .build()
        .expect("health");
    Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .route("/api/big", get(|| async { vec![b'x'; BIG] }))
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

pub async fn raw_get_on<S>(stream: &mut S, path: &str) -> std::io::Result<RawResponse>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
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

/// Parses a whole response (head and `Content-Length` body).
pub fn parse(buf: &[u8]) -> Option<RawResponse> {
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

/// HTTPS for the tests: a self-signed certificate made now, a TLS listener for
/// `Shutdown::serve`, and a client that trusts that certificate.
pub mod tls {
    use std::io;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinSet;
    use tokio_rustls::rustls::pki_types::{
        CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
    };
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

    /// A certificate for `localhost` and its key.
    pub fn certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = PrivatePkcs8KeyDer::from(signing_key.serialize_der());
        (cert.der().clone(), PrivateKeyDer::Pkcs8(key))
    }

    // ring rather than aws-lc-rs (rustls' default, which builds a C library): enough for a
    // test certificate.
    #[allow(deprecated)]
    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Accepts TCP connections and completes their handshakes on their own tasks, so a slow
    /// handshake never holds the next one.
    pub struct TlsListener {
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        handshakes: JoinSet<Option<(server::TlsStream<TcpStream>, SocketAddr)>>,
    }

    impl TlsListener {
        pub fn new(
            tcp: TcpListener,
            cert: CertificateDer<'static>,
            key: PrivateKeyDer<'static>,
        ) -> Self {
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            TlsListener {
                tcp,
                acceptor: TlsAcceptor::from(Arc::new(config)),
                handshakes: JoinSet::new(),
            }
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = server::TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                tokio::select! {
                    accepted = self.tcp.accept() => match accepted {
                        Ok((stream, addr)) => {
                            let acceptor = self.acceptor.clone();
                            self.handshakes.spawn(async move {
                                let _ = stream.set_nodelay(true);
                                let handshake = acceptor.accept(stream);
                                let tls = tokio::time::timeout(Duration::from_secs(10), handshake).await.ok()?.ok()?;
                                Some((tls, addr))
                            });
                        }
                        Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    },
                    Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                        if let Ok(Some(connection)) = done {
                            return connection;
                        }
                    }
                }
            }
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.tcp.local_addr()
        }
    }

    /// A TLS connection to `addr` that trusts only `cert`, speaking HTTP/1.1.
    pub async fn connect(
        addr: SocketAddr,
        cert: &CertificateDer<'static>,
    ) -> client::TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }
}
