//! `harden::chaos`: rates, reproducibility, run-time switching, delays and hangs on paused
//! time, HTTP statuses, configuration errors and metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use harden::chaos::error::InjectedError;
use harden::chaos::{Chaos, ChaosStats, Faults, Latency};
use harden::timeout::{error::Elapsed, TimeoutLayer};
use harden::BoxError;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

/// What one call came back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Ok,
    Error,
    Status(u16),
    Hang,
}

/// A service counting the calls that reach it.
fn counting() -> (
    Arc<AtomicU64>,
    impl Service<
            u32,
            Response = u32,
            Error = BoxError,
            Future = impl std::future::Future<Output = Result<u32, BoxError>> + Send,
        > + Clone,
) {
    let reached = Arc::new(AtomicU64::new(0));
    let counter = reached.clone();
    let service = service_fn(move |x: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(x) }
    });
    (reached, service)
}

/// Makes `n` calls one after the other; a call still pending after its first poll (with no
/// latency configured) is a hang.
async fn outcomes<S>(service: &mut S, n: u32) -> Vec<Seen>
where
    S: Service<u32, Response = u32, Error = BoxError>,
{
    let mut seen = Vec::with_capacity(n as usize);
    for i in 0..n {
        let future = service.ready().await.unwrap().call(i);
        let mut future = std::pin::pin!(future);
        let outcome = match futures::poll!(future.as_mut()) {
            Poll::Pending => Seen::Hang,
            Poll::Ready(Ok(x)) => {
                assert_eq!(x, i);
                Seen::Ok
            }
            Poll::Ready(Err(err)) => {
                let injected = err
                    .downcast_ref::<InjectedError>()
                    .expect("an injected error");
                match injected.status() {
                    Some(status) => Seen::Status(status),
                    None => Seen::Error,
                }
            }
        };
        seen.push(outcome);
    }
    seen
}

fn count(seen: &[Seen], what: Seen) -> u64 {
    seen.iter().filter(|s| **s == what).count() as u64
}

/// Binomial bounds: `n * p` within 5 standard deviations (the seed is fixed, so the test is
/// deterministic; the bounds catch a rate that is ignored, doubled or shifted).
fn assert_rate(observed: u64, n: u64, p: f64, what: &str) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    let (low, high) = (mean - 5.0 * sd, mean + 5.0 * sd);
    assert!(
        (low..=high).contains(&(observed as f64)),
        "{what}: {observed} of {n}, expected {mean} ± {}",
        5.0 * sd
    );
}

#[cfg(feature = "http")]
fn status_faults(f: Faults, status: u16, rate: f64) -> Faults {
    f.with_status(http::StatusCode::from_u16(status).unwrap(), rate)
}

#[tokio::test]
async fn observed_rates_are_within_bounds_on_a_fixed_seed() {
    let n = 20_000;
    let mut faults = Faults::new().with_error_rate(0.2).with_hang_rate(0.05);
    #[cfg(feature = "http")]
    {
        faults = status_faults(faults, 503, 0.1);
    }
    let chaos = Chaos::builder().seed(1).faults(faults).build().unwrap();
    let (reached, inner) = counting();
    let mut service = chaos.layer().layer(inner);

    let seen = outcomes(&mut service, n).await;
    let n = u64::from(n);
    assert_rate(count(&seen, Seen::Error), n, 0.2, "errors");
    assert_rate(count(&seen, Seen::Hang), n, 0.05, "hangs");
    #[cfg(feature = "http")]
    assert_rate(count(&seen, Seen::Status(503)), n, 0.1, "statuses");
    // Injected faults never reach the inner service; everything else does.
    assert_eq!(reached.load(Ordering::SeqCst), count(&seen, Seen::Ok));

    let stats = chaos.stats();
    assert_eq!(stats.calls, n);
    assert_eq!(stats.errors, count(&seen, Seen::Error));
    assert_eq!(stats.hangs, count(&seen, Seen::Hang));
    #[cfg(feature = "http")]
    assert_eq!(stats.statuses, count(&seen, Seen::Status(503)));
    assert_eq!(stats.delayed, 0);
}

