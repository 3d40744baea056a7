//! Retry behaviour under paused time: attempt counts, delay sequences, readiness, cancellation,
//! request copies, server-requested delays and the budget.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::poll;
use harden::retry::error::{BudgetExhausted, RetryAfterTooLong};
use harden::retry::{Backoff, Jitter, RetryBudget, RetryDecision, RetryLayer, RetryPolicy};
use harden::BoxError;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

#[derive(Default)]
struct Log {
    calls: u32,
    polls_ready: u32,
    call_times: Vec<Instant>,
}

/// A service answering from a script (the last entry repeats). It checks tower's contract: it
/// panics if `call` comes without a `poll_ready` that returned `Ready(Ok)` on the same clone, and
/// its `poll_ready` is `Pending` once before each readiness, to make the caller wait.
#[derive(Clone)]
struct Scripted {
    log: Arc<Mutex<Log>>,
    script: Arc<Vec<Result<u16, &'static str>>>,
    ready: bool,
    pending_once: bool,
}

impl Scripted {
    fn new(script: Vec<Result<u16, &'static str>>) -> Self {
        Scripted {
            log: Arc::default(),
            script: Arc::new(script),
            ready: false,
            pending_once: true,
        }
    }

    fn calls(&self) -> u32 {
        self.log.lock().unwrap().calls
    }

