//! Liveness and readiness endpoints in NestJS terminus' JSON shape (feature `axum`).
//!
//! [`Health::router`] is an axum [`Router`] with `GET /health/live` and `GET /health/ready` to
//! merge into an application. Both answer `{"status":..,"info":{..},"error":{..},"details":{..}}`
//! exactly as `@nestjs/terminus` does: each indicator is `{"status":"up"|"down", ..data}`, `info`
//! holds the ones up, `error` the ones down, `details` all of them; 200 for `"ok"`, 503 for
//! `"error"` and `"shutting_down"`.
//!
//! - **Liveness** checks only the process: with [`rss_limit`](HealthBuilder::rss_limit), the resident
//!   set size (`VmRSS` from `/proc/self/status`; reported up with a note where it cannot be
//!   read) against a limit, as indicator `memory_rss` — PM2's `max_memory_restart` done the
//!   Kubernetes way: the kubelet restarts a pod whose liveness fails. Liveness stays 200 during
//!   shutdown (a restart then would cut the drain).
//! - **Readiness**: 503 `{"status":"shutting_down",..}` as soon as the [shutdown](crate::shutdown)
//!   sequence is triggered (no check runs then); otherwise every [check](HealthBuilder::check) runs
//!   concurrently, each on its own task with its own timeout ([`DEFAULT_CHECK_TIMEOUT`], like
//!   terminus' pings): a check that fails is down with its error as `message`, one that hangs is
//!   down with `timed out after N ms` and never hangs the probe, one that panics is down too.
//!   Breakers are reported as `{"status":..,"state":"closed"}`; Open and forced-open are down
//!   (Open with `retryAfter`, seconds to the next probe, rounded up), and an Open breaker past its
//!   reset timeout is `{"status":"up","state":"open","readyToProbe":true}`: the next call probes,
//!   so it says nothing bad yet. A [critical](HealthBuilder::critical_breaker) breaker that is down
//!   makes readiness fail; an [informational](HealthBuilder::breaker) one (the default) appears in
//!   `details` only and never changes the status — a pod that goes unready because a shared
//!   upstream failed takes the whole service down with it.
//!
//! Indicators appear in the order they were added (checks first, then breakers); the JSON is
//! written here in that order rather than through a map, so the bodies are stable byte for byte.
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | [`live_path`](HealthBuilder::live_path) | [`DEFAULT_LIVE_PATH`] = `/health/live` |
//! | [`ready_path`](HealthBuilder::ready_path) | [`DEFAULT_READY_PATH`] = `/health/ready` |
//! | check timeout ([`check`](HealthBuilder::check)) | [`DEFAULT_CHECK_TIMEOUT`] = 1 s |
//! | [`rss_limit`](HealthBuilder::rss_limit) | none |
//! | breakers | informational ([`breaker`](HealthBuilder::breaker)) |
//!
//! # Example
//!
//! Default use: both probes, nothing but the process to check.
//!
//! ```
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use harden::health::Health;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), harden::BoxError> {
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(Health::builder().build()?.router());
//! let response = app.oneshot(Request::get("/health/ready").body(Body::empty())?).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! Customised: a database ping with its own timeout, a critical and an informational breaker,
//! an RSS limit, and readiness tied to the shutdown sequence.
//!
//! ```
//! use std::time::Duration;
//! use harden::circuit_breaker::CircuitBreaker;
//! use harden::health::Health;
//! use harden::shutdown::Shutdown;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), harden::BoxError> {
//! let shutdown = Shutdown::builder().build()?;
//! let database = CircuitBreaker::builder().name("database").build()?;
//! let geo = CircuitBreaker::builder().name("geo").build()?;
//! let health = Health::builder()
//!     .check_with_timeout("db", Duration::from_millis(300), || async { Ok(()) })
//!     .critical_breaker(&database)
//!     .breaker(&geo)
//!     .rss_limit(2 << 30)
//!     .shutdown(&shutdown.handle())
//!     .build()?;
//! let (status, body) = health.readiness().await;
//! assert_eq!(status, 200);
//! assert!(body.starts_with(r#"{"status":"ok","info":{"db":{"status":"up"},"database":"#));
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! [`HealthBuilder::build`] fails with [`ConfigError`] for a path that does not start with `/` (or
//! live and ready on the same path), a zero check timeout, a zero RSS limit, or two indicators
//! with the same name.
//!
//! Unlike terminus, checks are cut at their timeout on their own task (a hung check cannot hold
//! the probe) and breakers are first-class indicators; unlike tower-http there is no health
//! middleware to compare with.

mod settings;
pub use settings::HealthSettings;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::circuit_breaker::{CircuitBreaker, State};
use crate::shutdown::ShutdownHandle;
use crate::{BoxError, ConfigError};

pub use crate::http::{DEFAULT_LIVE_PATH, DEFAULT_READY_PATH};
/// Default timeout of each readiness check: 1 s, like terminus' pings.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

#[derive(Clone)]
struct Check {
    name: String,
    timeout: Duration,
    run: CheckFn,
}

#[derive(Clone)]
struct BreakerIndicator {
    breaker: CircuitBreaker,
    critical: bool,
}

/// Configures a [`Health`]; see the [defaults](self#defaults).
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct HealthBuilder {
    live_path: String,
    ready_path: String,
    checks: Vec<Check>,
    breakers: Vec<BreakerIndicator>,
    rss_limit: Option<u64>,
    shutdown: Option<ShutdownHandle>,
}

impl fmt::Debug for HealthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthBuilder")
            .field("live_path", &self.live_path)
            .field("ready_path", &self.ready_path)
            .field(
                "checks",
                &self.checks.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .field("breakers", &self.breakers.len())
            .field("rss_limit", &self.rss_limit)
            .finish_non_exhaustive()
    }
}

impl Default for HealthBuilder {
    fn default() -> Self {
        HealthBuilder::new()
    }
}

impl HealthBuilder {
    /// Every setting at its default: both probes, no checks, no breakers.
    pub fn new() -> Self {
        HealthBuilder {
            live_path: DEFAULT_LIVE_PATH.to_owned(),
            ready_path: DEFAULT_READY_PATH.to_owned(),
            checks: Vec::new(),
            breakers: Vec::new(),
            rss_limit: None,
            shutdown: None,
        }
    }

    /// The liveness path.
    pub fn live_path(mut self, path: impl Into<String>) -> Self {
        self.live_path = path.into();
        self
    }

    /// The readiness path.
    pub fn ready_path(mut self, path: impl Into<String>) -> Self {
        self.ready_path = path.into();
        self
    }

    /// A readiness check named `name` with the default timeout: `Ok` is up, an error is down
    /// with its message.
    pub fn check<F, Fut>(self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.check_with_timeout(name, DEFAULT_CHECK_TIMEOUT, check)
    }

    /// A readiness check with its own timeout.
    pub fn check_with_timeout<F, Fut>(
        mut self,
        name: impl Into<String>,
        timeout: Duration,
        check: F,
    ) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.checks.push(Check {
            name: name.into(),
            timeout,
            run: Arc::new(move || Box::pin(check())),
        });
        self
    }

    /// An informational breaker: reported in `details` under its name, never changes the status.
    pub fn breaker(mut self, breaker: &CircuitBreaker) -> Self {
        self.breakers.push(BreakerIndicator {
            breaker: breaker.clone(),
            critical: false,
        });
        self
    }

    /// A critical breaker: down (Open before its reset timeout, or forced open) makes readiness 503.
    pub fn critical_breaker(mut self, breaker: &CircuitBreaker) -> Self {
        self.breakers.push(BreakerIndicator {
            breaker: breaker.clone(),
            critical: true,
        });
        self
    }

    /// Liveness fails (503) when the resident set size exceeds `bytes`.
    pub fn rss_limit(mut self, bytes: u64) -> Self {
        self.rss_limit = Some(bytes);
        self
    }

    /// Readiness reports `shutting_down` once this shutdown sequence is triggered.
    pub fn shutdown(mut self, handle: &ShutdownHandle) -> Self {
        self.shutdown = Some(handle.clone());
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] as listed in the [module docs](self#errors).
    pub fn build(self) -> Result<Health, ConfigError> {
        for (field, path) in [
            ("live_path", &self.live_path),
            ("ready_path", &self.ready_path),
        ] {
            if !path.starts_with('/') {
                return Err(ConfigError::new(
                    field,
                    format!("{path:?} does not start with `/`"),
                ));
            }
        }
        if self.live_path == self.ready_path {
            return Err(ConfigError::new(
                "ready_path",
                format!("{:?} is also the liveness path", self.ready_path),
            ));
        }
        if let Some(check) = self.checks.iter().find(|c| c.timeout.is_zero()) {
            return Err(ConfigError::new(
                "check_with_timeout",
                format!("check {:?}: a timeout of 0 is outside (0, ∞)", check.name),
            ));
        }
        if self.rss_limit == Some(0) {
            return Err(ConfigError::new("rss_limit", "0 is outside [1, u64::MAX]"));
        }
        // Each name with what it is, in the order added; the second of a pair is the culprit.
        let names: Vec<(&str, &str)> = self
            .checks
            .iter()
            .map(|c| ("check", c.name.as_str()))
            .chain(self.breakers.iter().map(|b| {
                let kind = if b.critical {
                    "critical_breaker"
                } else {
                    "breaker"
                };
                (kind, b.breaker.name())
            }))
            .collect();
        for (i, (kind, name)) in names.iter().enumerate() {
            if let Some((first, _)) = names[..i].iter().find(|(_, n)| n == name) {
                return Err(ConfigError::new(
                    kind,
                    format!("indicator name {name:?} is already used by a {first}"),
                ));
            }
        }
        Ok(Health {
            inner: Arc::new(self),
        })
    }
}

/// Liveness and readiness; a cheap `Clone` handle. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthBuilder>,
}

