//! The breaker's state machine, driven with explicit `now` readings so loom models and property
//! tests can run it without tokio.
//!
//! All state lives in one packed `AtomicU64` (the *word*): state tag, half-open probes in flight,
//! half-open successes, consecutive re-opens, and a generation bumped by every transition and manual
//! change. A call remembers the generation it started in; its result is neither recorded nor judged
//! once the generation has moved on, and a transition is a CAS from the exact word the caller judged,
//! so concurrent callers can never make the same transition twice.
//!
//! A second word, `aux`, holds a time for the current generation: the end of the open period while
//! Open, the last probe activity while HalfOpen; microseconds since the breaker was built, in 55
//! bits (1 142 years: more than the clock's whole `u64` range of nanoseconds, so no time saturates
//! or wraps while the breaker lives). It is tagged with the low 9 bits of its generation. The
//! protocol, checked by loom models:
//!
//! - every generation bump (transitions *and* manual changes) is followed by a publication of
//!   `aux` for the new generation, so the stored tag lags the word by at most the publications
//!   in flight, never by the number of resets made so far;
//! - a publication lands only while the word still holds its generation (checked between an
//!   Acquire load of `aux` and a compare-and-swap from that value), so a stalled publisher of an
//!   old generation can never replace the current generation's value;
//! - a reader compares the tag for equality (no wrapping order, which refused every publication
//!   once 32 768 unpublished bumps had passed); a reader of an Open or HalfOpen generation that
//!   finds no value for it yet treats the time as "just now" and publishes that itself, so a
//!   deadline whose publisher stalls cannot keep the breaker open.

use std::sync::Arc as StdArc;
use std::time::Duration;

use super::config::Config;
use super::error::CircuitOpen;
use super::name::Name;
use super::observe::Observe;
use super::tune::Tunables;
use super::window::Counts;
use super::window::{Window, Windows};
use super::{State, Stats};
use crate::circuit_breaker::Outcome;
use crate::clock::Clock;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

const TAG_MASK: u64 = 0b111;
const COUNT_BITS: u32 = 12;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const INFLIGHT_SHIFT: u32 = 3;
const SUCC_SHIFT: u32 = INFLIGHT_SHIFT + COUNT_BITS;
const REOPEN_SHIFT: u32 = SUCC_SHIFT + COUNT_BITS;
const REOPEN_MASK: u64 = 0xFF;
const GEN_SHIFT: u32 = REOPEN_SHIFT + 8;
const GEN_MASK: u64 = (1 << (64 - GEN_SHIFT)) - 1;

const AUX_TIME_BITS: u32 = 55;
const AUX_TIME_MASK: u64 = (1 << AUX_TIME_BITS) - 1;
const AUX_TAG_MASK: u64 = (1 << (64 - AUX_TIME_BITS)) - 1;

/// The unpacked state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word {
    state: State,
    inflight: u32,
    successes: u32,
    reopens: u32,
    gen: u32,
}

impl Word {
    fn unpack(w: u64) -> Word {
        Word {
            state: tag_state(w),
            inflight: ((w >> INFLIGHT_SHIFT) & COUNT_MASK) as u32,
            successes: ((w >> SUCC_SHIFT) & COUNT_MASK) as u32,
            reopens: ((w >> REOPEN_SHIFT) & REOPEN_MASK) as u32,
            gen: (w >> GEN_SHIFT) as u32,
        }
    }

    fn pack(self) -> u64 {
        let tag = match self.state {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
        };
        tag | (u64::from(self.inflight) & COUNT_MASK) << INFLIGHT_SHIFT
            | (u64::from(self.successes) & COUNT_MASK) << SUCC_SHIFT
            | (u64::from(self.reopens) & REOPEN_MASK) << REOPEN_SHIFT
            | (u64::from(self.gen) & GEN_MASK) << GEN_SHIFT
    }

    /// A fresh word for a new generation.
    fn next(self, state: State) -> Word {
        Word {
            state,
            inflight: 0,
            successes: 0,
            reopens: self.reopens,
            gen: ((u64::from(self.gen) + 1) & GEN_MASK) as u32,
        }
    }
}

fn tag_state(w: u64) -> State {
    match w & TAG_MASK {
        0 => State::Closed,
        1 => State::Open,
        2 => State::HalfOpen,
        3 => State::ForcedOpen,
        _ => State::Disabled,
    }
}

fn gen_of(w: u64) -> u32 {
    (w >> GEN_SHIFT) as u32
}

