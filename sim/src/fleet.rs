//! `fleet`: many clients, each with its own stack, against one upstream of finite capacity.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::engine::{paused_runtime, ticks, Reply, Sim, StackSettings, Upstream};
use crate::input::InputError;
use crate::svg;

/// The transient overload applied to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Overload {
    /// The upstream's capacity drops to `factor` of itself.
    Drop,
    /// The clients' call rate grows `factor` times.
    Spike,
}

/// A fleet run's settings.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Clients, each with its own breaker, bulkhead and budget.
    pub clients: usize,
    /// Calls per second per client (Poisson).
    pub rate: f64,
    /// Simulated time.
    pub duration: Duration,
    /// Requests per second the upstream serves.
    pub capacity: f64,
    /// Latency of an idle upstream.
    pub base_latency: Duration,
    /// The upstream answers 503 at once when its queue holds this much work.
    pub max_queue: Duration,
    /// The kind of overload.
    pub overload: Overload,
    /// Its factor: capacity × factor for a drop, rate × factor for a spike.
    pub factor: f64,
    /// When it starts.
    pub overload_start: Duration,
    /// How long it lasts.
    pub overload_length: Duration,
    /// Every client's attempt timeout (the same for the three stacks).
    pub attempt_timeout: Duration,
    /// Every client's total timeout.
    pub total_timeout: Duration,
    /// Seed.
    pub seed: u64,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            clients: 10_000,
            rate: 1.0,
            duration: Duration::from_secs(600),
            capacity: 12_000.0,
            base_latency: Duration::from_millis(20),
            max_queue: Duration::from_secs(2),
            overload: Overload::Drop,
            factor: 0.4,
            overload_start: Duration::from_secs(120),
            overload_length: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_secs(10),
            seed: 1,
        }
    }
}

impl FleetSettings {
    fn check(&self) -> Result<(), InputError> {
        let bad = |what: &str| Err(InputError(format!("fleet: {what}")));
        if self.clients == 0 || self.clients > 1_000_000 {
            return bad("clients must be in [1, 1000000]");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return bad("rate must be a positive number of calls per second");
        }
        if !(self.capacity.is_finite() && self.capacity > 0.0) {
            return bad("capacity must be a positive number of requests per second");
        }
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return bad("factor must be positive");
        }
        if self.duration < Duration::from_secs(1) || self.duration > crate::input::MAX_LENGTH {
            return bad("duration must be between 1s and 30 days");
        }
        if self.overload_start > crate::input::MAX_LENGTH
            || self.overload_length > crate::input::MAX_LENGTH
        {
            return bad("the overload must start and end within 30 days");
        }
        Ok(())
    }

    /// The three stacks compared: no resilience, naive retries, harden's HTTP preset; all with
    /// this fleet's timeouts.
    pub fn stacks(&self) -> [(&'static str, StackSettings); 3] {
        let mut preset = StackSettings::http_preset();
        preset.attempt_timeout = Some(self.attempt_timeout);
        preset.total_timeout = Some(self.total_timeout);
        let mut naive = preset.naive(3);
        naive.initial_delay = Duration::from_millis(100);
        [
            ("no resilience", preset.bare()),
            ("naive retries (3 attempts)", naive),
            ("harden HTTP preset", preset),
        ]
    }
}

/// The upstream: one FIFO queue served at `capacity` requests per second, so latency grows
/// with the work waiting; full at `max_queue` of work, when it answers 503 at once. Work for a
/// caller that already gave up is still done (the upstream cannot know).
#[derive(Debug, Clone)]
pub struct Server {
    capacity: f64,
    factor: f64,
    overload: Overload,
    window: (u64, u64),
    next_free_ns: f64,
    max_queue_s: f64,
    base: u64,
}

impl Server {
    fn capacity_at(&self, now: u64) -> f64 {
        let in_window = now >= self.window.0 && now < self.window.1;
        if in_window && self.overload == Overload::Drop {
            self.capacity * self.factor
        } else {
            self.capacity
        }
    }

    /// Requests waiting at tick `now`.
    pub fn queue(&self, now: u64) -> f64 {
        let backlog = (self.next_free_ns - now as f64 * 1e6).max(0.0) / 1e9;
        backlog * self.capacity_at(now)
    }
}

impl Upstream for Server {
    fn send(&mut self, now: u64, _: u64, _: u32, _: &mut fastrand::Rng) -> Reply {
        let now_ns = now as f64 * 1e6;
        let backlog = (self.next_free_ns - now_ns).max(0.0) / 1e9;
        if backlog >= self.max_queue_s {
            return Reply::Status(503, self.base);
        }
        let cap = self.capacity_at(now);
        let finish = self.next_free_ns.max(now_ns) + 1e9 / cap;
        self.next_free_ns = finish;
        Reply::Status(200, ((finish - now_ns) / 1e6).ceil() as u64 + self.base)
    }
}

