//! `harden::http` under paused time: the preset around an in-process `http` service, so delays
//! are exact. (The same behaviour against real servers: `reqwest_client.rs` beside this file.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use harden::http::{
    parse_retry_after, HttpLayer, HttpLayerBuilder, HttpRetryClassifier, Idempotent,
    DEFAULT_RETRY_AFTER_CAP, IDEMPOTENCY_KEY,
};
use harden::retry::error::{BudgetExhausted, RetryAfterTooLong};
use harden::retry::{Backoff, Jitter, RetryBudget, RetryClassifier, RetryDecision};
use harden::BoxError;
use http::{HeaderValue, Method, Request, Response};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};

type Script = Arc<dyn Fn(u32) -> Result<Response<()>, BoxError> + Send + Sync>;
/// When each attempt arrived.
type Log = Arc<Mutex<Vec<Instant>>>;

/// A service answering attempt `n` with `script(n)`, logging when each attempt arrived.
fn upstream(
    script: impl Fn(u32) -> Result<Response<()>, BoxError> + Send + Sync + 'static,
) -> (
    impl Service<Request<String>, Response = Response<()>, Error = BoxError, Future = impl Send> + Clone,
    Log,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let script: Script = Arc::new(script);
    let l = log.clone();
    let svc = service_fn(move |_req: Request<String>| {
        let n = {
            let mut log = l.lock().unwrap();
            log.push(Instant::now());
            log.len() as u32 - 1
        };
        let answer = script(n);
        async move { answer }
    });
    (svc, log)
}

fn answer(status: u16, retry_after: Option<&str>) -> Result<Response<()>, BoxError> {
    let mut b = Response::builder().status(status);
    if let Some(v) = retry_after {
        b = b.header(http::header::RETRY_AFTER, v);
    }
    Ok(b.body(())?)
}

fn preset() -> HttpLayerBuilder {
    HttpLayer::builder()
        .max_attempts(3)
        .backoff(
            Backoff::constant(Duration::from_millis(100))
                .jitter(Jitter::None)
                .max_delay(DEFAULT_RETRY_AFTER_CAP),
        )
        .no_budget()
}

fn get() -> Request<String> {
    Request::get("http://upstream/")
        .body(String::new())
        .unwrap()
}

