//! `replay`: score candidate settings on a recorded trace or a scenario of phases.

use std::fmt::Write as _;
use std::time::Duration;

use harden::chaos::Latency;
use harden::circuit_breaker::State;

use crate::engine::{
    paused_runtime, tick_secs, ticks, Reply, Sim, StackSettings, Transition, Upstream,
};
use crate::input::{Arrivals, Candidate, InputError, Recorded, Scenario, Trace};
use crate::svg;

/// What the candidates are run on.
#[derive(Debug, Clone)]
pub enum Source {
    /// Recorded calls.
    Trace(Trace),
    /// Phases of generated traffic.
    Scenario(Scenario),
}

/// A stretch of time judged healthy or not (an outage).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Its name.
    pub name: String,
    /// Start tick.
    pub start: u64,
    /// End tick (exclusive).
    pub end: u64,
    /// Healthy (an open here is a false trip) or an outage.
    pub healthy: bool,
}

/// Length of the slices a trace is judged in.
pub const TRACE_SLICE: Duration = Duration::from_secs(10);
/// A trace slice whose calls failed at least this often is an outage.
pub const TRACE_OUTAGE_RATE: f64 = 0.25;

impl Source {
    /// Healthy stretches and outages: a scenario's phases, or a trace cut into
    /// [`TRACE_SLICE`]s, those with at least [`TRACE_OUTAGE_RATE`] failures (by the HTTP
    /// preset's breaker classifier; timeouts fail) being outages, neighbours merged.
    pub fn spans(&self) -> Vec<Span> {
        match self {
            Source::Scenario(s) => s
                .phases
                .iter()
                .map(|p| Span {
                    name: p.name.clone(),
                    start: p.start,
                    end: p.end,
                    healthy: p.healthy,
                })
                .collect(),
            Source::Trace(t) => {
                let slice = ticks(TRACE_SLICE);
                let end = t.records.last().map_or(0, |r| r.at + 1);
                let n = end.div_ceil(slice) as usize;
                let mut calls = vec![0u64; n];
                let mut failed = vec![0u64; n];
                for r in &t.records {
                    let i = (r.at / slice) as usize;
                    calls[i] += 1;
                    let bad = match r.outcome {
                        Recorded::Status(s) => s >= 500 || s == 408,
                        Recorded::Error | Recorded::Timeout => true,
                    };
                    failed[i] += u64::from(bad);
                }
                let mut spans: Vec<Span> = Vec::new();
                for i in 0..n {
                    let healthy =
                        calls[i] == 0 || (failed[i] as f64) < TRACE_OUTAGE_RATE * calls[i] as f64;
                    let (start, stop) = (i as u64 * slice, ((i as u64 + 1) * slice).min(end));
                    match spans.last_mut() {
                        Some(last) if last.healthy == healthy => last.end = stop,
                        _ => spans.push(Span {
                            name: if healthy { "healthy" } else { "outage" }.into(),
                            start,
                            end: stop,
                            healthy,
                        }),
                    }
                }
                spans
            }
        }
    }

    /// Length in ticks.
    pub fn end(&self) -> u64 {
        match self {
            Source::Scenario(s) => s.end(),
            Source::Trace(t) => t.records.last().map_or(0, |r| r.at + 1),
        }
    }

    fn seed(&self) -> u64 {
        match self {
            Source::Scenario(s) => s.seed,
            Source::Trace(_) => 0,
        }
    }
}

fn record_reply(r: &crate::input::Record) -> Reply {
    match r.outcome {
        Recorded::Status(s) => Reply::Status(s, r.latency),
        Recorded::Error => Reply::Error(r.latency),
        Recorded::Timeout => Reply::Hang,
    }
}

struct TraceUpstream<'a>(&'a Trace);