/// One stack's run.
#[derive(Debug, Clone)]
pub struct FleetRun {
    /// The stack's name.
    pub name: String,
    /// Calls made.
    pub calls: u64,
    /// Answers the callers got.
    pub answers: u64,
    /// Failures that reached callers.
    pub failures: u64,
    /// Calls harden rejected.
    pub shed: u64,
    /// Attempts sent upstream.
    pub upstream: u64,
    /// Per second: attempts offered upstream.
    pub offered: Vec<f64>,
    /// Per second: answers.
    pub goodput: Vec<f64>,
    /// Per second: upstream queue.
    pub queue: Vec<f64>,
    /// Per second: breakers open or half-open.
    pub open: Vec<f64>,
    /// The second from which goodput stayed at 90 % of demand after the overload; `None`:
    /// never (metastable).
    pub recovered: Option<u64>,
    /// Wall time of the run.
    pub wall: Duration,
}

/// Runs one stack.
///
/// # Errors
///
/// Settings out of range, or a runtime that cannot start.
pub fn run_one(
    f: &FleetSettings,
    name: &str,
    stack: &StackSettings,
) -> Result<FleetRun, InputError> {
    f.check()?;
    let rt = paused_runtime().map_err(|e| InputError(format!("tokio runtime: {e}")))?;
    let started = Instant::now();
    let window = (
        ticks(f.overload_start),
        ticks(f.overload_start + f.overload_length),
    );
    let server = Server {
        capacity: f.capacity,
        factor: f.factor,
        overload: f.overload,
        window,
        next_free_ns: 0.0,
        max_queue_s: f.max_queue.as_secs_f64(),
        base: ticks(f.base_latency),
    };
    let mut run = rt.block_on(async {
        let mut sim = Sim::new(stack, f.clients, server, f.seed)
            .map_err(|e| InputError(format!("{name}: {e}")))?;
        let clients = u32::try_from(f.clients).unwrap_or(u32::MAX);
        let mut next_ns = 0.0f64;
        let base_rate = f.rate * f.clients as f64;
        let mut tag = 0u64;
        let mut arrivals = |tick: u64, rng: &mut fastrand::Rng, out: &mut Vec<(u32, u64)>| {
            let limit = tick as f64 * 1e6;
            while next_ns < limit {
                out.push((rng.u32(0..clients), tag));
                tag += 1;
                let t = (next_ns / 1e6) as u64;
                let spike = f.overload == Overload::Spike && t >= window.0 && t < window.1;
                let rate = if spike {
                    base_rate * f.factor
                } else {
                    base_rate
                };
                next_ns += -1e9 / rate * (1.0 - rng.f64()).ln();
            }
        };
        let seconds = f.duration.as_secs();
        let mut queue = Vec::with_capacity(seconds as usize);
        for s in 1..=seconds {
            sim.run_until(s * 1000, &mut arrivals).await;
            queue.push(sim.upstream().queue(sim.now()));
        }
        let t = &sim.tally;
        Ok::<_, InputError>(FleetRun {
            name: name.to_string(),
            calls: t.calls,
            answers: t.answers,
            failures: t.failures,
            shed: t.shed,
            upstream: t.upstream,
            offered: sim.seconds.iter().map(|s| s.offered as f64).collect(),
            goodput: sim.seconds.iter().map(|s| s.goodput as f64).collect(),
            queue,
            open: sim.seconds.iter().map(|s| s.open as f64).collect(),
            recovered: None,
            wall: Duration::ZERO,
        })
    })?;
    run.wall = started.elapsed();
    let demand = f.rate * f.clients as f64;
    let after = window.1 / 1000;
    let n = run.goodput.len();
    run.recovered = (after as usize..n.saturating_sub(10))
        .find(|&s| run.goodput[s..s + 10].iter().all(|&g| g >= 0.9 * demand))
        .map(|s| s as u64 + 1);
    Ok(run)
}

