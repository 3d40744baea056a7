//! harden around real tonic clients and servers on 127.0.0.1: breaker, gRFC A6 retries,
//! pushback, throttling, committed streams, deadlines over two hops, health during shutdown,
//! and harden's errors as statuses. Messages are prost derives: no protoc.

mod echo;

use std::sync::atomic::Ordering;
use std::time::Duration;

use echo::{serve_tonic, unary, unary_response, Echo, EchoReply};
use harden::circuit_breaker::error::CircuitOpen;
use harden::circuit_breaker::State;
use harden::http::HttpLayerBuilder;
use harden::tonic::{GrpcLayer, PUSHBACK};
use tonic::{Code, Status};
use tower::Layer;

fn policy(attempts: u32, initial: &str, codes: &str, extra: &str) -> String {
    format!(
        r#"{{"methodConfig":[{{"name":[{{"service":"test.Echo"}}],
            "retryPolicy":{{"maxAttempts":{attempts},"initialBackoff":"{initial}","maxBackoff":"0.01s",
                           "backoffMultiplier":2,"retryableStatusCodes":[{codes}]}}}}]{extra}}}"#
    )
}

#[tokio::test]
async fn an_outage_opens_the_breaker_within_the_volume_and_stops_traffic() {
    let echo = Echo::new(|_, _| Err(Status::unavailable("down")));
    let channel = serve_tonic(echo.clone()).await;
    let layer = GrpcLayer::builder()
        .breaker(
            HttpLayerBuilder::default_breaker()
                .volume_threshold(10)
                .error_threshold_percentage(50.0),
        )
        .build()
        .unwrap();
    let client = layer.layer(channel);
    let mut last = None;
    for _ in 0..50 {
        last = Some(unary(client.clone(), "hi").await.unwrap_err());
    }
    assert_eq!(layer.breaker().unwrap().state(), State::Open);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 10);
    let status = last.unwrap();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.metadata().get(PUSHBACK).is_some());
    assert!(std::error::Error::source(&status)
        .unwrap()
        .is::<CircuitOpen>());
}

