//! The standard gRPC service config (JSON): `methodConfig` (`name`, `retryPolicy`, `timeout`)
//! and `retryThrottling`, the file grpc-go and grpc-java read.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::code::{code_from_name, CodeSet};
use crate::ConfigError;

/// Largest `maxAttempts` honoured; a config asking for more gets this many (gRFC A6's
/// client-side limit, which grpc-go and grpc-java apply too).
pub const MAX_ATTEMPTS_CAP: u32 = 5;

/// Largest `maxTokens` accepted (grpc-go's limit).
pub const MAX_TOKENS_LIMIT: u32 = 1000;

/// A parsed service config: per-method policies and the channel's retry throttling.
///
/// ```
/// use std::time::Duration;
/// use harden::tonic::ServiceConfig;
///
/// let config = ServiceConfig::from_json(r#"{
///   "methodConfig": [{
///     "name": [{ "service": "helloworld.Greeter" }],
///     "timeout": "2s",
///     "retryPolicy": {
///       "maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
///       "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
///     }
///   }],
///   "retryThrottling": { "maxTokens": 10, "tokenRatio": 0.1 }
/// }"#)?;
/// let method = config.method("/helloworld.Greeter/SayHello").unwrap();
/// assert_eq!(method.timeout(), Some(Duration::from_secs(2)));
/// assert_eq!(method.retry_policy().unwrap().max_attempts(), 4);
///
/// let bad = ServiceConfig::from_json(r#"{"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":1}}]}"#);
/// assert!(bad.unwrap_err().to_string().contains("methodConfig[0].retryPolicy.maxAttempts"));
/// # Ok::<(), harden::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServiceConfig {
    /// By `service/method`, the path without its leading `/`: looked up without allocating.
    exact: Names,
    services: Names,
    default: Option<Arc<MethodConfig>>,
    throttling: Option<RetryThrottling>,
}

/// Entries by name, sorted: a call's lookup is a binary search of string comparisons, cheaper
/// than hashing the name for the few entries a service config has.
#[derive(Debug, Clone, Default)]
struct Names(Vec<(String, Arc<MethodConfig>)>);

impl Names {
    /// Adds an entry; `false` when the name is there already.
    fn insert(&mut self, name: String, method: Arc<MethodConfig>) -> bool {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, (name, method));
                true
            }
        }
    }

    fn get(&self, name: &str) -> Option<&Arc<MethodConfig>> {
        let at = self
            .0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        Some(&self.0[at].1)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The policy of the methods a `methodConfig` entry names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MethodConfig {
    retry: Option<GrpcRetryPolicy>,
    timeout: Option<Duration>,
}

impl MethodConfig {
    /// The retry policy (`None`: calls are sent once).
    pub fn retry_policy(&self) -> Option<&GrpcRetryPolicy> {
        self.retry.as_ref()
    }

    /// The call's timeout (`None`: none of its own).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// A `retryPolicy`: gRFC A6's attempts, exponential backoff and retryable codes.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcRetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) backoff_multiplier: f64,
    pub(crate) retryable: CodeSet,
}

impl GrpcRetryPolicy {
    /// Attempts, the first included (capped at [`MAX_ATTEMPTS_CAP`]).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The first retry waits a random time in `[0, initial_backoff)`.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// The cap on the backoff's upper bound.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// The growth of the upper bound per retry.
    pub fn backoff_multiplier(&self) -> f64 {
        self.backoff_multiplier
    }

    /// Whether a status code is retried.
    pub fn is_retryable(&self, code: tonic::Code) -> bool {
        self.retryable.contains(code as i32)
    }
}

/// `retryThrottling`: retries stop while failures outweigh successes (gRFC A6's token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryThrottling {
    /// `maxTokens`, in thousandths.
    pub(crate) max_milli: u32,
    /// `tokenRatio`, in thousandths (A6: up to 3 decimals).
    pub(crate) ratio_milli: u32,
}

