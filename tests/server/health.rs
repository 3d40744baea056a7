//! Health endpoints served by a real axum server on 127.0.0.1: status codes and the exact
//! terminus-shaped bodies.

use std::net::SocketAddr;
use std::time::Duration;

use harden::circuit_breaker::CircuitBreaker;
use harden::health::Health;
use harden::shutdown::Shutdown;
use harden::BoxError;

async fn serve(health: &Health) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = health.router::<()>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{path}"
    );
    (status, response.text().await.unwrap())
}

fn tripped(name: &str, reset_timeout: Duration) -> CircuitBreaker {
    let breaker = CircuitBreaker::builder()
        .name(name)
        .volume_threshold(1)
        .reset_timeout(reset_timeout)
        .build()
        .unwrap();
    let _ = breaker.call(|| Err::<(), _>("upstream down"));
    assert_eq!(breaker.state(), harden::circuit_breaker::State::Open);
    breaker
}

#[tokio::test]
async fn all_up_is_200_ok() {
    let breaker = CircuitBreaker::builder().name("payments").build().unwrap();
    let health = Health::builder()
        .check("db", || async { Ok(()) })
        .critical_breaker(&breaker)
        .build()
        .unwrap();
    let addr = serve(&health).await;
    assert_eq!(
        get(addr, "/health/ready").await,
        (
            200,
            r#"{"status":"ok","info":{"db":{"status":"up"},"payments":{"status":"up","state":"closed"}},"error":{},"details":{"db":{"status":"up"},"payments":{"status":"up","state":"closed"}}}"#.to_owned()
        )
    );
    assert_eq!(
        get(addr, "/health/live").await,
        (
            200,
            r#"{"status":"ok","info":{},"error":{},"details":{}}"#.to_owned()
        )
    );
}

#[tokio::test]
async fn a_failing_check_is_503_with_its_message() {
    let health = Health::builder()
        .check("db", || async { Ok(()) })
        .check("cache", || async {
            Err::<(), BoxError>("connection refused".into())
        })
        .build()
        .unwrap();
    let addr = serve(&health).await;
    assert_eq!(
        get(addr, "/health/ready").await,
        (
            503,
            r#"{"status":"error","info":{"db":{"status":"up"}},"error":{"cache":{"status":"down","message":"connection refused"}},"details":{"db":{"status":"up"},"cache":{"status":"down","message":"connection refused"}}}"#.to_owned()
        )
    );
    // Liveness checks only the process.
    assert_eq!(get(addr, "/health/live").await.0, 200);
}

#[tokio::test]
async fn a_hung_check_is_down_at_its_timeout_and_does_not_hang_the_probe() {
    let health = Health::builder()
        .check_with_timeout("queue", Duration::from_millis(100), || {
            std::future::pending::<Result<(), BoxError>>()
        })
        // Runs concurrently with the hung one.
        .check_with_timeout("db", Duration::from_secs(10), || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(())
        })
        .build()
        .unwrap();
    let addr = serve(&health).await;
    let answer = tokio::time::timeout(Duration::from_secs(20), get(addr, "/health/ready"))
        .await
        .expect("the probe hung");
    assert_eq!(
        answer,
        (
            503,
            r#"{"status":"error","info":{"db":{"status":"up"}},"error":{"queue":{"status":"down","message":"timed out after 100 ms"}},"details":{"queue":{"status":"down","message":"timed out after 100 ms"},"db":{"status":"up"}}}"#.to_owned()
        )
    );
}

#[tokio::test]
async fn a_critical_open_breaker_is_503_with_retry_after() {
    let breaker = tripped("payments", Duration::from_secs(30));
    let health = Health::builder()
        .critical_breaker(&breaker)
        .build()
        .unwrap();
    let addr = serve(&health).await;
    assert_eq!(
        get(addr, "/health/ready").await,
        (
            503,
            r#"{"status":"error","info":{},"error":{"payments":{"status":"down","state":"open","retryAfter":30}},"details":{"payments":{"status":"down","state":"open","retryAfter":30}}}"#.to_owned()
        )
    );
}