/// Runs the three stacks on up to `threads` threads.
///
/// # Errors
///
/// The first run that fails.
pub fn run_all(f: &FleetSettings, threads: usize) -> Result<Vec<FleetRun>, InputError> {
    f.check()?;
    let stacks = f.stacks();
    let threads = threads.clamp(1, stacks.len());
    let mut out: Vec<Option<Result<FleetRun, InputError>>> = vec![None, None, None];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let stacks = &stacks;
                scope.spawn(move || {
                    stacks
                        .iter()
                        .enumerate()
                        .skip(k)
                        .step_by(threads)
                        .map(|(i, (name, s))| (i, run_one(f, name, s)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            if let Ok(list) = h.join() {
                for (i, r) in list {
                    out[i] = Some(r);
                }
            }
        }
    });
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(InputError("a simulation thread failed".into()))))
        .collect()
}

/// The terminal table.
pub fn report(f: &FleetSettings, runs: &[FleetRun], wall: Duration) -> String {
    let mut out = String::new();
    let end = (f.overload_start + f.overload_length).as_secs();
    let what = match f.overload {
        Overload::Drop => format!("capacity drops to {:.0}%", f.factor * 100.0),
        Overload::Spike => format!("calls grow {:.1}x", f.factor),
    };
    let _ = writeln!(
        out,
        "{} clients x {:.1} calls/s for {} s; upstream serves {:.0}/s (queue full at {:?} of work); {what} from {} s to {end} s; attempt timeout {:?}, total {:?}\n",
        f.clients,
        f.rate,
        f.duration.as_secs(),
        f.capacity,
        f.max_queue,
        f.overload_start.as_secs(),
        f.attempt_timeout,
        f.total_timeout,
    );
    let _ = writeln!(
        out,
        "{:<28} {:>9} {:>8} {:>9} {:>9} {:>10} {:>9} {:>13} {:>7}",
        "stack",
        "calls",
        "answered",
        "failed",
        "shed",
        "upstream",
        "max queue",
        "recovered at",
        "wall s"
    );
    for r in runs {
        let pct = |n: u64| format!("{:.1}%", 100.0 * n as f64 / r.calls.max(1) as f64);
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>8} {:>9} {:>9} {:>10} {:>9} {:>13} {:>7.1}",
            r.name,
            r.calls,
            pct(r.answers),
            pct(r.failures),
            pct(r.shed),
            r.upstream,
            svg::human(r.queue.iter().copied().fold(0.0, f64::max)),
            match r.recovered {
                Some(s) => format!("{s} s (+{})", s.saturating_sub(end)),
                None => "never".into(),
            },
            r.wall.as_secs_f64()
        );
    }
    let calls: u64 = runs.iter().map(|r| r.calls).sum();
    let attempts: u64 = runs.iter().map(|r| r.upstream).sum();
    let _ = writeln!(
        out,
        "\nrecovered at: the second from which answers stay at 90% of the calls made.\nsimulated {} calls ({} attempts) in {:.1} s of wall time: {} calls/s",
        calls,
        attempts,
        wall.as_secs_f64(),
        svg::human(calls as f64 / wall.as_secs_f64().max(1e-9))
    );
    out
}

/// The SVG report: offered load, goodput, upstream queue and breakers open over time.
pub fn render_svg(f: &FleetSettings, runs: &[FleetRun]) -> String {
    const COLOURS: [&str; 3] = ["#757575", "#fb8c00", "#1e88e5"];
    let panel = |title: &str, pick: &dyn Fn(&FleetRun) -> &Vec<f64>| {
        (
            title.to_string(),
            runs.iter()
                .zip(COLOURS)
                .map(|(r, colour)| svg::Series {
                    name: r.name.clone(),
                    colour,
                    values: pick(r).clone(),
                })
                .collect::<Vec<_>>(),
        )
    };
    let panels = vec![
        panel("offered load /s", &|r| &r.offered),
        panel("goodput /s", &|r| &r.goodput),
        panel("upstream queue", &|r| &r.queue),
        panel("breakers open", &|r| &r.open),
    ];
    let start = f.overload_start.as_secs_f64();
    svg::charts(
        &format!(
            "harden-sim fleet: {} clients, overload from {:.0} s to {:.0} s",
            f.clients,
            start,
            start + f.overload_length.as_secs_f64()
        ),
        f.duration.as_secs_f64(),
        (start, start + f.overload_length.as_secs_f64()),
        &panels,
    )
}

/// Every stack's per-second series as CSV: `second,stack,offered,goodput,queue,open`.
pub fn series_csv(runs: &[FleetRun]) -> String {
    let mut out = String::from("second,stack,offered,goodput,queue,open\n");
    for r in runs {
        for i in 0..r.goodput.len() {
            let _ = writeln!(
                out,
                "{},{},{},{},{:.0},{}",
                i + 1,
                r.name,
                r.offered[i],
                r.goodput[i],
                r.queue.get(i).copied().unwrap_or(0.0),
                r.open[i]
            );
        }
    }
    out
}