#[derive(Debug)]
struct Hot {
    word: AtomicU64,
    aux: AtomicU64,
}

#[derive(Debug)]
struct Counters {
    consecutive: AtomicU32,
}

/// Keeps a hot atomic on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

/// What a call was admitted as.
// repr(u32): a whole word, so copying a `Permit` never reads a byte store back as a wider load
// (a store-forwarding stall).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    /// A normal call while closed: recorded in the window and judged.
    Closed,
    /// A half-open probe holding one of the probe slots.
    Probe,
    /// A call while disabled: passes through, counted nowhere.
    Passthrough,
}

/// Admission of one call; hand it back through [`Core::finish`] or [`Core::release`].
///
/// Eight bytes, so it moves in one register: a 16-byte permit (with the admission time) would be
/// built with narrow stores and copied with one wide load, a failed store forward on every call.
/// The slow-call rule's start time travels next to it ([`Core::call_start`]).
#[derive(Debug)]
#[must_use]
pub(crate) struct Permit {
    gen: u32,
    kind: Kind,
}

impl Permit {
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }
}

/// Gives a permit back if dropped armed: a user callback (listener) that panics while a probe
/// slot is held cannot leak the slot until `max_probe_duration`.
struct ReleaseOnUnwind<'a> {
    core: &'a Core,
    permit: Option<Permit>,
}

impl<'a> ReleaseOnUnwind<'a> {
    #[inline]
    fn new(core: &'a Core, permit: Permit) -> Self {
        ReleaseOnUnwind {
            core,
            permit: Some(permit),
        }
    }

    #[inline]
    fn defuse(mut self) -> Permit {
        match self.permit.take() {
            Some(permit) => permit,
            None => unreachable!("armed until defused"),
        }
    }
}

impl Drop for ReleaseOnUnwind<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.core.release(permit);
        }
    }
}

/// A rejected admission: the time until the next probe in nanoseconds, `u64::MAX` for none.
/// Eight bytes, so `Result<Permit, Rejection>` comes back in registers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejection(u64);

impl Rejection {
    pub(crate) fn retry_after(self) -> Option<Duration> {
        (self.0 != u64::MAX).then(|| Duration::from_nanos(self.0))
    }

    /// The error for a rejection by the breaker named `breaker`.
    #[inline]
    // The thin `&String` is what the rejecting future keeps (see `future.rs`).
    #[allow(clippy::ptr_arg)]
    pub(crate) fn into_error(self, breaker: Name) -> CircuitOpen {
        CircuitOpen::from_breaker(self.retry_after(), breaker)
    }
}

/// The shared state of one breaker.
#[derive(Debug)]
pub(crate) struct Core {
    /// The state word and `aux`, read together on the open path: one line.
    hot: Padded<Hot>,
    /// The run of failures while closed (the consecutive-failure rule).
    counters: Padded<Counters>,
    /// The window; a call records into the one its service holds (see `Windows`).
    pub(crate) windows: Windows,
    pub(crate) config: Config,
    /// The settings a running breaker can change.
    pub(crate) tune: Tunables,
    /// Clock reading at creation; `aux` times are microseconds since then.
    epoch: u64,
    pub(crate) clock: Clock,
    tx: tokio::sync::watch::Sender<State>,
    pub(crate) observe: Observe,
}

impl Core {
    pub(crate) fn new(config: Config, clock: Clock, epoch: u64) -> Core {
        let (tx, _) = tokio::sync::watch::channel(State::Closed);
        Core {
            hot: Padded(Hot {
                word: AtomicU64::new(0),
                aux: AtomicU64::new(0),
            }),
            counters: Padded(Counters {
                consecutive: AtomicU32::new(0),
            }),
            windows: Windows::new(config.window),
            tune: Tunables::new(&config),
            observe: Observe::new(&config.name, config.listener.0.clone()),
            config,
            epoch,
            clock,
            tx,
        }
    }

    /// Starts the consecutive-failure rule's run at zero (its rule changed).
    pub(crate) fn reset_run(&self) {
        // Relaxed: a heuristic run length, as in `judge`.
        self.counters.0.consecutive.store(0, Ordering::Relaxed);
    }

    pub(crate) fn name(&self) -> &StdArc<str> {
        &self.config.name
    }

    pub(crate) fn state(&self) -> State {
        // Acquire: a caller acting on the state sees what the transition published with it.
        tag_state(self.hot.0.word.load(Ordering::Acquire))
    }

