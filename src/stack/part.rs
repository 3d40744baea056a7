//! The slots of [`ResilienceLayerBuilder`](super::ResilienceLayerBuilder): what each part may be,
//! and the arguments its methods take. The traits are public (they appear in bounds) but cannot
//! be named outside the crate.

use std::time::Duration;

use tower_layer::Identity;

use super::inner::{OptionalBulkheadLayer, OptionalTimeout, OptionalTimeoutLayer};
use crate::bulkhead::BulkheadLayer;
use crate::retry::RetryLayer;
use crate::timeout::{Timeout, TimeoutLayer};
use tower_layer::Layer;

/// A timeout slot: absent ([`Identity`]), present ([`TimeoutLayer`]) or decided at run time
/// ([`OptionalTimeoutLayer`], from an `Option<Duration>`).
pub trait TimeoutSlot {
    /// The timeout, when there is one.
    fn duration(&self) -> Option<Duration>;
    /// The slot with its metrics label: `part`, prefixed with the stack's name.
    fn named(self, stack: Option<&str>, part: &str) -> Self;
}

pub(super) fn label(stack: Option<&str>, part: &str) -> String {
    match stack {
        Some(name) => format!("{name}.{part}"),
        None => part.to_owned(),
    }
}

impl TimeoutSlot for Identity {
    fn duration(&self) -> Option<Duration> {
        None
    }
    fn named(self, _: Option<&str>, _: &str) -> Self {
        self
    }
}

impl TimeoutSlot for TimeoutLayer {
    fn duration(&self) -> Option<Duration> {
        Some(self.timeout())
    }
    fn named(self, stack: Option<&str>, part: &str) -> Self {
        self.name(label(stack, part))
    }
}

impl TimeoutSlot for OptionalTimeoutLayer {
    fn duration(&self) -> Option<Duration> {
        self.0.as_ref().map(TimeoutLayer::timeout)
    }
    fn named(self, stack: Option<&str>, part: &str) -> Self {
        OptionalTimeoutLayer(self.0.map(|layer| layer.named(stack, part)))
    }
}

/// How the total timeout slot wraps the retry slot's service `S`: a retry ends the call at the
/// stack's total timeout itself (so a call its first attempt answers makes no timer for it), so
/// with a retry the slot adds no wrapper; without one it is a timeout layer.
pub trait TotalSlot<R, S> {
    /// The service around the retry slot's.
    type Service;
    /// Wraps `service`.
    fn wrap(&self, service: S) -> Self::Service;
}

impl<R, S> TotalSlot<R, S> for Identity {
    type Service = S;
    fn wrap(&self, service: S) -> S {
        service
    }
}

impl<S> TotalSlot<Identity, S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn wrap(&self, service: S) -> Timeout<S> {
        self.layer(service)
    }
}

impl<S> TotalSlot<Identity, S> for OptionalTimeoutLayer {
    type Service = OptionalTimeout<S>;
    fn wrap(&self, service: S) -> Self::Service {
        self.layer(service)
    }
}

impl<C, H, S> TotalSlot<RetryLayer<C, H>, S> for TimeoutLayer {
    type Service = S;
    fn wrap(&self, service: S) -> S {
        service
    }
}

impl<C, H, S> TotalSlot<RetryLayer<C, H>, S> for OptionalTimeoutLayer {
    type Service = S;
    fn wrap(&self, service: S) -> S {
        service
    }
}

/// What `total_timeout` and `attempt_timeout` take: a [`Duration`] (the part is in the
/// type) or an `Option<Duration>` (decided at run time).
pub trait IntoTimeout {
    /// The slot it fills.
    type Slot: TimeoutSlot;
    /// The filled slot.
    fn into_slot(self) -> Self::Slot;
}

impl IntoTimeout for Duration {
    type Slot = TimeoutLayer;
    fn into_slot(self) -> TimeoutLayer {
        TimeoutLayer::new(self)
    }
}

impl IntoTimeout for Option<Duration> {
    type Slot = OptionalTimeoutLayer;
    fn into_slot(self) -> OptionalTimeoutLayer {
        OptionalTimeoutLayer(self.map(TimeoutLayer::new))
    }
}

/// A bulkhead slot, for `Debug`: absent, present or decided at run time
/// ([`OptionalBulkheadLayer`]).
pub trait BulkheadSlot {
    /// The bulkhead, when there is one.
    fn get(&self) -> Option<&BulkheadLayer>;
}

impl BulkheadSlot for Identity {
    fn get(&self) -> Option<&BulkheadLayer> {
        None
    }
}

impl BulkheadSlot for BulkheadLayer {
    fn get(&self) -> Option<&BulkheadLayer> {
        Some(self)
    }
}

impl BulkheadSlot for OptionalBulkheadLayer {
    fn get(&self) -> Option<&BulkheadLayer> {
        self.0.as_ref()
    }
}

/// What `bulkhead` takes: a [`BulkheadLayer`] (the part is in the type) or an
/// `Option<BulkheadLayer>` (decided at run time).
pub trait IntoBulkhead {
    /// The slot it fills.
    type Slot: BulkheadSlot;
    /// The filled slot.
    fn into_slot(self) -> Self::Slot;
}

impl IntoBulkhead for BulkheadLayer {
    type Slot = BulkheadLayer;
    fn into_slot(self) -> BulkheadLayer {
        self
    }
}

impl IntoBulkhead for Option<BulkheadLayer> {
    type Slot = OptionalBulkheadLayer;
    fn into_slot(self) -> OptionalBulkheadLayer {
        OptionalBulkheadLayer(self)
    }
}

/// The retry slot: no retry, or a [`RetryLayer`] that ends the call at the stack's total
/// timeout.
pub trait RetrySlot {
    /// The retry, ending each call at `total_timeout` (counted under `label`); `attempt_timeout`
    /// is the stack's per-attempt timeout.
    fn with_total_timeout(
        self,
        total_timeout: Option<Duration>,
        attempt_timeout: Option<Duration>,
        label: &str,
    ) -> Self;
}

impl RetrySlot for Identity {
    fn with_total_timeout(self, _: Option<Duration>, _: Option<Duration>, _: &str) -> Self {
        self
    }
}

impl<C, H> RetrySlot for RetryLayer<C, H> {
    fn with_total_timeout(
        self,
        total_timeout: Option<Duration>,
        attempt_timeout: Option<Duration>,
        label: &str,
    ) -> Self {
        match total_timeout {
            Some(total) => {
                self.map_policy(|p| p.enforcing_stack_total(total, attempt_timeout, label))
            }
            None => self,
        }
    }
}