impl Health {
    /// A builder with every setting at its default.
    pub fn builder() -> HealthBuilder {
        HealthBuilder::new()
    }

    /// A router with the two probes, to `merge` into the application's.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let live = self.clone();
        let ready = self.clone();
        Router::new()
            .route(
                &self.inner.live_path,
                get(move || async move { json(live.liveness().await) }),
            )
            .route(
                &self.inner.ready_path,
                get(move || async move { json(ready.readiness().await) }),
            )
    }

    /// The liveness answer: status code and JSON body.
    pub async fn liveness(&self) -> (StatusCode, String) {
        let mut indicators = Vec::new();
        if let Some(limit) = self.inner.rss_limit {
            indicators.push(rss_indicator(limit, read_rss()));
        }
        summarize(&indicators)
    }

    /// The readiness answer: status code and JSON body.
    pub async fn readiness(&self) -> (StatusCode, String) {
        if self
            .inner
            .shutdown
            .as_ref()
            .is_some_and(ShutdownHandle::is_shutting_down)
        {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"shutting_down","info":{},"error":{},"details":{}}"#.to_owned(),
            );
        }
        // Each check on its own task: concurrent, and a panic or a hang stays in its task.
        let running: Vec<_> = self
            .inner
            .checks
            .iter()
            .map(|check| {
                let run = Arc::clone(&check.run);
                let timeout = check.timeout;
                tokio::spawn(async move { tokio::time::timeout(timeout, run()).await })
            })
            .collect();
        let mut indicators = Vec::with_capacity(running.len() + self.inner.breakers.len());
        for (check, task) in self.inner.checks.iter().zip(running) {
            let down = match task.await {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(err))) => Some(err.to_string()),
                Ok(Err(_elapsed)) => {
                    Some(format!("timed out after {} ms", check.timeout.as_millis()))
                }
                Err(join) if join.is_panic() => Some("check panicked".to_owned()),
                Err(_) => Some("check was cancelled".to_owned()),
            };
            let mut fields = Vec::new();
            let up = down.is_none();
            if let Some(message) = down {
                fields.push(("message", json_string(&message)));
            }
            indicators.push(Indicator {
                name: check.name.clone(),
                up,
                counts: true,
                fields,
            });
        }
        for b in &self.inner.breakers {
            indicators.push(breaker_indicator(&b.breaker, b.critical));
        }
        summarize(&indicators)
    }
}