impl Upstream for TraceUpstream<'_> {
    fn send(&mut self, now: u64, call: u64, attempt: u32, _: &mut fastrand::Rng) -> Reply {
        let records = &self.0.records;
        if attempt == 1 {
            if let Some(r) = records.get(call as usize) {
                return record_reply(r);
            }
        }
        // A retry gets what the upstream answered next in the trace.
        let i = records.partition_point(|r| r.at + 1 < now);
        records
            .get(i)
            .or(records.last())
            .map_or(Reply::Status(200, 1), record_reply)
    }
}

/// The scenario's upstream: each attempt's faults are drawn as `harden::chaos` draws them — a
/// generator per call seeded by the scenario's seed and the call's number (attempts counted
/// while a fault is set) — so a scenario injects the same faults, call by call, as a `Chaos`
/// with that seed on a real upstream.
struct ScenarioUpstream<'a> {
    scenario: &'a Scenario,
    number: u64,
}

impl Upstream for ScenarioUpstream<'_> {
    fn send(&mut self, now: u64, _: u64, _: u32, _: &mut fastrand::Rng) -> Reply {
        let f = self.scenario.phase_at(now).faults;
        let base = self.scenario.base_latency;
        if !f.any() {
            return Reply::Status(200, base);
        }
        let number = self.number;
        self.number += 1;
        let mut rng = fastrand::Rng::with_seed(
            self.scenario.seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let (error, hang, status) = (f.error_rate(), f.hang_rate(), f.status_rate());
        let draw = rng.f64();
        let hangs = draw >= error && draw < error + hang;
        let delayed = rng.f64() < f.latency_rate() && !hangs;
        if hangs {
            return Reply::Hang;
        }
        let delay = if delayed {
            ticks(sample(f.latency(), &mut rng))
        } else {
            0
        };
        let after = base + delay;
        if draw < error {
            Reply::Error(after)
        } else if draw < error + hang + status {
            Reply::Status(f.status(), after)
        } else {
            Reply::Status(200, after)
        }
    }
}

/// A delay from a `harden::chaos` latency distribution, drawn as `harden::chaos` draws it.
pub fn sample(latency: Latency, rng: &mut fastrand::Rng) -> Duration {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    match latency {
        Latency::Fixed(d) => d,
        Latency::Uniform { min, max } => Duration::from_nanos(rng.u64(nanos(min)..=nanos(max))),
        Latency::Exponential { mean, max } => {
            let x = -(nanos(mean) as f64) * (1.0 - rng.f64()).ln();
            Duration::from_nanos(x as u64).min(max)
        }
        _ => Duration::ZERO,
    }
}

/// The measures of one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// The candidate's name.
    pub name: String,
    /// Calls made.
    pub calls: u64,
    /// Answers the callers got.
    pub answers: u64,
    /// Failures that reached callers.
    pub failures: u64,
    /// Calls harden rejected.
    pub shed: u64,
    /// Attempts sent upstream, retries included.
    pub upstream: u64,
    /// Mean seconds from an outage's start to the breaker opening (outages it opened in).
    pub open_after: Option<f64>,
    /// Outages in which the breaker never opened.
    pub missed: u32,
    /// Mean seconds from an outage's end to the breaker closing.
    pub close_after: Option<f64>,
    /// Opens from closed in healthy stretches (not within a window after an outage).
    pub false_trips: u32,
    /// Closes during outages (a probe got through while the upstream was still sick).
    pub false_closes: u32,
    /// Caller p50 latency, ms.
    pub p50: f64,
    /// Caller p99 latency, ms.
    pub p99: f64,
    /// The breaker's transitions.
    pub transitions: Vec<Transition>,
}

