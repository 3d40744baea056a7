//! The `harden-sim` command line: `replay` and `fleet`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use harden_sim::engine::StackSettings;
use harden_sim::fleet::{self, FleetSettings, Overload};
use harden_sim::input::{self, parse_duration, InputError};
use harden_sim::replay::{self, Measure, Objective, Source};

/// Tune harden's breaker on your own traffic, and watch a fleet meet an overloaded upstream.
#[derive(Debug, Parser)]
#[command(name = "harden-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score candidate settings on a trace or a scenario, and recommend one.
    Replay(ReplayArgs),
    /// N clients, each with its own stack, against one upstream through an overload.
    Fleet(FleetArgs),
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// A trace: CSV (`timestamp,latency_ms,outcome`) or JSON lines.
    #[arg(
        long,
        conflicts_with = "scenario",
        required_unless_present = "scenario"
    )]
    trace: Option<PathBuf>,
    /// A scenario of phases (TOML).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Candidates (TOML: `[base]`, `[grid]`, `[[candidate]]`).
    #[arg(long)]
    candidates: Option<PathBuf>,
    /// A grid axis, `name=v1,v2,..` with the settings' own names; repeat for more axes.
    #[arg(long = "grid", value_name = "NAME=V1,V2")]
    grid: Vec<String>,
    /// Objective: every outage must open the breaker within this.
    #[arg(long, default_value = "5s", value_parser = dur)]
    open_within: Duration,
    /// Objective: at most this many opens in healthy stretches.
    #[arg(long, default_value_t = 0)]
    max_false_trips: u32,
    /// Objective: then the smallest of this.
    #[arg(long, value_enum, default_value = "failures")]
    minimize: Measure,
    /// Write the SVG report here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Threads to run candidates on.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Also list every candidate's breaker transitions.
    #[arg(long)]
    transitions: bool,
}

#[derive(Debug, clap::Args)]
struct FleetArgs {
    /// Clients, each with its own breaker, bulkhead and retry budget.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Calls per second per client.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Simulated time.
    #[arg(long, default_value = "10m", value_parser = dur)]
    duration: Duration,
    /// Upstream capacity in requests per second (default: 1.2 x the calls per second).
    #[arg(long)]
    capacity: Option<f64>,
    /// Overload kind.
    #[arg(long, value_enum, default_value = "drop")]
    overload: Overload,
    /// Capacity factor of a drop, or rate factor of a spike (default 0.4 or 3).
    #[arg(long)]
    factor: Option<f64>,
    /// When the overload starts.
    #[arg(long, default_value = "2m", value_parser = dur)]
    overload_start: Duration,
    /// How long it lasts.
    #[arg(long, default_value = "30s", value_parser = dur)]
    overload_length: Duration,
    /// Every client's attempt timeout.
    #[arg(long, default_value = "1s", value_parser = dur)]
    attempt_timeout: Duration,
    /// Every client's total timeout.
    #[arg(long, default_value = "10s", value_parser = dur)]
    total_timeout: Duration,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the SVG report here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write every stack's per-second series here (CSV).
    #[arg(long)]
    series: Option<PathBuf>,
    /// Threads to run the three stacks on.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn dur(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(a) => replay_cmd(a),
        Command::Fleet(a) => fleet_cmd(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("harden-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn replay_cmd(a: ReplayArgs) -> Result<(), InputError> {
    let source = match (&a.trace, &a.scenario) {
        (Some(path), _) => {
            let trace = input::parse_trace(&input::read(path)?)?;
            if !trace.garbage.is_empty() {
                eprintln!(
                    "{}: {} unreadable line(s) skipped:",
                    path.display(),
                    trace.garbage.len()
                );
                for (line, why) in trace.garbage.iter().take(10) {
                    eprintln!("  line {line}: {why}");
                }
                if trace.garbage.len() > 10 {
                    eprintln!("  ...");
                }
            }
            Source::Trace(trace)
        }
        (None, Some(path)) => Source::Scenario(input::parse_scenario(&input::read(path)?)?),
        (None, None) => return Err(InputError("give --trace or --scenario".into())),
    };
    let file = a.candidates.as_deref().map(input::read).transpose()?;
    let grid = a
        .grid
        .iter()
        .map(|g| input::parse_grid_arg(g))
        .collect::<Result<Vec<_>, _>>()?;
    let candidates = input::candidates(file.as_deref(), &grid, &StackSettings::http_preset())?;
    let started = Instant::now();
    let scores = replay::run_all(&source, &candidates, a.threads)?;
    let wall = started.elapsed();
    let objective = Objective {
        open_within: a.open_within,
        max_false_trips: a.max_false_trips,
        minimize: a.minimize,
    };
    let spans = source.spans();
    let outages = spans.iter().filter(|s| !s.healthy).count();
    println!(
        "{} candidate(s) on {:.0} s of traffic ({} outage(s)), in {:.2} s of wall time\n",
        candidates.len(),
        source.end() as f64 / 1000.0,
        outages,
        wall.as_secs_f64()
    );
    print!("{}", replay::report(&scores, &objective));
    if a.transitions {
        for (i, s) in scores.iter().enumerate() {
            let list: Vec<String> = s
                .transitions
                .iter()
                .map(|(t, st)| format!("{:.3}s {st}", *t as f64 / 1000.0))
                .collect();
            println!("\n#{} {}: {}", i + 1, s.name, list.join(", "));
        }
    }
    if let Some(path) = a.svg {
        let title = "harden-sim replay: breaker state per candidate";
        std::fs::write(
            &path,
            replay::render_svg(&spans, &scores, source.end(), title),
        )
        .map_err(|e| InputError(format!("cannot write {}: {e}", path.display())))?;
        println!("\nreport written to {}", path.display());
    }
    Ok(())
}

fn fleet_cmd(a: FleetArgs) -> Result<(), InputError> {
    let f = FleetSettings {
        clients: a.clients,
        rate: a.rate,
        duration: a.duration,
        capacity: a.capacity.unwrap_or(1.2 * a.rate * a.clients as f64),
        overload: a.overload,
        factor: a.factor.unwrap_or(match a.overload {
            Overload::Drop => 0.4,
            Overload::Spike => 3.0,
        }),
        overload_start: a.overload_start,
        overload_length: a.overload_length,
        attempt_timeout: a.attempt_timeout,
        total_timeout: a.total_timeout,
        seed: a.seed,
        ..FleetSettings::default()
    };
    let started = Instant::now();
    let runs = fleet::run_all(&f, a.threads)?;
    print!("{}", fleet::report(&f, &runs, started.elapsed()));
    if let Some(path) = a.svg {
        std::fs::write(&path, fleet::render_svg(&f, &runs))
            .map_err(|e| InputError(format!("cannot write {}: {e}", path.display())))?;
        println!("\nreport written to {}", path.display());
    }
    if let Some(path) = a.series {
        std::fs::write(&path, fleet::series_csv(&runs))
            .map_err(|e| InputError(format!("cannot write {}: {e}", path.display())))?;
        println!("series written to {}", path.display());
    }
    Ok(())
}
