//! A small, criterion-free benchmark harness shared by every bench of harden (and by the
//! `harden-peers` package, which includes this file with `#[path]`).
//!
//! Method, in short (BENCHMARKS.md has the long form):
//! - every row is a closure that performs `n` calls of one scenario and returns the outcome of each
//!   call (ok / inner error / rejected); the counts are checked against the row's [`Expect`] at the
//!   end and the bench aborts if they are wrong, so a misconfigured row cannot produce a number;
//! - warm-up, then each row's batch size is calibrated so one repetition takes about `rep_ms`;
//! - repetitions are interleaved round-robin across rows (row A rep 1, row B rep 1, ...), so a noisy
//!   moment on the machine hits every row rather than one;
//! - per row: median / min / max ns per call over the repetitions, overhead (ns) and ratio to a
//!   baseline row measured in the same run;
//! - allocations and bytes per call come from a counting `#[global_allocator]` that counts only
//!   while a flag is set, in a separate untimed pass, so timing is not disturbed;
//! - multi-thread rows are time-based: all threads start together at a `Barrier`, run for a fixed
//!   time, and report wall time / total calls and the throughput ratio to a 1-thread row.
//!
//! Environment knobs: `HARDEN_BENCH_QUICK=1` (few, short repetitions: a smoke run),
//! `HARDEN_BENCH_REPS`, `HARDEN_BENCH_REP_MS`, `HARDEN_BENCH_MT_MS` (time per multi-thread rep),
//! `HARDEN_BENCH_MT_REPS`, `HARDEN_BENCH_FILTER` (only rows whose name contains this text, or one of
//! several texts separated by `|`; the baseline row is always kept).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Service, ServiceExt};

// ---------------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------------

/// Passes every request to the system allocator; counts only while [`COUNTING`] is set.
pub struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counters
// are plain relaxed atomics (totals read after the counted pass, no ordering with data needed).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            ALLOC_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            ALLOC_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            FREED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            ALLOC_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
            FREED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// Allocation totals of one counted section.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocStats {
    pub allocs: u64,
    pub bytes: u64,
    /// Bytes allocated minus bytes freed during the section (what stays live).
    pub live_bytes: i64,
}

/// Runs `f` with allocation counting on. Meant for single-threaded, untimed passes: allocations
/// made by other threads at the same time are counted too.
pub fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, AllocStats) {
    let (a0, b0, f0) = (
        ALLOCS.load(Ordering::Relaxed),
        ALLOC_BYTES.load(Ordering::Relaxed),
        FREED_BYTES.load(Ordering::Relaxed),
    );
    COUNTING.store(true, Ordering::SeqCst);
    let r = f();
    COUNTING.store(false, Ordering::SeqCst);
    let (a1, b1, f1) = (
        ALLOCS.load(Ordering::Relaxed),
        ALLOC_BYTES.load(Ordering::Relaxed),
        FREED_BYTES.load(Ordering::Relaxed),
    );
    let stats = AllocStats {
        allocs: a1 - a0,
        bytes: b1 - b0,
        live_bytes: (b1 - b0) as i64 - (f1 - f0) as i64,
    };
    (r, stats)
}

/// Heap bytes kept live per instance: the live-allocation delta while constructing `n` instances
/// (kept alive in a vector reserved beforehand), divided by `n`.
pub fn heap_bytes_per_instance<T>(n: usize, mut make: impl FnMut() -> T) -> f64 {
    let mut keep: Vec<T> = Vec::with_capacity(n);
    let ((), stats) = count_allocs(|| {
        for _ in 0..n {
            keep.push(make());
        }
    });
    drop(keep);
    stats.live_bytes as f64 / n as f64
}

// ---------------------------------------------------------------------------------------------
// Polling without a runtime
// ---------------------------------------------------------------------------------------------

