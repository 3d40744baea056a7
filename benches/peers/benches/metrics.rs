//! The breaker's per-call cost with metrics: feature off, feature on without a recorder, and
//! feature on with a real `metrics-exporter-prometheus` recorder, each next to a bare
//! `tower::service_fn` measured in the same run.
//!
//! A cargo feature is fixed per build, so "off" and "on" are two runs of this one file:
//!
//! ```text
//! cargo bench -p harden-peers --bench metrics && cargo bench -p harden-peers --bench metrics --features metrics
//! ```
//!
//! Compare each row's overhead over its own run's baseline.

#[path = "../../rows/harden_rows.rs"]
mod harden_rows;
#[path = "../../harness/mod.rs"]
mod harness;

use harness::*;
use tower::Layer;

fn main() {
    let cfg = Config::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    header("metrics", &cfg);

    let mut g = Group::new(
        if cfg!(feature = "metrics") {
            "Breaker, closed success, harden built with feature `metrics`"
        } else {
            "Breaker, closed success, harden built without feature `metrics`"
        },
        &cfg,
    );
    g.baseline(
        "baseline: bare tower::service_fn",
        "poll_ready + call + poll once",
        Expect::AllOk,
        tower_body(bare(0), classify_bare),
    );
    #[cfg(not(feature = "metrics"))]
    g.row(
        "closed success: harden, metrics feature off",
        "tower layer",
        Expect::AllOk,
        tower_body(
            harden_rows::breaker(RESET).layer().layer(bare(0)),
            harden_rows::classify,
        ),
    );
    #[cfg(feature = "metrics")]
    {
        g.row(
            "closed success: harden, metrics on, no recorder installed",
            "tower layer; handles are no-ops, the latency clock is still read",
            Expect::AllOk,
            tower_body(
                harden_rows::breaker(RESET).layer().layer(bare(0)),
                harden_rows::classify,
            ),
        );
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    harden::metrics::names::CALL_DURATION.to_owned(),
                ),
                &[0.001, 0.01, 0.1, 1.0],
            )
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        let (timed, untimed) = metrics::with_local_recorder(&recorder, || {
            let untimed = harden::circuit_breaker::CircuitBreaker::builder()
                .name("bench-untimed")
                .error_threshold_percentage(THRESHOLD)
                .volume_threshold(VOLUME)
                .rolling_window(WINDOW, BUCKETS)
                .reset_timeout(RESET)
                .record_latency(false)
                .build()
                .expect("bench breaker config");
            (
                harden_rows::breaker(RESET).layer().layer(bare(0)),
                untimed.layer().layer(bare(0)),
            )
        });
        g.row(
            "closed success: harden, metrics on, Prometheus recorder",
            "tower layer; calls counter, duration histogram",
            Expect::AllOk,
            tower_body(timed, harden_rows::classify),
        );
        g.row(
            "closed success: harden, metrics on, Prometheus recorder, record_latency(false)",
            "tower layer; calls counter only, no precise clock read",
            Expect::AllOk,
            tower_body(untimed, harden_rows::classify),
        );
        g.run();
        let rendered = handle.render();
        assert!(
            rendered.contains(
                "harden_circuit_breaker_calls_total{breaker=\"bench\",outcome=\"success\"}"
            ),
            "the recorder saw the calls:\n{rendered}"
        );
        println!("{}", g.table());
        return;
    }
    #[allow(unreachable_code)]
    {
        g.run();
        println!("{}", g.table());
    }
}
