//! Settings as data: one documented shape for a whole service's settings.
//!
//! Every middleware has a plain `*Settings` struct beside its builder
//! ([`CircuitBreakerSettings`], [`RetrySettings`], [`BulkheadSettings`], [`TimeoutSettings`],
//! [`HttpLayerSettings`](crate::http::HttpLayerSettings),
//! [`HealthSettings`](crate::health::HealthSettings),
//! [`ShutdownSettings`](crate::shutdown::ShutdownSettings),
//! [`ChaosSettings`](crate::chaos::ChaosSettings)), named as the builder names its settings,
//! with `Default` the builder's documented defaults. [`ServiceSettings`] gathers them for a
//! whole service. With the feature `serde`, all of them read and write with serde: durations as
//! humans write them (`"10s"`, `"250ms"`), a missing key keeps its default, an unknown key is
//! refused.
//!
//! Validation is the builders' own, and names the full path to the setting:
//! ``invalid `breakers.payments.error_threshold_percentage`: 150 is outside (0, 100]``.
//! harden has no loader of its own: read the file with the serde crate of your choice (the
//! example `settings` uses `figment`, merging TOML, YAML, JSON and environment variables).
//!
//! ```toml
//! [breakers.payments]
//! error_threshold_percentage = 25.0
//! volume_threshold = 50
//! rolling_window = "30s"
//! reset_timeout = "10s"
//!
//! [retries.payments]
//! max_attempts = 3
//! backoff = { initial_delay = "100ms", max_delay = "2s" }
//!
//! [bulkheads.reports]
//! max_concurrent = 32
//!
//! [client]                       # the HTTP preset, feature `http`
//! total_timeout = "20s"
//! breaker = { reset_timeout = "3s" }
//!
//! [server.shutdown]              # feature `axum`
//! drain_delay = "5s"
//! deadline = "25s"
//!
//! [server.health]
//! ready_path = "/ready"
//! ```
//!
//! ```
//! # #[cfg(feature = "serde")] {
//! use harden::settings::ServiceSettings;
//!
//! let settings: ServiceSettings = serde_json::from_str(
//!     r#"{ "breakers": { "payments": { "error_threshold_percentage": 150 } } }"#,
//! )?;
//! let err = settings.validate().unwrap_err();
//! assert_eq!(err.path(), "breakers.payments.error_threshold_percentage");
//!
//! let settings: ServiceSettings = serde_json::from_str(
//!     r#"{ "breakers": { "payments": { "reset_timeout": "5s" } } }"#,
//! )?;
//! let breakers = settings.breakers()?;
//! assert_eq!(breakers["payments"].name(), "payments");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

pub use crate::bulkhead::BulkheadSettings;
pub use crate::circuit_breaker::{CircuitBreakerSettings, OpenBackoffSettings, SlowCallSettings};
pub use crate::retry::{BackoffSettings, BackoffShape, RetryBudgetSettings, RetrySettings};
pub use crate::timeout::TimeoutSettings;

use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::CircuitBreaker;
use crate::retry::RetryPolicy;
use crate::ConfigError;

/// A whole service's settings: named breakers, retries, bulkheads and timeouts, the HTTP
/// client preset (feature `http`), the server's shutdown and health (feature `axum`), and
/// named chaos injectors (feature `chaos`). See the [module docs](self) for the shape.
///
/// # Defaults
///
/// No named middleware; every section at its builder's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ServiceSettings {
    /// Circuit breakers by name (the name is the breaker's metrics label).
    pub breakers: BTreeMap<String, CircuitBreakerSettings>,
    /// Retry policies by name.
    pub retries: BTreeMap<String, RetrySettings>,
    /// Bulkheads by name.
    pub bulkheads: BTreeMap<String, BulkheadSettings>,
    /// Timeouts by name.
    pub timeouts: BTreeMap<String, TimeoutSettings>,
    /// The HTTP client preset.
    #[cfg(feature = "http")]
    pub client: crate::http::HttpLayerSettings,
    /// The server's shutdown sequence and health endpoints.
    #[cfg(feature = "axum")]
    pub server: ServerSettings,
    /// Fault injectors by name.
    #[cfg(feature = "chaos")]
    pub chaos: BTreeMap<String, crate::chaos::ChaosSettings>,
}

/// A server's settings: its shutdown sequence and health endpoints (feature `axum`).
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ServerSettings {
    /// The graceful shutdown sequence.
    pub shutdown: crate::shutdown::ShutdownSettings,
    /// The health endpoints.
    pub health: crate::health::HealthSettings,
}

fn each<T>(
    section: &str,
    map: &BTreeMap<String, T>,
    check: impl Fn(&str, &T) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    for (name, settings) in map {
        check(name, settings).map_err(|e| e.within(name.clone()).within(section))?;
    }
    Ok(())
}

impl ServiceSettings {
    /// Checks every section with its builder's own rules, without building anything.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found, naming the full path
    /// (`breakers.payments.error_threshold_percentage`, `client.breaker.reset_timeout`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        each("breakers", &self.breakers, |_, s| s.validate())?;
        each("retries", &self.retries, |name, s| s.build(name).map(drop))?;
        each("bulkheads", &self.bulkheads, |_, s| {
            BulkheadLayer::try_from(*s).map(drop)
        })?;
        #[cfg(feature = "http")]
        self.client.validate().map_err(|e| e.within("client"))?;
        #[cfg(feature = "axum")]
        {
            self.server
                .shutdown
                .builder()
                .and_then(|b| b.build())
                .map_err(|e| e.within("shutdown").within("server"))?;
            self.server
                .health
                .validate()
                .map_err(|e| e.within("health").within("server"))?;
        }
        #[cfg(feature = "chaos")]
        each("chaos", &self.chaos, |name, s| s.build(name).map(drop))?;
        Ok(())
    }

    /// Builds every named breaker, each named by its key.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`], naming its path (`breakers.payments.volume_threshold`).
    pub fn breakers(&self) -> Result<BTreeMap<String, CircuitBreaker>, ConfigError> {
        self.breakers
            .iter()
            .map(|(name, s)| {
                s.build(name)
                    .map(|b| (name.clone(), b))
                    .map_err(|e| e.within(name.clone()).within("breakers"))
            })
            .collect()
    }

    /// Builds the retry policy filed under `name`; `None` when there is none.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming its path (`retries.payments.max_attempts`).
    pub fn retry(&self, name: &str) -> Option<Result<RetryPolicy, ConfigError>> {
        self.retries.get(name).map(|s| {
            s.build(name)
                .map_err(|e| e.within(name.to_owned()).within("retries"))
        })
    }

    /// Builds the bulkhead filed under `name`; `None` when there is none.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming its path (`bulkheads.reports.max_concurrent`).
    pub fn bulkhead(&self, name: &str) -> Option<Result<BulkheadLayer, ConfigError>> {
        self.bulkheads.get(name).map(|s| {
            s.layer(name)
                .map_err(|e| e.within(name.to_owned()).within("bulkheads"))
        })
    }
}
