//! Keep-alive and reconnecting clients across a real SIGTERM: a client that leaves when told
//! loses no request, and any other request written on a connection the server accepted is
//! answered or counted in the report. Alone in its test binary, because the signal goes to the
//! whole process.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use harden::shutdown::Shutdown;
use support::server::{raw_get, start, wait_in_flight};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const POLITE: usize = 16;
/// Polite callers that pause across the whole drain between two requests: told by the close.
const IDLE: usize = 2;
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

/// Whether the server closed the connection (EOF, an error, or bytes nobody asked for), as a
/// pool checks before it reuses one; the timer gives the runtime a turn to take in a close that
/// has already arrived.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    tokio::select! {
        biased;
        _ = stream.read(&mut byte) => true,
        () = tokio::time::sleep(Duration::from_millis(1)) => false,
    }
}

/// A pooled caller: one keep-alive connection, a request after each `pause`, gone once told (a
/// response with `Connection: close`, or the connection closed before it is reused): it moves to
/// another pod. Returns requests written and never answered.
async fn polite(addr: SocketAddr, pause: Duration) -> usize {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut reused = false;
    loop {
        if reused && closed_by_server(&mut stream).await {
            return 0;
        }
        match request(&mut stream, "/api/slow?ms=50").await {
            Ok(Some(true)) => return 0,
            Ok(Some(false)) => {
                reused = true;
                tokio::time::sleep(pause).await;
            }
            Ok(None) => panic!("a polite client could not write"),
            Err(_) => return 1,
        }
    }
}

/// Requests a client wrote and never got an answer to.
#[derive(Default)]
struct Lost {
    /// The server closed the connection (EOF): it had accepted it, so the report counts them.
    closed: usize,
    /// Reset: either the server closed it with the request unread (counted), or the kernel reset
    /// a connection still waiting in the closing listener's queue, which `serve` never saw.
    reset: usize,
}

/// A client that still reaches the pod (a direct pod address, stale DNS): a new connection per
/// request until connecting is refused.
async fn reconnecting(addr: SocketAddr, ms: u64) -> Lost {
    let path = format!("/api/slow?ms={ms}");
    let mut lost = Lost::default();
    while let Ok(mut stream) = TcpStream::connect(addr).await {
        match request(&mut stream, &path).await {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => lost.closed += 1,
            Err(_) => lost.reset += 1,
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let polite: Vec<_> = (0..POLITE + IDLE)
        .map(|i| {
            let pause = if i < POLITE { 0 } else { 3000 };
            tokio::spawn(polite(addr, Duration::from_millis(pause)))
        })
        .collect();
    let reconnecting: Vec<_> = (0..RECONNECTING)
        .map(|i| tokio::spawn(reconnecting(addr, if i % 2 == 0 { 50 } else { 300 })))
        .collect();
    // In flight across the trigger and past the drain delay: the server refuses for a while.
    let held = tokio::spawn(raw_get(addr, "/api/slow?ms=1500"));
    wait_in_flight(&server.handle, POLITE + 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

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
    let mut lost = Lost::default();
    for client in reconnecting {
        let client = tokio::time::timeout(LIMIT, client).await.unwrap().unwrap();
        lost.closed += client.closed;
        lost.reset += client.reset;
    }
    assert_eq!(held.await.unwrap().unwrap().status, 200);
    assert_eq!(polite_lost, 0, "{report}");
    assert!(
        lost.closed <= report.unanswered && report.unanswered <= lost.closed + lost.reset,
        "lost on closed connections {}, reset {}: {report}",
        lost.closed,
        lost.reset
    );
    assert!(report.refused > 0, "{report}");
    assert_eq!(report.aborted, 0, "{report}");
    assert!(!report.deadline_reached, "{report}");
}
