//! 1 000 requests in flight when a real SIGTERM arrives: every one completes with 200, none is
//! lost, and the server exits before its deadline. Alone in its test binary, because the signal
//! goes to the whole process.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use axum::routing::get;
use harden::shutdown::{Phase, Shutdown};
use support::server::{app, wait_in_flight, Server};
use tokio::sync::watch;

const REQUESTS: usize = 1000;
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_in_flight_requests_at_sigterm_all_complete() {
    let shutdown = Shutdown::builder()
        .drain_delay(Duration::from_millis(200))
        .deadline(LIMIT)
        .build()
        .unwrap();
    let handle = shutdown.handle();
    // The handlers are held until the test lets them go, once the sequence refuses: however
    // long the thousand connections take to arrive, all of them are in flight at the trigger
    // and still in flight when refusing starts.
    let (release, held) = watch::channel(false);
    let router = app(&handle).route(
        "/api/held",
        get(move || {
            let mut held = held.clone();
            async move {
                let _ = held.wait_for(|released| *released).await;
                "held done"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server {
        addr,
        handle: handle.clone(),
        task: tokio::spawn(shutdown.serve(listener, router)),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(REQUESTS)
        .build()
        .unwrap();
    let url = format!("http://{addr}/api/held");
    let requests: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client.get(url).send().await?.error_for_status()?;
                response.text().await
            })
        })
        .collect();
    wait_in_flight(&handle, REQUESTS).await;

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    tokio::time::timeout(
        LIMIT,
        handle.subscribe().wait_for(|p| *p >= Phase::Refusing),
    )
    .await
    .expect("refusing did not start")
    .unwrap();
    assert_eq!(handle.in_flight(), REQUESTS, "held requests were cut");
    release.send_replace(true);

    let mut ok = 0;
    for request in requests {
        match request.await.unwrap() {
            Ok(body) if body == "held done" => ok += 1,
            Ok(body) => panic!("unexpected body {body:?}"),
            Err(err) => panic!("request lost: {err}"),
        }
    }
    let report = server.report(LIMIT).await;
    // Counted at both ends.
    assert_eq!(ok, REQUESTS);
    assert_eq!(report.in_flight_at_trigger, REQUESTS);
    assert_eq!(report.completed, REQUESTS as u64);
    assert_eq!(report.aborted, 0);
    assert!(!report.deadline_reached && !report.forced, "{report}");
}