#[tokio::test]
async fn an_informational_open_breaker_is_reported_in_details_only() {
    let breaker = tripped("geo", Duration::from_secs(30));
    let forced = CircuitBreaker::builder().name("legacy").build().unwrap();
    forced.force_open();
    let health = Health::builder()
        .breaker(&breaker)
        .breaker(&forced)
        .build()
        .unwrap();
    let addr = serve(&health).await;
    assert_eq!(
        get(addr, "/health/ready").await,
        (
            200,
            r#"{"status":"ok","info":{},"error":{},"details":{"geo":{"status":"down","state":"open","retryAfter":30},"legacy":{"status":"down","state":"forced_open"}}}"#.to_owned()
        )
    );
}

#[tokio::test]
async fn an_open_breaker_past_its_reset_timeout_is_ready_to_probe() {
    let breaker = tripped("payments", Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let health = Health::builder()
        .critical_breaker(&breaker)
        .build()
        .unwrap();
    let addr = serve(&health).await;
    assert_eq!(
        get(addr, "/health/ready").await,
        (
            200,
            r#"{"status":"ok","info":{"payments":{"status":"up","state":"open","readyToProbe":true}},"error":{},"details":{"payments":{"status":"up","state":"open","readyToProbe":true}}}"#.to_owned()
        )
    );
}

#[tokio::test]
async fn shutting_down_is_503_on_readiness_and_200_on_liveness() {
    let shutdown = Shutdown::builder().build().unwrap();
    let handle = shutdown.handle();
    let health = Health::builder()
        .check("db", || async { Ok(()) })
        .shutdown(&handle)
        .build()
        .unwrap();
    let addr = serve(&health).await;
    assert_eq!(get(addr, "/health/ready").await.0, 200);
    handle.trigger();
    assert_eq!(
        get(addr, "/health/ready").await,
        (
            503,
            r#"{"status":"shutting_down","info":{},"error":{},"details":{}}"#.to_owned()
        )
    );
    assert_eq!(get(addr, "/health/live").await.0, 200);
}

#[tokio::test]
async fn an_rss_limit_fails_liveness_when_exceeded() {
    let over = Health::builder().rss_limit(1).build().unwrap();
    let addr = serve(&over).await;
    let (status, body) = get(addr, "/health/live").await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    if cfg!(target_os = "linux") {
        assert_eq!(status, 503);
        assert_eq!(body["status"], "error");
        assert_eq!(body["error"]["memory_rss"]["status"], "down");
        assert!(body["error"]["memory_rss"]["rss"].as_u64().unwrap() > 1);
        assert_eq!(body["error"]["memory_rss"]["limit"], 1);
    }
    let under = Health::builder().rss_limit(u64::MAX).build().unwrap();
    let (status, body) = get(serve(&under).await, "/health/live").await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["info"]["memory_rss"]["status"], "up");
}

#[tokio::test]
async fn custom_paths_are_served() {
    let health = Health::builder()
        .live_path("/livez")
        .ready_path("/readyz")
        .build()
        .unwrap();
    let addr = serve(&health).await;
    assert_eq!(get(addr, "/livez").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 200);
}

#[test]
fn configuration_is_validated() {
    let field = |b: harden::health::HealthBuilder| b.build().unwrap_err().field();
    assert_eq!(field(Health::builder().live_path("health")), "live_path");
    assert_eq!(
        field(Health::builder().ready_path("/health/live")),
        "ready_path"
    );
    assert_eq!(field(Health::builder().rss_limit(0)), "rss_limit");
    assert_eq!(
        field(Health::builder().check_with_timeout("db", Duration::ZERO, || async { Ok(()) })),
        "check_with_timeout"
    );
    let breaker = CircuitBreaker::builder().name("db").build().unwrap();
    // A breaker named like a check was reported as a `check` error, naming only the name.
    let err = Health::builder()
        .check("db", || async { Ok(()) })
        .breaker(&breaker)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "breaker");
    assert!(
        err.to_string()
            .contains(r#""db" is already used by a check"#),
        "{err}"
    );
    let err = Health::builder()
        .check("db", || async { Ok(()) })
        .check("db", || async { Ok(()) })
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "check");
    let err = Health::builder()
        .breaker(&breaker)
        .critical_breaker(&breaker)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "critical_breaker");
    assert!(
        err.to_string().contains("already used by a breaker"),
        "{err}"
    );
}
