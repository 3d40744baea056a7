//! harden next to its Rust peers, in one run: `cargo bench -p harden-peers`.
//!
//! Every row protects the same operation (`harness::op`: returns its input, or fails on every
//! 10th call in the failure rows), counts every call's outcome and checks the counts. Every
//! breaker is configured as equivalently as it allows to harden's settings below; what each peer
//! cannot express is said next to its constructor (and in BENCHMARKS.md).
#![allow(clippy::type_complexity)]

#[path = "../../rows/harden_rows.rs"]
mod harden_rows;
#[path = "../../harness/mod.rs"]
mod harness;

use harness::*;
use std::future::ready;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service};

// ---------------------------------------------------------------------------------------------
// Peers, each configured like harden as far as it allows
// ---------------------------------------------------------------------------------------------

/// recloser: count-based ring buffer only, no time window: `closed_len(VOLUME)` judges the last
/// VOLUME calls (so the volume threshold and the window are both "the last 20 calls").
/// Threshold semantics `>=`. Not a tower service: called through `Recloser::call`.
fn recloser_new(reset: Duration) -> Arc<recloser::Recloser> {
    Arc::new(
        recloser::Recloser::custom()
            .error_rate((THRESHOLD / 100.0) as f32)
            .closed_len(VOLUME as usize)
            .half_open_len(1)
            .open_wait(reset)
            .build(),
    )
}
fn recloser_call(r: &recloser::Recloser, i: u64, fail_every: u64) -> Outcome {
    match r.call(|| op(i, fail_every)) {
        Ok(_) => Outcome::Ok,
        Err(recloser::Error::Inner(_)) => Outcome::InnerError,
        Err(recloser::Error::Rejected) => Outcome::Rejected,
    }
}

/// failsafe: `success_rate_over_time_window(1 - threshold, VOLUME, WINDOW, constant(reset))`.
/// Its rate is an exponential moving average over the window, not exact bucket counts; no bucket
/// count. Not a tower service: called through `CircuitBreaker::call` (sync API).
type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::Constant>,
    (),
>;
fn failsafe_new(reset: Duration) -> Failsafe {
    failsafe_with_window(reset, WINDOW)
}
/// failsafe trips only once a whole window has passed since it was created, and counts the window
/// in whole seconds; the open rows use a sub-second window (read as 0) so it trips at once. The
/// rejection path does not read the window.
fn failsafe_with_window(reset: Duration, window: Duration) -> Failsafe {
    use failsafe::{backoff, failure_policy, Config};
    Config::new()
        .failure_policy(failure_policy::success_rate_over_time_window(
            1.0 - THRESHOLD / 100.0,
            VOLUME,
            window,
            backoff::constant(reset),
        ))
        .build()
}
fn failsafe_call(f: &Failsafe, i: u64, fail_every: u64) -> Outcome {
    use failsafe::CircuitBreaker;
    match f.call(|| op(i, fail_every)) {
        Ok(_) => Outcome::Ok,
        Err(failsafe::Error::Inner(_)) => Outcome::InnerError,
        Err(failsafe::Error::Rejected) => Outcome::Rejected,
    }
}

/// tower-resilience-circuitbreaker: time-based sliding window of WINDOW, minimum VOLUME calls,
/// threshold `>=`, one half-open probe; no bucket count. A tower layer (boxed future, tokio Mutex).
/// The same with a count-based window of the last VOLUME calls (its default window type), which
/// avoids the time-based window's scan of every call record in the window on each call.
fn tr_layer_count(reset: Duration) -> tower_resilience_circuitbreaker::CircuitBreakerLayer {
    tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(THRESHOLD / 100.0)
        .sliding_window_type(tower_resilience_circuitbreaker::SlidingWindowType::CountBased)
        .sliding_window_size(VOLUME as usize)
        .minimum_number_of_calls(VOLUME as usize)
        .wait_duration_in_open(reset)
        .permitted_calls_in_half_open(1)
        .build()
        .expect("tower-resilience config")
}
fn tr_layer(reset: Duration) -> tower_resilience_circuitbreaker::CircuitBreakerLayer {
    tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(THRESHOLD / 100.0)
        .sliding_window_type(tower_resilience_circuitbreaker::SlidingWindowType::TimeBased)
        .sliding_window_duration(WINDOW)
        .minimum_number_of_calls(VOLUME as usize)
        .wait_duration_in_open(reset)
        .permitted_calls_in_half_open(1)
        .build()
        .expect("tower-resilience config")
}
fn classify_tr(
    r: &Result<u64, tower_resilience_circuitbreaker::CircuitBreakerError<OpError>>,
) -> Outcome {
    use tower_resilience_circuitbreaker::CircuitBreakerError as E;
    match r {
        Ok(_) => Outcome::Ok,
        Err(E::Inner(_)) => Outcome::InnerError,
        Err(E::OpenCircuit) => Outcome::Rejected,
    }
}

