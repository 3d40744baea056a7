//! `examples/axum_server.rs` as a real process: started on 127.0.0.1:0, driven over HTTP, sent a
//! real SIGTERM: readiness goes down, the slow request completes, the SSE stream ends, the hook
//! runs, and the process exits 0.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Builds the example (a no-op after `cargo test --all-features`, which builds examples with
/// the same features) and returns its path next to the test binaries.
fn example_binary() -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    // The variables cargo sets for a test process, which an outer build did not see: a build
    // script that watches one of them (ring's watches `CARGO_MANIFEST_DIR`) would otherwise be
    // rerun here and again by the next outer build, each rebuilding everything above it.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_BIN_NAME",
            ]
            .contains(&&*name)
        {
            cargo.env_remove(&*name);
        }
    }
    let status = cargo
        .args(["build", "--example", "axum_server", "--all-features"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the example failed");
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join("axum_server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_drains_and_exits_0_on_sigterm() {
    let mut child = Command::new(example_binary())
        .args([
            "--addr",
            "127.0.0.1:0",
            "--drain-delay-ms",
            "700",
            "--deadline-ms",
            "20000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the example");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_owned();
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    assert_eq!(
        get("/api/hello").await.unwrap().text().await.unwrap(),
        "hello"
    );
    assert_eq!(get("/health/live").await.unwrap().status(), 200);
    assert_eq!(get("/health/ready").await.unwrap().status(), 200);
    let flaky: Vec<u16> = futures::future::join_all((0..3).map(|_| get("/api/flaky")))
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert!(
        flaky.iter().all(|s| [200, 500, 503].contains(s)),
        "{flaky:?}"
    );

    let slow = tokio::spawn(get("/api/slow?ms=2000"));
    let mut events = get("/api/events").await.unwrap();
    assert_eq!(events.status(), 200);
    let first_tick = events.chunk().await.unwrap().expect("a tick");
    assert!(String::from_utf8_lossy(&first_tick).contains("tick"));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Draining: readiness down, requests still served.
    let ready = get("/health/ready").await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(get("/api/hello").await.unwrap().status(), 200);

    // The SSE stream ends by itself once refusing starts; the slow request completes.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while events.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the SSE stream did not end");
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), 200);

    let pid = child.id().to_string();
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await;
    let Ok(waited) = waited else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the example did not exit after SIGTERM");
    };
    let status = waited.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("aborted 0"), "{rest}");
    assert!(rest.contains(r#"hook "flush": Completed"#), "{rest}");
}
