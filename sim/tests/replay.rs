//! replay: determinism, a trace whose answer is known by hand, bad traces, the grid's order.

use std::time::Duration;

use harden::circuit_breaker::State;
use harden_sim::engine::StackSettings;
use harden_sim::fleet::{self, FleetSettings};
use harden_sim::input::{self, parse_grid_arg, parse_scenario, parse_trace, Recorded};
use harden_sim::replay::{self, Measure, Objective, Score, Source};

const DEMO: &str = include_str!("../examples/demo-scene1.toml");
const DEMO_STACK: &str = include_str!("../examples/demo-stack.toml");

fn demo_candidates() -> Vec<input::Candidate> {
    input::candidates(Some(DEMO_STACK), &[], &StackSettings::http_preset()).unwrap()
}

#[test]
fn same_seed_same_output() {
    let source = Source::Scenario(parse_scenario(DEMO).unwrap());
    let c = demo_candidates();
    let a = replay::run(&source, &c[0].settings, "a").unwrap();
    let b = replay::run(&source, &c[0].settings, "a").unwrap();
    assert_eq!(a, b);
    assert!(
        !a.transitions.is_empty(),
        "the demo's scene opens the breaker"
    );

    let other = Source::Scenario(parse_scenario(&DEMO.replace("seed = 4", "seed = 5")).unwrap());
    let c2 = replay::run(&other, &c[0].settings, "a").unwrap();
    assert_ne!(
        a.transitions, c2.transitions,
        "another seed draws other faults"
    );
}

#[test]
fn fleet_same_seed_same_output() {
    let f = FleetSettings {
        clients: 200,
        duration: Duration::from_secs(40),
        capacity: 240.0,
        overload_start: Duration::from_secs(10),
        overload_length: Duration::from_secs(10),
        ..FleetSettings::default()
    };
    let a = fleet::run_all(&f, 2).unwrap();
    let b = fleet::run_all(&f, 1).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.calls, x.upstream, &x.goodput, &x.queue, &x.open),
            (y.calls, y.upstream, &y.goodput, &y.queue, &y.open),
            "{}",
            x.name
        );
    }
    let report = fleet::render_svg(&f, &a);
    assert!(report.starts_with("<svg") && report.trim_end().ends_with("</svg>"));
}

/// Ten calls a second, each a 503 after 5 ms.
fn failing_trace(seconds: u32) -> String {
    let mut csv = String::from("timestamp,latency_ms,outcome\n");
    for i in 0..seconds * 10 {
        csv.push_str(&format!("{}.{},5,503\n", 1_700_000_000 + i / 10, i % 10));
    }
    csv
}

#[test]
fn a_failing_minute_opens_after_exactly_volume_threshold_calls() {
    let trace = parse_trace(&failing_trace(60)).unwrap();
    assert_eq!(trace.records.len(), 600);
    assert!(trace.garbage.is_empty());
    let at_volume = |volume: u32| {
        let mut s = StackSettings::http_preset();
        s.volume_threshold = volume;
        s.error_threshold_percentage = 50.0;
        s.rolling_window = Duration::from_secs(30);
        s.reset_timeout = Duration::from_secs(120);
        s.max_attempts = 1;
        s
    };
    for volume in [10, 20, 50] {
        let score = replay::run(&Source::Trace(trace.clone()), &at_volume(volume), "x").unwrap();
        let call = &trace.records[volume as usize - 1];
        // The call arrives in the tick after its timestamp and fails 5 ms later.
        assert_eq!(
            score.transitions.first(),
            Some(&(call.at + 1 + call.latency, State::Open)),
            "volume {volume}"
        );
        assert_eq!(score.failures, u64::from(volume), "volume {volume}");
        assert_eq!(score.shed, 600 - u64::from(volume), "volume {volume}");
        assert_eq!(score.upstream, u64::from(volume));
    }
}

#[test]
fn garbage_lines_are_counted_with_their_numbers() {
    let csv = "timestamp,latency_ms,outcome\n\
               1.0,5,200\n\
               banana,5,200\n\
               1.2,-3,200\n\
               1.3,5,teapot\n\
               1.4,5\n\
               1.5,5,grpc:14\n";
    let trace = parse_trace(csv).unwrap();
    assert_eq!(trace.records.len(), 2);
    let lines: Vec<u64> = trace.garbage.iter().map(|(n, _)| *n).collect();
    assert_eq!(lines, [3, 4, 5, 6]);
    assert_eq!(trace.records[1].outcome, Recorded::Status(503));

    let jsonl = "{\"timestamp\": 1.0, \"latency_ms\": 3, \"outcome\": \"ok\"}\n\
                 not json\n\
                 {\"timestamp\": 2.0, \"latency_s\": 0.5, \"outcome\": \"UNAVAILABLE\"}\n\
                 {\"timestamp\": 3.0, \"outcome\": 200}\n";
    let trace = parse_trace(jsonl).unwrap();
    assert_eq!(trace.records.len(), 2);
    assert_eq!(trace.records[1].latency, 500);
    let lines: Vec<u64> = trace.garbage.iter().map(|(n, _)| *n).collect();
    assert_eq!(lines, [2, 4]);
}

