//! What the simulator reads: traces (CSV or JSON lines), scenarios of phases (TOML) and
//! candidate settings (a TOML file or a grid).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use harden::chaos::{Chaos, Faults, Latency};
use serde::Deserialize;

use crate::engine::{ticks, StackSettings};

// The table harden's `tonic` feature reads service configs with; this package does not enable
// that feature.
#[path = "../../src/tonic/names.rs"]
mod grpc_names;

/// An input the simulator cannot use, with what is wrong and where.
#[derive(Debug, Clone)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

fn err<T>(message: impl Into<String>) -> Result<T, InputError> {
    Err(InputError(message.into()))
}

/// Reads a file, naming it in the error.
///
/// # Errors
///
/// The file cannot be read.
pub fn read(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path)
        .map_err(|e| InputError(format!("cannot read {}: {e}", path.display())))
}

/// Parses `"30s"`, `"800ms"`, `"2.5s"`, `"1m"`, `"1h"`, `"250us"`.
///
/// # Errors
///
/// Anything else.
pub fn parse_duration(text: &str) -> Result<Duration, InputError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| {
        InputError(format!(
            "{text:?} is not a duration (try \"30s\" or \"800ms\")"
        ))
    })?;
    let scale = match unit.trim() {
        "h" => 3600.0,
        "m" | "min" => 60.0,
        "s" | "" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        _ => return err(format!("{text:?}: unknown unit {unit:?} (h, m, s, ms, us)")),
    };
    Duration::try_from_secs_f64(n * scale)
        .map_err(|_| InputError(format!("{text:?} is not a duration")))
}

/// A duration in TOML: a string with a unit, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Secs(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => parse_duration(&t)
                .map(Dur)
                .map_err(serde::de::Error::custom),
            Raw::Secs(s) => Duration::try_from_secs_f64(s)
                .map(Dur)
                .map_err(serde::de::Error::custom),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Traces

/// What a recorded call ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// An HTTP status (gRPC codes are mapped to theirs).
    Status(u16),
    /// A transport error.
    Error,
    /// A timeout: the caller gave up; the candidate's own timeouts decide when.
    Timeout,
}

/// One recorded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Start, in ticks (ms) from the trace's first call.
    pub at: u64,
    /// Latency in ticks.
    pub latency: u64,
    /// What it ended with.
    pub outcome: Recorded,
}

/// A parsed trace and the lines that could not be read.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The calls, in order.
    pub records: Vec<Record>,
    /// Unreadable lines: line number (1-based) and why.
    pub garbage: Vec<(u64, String)>,
}

/// The HTTP status a gRPC code maps to (the gRPC-gateway table).
pub fn grpc_to_http(code: u8) -> Option<u16> {
    Some(match code {
        0 => 200,
        1 => 499,
        2 | 13 | 15 => 500,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => return None,
    })
}

/// Parses an outcome: an HTTP status (100–599), a gRPC code (0–16, `grpc:14` or its name such
/// as `UNAVAILABLE`), `ok`, `error` or `timeout`.
///
/// # Errors
///
/// Anything else.
pub fn parse_outcome(text: &str) -> Result<Recorded, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "ok" | "success" => return Ok(Recorded::Status(200)),
        "error" | "err" | "failure" | "fail" => return Ok(Recorded::Error),
        "timeout" => return Ok(Recorded::Timeout),
        _ => {}
    }
    let code = lower.strip_prefix("grpc:").unwrap_or(&lower);
    if let Ok(n) = code.parse::<u16>() {
        if (100..=599).contains(&n) && !lower.starts_with("grpc:") {
            return Ok(Recorded::Status(n));
        }
        if let Some(s) = u8::try_from(n).ok().and_then(grpc_to_http) {
            return Ok(Recorded::Status(s));
        }
    }
    let upper = t.to_ascii_uppercase();
    if let Some(i) = grpc_names::code_from_name(&upper) {
        let s = u8::try_from(i).ok().and_then(grpc_to_http);
        return s.map(Recorded::Status).ok_or_else(|| "no status".into());
    }
    Err(format!(
        "outcome {t:?} is not an HTTP status, a gRPC code, ok, error or timeout"
    ))
}

