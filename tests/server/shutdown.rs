//! The shutdown sequence against real servers on 127.0.0.1 (real time: sockets; outcomes are
//! asserted, never durations).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::server::{parse, raw_get, raw_get_on, start, wait_in_flight, RawResponse};
use harden::shutdown::{HookOutcome, Phase, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

fn builder() -> harden::shutdown::ShutdownBuilder {
    Shutdown::builder().signals(false)
}

async fn wait_phase(handle: &harden::shutdown::ShutdownHandle, phase: Phase) {
    let mut rx = handle.subscribe();
    tokio::time::timeout(LIMIT, rx.wait_for(|p| *p >= phase))
        .await
        .expect("phase not reached")
        .expect("sender alive");
}

#[tokio::test]
async fn readiness_is_503_during_shutdown_while_requests_are_still_served() {
    let server = start(
        builder()
            .drain_delay(Duration::from_millis(1500))
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(
        raw_get(server.addr, "/health/ready").await.unwrap().status,
        200
    );
    server.handle.trigger();
    let ready = raw_get(server.addr, "/health/ready").await.unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.body,
        r#"{"status":"shutting_down","info":{},"error":{},"details":{}}"#
    );
    // Still the drain delay: normal requests are served normally, liveness stays up.
    assert_eq!(server.handle.phase(), Phase::Draining);
    let hello = raw_get(server.addr, "/api/hello").await.unwrap();
    assert_eq!((hello.status, hello.body.as_str()), (200, "hello"));
    assert_eq!(
        raw_get(server.addr, "/health/live").await.unwrap().status,
        200
    );
    let report = server.report(LIMIT).await;
    assert_eq!(report.aborted, 0);
    assert!(!report.deadline_reached);
}

#[tokio::test]
async fn a_new_request_while_refusing_gets_503_connection_close_and_json() {
    let server = start(builder().drain_delay(Duration::ZERO).build().unwrap()).await;
    // A slow request keeps the sequence in its refusing phase.
    let slow = tokio::spawn(raw_get(server.addr, "/api/slow?ms=1500"));
    wait_in_flight(&server.handle, 1).await;
    server.handle.trigger();
    wait_phase(&server.handle, Phase::Refusing).await;

    let refused = raw_get(server.addr, "/api/hello").await.unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert_eq!(
        refused.body,
        r#"{"statusCode":503,"message":"server is shutting down","retryAfter":5}"#
    );
    // Liveness is exempt: still 200, with the connection closed after it.
    let live = raw_get(server.addr, "/health/live").await.unwrap();
    assert_eq!(live.status, 200);
    assert_eq!(live.header("connection"), Some("close"));

    let slow = slow.await.unwrap().unwrap();
    assert_eq!((slow.status, slow.body.as_str()), (200, "slow done"));
    let report = server.report(LIMIT).await;
    assert_eq!(report.in_flight_at_trigger, 1);
    assert_eq!(report.aborted, 0);
}

// Idle keep-alive connections were closed when refusing began, losing a request sent just then.
#[tokio::test]
async fn a_keep_alive_connection_idle_when_refusing_starts_gets_the_503_not_a_reset() {
    let server = start(builder().drain_delay(Duration::ZERO).build().unwrap()).await;
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        raw_get_on(&mut kept, "/api/hello").await.unwrap().status,
        200
    );
    // A slow request keeps the sequence in its refusing phase.
    let slow = tokio::spawn(raw_get(server.addr, "/api/slow?ms=1500"));
    wait_in_flight(&server.handle, 1).await;
    server.handle.trigger();
    wait_phase(&server.handle, Phase::Refusing).await;
    // Let the connection tasks see the phase change before the client reuses its connection.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let refused = raw_get_on(&mut kept, "/api/hello")
        .await
        .expect("an answer on the kept-alive connection, not a closed one");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("connection"), Some("close"));
    // After the 503 with `Connection: close` the server closes it.
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, kept.read_to_end(&mut rest))
        .await
        .expect("connection left open after Connection: close")
        .ok();
    assert!(rest.is_empty());

    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    let report = server.report(LIMIT).await;
    assert_eq!(report.aborted, 0, "{report}");
}

