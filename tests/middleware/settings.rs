//! Settings as data: every settings struct reads from TOML, YAML, JSON and environment variables,
//! refuses unknown keys, names the full path of an invalid setting, and never panics.

use std::time::Duration;

use figment::providers::{Env, Format, Json, Serialized, Toml, Yaml};
use figment::Figment;
use harden::circuit_breaker::{CircuitBreaker, CircuitBreakerSettings};
use harden::http::HttpLayerSettings;
use harden::retry::{BackoffShape, Jitter, RetrySettings};
use harden::settings::ServiceSettings;
use proptest::prelude::*;

const SERVICE_TOML: &str = r#"
[breakers.payments]
error_threshold_percentage = 25.0
volume_threshold = 50
rolling_window = "30s"
rolling_window_buckets = 30
reset_timeout = "10s"
slow_call = { duration_threshold = "2s", slow_rate_percentage = 50.0 }

[breakers.search]
count_window = 40

[retries.payments]
max_attempts = 5
backoff = { shape = "linear", initial_delay = "100ms", step = "50ms", jitter = "equal", max_delay = "2s" }
budget = { enabled = false }

[bulkheads.reports]
max_concurrent = 32

[timeouts.reports]
timeout = "1500ms"

[client]
total_timeout = "20s"
breaker = { reset_timeout = "3s" }
bulkhead = 200

[server.shutdown]
drain_delay = "1s"
deadline = "25s"
exempt_paths = ["/live", "/metrics"]

[server.health]
ready_path = "/ready"

[chaos.demo]
error_rate = 0.1
latency = { uniform = { min = "10ms", max = "50ms" } }
latency_rate = 0.5
"#;

fn from_toml(text: &str) -> Result<ServiceSettings, Box<figment::Error>> {
    Figment::new()
        .merge(Toml::string(text))
        .extract()
        .map_err(Box::new)
}

#[test]
fn a_whole_service_reads_from_toml() {
    let s = from_toml(SERVICE_TOML).unwrap();
    s.validate().unwrap();

    let payments = &s.breakers["payments"];
    assert_eq!(payments.error_threshold_percentage, 25.0);
    assert_eq!(payments.rolling_window, Duration::from_secs(30));
    assert_eq!(
        payments.slow_call.unwrap().duration_threshold,
        Duration::from_secs(2)
    );
    // A missing key keeps the builder's default.
    assert_eq!(
        payments.half_open_max_calls,
        CircuitBreakerSettings::default().half_open_max_calls
    );
    let breakers = s.breakers().unwrap();
    assert_eq!(breakers["payments"].name(), "payments");
    assert_eq!(breakers["payments"].settings(), *payments);
    assert_eq!(breakers["search"].settings().count_window, Some(40));

    let retry = s.retry("payments").unwrap().unwrap();
    assert_eq!(retry.max_attempts(), 5);
    assert!(retry.budget().is_none());
    assert_eq!(s.retries["payments"].backoff.shape, BackoffShape::Linear);
    assert_eq!(s.retries["payments"].backoff.jitter, Jitter::Equal);
    assert_eq!(s.bulkhead("reports").unwrap().unwrap().max_concurrent(), 32);
    assert_eq!(s.timeouts["reports"].timeout, Duration::from_millis(1500));

    // The client's nested tables start from the preset's defaults, not the breaker's own.
    let preset = HttpLayerSettings::default();
    assert_eq!(s.client.breaker.reset_timeout, Duration::from_secs(3));
    assert_eq!(
        s.client.breaker.error_threshold_percentage,
        preset.breaker.error_threshold_percentage
    );
    assert_eq!(s.client.total_timeout, Some(Duration::from_secs(20)));
    assert_eq!(s.client.bulkhead, Some(200));
    let client = s.client.build("upstream").unwrap();
    assert_eq!(
        client.breaker().settings().reset_timeout,
        Duration::from_secs(3)
    );

    assert_eq!(s.server.shutdown.exempt_paths, ["/live", "/metrics"]);
    assert_eq!(s.server.health.ready_path, "/ready");
    assert_eq!(s.chaos["demo"].error_rate, 0.1);
}

#[test]
fn yaml_json_and_the_environment_give_the_same_settings() {
    let yaml = r#"
breakers:
  payments:
    error_threshold_percentage: 25.0
    reset_timeout: 10s
"#;
    let json = r#"{ "breakers": { "payments": { "error_threshold_percentage": 25.0, "reset_timeout": "10s" } } }"#;
    let a: ServiceSettings = Figment::new().merge(Yaml::string(yaml)).extract().unwrap();
    let b: ServiceSettings = Figment::new().merge(Json::string(json)).extract().unwrap();
    assert_eq!(a, b);

    // A prefix no other test reads: the process environment is shared by the test threads.
    std::env::set_var(
        "HARDEN_SETTINGS_TEST_BREAKERS.PAYMENTS.ERROR_THRESHOLD_PERCENTAGE",
        "25",
    );
    std::env::set_var(
        "HARDEN_SETTINGS_TEST_BREAKERS.PAYMENTS.RESET_TIMEOUT",
        "10s",
    );
    let c: ServiceSettings = Figment::new()
        .merge(Env::prefixed("HARDEN_SETTINGS_TEST_").split("."))
        .extract()
        .unwrap();
    assert_eq!(a, c);
}