/// Runs one candidate.
///
/// # Errors
///
/// Settings harden refuses, or a runtime that cannot start.
pub fn run(source: &Source, settings: &StackSettings, name: &str) -> Result<Score, InputError> {
    let rt = paused_runtime().map_err(|e| InputError(format!("tokio runtime: {e}")))?;
    rt.block_on(async {
        let end = source.end();
        let drain = settings
            .total_timeout
            .map_or(Duration::from_secs(30), |t| t.max(Duration::from_secs(1)));
        let seed = source.seed();
        let (tally, transitions) = match source {
            Source::Trace(trace) => {
                let mut sim = Sim::new(settings, 1, TraceUpstream(trace), seed)
                    .map_err(|e| InputError(format!("{name}: {e}")))?;
                let mut next = 0usize;
                let mut arrivals = |tick: u64, _: &mut fastrand::Rng, out: &mut Vec<(u32, u64)>| {
                    while let Some(r) = trace.records.get(next) {
                        if r.at + 1 > tick {
                            break;
                        }
                        out.push((0, next as u64));
                        next += 1;
                    }
                };
                sim.run_until(end + ticks(drain), &mut arrivals).await;
                (sim.tally.clone(), sim.transitions())
            }
            Source::Scenario(scenario) => {
                let mut sim = Sim::new(
                    settings,
                    1,
                    ScenarioUpstream {
                        scenario,
                        number: 0,
                    },
                    seed,
                )
                .map_err(|e| InputError(format!("{name}: {e}")))?;
                let mut next_ns = 0.0f64;
                let mut n = 0u64;
                let mut arrivals =
                    |tick: u64, rng: &mut fastrand::Rng, out: &mut Vec<(u32, u64)>| {
                        let limit = tick as f64 * 1e6;
                        while next_ns < limit {
                            let t = (next_ns / 1e6) as u64;
                            if t >= end {
                                next_ns = f64::INFINITY;
                                break;
                            }
                            let phase = scenario.phase_at(t);
                            if phase.rate <= 0.0 {
                                next_ns = phase.end as f64 * 1e6;
                                continue;
                            }
                            out.push((0, n));
                            n += 1;
                            let gap = 1e9 / phase.rate;
                            next_ns += match scenario.arrivals {
                                Arrivals::Even => gap,
                                Arrivals::Poisson => -gap * (1.0 - rng.f64()).ln(),
                            };
                        }
                    };
                sim.run_until(end + ticks(drain), &mut arrivals).await;
                (sim.tally.clone(), sim.transitions())
            }
        };
        let spans = source.spans();
        let judged = judge(&spans, &transitions, ticks(settings.rolling_window));
        Ok(Score {
            name: name.to_string(),
            calls: tally.calls,
            answers: tally.answers,
            failures: tally.failures,
            shed: tally.shed,
            upstream: tally.upstream,
            open_after: judged.open_after,
            missed: judged.missed,
            close_after: judged.close_after,
            false_trips: judged.false_trips,
            false_closes: judged.false_closes,
            p50: tally.quantile_ms(0.5),
            p99: tally.quantile_ms(0.99),
            transitions,
        })
    })
}

struct Judged {
    open_after: Option<f64>,
    missed: u32,
    close_after: Option<f64>,
    false_trips: u32,
    false_closes: u32,
}

fn state_at(transitions: &[Transition], t: u64) -> State {
    transitions
        .iter()
        .take_while(|(at, _)| *at <= t)
        .last()
        .map_or(State::Closed, |(_, s)| *s)
}

