//! 1 000 requests in flight when a real SIGTERM arrives: every one completes with 200, none is
//! lost, and the server exits before its deadline. Alone in its test binary, because the signal
//! goes to the whole process.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use harden::shutdown::Shutdown;
use support::server::{start, wait_in_flight};

const REQUESTS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_in_flight_requests_at_sigterm_all_complete() {
    let server = start(
        Shutdown::builder()
            .drain_delay(Duration::from_millis(200))
            .deadline(Duration::from_secs(120))
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(REQUESTS)
        .build()
        .unwrap();
    // Long enough for all of them to be in flight at once on a loaded 2-core machine, where
    // a thousand connections can take several seconds to arrive.
    let url = format!("http://{}/api/slow?ms=20000", server.addr);
    let requests: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client.get(url).send().await?.error_for_status()?;
                response.text().await
            })
        })
        .collect();
    wait_in_flight(&server.handle, REQUESTS).await;

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());

    let mut ok = 0;
    for request in requests {
        match request.await.unwrap() {
            Ok(body) if body == "slow done" => ok += 1,
            Ok(body) => panic!("unexpected body {body:?}"),
            Err(err) => panic!("request lost: {err}"),
        }
    }
    let report = server.report(Duration::from_secs(120)).await;
    // Counted at both ends.
    assert_eq!(ok, REQUESTS);
    assert_eq!(report.in_flight_at_trigger, REQUESTS);
    assert_eq!(report.completed, REQUESTS as u64);
    assert_eq!(report.aborted, 0);
    assert!(!report.deadline_reached && !report.forced, "{report}");
}
