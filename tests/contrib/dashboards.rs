//! The Grafana dashboard and the Prometheus alerts in `contrib/` query only series that exist.
//!
//! Every `harden_*` identifier in every query (histogram suffixes `_bucket`, `_sum`, `_count`
//! stripped) must be a name in [`harden::metrics::names::ALL`], so renaming a series without
//! updating `contrib/` fails here.

use std::collections::BTreeSet;
use std::path::Path;

use harden::metrics::{labels, names};
use serde_json::Value;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `harden_[a-z_]+` identifier in `query`.
fn identifiers(query: &str) -> Vec<&str> {
    let bytes = query.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(at) = query[i..].find("harden_") {
        let start = i + at;
        let preceded_by_ident =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + "harden_".len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded_by_ident {
            found.push(&query[start..end]);
        }
        i = end;
    }
    found
}

/// The series an identifier refers to: itself, or a histogram's `_bucket`/`_sum`/`_count`.
fn series(identifier: &str) -> &str {
    if names::ALL.contains(&identifier) {
        return identifier;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = identifier.strip_suffix(suffix) {
            return base;
        }
    }
    identifier
}

/// Assert every identifier in `query` names a known series; return how many it named.
fn check_query(place: &str, query: &str, seen: &mut BTreeSet<String>) -> usize {
    let ids = identifiers(query);
    for id in &ids {
        let name = series(id);
        assert!(
            names::ALL.contains(&name),
            "{place}: `{id}` is not a series in harden::metrics::names::ALL\nquery: {query}"
        );
        seen.insert(name.to_string());
    }
    ids.len()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("dashboard has panels")
        .iter()
        .collect();
    while let Some(panel) = stack.pop() {
        if let Some(children) = panel["panels"].as_array() {
            stack.extend(children);
        }
        out.push(panel);
    }
    out
}

#[test]
fn identifiers_are_found_and_suffixes_stripped() {
    let q =
        "histogram_quantile(0.99, sum by (le) (rate(harden_call_duration_seconds_bucket[5m]))) \
             / my_harden_thing + harden_timeouts_total";
    assert_eq!(
        identifiers(q),
        [
            "harden_call_duration_seconds_bucket",
            "harden_timeouts_total"
        ]
    );
    assert_eq!(
        series("harden_call_duration_seconds_bucket"),
        names::CALL_DURATION
    );
    assert_eq!(
        series("harden_call_duration_seconds_count"),
        names::CALL_DURATION
    );
    assert_eq!(series("harden_renamed_total"), "harden_renamed_total");
}

#[test]
fn dashboard_queries_name_only_existing_series() {
    let dashboard: Value =
        serde_json::from_str(&read("contrib/grafana/harden.json")).expect("dashboard is JSON");
    let mut seen = BTreeSet::new();

    let mut graphs = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        if panel["type"] == "row" {
            continue;
        }
        graphs += 1;
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel `{title}` has no query");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel `{title}`: a target without `expr`"));
            let named = check_query(&format!("panel `{title}`"), expr, &mut seen);
            assert!(
                named > 0,
                "panel `{title}`: query names no harden series: {expr}"
            );
        }
    }
    assert!(graphs >= 8, "only {graphs} panels");

    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    let breaker = variables
        .iter()
        .find(|v| v["name"] == "breaker")
        .expect("a `breaker` variable");
    let definition = breaker["definition"].as_str().expect("breaker definition");
    assert_eq!(
        definition,
        format!("label_values({}, breaker)", names::CIRCUIT_BREAKER_STATE)
    );
    for variable in variables {
        let query = match &variable["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            _ => String::new(),
        };
        check_query("templating", &query, &mut seen);
    }

    // The dashboard shows every series the crate exports.
    let missing: Vec<_> = names::ALL.iter().filter(|n| !seen.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "series not on the dashboard: {missing:?}"
    );
}

#[test]
fn dashboard_uses_the_datasource_variable_and_fixed_label_values() {
    let text = read("contrib/grafana/harden.json");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    for panel in panels(&dashboard) {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel `{}`",
            panel["title"]
        );
    }
    // Label values used in queries are the crate's fixed ones.
    for state in ["open", "half_open", "forced_open", "disabled"] {
        assert!(labels::STATES.contains(&state));
        assert!(text.contains(&format!(r#"state=\"{state}\""#)), "{state}");
    }
    for outcome in ["failure", "success"] {
        assert!(labels::CALL_OUTCOMES.contains(&outcome));
    }
}

/// The `expr:` of every rule in a Prometheus rules file; block scalars (`|`, `>`) included.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !rest.starts_with('|') && !rest.starts_with('>') {
            exprs.push(rest.to_string());
            continue;
        }
        let key_indent = line.len() - trimmed.len();
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let indent = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && indent <= key_indent {
                break;
            }
            block.push_str(next.trim());
            block.push('\n');
            lines.next();
        }
        exprs.push(block);
    }
    exprs
}

#[test]
fn alert_rules_name_only_existing_series() {
    let yaml = read("contrib/prometheus/alerts.yml");
    let exprs = rule_exprs(&yaml);
    let alerts = yaml
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(exprs.len(), alerts, "every alert has one expr");
    assert!(alerts >= 4, "only {alerts} alerts");

    let mut seen = BTreeSet::new();
    for expr in &exprs {
        let named = check_query("alerts.yml", expr, &mut seen);
        assert!(named > 0, "alert query names no harden series: {expr}");
    }
    for needed in [
        names::CIRCUIT_BREAKER_STATE,
        names::CIRCUIT_BREAKER_CALLS,
        names::RETRY_BUDGET_EXHAUSTED,
        names::CALL_DURATION,
    ] {
        assert!(seen.contains(needed), "no alert on {needed}");
    }
    for required in ["severity:", "summary:", "description:"] {
        let n = yaml
            .lines()
            .filter(|l| l.trim_start().starts_with(required))
            .count();
        assert_eq!(n, alerts, "every alert has `{required}`");
    }
}

#[test]
fn renamed_series_are_caught() {
    // The check itself: a query on a series that does not exist fails.
    let result = std::panic::catch_unwind(|| {
        check_query(
            "test",
            "rate(harden_circuit_breaker_call_total[5m])",
            &mut BTreeSet::new(),
        )
    });
    assert!(result.is_err());
}
