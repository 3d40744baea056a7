//! The state machine core against a small sequential reference model of the semantics, over
//! random sequences of time steps, calls (finished at once, held open, finished late, cancelled)
//! and manual changes. Driven with explicit `now`, no tokio, so 10 000 cases stay fast.

use proptest::prelude::*;

use super::config::{CircuitBreakerBuilder, Config};
use super::core::{Core, Kind, Permit};
use super::window::WindowSpec;
use super::State;
use crate::circuit_breaker::Outcome;
use crate::clock::Clock;
use std::time::Duration;

const MS: u64 = 1_000_000;

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    /// Admit, advance `ms`, finish with the outcome.
    Call(Outcome, u64),
    /// Admit and hold the permit.
    Begin,
    /// Finish the held permit at this index (modulo) with the outcome.
    Finish(usize, Outcome),
    /// Cancel the held permit at this index (modulo).
    Drop(usize),
    ForceOpen,
    Disable,
    Reset,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Success),
        3 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..3000).prop_map(Op::Advance),
        10 => (outcome(), prop_oneof![Just(0u64), 1u64..100]).prop_map(|(o, d)| Op::Call(o, d)),
        2 => Just(Op::Begin),
        2 => (any::<usize>(), outcome()).prop_map(|(i, o)| Op::Finish(i, o)),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => prop_oneof![Just(Op::ForceOpen), Just(Op::Disable), Just(Op::Reset)],
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        (
            prop_oneof![
                Just(25.0),
                Just(50.0),
                Just(75.0),
                Just(100.0),
                1.0f64..100.0
            ],
            1u32..6,
            prop_oneof![
                (
                    prop::sample::select(vec![1u32, 2, 5, 10]),
                    prop::sample::select(vec![1u64, 10, 100, 1000])
                )
                    .prop_map(|(b, w)| Err((b, w))),
                (1u32..10).prop_map(Ok),
            ],
            1u64..200,
            1u32..4,
        ),
        (
            prop::option::of(1u32..6),
            prop::option::of((1u64..60, prop::sample::select(vec![25.0, 50.0, 100.0]))),
            prop::option::of((1.0f64..3.0, 1u64..4)),
            1u64..200,
        ),
    )
        .prop_filter_map(
            "volume above count window",
            |((threshold, volume, window, reset, half), (consecutive, slow, backoff, probe))| {
                let reset = Duration::from_millis(reset * 100);
                let mut b = CircuitBreakerBuilder::new()
                    .error_threshold_percentage(threshold)
                    .volume_threshold(volume)
                    .reset_timeout(reset)
                    .half_open_max_calls(half)
                    .max_probe_duration(Duration::from_millis(probe * 100));
                b = match window {
                    Err((buckets, width)) => {
                        b.rolling_window(Duration::from_millis(width * u64::from(buckets)), buckets)
                    }
                    Ok(n) => b.count_window(n),
                };
                if let Some(n) = consecutive {
                    b = b.consecutive_failures(n);
                }
                if let Some((ms, pct)) = slow {
                    b = b.slow_call(Duration::from_millis(ms), pct);
                }
                if let Some((m, k)) = backoff {
                    b = b.open_backoff(m, reset * k as u32);
                }
                b.validate().ok()
            },
        )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MPermit {
    gen: u32,
    kind: Kind,
    start: u64,
}

/// The reference: plain sequential code written from the module docs.
#[derive(Debug)]
struct Model {
    cfg: Config,
    state: State,
    gen: u32,
    inflight: u32,
    successes: u32,
    reopens: u32,
    open_until: u64,
    activity: u64,
    records: Vec<(u64, bool, bool)>,
    consecutive: u32,
    rejections: u64,
}

impl Model {
    fn new(cfg: Config) -> Self {
        Model {
            cfg,
            state: State::Closed,
            gen: 0,
            inflight: 0,
            successes: 0,
            reopens: 0,
            open_until: 0,
            activity: 0,
            records: Vec::new(),
            consecutive: 0,
            rejections: 0,
        }
    }

    fn enter(&mut self, state: State) {
        self.state = state;
        self.gen += 1;
        self.inflight = 0;
        self.successes = 0;
    }

