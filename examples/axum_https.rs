//! harden's graceful shutdown over HTTPS: a TLS listener over tokio-rustls (HTTP/1.1 and HTTP/2
//! through ALPN) handed to `Shutdown::serve` like a `TcpListener`, with a certificate for
//! `localhost` generated at start (rcgen; a real service loads its own).
//!
//! ```text
//! cargo run --example axum_https -- [--addr 127.0.0.1:8443]
//! curl --cacert target/axum_https.pem https://localhost:8443/api/hello
//! ```
//!
//! The first line on stdout is `listening on https://ADDR`; the certificate is written to
//! `target/axum_https.pem`. SIGTERM or Ctrl-C drains and exits 0, printing the report.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use harden::health::Health;
use harden::shutdown::Shutdown;
use harden::BoxError;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and completes their handshakes on their own tasks, so one slow
/// client never holds the next.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            let _ = stream.set_nodelay(true);
                            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                            Some((tls.await.ok()?.ok()?, addr))
                        });
                    }
                    // A full fd table: wait for some to be closed, as axum does.
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

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8443));
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value.parse()?,
            _ => {
                eprintln!("axum_https: usage: axum_https [--addr 127.0.0.1:8443]");
                std::process::exit(2);
            }
        }
    }

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::create_dir_all("target")?;
    std::fs::write("target/axum_https.pem", certified.cert.pem())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    // ring, as in harden's tests; a real service may prefer rustls' default (aws-lc-rs).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let shutdown = Shutdown::builder().build()?;
    let health = Health::builder().shutdown(&shutdown.handle()).build()?;
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello over https" }))
        .route(
            "/api/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .merge(health.router());

    let listener = TlsListener {
        tcp: TcpListener::bind(addr).await?,
        acceptor: TlsAcceptor::from(Arc::new(config)),
        handshakes: JoinSet::new(),
    };
    println!("listening on https://{}", listener.tcp.local_addr()?);
    println!("certificate: target/axum_https.pem");
    println!("routes: GET /api/hello, GET /api/peer (the client's address), GET /health/live, GET /health/ready");
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let report = shutdown.serve(listener, app).await?;
    println!("shutdown: {report}");
    if report.forced {
        std::process::exit(1);
    }
    Ok(())
}
