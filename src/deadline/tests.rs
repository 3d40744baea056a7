use std::convert::Infallible;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use tower::{service_fn, Layer, ServiceExt};

use super::*;

fn request(header: Option<(&'static str, &'static [u8])>) -> Request<String> {
    let mut request = Request::get("/").body(String::new()).unwrap();
    if let Some((name, value)) = header {
        request.headers_mut().insert(
            name,
            HeaderValue::from_bytes(value).expect("a valid header value"),
        );
    }
    request
}

/// A handler that answers with what it saw of the deadline, in milliseconds ("none" without).
async fn seen(_request: Request<String>) -> Result<Response<String>, Infallible> {
    let body = match Deadline::current() {
        Some(d) => d.remaining().as_millis().to_string(),
        None => "none".to_owned(),
    };
    Ok(Response::new(body))
}

async fn call(layer: &DeadlineLayer, request: Request<String>) -> Response<String> {
    layer
        .layer(service_fn(seen))
        .oneshot(request)
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_the_handlers_deadline() {
    let response = call(
        &DeadlineLayer::new(),
        request(Some(("grpc-timeout", b"1500m"))),
    )
    .await;
    assert_eq!(response.body(), "1500");
}

#[tokio::test(start_paused = true)]
async fn envoy_header_is_the_handlers_deadline() {
    let response = call(
        &DeadlineLayer::new(),
        request(Some(("x-envoy-expected-rq-timeout-ms", b"250"))),
    )
    .await;
    assert_eq!(response.body(), "250");
}

#[tokio::test(start_paused = true)]
async fn garbage_negative_and_huge_values_are_ignored() {
    let layer = DeadlineLayer::new();
    for (name, value) in [
        ("grpc-timeout", &b"-5S"[..]),
        ("grpc-timeout", b"5"),
        ("grpc-timeout", b"123456789S"),
        ("grpc-timeout", b"1.5S"),
        ("x-envoy-expected-rq-timeout-ms", b"-100"),
        ("x-envoy-expected-rq-timeout-ms", b"1e9"),
        ("x-envoy-expected-rq-timeout-ms", b"999999999999"),
        ("x-envoy-expected-rq-timeout-ms", b"\xff\xfe"),
    ] {
        let response = call(&layer, request(Some((name, value)))).await;
        assert_eq!(response.body(), "none", "{name}: {value:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_incoming_deadline_never_outlasts_the_local_timeout() {
    let layer = DeadlineLayer::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let response = call(&layer, request(Some(("grpc-timeout", b"99999999H")))).await;
    assert_eq!(response.body(), "2000");
    let response = call(&layer, request(Some(("grpc-timeout", b"300m")))).await;
    assert_eq!(response.body(), "300");
    let response = call(&layer, request(None)).await;
    assert_eq!(response.body(), "2000");
}

#[tokio::test(start_paused = true)]
async fn the_earlier_of_two_headers_wins() {
    let mut req = request(Some(("grpc-timeout", b"3S")));
    req.headers_mut().insert(
        "x-envoy-expected-rq-timeout-ms",
        HeaderValue::from_static("700"),
    );
    assert_eq!(call(&DeadlineLayer::new(), req).await.body(), "700");
}

#[tokio::test(start_paused = true)]
async fn a_nested_scope_only_shortens() {
    let outer = Deadline::after(Duration::from_secs(1)).unwrap();
    let inner = Deadline::after(Duration::from_secs(5)).unwrap();
    let seen = outer
        .scope(inner.scope(async { Deadline::current().unwrap().remaining() }))
        .await;
    assert_eq!(seen, Duration::from_secs(1));
    // And a server layer inside a scope keeps the earlier deadline.
    let body = outer
        .scope(call(
            &DeadlineLayer::new(),
            request(Some(("grpc-timeout", b"10S"))),
        ))
        .await;
    assert_eq!(body.body(), "1000");
}

async fn slow(_request: Request<String>) -> Result<Response<String>, Infallible> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(Response::new("late".to_owned()))
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_is_a_504() {
    let service = DeadlineLayer::new().layer(service_fn(slow));
    let response = service
        .oneshot(request(Some(("x-envoy-expected-rq-timeout-ms", b"100"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        response.body().contains("\"statusCode\":504"),
        "{}",
        response.body()
    );
}

#[tokio::test(start_paused = true)]
async fn a_passed_grpc_deadline_is_deadline_exceeded() {
    let service = DeadlineLayer::new().layer(service_fn(slow));
    let mut req = request(Some(("grpc-timeout", b"100m")));
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc+proto"),
    );
    let response = service.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "4");
}

#[tokio::test(start_paused = true)]
async fn a_zero_deadline_never_reaches_the_handler() {
    let service = DeadlineLayer::new().layer(service_fn(|_: Request<String>| async {
        panic!("the handler must not run");
        #[allow(unreachable_code)]
        Ok::<Response<String>, Infallible>(Response::new(String::new()))
    }));
    let response = service
        .oneshot(request(Some(("grpc-timeout", b"0n"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[test]
fn a_zero_local_timeout_is_refused() {
    let err = DeadlineLayer::builder()
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "timeout");
}

#[tokio::test(start_paused = true)]
async fn the_cap_ends_a_call_at_the_deadline() {
    let service = DeadlineCapLayer::new().layer(service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>("late")
    }));
    let deadline = Deadline::after(Duration::from_millis(300)).unwrap();
    let start = tokio::time::Instant::now();
    let err = deadline
        .scope(service.clone().oneshot(()))
        .await
        .unwrap_err();
    assert!(err.is::<crate::timeout::error::Elapsed>());
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    // Without a deadline in scope the call runs to its end.
    assert_eq!(service.oneshot(()).await.unwrap(), "late");
}

#[tokio::test(start_paused = true)]
async fn propagation_sends_what_is_left() {
    let service = PropagateDeadlineLayer::new(DeadlineHeader::GrpcTimeout).layer(service_fn(
        |req: Request<String>| async move {
            Ok::<_, Infallible>(req.headers().get("grpc-timeout").cloned())
        },
    ));
    let deadline = Deadline::after(Duration::from_millis(900)).unwrap();
    tokio::time::advance(Duration::from_millis(400)).await;
    let sent = deadline
        .scope(service.clone().oneshot(request(None)))
        .await
        .unwrap();
    assert_eq!(sent.unwrap(), "500000u");
    assert_eq!(service.oneshot(request(None)).await.unwrap(), None);
}

// A zero deadline has passed already: the layer answers before the handler (the proptest below
// must not read that 504 as a handler's answer).
#[tokio::test(start_paused = true)]
async fn a_zero_deadline_in_either_wire_format_is_answered_504_without_the_handler() {
    let layer = DeadlineLayer::builder().build().unwrap();
    for header in [
        ("grpc-timeout", &b"0m"[..]),
        ("x-envoy-expected-rq-timeout-ms", &b"0"[..]),
    ] {
        let response = call(&layer, request(Some(header))).await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT, "{header:?}");
        assert_ne!(response.body(), "0", "the handler ran for {header:?}");
    }
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        // Any bytes in either header: never a panic, never a deadline longer than the local
        // timeout, and a deadline only when the bytes are a well-formed value.
        #[test]
        fn arbitrary_header_bytes(grpc in proptest::collection::vec(any::<u8>(), 0..14),
                                  millis in proptest::collection::vec(any::<u8>(), 0..14)) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let layer = DeadlineLayer::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut req = request(None);
            if let Ok(v) = HeaderValue::from_bytes(&grpc) {
                req.headers_mut().insert("grpc-timeout", v);
            }
            if let Ok(v) = HeaderValue::from_bytes(&millis) {
                req.headers_mut().insert("x-envoy-expected-rq-timeout-ms", v);
            }
            let expected = [
                HeaderValue::from_bytes(&grpc).ok().and_then(|_| parse_grpc_timeout(&grpc)),
                HeaderValue::from_bytes(&millis).ok().and_then(|_| parse_millis(&millis)),
                Some(Duration::from_secs(30)),
            ].into_iter().flatten().min().unwrap();
            let response = rt.block_on(call(&layer, req));
            if expected.is_zero() {
                // Zero is a deadline already passed: answered at once, the handler never runs.
                prop_assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
            } else {
                let seen: u128 = response.body().parse().unwrap();
                prop_assert!(seen <= 30_000);
                prop_assert_eq!(seen, expected.as_millis());
            }
        }
    }
}