    fn counts(&self, now: u64) -> (u64, u64, u64) {
        let live: Vec<_> = match self.cfg.window {
            WindowSpec::Time { window, buckets } => {
                let width = window.as_nanos() as u64 / u64::from(buckets);
                self.records
                    .iter()
                    .filter(|(t, _, _)| now / width < t / width + u64::from(buckets))
                    .collect()
            }
            WindowSpec::Count { calls } => self.records.iter().rev().take(calls as usize).collect(),
        };
        let f = live.iter().filter(|r| r.1).count() as u64;
        let s = live.iter().filter(|r| r.2).count() as u64;
        (live.len() as u64 - f, f, s)
    }

    /// `Ok(permit)` or `Err(retry_after)`.
    fn acquire(&mut self, now: u64) -> Result<MPermit, Option<u64>> {
        let probe = |gen| MPermit {
            gen,
            kind: Kind::Probe,
            start: now,
        };
        let result = match self.state {
            State::Closed => Ok(MPermit {
                gen: self.gen,
                kind: Kind::Closed,
                start: now,
            }),
            State::Disabled => Ok(MPermit {
                gen: self.gen,
                kind: Kind::Passthrough,
                start: now,
            }),
            State::ForcedOpen => Err(None),
            State::Open if now >= self.open_until => {
                self.enter(State::HalfOpen);
                self.inflight = 1;
                self.activity = now;
                Ok(probe(self.gen))
            }
            State::Open => Err(Some((self.open_until - now).div_ceil(1000) * 1000)),
            State::HalfOpen if self.inflight < self.cfg.half_open_max_calls => {
                self.inflight += 1;
                self.activity = now;
                Ok(probe(self.gen))
            }
            State::HalfOpen if now >= self.activity + self.cfg.max_probe => {
                self.enter(State::HalfOpen);
                self.inflight = 1;
                self.activity = now;
                Ok(probe(self.gen))
            }
            _ => Err(Some(self.activity + self.cfg.max_probe - now)),
        };
        if result.is_err() {
            self.rejections += 1;
        }
        result
    }

    fn open(&mut self, now: u64, reopens: u32) {
        self.enter(State::Open);
        self.reopens = reopens;
        self.open_until = now + self.cfg.open_duration(reopens, now);
    }

    fn finish(&mut self, p: MPermit, outcome: Outcome, now: u64) {
        let slow = matches!(self.cfg.slow_call, Some((t, _)) if now - p.start >= t);
        match p.kind {
            Kind::Passthrough => {}
            Kind::Closed => {
                if self.state != State::Closed || self.gen != p.gen || outcome == Outcome::Ignored {
                    return;
                }
                let failure = outcome == Outcome::Failure;
                self.records.push((now, failure, slow));
                let mut trip = false;
                if let Some(n) = self.cfg.consecutive_failures {
                    if failure {
                        self.consecutive += 1;
                        trip = self.consecutive >= n;
                    } else {
                        self.consecutive = 0;
                    }
                }
                if !failure && !slow {
                    return;
                }
                let (s, f, sl) = self.counts(now);
                let total = s + f;
                if total >= self.cfg.volume {
                    trip |= f as f64 * 100.0 >= self.cfg.threshold * total as f64;
                    trip |= matches!(self.cfg.slow_call, Some((_, pct)) if sl as f64 * 100.0 >= pct * total as f64);
                }
                if trip {
                    self.open(now, 0);
                }
            }
            Kind::Probe => {
                if self.state != State::HalfOpen || self.gen != p.gen {
                    return;
                }
                match outcome {
                    Outcome::Ignored => self.inflight -= 1,
                    Outcome::Failure => self.open(now, (self.reopens + 1).min(255)),
                    Outcome::Success if slow => self.open(now, (self.reopens + 1).min(255)),
                    Outcome::Success if self.successes + 1 >= self.cfg.half_open_max_calls => {
                        self.records.clear();
                        self.consecutive = 0;
                        self.reopens = 0;
                        self.enter(State::Closed);
                    }
                    Outcome::Success => {
                        self.inflight -= 1;
                        self.successes += 1;
                        self.activity = now;
                    }
                }
            }
        }
    }

    fn cancel(&mut self, p: MPermit) {
        if p.kind == Kind::Probe && self.state == State::HalfOpen && self.gen == p.gen {
            self.inflight -= 1;
        }
    }

    fn manual(&mut self, state: State) {
        if state == State::Closed {
            self.records.clear();
            self.consecutive = 0;
        }
        self.reopens = 0;
        self.enter(state);
    }
}