/// Polls `fut` once with a no-op waker and returns its output; panics if it is not ready at once
/// (every synchronous row is built so that it is: a pending future would mean the row measures
/// something else than intended).
#[inline(always)]
pub fn now_or_panic<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("bench row: future was pending; rows must be ready at once"),
    }
}

/// One tower call without a runtime: `poll_ready` (must be ready at once), `call`, poll once.
#[inline(always)]
pub fn call_now<S, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error>
where
    S: tower::Service<R>,
{
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("bench row: service not ready at once"),
    }
    now_or_panic(svc.call(req))
}

/// Polls once with a no-op waker; if pending (e.g. a contended async mutex in a multi-thread
/// row), blocks the thread on it with a real waker. The fast path costs what `now_or_panic` does.
#[inline(always)]
pub fn now_or_block<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => futures::executor::block_on(fut),
    }
}

/// One tower call that may wait: like [`call_now`], but blocks instead of panicking when the
/// service or its future is pending (used by the multi-thread rows).
#[inline(always)]
pub fn call_blocking<S, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error>
where
    S: tower::Service<R>,
{
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => {
            futures::executor::block_on(std::future::poll_fn(|cx| svc.poll_ready(cx)))?
        }
    }
    now_or_block(svc.call(req))
}

// ---------------------------------------------------------------------------------------------
// The protected operation and outcomes
// ---------------------------------------------------------------------------------------------

/// The inner error of the protected operation (zero-sized, so boxing it does not allocate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpError;

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("operation failed")
    }
}
impl std::error::Error for OpError {}

/// The operation every row protects: returns its input, or fails when `fail_every != 0` and
/// `i % fail_every == fail_every - 1` (so exactly `n / fail_every` of calls `0..n` fail).
#[inline(always)]
pub fn op(i: u64, fail_every: u64) -> Result<u64, OpError> {
    if fail_every != 0 && i % fail_every == fail_every - 1 {
        Err(OpError)
    } else {
        Ok(std::hint::black_box(i))
    }
}

/// What happened to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    InnerError,
    Rejected,
}

/// Outcome counts of a row (summed over every call the row made: warm-up, timed and counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub inner_err: u64,
    pub rejected: u64,
}

impl Counts {
    #[inline(always)]
    pub fn record(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::InnerError => self.inner_err += 1,
            Outcome::Rejected => self.rejected += 1,
        }
    }
    pub fn total(&self) -> u64 {
        self.ok + self.inner_err + self.rejected
    }
    pub fn add(&mut self, o: Counts) {
        self.ok += o.ok;
        self.inner_err += o.inner_err;
        self.rejected += o.rejected;
    }
}

/// What a row's outcome counts must be.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Every call succeeded.
    AllOk,
    /// Every call was rejected without reaching the operation.
    AllRejected,
    /// Calls `0..n` of the row: exactly `n / k` inner errors, the rest ok, none rejected.
    InnerErrorEvery(u64),
    /// Like `InnerErrorEvery`, for rows whose workers each count their own calls from 0: the
    /// inner errors are `n / k` give or take one per worker (at most 64), none rejected.
    InnerErrorEveryPerWorker(u64),
}

