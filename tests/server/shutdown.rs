//! The shutdown sequence against real servers on 127.0.0.1 (real time: sockets; outcomes are
//! asserted, never durations).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::server::{raw_get, raw_get_on, start, wait_in_flight};
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