fn check(core: &Core, model: &Model, now: u64) -> Result<(), TestCaseError> {
    let stats = core.stats(now);
    let (s, f, sl) = model.counts(now);
    prop_assert_eq!(stats.state, model.state);
    prop_assert_eq!(core.generation(), model.gen);
    prop_assert_eq!(
        (stats.successes, stats.failures, stats.slow_calls),
        (s, f, sl)
    );
    prop_assert_eq!(stats.rejections, model.rejections);
    let total = s + f;
    let pct = (total >= model.cfg.volume).then(|| f as f64 * 100.0 / total as f64);
    prop_assert_eq!(stats.failure_percentage, pct);
    Ok(())
}

fn run(cfg: Config, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let core = Core::new(cfg.clone(), Clock::new(), 0);
    let mut model = Model::new(cfg);
    let mut now = 0u64;
    let mut held: Vec<(Permit, MPermit)> = Vec::new();
    let acquire = |core: &Core,
                   model: &mut Model,
                   now: u64|
     -> Result<Option<(Permit, MPermit)>, TestCaseError> {
        let real = core.try_acquire(now);
        let expected = model.acquire(now);
        match (real, expected) {
            (Ok(p), Ok(m)) => {
                prop_assert_eq!(p.kind(), m.kind);
                Ok(Some((p, m)))
            }
            (Err(e), Err(retry)) => {
                prop_assert_eq!(e.retry_after(), retry.map(Duration::from_nanos));
                Ok(None)
            }
            (real, expected) => {
                prop_assert!(
                    false,
                    "admission differs: real {:?}, model {:?}",
                    real.map(|p| p.kind()),
                    expected
                );
                Ok(None)
            }
        }
    };
    for op in ops {
        match op {
            Op::Advance(ms) => now += ms * MS,
            Op::Call(outcome, ms) => {
                if let Some((p, m)) = acquire(&core, &mut model, now)? {
                    now += ms * MS;
                    core.on_result(p, m.start, outcome, now);
                    model.finish(m, outcome, now);
                }
            }
            Op::Begin => {
                if let Some(pair) = acquire(&core, &mut model, now)? {
                    held.push(pair);
                }
            }
            Op::Finish(i, outcome) if !held.is_empty() => {
                let (p, m) = held.remove(i % held.len());
                core.on_result(p, m.start, outcome, now);
                model.finish(m, outcome, now);
            }
            Op::Drop(i) if !held.is_empty() => {
                let (p, m) = held.remove(i % held.len());
                core.release(p);
                model.cancel(m);
            }
            Op::Finish(..) | Op::Drop(_) => {}
            Op::ForceOpen => {
                core.set_manual(State::ForcedOpen);
                model.manual(State::ForcedOpen);
            }
            Op::Disable => {
                core.set_manual(State::Disabled);
                model.manual(State::Disabled);
            }
            Op::Reset => {
                core.set_manual(State::Closed);
                model.manual(State::Closed);
            }
        }
        check(&core, &model, now)?;
    }
    for (p, m) in held {
        core.release(p);
        model.cancel(m);
    }
    check(&core, &model, now)
}

/// 10 000 cases unless `PROPTEST_CASES` says otherwise: the README's test command is CI's, and
/// this model is the breaker's main evidence. Failures persist under proptest-regressions/.
fn model_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(model_config())]

    #[test]
    fn core_matches_reference_model(cfg in config(), ops in prop::collection::vec(op(), 1..80)) {
        run(cfg, ops)?;
    }
}

#[test]
fn open_duration_is_capped_jittered_and_never_below_reset_timeout() {
    let cfg = CircuitBreakerBuilder::new()
        .reset_timeout(Duration::from_secs(10))
        .open_backoff(2.0, Duration::from_secs(35))
        .validate()
        .unwrap();
    let s = 1_000_000_000;
    for now in (0..1000).map(|i| i * 7_919_000) {
        assert_eq!(cfg.open_duration(0, now), 10 * s);
        let d1 = cfg.open_duration(1, now);
        assert!((16 * s..=20 * s).contains(&d1), "{d1}");
        let d9 = cfg.open_duration(9, now);
        assert!((28 * s..=35 * s).contains(&d9), "{d9}");
        assert!(cfg.open_duration(255, now) <= 35 * s);
    }
}