struct Raw {
    timestamp: f64,
    latency_ms: f64,
    outcome: Recorded,
}

fn raw_latency(ms: Option<&str>, secs: Option<&str>) -> Result<f64, String> {
    let (text, scale) = match (ms, secs) {
        (Some(t), _) => (t, 1.0),
        (None, Some(t)) => (t, 1000.0),
        (None, None) => return Err("no latency".into()),
    };
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("latency {text:?} is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("latency {text:?} is negative or not finite"));
    }
    Ok(v * scale)
}

fn raw_timestamp(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("timestamp {text:?} is not a number of seconds"))?;
    if !v.is_finite() {
        return Err(format!("timestamp {text:?} is not finite"));
    }
    Ok(v)
}

/// Parses a trace: JSON lines if the first non-blank character is `{`, else CSV with a header
/// naming `timestamp` (seconds, any origin), `latency_ms` (or `latency_s`/`latency` in
/// seconds) and `outcome`.
///
/// # Errors
///
/// No readable call, a CSV header without the columns, or a call earlier than the one before.
pub fn parse_trace(text: &str) -> Result<Trace, InputError> {
    let mut garbage = Vec::new();
    let mut raws: Vec<(u64, Raw)> = Vec::new();
    if text.trim_start().starts_with('{') {
        for (i, line) in text.lines().enumerate() {
            let n = i as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            match json_line(line) {
                Ok(raw) => raws.push((n, raw)),
                Err(why) => garbage.push((n, why)),
            }
        }
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| InputError(format!("trace: cannot read the CSV header: {e}")))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let (Some(ts), Some(outcome)) = (col("timestamp"), col("outcome")) else {
            return err(format!(
                "trace: the CSV header must name `timestamp`, `latency_ms` (or `latency_s`) and `outcome`; it is {:?}",
                headers.iter().collect::<Vec<_>>().join(",")
            ));
        };
        let ms = col("latency_ms");
        let secs = col("latency_s").or_else(|| col("latency"));
        if ms.is_none() && secs.is_none() {
            return err(
                "trace: the CSV header names no latency column (`latency_ms` or `latency_s`)",
            );
        }
        for result in reader.records() {
            match result {
                Err(e) => {
                    let line = e.position().map_or(0, csv::Position::line);
                    garbage.push((line, e.to_string()));
                }
                Ok(record) => {
                    let line = record.position().map_or(0, csv::Position::line);
                    let parsed = (|| -> Result<Raw, String> {
                        let field = |i: Option<usize>| i.and_then(|i| record.get(i));
                        Ok(Raw {
                            timestamp: raw_timestamp(field(Some(ts)).ok_or("no timestamp")?)?,
                            latency_ms: raw_latency(field(ms), field(secs))?,
                            outcome: parse_outcome(field(Some(outcome)).ok_or("no outcome")?)?,
                        })
                    })();
                    match parsed {
                        Ok(raw) => raws.push((line, raw)),
                        Err(why) => garbage.push((line, why)),
                    }
                }
            }
        }
    }
    let Some((_, first)) = raws.first() else {
        return err(format!(
            "trace: no readable call ({} unreadable lines{})",
            garbage.len(),
            garbage
                .first()
                .map(|(n, why)| format!("; line {n}: {why}"))
                .unwrap_or_default()
        ));
    };
    let t0 = first.timestamp;
    let mut records = Vec::with_capacity(raws.len());
    let mut last: Option<(u64, f64)> = None;
    for (line, raw) in &raws {
        if let Some((prev_line, prev)) = last {
            if raw.timestamp < prev {
                return err(format!(
                    "trace: line {line} (timestamp {}) is earlier than line {prev_line} ({prev}); sort the trace by timestamp first (e.g. `sort -t, -k1,1 -g`)",
                    raw.timestamp
                ));
            }
        }
        last = Some((*line, raw.timestamp));
        let offset = raw.timestamp - t0;
        if offset > 365.0 * 86_400.0 {
            return err(format!(
                "trace: line {line} is more than a year after the first call"
            ));
        }
        records.push(Record {
            at: (offset * 1000.0).round() as u64,
            latency: ticks(Duration::from_secs_f64(raw.latency_ms / 1000.0)),
            outcome: raw.outcome,
        });
    }
    Ok(Trace { records, garbage })
}