fn gaps(log: &Mutex<Vec<Instant>>) -> Vec<Duration> {
    log.lock()
        .unwrap()
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect()
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_and_dates_are_waited_for_exactly() {
    let (svc, log) = upstream(|n| match n {
        0 => answer(503, Some("7")),
        1 => answer(
            429,
            Some(&httpdate::fmt_http_date(
                SystemTime::now() + Duration::from_secs(3600),
            )),
        ),
        _ => answer(200, None),
    });
    let client = preset()
        .total_timeout(Duration::from_secs(7200))
        .build()
        .unwrap()
        .layer(svc);
    assert_eq!(client.oneshot(get()).await.unwrap().status(), 200);
    let gaps = gaps(&log);
    assert_eq!(gaps[0], Duration::from_secs(7));
    // An hour away, capped at 300 s.
    assert_eq!(gaps[1], DEFAULT_RETRY_AFTER_CAP);
}

#[tokio::test(start_paused = true)]
async fn past_dates_are_zero_and_garbage_falls_back_to_the_backoff() {
    let (svc, log) = upstream(|n| match n {
        0 => answer(503, Some("Sunday, 06-Nov-94 08:49:37 GMT")),
        1 => answer(503, Some("tomorrow-ish")),
        _ => answer(200, None),
    });
    let client = preset().build().unwrap().layer(svc);
    assert_eq!(client.oneshot(get()).await.unwrap().status(), 200);
    assert_eq!(gaps(&log), [Duration::ZERO, Duration::from_millis(100)]);
}

#[tokio::test(start_paused = true)]
async fn a_delay_beyond_the_total_timeout_fails_at_once() {
    let (svc, log) = upstream(|_| answer(503, Some("45")));
    let client = preset()
        .total_timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .layer(svc);
    let start = Instant::now();
    let err = client.oneshot(get()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    let too_long = err.downcast_ref::<RetryAfterTooLong>().unwrap();
    assert_eq!(too_long.retry_after(), Duration::from_secs(45));
    assert_eq!(too_long.remaining(), Duration::from_secs(30));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn methods_idempotency_key_and_extension() {
    for (method, key, ext, attempts) in [
        (Method::GET, false, false, 3),
        (Method::DELETE, false, false, 3),
        (Method::POST, false, false, 1),
        (Method::PATCH, false, false, 1),
        (Method::POST, true, false, 3),
        (Method::PATCH, false, true, 3),
    ] {
        let (svc, log) = upstream(|_| answer(502, None));
        let client = preset().build().unwrap().layer(svc);
        let mut req = Request::builder()
            .method(method.clone())
            .uri("http://upstream/")
            .body(String::from("{}"))
            .unwrap();
        if key {
            req.headers_mut()
                .insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k-1"));
        }
        if ext {
            req.extensions_mut().insert(Idempotent);
        }
        // Whatever the attempts, the caller gets the real 502.
        assert_eq!(client.oneshot(req).await.unwrap().status(), 502);
        assert_eq!(
            log.lock().unwrap().len(),
            attempts,
            "{method} key={key} ext={ext}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn budget_refusal_is_an_error_after_an_error_and_the_response_after_a_response() {
    let empty = || {
        RetryBudget::builder()
            .min_retries_per_sec(0)
            .retry_ratio(0.0)
            .burst(0)
            .build()
            .unwrap()
    };
    let (svc, log) = upstream(|_| {
        Err(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )))
    });
    let client = preset().budget(empty()).build().unwrap().layer(svc);
    let err = client.oneshot(get()).await.unwrap_err();
    let exhausted = err.downcast::<BudgetExhausted>().unwrap();
    assert!(exhausted.into_inner().is::<std::io::Error>());
    assert_eq!(log.lock().unwrap().len(), 1);

    let (svc, _) = upstream(|_| answer(503, None));
    let client = preset().budget(empty()).build().unwrap().layer(svc);
    assert_eq!(client.oneshot(get()).await.unwrap().status(), 503);
}

#[tokio::test(start_paused = true)]
async fn breaker_counts_404_as_a_success_ignores_429_and_fails_5xx() {
    let (svc, _) = upstream(|n| match n % 3 {
        0 => answer(404, None),
        1 => answer(429, None),
        _ => answer(500, None),
    });
    let layer = preset().max_attempts(1).build().unwrap();
    let breaker = layer.breaker().clone();
    let client = layer.layer(svc);
    for _ in 0..3 {
        client.clone().oneshot(get()).await.unwrap();
    }
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.failures), (1, 1));
}

proptest! {
    // 6. Bad input: any bytes as `Retry-After`, as a header or raw, never panic nor exceed the cap.
    #[test]
    fn retry_after_from_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80), cap in 0u64..1_000) {
        let cap = Duration::from_secs(cap);
        if let Some(d) = parse_retry_after(&bytes, SystemTime::now(), cap) {
            prop_assert!(d <= cap);
        }
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let response = Response::builder().status(503).header(http::header::RETRY_AFTER, value).body(()).unwrap();
            let c = HttpRetryClassifier::new().retry_after_cap(cap);
            match RetryClassifier::classify(&c, Ok(&response)) {
                RetryDecision::RetryAfter(d) => prop_assert!(d <= cap),
                RetryDecision::Retry => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_ends_the_backoff_after_a_fast_first_attempt() {
    // The total's timer is made when a retry is due; a backoff past the total must still end
    // the call at the total, whatever the attempts took.
    let (svc, log) = upstream(|_| answer(503, None));
    let client = preset()
        .attempt_timeout(Duration::from_secs(1))
        .total_timeout(Duration::from_secs(5))
        .backoff(Backoff::constant(Duration::from_secs(60)).jitter(Jitter::None))
        .build()
        .unwrap()
        .layer(svc);
    let start = Instant::now();
    let err = client.oneshot(get()).await.unwrap_err();
    assert!(err.is::<harden::timeout::error::Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_ends_a_retry_that_outlasts_it_and_the_first_attempt_without_an_attempt_timeout(
) {
    // A second attempt hangs past the total (each attempt within its own timeout).
    let slow = service_fn(|_req: Request<String>| {
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            if n > 0 {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            answer(503, None)
        }
    });
    let client = preset()
        .attempt_timeout(Duration::from_secs(4))
        .total_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .layer(slow);
    let start = Instant::now();
    let err = client.oneshot(get()).await.unwrap_err();
    assert!(err.is::<harden::timeout::error::Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    // No attempt timeout: the total bounds the first attempt itself.
    let hang = service_fn(|_req: Request<String>| async {
        std::future::pending::<()>().await;
        answer(200, None)
    });
    let client = preset()
        .attempt_timeout(None)
        .total_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .layer(hang);
    let start = Instant::now();
    let err = client.oneshot(get()).await.unwrap_err();
    assert!(err.is::<harden::timeout::error::Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}