#[tokio::test(start_paused = true)]
async fn latency_rate_is_within_bounds() {
    let chaos = Chaos::builder()
        .seed(2)
        .latency(Latency::fixed(Duration::from_millis(1)), 0.3)
        .error_rate(0.1)
        .build()
        .unwrap();
    let service = chaos.layer().layer(counting().1);
    let n = 5_000u64;
    let mut delayed_errors = 0;
    for i in 0..n as u32 {
        let start = Instant::now();
        let result = service.clone().oneshot(i).await;
        if start.elapsed() > Duration::ZERO && result.is_err() {
            delayed_errors += 1;
        }
    }
    let stats = chaos.stats();
    assert_rate(stats.delayed, n, 0.3, "delayed");
    assert_rate(stats.errors, n, 0.1, "errors");
    // A delay can come on top of an error: the draws are independent.
    assert_rate(delayed_errors, n, 0.03, "delayed errors");
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults_and_another_seed_others() {
    let run = |seed| async move {
        let chaos = Chaos::builder()
            .seed(seed)
            .error_rate(0.3)
            .hang_rate(0.1)
            .build()
            .unwrap();
        let mut service = chaos.layer().layer(counting().1);
        outcomes(&mut service, 500).await
    };
    let a = run(42).await;
    assert_eq!(a, run(42).await);
    assert_ne!(a, run(43).await);
}

#[tokio::test]
async fn a_calls_faults_depend_on_its_number_not_on_other_draws() {
    // With latency on, delayed calls draw more numbers; the error pattern must not shift.
    let errors = |latency_rate| async move {
        let chaos = Chaos::builder()
            .seed(9)
            .error_rate(0.3)
            .latency(Latency::fixed(Duration::ZERO), latency_rate)
            .build()
            .unwrap();
        let service = chaos.layer().layer(counting().1);
        let mut pattern = Vec::new();
        for i in 0..300 {
            pattern.push(service.clone().oneshot(i).await.is_err());
        }
        pattern
    };
    assert_eq!(errors(0.0).await, errors(0.7).await);
}

#[tokio::test]
async fn the_handle_changes_behaviour_at_run_time() {
    let chaos = Chaos::builder().build().unwrap();
    assert!(chaos.is_enabled());
    assert!(!chaos.is_active(), "no rate set: nothing injected");
    let (reached, inner) = counting();
    let mut service = chaos.layer().layer(inner);
    // A clone made before the change follows it too.
    let mut clone = service.clone();

    assert_eq!(count(&outcomes(&mut service, 50).await, Seen::Ok), 50);
    assert_eq!(
        chaos.stats(),
        ChaosStats::default(),
        "pass-through takes no number"
    );

    chaos.set(Faults::new().with_error_rate(1.0)).unwrap();
    assert!(chaos.is_active());
    assert_eq!(count(&outcomes(&mut clone, 50).await, Seen::Error), 50);

    chaos.disable();
    assert!(!chaos.is_active());
    assert_eq!(count(&outcomes(&mut service, 50).await, Seen::Ok), 50);
    assert_eq!(
        chaos.faults().error_rate(),
        1.0,
        "disabling keeps the settings"
    );

    chaos.enable();
    assert_eq!(count(&outcomes(&mut service, 50).await, Seen::Error), 50);

    chaos.set(Faults::new().with_hang_rate(1.0)).unwrap();
    assert_eq!(count(&outcomes(&mut service, 10).await, Seen::Hang), 10);

    chaos.set(Faults::new()).unwrap();
    assert_eq!(count(&outcomes(&mut service, 10).await, Seen::Ok), 10);
    assert_eq!(reached.load(Ordering::SeqCst), 110);
    let stats = chaos.stats();
    assert_eq!((stats.calls, stats.errors, stats.hangs), (110, 100, 10));
}

#[tokio::test]
async fn a_chaos_built_disabled_injects_nothing_until_enabled() {
    let chaos = Chaos::builder()
        .error_rate(1.0)
        .enabled(false)
        .build()
        .unwrap();
    let mut service = chaos.layer().layer(counting().1);
    assert_eq!(count(&outcomes(&mut service, 5).await, Seen::Ok), 5);
    chaos.enable();
    assert_eq!(count(&outcomes(&mut service, 5).await, Seen::Error), 5);
}

#[tokio::test(start_paused = true)]
async fn a_fixed_delay_comes_before_the_inner_call() {
    let chaos = Chaos::builder()
        .latency(Latency::fixed(Duration::from_millis(250)), 1.0)
        .build()
        .unwrap();
    let polled_at = Arc::new(std::sync::Mutex::new(None));
    let record = polled_at.clone();
    let inner = service_fn(move |()| {
        let record = record.clone();
        async move {
            *record.lock().unwrap() = Some(Instant::now());
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, BoxError>("done")
        }
    });
    let service = chaos.layer().layer(inner);

    let start = Instant::now();
    let mut call = std::pin::pin!(service.oneshot(()));
    assert!(futures::poll!(call.as_mut()).is_pending());
    tokio::time::advance(Duration::from_millis(249)).await;
    assert!(futures::poll!(call.as_mut()).is_pending());
    assert_eq!(
        *polled_at.lock().unwrap(),
        None,
        "the inner future waits for the delay"
    );
    assert_eq!(call.await.unwrap(), "done");
    // The delay and the inner service's own time add up.
    assert_eq!(
        polled_at.lock().unwrap().unwrap() - start,
        Duration::from_millis(250)
    );
    assert_eq!(start.elapsed(), Duration::from_millis(350));
}

#[tokio::test(start_paused = true)]
async fn uniform_and_exponential_delays_stay_in_their_range() {
    for (latency, min, max) in [
        (
            Latency::uniform(Duration::from_millis(50), Duration::from_millis(150)),
            Duration::from_millis(50),
            Duration::from_millis(150),
        ),
        (
            Latency::exponential(Duration::from_millis(20), Duration::from_millis(100)),
            Duration::ZERO,
            Duration::from_millis(100),
        ),
    ] {
        let chaos = Chaos::builder()
            .seed(3)
            .latency(latency, 1.0)
            .build()
            .unwrap();
        let service = chaos.layer().layer(counting().1);
        let mut delays = Vec::new();
        for i in 0..400 {
            let start = Instant::now();
            service.clone().oneshot(i).await.unwrap();
            delays.push(start.elapsed());
        }
        assert!(
            delays.iter().all(|d| (min..=max).contains(d)),
            "{latency:?}"
        );
        let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
        let distinct = delays
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        // Paused time moves timers in whole milliseconds, so delays are seen to the millisecond.
        assert!(distinct > 50, "{latency:?}: {distinct} distinct delays");
        match latency {
            Latency::Uniform { .. } => assert!(
                (Duration::from_millis(90)..Duration::from_millis(110)).contains(&mean),
                "{mean:?}"
            ),
            // Mean 20 ms, barely cut at 100 ms (e^-5 of the mass).
            _ => assert!(
                (Duration::from_millis(16)..Duration::from_millis(24)).contains(&mean),
                "{mean:?}"
            ),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_hang_never_answers_and_a_timeout_above_ends_it() {
    let chaos = Chaos::builder().hang_rate(1.0).build().unwrap();
    let (reached, inner) = counting();

    let bare = chaos.layer().layer(inner.clone());
    let mut call = std::pin::pin!(bare.oneshot(1));
    assert!(futures::poll!(call.as_mut()).is_pending());
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(futures::poll!(call.as_mut()).is_pending());

    let timed = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .layer(chaos.layer())
        .service(inner);
    let start = Instant::now();
    let err = timed.oneshot(2).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    assert_eq!(chaos.stats().hangs, 2);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_during_the_delay_drops_the_inner_call_before_it_runs() {
    let chaos = Chaos::builder()
        .latency(Latency::fixed(Duration::from_secs(1)), 1.0)
        .build()
        .unwrap();
    let (reached, _) = counting();
    let ran = reached.clone();
    let inner = service_fn(move |x: u32| {
        let ran = ran.clone();
        async move {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(x)
        }
    });
    let service = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(100)))
        .layer(chaos.layer())
        .service(inner);
    assert!(service.oneshot(1).await.unwrap_err().is::<Elapsed>());
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[test]
fn invalid_faults_are_rejected_naming_the_setting() {
    let field = |f: Faults| Chaos::builder().faults(f).build().unwrap_err().field();
    assert_eq!(field(Faults::new().with_error_rate(1.5)), "error_rate");
    assert_eq!(field(Faults::new().with_error_rate(-0.1)), "error_rate");
    assert_eq!(field(Faults::new().with_error_rate(f64::NAN)), "error_rate");
    assert_eq!(
        field(Faults::new().with_hang_rate(f64::INFINITY)),
        "hang_rate"
    );
    assert_eq!(
        field(Faults::new().with_latency(Latency::fixed(Duration::ZERO), 2.0)),
        "latency"
    );
    assert_eq!(
        field(Faults::new().with_latency(
            Latency::uniform(Duration::from_secs(2), Duration::from_secs(1)),
            0.5
        )),
        "latency"
    );
    assert_eq!(
        field(Faults::new().with_error_rate(0.7).with_hang_rate(0.4)),
        "hang_rate"
    );
    let err = Chaos::builder().error_rate(2.0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `error_rate`: rate 2 is outside [0, 1]"
    );

    // A rejected `set` leaves the running faults as they were.
    let chaos = Chaos::builder().error_rate(0.5).build().unwrap();
    assert!(chaos.set(Faults::new().with_error_rate(3.0)).is_err());
    assert_eq!(chaos.faults(), Faults::new().with_error_rate(0.5));
    // Rates at the ends of the range are fine, and all exclusive faults may add up to 1.
    assert!(chaos
        .set(Faults::new().with_error_rate(0.5).with_hang_rate(0.5))
        .is_ok());
}

#[cfg(feature = "http")]
mod http_status {
    use super::*;
    use http::{Request, Response, StatusCode};

    #[tokio::test]
    async fn an_http_layer_answers_with_the_status_without_calling_the_upstream() {
        let chaos = Chaos::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE, 1.0)
            .build()
            .unwrap();
        let reached = Arc::new(AtomicU64::new(0));
        let counter = reached.clone();
        let upstream = service_fn(move |_: Request<()>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(Response::new(String::from("fresh"))) }
        });
        let service = chaos.http_layer().layer(upstream);

        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.into_body(), "");
        assert_eq!(reached.load(Ordering::SeqCst), 0);

        chaos
            .set(
                chaos
                    .faults()
                    .with_status(StatusCode::TOO_MANY_REQUESTS, 0.0),
            )
            .unwrap();
        let response = service.oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.into_body(), "fresh");
        assert_eq!(reached.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_status_rate_holds_on_http_responses() {
        let chaos = Chaos::builder()
            .seed(5)
            .status(StatusCode::BAD_GATEWAY, 0.25)
            .build()
            .unwrap();
        let upstream = service_fn(|_: Request<()>| async {
            Ok::<_, BoxError>(Response::new(axum::body::Body::empty()))
        });
        let service = chaos.http_layer().layer(upstream);
        let mut bad = 0;
        for _ in 0..4_000 {
            let response = service.clone().oneshot(Request::new(())).await.unwrap();
            if response.status() == StatusCode::BAD_GATEWAY {
                bad += 1;
            }
        }
        assert_rate(bad, 4_000, 0.25, "502s");
        assert_eq!(chaos.stats().statuses, bad);
    }

    #[tokio::test]
    async fn a_plain_layer_reports_the_status_as_an_injected_error() {
        let chaos = Chaos::builder()
            .name("payments")
            .status(StatusCode::SERVICE_UNAVAILABLE, 1.0)
            .build()
            .unwrap();
        let err = chaos
            .layer()
            .layer(counting().1)
            .oneshot(1)
            .await
            .unwrap_err();
        let injected = err.downcast_ref::<InjectedError>().unwrap();
        assert_eq!(injected.status(), Some(503));
        assert_eq!(injected.chaos(), "payments");
        assert_eq!(err.to_string(), "status 503 injected by chaos `payments`");
    }

    #[cfg(feature = "reqwest")]
    #[tokio::test]
    async fn a_reqwest_response_carries_the_status() {
        let chaos = Chaos::builder()
            .status(StatusCode::GATEWAY_TIMEOUT, 1.0)
            .build()
            .unwrap();
        // Never called: the status is injected before the request would leave.
        let client = service_fn(|_: reqwest::Request| async {
            Err::<reqwest::Response, BoxError>("no network in tests".into())
        });
        let request =
            reqwest::Request::new(reqwest::Method::GET, "http://127.0.0.1:9/".parse().unwrap());
        let response = chaos
            .http_layer()
            .layer(client)
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    }
}

#[cfg(feature = "metrics")]
mod metrics_series {
    use super::*;
    use crate::support::recorder::TestRecorder;
    use harden::metrics::names;

    #[tokio::test(start_paused = true)]
    async fn injected_faults_and_the_active_gauge_are_exported() {
        let recorder = TestRecorder::new();
        let (chaos, mut service) = metrics::with_local_recorder(&recorder, || {
            let chaos = Chaos::builder()
                .name("db")
                .error_rate(1.0)
                .latency(Latency::fixed(Duration::from_millis(5)), 1.0)
                .enabled(false)
                .build()
                .unwrap();
            let service = chaos.layer().layer(counting().1);
            (chaos, service)
        });
        let active = [("chaos", "db")];
        let fault = |f| [("chaos", "db"), ("fault", f)];
        assert_eq!(recorder.gauge(names::CHAOS_ACTIVE, &active), 0.0);
        chaos.enable();
        assert_eq!(recorder.gauge(names::CHAOS_ACTIVE, &active), 1.0);

        for i in 0..7 {
            service.ready().await.unwrap().call(i).await.unwrap_err();
        }
        assert_eq!(recorder.counter(names::CHAOS_INJECTED, &fault("error")), 7);
        assert_eq!(
            recorder.counter(names::CHAOS_INJECTED, &fault("latency")),
            7
        );
        assert_eq!(recorder.counter(names::CHAOS_INJECTED, &fault("hang")), 0);
        assert_eq!(recorder.counter(names::CHAOS_INJECTED, &fault("status")), 0);

        chaos.set(Faults::new()).unwrap();
        assert_eq!(
            recorder.gauge(names::CHAOS_ACTIVE, &active),
            0.0,
            "every rate 0"
        );
    }
}

#[cfg(all(feature = "axum", feature = "reqwest"))]
mod over_http {
    use super::*;
    use axum::error_handling::HandleErrorLayer;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;

    /// An axum server on 127.0.0.1 whose route sits behind `chaos`, as the demo's upstream.
    async fn serve(chaos: &Chaos) -> String {
        let app = Router::new().route("/", get(|| async { "fresh" })).layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
                }))
                .layer(chaos.http_layer()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_real_server_answers_with_injected_statuses_and_errors() {
        let chaos = Chaos::builder()
            .name("edge")
            .status(StatusCode::SERVICE_UNAVAILABLE, 1.0)
            .build()
            .unwrap();
        let url = serve(&chaos).await;
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let get = || async { client.get(&url).send().await.unwrap() };

        assert_eq!(get().await.status(), StatusCode::SERVICE_UNAVAILABLE);

        // An injected error becomes whatever the server's error handler makes of it.
        chaos.set(Faults::new().with_error_rate(1.0)).unwrap();
        let response = get().await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.text().await.unwrap(),
            "failure injected by chaos `edge`"
        );

        chaos.disable();
        let response = get().await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "fresh");
        let stats = chaos.stats();
        assert_eq!((stats.calls, stats.statuses, stats.errors), (2, 1, 1));
    }
}