fn json_line(line: &str) -> Result<Raw, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let text = |key: &str| -> Option<String> {
        obj.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    Ok(Raw {
        timestamp: raw_timestamp(&text("timestamp").ok_or("no `timestamp`")?)?,
        latency_ms: raw_latency(
            text("latency_ms").as_deref(),
            text("latency_s").or_else(|| text("latency")).as_deref(),
        )?,
        outcome: parse_outcome(&text("outcome").ok_or("no `outcome`")?)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// A latency distribution, in `harden::chaos`'s words.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LatencySpec {
    /// Always this long.
    Fixed(Dur),
    /// Uniform in `[min, max]`.
    Uniform(Dur, Dur),
    /// Exponential with a mean, cut at a max.
    Exponential(Dur, Dur),
}

impl LatencySpec {
    fn chaos(self) -> Latency {
        match self {
            LatencySpec::Fixed(d) => Latency::fixed(d.0),
            LatencySpec::Uniform(a, b) => Latency::uniform(a.0, b.0),
            LatencySpec::Exponential(m, x) => Latency::exponential(m.0, x.0),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseFile {
    name: Option<String>,
    duration: Dur,
    rate: Option<f64>,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    hang_rate: f64,
    status: Option<u16>,
    #[serde(default)]
    status_rate: f64,
    latency: Option<LatencySpec>,
    #[serde(default)]
    latency_rate: f64,
    healthy: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    seed: u64,
    rate: f64,
    #[serde(default)]
    arrivals: Arrivals,
    base_latency: Option<Dur>,
    phase: Vec<PhaseFile>,
}

/// How calls arrive at a phase's rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// A Poisson process (independent callers).
    #[default]
    Poisson,
    /// Evenly spaced (one caller on a ticker, like the demo).
    Even,
}

/// One phase of a scenario.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Its name.
    pub name: String,
    /// Start tick.
    pub start: u64,
    /// End tick (exclusive).
    pub end: u64,
    /// Calls per second.
    pub rate: f64,
    /// The upstream's faults, as `harden::chaos` takes them.
    pub faults: Faults,
    /// Whether the breaker should stay closed here (an open is a false trip).
    pub healthy: bool,
}

/// The longest scenario or fleet run accepted.
pub const MAX_LENGTH: Duration = Duration::from_secs(30 * 86_400);

/// A scenario of phases.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Seed of the run.
    pub seed: u64,
    /// How calls arrive.
    pub arrivals: Arrivals,
    /// Latency of every answer before any injected delay.
    pub base_latency: u64,
    /// The phases, back to back.
    pub phases: Vec<Phase>,
}

impl Scenario {
    /// Total length in ticks.
    pub fn end(&self) -> u64 {
        self.phases.last().map_or(0, |p| p.end)
    }

    /// The phase at tick `t` (the last one past the end).
    pub fn phase_at(&self, t: u64) -> &Phase {
        let i = self.phases.partition_point(|p| p.end <= t);
        &self.phases[i.min(self.phases.len() - 1)]
    }
}

/// Parses a scenario (TOML); every phase's faults are checked by `harden::chaos`.
///
/// # Errors
///
/// TOML errors, unknown keys, no phase, rates outside what `harden::chaos` accepts.
pub fn parse_scenario(text: &str) -> Result<Scenario, InputError> {
    let file: ScenarioFile =
        toml::from_str(text).map_err(|e| InputError(format!("scenario: {e}")))?;
    if file.phase.is_empty() {
        return err("scenario: no [[phase]]");
    }
    let mut phases = Vec::new();
    let mut start = 0;
    for (i, p) in file.phase.into_iter().enumerate() {
        let name = p.name.unwrap_or_else(|| format!("phase {}", i + 1));
        let rate = p.rate.unwrap_or(file.rate);
        if !rate.is_finite() || !(0.0..=1e6).contains(&rate) {
            return err(format!(
                "scenario: phase {name:?}: rate {rate} is outside [0, 1000000] calls/s"
            ));
        }
        let mut faults = Faults::new()
            .with_error_rate(p.error_rate)
            .with_hang_rate(p.hang_rate);
        if p.status_rate > 0.0 || p.status.is_some() {
            let code = p.status.unwrap_or(503);
            let status = http::StatusCode::from_u16(code).map_err(|_| {
                InputError(format!(
                    "scenario: phase {name:?}: status {code} is not an HTTP status"
                ))
            })?;
            faults = faults.with_status(status, p.status_rate);
        }
        if let Some(l) = p.latency {
            faults = faults.with_latency(l.chaos(), p.latency_rate);
        } else if p.latency_rate > 0.0 {
            return err(format!(
                "scenario: phase {name:?}: latency_rate without a latency"
            ));
        }
        Chaos::builder()
            .faults(faults)
            .build()
            .map_err(|e| InputError(format!("scenario: phase {name:?}: {e}")))?;
        let len = ticks(p.duration.0);
        if len == 0 {
            return err(format!("scenario: phase {name:?} has no duration"));
        }
        let bad = p.error_rate
            + p.hang_rate
            + if p.status.unwrap_or(503) >= 500 {
                p.status_rate
            } else {
                0.0
            };
        let healthy = p.healthy.unwrap_or(bad <= 0.05 && p.latency_rate <= 0.05);
        phases.push(Phase {
            name,
            start,
            end: start + len,
            rate,
            faults,
            healthy,
        });
        start += len;
    }
    if start > ticks(MAX_LENGTH) {
        return err("scenario: longer than 30 days in all");
    }
    Ok(Scenario {
        seed: file.seed,
        arrivals: file.arrivals,
        base_latency: file.base_latency.map_or(1, |d| ticks(d.0)),
        phases,
    })
}

// ---------------------------------------------------------------------------------------------
// Candidates

/// Settings a candidate changes; names are harden's builders'.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// `CircuitBreakerBuilder::error_threshold_percentage`.
    pub error_threshold_percentage: Option<f64>,
    /// `CircuitBreakerBuilder::volume_threshold`.
    pub volume_threshold: Option<u32>,
    /// `CircuitBreakerBuilder::rolling_window`'s window.
    pub rolling_window: Option<Dur>,
    /// `CircuitBreakerBuilder::rolling_window`'s buckets.
    pub buckets: Option<u32>,
    /// `CircuitBreakerBuilder::reset_timeout`.
    pub reset_timeout: Option<Dur>,
    /// `CircuitBreakerBuilder::half_open_max_calls`.
    pub half_open_max_calls: Option<u32>,
    /// Whether there is a breaker.
    pub breaker: Option<bool>,
    /// `RetryPolicyBuilder::max_attempts`.
    pub max_attempts: Option<u32>,
    /// The backoff's first delay.
    pub initial_delay: Option<Dur>,
    /// The backoff's growth.
    pub multiplier: Option<f64>,
    /// The backoff's cap.
    pub max_delay: Option<Dur>,
    /// Full jitter or none.
    pub jitter: Option<bool>,
    /// Whether there is a retry budget.
    pub budget: Option<bool>,
    /// `RetryBudgetBuilder::retry_ratio`.
    pub retry_ratio: Option<f64>,
    /// `RetryBudgetBuilder::min_retries_per_sec`.
    pub min_retries_per_sec: Option<u32>,
    /// `RetryBudgetBuilder::burst`.
    pub burst: Option<u32>,
    /// Attempt timeout.
    pub attempt_timeout: Option<Dur>,
    /// Total timeout.
    pub total_timeout: Option<Dur>,
    /// Bulkhead limit.
    pub max_concurrent: Option<usize>,
}

/// The settings a grid may vary, in the order the grid is laid out (the last varies fastest).
pub const SETTINGS: [&str; 19] = [
    "error_threshold_percentage",
    "volume_threshold",
    "rolling_window",
    "buckets",
    "reset_timeout",
    "half_open_max_calls",
    "breaker",
    "max_attempts",
    "initial_delay",
    "multiplier",
    "max_delay",
    "jitter",
    "budget",
    "retry_ratio",
    "min_retries_per_sec",
    "burst",
    "attempt_timeout",
    "total_timeout",
    "max_concurrent",
];

fn short(name: &str) -> &str {
    match name {
        "error_threshold_percentage" => "err%",
        "volume_threshold" => "vol",
        "rolling_window" => "win",
        "reset_timeout" => "reset",
        "half_open_max_calls" => "probes",
        "max_attempts" => "att",
        "attempt_timeout" => "atmo",
        "total_timeout" => "total",
        other => other,
    }
}

impl Overrides {
    /// These settings on top of `base`.
    pub fn apply(&self, base: &StackSettings) -> StackSettings {
        let mut s = base.clone();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { s.$f = v; } )* };
        }
        macro_rules! set_dur {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { s.$f = v.0; } )* };
        }
        set!(
            error_threshold_percentage,
            volume_threshold,
            buckets,
            half_open_max_calls,
            breaker,
            max_attempts,
            multiplier,
            jitter,
            budget,
            retry_ratio,
            min_retries_per_sec,
            burst
        );
        set_dur!(rolling_window, reset_timeout, initial_delay, max_delay);
        if let Some(d) = self.attempt_timeout {
            s.attempt_timeout = (!d.0.is_zero()).then_some(d.0);
        }
        if let Some(d) = self.total_timeout {
            s.total_timeout = (!d.0.is_zero()).then_some(d.0);
        }
        if let Some(n) = self.max_concurrent {
            s.max_concurrent = (n > 0).then_some(n);
        }
        s
    }
}