#[tokio::test]
async fn a_slow_request_started_before_shutdown_completes_with_200() {
    let server = start(
        builder()
            .drain_delay(Duration::from_millis(100))
            .build()
            .unwrap(),
    )
    .await;
    let slow = tokio::spawn(raw_get(server.addr, "/api/slow?ms=800"));
    wait_in_flight(&server.handle, 1).await;
    server.handle.trigger();
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status, 200);
    assert_eq!(slow.header("connection"), Some("close"));
    let report = server.report(LIMIT).await;
    assert_eq!(report.in_flight_at_trigger, 1);
    assert_eq!(report.completed, 1);
    assert_eq!(report.aborted, 0);
    assert!(!report.deadline_reached && !report.forced);
}

#[tokio::test]
async fn idle_keep_alive_sse_and_half_sent_headers_do_not_hold_shutdown() {
    // Deadline and header timeout far beyond the test's limit: only the drain can end it.
    let server = start(
        builder()
            .drain_delay(Duration::from_millis(200))
            .deadline(Duration::from_secs(600))
            .header_read_timeout(Duration::from_secs(600))
            .build()
            .unwrap(),
    )
    .await;
    // An idle keep-alive connection (one request answered, then nothing).
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let first = raw_get_on(&mut idle, "/api/hello").await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("connection"), None);
    // An open SSE stream, first event received.
    let mut sse = TcpStream::connect(server.addr).await.unwrap();
    sse.write_all(b"GET /api/events HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("data: tick") {
        let n = sse.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "SSE closed early");
        seen.extend_from_slice(&chunk[..n]);
    }
    // A client that sent half its headers.
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /api/hello HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    // And one real in-flight request.
    let slow = tokio::spawn(raw_get(server.addr, "/api/slow?ms=600"));
    wait_in_flight(&server.handle, 2).await; // the SSE stream and the slow request

    server.handle.trigger();
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status, 200);
    let report = server.report(LIMIT).await;
    assert!(!report.deadline_reached, "{report}");
    assert_eq!(report.aborted, 0, "{report}");
    assert_eq!(report.in_flight_at_trigger, 2);
    assert_eq!(
        report.completed, 2,
        "the SSE stream ended itself and the slow request completed"
    );

    // Every stuck connection was closed by the server (EOF or reset, never left open).
    for stream in [&mut idle, &mut half] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(LIMIT, stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "connection left open");
        assert!(rest.is_empty());
    }
    // The SSE response ended with the chunked terminator, not a cut.
    tokio::time::timeout(LIMIT, sse.read_to_end(&mut seen))
        .await
        .expect("SSE connection left open")
        .unwrap();
    assert!(String::from_utf8_lossy(&seen).ends_with("0\r\n\r\n"));
}

#[tokio::test]
async fn with_nothing_in_flight_shutdown_ends_right_after_the_drain_delay() {
    let server = start(
        builder()
            .drain_delay(Duration::from_millis(100))
            .deadline(Duration::from_secs(600))
            .build()
            .unwrap(),
    )
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        raw_get_on(&mut idle, "/api/hello").await.unwrap().status,
        200
    );
    server.handle.trigger();
    let report = server.report(LIMIT).await;
    assert_eq!(
        (
            report.in_flight_at_trigger,
            report.completed,
            report.aborted
        ),
        (0, 0, 0)
    );
    assert!(!report.deadline_reached);
}

#[tokio::test]
async fn the_deadline_aborts_what_is_left_and_hooks_still_run_in_order() {
    let shutdown = builder()
        .drain_delay(Duration::ZERO)
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let handle = shutdown.handle();
    let ran = Arc::new(Mutex::new(Vec::new()));
    for (name, hang) in [("first", false), ("hangs", true), ("last", false)] {
        let ran = Arc::clone(&ran);
        handle.on_shutdown(name, Duration::from_millis(200), move || async move {
            ran.lock().unwrap().push(name);
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(())
        });
    }
    handle.on_shutdown("fails", Duration::from_secs(5), || async {
        Err("pool already closed".into())
    });
    let server = start(shutdown).await;
    let handle = server.handle.clone();
    let long = tokio::spawn(raw_get(server.addr, "/api/slow?ms=60000"));
    wait_in_flight(&server.handle, 1).await;
    server.handle.trigger();

    // The request longer than the deadline is cut: the client sees the connection close.
    let long = tokio::time::timeout(LIMIT, long).await.unwrap().unwrap();
    assert!(long.is_err(), "{long:?}");
    let report = server.report(LIMIT).await;
    assert!(report.deadline_reached);
    assert_eq!(report.aborted, 1);
    assert_eq!(report.completed, 0);
    assert_eq!(*ran.lock().unwrap(), ["first", "hangs", "last"]);
    let outcomes: Vec<_> = report
        .hooks
        .iter()
        .map(|h| (h.name.as_str(), h.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("first", HookOutcome::Completed),
            ("hangs", HookOutcome::TimedOut),
            ("last", HookOutcome::Completed),
            ("fails", HookOutcome::Failed("pool already closed".into())),
        ]
    );
    assert_eq!(handle.phase(), Phase::Done);
}