#[test]
fn empty_unsorted_and_headless_traces_are_clear_errors() {
    let empty = parse_trace("timestamp,latency_ms,outcome\n").unwrap_err();
    assert!(empty.0.contains("no readable call"), "{empty}");
    let only_garbage = parse_trace("timestamp,latency_ms,outcome\nx,y,z\n").unwrap_err();
    assert!(only_garbage.0.contains("line 2"), "{only_garbage}");
    let unsorted = parse_trace("timestamp,latency_ms,outcome\n2.0,1,200\n1.0,1,200\n").unwrap_err();
    assert!(
        unsorted.0.contains("line 3") && unsorted.0.contains("sort"),
        "{unsorted}"
    );
    let headless = parse_trace("1.0,1,200\n2.0,1,200\n").unwrap_err();
    assert!(headless.0.contains("header"), "{headless}");
    assert!(parse_trace("").is_err());
}

#[test]
fn bad_scenarios_and_candidates_are_clear_errors() {
    let e =
        parse_scenario("rate = 10\n[[phase]]\nduration = \"1s\"\nstatus_rate = 1.5\n").unwrap_err();
    assert!(e.0.contains("status") && e.0.contains("1.5"), "{e}");
    let e = parse_scenario("rate = 10\n").unwrap_err();
    assert!(e.0.contains("phase"), "{e}");
    let base = StackSettings::http_preset();
    let e = input::candidates(Some("[grid]\nvolume = [1, 2]\n"), &[], &base).unwrap_err();
    assert!(e.0.contains("volume_threshold"), "known names listed: {e}");
    let e = input::candidates(
        Some("[grid]\nerror_threshold_percentage = [0]\n"),
        &[],
        &base,
    )
    .unwrap_err();
    assert!(e.0.contains("error_threshold_percentage"), "{e}");
    assert!(parse_grid_arg("volume_threshold").is_err());
}

#[test]
fn the_grid_is_laid_out_in_settings_order_last_fastest() {
    let base = StackSettings::http_preset();
    // Given in the other order on the command line.
    let grid = [
        parse_grid_arg("volume_threshold=10,20").unwrap(),
        parse_grid_arg("error_threshold_percentage=25,50").unwrap(),
    ];
    let c = input::candidates(None, &grid, &base).unwrap();
    let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "err%=25 vol=10",
            "err%=25 vol=20",
            "err%=50 vol=10",
            "err%=50 vol=20"
        ]
    );
    assert_eq!(c[1].settings.error_threshold_percentage, 25.0);
    assert_eq!(c[1].settings.volume_threshold, 20);
    let file = "[grid]\nerror_threshold_percentage = [25, 50]\nvolume_threshold = [10, 20]\n";
    let from_file = input::candidates(Some(file), &[], &base).unwrap();
    let file_names: Vec<&str> = from_file.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(file_names, names);
}

fn score(name: &str, failures: u64, open: Option<f64>, missed: u32, false_trips: u32) -> Score {
    Score {
        name: name.into(),
        calls: 100,
        answers: 100 - failures,
        failures,
        shed: 0,
        upstream: 100,
        open_after: open,
        missed,
        close_after: Some(1.0),
        false_trips,
        false_closes: 0,
        p50: 1.0,
        p99: 2.0,
        transitions: Vec::new(),
    }
}

#[test]
fn ranking_keeps_constraints_then_the_measure_then_the_candidates_order() {
    let scores = [
        score("slow to open", 1, Some(9.0), 0, 0),
        score("trips falsely", 2, Some(1.0), 0, 1),
        score("tie b", 5, Some(2.0), 0, 0),
        score("best", 3, Some(2.0), 0, 0),
        score("tie a", 5, Some(2.0), 0, 0),
        score("misses one", 0, Some(1.0), 1, 0),
    ];
    let objective = Objective {
        open_within: Duration::from_secs(5),
        max_false_trips: 0,
        minimize: Measure::Failures,
    };
    assert_eq!(replay::rank(&scores, &objective), [3, 2, 4]);
    let report = replay::report(&scores, &objective);
    assert!(report.contains("recommended: #4 best"), "{report}");
    assert!(
        report.contains("fewest failures reaching callers       #6 misses one"),
        "{report}"
    );
}

#[test]
fn the_example_trace_scores_alike_on_one_thread_or_two_and_draws_a_band_per_candidate() {
    let trace = parse_trace(include_str!("../examples/trace.csv")).unwrap();
    assert_eq!(
        trace.garbage.len(),
        2,
        "the example keeps two garbage lines"
    );
    let source = Source::Trace(trace);
    let grid = [parse_grid_arg("volume_threshold=10,20").unwrap()];
    let c = input::candidates(None, &grid, &StackSettings::http_preset()).unwrap();
    let one = replay::run_all(&source, &c, 1).unwrap();
    let two = replay::run_all(&source, &c, 2).unwrap();
    assert_eq!(one, two);
    assert_eq!(source.spans().iter().filter(|s| !s.healthy).count(), 1);
    let svg = replay::render_svg(&source.spans(), &one, source.end(), "t");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for s in &one {
        assert!(svg.contains(&s.name), "a row for {}", s.name);
    }
}
