//! The admin endpoint's axum router and its authorization.

use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::BreakerRegistry;
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerSettings};
use crate::ConfigError;

/// What an authorizer says about a request to the admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Serve it.
    Allow,
    /// No credentials: 401 with `WWW-Authenticate: Bearer`.
    Unauthenticated,
    /// Credentials, but not good ones: 403.
    Forbidden,
}

type Authorize = dyn Fn(&HeaderMap) -> Access + Send + Sync;

#[derive(Clone)]
enum Authorizer {
    Bearer(Arc<[u8]>),
    Custom(Arc<Authorize>),
}

impl Authorizer {
    fn check(&self, headers: &HeaderMap) -> Access {
        match self {
            Authorizer::Custom(f) => f(headers),
            Authorizer::Bearer(token) => {
                let Some(value) = headers.get(AUTHORIZATION) else {
                    return Access::Unauthenticated;
                };
                let given = value.as_bytes();
                let Some(given) = given
                    .get(..7)
                    .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
                    .and(given.get(7..))
                else {
                    return Access::Unauthenticated;
                };
                // Constant time in the token's bytes, so the time to refuse tells an attacker
                // nothing of how much of a guess was right (a length mismatch ends early).
                if bool::from(subtle::ConstantTimeEq::ct_eq(given, &token[..])) {
                    Access::Allow
                } else {
                    Access::Forbidden
                }
            }
        }
    }
}

/// Builds an [`Admin`]; start with [`Admin::builder`].
///
/// # Defaults
///
/// An empty [`BreakerRegistry::new`] and no authorizer: `build()` refuses until
/// [`bearer_token`](Self::bearer_token) or [`authorize`](Self::authorize) is set.
#[must_use = "a builder does nothing until `build` is called"]
pub struct AdminBuilder {
    registry: BreakerRegistry,
    authorizer: Option<Authorizer>,
}

impl fmt::Debug for AdminBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminBuilder")
            .field("registry", &self.registry)
            .field("authorizer", &self.authorizer.is_some())
            .finish()
    }
}

impl AdminBuilder {
    /// The breakers the endpoint lists and moves.
    pub fn registry(mut self, registry: &BreakerRegistry) -> Self {
        self.registry = registry.clone();
        self
    }

    /// Serve requests carrying `Authorization: Bearer <token>`, compared in constant time;
    /// a request without one gets 401, a wrong one 403.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.authorizer = Some(Authorizer::Bearer(token.into().into_bytes().into()));
        self
    }

    /// Decide with `authorize` from the request's headers (mTLS headers set by a proxy,
    /// a session cookie, a signed token).
    pub fn authorize(
        mut self,
        authorize: impl Fn(&HeaderMap) -> Access + Send + Sync + 'static,
    ) -> Self {
        self.authorizer = Some(Authorizer::Custom(Arc::new(authorize)));
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `authorizer` when none is set (the endpoint would answer anyone),
    /// or `bearer_token` for an empty token.
    pub fn build(self) -> Result<Admin, ConfigError> {
        let authorizer = self.authorizer.ok_or_else(|| {
            ConfigError::new(
                "authorizer",
                "none set: the admin endpoint refuses to serve without `bearer_token` or `authorize`",
            )
        })?;
        if matches!(&authorizer, Authorizer::Bearer(t) if t.is_empty()) {
            return Err(ConfigError::new(
                "bearer_token",
                "an empty token is refused",
            ));
        }
        Ok(Admin {
            inner: Arc::new(Inner {
                registry: self.registry,
                authorizer,
            }),
        })
    }
}

struct Inner {
    registry: BreakerRegistry,
    authorizer: Authorizer,
}

/// The admin endpoint: an axum [`Router`] over a [`BreakerRegistry`]; see the
/// [module docs](super).
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("registry", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// A builder with the defaults (see its `# Defaults`).
    pub fn builder() -> AdminBuilder {
        AdminBuilder {
            registry: BreakerRegistry::new(),
            authorizer: None,
        }
    }

    /// The registry served.
    pub fn registry(&self) -> &BreakerRegistry {
        &self.inner.registry
    }

    /// The routes, to serve on their own listener (or `nest` under a prefix):
    ///
    /// | route | does |
    /// |---|---|
    /// | `GET /breakers` | every breaker: name, state, stats, settings |
    /// | `GET /breakers/{name}` | one breaker |
    /// | `POST /breakers/{name}/force_open` | [`CircuitBreaker::force_open`] |
    /// | `POST /breakers/{name}/disable` | [`CircuitBreaker::disable`] |
    /// | `POST /breakers/{name}/reset` | [`CircuitBreaker::reset`] |
    /// | `PATCH /breakers/{name}/settings` | [`CircuitBreaker::retune`] with the JSON object's keys over the current settings |
    ///
    /// Names are percent-encoded in paths (`http%2Fhttps:%2F%2Fapi:443`).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/breakers", get(list))
            .route("/breakers/{name}", get(show))
            .route("/breakers/{name}/force_open", post(force_open))
            .route("/breakers/{name}/disable", post(disable))
            .route("/breakers/{name}/reset", post(reset))
            .route("/breakers/{name}/settings", patch(change))
            .with_state(self.inner.clone())
    }
}