/// seatbelt (breaker + tower-service features): failure_threshold THRESHOLD/100, min_throughput
/// VOLUME, sampling_duration WINDOW, break_duration reset; its threshold is "exceeds" (`>`), and
/// half-open closes progressively (its default). A tower service (boxed future) whose rejection
/// is an `Err` of the inner error type, so the inner service maps errors into `SbErr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SbErr {
    Op,
    Rejected,
}
fn seatbelt_svc(
    clock: &tick::Clock,
    reset: Duration,
    fail_every: u64,
) -> impl Service<u64, Response = u64, Error = SbErr, Future = impl Send> + Clone + Send + Sync + 'static
{
    use layered::Layer as _;
    let context = seatbelt::ResilienceContext::<u64, Result<u64, SbErr>>::new(clock);
    let layer = seatbelt::breaker::Breaker::layer("bench", &context)
        .recovery_with(|r: &Result<u64, SbErr>, _| match r {
            Ok(_) => seatbelt::RecoveryInfo::never(),
            Err(_) => seatbelt::RecoveryInfo::retry(),
        })
        .rejected_input_error(|_, _| SbErr::Rejected)
        .failure_threshold((THRESHOLD / 100.0) as f32)
        .min_throughput(VOLUME)
        .sampling_duration(WINDOW)
        .break_duration(reset);
    layer.layer(tower::service_fn(move |i: u64| {
        ready(op(i, fail_every).map_err(|_| SbErr::Op))
    }))
}
fn classify_sb(r: &Result<u64, SbErr>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(SbErr::Op) => Outcome::InnerError,
        Err(SbErr::Rejected) => Outcome::Rejected,
    }
}

/// circuitbreaker-rs: failure_threshold THRESHOLD/100, min_throughput VOLUME, cooldown reset;
/// its consecutive-failure rule (default 5) is switched off (harden has none by default); its
/// window is its own (not configurable through the builder). Not a tower service: called through
/// `CircuitBreaker::call`.
type Cbrs = circuitbreaker_rs::CircuitBreaker<circuitbreaker_rs::DefaultPolicy, OpError>;
fn cbrs_new(reset: Duration) -> Cbrs {
    circuitbreaker_rs::CircuitBreaker::<circuitbreaker_rs::DefaultPolicy, OpError>::builder()
        .failure_threshold(THRESHOLD / 100.0)
        .min_throughput(VOLUME as u64)
        .consecutive_failures(u64::MAX)
        .cooldown(reset)
        .build()
}
fn cbrs_call(b: &Cbrs, i: u64, fail_every: u64) -> Outcome {
    use circuitbreaker_rs::BreakerError as E;
    match b.call(|| op(i, fail_every)) {
        Ok(_) => Outcome::Ok,
        Err(E::Operation(_)) => Outcome::InnerError,
        Err(E::Open) => Outcome::Rejected,
        Err(E::Internal(e)) => panic!("circuitbreaker-rs internal error {e:?}"),
    }
}

fn classify_box(r: &Result<u64, tower::BoxError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) if harden_rows::is_rejection(e.as_ref()) => Outcome::Rejected,
        Err(e) if e.is::<tower_resilience_circuitbreaker::CircuitBreakerError<OpError>>() => {
            match e.downcast_ref::<tower_resilience_circuitbreaker::CircuitBreakerError<OpError>>()
            {
                Some(tower_resilience_circuitbreaker::CircuitBreakerError::OpenCircuit) => {
                    Outcome::Rejected
                }
                _ => Outcome::InnerError,
            }
        }
        Err(e) if e.is::<tower::load_shed::error::Overloaded>() => Outcome::Rejected,
        Err(_) => Outcome::InnerError,
    }
}