/// One candidate: a name and its settings.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Short name, from what it changes.
    pub name: String,
    /// Its settings.
    pub settings: StackSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidatesFile {
    base: Option<toml::Table>,
    grid: Option<toml::Table>,
    candidate: Option<Vec<toml::Table>>,
}

fn overrides(table: &toml::Table, what: &str) -> Result<Overrides, InputError> {
    let mut t = table.clone();
    t.remove("name");
    t.remove("preset");
    for key in t.keys() {
        if !SETTINGS.contains(&key.as_str()) {
            return err(format!(
                "{what}: unknown setting `{key}`; known: {}",
                SETTINGS.join(", ")
            ));
        }
    }
    toml::Value::Table(t)
        .try_into()
        .map_err(|e| InputError(format!("{what}: {e}")))
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses one `--grid name=v1,v2,..` argument.
///
/// # Errors
///
/// No `=`, an unknown name, no value.
pub fn parse_grid_arg(arg: &str) -> Result<(String, Vec<toml::Value>), InputError> {
    let Some((name, values)) = arg.split_once('=') else {
        return err(format!(
            "--grid {arg:?}: expected name=v1,v2 (e.g. volume_threshold=10,20,50)"
        ));
    };
    let name = name.trim().to_string();
    if !SETTINGS.contains(&name.as_str()) {
        return err(format!(
            "--grid: unknown setting `{name}`; known: {}",
            SETTINGS.join(", ")
        ));
    }
    let values: Vec<toml::Value> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            toml::from_str::<toml::Table>(&format!("v = {v}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(v.to_string()))
        })
        .collect();
    if values.is_empty() {
        return err(format!("--grid {name}: no values"));
    }
    Ok((name, values))
}

/// The candidates: `base` (or the HTTP preset) changed by each explicit candidate, then every
/// combination of the grid in [`SETTINGS`] order, the last setting varying fastest. Without
/// either, the base alone.
///
/// # Errors
///
/// TOML errors, unknown settings, settings harden's builders refuse.
pub fn candidates(
    file: Option<&str>,
    grid_args: &[(String, Vec<toml::Value>)],
    base: &StackSettings,
) -> Result<Vec<Candidate>, InputError> {
    let parsed: CandidatesFile = match file {
        Some(text) => toml::from_str(text).map_err(|e| InputError(format!("candidates: {e}")))?,
        None => CandidatesFile {
            base: None,
            grid: None,
            candidate: None,
        },
    };
    let base = match &parsed.base {
        Some(t) => {
            if let Some(p) = t.get("preset") {
                if p.as_str() != Some("http") {
                    return err("candidates: [base] preset must be \"http\" (the default)");
                }
            }
            overrides(t, "candidates [base]")?.apply(base)
        }
        None => base.clone(),
    };
    let mut out = Vec::new();
    for (i, t) in parsed.candidate.iter().flatten().enumerate() {
        let o = overrides(t, &format!("candidate {}", i + 1))?;
        let name = match t.get("name") {
            Some(n) => value_text(n),
            None => describe(t),
        };
        out.push(Candidate {
            name,
            settings: o.apply(&base),
        });
    }
    let mut axes: Vec<(String, Vec<toml::Value>)> = Vec::new();
    if let Some(g) = &parsed.grid {
        for (k, v) in g {
            let values = match v {
                toml::Value::Array(a) if !a.is_empty() => a.clone(),
                toml::Value::Array(_) => return err(format!("candidates [grid] {k}: no values")),
                other => vec![other.clone()],
            };
            axes.push((k.clone(), values));
        }
    }
    for (k, v) in grid_args {
        axes.retain(|(name, _)| name != k);
        axes.push((k.clone(), v.clone()));
    }
    for (k, _) in &axes {
        if !SETTINGS.contains(&k.as_str()) {
            return err(format!(
                "grid: unknown setting `{k}`; known: {}",
                SETTINGS.join(", ")
            ));
        }
    }
    axes.sort_by_key(|(k, _)| SETTINGS.iter().position(|s| s == k));
    if !axes.is_empty() {
        let total: usize = axes.iter().map(|(_, v)| v.len()).product();
        if total > 10_000 {
            return err(format!("grid: {total} combinations; keep it under 10000"));
        }
        for n in 0..total {
            let mut table = toml::Table::new();
            let mut rest = n;
            let mut picks = Vec::new();
            for (k, values) in axes.iter().rev() {
                picks.push((k.clone(), values[rest % values.len()].clone()));
                rest /= values.len();
            }
            picks.reverse();
            for (k, v) in picks {
                table.insert(k, v);
            }
            let o = overrides(&table, "grid")?;
            out.push(Candidate {
                name: describe(&table),
                settings: o.apply(&base),
            });
        }
    }
    if out.is_empty() {
        out.push(Candidate {
            name: "base".into(),
            settings: base,
        });
    }
    for c in &out {
        c.settings
            .validate()
            .map_err(|e| InputError(format!("candidate {:?}: {e}", c.name)))?;
    }
    Ok(out)
}

fn describe(t: &toml::Table) -> String {
    let mut keys: Vec<&String> = t.keys().filter(|k| *k != "name").collect();
    keys.sort_by_key(|k| SETTINGS.iter().position(|s| s == k));
    let parts: Vec<String> = keys
        .iter()
        .map(|k| format!("{}={}", short(k), value_text(&t[k.as_str()])))
        .collect();
    if parts.is_empty() {
        "base".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("800ms").unwrap(), Duration::from_millis(800));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }

    #[test]
    fn outcomes() {
        assert_eq!(parse_outcome("503"), Ok(Recorded::Status(503)));
        assert_eq!(parse_outcome("14"), Ok(Recorded::Status(503)));
        assert_eq!(parse_outcome("grpc:4"), Ok(Recorded::Status(504)));
        assert_eq!(parse_outcome("UNAVAILABLE"), Ok(Recorded::Status(503)));
        assert_eq!(parse_outcome("ok"), Ok(Recorded::Status(200)));
        assert_eq!(parse_outcome("error"), Ok(Recorded::Error));
        assert!(parse_outcome("700").is_err());
        assert!(parse_outcome("grpc:99").is_err());
    }
}