#[tokio::test]
async fn caller_mistakes_do_not_open_the_breaker() {
    let echo = Echo::new(|_, _| Err(Status::not_found("no such thing")));
    let layer = GrpcLayer::builder()
        .breaker(HttpLayerBuilder::default_breaker().volume_threshold(5))
        .build()
        .unwrap();
    let client = layer.layer(serve_tonic(echo.clone()).await);
    for _ in 0..20 {
        assert_eq!(
            unary(client.clone(), "x").await.unwrap_err().code(),
            Code::NotFound
        );
    }
    assert_eq!(layer.breaker().unwrap().state(), State::Closed);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn retryable_codes_are_retried_by_the_policy() {
    let echo = Echo::new(|n, req| match n {
        0 | 1 => Err(Status::unavailable("warming up")),
        _ => Ok(EchoReply {
            message: req
                .metadata()
                .get("grpc-previous-rpc-attempts")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
        }),
    });
    let client = GrpcLayer::builder()
        .service_config_json(policy(3, "0.001s", r#""UNAVAILABLE""#, ""))
        .build()
        .unwrap()
        .layer(serve_tonic(echo.clone()).await);
    let reply = unary_response(client.clone(), "hi").await.unwrap();
    assert_eq!(
        reply.extensions().get::<harden::retry::Attempts>(),
        Some(&harden::retry::Attempts(3)),
        "the response says how many attempts it took"
    );
    assert_eq!(reply.into_inner().message, "2");
    assert_eq!(echo.calls.load(Ordering::SeqCst), 3);
    let reply = unary_response(client, "hi").await.unwrap();
    assert_eq!(
        reply.extensions().get::<harden::retry::Attempts>(),
        None,
        "a first-attempt answer carries no extension"
    );
    assert_eq!(harden::retry::Attempts::of(reply.extensions()), 1);
}

#[tokio::test]
async fn a_non_retryable_code_is_sent_once() {
    let echo = Echo::new(|_, _| Err(Status::invalid_argument("bad")));
    let client = GrpcLayer::builder()
        .service_config_json(policy(5, "0.001s", r#""UNAVAILABLE""#, ""))
        .build()
        .unwrap()
        .layer(serve_tonic(echo.clone()).await);
    assert_eq!(
        unary(client, "x").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(echo.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_retry_sends_the_message_again() {
    let echo = Echo::new(|n, req| match n {
        0 => Err(Status::unavailable("warming up")),
        _ => Ok(EchoReply {
            message: req.get_ref().message.clone(),
        }),
    });
    let client = GrpcLayer::builder()
        .service_config_json(policy(2, "0.001s", r#""UNAVAILABLE""#, ""))
        .build()
        .unwrap()
        .layer(serve_tonic(echo.clone()).await);
    let message = "a message long enough to be more than a frame header".repeat(20);
    assert_eq!(unary(client, &message).await.unwrap().message, message);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_over_the_buffer_limit_is_sent_once() {
    let echo = Echo::new(|_, _| Err(Status::unavailable("down")));
    let client = GrpcLayer::builder()
        .service_config_json(policy(5, "0.001s", r#""UNAVAILABLE""#, ""))
        .buffer_limit(8)
        .build()
        .unwrap()
        .layer(serve_tonic(echo.clone()).await);
    assert_eq!(
        unary(client, "longer than eight bytes")
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );
    assert_eq!(echo.calls.load(Ordering::SeqCst), 1);
}

fn with_pushback(value: &'static str) -> Status {
    let mut status = Status::unavailable("busy");
    status
        .metadata_mut()
        .insert(PUSHBACK, value.parse().unwrap());
    status
}

#[tokio::test]
async fn pushback_saying_do_not_retry_is_honoured() {
    let echo = Echo::new(|_, _| Err(with_pushback("-1")));
    let client = GrpcLayer::builder()
        .service_config_json(policy(5, "0.001s", r#""UNAVAILABLE""#, ""))
        .build()
        .unwrap()
        .layer(serve_tonic(echo.clone()).await);
    assert_eq!(
        unary(client, "x").await.unwrap_err().code(),
        Code::Unavailable
    );
    assert_eq!(echo.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_pushback_delay_replaces_the_backoff() {
    // The backoff would be a random wait of up to a day, far past the call's 5 s deadline, so
    // without the server's 10 ms the call would give up after one attempt.
    let echo = Echo::new(|n, _| match n {
        0 => Err(with_pushback("10")),
        _ => Ok(EchoReply {
            message: "ok".into(),
        }),
    });
    let config = r#"{"methodConfig":[{"name":[{}],"timeout":"5s","retryPolicy":{"maxAttempts":2,
        "initialBackoff":"86400s","maxBackoff":"86400s","backoffMultiplier":1,
        "retryableStatusCodes":["UNAVAILABLE"]}}]}"#;
    let client = GrpcLayer::builder()
        .service_config_json(config)
        .build()
        .unwrap()
        .layer(serve_tonic(echo.clone()).await);
    assert_eq!(unary(client, "x").await.unwrap().message, "ok");
    assert_eq!(echo.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn throttling_bounds_amplification_under_a_total_outage() {
    let echo = Echo::new(|_, _| Err(Status::unavailable("down")));
    let config = policy(
        5,
        "0.001s",
        r#""UNAVAILABLE""#,
        r#","retryThrottling":{"maxTokens":10,"tokenRatio":0.1}"#,
    );
    let client = GrpcLayer::builder()
        .service_config_json(config)
        .no_breaker()
        .build()
        .unwrap()
        .layer(serve_tonic(echo.clone()).await);
    for _ in 0..100 {
        unary(client.clone(), "x").await.unwrap_err();
    }
    // Tokens 10 → 5 over the first call's five attempts; from then on no retry is allowed.
    assert_eq!(echo.calls.load(Ordering::SeqCst), 104);
}

#[tokio::test]
async fn a_committed_stream_is_not_retried_and_counts_once() {
    let echo = Echo::new(|_, _| Err(Status::unavailable("mid-stream failure")));
    let layer = GrpcLayer::builder()
        .service_config_json(policy(5, "0.001s", r#""UNAVAILABLE""#, ""))
        .build()
        .unwrap();
    let client = layer.layer(serve_tonic(echo.clone()).await);
    let mut stream = echo::stream(client, 2).await.unwrap();
    assert_eq!(stream.message().await.unwrap().unwrap().message, "0");
    assert_eq!(stream.message().await.unwrap().unwrap().message, "1");
    assert_eq!(
        stream.message().await.unwrap_err().code(),
        Code::Unavailable
    );
    assert_eq!(echo.stream_calls.load(Ordering::SeqCst), 1);
    let stats = layer.breaker().unwrap().stats();
    assert_eq!((stats.failures, stats.successes), (1, 0));
}

#[tokio::test]
async fn a_finished_stream_is_one_success() {
    let echo = Echo::new(|_, _| {
        Ok(EchoReply {
            message: "end".into(),
        })
    });
    let layer = GrpcLayer::builder().build().unwrap();
    let client = layer.layer(serve_tonic(echo.clone()).await);
    let mut stream = echo::stream(client, 3).await.unwrap();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    let stats = layer.breaker().unwrap().stats();
    assert_eq!((stats.failures, stats.successes), (0, 1));
}

#[tokio::test]
async fn a_method_timeout_is_sent_as_grpc_timeout_and_enforced() {
    let echo = Echo::new(|_, req| {
        Ok(EchoReply {
            message: req
                .metadata()
                .get("grpc-timeout")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
        })
    });
    let config = r#"{"methodConfig":[{"name":[{}],"timeout":"0.5s"}]}"#;
    let client = GrpcLayer::builder()
        .service_config_json(config)
        .build()
        .unwrap()
        .layer(serve_tonic(echo.clone()).await);
    let sent = unary(client.clone(), "x").await.unwrap().message;
    let sent = harden::deadline::parse_grpc_timeout(sent.as_bytes()).expect("a grpc-timeout");
    assert!(
        sent <= Duration::from_millis(500) && !sent.is_zero(),
        "{sent:?}"
    );

    let slow = Echo::slow(Duration::from_secs(30));
    let client = GrpcLayer::builder()
        .service_config_json(config)
        .build()
        .unwrap()
        .layer(serve_tonic(slow).await);
    let status = tokio::time::timeout(Duration::from_secs(10), unary(client, "x"))
        .await
        .expect("answered by the deadline")
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
}

mod deadline_and_server;