fn judge(spans: &[Span], transitions: &[Transition], window: u64) -> Judged {
    let mut opens = Vec::new();
    let mut closes = Vec::new();
    let mut missed = 0;
    let mut false_trips = 0;
    let mut false_closes = 0;
    let mut last_outage_end: Option<u64> = None;
    for (i, span) in spans.iter().enumerate() {
        if span.healthy {
            let mut prev = state_at(transitions, span.start.saturating_sub(1));
            for &(at, to) in transitions
                .iter()
                .filter(|(at, _)| *at >= span.start && *at < span.end)
            {
                let after_outage = last_outage_end.is_some_and(|e| at < e + window);
                if to == State::Open && prev == State::Closed && !after_outage {
                    false_trips += 1;
                }
                prev = to;
            }
            continue;
        }
        last_outage_end = Some(span.end);
        // From the outage's start until the next outage (an open just after the end still
        // counts for this outage).
        let until = spans[i + 1..]
            .iter()
            .find(|s| !s.healthy)
            .map_or(u64::MAX, |s| s.start);
        let open_before = state_at(transitions, span.start) != State::Closed;
        // An outage that starts with the breaker already open needs no open of its own.
        if !open_before {
            match transitions
                .iter()
                .find(|(at, to)| *at >= span.start && *at < until && *to == State::Open)
            {
                Some((at, _)) => opens.push(at - span.start),
                None => missed += 1,
            }
        }
        false_closes += transitions
            .iter()
            .filter(|(at, to)| *at >= span.start && *at < span.end && *to == State::Closed)
            .count() as u32;
        if state_at(transitions, span.end) == State::Closed {
            closes.push(0);
        } else if let Some((at, _)) = transitions
            .iter()
            .find(|(at, to)| *at >= span.end && *to == State::Closed)
        {
            closes.push(at - span.end);
        }
    }
    let mean = |v: &[u64]| {
        (!v.is_empty()).then(|| v.iter().map(|&t| tick_secs(t)).sum::<f64>() / v.len() as f64)
    };
    Judged {
        open_after: mean(&opens),
        missed,
        close_after: mean(&closes),
        false_trips,
        false_closes,
    }
}

/// Runs every candidate, on up to `threads` threads; results in the candidates' order.
///
/// # Errors
///
/// The first candidate that fails to run.
pub fn run_all(
    source: &Source,
    candidates: &[Candidate],
    threads: usize,
) -> Result<Vec<Score>, InputError> {
    let threads = threads.clamp(1, candidates.len().max(1));
    let mut results: Vec<Option<Result<Score, InputError>>> = vec![None; candidates.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                scope.spawn(move || {
                    candidates
                        .iter()
                        .enumerate()
                        .skip(k)
                        .step_by(threads)
                        .map(|(i, c)| (i, run(source, &c.settings, &c.name)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(list) => {
                    for (i, r) in list {
                        results[i] = Some(r);
                    }
                }
                Err(_) => {
                    return;
                }
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(InputError("a simulation thread failed".into()))))
        .collect()
}

/// What the recommendation optimises, and its constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// Every outage must open the breaker within this.
    pub open_within: Duration,
    /// At most this many false trips.
    pub max_false_trips: u32,
    /// Then the smallest of this measure.
    pub minimize: Measure,
}

/// A measure to rank candidates by (smaller is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Measure {
    /// Failures that reached callers.
    Failures,
    /// Calls shed.
    Shed,
    /// Attempts sent upstream.
    Upstream,
    /// Time to open.
    Open,
    /// Time to close after recovery.
    Close,
    /// False trips.
    FalseTrips,
    /// Caller p99.
    P99,
}

impl Measure {
    /// Every measure, in the table's order.
    pub const ALL: [Measure; 7] = [
        Measure::Failures,
        Measure::Shed,
        Measure::Upstream,
        Measure::Open,
        Measure::Close,
        Measure::FalseTrips,
        Measure::P99,
    ];

    fn label(self) -> &'static str {
        match self {
            Measure::Failures => "fewest failures reaching callers",
            Measure::Shed => "fewest calls shed",
            Measure::Upstream => "least upstream load",
            Measure::Open => "fastest open after an outage starts",
            Measure::Close => "fastest close after recovery",
            Measure::FalseTrips => "fewest false trips",
            Measure::P99 => "lowest caller p99",
        }
    }

    /// The candidate's value (smaller is better; a missed outage or no close is infinite).
    pub fn value(self, s: &Score) -> f64 {
        match self {
            Measure::Failures => s.failures as f64,
            Measure::Shed => s.shed as f64,
            Measure::Upstream => s.upstream as f64,
            Measure::Open if s.missed > 0 => f64::INFINITY,
            Measure::Open => s.open_after.unwrap_or(f64::INFINITY),
            Measure::Close => s.close_after.unwrap_or(f64::INFINITY),
            Measure::FalseTrips => f64::from(s.false_trips),
            Measure::P99 => s.p99,
        }
    }
}