#[tokio::test]
async fn forcing_aborts_at_once_and_skips_the_hooks() {
    let shutdown = builder()
        .drain_delay(Duration::ZERO)
        .deadline(Duration::from_secs(600))
        .build()
        .unwrap();
    shutdown
        .handle()
        .on_shutdown("skipped", Duration::from_secs(1), || async { Ok(()) });
    let server = start(shutdown).await;
    let long = tokio::spawn(raw_get(server.addr, "/api/slow?ms=60000"));
    wait_in_flight(&server.handle, 1).await;
    server.handle.trigger();
    wait_phase(&server.handle, Phase::Refusing).await;
    server.handle.force();
    let report = server.report(LIMIT).await;
    assert!(report.forced && !report.deadline_reached);
    assert_eq!(report.aborted, 1);
    assert_eq!(report.hooks[0].outcome, HookOutcome::Skipped);
    assert!(long.await.unwrap().is_err());
}

#[tokio::test]
async fn tracked_tasks_are_awaited_and_the_token_is_cancelled_when_refusing() {
    let shutdown = builder().drain_delay(Duration::ZERO).build().unwrap();
    let handle = shutdown.handle();
    let token = handle.token();
    let done = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&done);
    handle.tracker().spawn(async move {
        token.cancelled().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        *flag.lock().unwrap() = true;
    });
    let server = start(shutdown).await;
    server.handle.trigger();
    let report = server.report(LIMIT).await;
    assert!(
        *done.lock().unwrap(),
        "the tracked task finished before serve returned"
    );
    assert_eq!(report.tasks_left, 0);
}