impl RetryThrottling {
    /// `maxTokens`.
    pub fn max_tokens(&self) -> u32 {
        self.max_milli / 1000
    }

    /// `tokenRatio`.
    pub fn token_ratio(&self) -> f64 {
        f64::from(self.ratio_milli) / 1000.0
    }
}

fn err(path: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::new("service_config", format!("`{path}`: {reason}"))
}

/// A proto3 JSON duration: decimal seconds with an `s` (`"1.5s"`, `".1s"`), at most 9
/// fraction digits, not negative.
fn duration(path: &str, v: &Value) -> Result<Duration, ConfigError> {
    let s = v
        .as_str()
        .ok_or_else(|| err(path, "expected a duration string such as \"0.1s\""))?;
    let bad = || err(path, format!("{s:?} is not a duration such as \"0.1s\""));
    let body = s.strip_suffix('s').ok_or_else(bad)?;
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
        || whole.len() > 12
        || (body.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(Duration::new(secs, nanos))
}

fn positive_duration(path: &str, v: Option<&Value>) -> Result<Duration, ConfigError> {
    let v = v.ok_or_else(|| err(path, "required"))?;
    let d = duration(path, v)?;
    if d.is_zero() {
        return Err(err(path, "must be greater than zero"));
    }
    Ok(d)
}

fn object<'a>(path: &str, v: &'a Value) -> Result<&'a serde_json::Map<String, Value>, ConfigError> {
    v.as_object().ok_or_else(|| err(path, "expected an object"))
}

fn retry_policy(path: &str, v: &Value) -> Result<GrpcRetryPolicy, ConfigError> {
    let o = object(path, v)?;
    let field = |name: &str| format!("{path}.{name}");
    let max_attempts = {
        let p = field("maxAttempts");
        let n = o
            .get("maxAttempts")
            .ok_or_else(|| err(&p, "required"))?
            .as_u64()
            .ok_or_else(|| err(&p, "expected an integer"))?;
        if n < 2 {
            return Err(err(&p, format!("{n} is outside [2, ∞)")));
        }
        n.min(u64::from(MAX_ATTEMPTS_CAP)) as u32
    };
    let initial_backoff = positive_duration(&field("initialBackoff"), o.get("initialBackoff"))?;
    let max_backoff = positive_duration(&field("maxBackoff"), o.get("maxBackoff"))?;
    let backoff_multiplier = {
        let p = field("backoffMultiplier");
        let m = o
            .get("backoffMultiplier")
            .ok_or_else(|| err(&p, "required"))?
            .as_f64()
            .ok_or_else(|| err(&p, "expected a number"))?;
        if !(m > 0.0 && m.is_finite()) {
            return Err(err(&p, format!("{m} is outside (0, ∞)")));
        }
        m
    };
    let p = field("retryableStatusCodes");
    let codes = o
        .get("retryableStatusCodes")
        .ok_or_else(|| err(&p, "required"))?
        .as_array()
        .ok_or_else(|| err(&p, "expected an array of status codes"))?;
    if codes.is_empty() {
        return Err(err(&p, "must not be empty"));
    }
    let mut retryable = CodeSet::default();
    for (i, c) in codes.iter().enumerate() {
        let p = format!("{p}[{i}]");
        let code = match c {
            Value::String(name) => code_from_name(name)
                .ok_or_else(|| err(&p, format!("{name:?} is not a status code name")))?,
            Value::Number(n) => n
                .as_u64()
                .filter(|n| *n <= 16)
                .map(|n| n as i32)
                .ok_or_else(|| err(&p, format!("{n} is outside [0, 16]")))?,
            _ => {
                return Err(err(
                    &p,
                    "expected a status code name such as \"UNAVAILABLE\"",
                ))
            }
        };
        if code == 0 {
            return Err(err(&p, "OK cannot be retried"));
        }
        retryable.insert(code);
    }
    Ok(GrpcRetryPolicy {
        max_attempts,
        initial_backoff,
        max_backoff,
        backoff_multiplier,
        retryable,
    })
}