impl Expect {
    pub fn check(&self, row: &str, c: &Counts) {
        let n = c.total();
        let ok = match *self {
            Expect::AllOk => c.ok == n && n > 0,
            Expect::AllRejected => c.rejected == n && n > 0,
            Expect::InnerErrorEvery(k) => c.rejected == 0 && c.inner_err == n / k && n > 0,
            Expect::InnerErrorEveryPerWorker(k) => {
                c.rejected == 0 && c.inner_err.abs_diff(n / k) <= 64 && n > 0
            }
        };
        if !ok {
            eprintln!("\n*** BENCH ROW MISCONFIGURED: `{row}` expected {self:?}, counted {c:?}");
            std::process::exit(3);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Run-wide knobs, from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub quick: bool,
    pub reps: usize,
    pub rep: Duration,
    pub warmup: Duration,
    pub mt_reps: usize,
    pub mt_rep: Duration,
    pub alloc_calls: u64,
    pub filter: Option<String>,
}

impl Config {
    pub fn from_env() -> Self {
        let quick = std::env::var("HARDEN_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let (reps, rep_ms, mt_reps, mt_ms) = if quick {
            (5, 2, 2, 50)
        } else {
            (31, 10, 7, 300)
        };
        Config {
            quick,
            reps: env_u64("HARDEN_BENCH_REPS").map_or(reps, |v| v.max(1) as usize),
            rep: Duration::from_millis(env_u64("HARDEN_BENCH_REP_MS").unwrap_or(rep_ms).max(1)),
            warmup: Duration::from_millis(if quick { 20 } else { 200 }),
            mt_reps: env_u64("HARDEN_BENCH_MT_REPS").map_or(mt_reps, |v| v.max(1) as usize),
            mt_rep: Duration::from_millis(env_u64("HARDEN_BENCH_MT_MS").unwrap_or(mt_ms).max(1)),
            alloc_calls: if quick { 1_000 } else { 10_000 },
            filter: std::env::var("HARDEN_BENCH_FILTER")
                .ok()
                .filter(|f| !f.is_empty()),
        }
    }

    fn keep(&self, name: &str, baseline: bool) -> bool {
        baseline
            || match self.filter.as_deref() {
                None => true,
                Some(f) => f.split('|').any(|part| name.contains(part)),
            }
    }

    /// A one-line description for the table headers.
    pub fn describe(&self) -> String {
        format!(
            "{} reps x ~{} ms per row (interleaved), warm-up {} ms; multi-thread: {} reps x {} ms{}",
            self.reps,
            self.rep.as_millis(),
            self.warmup.as_millis(),
            self.mt_reps,
            self.mt_rep.as_millis(),
            if self.quick { " (QUICK: smoke run, numbers are rough)" } else { "" }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Single-thread rows
// ---------------------------------------------------------------------------------------------

/// A row's body: perform `n` calls, return their outcome counts.
pub type Body = Box<dyn FnMut(u64) -> Counts>;

struct Row {
    name: String,
    note: String,
    body: Body,
    expect: Expect,
    baseline: bool,
    counts: Counts,
    batch: u64,
    samples: Vec<f64>,
    alloc: AllocStats,
    alloc_calls: u64,
}

/// A group of single-thread rows measured together, interleaved, against one baseline.
pub struct Group {
    title: String,
    cfg: Config,
    rows: Vec<Row>,
}

/// Median / min / max of a sample set.
pub fn summary(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, v[0], v[n - 1])
}

impl Group {
    pub fn new(title: &str, cfg: &Config) -> Self {
        Group {
            title: title.to_string(),
            cfg: cfg.clone(),
            rows: Vec::new(),
        }
    }

    /// The baseline row; overhead and ratio of every other row are relative to it. Add it first.
    pub fn baseline(&mut self, name: &str, note: &str, expect: Expect, body: Body) -> &mut Self {
        self.push(name, note, expect, body, true)
    }

    pub fn row(&mut self, name: &str, note: &str, expect: Expect, body: Body) -> &mut Self {
        self.push(name, note, expect, body, false)
    }

    fn push(
        &mut self,
        name: &str,
        note: &str,
        expect: Expect,
        body: Body,
        baseline: bool,
    ) -> &mut Self {
        if self.cfg.keep(name, baseline) {
            self.rows.push(Row {
                name: name.to_string(),
                note: note.to_string(),
                body,
                expect,
                baseline,
                counts: Counts::default(),
                batch: 1,
                samples: Vec::new(),
                alloc: AllocStats::default(),
                alloc_calls: 0,
            });
        }
        self
    }

    /// Warm-up, calibration, interleaved timed repetitions, counted allocation pass, checks.
    pub fn run(&mut self) {
        let cfg = self.cfg.clone();
        eprintln!(
            "[{}] {} rows: warm-up + calibration",
            self.title,
            self.rows.len()
        );
        for row in &mut self.rows {
            // Warm-up for `warmup`, doubling the batch while one batch takes < rep/2.
            let start = Instant::now();
            let mut batch = 64u64;
            while start.elapsed() < cfg.warmup {
                let t = Instant::now();
                row.counts.add((row.body)(batch));
                if t.elapsed() < cfg.rep / 2 && batch < 1 << 32 {
                    batch *= 2;
                }
            }
            // Calibration: the fastest of three batches sets the batch size, so one slow
            // outlier (a page fault, a preemption) cannot make the timed batches tiny.
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let t = Instant::now();
                row.counts.add((row.body)(batch));
                best = best.min(t.elapsed().as_secs_f64() / batch as f64);
            }
            row.batch = ((cfg.rep.as_secs_f64() / best) as u64).max(1);
        }
        eprintln!("[{}] {} interleaved reps", self.title, cfg.reps);
        for _ in 0..cfg.reps {
            for row in &mut self.rows {
                let t = Instant::now();
                let c = (row.body)(row.batch);
                let dt = t.elapsed();
                row.counts.add(c);
                row.samples.push(dt.as_nanos() as f64 / row.batch as f64);
            }
        }
        for row in &mut self.rows {
            let (c, stats) = count_allocs(|| (row.body)(cfg.alloc_calls));
            row.counts.add(c);
            row.alloc = stats;
            row.alloc_calls = cfg.alloc_calls;
        }
        for row in &self.rows {
            row.expect.check(&row.name, &row.counts);
        }
    }

    /// Median ns per call of a row, by exact name.
    pub fn median(&self, name: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .map(|r| summary(&r.samples).0)
    }

    /// The markdown table of this group.
    pub fn table(&self) -> String {
        let base = self
            .rows
            .iter()
            .find(|r| r.baseline)
            .map(|r| summary(&r.samples).0);
        let mut s = format!("### {}\n\n", self.title);
        s += "| row | median ns/call | min | max | overhead vs baseline (ns) | ratio | allocs/call | bytes/call | outcomes ok / inner err / rejected | how called |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n";
        for r in &self.rows {
            let (med, min, max) = summary(&r.samples);
            let (ovh, ratio) = match base {
                Some(b) if !r.baseline => (format!("{:+.1}", med - b), format!("{:.2}x", med / b)),
                _ => ("(baseline)".to_string(), "1.00x".to_string()),
            };
            let n = r.alloc_calls.max(1) as f64;
            s += &format!(
                "| {} | {:.1} | {:.1} | {:.1} | {} | {} | {:.2} | {:.1} | {} / {} / {} | {} |\n",
                r.name,
                med,
                min,
                max,
                ovh,
                ratio,
                r.alloc.allocs as f64 / n,
                r.alloc.bytes as f64 / n,
                r.counts.ok,
                r.counts.inner_err,
                r.counts.rejected,
                r.note
            );
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Multi-thread, time-based rows
// ---------------------------------------------------------------------------------------------

/// Makes one thread's worker (called on that thread, before the start barrier): the worker
/// performs `n` calls and returns their outcomes.
pub type MakeWorker = Arc<dyn Fn(usize) -> Box<dyn FnMut(u64) -> Counts> + Send + Sync>;

/// Runs the async loop of one task until `stop` is set; returns its outcome counts.
pub type MakeTask = Arc<
    dyn Fn(usize, Arc<AtomicBool>) -> std::pin::Pin<Box<dyn Future<Output = Counts> + Send>>
        + Send
        + Sync,
>;

enum MtKind {
    Threads(MakeWorker),
    Tasks(MakeTask, Arc<tokio::runtime::Runtime>),
}

struct MtRow {
    name: String,
    note: String,
    threads: usize,
    kind: MtKind,
    expect: Expect,
    /// Name of the row whose throughput is this row's 1x.
    reference: Option<String>,
    counts: Counts,
    /// ns per call (wall time / total calls), per rep.
    samples: Vec<f64>,
}

/// A group of time-based multi-thread / multi-task rows, interleaved across repetitions.
pub struct MtGroup {
    title: String,
    cfg: Config,
    rows: Vec<MtRow>,
}

/// Calls per batch between checks of the stop flag.
const MT_BATCH: u64 = 256;

impl MtGroup {
    pub fn new(title: &str, cfg: &Config) -> Self {
        MtGroup {
            title: title.to_string(),
            cfg: cfg.clone(),
            rows: Vec::new(),
        }
    }

    /// `threads` OS threads, each with its own worker from `make`, started together at a barrier.
    /// `reference` names the row (usually the 1-thread one) that throughput ratios are taken to.
    pub fn threads(
        &mut self,
        name: &str,
        note: &str,
        threads: usize,
        reference: Option<&str>,
        expect: Expect,
        make: MakeWorker,
    ) -> &mut Self {
        // Baseline rows always run, so a filtered run still shows what the machine scales to.
        if self.cfg.keep(name, name.contains("baseline")) {
            self.rows.push(MtRow {
                name: name.to_string(),
                note: note.to_string(),
                threads,
                kind: MtKind::Threads(make),
                expect,
                reference: reference.map(str::to_string),
                counts: Counts::default(),
                samples: Vec::new(),
            });
        }
        self
    }

    /// `tasks` tokio tasks on `rt`, each looping until told to stop.
    #[allow(clippy::too_many_arguments)]
    pub fn tasks(
        &mut self,
        name: &str,
        note: &str,
        tasks: usize,
        rt: Arc<tokio::runtime::Runtime>,
        reference: Option<&str>,
        expect: Expect,
        make: MakeTask,
    ) -> &mut Self {
        // Baseline rows always run, so a filtered run still shows what the machine scales to.
        if self.cfg.keep(name, name.contains("baseline")) {
            self.rows.push(MtRow {
                name: name.to_string(),
                note: note.to_string(),
                threads: tasks,
                kind: MtKind::Tasks(make, rt),
                expect,
                reference: reference.map(str::to_string),
                counts: Counts::default(),
                samples: Vec::new(),
            });
        }
        self
    }

    fn run_threads(make: &MakeWorker, threads: usize, dur: Duration) -> (Duration, Counts) {
        let barrier = Arc::new(Barrier::new(threads + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (make, barrier, stop) = (make.clone(), barrier.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut worker = make(t);
                    let mut counts = Counts::default();
                    barrier.wait();
                    // Relaxed: the flag only ends the loop; results travel through `join`.
                    while !stop.load(Ordering::Relaxed) {
                        counts.add(worker(MT_BATCH));
                    }
                    counts
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        let mut counts = Counts::default();
        for h in handles {
            counts.add(h.join().expect("bench thread panicked"));
        }
        (start.elapsed(), counts)
    }

    fn run_tasks(
        make: &MakeTask,
        rt: &tokio::runtime::Runtime,
        tasks: usize,
        dur: Duration,
    ) -> (Duration, Counts) {
        let stop = Arc::new(AtomicBool::new(false));
        // A timer thread ends the run, so a current-thread runtime can be driven by `block_on`
        // for the whole time (its tasks run only while it is).
        let timer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(dur);
                stop.store(true, Ordering::Relaxed);
            })
        };
        let start = Instant::now();
        let counts = rt.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|t| tokio::spawn(make(t, stop.clone())))
                .collect();
            let mut counts = Counts::default();
            for h in handles {
                counts.add(h.await.expect("bench task panicked"));
            }
            counts
        });
        timer.join().expect("timer thread");
        (start.elapsed(), counts)
    }

    pub fn run(&mut self) {
        let cfg = self.cfg.clone();
        eprintln!(
            "[{}] {} rows x {} reps x {} ms",
            self.title,
            self.rows.len(),
            cfg.mt_reps,
            cfg.mt_rep.as_millis()
        );
        // One short untimed round as warm-up.
        let warm = cfg.mt_rep / 4;
        for rep in 0..=cfg.mt_reps {
            for row in &mut self.rows {
                let dur = if rep == 0 { warm } else { cfg.mt_rep };
                let (wall, c) = match &row.kind {
                    MtKind::Threads(make) => Self::run_threads(make, row.threads, dur),
                    MtKind::Tasks(make, rt) => Self::run_tasks(make, rt, row.threads, dur),
                };
                row.counts.add(c);
                if rep > 0 {
                    row.samples
                        .push(wall.as_nanos() as f64 / c.total().max(1) as f64);
                }
            }
        }
        for row in &self.rows {
            row.expect.check(&row.name, &row.counts);
        }
    }

    /// Median throughput (calls per second) of a row, by exact name.
    pub fn throughput(&self, name: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .map(|r| 1e9 / summary(&r.samples).0)
    }

    pub fn table(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        s += "| row | threads/tasks | median M calls/s | ns/call (wall/total) median | min | max | throughput vs reference | outcomes ok / inner err / rejected | how called |\n";
        s += "|---|---:|---:|---:|---:|---:|---|---|---|\n";
        for r in &self.rows {
            let (med, min, max) = summary(&r.samples);
            let vs = match r
                .reference
                .as_deref()
                .and_then(|n| self.throughput(n).map(|t| (n, t)))
            {
                Some((n, t)) if n != r.name => format!("{:.2}x of `{}`", (1e9 / med) / t, n),
                _ => "(reference)".to_string(),
            };
            s += &format!(
                "| {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {} | {} / {} / {} | {} |\n",
                r.name,
                r.threads,
                1e3 / med,
                med,
                min,
                max,
                vs,
                r.counts.ok,
                r.counts.inner_err,
                r.counts.rejected,
                r.note
            );
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario configuration shared by every bench (harden and peers configured alike)
// ---------------------------------------------------------------------------------------------

/// Open when failures * 100 / calls >= this (harden `error_threshold_percentage`).
pub const THRESHOLD: f64 = 50.0;
/// Calls in the window before the rate is judged (harden `volume_threshold`).
pub const VOLUME: u32 = 20;
/// Rolling window length (harden `rolling_window(WINDOW, BUCKETS)`).
pub const WINDOW: Duration = Duration::from_secs(10);
pub const BUCKETS: u32 = 10;
/// Open → half-open. Long, so the "open" rows stay open for the whole run (a probe would make an
/// admitted call and the outcome check would abort the run).
pub const RESET: Duration = Duration::from_secs(3600);
/// 10% failures: every 10th call fails.
pub const FAIL_EVERY: u64 = 10;
/// Timeout used by the timeout and stack rows; never reached (the operation is ready at once).
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Max attempts of the retry rows (never used: the operation succeeds).
pub const ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------------------------
// The protected operation as a tower service, and a row body for any tower service
// ---------------------------------------------------------------------------------------------

/// The protected operation as a bare tower service.
pub fn bare(
    fail_every: u64,
) -> impl Service<u64, Response = u64, Error = OpError, Future = Ready<Result<u64, OpError>>>
       + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(move |i: u64| ready(op(i, fail_every)))
}

/// A row body for a tower service: calls `svc` with requests 0, 1, 2, ... synchronously.
pub fn tower_body<S>(mut svc: S, classify: fn(&Result<S::Response, S::Error>) -> Outcome) -> Body
where
    S: Service<u64> + 'static,
{
    let mut i = 0u64;
    Box::new(move |n| {
        let mut c = Counts::default();
        for _ in 0..n {
            let r = call_now(&mut svc, i);
            i += 1;
            c.record(classify(&r));
        }
        c
    })
}

/// Like [`tower_body`], but a pending service or future blocks the thread instead of aborting
/// (multi-thread rows: async mutexes of some peers can be contended).
pub fn tower_body_blocking<S>(
    mut svc: S,
    classify: fn(&Result<S::Response, S::Error>) -> Outcome,
) -> Body
where
    S: Service<u64> + 'static,
{
    let mut i = 0u64;
    Box::new(move |n| {
        let mut c = Counts::default();
        for _ in 0..n {
            let r = call_blocking(&mut svc, i);
            i += 1;
            c.record(classify(&r));
        }
        c
    })
}

/// A row body for a synchronous `call(i) -> Outcome`.
pub fn sync_body(mut f: impl FnMut(u64) -> Outcome + 'static) -> Body {
    let mut i = 0u64;
    Box::new(move |n| {
        let mut c = Counts::default();
        for _ in 0..n {
            c.record(f(i));
            i += 1;
        }
        c
    })
}

pub fn classify_bare(r: &Result<u64, OpError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(_) => Outcome::InnerError,
    }
}

/// Drives `call` with always-failing requests until it reports a rejection; aborts if it never does.
pub fn drive_open(name: &str, mut call: impl FnMut(u64) -> Outcome) {
    for i in 0..100_000 {
        if call(i) == Outcome::Rejected {
            return;
        }
    }
    eprintln!("*** {name}: breaker did not open after 100000 failures");
    std::process::exit(3);
}

/// tower's retry policy for the stack rows: retry inner errors up to ATTEMPTS, no backoff.
#[derive(Clone)]
pub struct TowerRetry(pub usize);
impl<E> tower::retry::Policy<u64, u64, E> for TowerRetry {
    type Future = Ready<()>;
    fn retry(&mut self, _req: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }
    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

// ---------------------------------------------------------------------------------------------
// Multi-thread helpers
// ---------------------------------------------------------------------------------------------

pub fn mt_tower<S>(svc: S, classify: fn(&Result<u64, S::Error>) -> Outcome) -> MakeWorker
where
    S: Service<u64, Response = u64> + Clone + Send + Sync + 'static,
{
    Arc::new(move |_| tower_body_blocking(svc.clone(), classify))
}

pub fn task_tower<S>(svc: S, classify: fn(&Result<u64, S::Error>) -> Outcome) -> MakeTask
where
    S: Service<u64, Response = u64> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Send,
{
    Arc::new(move |_, stop: Arc<AtomicBool>| {
        let mut svc = svc.clone();
        Box::pin(async move {
            let mut c = Counts::default();
            let mut i = 0u64;
            // Relaxed: the flag only ends the loop; counts travel through the join handle.
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..256 {
                    let r = match svc.ready().await {
                        Ok(s) => s.call(i).await,
                        Err(e) => Err(e),
                    };
                    i += 1;
                    c.record(classify(&r));
                }
                tokio::task::yield_now().await;
            }
            c
        })
    })
}

pub fn task_sync(f: Arc<dyn Fn(u64) -> Outcome + Send + Sync>) -> MakeTask {
    Arc::new(move |_, stop: Arc<AtomicBool>| {
        let f = f.clone();
        Box::pin(async move {
            let mut c = Counts::default();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..256 {
                    c.record(f(i));
                    i += 1;
                }
                tokio::task::yield_now().await;
            }
            c
        })
    })
}

pub fn mt_sync(f: Arc<dyn Fn(u64) -> Outcome + Send + Sync>) -> MakeWorker {
    Arc::new(move |_| {
        let f = f.clone();
        sync_body(move |i| f(i))
    })
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// The machine line for the tables: cores, CPU model, rustc version.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "rustc ?".to_string());
    format!("{cores} cores, {cpu}, {rustc}")
}

/// Prints the run header (machine, method knobs) as markdown.
pub fn header(bench: &str, cfg: &Config) {
    println!("## `{bench}`\n");
    println!("Machine: {}. Run: {}.\n", machine(), cfg.describe());
}