#[test]
fn configuration_is_validated() {
    let err = Shutdown::builder()
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "deadline");
    let err = Shutdown::builder()
        .retry_after(Duration::from_secs(100_000))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry_after");
    let err = Shutdown::builder()
        .header_read_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "header_read_timeout");
    assert!(Shutdown::builder()
        .header_read_timeout(None)
        .build()
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn on_paused_time_the_sequence_follows_its_durations_exactly() {
    // No connection: the runtime is idle at every step, so paused time jumps from one timer to
    // the next and the whole sequence (10 min drain delay, a hook cut at 1 min) takes no real time.
    let shutdown = builder()
        .drain_delay(Duration::from_secs(600))
        .deadline(Duration::from_secs(3600))
        .build()
        .unwrap();
    let handle = shutdown.handle();
    handle.on_shutdown("hangs", Duration::from_secs(60), || async {
        std::future::pending::<()>().await;
        Ok(())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tokio::spawn(shutdown.serve(listener, axum::Router::new()));
    let started = tokio::time::Instant::now();
    handle.trigger();
    let report = server.await.unwrap().unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(660));
    assert_eq!(report.hooks[0].outcome, HookOutcome::TimedOut);
    assert_eq!(report.hooks[0].elapsed, Duration::from_secs(60));
    assert!(!report.deadline_reached);
}

// The end of a response larger than the socket buffers was dropped when the drain ended, and the
// report showed nothing.
#[tokio::test]
async fn a_large_response_to_a_slow_client_is_finished_after_the_drain() {
    let server = start(
        builder()
            .drain_delay(Duration::ZERO)
            .deadline(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
    .await;
    let mut slow = slow_reader(server.addr).await;
    slow.write_all(b"GET /api/big HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    // hyper takes the whole body at once: nothing is in flight, most of it is not sent yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.handle.trigger();
    wait_phase(&server.handle, Phase::Refusing).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut received = Vec::new();
    tokio::time::timeout(LIMIT, slow.read_to_end(&mut received))
        .await
        .expect("connection left open")
        .unwrap();
    let response = crate::support::server::parse(&received).expect("the whole response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), crate::support::server::BIG);
    let report = server.report(LIMIT).await;
    assert_eq!((report.connections_cut, report.aborted), (0, 0), "{report}");
    assert!(!report.deadline_reached, "{report}");
}

// A response cut at the deadline while still being written left no trace in the report.
#[tokio::test]
async fn a_response_still_being_written_at_the_deadline_is_counted_as_cut() {
    let server = start(
        builder()
            .drain_delay(Duration::ZERO)
            .deadline(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .await;
    let mut slow = slow_reader(server.addr).await;
    slow.write_all(b"GET /api/big HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.handle.trigger();
    // The client never reads until the server has given up on it.
    let report = server.report(LIMIT).await;
    assert!(report.deadline_reached, "{report}");
    assert_eq!(report.connections_cut, 1, "{report}");
    let mut received = Vec::new();
    let _ = slow.read_to_end(&mut received).await;
    assert!(received.len() < crate::support::server::BIG);
}

/// A client with a 16 KiB receive buffer that does not read yet.
async fn slow_reader(addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
}

// Protocol detection had no timeout: a client that sent nothing, or half the HTTP/2 preface,
// kept its connection (and an fd) forever.
#[tokio::test]
async fn a_connection_that_sends_nothing_or_half_the_http2_preface_is_timed_out() {
    let server = start(
        builder()
            .header_read_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    for stream in [&mut silent, &mut half] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(LIMIT, stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "connection left open");
        assert!(rest.is_empty());
    }
    // Still serving: only those two were closed.
    assert_eq!(server.handle.phase(), Phase::Serving);
    assert_eq!(
        raw_get(server.addr, "/api/hello").await.unwrap().status,
        200
    );
}

/// In-memory connections for `serve`: with no socket to wait on, paused time runs the server.
struct MemoryListener(tokio::sync::mpsc::UnboundedReceiver<tokio::io::DuplexStream>);

impl axum::serve::Listener for MemoryListener {
    type Io = tokio::io::DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> (Self::Io, ()) {
        match self.0.recv().await {
            Some(io) => (io, ()),
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<()> {
        Ok(())
    }
}

// The header-read timer reuses its entries from head to head: each head of a keep-alive
// connection must still get the whole timeout, and a head slower than that must close it.
#[tokio::test(start_paused = true)]
async fn each_head_on_a_keep_alive_connection_gets_the_whole_header_read_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let shutdown = builder()
        .drain_delay(Duration::ZERO)
        .header_read_timeout(TIMEOUT)
        .build()
        .unwrap();
    let handle = shutdown.handle();
    let (connect, accept) = tokio::sync::mpsc::unbounded_channel();
    let server =
        tokio::spawn(shutdown.serve(MemoryListener(accept), crate::support::server::app(&handle)));
    let (mut client, io) = tokio::io::duplex(64 * 1024);
    connect.send(io).unwrap();
    // Five requests 9 s apart: 45 s on one connection, each head well within its 10 s.
    for _ in 0..5 {
        let hello = raw_get_on(&mut client, "/api/hello").await.unwrap();
        assert_eq!((hello.status, hello.body.as_str()), (200, "hello"));
        assert_eq!(hello.header("connection"), None);
        tokio::time::sleep(Duration::from_secs(9)).await;
    }
    // Half of the next head, then nothing: closed at the timeout, with no response.
    client
        .write_all(b"GET /api/hello HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let sent = tokio::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, client.read_to_end(&mut rest))
        .await
        .expect("connection left open")
        .unwrap();
    assert!(rest.is_empty());
    // Paused time: the close came with the timer, counted from the response before (9 s ago).
    assert_eq!(sent.elapsed(), TIMEOUT - Duration::from_secs(9));
    // A new connection whose first head is slow is closed the same way, at its own deadline.
    let (mut client, io) = tokio::io::duplex(64 * 1024);
    connect.send(io).unwrap();
    client
        .write_all(b"GET /api/hello HTTP/1.1\r\n")
        .await
        .unwrap();
    let sent = tokio::time::Instant::now();
    tokio::time::timeout(LIMIT, client.read_to_end(&mut rest))
        .await
        .expect("connection left open")
        .unwrap();
    assert!(rest.is_empty());
    assert_eq!(sent.elapsed(), TIMEOUT);
    handle.trigger();
    let report = server.await.unwrap().unwrap();
    assert_eq!(report.aborted, 0);
    assert!(!report.deadline_reached);
}

/// Raw HTTP/2 frames: enough to serve one request over h2c and watch for GOAWAY.
mod h2 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub(super) const DATA: u8 = 0;
    pub(super) const HEADERS: u8 = 1;
    pub(super) const SETTINGS: u8 = 4;
    pub(super) const PING: u8 = 6;
    pub(super) const GOAWAY: u8 = 7;

    pub(super) struct Frame {
        pub(super) kind: u8,
        pub(super) flags: u8,
        pub(super) stream: u32,
        pub(super) payload: Vec<u8>,
    }

    pub(super) async fn write(
        stream: &mut TcpStream,
        kind: u8,
        flags: u8,
        id: u32,
        payload: &[u8],
    ) {
        let len = payload.len() as u32;
        let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(payload);
        stream.write_all(&frame).await.unwrap();
    }

    pub(super) async fn read(stream: &mut TcpStream) -> std::io::Result<Frame> {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await?;
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Ok(Frame {
            kind: head[3],
            flags: head[4],
            stream: id,
            payload,
        })
    }

    /// The preface and an empty SETTINGS frame.
    pub(super) async fn connect(addr: std::net::SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        write(&mut stream, SETTINGS, 0, 0, &[]).await;
        stream
    }

    /// `GET path` on stream `id` (HPACK: indexed :method GET, :scheme http, literal :path and
    /// :authority with indexed names).
    pub(super) async fn get(stream: &mut TcpStream, id: u32, path: &str) {
        let mut block = vec![0x82, 0x86, 0x44, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x41, 4]);
        block.extend_from_slice(b"test");
        // END_STREAM | END_HEADERS
        write(stream, HEADERS, 0x5, id, &block).await;
    }
}

// HTTP/2 clients got no GOAWAY: their connections just ended when the drain was over.
#[tokio::test]
async fn an_http2_connection_gets_a_goaway_at_the_trigger_naming_the_last_stream_served() {
    let server = start(
        builder()
            .drain_delay(Duration::from_millis(1500))
            .build()
            .unwrap(),
    )
    .await;
    let mut conn = h2::connect(server.addr).await;
    h2::get(&mut conn, 1, "/api/hello").await;
    let mut body = Vec::new();
    let mut status_200 = false;
    loop {
        let frame = tokio::time::timeout(LIMIT, h2::read(&mut conn))
            .await
            .expect("an answer over h2c")
            .unwrap();
        match frame.kind {
            h2::SETTINGS if frame.flags & 1 == 0 => {
                h2::write(&mut conn, h2::SETTINGS, 1, 0, &[]).await;
            }
            // HPACK index 8: `:status 200`.
            h2::HEADERS if frame.stream == 1 => status_200 = frame.payload.first() == Some(&0x88),
            h2::DATA if frame.stream == 1 => {
                body.extend_from_slice(&frame.payload);
                if frame.flags & 1 == 1 {
                    break;
                }
            }
            _ => {}
        }
    }
    assert!(status_200);
    assert_eq!(body, b"hello");

    server.handle.trigger();
    let last_stream = loop {
        let frame = tokio::time::timeout(LIMIT, h2::read(&mut conn))
            .await
            .expect("a GOAWAY while draining")
            .expect("the connection ended without a GOAWAY");
        match frame.kind {
            // hyper's graceful GOAWAY: first "no new streams soon", then, after a PING round
            // trip, the last stream it took.
            h2::PING if frame.flags & 1 == 0 => {
                h2::write(&mut conn, h2::PING, 1, 0, &frame.payload).await;
            }
            h2::GOAWAY => {
                let id = u32::from_be_bytes(frame.payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                if id != 0x7fff_ffff {
                    break id;
                }
            }
            _ => {}
        }
    };
    assert_eq!(last_stream, 1);
    // Told during the drain delay, while the pod still serves, not at the end.
    assert_eq!(server.handle.phase(), Phase::Draining);
    let report = server.report(LIMIT).await;
    assert_eq!(report.connections_cut, 0, "{report}");
}

// A hook that panicked took `serve` down: the hooks after it never ran and no report came back.
#[tokio::test]
async fn a_panicking_hook_is_reported_and_the_next_hook_still_runs() {
    let shutdown = builder().drain_delay(Duration::ZERO).build().unwrap();
    let handle = shutdown.handle();
    handle.on_shutdown("panics", Duration::from_secs(5), || async {
        panic!("pool already gone");
    });
    let ran = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&ran);
    handle.on_shutdown("flush", Duration::from_secs(5), move || async move {
        *flag.lock().unwrap() = true;
        Ok(())
    });
    let server = start(shutdown).await;
    server.handle.trigger();
    let report = server.report(LIMIT).await;
    assert_eq!(
        report.hooks[0].outcome,
        HookOutcome::Panicked("pool already gone".into())
    );
    assert_eq!(report.hooks[1].outcome, HookOutcome::Completed);
    assert!(*ran.lock().unwrap());
}

/// A router with `/upgrade`: answers 101, then the session waits for the shutdown token,
/// takes `close_ms` to close (unless `ignore_token`), says "bye", and sets `ended`.
fn upgrade_app(
    handle: &harden::shutdown::ShutdownHandle,
    close_ms: u64,
    ignore_token: bool,
    ended: Arc<Mutex<Option<std::io::Result<()>>>>,
) -> axum::Router {
    use axum::extract::Request;
    use axum::response::Response;
    let token = handle.token();
    axum::Router::new().route(
        "/upgrade",
        axum::routing::get(move |mut req: Request| {
            let (token, ended) = (token.clone(), Arc::clone(&ended));
            async move {
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let upgraded = on_upgrade.await.expect("upgraded");
                    let mut io = hyper_util::rt::TokioIo::new(upgraded);
                    let mut byte = [0u8; 1];
                    let result = if ignore_token {
                        // Reads until the connection fails: the deadline cuts it.
                        io.read(&mut byte).await.map(drop)
                    } else {
                        token.cancelled().await;
                        tokio::time::sleep(Duration::from_millis(close_ms)).await;
                        io.write_all(b"bye").await
                    };
                    *ended.lock().unwrap() = Some(result);
                });
                Response::builder()
                    .status(101)
                    .header("connection", "upgrade")
                    .header("upgrade", "echo")
                    .body(axum::body::Body::empty())
                    .unwrap()
            }
        }),
    )
}

async fn upgrade(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed before 101"
        );
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    stream
}

async fn wait_upgraded(handle: &harden::shutdown::ShutdownHandle, n: usize) {
    tokio::time::timeout(LIMIT, async {
        while handle.upgraded() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("session not upgraded");
}

// Upgraded sessions were neither awaited nor counted: the hooks closed what a WebSocket still
// used while it was closing.
#[tokio::test]
async fn an_upgraded_session_is_awaited_before_the_hooks_and_counted() {
    let shutdown = builder().drain_delay(Duration::ZERO).build().unwrap();
    let handle = shutdown.handle();
    let ended = Arc::new(Mutex::new(None));
    let app = upgrade_app(&handle, 300, false, Arc::clone(&ended));
    let seen_by_hook = Arc::new(Mutex::new(false));
    let (seen, flag) = (Arc::clone(&seen_by_hook), Arc::clone(&ended));
    handle.on_shutdown("close pool", Duration::from_secs(5), move || async move {
        *seen.lock().unwrap() = flag.lock().unwrap().is_some();
        Ok(())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(shutdown.serve(listener, app));
    let mut session = upgrade(addr).await;
    wait_upgraded(&handle, 1).await;
    handle.trigger();
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, session.read_to_end(&mut rest))
        .await
        .expect("session left open")
        .unwrap();
    assert_eq!(rest, b"bye");
    let report = tokio::time::timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        *seen_by_hook.lock().unwrap(),
        "the hook ran before the session ended"
    );
    assert_eq!(
        (report.upgraded_at_trigger, report.upgraded_aborted),
        (1, 0),
        "{report}"
    );
}

#[tokio::test]
async fn an_upgraded_session_still_open_at_the_deadline_is_cut_and_counted() {
    let shutdown = builder()
        .drain_delay(Duration::ZERO)
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let handle = shutdown.handle();
    let ended = Arc::new(Mutex::new(None));
    let app = upgrade_app(&handle, 0, true, Arc::clone(&ended));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(shutdown.serve(listener, app));
    let _session = upgrade(addr).await;
    wait_upgraded(&handle, 1).await;
    handle.trigger();
    let report = tokio::time::timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(report.deadline_reached, "{report}");
    assert_eq!(report.upgraded_aborted, 1, "{report}");
    tokio::time::timeout(LIMIT, async {
        while ended.lock().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the session's read did not fail");
    assert!(ended.lock().unwrap().as_ref().unwrap().is_err());
}

// Readiness was refused by the shutdown layer with the generic 503 body instead of health's
// `shutting_down` answer.
#[tokio::test]
async fn readiness_keeps_its_shutting_down_body_while_refusing() {
    let server = start(builder().drain_delay(Duration::ZERO).build().unwrap()).await;
    let slow = tokio::spawn(raw_get(server.addr, "/api/slow?ms=1500"));
    wait_in_flight(&server.handle, 1).await;
    server.handle.trigger();
    wait_phase(&server.handle, Phase::Refusing).await;
    let ready = raw_get(server.addr, "/health/ready").await.unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.body,
        r#"{"status":"shutting_down","info":{},"error":{},"details":{}}"#
    );
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    let report = server.report(LIMIT).await;
    assert_eq!(report.refused, 0, "{report}");
}

#[tokio::test]
async fn refused_requests_are_counted() {
    let server = start(builder().drain_delay(Duration::ZERO).build().unwrap()).await;
    let slow = tokio::spawn(raw_get(server.addr, "/api/slow?ms=1500"));
    wait_in_flight(&server.handle, 1).await;
    server.handle.trigger();
    wait_phase(&server.handle, Phase::Refusing).await;
    for _ in 0..3 {
        assert_eq!(
            raw_get(server.addr, "/api/hello").await.unwrap().status,
            503
        );
    }
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    assert_eq!(server.report(LIMIT).await.refused, 3);
}

// Under `Shutdown::serve` a handler taking `ConnectInfo<SocketAddr>` got a 500 "Missing request
// extension".
#[tokio::test]
async fn handlers_get_the_peer_address_through_connect_info() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;
    let shutdown = builder().build().unwrap();
    let handle = shutdown.handle();
    let app = axum::Router::new().route(
        "/peer",
        axum::routing::get(
            |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(shutdown.serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    ));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let response = raw_get_on(&mut stream, "/peer").await.unwrap();
    assert_eq!((response.status, response.body), (200, local.to_string()));
    handle.trigger();
    drop(stream);
    tokio::time::timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn serves_a_router_with_state_on_a_unix_socket() {
    use axum::extract::State;
    let dir = std::env::temp_dir().join(format!("harden-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.sock");
    let _ = std::fs::remove_file(&path);
    let shutdown = builder().drain_delay(Duration::ZERO).build().unwrap();
    let handle = shutdown.handle();
    let app = axum::Router::new()
        .route(
            "/greeting",
            axum::routing::get(|State(greeting): State<&'static str>| async move { greeting }),
        )
        .with_state("hello over a unix socket");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(shutdown.serve(listener, app));
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let response = raw_get_on(&mut stream, "/greeting").await.unwrap();
    assert_eq!(response.body, "hello over a unix socket");
    handle.trigger();
    let report = tokio::time::timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.aborted, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn https_with_a_tls_listener_drains_like_plain_http() {
    let (cert, key) = crate::support::server::tls::certificate();
    let shutdown = builder()
        .drain_delay(Duration::from_millis(100))
        .build()
        .unwrap();
    let handle = shutdown.handle();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = crate::support::server::tls::TlsListener::new(tcp, cert.clone(), key);
    let server = tokio::spawn(shutdown.serve(listener, crate::support::server::app(&handle)));

    let mut tls = crate::support::server::tls::connect(addr, &cert).await;
    let hello = raw_get_on(&mut tls, "/api/hello").await.unwrap();
    assert_eq!((hello.status, hello.body.as_str()), (200, "hello"));
    let slow = tokio::spawn(async move {
        let mut tls = crate::support::server::tls::connect(addr, &cert).await;
        raw_get_on(&mut tls, "/api/slow?ms=800").await
    });
    wait_in_flight(&handle, 1).await;
    handle.trigger();
    let slow = slow.await.unwrap().unwrap();
    assert_eq!((slow.status, slow.body.as_str()), (200, "slow done"));
    assert_eq!(slow.header("connection"), Some("close"));
    let report = tokio::time::timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.in_flight_at_trigger, 1);
    assert_eq!((report.completed, report.aborted), (1, 0), "{report}");
}

// Keep-alive stayed on through the drain delay, so pooled callers kept their connections to the
// terminating pod until it refused them.
#[tokio::test]
async fn keep_alive_is_off_from_the_trigger_while_the_drain_delay_still_serves() {
    let server = start(
        builder()
            .drain_delay(Duration::from_millis(1500))
            .build()
            .unwrap(),
    )
    .await;
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    let before = raw_get_on(&mut kept, "/api/hello").await.unwrap();
    assert_eq!(before.header("connection"), None);
    server.handle.trigger();
    let after = raw_get_on(&mut kept, "/api/hello").await.unwrap();
    assert_eq!((after.status, after.body.as_str()), (200, "hello"));
    assert_eq!(after.header("connection"), Some("close"));
    assert_eq!(server.handle.phase(), Phase::Draining);
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, kept.read_to_end(&mut rest))
        .await
        .expect("connection left open after Connection: close")
        .ok();
    assert!(rest.is_empty());
}

/// Reads one whole response.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<RawResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(response) = parse(&buf) {
            return Ok(response);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects until the listener is closed, which `serve` does right before it closes its
/// connections at the end of the drain.
async fn wait_listener_closed(addr: std::net::SocketAddr) {
    tokio::time::timeout(LIMIT, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the listener was not closed");
}

// hyper's graceful close dropped an idle keep-alive connection whose next request had arrived.
#[tokio::test]
async fn a_request_arriving_on_an_idle_keep_alive_connection_as_the_drain_ends_is_answered() {
    let server = start(builder().drain_delay(Duration::ZERO).build().unwrap()).await;
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    let first = raw_get_on(&mut kept, "/api/hello").await.unwrap();
    assert_eq!(first.header("connection"), None);
    // The next request is on its way when the server closes its connections: half of it
    // arrived before, the rest comes after.
    kept.write_all(b"GET /api/hello HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.handle.trigger();
    wait_listener_closed(server.addr).await;
    kept.write_all(b"st\r\n\r\n").await.unwrap();
    let answer = read_response(&mut kept)
        .await
        .expect("an answer, not a closed connection");
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("connection"), Some("close"));
    let report = server.report(LIMIT).await;
    assert_eq!((report.refused, report.unanswered), (1, 0), "{report}");
}

// A connection accepted just before the listener closed, closed before its request arrived,
// was in no count.
#[tokio::test]
async fn a_connection_closed_before_its_first_request_arrived_is_counted() {
    let server = start(builder().drain_delay(Duration::ZERO).build().unwrap()).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut answered = TcpStream::connect(server.addr).await.unwrap();
    server.handle.trigger();
    wait_listener_closed(server.addr).await;
    // Within the grace a request still gets its 503.
    let refused = raw_get_on(&mut answered, "/api/hello").await.unwrap();
    assert_eq!(refused.status, 503);
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, silent.read_to_end(&mut rest))
        .await
        .expect("connection left open")
        .ok();
    let report = server.report(LIMIT).await;
    assert_eq!((report.refused, report.unanswered), (1, 1), "{report}");
}

// A request written just after the server closed an idle connection was reset by the kernel,
// unseen and uncounted.
#[tokio::test]
async fn a_request_written_as_an_idle_connection_is_closed_is_counted() {
    let server = start(builder().drain_delay(Duration::ZERO).build().unwrap()).await;
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    let first = raw_get_on(&mut kept, "/api/hello").await.unwrap();
    assert_eq!(first.header("connection"), None);
    server.handle.trigger();
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, kept.read_to_end(&mut rest))
        .await
        .expect("the idle connection was not closed")
        .unwrap();
    assert!(rest.is_empty());
    // A client that does not check its connection before reusing it writes anyway.
    kept.write_all(b"GET /api/hello HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let report = server.report(LIMIT).await;
    assert_eq!(report.unanswered, 1, "{report}");
}