fn throttling(path: &str, v: &Value) -> Result<RetryThrottling, ConfigError> {
    let o = object(path, v)?;
    let p = format!("{path}.maxTokens");
    let max = o
        .get("maxTokens")
        .ok_or_else(|| err(&p, "required"))?
        .as_u64()
        .ok_or_else(|| err(&p, "expected an integer"))?;
    if !(1..=u64::from(MAX_TOKENS_LIMIT)).contains(&max) {
        return Err(err(&p, format!("{max} is outside [1, {MAX_TOKENS_LIMIT}]")));
    }
    let p = format!("{path}.tokenRatio");
    let ratio = o
        .get("tokenRatio")
        .ok_or_else(|| err(&p, "required"))?
        .as_f64()
        .ok_or_else(|| err(&p, "expected a number"))?;
    // Thousandths, as A6 supports up to 3 decimal places.
    let ratio_milli = (ratio * 1000.0).round();
    if !(ratio > 0.0 && ratio_milli >= 1.0 && ratio_milli <= f64::from(MAX_TOKENS_LIMIT) * 1000.0) {
        return Err(err(
            &p,
            format!("{ratio} is outside [0.001, {MAX_TOKENS_LIMIT}]"),
        ));
    }
    Ok(RetryThrottling {
        max_milli: max as u32 * 1000,
        ratio_milli: ratio_milli as u32,
    })
}

impl ServiceConfig {
    /// Reads a service config from JSON. Keys harden does not use (`loadBalancingPolicy`,
    /// `waitForReady`, `hedgingPolicy`, ...) are accepted and ignored, so one file serves every
    /// gRPC client; a method under a `hedgingPolicy` is sent once.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the JSON path of the first invalid value
    /// (``invalid `service_config`: `methodConfig[0].retryPolicy.maxAttempts`: 1 is outside [2, ∞)``):
    /// invalid JSON, a required field missing, a value out of its range, a name given twice.
    pub fn from_json(json: &str) -> Result<ServiceConfig, ConfigError> {
        let root: Value =
            serde_json::from_str(json).map_err(|e| err("$", format!("not JSON: {e}")))?;
        let root = object("$", &root)?;
        let mut config = ServiceConfig::default();
        if let Some(t) = root.get("retryThrottling") {
            config.throttling = Some(throttling("retryThrottling", t)?);
        }
        let Some(methods) = root.get("methodConfig") else {
            return Ok(config);
        };
        let methods = methods
            .as_array()
            .ok_or_else(|| err("methodConfig", "expected an array"))?;
        for (i, m) in methods.iter().enumerate() {
            let path = format!("methodConfig[{i}]");
            let o = object(&path, m)?;
            let retry = o
                .get("retryPolicy")
                .map(|r| retry_policy(&format!("{path}.retryPolicy"), r))
                .transpose()?;
            let timeout = o
                .get("timeout")
                .map(|t| duration(&format!("{path}.timeout"), t))
                .transpose()?;
            let method = Arc::new(MethodConfig { retry, timeout });
            let names = match o.get("name") {
                None => &[][..],
                Some(n) => n
                    .as_array()
                    .ok_or_else(|| err(&format!("{path}.name"), "expected an array"))?,
            };
            for (j, name) in names.iter().enumerate() {
                let p = format!("{path}.name[{j}]");
                let n = object(&p, name)?;
                let text = |key: &str| -> Result<String, ConfigError> {
                    match n.get(key) {
                        None => Ok(String::new()),
                        Some(Value::String(s)) => Ok(s.clone()),
                        Some(_) => Err(err(&format!("{p}.{key}"), "expected a string")),
                    }
                };
                let (service, method_name) = (text("service")?, text("method")?);
                let duplicate = || err(&p, "names a method another entry already names");
                match (service.is_empty(), method_name.is_empty()) {
                    (true, true) => {
                        if config.default.replace(method.clone()).is_some() {
                            return Err(duplicate());
                        }
                    }
                    (true, false) => {
                        return Err(err(&format!("{p}.method"), "a method needs its service"))
                    }
                    (false, true) => {
                        if !config.services.insert(service, method.clone()) {
                            return Err(duplicate());
                        }
                    }
                    (false, false) => {
                        if !config
                            .exact
                            .insert(format!("{service}/{method_name}"), method.clone())
                        {
                            return Err(duplicate());
                        }
                    }
                }
            }
        }
        Ok(config)
    }

