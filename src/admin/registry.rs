//! [`BreakerRegistry`]: a bounded set of named breakers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::circuit_breaker::CircuitBreaker;
use crate::ConfigError;

/// Default [`BreakerRegistry::with_capacity`]: 1024 breakers.
pub const DEFAULT_REGISTRY_CAPACITY: usize = 1024;

/// A bounded set of circuit breakers by name, for the [admin endpoint](super) (and anything
/// else that lists breakers). Clones share one set.
///
/// A breaker registered under a name already taken replaces the one before (the per-authority
/// reqwest client's authorities past its labelled ones share the name `<preset>/other`: the
/// latest is listed). A breaker stays listed until [`unregister`](Self::unregister)ed.
///
/// # Defaults
///
/// [`BreakerRegistry::new`] holds up to [`DEFAULT_REGISTRY_CAPACITY`] breakers.
#[derive(Clone)]
pub struct BreakerRegistry {
    inner: Arc<RwLock<BTreeMap<String, CircuitBreaker>>>,
    capacity: usize,
}

impl fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("names", &self.names())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for BreakerRegistry {
    fn default() -> Self {
        BreakerRegistry::new()
    }
}

impl BreakerRegistry {
    /// An empty registry of up to [`DEFAULT_REGISTRY_CAPACITY`] breakers.
    pub fn new() -> Self {
        BreakerRegistry {
            inner: Arc::default(),
            capacity: DEFAULT_REGISTRY_CAPACITY,
        }
    }

    /// An empty registry of up to `capacity` breakers.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `capacity` for 0.
    pub fn with_capacity(capacity: usize) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::new("capacity", "0 is outside [1, usize::MAX]"));
        }
        Ok(BreakerRegistry {
            inner: Arc::default(),
            capacity,
        })
    }

    /// Lists `breaker` under its name, replacing a breaker of the same name; `false` (and
    /// nothing listed) when the registry is full and the name is new.
    pub fn register(&self, breaker: &CircuitBreaker) -> bool {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity && !map.contains_key(breaker.name()) {
            tracing::warn!(breaker = %breaker.name(), capacity = self.capacity, "breaker registry full: breaker not listed");
            return false;
        }
        map.insert(breaker.name().to_owned(), breaker.clone());
        true
    }

    /// Removes the breaker listed under `name`, returning it.
    pub fn unregister(&self, name: &str) -> Option<CircuitBreaker> {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// The breaker listed under `name`.
    pub fn get(&self, name: &str) -> Option<CircuitBreaker> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The names listed, in order.
    pub fn names(&self) -> Vec<String> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Every breaker listed, by name in order.
    pub fn breakers(&self) -> Vec<CircuitBreaker> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// How many breakers are listed.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no breaker is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_replacing() {
        let registry = BreakerRegistry::with_capacity(1).unwrap();
        let a = CircuitBreaker::builder().name("a").build().unwrap();
        let b = CircuitBreaker::builder().name("b").build().unwrap();
        assert!(registry.register(&a));
        assert!(!registry.register(&b), "full");
        let a2 = CircuitBreaker::builder().name("a").build().unwrap();
        assert!(registry.register(&a2), "the same name replaces");
        a2.force_open();
        assert_eq!(registry.get("a").unwrap().state(), a2.state());
        assert_eq!(registry.names(), ["a"]);
        assert!(registry.unregister("a").is_some());
        assert!(registry.is_empty());
        assert!(BreakerRegistry::with_capacity(0).is_err());
    }
}