    /// Gaps between consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        let log = self.log.lock().unwrap();
        log.call_times.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl<Req> Service<Req> for Scripted {
    type Response = u16;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u16, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.log.lock().unwrap().polls_ready += 1;
        if self.pending_once && !self.ready {
            self.pending_once = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending_once = true;
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Req) -> Self::Future {
        assert!(self.ready, "call without poll_ready");
        self.ready = false;
        let mut log = self.log.lock().unwrap();
        let i = log.calls as usize;
        log.calls += 1;
        log.call_times.push(Instant::now());
        let outcome = self.script[i.min(self.script.len() - 1)];
        Box::pin(async move { outcome.map_err(Into::into) })
    }
}

fn policy(max_attempts: u32, backoff: Backoff) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(max_attempts)
        .backoff(backoff.jitter(Jitter::None))
        .no_budget()
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn exact_attempt_counts() {
    // Always failing: max_attempts attempts in all, the first call included; the last error returned.
    for max in [1, 2, 5] {
        let inner = Scripted::new(vec![Err("down")]);
        let svc = RetryLayer::new(policy(max, Backoff::constant(MS))).layer(inner.clone());
        let err = svc.oneshot(0u32).await.unwrap_err();
        assert_eq!(err.to_string(), "down");
        assert_eq!(inner.calls(), max);
    }
    // Succeeds on the third attempt: exactly three calls.
    let inner = Scripted::new(vec![Err("a"), Err("b"), Ok(200), Err("never")]);
    let svc = RetryLayer::new(policy(5, Backoff::constant(MS))).layer(inner.clone());
    assert_eq!(svc.oneshot(0u32).await.unwrap(), 200);
    assert_eq!(inner.calls(), 3);
    // A response is not retried by default.
    let inner = Scripted::new(vec![Ok(503)]);
    let svc = RetryLayer::default().layer(inner.clone());
    assert_eq!(svc.oneshot(0u32).await.unwrap(), 503);
    assert_eq!(inner.calls(), 1);
}

async fn gaps(backoff: Backoff, attempts: u32) -> Vec<Duration> {
    let inner = Scripted::new(vec![Err("down")]);
    let svc = RetryLayer::new(policy(attempts, backoff)).layer(inner.clone());
    let _ = svc.oneshot(0u32).await;
    assert_eq!(inner.calls(), attempts);
    inner.gaps()
}

#[tokio::test(start_paused = true)]
async fn exact_delay_sequences_without_jitter() {
    assert_eq!(gaps(Backoff::constant(100 * MS), 4).await, [100 * MS; 3]);
    assert_eq!(
        gaps(Backoff::linear(100 * MS, 50 * MS), 5).await,
        [100 * MS, 150 * MS, 200 * MS, 250 * MS]
    );
    assert_eq!(
        gaps(Backoff::exponential(100 * MS, 2.0), 5).await,
        [100 * MS, 200 * MS, 400 * MS, 800 * MS]
    );
    // The cap.
    assert_eq!(
        gaps(Backoff::exponential(100 * MS, 3.0).max_delay(500 * MS), 5).await,
        [100 * MS, 300 * MS, 500 * MS, 500 * MS]
    );
    assert_eq!(
        gaps(Backoff::linear(100 * MS, 100 * MS).max_delay(250 * MS), 5).await,
        [100 * MS, 200 * MS, 250 * MS, 250 * MS]
    );
    // Zero delay: retries at once, with no timer.
    assert_eq!(
        gaps(Backoff::constant(Duration::ZERO), 3).await,
        [Duration::ZERO; 2]
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_stay_under_the_cap() {
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let inner = Scripted::new(vec![Err("down")]);
        let p = RetryPolicy::builder()
            .max_attempts(8)
            .backoff(Backoff::exponential(100 * MS, 2.0))
            .jitter(jitter)
            .max_delay(300 * MS)
            .no_budget()
            .build()
            .unwrap();
        let _ = RetryLayer::new(p).layer(inner.clone()).oneshot(0u32).await;
        assert_eq!(inner.calls(), 8);
        // Timers have a 1 ms resolution.
        assert!(inner.gaps().iter().all(|g| *g <= 301 * MS), "{jitter:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_awaited_before_every_attempt() {
    // `Scripted` panics on a call without readiness and is Pending once before each readiness.
    let inner = Scripted::new(vec![Err("down")]);
    let mut svc = RetryLayer::new(policy(4, Backoff::constant(10 * MS))).layer(inner.clone());
    let err = ServiceExt::<u32>::ready(&mut svc)
        .await
        .unwrap()
        .call(0u32)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "down");
    assert_eq!(inner.calls(), 4);
    // Two polls per attempt: one Pending, one Ready.
    assert_eq!(inner.log.lock().unwrap().polls_ready, 8);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_during_backoff_cancels_it() {
    let inner = Scripted::new(vec![Err("down")]);
    let mut svc =
        RetryLayer::new(policy(5, Backoff::constant(Duration::from_secs(1)))).layer(inner.clone());
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    let mut fut = Box::pin(svc.call(0u32));
    assert!(poll!(fut.as_mut()).is_pending());
    assert_eq!(inner.calls(), 1);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(poll!(fut.as_mut()).is_pending());
    drop(fut);
    tokio::time::advance(Duration::from_secs(3600)).await;
    tokio::task::yield_now().await;
    assert_eq!(inner.calls(), 1);
}

/// A request that cannot be cloned.
struct Upload {
    body: Option<Vec<u8>>,
}

#[tokio::test(start_paused = true)]
async fn uncopyable_request_is_sent_once_and_returns_the_original_outcome() {
    let inner = Scripted::new(vec![Err("first"), Err("second")]);
    let p = RetryPolicy::builder()
        .max_attempts(3)
        .no_budget()
        .copy_request_with(|r: &Upload| r.body.clone().map(|body| Upload { body: Some(body) }))
        .build()
        .unwrap();
    let layer = RetryLayer::new(p);
    let err = layer
        .layer(inner.clone())
        .oneshot(Upload { body: None })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "first");
    assert_eq!(inner.calls(), 1);
    // A copyable one is retried.
    let inner = Scripted::new(vec![Err("first"), Ok(200)]);
    let ok = layer
        .layer(inner.clone())
        .oneshot(Upload {
            body: Some(vec![1, 2, 3]),
        })
        .await
        .unwrap();
    assert_eq!(ok, 200);
    assert_eq!(inner.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn copy_hook_refusing_later_copies_stops_retrying() {
    let copies = Arc::new(AtomicU32::new(0));
    let c = copies.clone();
    let inner = Scripted::new(vec![Err("a"), Err("b"), Err("c")]);
    let p = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(Backoff::constant(MS))
        .no_budget()
        // One copy only: the first call and one retry.
        .copy_request_with(move |r: &u32| (c.fetch_add(1, Ordering::Relaxed) == 0).then_some(*r))
        .build()
        .unwrap();
    let err = RetryLayer::new(p)
        .layer(inner.clone())
        .oneshot(7u32)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "b");
    assert_eq!(inner.calls(), 2);
    assert_eq!(copies.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_clone_is_made_only_for_attempts_that_may_be_retried() {
    #[derive(Debug)]
    struct Counted(Arc<AtomicU32>);
    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::Relaxed);
            Counted(self.0.clone())
        }
    }
    let clones = Arc::new(AtomicU32::new(0));
    let inner = Scripted::new(vec![Err("down")]);
    let _ = RetryLayer::new(policy(3, Backoff::constant(MS)))
        .layer(inner.clone())
        .oneshot(Counted(clones.clone()))
        .await;
    // Three attempts: copies for the second and the third, none after the last.
    assert_eq!(clones.load(Ordering::Relaxed), 2);
    let _ = RetryLayer::new(policy(1, Backoff::constant(MS)))
        .layer(inner)
        .oneshot(Counted(clones.clone()))
        .await;
    assert_eq!(clones.load(Ordering::Relaxed), 2);
}

// The future held its service clone (a connection, a permit) until dropped, past the last attempt.
#[tokio::test(start_paused = true)]
async fn the_service_clone_is_released_when_the_last_attempt_starts() {
    let token = Arc::new(());
    let calls = Arc::new(AtomicU32::new(0));
    let inner = {
        let (token, calls) = (token.clone(), calls.clone());
        tower::service_fn(move |()| {
            let _held = &token; // each clone of the service holds the token
            let first = calls.fetch_add(1, Ordering::Relaxed) == 0;
            async move {
                if first {
                    Err::<(), BoxError>("down".into())
                } else {
                    std::future::pending().await
                }
            }
        })
    };
    let mut svc = RetryLayer::new(policy(2, Backoff::constant(Duration::ZERO))).layer(inner);
    let held_by_svc = Arc::strong_count(&token);
    ServiceExt::<()>::ready(&mut svc).await.unwrap();
    let mut fut = Box::pin(svc.call(()));
    assert_eq!(
        Arc::strong_count(&token),
        held_by_svc + 1,
        "a clone for the retry"
    );
    assert!(poll!(&mut fut).is_pending());
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "the last attempt is in flight"
    );
    assert_eq!(
        Arc::strong_count(&token),
        held_by_svc,
        "and the clone is gone"
    );
    drop(fut);
}

fn retry_after(
    requested: Duration,
    max_delay: Duration,
) -> RetryPolicy<impl harden::retry::RetryClassifier<u16> + Clone> {
    RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(MS).jitter(Jitter::Full))
        .max_delay(max_delay)
        .no_budget()
        .retry_on(move |r: Result<&u16, &BoxError>| match r {
            Ok(503) => RetryDecision::RetryAfter(requested),
            _ => RetryDecision::DoNotRetry,
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn server_requested_delay_is_honoured_and_capped() {
    let inner = Scripted::new(vec![Ok(503), Ok(503), Ok(200)]);
    let svc = RetryLayer::new(retry_after(
        3 * Duration::from_secs(1),
        Duration::from_secs(10),
    ))
    .layer(inner.clone());
    assert_eq!(svc.oneshot(0u32).await.unwrap(), 200);
    assert_eq!(inner.gaps(), [Duration::from_secs(3); 2]);

    let inner = Scripted::new(vec![Ok(503)]);
    let svc = RetryLayer::new(retry_after(Duration::from_secs(60), Duration::from_secs(5)))
        .layer(inner.clone());
    // Attempts run out: the last response is returned, not an error.
    assert_eq!(svc.oneshot(0u32).await.unwrap(), 503);
    assert_eq!(inner.gaps(), [Duration::from_secs(5); 2]);
}

#[tokio::test(start_paused = true)]
async fn empty_budget_wraps_the_last_error_returns_a_response_and_is_counted() {
    let budget = RetryBudget::builder()
        .min_retries_per_sec(0)
        .retry_ratio(0.0)
        .burst(0)
        .build()
        .unwrap();
    let p = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(Backoff::constant(MS))
        .budget(budget.clone())
        .build()
        .unwrap();
    let inner = Scripted::new(vec![Err("original"), Err("retried")]);
    let err = RetryLayer::new(p.clone())
        .layer(inner.clone())
        .oneshot(0u32)
        .await
        .unwrap_err();
    // The caller can tell that the budget, not the attempts, ended the call, and still reach
    // the upstream's error.
    let exhausted = err.downcast::<BudgetExhausted>().unwrap();
    assert_eq!(exhausted.to_string(), "retry budget exhausted");
    assert_eq!(
        std::error::Error::source(&*exhausted).unwrap().to_string(),
        "original"
    );
    assert_eq!(exhausted.into_inner().to_string(), "original");
    assert_eq!(inner.calls(), 1);
    assert_eq!(budget.exhausted(), 1);
    // Every layer made from the policy shares the budget.
    let inner = Scripted::new(vec![Err("original")]);
    let _ = p.layer().layer(inner.clone()).oneshot(0u32).await;
    assert_eq!(budget.exhausted(), 2);

    // A retryable response is returned as is too.
    let p = RetryPolicy::builder()
        .budget(budget.clone())
        .retry_on(|r: Result<&u16, &BoxError>| match r {
            Ok(503) => RetryDecision::Retry,
            _ => RetryDecision::DoNotRetry,
        })
        .build()
        .unwrap();
    let inner = Scripted::new(vec![Ok(503), Ok(200)]);
    assert_eq!(
        RetryLayer::new(p)
            .layer(inner.clone())
            .oneshot(0u32)
            .await
            .unwrap(),
        503
    );
    assert_eq!(budget.exhausted(), 3);
}

/// The retry budget's former rule, kept here as a model only: a retry is allowed while, over
/// the last `ttl`, `retries + 1 <= min * ttl + ratio * requests` (counted per second).
struct WindowRule {
    ttl_secs: u64,
    min_per_sec: f64,
    ratio: f64,
    /// (second, requests, retries granted) of the seconds seen so far.
    seconds: Vec<(u64, u64, u64)>,
}

impl WindowRule {
    fn slot(&mut self, sec: u64) -> &mut (u64, u64, u64) {
        if self.seconds.last().is_none_or(|s| s.0 != sec) {
            self.seconds.push((sec, 0, 0));
        }
        self.seconds.last_mut().unwrap()
    }
    fn deposit(&mut self, sec: u64) {
        self.slot(sec).1 += 1;
    }
    fn try_withdraw(&mut self, sec: u64) -> bool {
        let oldest = (sec + 1).saturating_sub(self.ttl_secs);
        let (requests, retries) = self
            .seconds
            .iter()
            .filter(|s| s.0 >= oldest)
            .fold((0, 0), |(q, r), s| (q + s.1, r + s.2));
        let allowed = self.min_per_sec * self.ttl_secs as f64 + self.ratio * requests as f64;
        let ok = (retries + 1) as f64 <= allowed;
        if ok {
            self.slot(sec).2 += 1;
        }
        ok
    }
}

/// Retries in every window of `window` ticks: (first tick, retries, requests).
fn windows(per_tick: &[(u64, u64)], window: usize) -> Vec<(usize, u64, u64)> {
    (0..=per_tick.len() - window)
        .map(|first| {
            let w = &per_tick[first..first + window];
            (
                first,
                w.iter().map(|t| t.1).sum::<u64>(),
                w.iter().map(|t| t.0).sum::<u64>(),
            )
        })
        .collect()
}

// The budget used to bound retries summed over a 10 s window: when an outage started, the
// window's whole allowance went out in its first second (twice the load at 3 attempts), and it
// came back every time the window turned over while the upstream was still down.
#[tokio::test(start_paused = true)]
async fn budget_holds_in_every_second_of_an_outage_and_does_not_burst_again() {
    const RATIO: f64 = 0.2;
    const MIN_PER_SEC: u32 = 10;
    const BURST: u32 = 10;
    const PER_TICK: u64 = 50; // 500 requests/s in ticks of 100 ms
    const HEALTHY_TICKS: u64 = 100; // 10 s healthy, then down
    const TICKS: u64 = 500;
    const ATTEMPTS: u32 = 3;
    let ticks_per_sec = 10;
    let down = |tick: u64| tick >= HEALTHY_TICKS;

    // The former rule, replayed on the same scripted traffic: every request of an outage
    // asks for a retry after each failed attempt, at once.
    let mut old = WindowRule {
        ttl_secs: 10,
        min_per_sec: f64::from(MIN_PER_SEC),
        ratio: RATIO,
        seconds: Vec::new(),
    };
    let mut old_ticks = Vec::new();
    for tick in 0..TICKS {
        let sec = tick / ticks_per_sec;
        let mut retries = 0;
        for _ in 0..PER_TICK {
            old.deposit(sec);
            if down(tick) {
                retries += (1..ATTEMPTS).take_while(|_| old.try_withdraw(sec)).count() as u64;
            }
        }
        old_ticks.push((PER_TICK, retries));
    }

    // The budget, through the retry layer, against an upstream that fails from tick 100 on.
    let budget = RetryBudget::builder()
        .min_retries_per_sec(MIN_PER_SEC)
        .retry_ratio(RATIO)
        .burst(BURST)
        .build()
        .unwrap();
    let p = RetryPolicy::builder()
        .max_attempts(ATTEMPTS)
        .backoff(Backoff::constant(Duration::ZERO))
        .budget(budget.clone())
        .build()
        .unwrap();
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let upstream = {
        let (failing, calls) = (failing.clone(), calls.clone());
        tower::service_fn(move |_: u64| {
            calls.fetch_add(1, Ordering::Relaxed);
            let fail = failing.load(Ordering::Relaxed);
            async move {
                match fail {
                    true => Err::<u16, BoxError>("down".into()),
                    false => Ok(200),
                }
            }
        })
    };
    let layer = RetryLayer::new(p);
    let mut new_ticks = Vec::new();
    for tick in 0..TICKS {
        failing.store(down(tick), Ordering::Relaxed);
        let before = u64::from(calls.load(Ordering::Relaxed));
        let sent = (0..PER_TICK).map(|i| layer.layer(upstream.clone()).oneshot(i));
        for r in futures::future::join_all(sent).await {
            assert_eq!(r.is_ok(), !down(tick));
        }
        let attempts = u64::from(calls.load(Ordering::Relaxed)) - before;
        new_ticks.push((PER_TICK, attempts - PER_TICK));
        tokio::time::advance(100 * MS).await;
    }

    // In any 1 s: extra load <= ratio * load + floor + burst.
    let bound = |requests: u64| RATIO * requests as f64 + f64::from(MIN_PER_SEC + BURST);
    let old_seconds = windows(&old_ticks, ticks_per_sec as usize);
    let new_seconds = windows(&new_ticks, ticks_per_sec as usize);
    let worst = |seconds: &[(usize, u64, u64)], from: u64, to: u64| {
        seconds
            .iter()
            .filter(|s| (from..to).contains(&(s.0 as u64)))
            .map(|s| s.1 as f64 / s.2 as f64)
            .fold(0.0, f64::max)
    };
    let outage = HEALTHY_TICKS;
    // The former rule: the first second of the outage runs twice the load in retries, and the
    // burst comes back when the window turns over (10 s later, and 10 s after that).
    assert!(worst(&old_seconds, outage, outage + 10) >= 1.9);
    assert!(worst(&old_seconds, outage + 95, outage + 110) >= 1.5);
    assert!(worst(&old_seconds, outage + 195, outage + 210) >= 1.5);
    assert!(old_seconds.iter().any(|s| s.1 as f64 > bound(s.2)));
    // The budget: every 1 s window, the first of the outage included, within the bound ...
    for &(first, retries, requests) in &new_seconds {
        assert!(
            retries as f64 <= bound(requests),
            "{retries} retries for {requests} requests in the second from tick {first}"
        );
    }
    // ... and once the burst is spent, within ratio * load + floor: nothing comes back.
    for &(first, retries, requests) in new_seconds.iter().filter(|s| s.0 as u64 > outage) {
        let steady = RATIO * requests as f64 + f64::from(MIN_PER_SEC) + 1.0;
        assert!(
            retries as f64 <= steady,
            "{retries} retries for {requests} requests in the second from tick {first}"
        );
    }
    // It was the budget that held retries back, and it let the ratio through.
    let retries: u64 = new_ticks[outage as usize..].iter().map(|t| t.1).sum();
    let requests = (TICKS - outage) * PER_TICK;
    assert!(retries as f64 >= RATIO * requests as f64);
    assert!(budget.exhausted() > 0);
}

#[tokio::test(start_paused = true)]
async fn huge_delays_do_not_panic() {
    let inner = Scripted::new(vec![Err("down")]);
    let p = RetryPolicy::builder()
        .max_attempts(3)
        .max_delay(Duration::MAX)
        .no_budget()
        .retry_on(|_: Result<&u16, &BoxError>| RetryDecision::RetryAfter(Duration::MAX))
        .build()
        .unwrap();
    let mut svc = RetryLayer::new(p).layer(inner.clone());
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    let mut fut = Box::pin(svc.call(0u32));
    assert!(poll!(fut.as_mut()).is_pending());
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    assert!(poll!(fut.as_mut()).is_pending());
    assert_eq!(inner.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn server_delay_beyond_the_total_timeout_fails_at_once_with_that_delay() {
    let policy = |total: Option<Duration>| {
        let b = RetryPolicy::builder()
            .max_attempts(3)
            .no_budget()
            .retry_on(|r: Result<&u16, &BoxError>| match r {
                Ok(503) => RetryDecision::RetryAfter(Duration::from_secs(60)),
                Ok(429) => RetryDecision::RetryAfter(Duration::from_secs(2)),
                _ => RetryDecision::DoNotRetry,
            })
            .max_delay(Duration::from_secs(300));
        match total {
            Some(t) => b.total_timeout(t).build().unwrap(),
            None => b.build().unwrap(),
        }
    };
    // 60 s asked, 10 s allowed: one attempt, then the error, without sleeping.
    let inner = Scripted::new(vec![Ok(503), Ok(200)]);
    let start = Instant::now();
    let err = RetryLayer::new(policy(Some(Duration::from_secs(10))))
        .layer(inner.clone())
        .oneshot(0u32)
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(inner.calls(), 1);
    let too_long = err.downcast_ref::<RetryAfterTooLong>().unwrap();
    assert_eq!(too_long.retry_after(), Duration::from_secs(60));
    assert_eq!(too_long.remaining(), Duration::from_secs(10));

    // 2 s asked, 10 s allowed: retried after 2 s.
    let inner = Scripted::new(vec![Ok(429), Ok(200)]);
    let svc = RetryLayer::new(policy(Some(Duration::from_secs(10)))).layer(inner.clone());
    assert_eq!(svc.oneshot(0u32).await.unwrap(), 200);
    assert_eq!(inner.gaps(), [Duration::from_secs(2)]);

    // Without a deadline the (capped) delay is slept.
    let inner = Scripted::new(vec![Ok(503), Ok(200)]);
    let svc = RetryLayer::new(policy(None)).layer(inner.clone());
    assert_eq!(svc.oneshot(0u32).await.unwrap(), 200);
    assert_eq!(inner.gaps(), [Duration::from_secs(60)]);
}

#[tokio::test(start_paused = true)]
async fn resilience_gives_its_total_timeout_to_the_retry() {
    let policy = RetryPolicy::builder()
        .no_budget()
        .retry_on(|r: Result<&u16, &BoxError>| match r {
            Ok(503) => RetryDecision::RetryAfter(Duration::from_secs(3)),
            _ => RetryDecision::DoNotRetry,
        })
        .build()
        .unwrap();
    assert_eq!(policy.total_timeout(), None);
    let inner = Scripted::new(vec![Ok(503), Ok(200)]);
    let layer = harden::ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(2))
        .retry(policy.clone())
        .build()
        .unwrap();
    let err = layer.layer(inner.clone()).oneshot(0u32).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<RetryAfterTooLong>()
            .unwrap()
            .retry_after(),
        Duration::from_secs(3)
    );
    assert_eq!(inner.calls(), 1);
    let err = RetryPolicy::builder()
        .total_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "total_timeout");
}

// A stack's total timeout ended the call even when its retry's policy judged server delays
// against a total of its own: the retry that now ends it must keep both.
#[tokio::test(start_paused = true)]
async fn a_stack_ends_the_call_at_its_total_whatever_total_its_policy_judges_delays_by() {
    let policy = |own: Duration| {
        RetryPolicy::builder()
            .no_budget()
            .retry_on(|r: Result<&u16, &BoxError>| match r {
                Ok(503) => RetryDecision::RetryAfter(Duration::from_secs(3)),
                _ => RetryDecision::DoNotRetry,
            })
            .total_timeout(own)
            .build()
            .unwrap()
    };
    // One call through a stack with total `stack`, whose policy judges delays against `own`.
    let call = |stack: Duration, own: Duration, inner: &Scripted| {
        let service = harden::ResilienceLayer::builder()
            .total_timeout(stack)
            .retry(policy(own))
            .build()
            .unwrap()
            .layer(inner.clone());
        async move { service.oneshot(0u32).await.unwrap_err() }
    };
    // The policy's 10 s let a 3 s delay be waited; the stack's 2 s end the call during it.
    let inner = Scripted::new(vec![Ok(503), Ok(200)]);
    let start = Instant::now();
    let err = call(Duration::from_secs(2), Duration::from_secs(10), &inner).await;
    assert!(err.is::<harden::timeout::error::Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(inner.calls(), 1);

    // The policy's 2 s refuse a 3 s delay at once, but do not end a 5 s attempt the stack's
    // 10 s allow.
    let inner = Scripted::new(vec![Ok(503), Ok(200)]);
    let err = call(Duration::from_secs(10), Duration::from_secs(2), &inner).await;
    assert!(err.is::<RetryAfterTooLong>(), "{err}");
    assert_eq!(inner.calls(), 1);
    let slow = tower::service_fn(|_: u32| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<u16, BoxError>(200)
    });
    let start = Instant::now();
    let answer = harden::ResilienceLayer::builder()
        .total_timeout(Duration::from_secs(10))
        .retry(policy(Duration::from_secs(2)))
        .build()
        .unwrap()
        .layer(slow)
        .oneshot(0u32)
        .await
        .unwrap();
    assert_eq!(answer, 200);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

// The total timeout a server delay is judged against starts when the retry's future first
// waits, as a `TimeoutLayer` around it counts (so a call that is not retried reads no clock),
// or, when no attempt waited, at the first server delay judged.
#[tokio::test(start_paused = true)]
async fn the_total_timeout_counts_from_the_first_wait() {
    let policy = RetryPolicy::builder()
        .max_attempts(2)
        .no_budget()
        .retry_on(|r: Result<&u16, &BoxError>| match r {
            Ok(429) => RetryDecision::RetryAfter(Duration::from_secs(3)),
            _ => RetryDecision::DoNotRetry,
        })
        .total_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // The first attempt waits 8 s, then asks for 3: 2 s are left of the 10.
    let slow = tower::service_fn(|_: u32| async {
        tokio::time::sleep(Duration::from_secs(8)).await;
        Ok::<u16, BoxError>(429)
    });
    let err = RetryLayer::new(policy.clone())
        .layer(slow)
        .oneshot(0)
        .await
        .unwrap_err();
    let too_long = err.downcast_ref::<RetryAfterTooLong>().unwrap();
    assert_eq!(too_long.remaining(), Duration::from_secs(2));

    // A future made now and first polled 20 s later, its attempt answering at once: the whole
    // 10 s are left when the delay is judged, and 3 s fit.
    let inner = Scripted::new(vec![Ok(429), Ok(200)]);
    let mut svc = RetryLayer::new(policy).layer(inner.clone());
    let future = ServiceExt::<u32>::ready(&mut svc).await.unwrap().call(0);
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(future.await.unwrap(), 200);
    // The first attempt was made by `call`, 20 s before the poll; the retry 3 s after it.
    assert_eq!(inner.gaps(), [Duration::from_secs(23)]);
}