fn error(status: StatusCode, message: impl Into<String>, field: Option<String>) -> Response {
    let mut body = json!({ "statusCode": status.as_u16(), "message": message.into() });
    if let Some(field) = field {
        body["field"] = Value::String(field);
    }
    (status, Json(body)).into_response()
}

/// A refusal, boxed: a `Response` is large for the `Err` of a `Result`.
type Refusal = Box<Response>;

fn authorized(inner: &Inner, headers: &HeaderMap) -> Result<(), Refusal> {
    match inner.authorizer.check(headers) {
        Access::Allow => Ok(()),
        Access::Unauthenticated => {
            let mut response = error(StatusCode::UNAUTHORIZED, "credentials required", None);
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(Box::new(response))
        }
        Access::Forbidden => Err(Box::new(error(StatusCode::FORBIDDEN, "not allowed", None))),
    }
}

fn find(inner: &Inner, headers: &HeaderMap, name: &str) -> Result<CircuitBreaker, Refusal> {
    authorized(inner, headers)?;
    inner.registry.get(name).ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no breaker named {name:?}"),
            None,
        ))
    })
}

fn describe(breaker: &CircuitBreaker) -> Value {
    let stats = breaker.stats();
    json!({
        "name": breaker.name(),
        "state": breaker.state().as_str(),
        "next_probe_in_ms": breaker.next_probe_in().map(|d| d.as_millis() as u64),
        "stats": {
            "successes": stats.successes,
            "failures": stats.failures,
            "rejections": stats.rejections,
            "slow_calls": stats.slow_calls,
            "failure_percentage": stats.failure_percentage,
            "slow_call_percentage": stats.slow_call_percentage,
        },
        "settings": serde_json::to_value(breaker.settings()).unwrap_or(Value::Null),
    })
}

async fn list(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorized(&inner, &headers) {
        return *refused;
    }
    let breakers: Vec<Value> = inner.registry.breakers().iter().map(describe).collect();
    Json(json!({ "breakers": breakers })).into_response()
}

async fn show(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match find(&inner, &headers, &name) {
        Ok(breaker) => Json(describe(&breaker)).into_response(),
        Err(refused) => *refused,
    }
}

fn act(
    inner: &Inner,
    headers: &HeaderMap,
    name: &str,
    action: &'static str,
    f: fn(&CircuitBreaker),
) -> Response {
    match find(inner, headers, name) {
        Ok(breaker) => {
            f(&breaker);
            tracing::warn!(breaker = %name, action, "circuit breaker moved through the admin endpoint");
            Json(describe(&breaker)).into_response()
        }
        Err(refused) => *refused,
    }
}

async fn force_open(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    act(
        &inner,
        &headers,
        &name,
        "force_open",
        CircuitBreaker::force_open,
    )
}

async fn disable(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    act(&inner, &headers, &name, "disable", CircuitBreaker::disable)
}

async fn reset(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    act(&inner, &headers, &name, "reset", CircuitBreaker::reset)
}

async fn change(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let breaker = match find(&inner, &headers, &name) {
        Ok(breaker) => breaker,
        Err(refused) => return *refused,
    };
    let settings = match patched(&breaker.settings(), &body) {
        Ok(settings) => settings,
        Err((message, field)) => return error(StatusCode::BAD_REQUEST, message, field),
    };
    if let Err(err) = breaker.retune(&settings) {
        return error(StatusCode::BAD_REQUEST, err.to_string(), Some(err.path()));
    }
    Json(describe(&breaker)).into_response()
}

/// `current` with the keys of the JSON object `body` over it; on error, the message and the
/// key at fault.
fn patched(
    current: &CircuitBreakerSettings,
    body: &[u8],
) -> Result<CircuitBreakerSettings, (String, Option<String>)> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|e| (format!("the body is not JSON: {e}"), None))?;
    let Value::Object(patch) = patch else {
        return Err(("the body must be a JSON object of settings".into(), None));
    };
    let base = serde_json::to_value(current).map_err(|e| (e.to_string(), None))?;
    let merge = |keys: &mut dyn Iterator<Item = (&String, &Value)>| {
        let mut merged = base.clone();
        if let Value::Object(m) = &mut merged {
            for (k, v) in keys {
                m.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value::<CircuitBreakerSettings>(merged)
    };
    merge(&mut patch.iter()).map_err(|e| {
        // serde names unknown keys but not the key of a value of the wrong type: find it.
        let field = patch
            .iter()
            .find(|kv| merge(&mut std::iter::once(*kv)).is_err())
            .map(|(k, _)| k.clone());
        (format!("invalid settings: {e}"), field)
    })
}