#[test]
fn settings_round_trip_through_every_format() {
    let s = from_toml(SERVICE_TOML).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    let back: ServiceSettings = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    // Durations are written as humans write them.
    assert!(json.contains(r#""rolling_window":"30s""#), "{json}");
    let again: ServiceSettings = Figment::new()
        .merge(Serialized::defaults(&s))
        .extract()
        .unwrap();
    assert_eq!(again, s);
}

#[test]
fn unknown_keys_are_refused() {
    let err = from_toml("[breakers.payments]\nerror_threshold = 25.0\n").unwrap_err();
    assert!(err.to_string().contains("error_threshold"), "{err}");
    let err = from_toml("[client.breaker]\nreset = \"1s\"\n").unwrap_err();
    assert!(err.to_string().contains("reset"), "{err}");
    assert!(from_toml("[server]\nport = 8080\n").is_err());
    assert!(from_toml("[retries.a.backoff]\nfactor = 2.0\n").is_err());
}

#[test]
fn a_bad_duration_is_a_read_error_not_a_panic() {
    let err = from_toml("[breakers.payments]\nreset_timeout = \"soon\"\n").unwrap_err();
    assert!(err.to_string().contains("reset_timeout"), "{err}");
}

#[test]
fn an_invalid_setting_names_its_full_path() {
    let s = from_toml("[breakers.payments]\nerror_threshold_percentage = 150.0\n").unwrap();
    let err = s.validate().unwrap_err();
    assert_eq!(err.path(), "breakers.payments.error_threshold_percentage");
    assert_eq!(
        err.to_string(),
        "invalid `breakers.payments.error_threshold_percentage`: 150 is outside (0, 100]"
    );
    assert_eq!(s.breakers().unwrap_err(), err);

    let cases = [
        ("[retries.a]\nmax_attempts = 0\n", "retries.a.max_attempts"),
        (
            "[retries.a.budget]\nretry_ratio = 20.0\n",
            "retries.a.budget.retry_ratio",
        ),
        (
            "[retries.a.backoff]\nmultiplier = 0.5\n",
            "retries.a.backoff.multiplier",
        ),
        (
            "[bulkheads.b]\nmax_concurrent = 0\n",
            "bulkheads.b.max_concurrent",
        ),
        (
            "[client.breaker]\nvolume_threshold = 0\n",
            "client.breaker.volume_threshold",
        ),
        (
            "[server.shutdown]\ndeadline = \"0s\"\n",
            "server.shutdown.deadline",
        ),
        (
            "[server.health]\nlive_path = \"live\"\n",
            "server.health.live_path",
        ),
        ("[chaos.c]\nerror_rate = 3.0\n", "chaos.c.error_rate"),
    ];
    for (text, path) in cases {
        let err = from_toml(text).unwrap().validate().unwrap_err();
        assert_eq!(err.path(), path, "{text}");
    }
}

#[test]
fn single_settings_convert_to_their_middleware() {
    let breaker = CircuitBreaker::try_from(CircuitBreakerSettings::default()).unwrap();
    assert_eq!(breaker.settings(), CircuitBreakerSettings::default());
    let policy = harden::retry::RetryPolicy::try_from(RetrySettings::default()).unwrap();
    assert_eq!(RetrySettings::from(&policy), RetrySettings::default());
}

/// Any JSON document, with keys drawn mostly from the settings' own names so that the search
/// reaches deep into the shape.
fn document() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let key = prop::sample::select(vec![
        "breakers",
        "retries",
        "bulkheads",
        "timeouts",
        "client",
        "server",
        "chaos",
        "payments",
        "shutdown",
        "health",
        "breaker",
        "backoff",
        "budget",
        "error_threshold_percentage",
        "volume_threshold",
        "rolling_window",
        "rolling_window_buckets",
        "count_window",
        "reset_timeout",
        "half_open_max_calls",
        "consecutive_failures",
        "slow_call",
        "duration_threshold",
        "slow_rate_percentage",
        "open_backoff",
        "multiplier",
        "max",
        "max_probe_duration",
        "max_attempts",
        "total_timeout",
        "attempt_timeout",
        "shape",
        "initial_delay",
        "step",
        "jitter",
        "max_delay",
        "enabled",
        "ttl",
        "retry_ratio",
        "min_retries_per_sec",
        "max_concurrent",
        "timeout",
        "bulkhead",
        "drain_delay",
        "deadline",
        "retry_after",
        "exempt_paths",
        "live_path",
        "ready_path",
        "rss_limit",
        "error_rate",
        "latency",
        "latency_rate",
        "status",
        "status_rate",
        "uniform",
        "min",
        "fixed",
        "seed",
        "zzz",
    ])
    .prop_map(str::to_owned);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u32..2000).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-1.0f64..200.0).prop_map(Value::from),
        prop::sample::select(vec![
            "0s",
            "1ms",
            "250ms",
            "10s",
            "2h",
            "1000000000000d",
            "soon",
            "-1s",
            "/",
            "/x",
            "full",
            "none",
            "exponential",
            "linear",
            "",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_documents_never_panic(doc in document()) {
        if let Ok(s) = serde_json::from_value::<ServiceSettings>(doc) {
            let valid = s.validate();
            let built = s.breakers();
            // What validates also builds, and the error is the same.
            match (&valid, &built) {
                (Ok(()), Err(e)) => prop_assert!(false, "validated, then failed to build: {e}"),
                (Err(_), Ok(_)) if s.breakers.values().any(|b| b.validate().is_err()) => {
                    prop_assert!(false, "an invalid breaker was built")
                }
                _ => {}
            }
            if valid.is_ok() {
                let _client = s.client.build("client").map_err(|e| TestCaseError::fail(e.to_string()))?;
                for name in s.retries.keys() {
                    prop_assert!(s.retry(name).unwrap().is_ok());
                }
            }
            // Whatever was read writes back and reads the same.
            let text = serde_json::to_string(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: ServiceSettings = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(back, s);
        }
    }
}