    /// The current generation (bumped by every transition and manual change).
    #[cfg(test)]
    pub(crate) fn generation(&self) -> u32 {
        // Relaxed: diagnostic read for tests; nothing is published through it.
        gen_of(self.hot.0.word.load(Ordering::Relaxed))
    }

    /// While Open: the time until the next probe is admitted (zero once the open period is
    /// over). `None` in every other state.
    pub(crate) fn next_probe_in(&self, now: u64) -> Option<Duration> {
        // Acquire: pairs with the Release of the transition, as in `state`.
        let cur = self.hot.0.word.load(Ordering::Acquire);
        if tag_state(cur) != State::Open {
            return None;
        }
        Some(match self.aux_for(gen_of(cur)) {
            Some(until_us) => {
                let until = self.epoch.saturating_add(until_us.saturating_mul(1_000));
                Duration::from_nanos(until.saturating_sub(now))
            }
            // The opener has not published the deadline yet: it opened just now.
            None => Duration::from_nanos(self.tune.reset_timeout()),
        })
    }

    /// Whether `aux` holds a value of the word's current generation (loom models check it once
    /// every thread is done: the protocol of the module docs guarantees it then).
    #[cfg(all(test, harden_loom))]
    pub(crate) fn aux_is_current(&self) -> bool {
        // Acquire: pairs with the transitions' Release.
        self.aux_for(gen_of(self.hot.0.word.load(Ordering::Acquire)))
            .is_some()
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<State> {
        self.tx.subscribe()
    }

    #[cfg(all(test, not(harden_loom)))]
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Core>()
            + std::mem::size_of::<Window>()
            + self.windows.load().heap_bytes()
            + self.config.name.len()
    }

    #[cfg(all(test, harden_loom))]
    pub(crate) fn counts(&self, now: u64) -> Counts {
        self.windows.load().counts(now)
    }

    pub(crate) fn stats(&self, now: u64) -> Stats {
        let state = self.state();
        let c = self.windows.load().counts(now);
        let total = c.successes + c.failures;
        let judged = total >= self.tune.volume() && total > 0;
        let pct = |n: u64| judged.then(|| n as f64 * 100.0 / total as f64);
        Stats {
            state,
            successes: c.successes,
            failures: c.failures,
            slow_calls: c.slow,
            // Relaxed: a statistic; no other memory depends on it.
            rejections: self.windows.rejections(),
            failure_percentage: pct(c.failures),
            slow_call_percentage: self.tune.slow_call().and_then(|_| pct(c.slow)),
        }
    }

    fn us(&self, nanos: u64) -> u64 {
        (nanos.saturating_sub(self.epoch) / 1_000).min(AUX_TIME_MASK)
    }

    fn us_ceil(&self, nanos: u64) -> u64 {
        (nanos.saturating_sub(self.epoch).div_ceil(1_000)).min(AUX_TIME_MASK)
    }

    /// The `aux` time if it belongs to generation `gen`.
    #[inline]
    fn aux_for(&self, gen: u32) -> Option<u64> {
        // Acquire: pairs with the Release publishing it; the value is self-describing (tagged).
        let aux = self.hot.0.aux.load(Ordering::Acquire);
        ((aux >> AUX_TIME_BITS) == u64::from(gen) & AUX_TAG_MASK).then_some(aux & AUX_TIME_MASK)
    }

