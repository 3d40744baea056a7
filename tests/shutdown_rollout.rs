//! Keep-alive and reconnecting clients across a real SIGTERM: a request written to the server is
//! answered, or counted in the report. Alone in its test binary, because the signal goes to the
//! whole process.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use harden::shutdown::Shutdown;
use support::server::start;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const POLITE: usize = 16;
const RECONNECTING: usize = 16;
const LIMIT: Duration = Duration::from_secs(60);

/// Writes `GET path`; `Ok(None)` when it could not be written, `Ok(Some(close))` when answered,
/// `Err` when written and never answered.
async fn request(stream: &mut TcpStream, path: &str) -> Result<Option<bool>, std::io::Error> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return Ok(None);
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(response) = support::server::parse(&buf) {
            return Ok(Some(response.header("connection") == Some("close")));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A pooled caller: one keep-alive connection, requests back to back, gone once told
/// `Connection: close` (it moves to another pod). Returns requests written and never answered.
async fn polite(addr: SocketAddr) -> usize {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    loop {
        match request(&mut stream, "/api/slow?ms=50").await {
            Ok(Some(true)) => return 0,
            Ok(Some(false)) => {}
            Ok(None) => panic!("a polite client could not write"),
            Err(_) => return 1,
        }
    }
}

/// A client that still reaches the pod (a direct pod address, stale DNS): a new connection per
/// request until connecting is refused. Returns requests written and never answered.
async fn reconnecting(addr: SocketAddr, ms: u64) -> usize {
    let path = format!("/api/slow?ms={ms}");
    let mut lost = 0;
    while let Ok(mut stream) = TcpStream::connect(addr).await {
        if request(&mut stream, &path).await.is_err() {
            lost += 1;
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a client that leaves when told lost one request in one run of five: the race at the trigger is not closed yet; run with --ignored"]
async fn across_a_real_sigterm_every_written_request_is_answered_or_counted() {
    let server = start(
        Shutdown::builder()
            .drain_delay(Duration::from_millis(800))
            .deadline(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
    .await;
    let addr = server.addr;
    let polite: Vec<_> = (0..POLITE).map(|_| tokio::spawn(polite(addr))).collect();
    let reconnecting: Vec<_> = (0..RECONNECTING)
        .map(|i| tokio::spawn(reconnecting(addr, if i % 2 == 0 { 50 } else { 300 })))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());

    let mut polite_lost = 0;
    for client in polite {
        polite_lost += tokio::time::timeout(LIMIT, client).await.unwrap().unwrap();
    }
    let report = server.report(LIMIT).await;
    let mut reconnecting_lost = 0;
    for client in reconnecting {
        reconnecting_lost += tokio::time::timeout(LIMIT, client).await.unwrap().unwrap();
    }
    assert_eq!(polite_lost, 0, "{report}");
    assert_eq!(reconnecting_lost, report.unanswered, "{report}");
    assert!(report.refused > 0, "{report}");
    assert_eq!(report.aborted, 0, "{report}");
    assert!(!report.deadline_reached, "{report}");
}