fn main() {
    let cfg = Config::from_env();
    // A current-thread runtime entered for the whole single-thread group: tower's `Timeout`
    // creates a tokio `Sleep` (needs a time driver in context), seatbelt's clock is driven by tokio.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    let clock = rt.block_on(async { tick::Clock::new_tokio() });

    harness::header("harden-peers", &cfg);

    // -----------------------------------------------------------------------------------------
    // Single thread, synchronous polling (no runtime in the loop)
    // -----------------------------------------------------------------------------------------
    let mut g = Group::new(
        "Breakers and timeouts, one thread, synchronous poll (no runtime in the loop)",
        &cfg,
    );
    g.baseline(
        "baseline: bare tower::service_fn",
        "poll_ready + call + poll once",
        Expect::AllOk,
        tower_body(bare(0), classify_bare),
    );
    g.row(
        "baseline: bare closure call",
        "`op(i)` directly",
        Expect::AllOk,
        sync_body(|i| match op(i, 0) {
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::InnerError,
        }),
    );

    // closed, success
    harden_rows::closed_rows(&mut g, "closed success", 0, Expect::AllOk);
    harden_rows::sync_closed_rows(&mut g, "closed success", 0, Expect::AllOk);
    {
        let r = recloser_new(RESET);
        g.row(
            "closed success: recloser",
            "sync `Recloser::call`",
            Expect::AllOk,
            sync_body(move |i| recloser_call(&r, i, 0)),
        );
        let f = failsafe_new(RESET);
        g.row(
            "closed success: failsafe",
            "sync `CircuitBreaker::call`",
            Expect::AllOk,
            sync_body(move |i| failsafe_call(&f, i, 0)),
        );
        g.row(
            "closed success: tower-resilience (time window)",
            "tower layer",
            Expect::AllOk,
            tower_body(tr_layer(RESET).layer(bare(0)), classify_tr),
        );
        g.row(
            "closed success: tower-resilience (count window 20)",
            "tower layer",
            Expect::AllOk,
            tower_body(tr_layer_count(RESET).layer(bare(0)), classify_tr),
        );
        g.row(
            "closed success: seatbelt",
            "tower service",
            Expect::AllOk,
            tower_body(seatbelt_svc(&clock, RESET, 0), classify_sb),
        );
        let b = cbrs_new(RESET);
        g.row(
            "closed success: circuitbreaker-rs",
            "sync `CircuitBreaker::call`",
            Expect::AllOk,
            sync_body(move |i| cbrs_call(&b, i, 0)),
        );
    }

    // open, rejection
    harden_rows::open_rows(&mut g, RESET);
    harden_rows::sync_open_rows(&mut g, RESET);
    {
        let r = recloser_new(RESET);
        drive_open("recloser", |i| recloser_call(&r, i, 1));
        g.row(
            "open rejection: recloser",
            "sync `Recloser::call`",
            Expect::AllRejected,
            sync_body(move |i| recloser_call(&r, i, 1)),
        );
        let f = failsafe_with_window(RESET, Duration::from_millis(500));
        drive_open("failsafe", |i| failsafe_call(&f, i, 1));
        g.row(
            "open rejection: failsafe",
            "sync `CircuitBreaker::call`",
            Expect::AllRejected,
            sync_body(move |i| failsafe_call(&f, i, 1)),
        );
        let mut s = tr_layer(RESET).layer(bare(1));
        drive_open("tower-resilience", |i| classify_tr(&call_now(&mut s, i)));
        g.row(
            "open rejection: tower-resilience",
            "tower layer",
            Expect::AllRejected,
            tower_body(s, classify_tr),
        );
        let mut s = seatbelt_svc(&clock, RESET, 1);
        drive_open("seatbelt", |i| classify_sb(&call_now(&mut s, i)));
        g.row(
            "open rejection: seatbelt",
            "tower service",
            Expect::AllRejected,
            tower_body(s, classify_sb),
        );
        let b = cbrs_new(RESET);
        drive_open("circuitbreaker-rs", |i| cbrs_call(&b, i, 1));
        g.row(
            "open rejection: circuitbreaker-rs",
            "sync `CircuitBreaker::call`",
            Expect::AllRejected,
            sync_body(move |i| cbrs_call(&b, i, 1)),
        );
    }

    // 10% failures while closed
    let e10 = Expect::InnerErrorEvery(FAIL_EVERY);
    harden_rows::closed_rows(&mut g, "10% failures", FAIL_EVERY, e10);
    harden_rows::sync_closed_rows(&mut g, "10% failures", FAIL_EVERY, e10);
    {
        let r = recloser_new(RESET);
        g.row(
            "10% failures: recloser",
            "sync `Recloser::call`",
            e10,
            sync_body(move |i| recloser_call(&r, i, FAIL_EVERY)),
        );
        let f = failsafe_new(RESET);
        g.row(
            "10% failures: failsafe",
            "sync `CircuitBreaker::call`",
            e10,
            sync_body(move |i| failsafe_call(&f, i, FAIL_EVERY)),
        );
        g.row(
            "10% failures: tower-resilience (time window)",
            "tower layer",
            e10,
            tower_body(tr_layer(RESET).layer(bare(FAIL_EVERY)), classify_tr),
        );
        g.row(
            "10% failures: tower-resilience (count window 20)",
            "tower layer",
            e10,
            tower_body(tr_layer_count(RESET).layer(bare(FAIL_EVERY)), classify_tr),
        );
        g.row(
            "10% failures: seatbelt",
            "tower service",
            e10,
            tower_body(seatbelt_svc(&clock, RESET, FAIL_EVERY), classify_sb),
        );
        let b = cbrs_new(RESET);
        g.row(
            "10% failures: circuitbreaker-rs",
            "sync `CircuitBreaker::call`",
            e10,
            sync_body(move |i| cbrs_call(&b, i, FAIL_EVERY)),
        );
    }

    // timeout whose inner future is ready at once
    harden_rows::timeout_rows(&mut g, TIMEOUT);
    g.row(
        "timeout ready at once: tower Timeout",
        "tower layer (creates a tokio Sleep per call)",
        Expect::AllOk,
        tower_body(
            tower::timeout::TimeoutLayer::new(TIMEOUT).layer(bare(0)),
            classify_box,
        ),
    );

    // retry that does not retry
    harden_rows::retry_rows(&mut g, ATTEMPTS);
    g.row(
        "retry, no retry needed: tower Retry",
        "tower layer, policy: retry errors up to 3 attempts",
        Expect::AllOk,
        tower_body(
            tower::retry::RetryLayer::new(TowerRetry(ATTEMPTS)).layer(bare(0)),
            |r: &Result<u64, OpError>| classify_bare(r),
        ),
    );

    // What bounds the rows above on this CPU: an uncontended locked read-modify-write (a
    // window record, a budget deposit), and an `Arc` clone + drop (two of them: what a
    // `'static` response future pays to keep the breaker or the budget alive).
    let word = std::sync::atomic::AtomicU64::new(0);
    g.row(
        "bound: one uncontended atomic read-modify-write",
        "`fetch_add` on a word only this thread writes",
        Expect::AllOk,
        sync_body(move |i| {
            word.fetch_add(i, std::sync::atomic::Ordering::Relaxed);
            Outcome::Ok
        }),
    );
    let shared = Arc::new(0u64);
    g.row(
        "bound: Arc clone + drop",
        "two atomic read-modify-writes on a count only this thread writes",
        Expect::AllOk,
        sync_body(move |_| {
            drop(std::hint::black_box(Arc::clone(&shared)));
            Outcome::Ok
        }),
    );

    // full stack
    harden_rows::stack_rows(&mut g, TIMEOUT, ATTEMPTS, RESET);
    {
        let svc = tower::ServiceBuilder::new()
            .layer(tower::timeout::TimeoutLayer::new(TIMEOUT))
            .layer(tower::retry::RetryLayer::new(TowerRetry(ATTEMPTS)))
            .layer(tr_layer_count(RESET))
            .layer(tower::load_shed::LoadShedLayer::new())
            .layer(tower::limit::ConcurrencyLimitLayer::new(64))
            .service(bare(0));
        g.row(
            "full stack: tower Timeout + Retry + tower-resilience breaker (count window) + LoadShed(ConcurrencyLimit)",
            "tower layers",
            Expect::AllOk,
            tower_body(svc, classify_box),
        );
    }

    g.run();
    println!("{}", g.table());

    // -----------------------------------------------------------------------------------------
    // Threads and tasks sharing one breaker, time-based
    // -----------------------------------------------------------------------------------------
    let mut mt = MtGroup::new(
        "Threads / tasks sharing one breaker, closed success, time-based",
        &cfg,
    );
    let workers_rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
    );
    let cur_rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    );

    let add_threads = |mt: &mut MtGroup, label: &str, note: &str, make: MakeWorker| {
        let one = format!("{label}: 1 thread");
        mt.threads(&one, note, 1, Some(&one), Expect::AllOk, make.clone());
        mt.threads(
            &format!("{label}: 2 threads"),
            note,
            2,
            Some(&one),
            Expect::AllOk,
            make.clone(),
        );
        mt.threads(
            &format!("{label}: 4 threads"),
            note,
            4,
            Some(&one),
            Expect::AllOk,
            make,
        );
    };
    add_threads(
        &mut mt,
        "baseline (bare service_fn)",
        "own clone per thread",
        mt_tower(bare(0), classify_bare),
    );
    for (label, make) in harden_rows::mt_workers() {
        add_threads(
            &mut mt,
            &label,
            "one breaker, own service clone per thread",
            make,
        );
    }
    let r = recloser_new(RESET);
    let rec: Arc<dyn Fn(u64) -> Outcome + Send + Sync> = Arc::new(move |i| recloser_call(&r, i, 0));
    add_threads(
        &mut mt,
        "recloser",
        "one `Arc<Recloser>`, sync call",
        mt_sync(rec.clone()),
    );
    let f = failsafe_new(RESET);
    let fs: Arc<dyn Fn(u64) -> Outcome + Send + Sync> = Arc::new(move |i| failsafe_call(&f, i, 0));
    add_threads(
        &mut mt,
        "failsafe",
        "one state machine (cloned handle), sync call",
        mt_sync(fs.clone()),
    );
    let tr = tr_layer_count(RESET).layer(bare(0));
    add_threads(
        &mut mt,
        "tower-resilience (count window 20)",
        "one layer, own service clone per thread",
        mt_tower(tr.clone(), classify_tr),
    );
    let sb = seatbelt_svc(&clock, RESET, 0);
    add_threads(
        &mut mt,
        "seatbelt",
        "one service, own clone per thread",
        mt_tower(sb.clone(), classify_sb),
    );
    let b = cbrs_new(RESET);
    let cb: Arc<dyn Fn(u64) -> Outcome + Send + Sync> = Arc::new(move |i| cbrs_call(&b, i, 0));
    add_threads(
        &mut mt,
        "circuitbreaker-rs",
        "one breaker (cloned handle), sync call",
        mt_sync(cb.clone()),
    );

    // Tasks: 1 task on a current-thread runtime vs 2 tasks on a 2-worker multi-thread runtime.
    let add_tasks = |mt: &mut MtGroup, label: &str, note: &str, make: MakeTask| {
        let one = format!("{label}: 1 task, current-thread rt");
        mt.tasks(
            &one,
            note,
            1,
            cur_rt.clone(),
            Some(&one),
            Expect::AllOk,
            make.clone(),
        );
        mt.tasks(
            &format!("{label}: 2 tasks, 2-worker rt"),
            note,
            2,
            workers_rt.clone(),
            Some(&one),
            Expect::AllOk,
            make,
        );
    };
    add_tasks(
        &mut mt,
        "tasks: baseline",
        "`ready().await; call().await`",
        task_tower(bare(0), classify_bare),
    );
    for (label, make) in harden_rows::mt_tasks() {
        add_tasks(&mut mt, &label, "`ready().await; call().await`", make);
    }
    add_tasks(
        &mut mt,
        "tasks: recloser",
        "sync call inside the task",
        task_sync(rec),
    );
    add_tasks(
        &mut mt,
        "tasks: failsafe",
        "sync call inside the task",
        task_sync(fs),
    );
    add_tasks(
        &mut mt,
        "tasks: tower-resilience (count window 20)",
        "`ready().await; call().await`",
        task_tower(tr, classify_tr),
    );
    add_tasks(
        &mut mt,
        "tasks: seatbelt",
        "`ready().await; call().await`",
        task_tower(sb, classify_sb),
    );
    add_tasks(
        &mut mt,
        "tasks: circuitbreaker-rs",
        "sync call inside the task",
        task_sync(cb),
    );

    mt.run();
    println!("{}", mt.table());

    // Threads sharing one breaker while 10% of calls fail: every failure judges the window.
    let mut mt = MtGroup::new(
        "Threads sharing one breaker, 10% failures (each failure judges the window)",
        &cfg,
    );
    let e10 = Expect::InnerErrorEveryPerWorker(FAIL_EVERY);
    let mut add_failing = |label: &str, note: &str, make: MakeWorker| {
        let one = format!("10% failures, {label}: 1 thread");
        mt.threads(&one, note, 1, Some(&one), e10, make.clone());
        mt.threads(
            &format!("10% failures, {label}: 2 threads"),
            note,
            2,
            Some(&one),
            e10,
            make,
        );
    };
    for (label, make) in harden_rows::mt_failure_workers() {
        add_failing(&label, "one breaker, own service clone per thread", make);
    }
    let r = recloser_new(RESET);
    let rec: Arc<dyn Fn(u64) -> Outcome + Send + Sync> =
        Arc::new(move |i| recloser_call(&r, i, FAIL_EVERY));
    add_failing("recloser", "one `Arc<Recloser>`, sync call", mt_sync(rec));
    mt.run();
    println!("{}", mt.table());

    // Failure storms: half the calls fail (75% threshold: closed, every failure judges), then
    // every call fails and the open breaker rejects.
    let mut mt = MtGroup::new(
        "Threads sharing one breaker in a failure storm: 50% failures (threshold 75%, closed), 100% failures (open)",
        &cfg,
    );
    let mut add_storm = |label: &str, expect: Expect, make: MakeWorker| {
        let one = format!("{label}: 1 thread");
        let note = "one breaker, own service clone per thread";
        mt.threads(&one, note, 1, Some(&one), expect, make.clone());
        mt.threads(
            &format!("{label}: 2 threads"),
            note,
            2,
            Some(&one),
            expect,
            make,
        );
    };
    for (label, make) in harden_rows::mt_storm_workers(2) {
        add_storm(
            &format!("50% failures, {label}"),
            Expect::InnerErrorEveryPerWorker(2),
            make,
        );
    }
    for (label, make) in harden_rows::mt_open_workers() {
        add_storm(
            &format!("100% failures, open, {label}"),
            Expect::AllRejected,
            make,
        );
    }
    // What bounds a count window across threads: "the last N calls" is one order of every
    // call, so every call updates one shared word. This row does only that (a load and a
    // compare-and-swap loop, as a packed count window's record) and nothing else.
    let shared = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cas: Arc<dyn Fn(u64) -> Outcome + Send + Sync> = Arc::new(move |i| {
        use std::sync::atomic::Ordering::Relaxed;
        let mut current = shared.load(Relaxed);
        while let Err(actual) =
            shared.compare_exchange_weak(current, current.rotate_left(1) ^ i, Relaxed, Relaxed)
        {
            current = actual;
        }
        Outcome::Ok
    });
    add_storm(
        "bound: one shared-word compare-and-swap per call",
        Expect::AllOk,
        mt_sync(cas),
    );
    mt.run();
    println!("{}", mt.table());

    // Heap per breaker instance (default window where the crate has one).
    println!("### Heap bytes per breaker instance\n");
    println!("| crate | bytes per instance | config |\n|---|---:|---|");
    for (label, bytes) in harden_rows::heap_rows() {
        println!("| {label} | {bytes:.0} | default window |");
    }
    println!(
        "| recloser | {:.0} | closed_len 20 |",
        heap_bytes_per_instance(1000, || recloser_new(RESET))
    );
    println!(
        "| recloser (default, closed_len 100) | {:.0} | default |",
        heap_bytes_per_instance(1000, || recloser::Recloser::custom().build())
    );
    println!(
        "| failsafe | {:.0} | as configured above |",
        heap_bytes_per_instance(1000, || failsafe_new(RESET))
    );
    println!(
        "| tower-resilience | {:.0} | layer, as configured above |",
        heap_bytes_per_instance(1000, || tr_layer(RESET))
    );
    println!(
        "| circuitbreaker-rs | {:.0} | as configured above |",
        heap_bytes_per_instance(1000, || cbrs_new(RESET))
    );
    println!(
        "| seatbelt | {:.0} | service, as configured above |",
        heap_bytes_per_instance(1000, || seatbelt_svc(&clock, RESET, 0))
    );
}