    /// Publish `time_us` for generation `gen` while the word still holds `gen` (see the module
    /// docs); a publisher whose generation has moved on leaves `aux` to the newer one's.
    fn publish_aux(&self, gen: u32, time_us: u64) {
        let new = ((u64::from(gen) & AUX_TAG_MASK) << AUX_TIME_BITS) | (time_us & AUX_TIME_MASK);
        // Acquire: a value published by a newer generation's publisher (after its word CAS) makes
        // the word load below see that newer generation, so we give up instead of overwriting.
        let mut cur = self.hot.0.aux.load(Ordering::Acquire);
        loop {
            // Acquire: orders this check after the `aux` load above (or the failed CAS below).
            if gen_of(self.hot.0.word.load(Ordering::Acquire)) != gen {
                return;
            }
            // Release: readers that see the tag see a complete value. Acquire on failure: the
            // fresh value is re-checked against the word as above.
            match self.hot.0.aux.compare_exchange_weak(
                cur,
                new,
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Admit or reject a call. `now` is read only when needed: never for a closed breaker.
    #[inline]
    pub(crate) fn try_acquire_with(
        &self,
        window: &Window,
        now: impl FnOnce() -> u64,
    ) -> Result<Permit, Rejection> {
        // Acquire: pairs with the Release of the transition that stored this word.
        let cur = self.hot.0.word.load(Ordering::Acquire);
        if cur & TAG_MASK == 0 {
            return Ok(Permit {
                gen: gen_of(cur),
                kind: Kind::Closed,
            });
        }
        match tag_state(cur) {
            State::Open => {
                let now = now();
                // The common rejection, inline: open, and the open period has not ended yet.
                if let Some(until) = self.aux_for(gen_of(cur)) {
                    let until = self.epoch.saturating_add(until.saturating_mul(1_000));
                    if now < until {
                        // Whole microseconds, as the slow path (which works in them) reports.
                        let left = (until - now).div_ceil(1_000) * 1_000;
                        return Err(self.reject(window, Some(left)));
                    }
                }
                self.acquire_slow(window, cur, now)
            }
            // No clock read for a forced-open breaker: nothing about it depends on time.
            State::ForcedOpen => Err(self.reject(window, None)),
            _ => self.acquire_slow(window, cur, now()),
        }
    }

    /// Whether a call made now would be admitted, changing nothing: what `poll_ready` asks before
    /// it polls the inner service (tower's `load_shed` pattern; see the service docs). `now` is
    /// read only for Open and HalfOpen.
    #[inline]
    pub(crate) fn admits_with(&self, now: impl FnOnce() -> u64) -> bool {
        // Acquire: pairs with the Release of the transition that stored this word.
        let cur = self.hot.0.word.load(Ordering::Acquire);
        if cur & TAG_MASK == 0 {
            return true;
        }
        let now = now();
        // The common case inline, as in `try_acquire_with`: open, deadline published.
        if tag_state(cur) == State::Open {
            if let Some(until) = self.aux_for(gen_of(cur)) {
                return now >= self.epoch.saturating_add(until.saturating_mul(1_000));
            }
        }
        self.peek(cur, now).is_ok()
    }

    /// Reject a call whose `poll_ready` found the breaker rejecting (so the inner service was
    /// not polled): counted and reported like any rejection, with the time until the next probe
    /// as the breaker stands now (zero if it would admit one already).
    #[inline]
    pub(crate) fn shed(&self, window: &Window, now: u64) -> Rejection {
        // Acquire: as in `admits_with`.
        let cur = self.hot.0.word.load(Ordering::Acquire);
        if tag_state(cur) == State::Open {
            if let Some(until) = self.aux_for(gen_of(cur)) {
                let until = self.epoch.saturating_add(until.saturating_mul(1_000));
                // Whole microseconds, as `try_acquire_with` reports.
                let left = until.saturating_sub(now).div_ceil(1_000) * 1_000;
                return self.reject(window, Some(left));
            }
        }
        self.reject(window, self.peek(cur, now).err().unwrap_or(Some(0)))
    }

    /// What [`acquire_slow`](Self::acquire_slow) would decide for word `cur` at `now`, without
    /// transitions: `Ok` to admit, `Err(retry_after_nanos)` to reject.
    #[cold]
    fn peek(&self, cur: u64, now: u64) -> Result<(), Option<u64>> {
        let w = Word::unpack(cur);
        let now_us = self.us(now);
        match w.state {
            State::Closed | State::Disabled => Ok(()),
            State::ForcedOpen => Err(None),
            State::Open => match self.aux_for(w.gen) {
                Some(until) if now_us >= until => Ok(()),
                Some(until) => Err(Some((until - now_us) * 1_000)),
                None => Err(Some(self.tune.reset_timeout())),
            },
            State::HalfOpen if w.inflight < self.tune.half_open_max_calls() => Ok(()),
            State::HalfOpen => match self.aux_for(w.gen) {
                Some(active) => {
                    let end = active.saturating_add(self.tune.max_probe() / 1_000);
                    if now_us >= end {
                        Ok(())
                    } else {
                        Err(Some((end - now_us) * 1_000))
                    }
                }
                None => Err(Some(self.tune.max_probe())),
            },
        }
    }

    /// [`try_acquire_with`](Self::try_acquire_with) with a known `now`.
    #[cfg(test)]
    pub(crate) fn try_acquire(&self, now: u64) -> Result<Permit, CircuitOpen> {
        self.try_acquire_with(&self.windows.load(), || now)
            .map_err(|rejection| rejection.into_error(self.config.rejection_name.clone()))
    }

    #[cold]
    fn acquire_slow(&self, window: &Window, mut cur: u64, now: u64) -> Result<Permit, Rejection> {
        let now_us = self.us(now);
        loop {
            let w = Word::unpack(cur);
            let permit = |gen, kind| Permit { gen, kind };
            let next = match w.state {
                State::Closed => return Ok(permit(w.gen, Kind::Closed)),
                State::Disabled => return Ok(permit(w.gen, Kind::Passthrough)),
                State::ForcedOpen => return Err(self.reject(window, None)),
                State::Open => match self.aux_for(w.gen) {
                    Some(until) if now_us >= until => Word {
                        inflight: 1,
                        ..w.next(State::HalfOpen)
                    },
                    Some(until) => return Err(self.reject(window, Some((until - now_us) * 1_000))),
                    // The opener has not published the deadline yet: it opened just now. Publish
                    // that deadline ourselves, so a stalled opener cannot keep the breaker open.
                    None => {
                        let open = self.tune.open_duration(w.reopens, now);
                        let until = self.us_ceil(now.saturating_add(open));
                        self.publish_aux(w.gen, until);
                        return Err(self.reject(window, Some((until - now_us) * 1_000)));
                    }
                },
                State::HalfOpen if w.inflight < self.tune.half_open_max_calls() => Word {
                    inflight: w.inflight + 1,
                    ..w
                },
                State::HalfOpen => {
                    let bound = self.tune.max_probe() / 1_000;
                    match self.aux_for(w.gen) {
                        // Every slot is held by probes that have shown no sign of life for the
                        // bound: start a new probe generation; the hung probes' results are ignored.
                        Some(active) if now_us >= active.saturating_add(bound) => Word {
                            inflight: 1,
                            ..w.next(State::HalfOpen)
                        },
                        Some(active) => {
                            let left = active.saturating_add(bound) - now_us;
                            return Err(self.reject(window, Some(left * 1_000)));
                        }
                        // No activity published for this generation yet: it is "just now".
                        None => {
                            self.publish_aux(w.gen, now_us);
                            return Err(self.reject(window, Some(self.tune.max_probe())));
                        }
                    }
                }
            };
            // AcqRel: Release publishes the transition; Acquire orders our reads after the winner's
            // writes. Acquire on failure: we loop with the fresh word and read what it published.
            match self.hot.0.word.compare_exchange_weak(
                cur,
                next.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.publish_aux(next.gen, now_us);
                    // The listener runs while we hold the slot: if it panics, give the slot back.
                    let guard = ReleaseOnUnwind::new(self, permit(next.gen, Kind::Probe));
                    if w.state == State::Open {
                        self.transitioned(State::Open, State::HalfOpen);
                    } else if next.gen != w.gen {
                        tracing::info!(breaker = %self.config.name, "circuit breaker admitted a new probe past hung ones");
                    }
                    return Ok(guard.defuse());
                }
                Err(actual) => cur = actual,
            }
        }
    }

    #[inline]
    fn reject(&self, window: &Window, retry_after_nanos: Option<u64>) -> Rejection {
        window.count_rejection();
        self.observe.rejected();
        let rejection = Rejection(retry_after_nanos.unwrap_or(u64::MAX));
        if tracing::enabled!(tracing::Level::DEBUG) || self.observe.has_listener() {
            self.rejected(rejection.retry_after());
        }
        rejection
    }

    #[cold]
    #[inline(never)]
    fn rejected(&self, retry_after: Option<Duration>) {
        tracing::debug!(breaker = %self.config.name, ?retry_after, "circuit breaker rejected a call");
        self.observe.emit_rejected(retry_after);
    }

    /// Give a permit back without a result (the call was cancelled): frees a probe slot.
    pub(crate) fn release(&self, permit: Permit) {
        if permit.kind == Kind::Probe {
            self.probe_done(permit.gen, None, 0);
        }
    }

    /// Record and judge a finished call, reading the breaker's clock only if something needs it
    /// (a closed success into a count window needs none).
    #[inline(always)]
    pub(crate) fn finish(&self, window: &Window, permit: Permit, start: u64, outcome: Outcome) {
        self.on_result_with(window, permit, start, outcome, || self.clock.now());
    }

    /// The start time of an admitted call for the slow-call rule, read only when the rule is on
    /// (`u64::MAX` otherwise); hand it to [`finish`](Self::finish) with the permit.
    #[inline]
    pub(crate) fn call_start(&self) -> u64 {
        if self.tune.slow_call().is_some() {
            self.clock.now()
        } else {
            // Never slow, should the rule be turned on before the call ends.
            u64::MAX
        }
    }

    /// Record and judge a call admitted at `start` that ended at `now`.
    #[cfg(test)]
    pub(crate) fn on_result(&self, permit: Permit, start: u64, outcome: Outcome, now: u64) {
        self.on_result_with(&self.windows.load(), permit, start, outcome, || now);
    }

    /// [`on_result`](Self::on_result) of a call that started on `window`.
    #[cfg(all(test, harden_loom))]
    pub(crate) fn on_result_in(
        &self,
        window: &Window,
        permit: Permit,
        start: u64,
        outcome: Outcome,
        now: u64,
    ) {
        self.on_result_with(window, permit, start, outcome, || now);
    }

    #[inline(always)]
    fn on_result_with(
        &self,
        window: &Window,
        permit: Permit,
        start: u64,
        outcome: Outcome,
        now: impl FnOnce() -> u64,
    ) {
        // The common case, kept small enough to inline: a closed call succeeded and no rule needs
        // more than the window record.
        if permit.kind == Kind::Closed && outcome == Outcome::Success && self.tune.plain_success() {
            self.observe.finished(outcome, false);
            // Acquire: pairs with the Release of transitions (a reset's window clear happens before).
            let cur = self.hot.0.word.load(Ordering::Acquire);
            if cur & TAG_MASK == 0 && gen_of(cur) == permit.gen {
                window.record_with(now, false, false);
            }
            return;
        }
        self.on_result_slow(window, permit, start, outcome, now());
    }

    #[inline(never)]
    fn on_result_slow(
        &self,
        window: &Window,
        permit: Permit,
        start: u64,
        outcome: Outcome,
        now: u64,
    ) {
        let slow = match self.tune.slow_call() {
            Some((threshold, _)) => now.saturating_sub(start) >= threshold,
            None => false,
        };
        // The listener runs while a probe still holds its slot: if it panics, give the slot back.
        let guard = ReleaseOnUnwind::new(self, permit);
        self.observe.finished(outcome, slow);
        let permit = guard.defuse();
        match permit.kind {
            Kind::Passthrough => {}
            Kind::Probe => {
                let failed = match outcome {
                    Outcome::Ignored => None,
                    Outcome::Failure => Some(true),
                    Outcome::Success => Some(slow),
                };
                self.probe_done(permit.gen, failed, now);
            }
            Kind::Closed => self.closed_done(window, permit.gen, outcome, slow, now),
        }
    }

    #[inline]
    fn closed_done(&self, window: &Window, gen: u32, outcome: Outcome, slow: bool, now: u64) {
        // Acquire: pairs with the Release of transitions (a reset's window clear happens before).
        let cur = self.hot.0.word.load(Ordering::Acquire);
        if cur & TAG_MASK != 0 || gen_of(cur) != gen || outcome == Outcome::Ignored {
            return;
        }
        // A call that started on a replaced window is counted in neither (see `Windows`).
        if window.version() != self.windows.version() {
            return;
        }
        let failure = outcome == Outcome::Failure;
        window.record(now, failure, slow);
        if failure || slow || self.tune.consecutive_failures().is_some() {
            self.judge(window, cur, failure, slow, now);
        }
    }

    /// After a closed call of word `cur` was recorded: trip if the rules say so.
    #[inline(never)]
    fn judge(&self, window: &Window, cur: u64, failure: bool, slow: bool, now: u64) {
        let mut trip = false;
        if let Some(n) = self.tune.consecutive_failures() {
            if failure {
                // Relaxed: a heuristic run length; the trip itself is decided by the CAS below.
                trip = self
                    .counters
                    .0
                    .consecutive
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1)
                    >= n;
            } else if self.counters.0.consecutive.load(Ordering::Relaxed) != 0 {
                // Relaxed: as above; load first so successes do not write a shared line.
                self.counters.0.consecutive.store(0, Ordering::Relaxed);
            }
        }
        if !failure && !slow {
            return;
        }
        if !trip {
            // Of two concurrent judges at least one sees the other's record, so two racing
            // failures that together reach the threshold cannot both miss it (the window's
            // `judge_counts` orders its reads after our record).
            let c = window.judge_counts(now, self.tune.slow_call().is_some(), |c: &Counts| {
                self.over(c)
            });
            let total = c.successes + c.failures;
            if total >= self.tune.volume() && total > 0 {
                self.observe.judged(c.failures as f64 / total as f64);
                trip = self.over(&c);
            }
        }
        if trip {
            let next = Word::unpack(cur).next(State::Open);
            let next = Word { reopens: 0, ..next };
            // AcqRel: Release publishes the transition. One attempt: a closed word only changes with
            // its generation, so failure means someone else already moved the breaker on.
            if self
                .hot
                .0
                .word
                .compare_exchange(cur, next.pack(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let until = now.saturating_add(self.tune.open_duration(0, now));
                self.publish_aux(next.gen, self.us_ceil(until));
                self.transitioned(State::Closed, State::Open);
            }
        }
    }

    /// Whether the rates over `c` reach the error threshold or the slow-call rule, whatever
    /// the volume. Linear in the counts, which the window's judge relies on (its shares).
    #[inline]
    fn over(&self, c: &Counts) -> bool {
        let total = (c.successes + c.failures) as f64;
        c.failures as f64 * 100.0 >= self.tune.threshold() * total
            || matches!(self.tune.slow_call(), Some((_, pct)) if c.slow as f64 * 100.0 >= pct * total)
    }

    /// A probe of generation `gen` ended: `None` = no verdict (cancelled or ignored),
    /// `Some(true)` = failed, `Some(false)` = succeeded.
    fn probe_done(&self, gen: u32, failed: Option<bool>, now: u64) {
        // Acquire: pairs with the Release of transitions.
        let mut cur = self.hot.0.word.load(Ordering::Acquire);
        loop {
            let w = Word::unpack(cur);
            if w.state != State::HalfOpen || w.gen != gen {
                return;
            }
            let next = match failed {
                None => Word {
                    inflight: w.inflight.saturating_sub(1),
                    ..w
                },
                Some(true) => Word {
                    reopens: (w.reopens + 1).min(REOPEN_MASK as u32),
                    ..w.next(State::Open)
                },
                Some(false) if w.successes + 1 >= self.tune.half_open_max_calls() => {
                    // Cleared before closing so the new closed generation starts empty.
                    self.windows.load().clear();
                    // Relaxed: the transition's Release below publishes it.
                    self.counters.0.consecutive.store(0, Ordering::Relaxed);
                    Word {
                        reopens: 0,
                        ..w.next(State::Closed)
                    }
                }
                Some(false) => Word {
                    inflight: w.inflight.saturating_sub(1),
                    successes: w.successes + 1,
                    ..w
                },
            };
            // AcqRel: Release publishes the transition. Acquire on failure: we re-judge the fresh word.
            match self.hot.0.word.compare_exchange_weak(
                cur,
                next.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    match next.state {
                        State::Open => {
                            let until =
                                now.saturating_add(self.tune.open_duration(next.reopens, now));
                            self.publish_aux(next.gen, self.us_ceil(until));
                        }
                        State::HalfOpen if failed.is_some() => {
                            self.publish_aux(next.gen, self.us(now));
                        }
                        State::HalfOpen => {}
                        // Every generation publishes, so the stored tag never lags (module docs).
                        _ => self.publish_aux(next.gen, 0),
                    }
                    if next.state != State::HalfOpen {
                        self.transitioned(State::HalfOpen, next.state);
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Move to `state` from wherever the breaker is (manual control).
    pub(crate) fn set_manual(&self, state: State) {
        if state == State::Closed {
            self.clear_counts();
        }
        // Relaxed: the CAS re-validates.
        let mut cur = self.hot.0.word.load(Ordering::Relaxed);
        loop {
            let w = Word::unpack(cur);
            let next = Word {
                reopens: 0,
                ..w.next(state)
            };
            // AcqRel: Release publishes the change; Relaxed on failure: we loop.
            match self.hot.0.word.compare_exchange_weak(
                cur,
                next.pack(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // Every generation publishes, so the stored tag never lags (module docs):
                    // without it, 32 768 resets made the next trip's deadline look stale.
                    self.publish_aux(next.gen, 0);
                    if state == State::Closed {
                        // Again after the CAS: a call of the old generation that recorded and won
                        // a trip CAS between our first clear and our CAS left its failure behind.
                        self.clear_counts();
                    }
                    if w.state != state {
                        self.transitioned(w.state, state);
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    fn clear_counts(&self) {
        self.windows.load().clear();
        // Relaxed: published by the Release of the CAS that follows (or preceded) it.
        self.counters.0.consecutive.store(0, Ordering::Relaxed);
    }

    fn transitioned(&self, from: State, to: State) {
        tracing::info!(breaker = %self.config.name, ?from, ?to, "circuit breaker state changed");
        self.observe.transition(from, to);
        // Under loom the watch's std lock could be held across a loom yield point; skip it there.
        #[cfg(not(harden_loom))]
        self.tx.send_if_modified(|seen| {
            // Read under the watch's lock: whichever transition notifies last publishes the latest
            // state, even if transitions notify out of order; the one-hot gauges follow the same rule.
            let now = self.state();
            self.observe.state_gauges(now);
            let changed = *seen != now;
            *seen = now;
            changed
        });
        #[cfg(harden_loom)]
        self.observe.state_gauges(self.state());
    }
}

#[cfg(all(test, not(harden_loom)))]
mod tests {
    use super::*;
    use crate::circuit_breaker::config::CircuitBreakerBuilder;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;
    const YEAR: u64 = 365 * 24 * 3600 * SEC;

    fn core(b: CircuitBreakerBuilder) -> Core {
        Core::new(b.validate().expect("valid"), Clock::new(), 0)
    }

    fn trip(core: &Core, now: u64) {
        let p = core.try_acquire(now).expect("closed admits");
        core.on_result(p, now, Outcome::Failure, now);
        assert_eq!(core.state(), State::Open);
    }

    // Deadlines saturated 8.9 years after build: a trip let the next call through as a probe.
    #[test]
    fn open_deadlines_and_probe_bounds_hold_for_the_clocks_whole_range() {
        for t in [
            9 * YEAR,
            100 * YEAR,
            500 * YEAR,
            (u64::MAX / SEC - 60) * SEC,
        ] {
            let core = core(
                CircuitBreakerBuilder::new()
                    .volume_threshold(1)
                    .reset_timeout(std::time::Duration::from_secs(1))
                    .max_probe_duration(std::time::Duration::from_secs(10)),
            );
            trip(&core, t);
            let err = core.try_acquire(t + MS).expect_err("open rejects");
            assert_eq!(
                err.retry_after(),
                Some(Duration::from_millis(999)),
                "at {t}"
            );
            assert_eq!(core.next_probe_in(t + MS), Some(Duration::from_millis(999)));
            assert_eq!(core.next_probe_in(t + SEC), Some(Duration::ZERO));
            let hung = core
                .try_acquire(t + SEC)
                .expect("a probe after reset_timeout");
            assert_eq!(hung.kind(), Kind::Probe);
            assert!(core.try_acquire(t + 6 * SEC).is_err(), "the slot is taken");
            let fresh = core
                .try_acquire(t + 11 * SEC)
                .expect("past max_probe_duration a new probe is admitted");
            core.on_result(fresh, t + 11 * SEC, Outcome::Success, t + 11 * SEC);
            assert_eq!(core.state(), State::Closed, "at {t}");
            core.release(hung);
        }
    }

    // Past 2^60 ns of clock the window counted nothing, so the breaker never opened.
    #[test]
    fn an_old_breaker_still_trips() {
        for t in [
            (1 << 60) + 5 * SEC,
            100 * YEAR,
            500 * YEAR,
            (u64::MAX / SEC - 60) * SEC,
        ] {
            let core = core(CircuitBreakerBuilder::new().volume_threshold(2));
            let p = core.try_acquire(t).unwrap();
            core.on_result(p, t, Outcome::Failure, t);
            assert_eq!(core.stats(t).failures, 1, "at {t}");
            let p = core.try_acquire(t).unwrap();
            core.on_result(p, t, Outcome::Failure, t + MS);
            assert_eq!(core.state(), State::Open, "at {t}");
        }
    }

    // After 32 768 resets the next trip's deadline was refused as older: open forever.
    #[test]
    fn many_manual_changes_never_hide_the_next_open_deadline() {
        let core = core(
            CircuitBreakerBuilder::new()
                .volume_threshold(1)
                .reset_timeout(std::time::Duration::from_secs(1)),
        );
        for i in 0..100_000u32 {
            core.set_manual(match i % 3 {
                0 => State::Closed,
                1 => State::ForcedOpen,
                _ => State::Disabled,
            });
        }
        core.set_manual(State::Closed);
        trip(&core, SEC);
        assert_eq!(core.next_probe_in(SEC), Some(Duration::from_secs(1)));
        let probe = core.try_acquire(3600 * SEC).expect("a probe an hour later");
        core.on_result(probe, 3600 * SEC, Outcome::Success, 3600 * SEC);
        assert_eq!(core.state(), State::Closed);
    }
}