/// Indices of the candidates meeting the objective's constraints, best first (ties keep the
/// candidates' order).
pub fn rank(scores: &[Score], objective: &Objective) -> Vec<usize> {
    let within = objective.open_within.as_secs_f64();
    let mut ok: Vec<usize> = (0..scores.len())
        .filter(|&i| {
            let s = &scores[i];
            s.missed == 0
                && s.open_after.is_none_or(|t| t <= within)
                && s.false_trips <= objective.max_false_trips
        })
        .collect();
    ok.sort_by(|&a, &b| {
        let m = objective.minimize;
        m.value(&scores[a])
            .total_cmp(&m.value(&scores[b]))
            .then(a.cmp(&b))
    });
    ok
}

fn opt(v: Option<f64>, missed: u32) -> String {
    match v {
        _ if missed > 0 => "never".into(),
        Some(t) => format!("{t:.1}"),
        None => "-".into(),
    }
}

/// The terminal report: the table, the best per measure, the recommendation.
pub fn report(scores: &[Score], objective: &Objective) -> String {
    let mut out = String::new();
    let width = scores
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(9);
    let _ = writeln!(
        out,
        "{:>3} {:<width$} {:>7} {:>7} {:>6} {:>6} {:>8} {:>6} {:>6} {:>5} {:>5} {:>6} {:>6}",
        "#",
        "candidate",
        "calls",
        "answers",
        "failed",
        "shed",
        "upstream",
        "open s",
        "close s",
        "false",
        "flaps",
        "p50 ms",
        "p99 ms"
    );
    for (i, s) in scores.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>3} {:<width$} {:>7} {:>7} {:>6} {:>6} {:>8} {:>6} {:>6} {:>5} {:>5} {:>6.0} {:>6.0}",
            i + 1,
            s.name,
            s.calls,
            s.answers,
            s.failures,
            s.shed,
            s.upstream,
            opt(s.open_after, s.missed),
            opt(s.close_after, 0),
            s.false_trips,
            s.false_closes,
            s.p50,
            s.p99
        );
    }
    let _ = writeln!(
        out,
        "\nopen s: outage start -> open; close s: recovery -> closed; false: opens in healthy\nstretches; flaps: closes while the upstream was still sick.\n"
    );
    for m in Measure::ALL {
        let best = (0..scores.len()).min_by(|&a, &b| {
            m.value(&scores[a])
                .total_cmp(&m.value(&scores[b]))
                .then(a.cmp(&b))
        });
        if let Some(b) = best {
            let _ = writeln!(out, "best, {:<38} #{} {}", m.label(), b + 1, scores[b].name);
        }
    }
    let ranked = rank(scores, objective);
    let _ = write!(
        out,
        "\nobjective: every outage opens within {:.1} s, at most {} false trip(s); then {}\n",
        objective.open_within.as_secs_f64(),
        objective.max_false_trips,
        objective.minimize.label()
    );
    match ranked.first() {
        Some(&b) => {
            let _ = writeln!(
                out,
                "recommended: #{} {} ({} of {} candidates meet the objective)",
                b + 1,
                scores[b].name,
                ranked.len(),
                scores.len()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "recommended: none of the {} candidates meets the objective; loosen it or widen the grid",
                scores.len()
            );
        }
    }
    out
}

/// The SVG report: a state band per candidate over time, outages shaded.
pub fn render_svg(spans: &[Span], scores: &[Score], end: u64, title: &str) -> String {
    let rows: Vec<svg::BandRow> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| svg::BandRow {
            label: format!("#{} {}", i + 1, s.name),
            states: s
                .transitions
                .iter()
                .map(|&(t, st)| (tick_secs(t), svg::band(st)))
                .collect(),
        })
        .collect();
    let shaded: Vec<(f64, f64, String, bool)> = spans
        .iter()
        .map(|s| {
            (
                tick_secs(s.start),
                tick_secs(s.end),
                s.name.clone(),
                s.healthy,
            )
        })
        .collect();
    svg::bands(title, tick_secs(end), &shaded, &rows)
}