    /// The policy for a call's path (`/package.Service/Method`): the entry naming the method,
    /// else its service, else the default entry (`{}`).
    pub fn method(&self, path: &str) -> Option<&MethodConfig> {
        let path = path.strip_prefix('/').unwrap_or("");
        if !self.exact.is_empty() {
            if let Some(m) = self.exact.get(path) {
                return Some(m);
            }
        }
        let service = path.split_once('/').map_or("", |(service, _)| service);
        self.services
            .get(service)
            .or(self.default.as_ref())
            .map(|m| &**m)
    }

    /// The channel's retry throttling, if configured.
    pub fn retry_throttling(&self) -> Option<RetryThrottling> {
        self.throttling
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        ServiceConfig::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn durations() {
        let d = |s: &str| duration("x", &Value::String(s.into()));
        assert_eq!(d("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(d(".1s").unwrap(), Duration::from_millis(100));
        assert_eq!(d("0.000000001s").unwrap(), Duration::from_nanos(1));
        assert_eq!(d("2.5s").unwrap(), Duration::from_millis(2500));
        for bad in [
            "",
            "s",
            "1",
            "-1s",
            "1.s",
            "1.0000000001s",
            "1ms",
            " 1s",
            "1e3s",
        ] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_json_path() {
        let policy = |p: &str| {
            format!(
                r#"{{"methodConfig":[{{"name":[{{}}]}},{{"name":[{{"service":"a"}}],"retryPolicy":{p}}}]}}"#
            )
        };
        let ok = r#""maxAttempts":3,"initialBackoff":"1s","maxBackoff":"2s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]"#;
        assert!(ServiceConfig::from_json(&policy(&format!("{{{ok}}}"))).is_ok());
        let cases = [
            (
                ok.replace("\"maxAttempts\":3", "\"maxAttempts\":1"),
                "methodConfig[1].retryPolicy.maxAttempts",
            ),
            (
                ok.replace("\"1s\"", "\"1\""),
                "methodConfig[1].retryPolicy.initialBackoff",
            ),
            (
                ok.replace("\"2s\"", "\"0s\""),
                "methodConfig[1].retryPolicy.maxBackoff",
            ),
            (
                ok.replace(":2,", ":0,"),
                "methodConfig[1].retryPolicy.backoffMultiplier",
            ),
            (
                ok.replace("[\"UNAVAILABLE\"]", "[]"),
                "methodConfig[1].retryPolicy.retryableStatusCodes",
            ),
            (
                ok.replace("UNAVAILABLE", "unavailable"),
                "methodConfig[1].retryPolicy.retryableStatusCodes[0]",
            ),
        ];
        for (body, path) in cases {
            let e = error(&policy(&format!("{{{body}}}")));
            assert!(e.contains(&format!("`{path}`")), "{e}");
            assert!(e.starts_with("invalid `service_config`"), "{e}");
        }
        assert!(
            error(r#"{"retryThrottling":{"maxTokens":0,"tokenRatio":0.1}}"#)
                .contains("`retryThrottling.maxTokens`")
        );
        assert!(
            error(r#"{"retryThrottling":{"maxTokens":10,"tokenRatio":-1}}"#)
                .contains("`retryThrottling.tokenRatio`")
        );
        assert!(error(r#"{"methodConfig":[{"name":[{"method":"M"}]}]}"#)
            .contains("`methodConfig[0].name[0].method`"));
        assert!(error(r#"{"methodConfig":[{"name":[{}]},{"name":[{}]}]}"#)
            .contains("`methodConfig[1].name[0]`"));
        assert!(
            error(r#"{"methodConfig":[{"timeout":"soon"}]}"#).contains("`methodConfig[0].timeout`")
        );
        assert!(error("[1]").contains("`$`"));
        assert!(error("{").contains("not JSON"));
    }

    #[test]
    fn every_named_service_and_method_is_found_and_a_name_twice_is_an_error() {
        let names = ["z.Z", "a.A", "m.M", "b.B", "y.Y", "c.C"];
        let entries: Vec<String> = names
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                [
                    format!(r#"{{"name":[{{"service":"{s}"}}],"timeout":"{}s"}}"#, i + 1),
                    format!(
                        r#"{{"name":[{{"service":"{s}","method":"M"}}],"timeout":"{}s"}}"#,
                        i + 11
                    ),
                ]
            })
            .collect();
        let config =
            ServiceConfig::from_json(&format!(r#"{{"methodConfig":[{}]}}"#, entries.join(",")))
                .unwrap();
        for (i, s) in names.iter().enumerate() {
            let t = |p: &str| config.method(p).and_then(MethodConfig::timeout);
            assert_eq!(
                t(&format!("/{s}/N")),
                Some(Duration::from_secs(i as u64 + 1))
            );
            assert_eq!(
                t(&format!("/{s}/M")),
                Some(Duration::from_secs(i as u64 + 11))
            );
        }
        assert!(config.method("/q.Q/M").is_none());
        let twice =
            r#"{"methodConfig":[{"name":[{"service":"s.S"}]},{"name":[{"service":"s.S"}]}]}"#;
        assert!(error(twice).contains("already names"));
    }

    #[test]
    fn lookup_prefers_the_method_then_the_service_then_the_default() {
        let config = ServiceConfig::from_json(
            r#"{"methodConfig":[
                {"name":[{}],"timeout":"1s"},
                {"name":[{"service":"s.S"}],"timeout":"2s"},
                {"name":[{"service":"s.S","method":"M"}],"timeout":"3s"}
            ]}"#,
        )
        .unwrap();
        let t = |p: &str| config.method(p).and_then(MethodConfig::timeout);
        assert_eq!(t("/s.S/M"), Some(Duration::from_secs(3)));
        assert_eq!(t("/s.S/N"), Some(Duration::from_secs(2)));
        assert_eq!(t("/o.O/M"), Some(Duration::from_secs(1)));
        assert_eq!(t("garbage"), Some(Duration::from_secs(1)));
        assert!(ServiceConfig::default().method("/s.S/M").is_none());
    }

    #[test]
    fn max_attempts_above_the_cap_are_capped() {
        let config = ServiceConfig::from_json(
            r#"{"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":50,"initialBackoff":"1s","maxBackoff":"2s","backoffMultiplier":2,"retryableStatusCodes":[14, "INTERNAL"]}}],
                "retryThrottling":{"maxTokens":10,"tokenRatio":0.1}}"#,
        )
        .unwrap();
        let policy = config.method("/a.A/B").unwrap().retry_policy().unwrap();
        assert_eq!(policy.max_attempts(), MAX_ATTEMPTS_CAP);
        assert!(policy.is_retryable(tonic::Code::Unavailable));
        assert!(policy.is_retryable(tonic::Code::Internal));
        assert!(!policy.is_retryable(tonic::Code::NotFound));
        let t = config.retry_throttling().unwrap();
        assert_eq!((t.max_tokens(), t.token_ratio()), (10, 0.1));
    }
}