struct Indicator {
    name: String,
    up: bool,
    /// Whether it is in `info`/`error` and decides the status (informational breakers are not).
    counts: bool,
    /// Extra fields after `status`, values already JSON.
    fields: Vec<(&'static str, String)>,
}

impl Indicator {
    fn json(&self) -> String {
        let mut out = format!(r#"{{"status":"{}""#, if self.up { "up" } else { "down" });
        for (key, value) in &self.fields {
            out.push_str(&format!(r#","{key}":{value}"#));
        }
        out.push('}');
        out
    }
}

fn breaker_indicator(breaker: &CircuitBreaker, critical: bool) -> Indicator {
    let state = breaker.state();
    let mut fields = vec![("state", json_string(state.as_str()))];
    let up = match state {
        State::Open => match breaker.next_probe_in() {
            Some(wait) if !wait.is_zero() => {
                fields.push(("retryAfter", crate::http::ceil_secs(wait).to_string()));
                false
            }
            // The open period is over: the next call probes.
            _ => {
                fields.push(("readyToProbe", "true".to_owned()));
                true
            }
        },
        State::ForcedOpen => false,
        _ => true,
    };
    Indicator {
        name: breaker.name().to_owned(),
        up,
        counts: critical,
        fields,
    }
}

fn rss_indicator(limit: u64, rss: Option<u64>) -> Indicator {
    let (up, fields) = match rss {
        Some(rss) => (
            rss <= limit,
            vec![("rss", rss.to_string()), ("limit", limit.to_string())],
        ),
        // Unknown is not a reason to restart the pod.
        None => (
            true,
            vec![
                ("message", json_string("rss not available on this platform")),
                ("limit", limit.to_string()),
            ],
        ),
    };
    Indicator {
        name: "memory_rss".to_owned(),
        up,
        counts: true,
        fields,
    }
}

/// The resident set size in bytes (`VmRSS` of `/proc/self/status`, in KiB there).
fn read_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn summarize(indicators: &[Indicator]) -> (StatusCode, String) {
    let ok = indicators.iter().all(|i| i.up || !i.counts);
    let section = |pick: &dyn Fn(&Indicator) -> bool| {
        let entries: Vec<String> = indicators
            .iter()
            .filter(|i| pick(i))
            .map(|i| format!("{}:{}", json_string(&i.name), i.json()))
            .collect();
        format!("{{{}}}", entries.join(","))
    };
    let body = format!(
        r#"{{"status":"{}","info":{},"error":{},"details":{}}}"#,
        if ok { "ok" } else { "error" },
        section(&|i| i.counts && i.up),
        section(&|i| i.counts && !i.up),
        section(&|_| true),
    );
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn json((status, body): (StatusCode, String)) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(read_rss().is_some_and(|rss| rss > 0));
        }
    }

    #[test]
    fn rss_over_the_limit_is_down() {
        let (status, body) = summarize(&[rss_indicator(1000, Some(2048))]);
        assert_eq!(status, 503);
        assert_eq!(
            body,
            r#"{"status":"error","info":{},"error":{"memory_rss":{"status":"down","rss":2048,"limit":1000}},"details":{"memory_rss":{"status":"down","rss":2048,"limit":1000}}}"#
        );
    }
}
