//! The breaker's current window, replaced whole when its shape changes.
//!
//! A window's counters are laid out for its shape, so a new length or bucket count is a new
//! window, swapped in behind an [`ArcSwap`]: readers never wait, and a window is freed when the
//! last call holding it ends. Loading from the `ArcSwap` costs more than a call through a closed
//! breaker, so a service keeps the window it last loaded and compares its [`version`] with
//! [`Windows::version`] (one load of a word nothing writes in the steady state) before every call.
//!
//! A call that started on a window replaced since is counted in neither: its success lands in
//! the old window, which nobody reads, and its failure is dropped by the breaker before it is
//! recorded or judged (it compares versions again). So a new shape starts from zero counts.
//!
//! [`version`]: Window::version

use std::sync::Arc;

#[cfg(not(harden_loom))]
use arc_swap::ArcSwap;

use super::{Window, WindowSpec};
use crate::sync::{AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct Windows {
    /// The version of the window installed last; services compare their window's with it.
    version: AtomicU64,
    current: ArcSwap<Window>,
    /// The window the breaker was built with: callers that keep no window of their own (a
    /// synchronous call) use it without touching the `ArcSwap` until the first replacement.
    /// Kept for the breaker's life (a replaced breaker holds one window more).
    first: Arc<Window>,
    /// Rejections counted by the windows replaced so far.
    retired_rejections: AtomicU64,
}

impl Windows {
    pub(crate) fn new(spec: WindowSpec) -> Windows {
        Windows::from_window(Window::new(spec))
    }

    /// Windows starting with `window` (tests pick its stripes).
    pub(crate) fn from_window(window: Window) -> Windows {
        let first = Arc::new(window);
        Windows {
            version: AtomicU64::new(first.version),
            current: ArcSwap::new(first.clone()),
            first,
            retired_rejections: AtomicU64::new(0),
        }
    }

    /// The window the breaker was built with, while it is current.
    #[inline(always)]
    pub(crate) fn first(&self) -> Option<&Arc<Window>> {
        (self.version() == self.first.version).then_some(&self.first)
    }

    /// The version of the current window.
    #[inline(always)]
    pub(crate) fn version(&self) -> u64 {
        // Relaxed: a hint to reload. A caller that reads an old value uses the window it holds,
        // as if it had called just before the change; its result is then dropped (module docs).
        // The window itself is loaded through the `ArcSwap`, which orders its contents.
        self.version.load(Ordering::Relaxed)
    }

    /// The current window, to keep (a service's copy).
    pub(crate) fn load_full(&self) -> Arc<Window> {
        self.current.load_full()
    }

    /// The current window, for a moment (stats, a clear).
    pub(crate) fn load(&self) -> Loaded {
        self.current.load()
    }

    /// The current window's shape.
    pub(crate) fn spec(&self) -> WindowSpec {
        self.current.load().spec
    }

    /// Installs an empty window of shape `spec` (even if it is the current shape).
    pub(crate) fn replace(&self, spec: WindowSpec) {
        let old = self.current.rcu(|current| {
            let mut window = Window::new(spec);
            // Versions grow along the chain of swaps, so racing replacements end with the
            // counter at the version of the window that is current.
            window.version = current.version.wrapping_add(1);
            window
        });
        // Relaxed: a statistic; a rejection a racing call adds to the old window after this
        // read is lost, as its other counts are.
        self.retired_rejections
            .fetch_add(old.rejections(), Ordering::Relaxed);
        // Relaxed: a hint (see `version`); `fetch_max` so that of two racing replacements the
        // later window's version stays.
        self.version
            .fetch_max(old.version.wrapping_add(1), Ordering::Relaxed);
    }

    /// Rejections counted so far, by every window the breaker had.
    pub(crate) fn rejections(&self) -> u64 {
        // Relaxed: a statistic.
        self.retired_rejections
            .load(Ordering::Relaxed)
            .wrapping_add(self.current.load().rejections())
    }
}

#[cfg(not(harden_loom))]
pub(crate) type Loaded = arc_swap::Guard<Arc<Window>>;

/// Under loom, a lock stands in for the `ArcSwap`, whose own atomics loom cannot see: the models
/// check the protocol around the swap (versions, which window a call records into), not
/// `arc-swap` itself.
#[cfg(harden_loom)]
#[derive(Debug)]
struct ArcSwap<T>(loom::sync::Mutex<Arc<T>>);

#[cfg(harden_loom)]
pub(crate) struct Loaded(Arc<Window>);

#[cfg(harden_loom)]
impl std::ops::Deref for Loaded {
    type Target = Arc<Window>;
    fn deref(&self) -> &Arc<Window> {
        &self.0
    }
}

#[cfg(harden_loom)]
impl ArcSwap<Window> {
    fn new(window: Arc<Window>) -> Self {
        ArcSwap(loom::sync::Mutex::new(window))
    }

    fn load(&self) -> Loaded {
        Loaded(self.load_full())
    }

    fn load_full(&self) -> Arc<Window> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn rcu(&self, f: impl Fn(&Arc<Window>) -> Window) -> Arc<Window> {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let next = Arc::new(f(&current));
        std::mem::replace(&mut *current, next)
    }
}
