//! The response future of [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::backoff::{random_u64, Backoff};
use super::budget::BudgetHandle;
use super::error::{BudgetExhausted, RetryAfterTooLong};
use super::policy::{CopyRequest, EnforceTotal, RetryClassifier, RetryDecision, RetryMetrics};
use super::trace::{GiveUp, Trace, What};
use crate::clock::duration_to_nanos;
use crate::error::is_rejection;
use crate::metrics;
use crate::timeout::error::Elapsed;
use crate::BoxError;

pin_project! {
    /// The response future of [`Retry`](super::Retry): the first attempt, then for each retry a
    /// backoff sleep, the inner service's `poll_ready`, and the next attempt.
    ///
    /// Dropping it cancels the current attempt or backoff; no further attempt is made.
    pub struct ResponseFuture<S, Req, C, H>
    where
        S: Service<Req>,
    {
        // The call's span, when a subscriber listens. First, and beside `replay` rather than in
        // it: elsewhere its drop made the future's drop a call on every response.
        trace: Trace,
        #[pin]
        state: State<S::Future>,
        replay: Replay<S, Req, C, H>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Calling { #[pin] future: F },
        // Sleeping before the next attempt (the timer is `Replay::timer`).
        Waiting,
        // Waiting for the inner service to be ready for the next attempt.
        Checking,
        // The deadline in scope had passed when the call was made: no attempt.
        Expired,
    }
}

/// The deadline in scope when a call was made, for a policy that ends calls there
/// ([`RetryPolicy::capping_at_scope`](super::RetryPolicy)): the deadline and its timer, boxed so
/// that a call without one carries a null pointer ([`ColdBox`]).
#[cfg(feature = "http")]
pub(crate) struct Scope(ColdBox<Bound>);

/// Without the feature `http` there is no deadline in scope.
#[cfg(not(feature = "http"))]
pub(crate) struct Scope;

#[cfg(feature = "http")]
pin_project! {
    struct Bound {
        deadline: crate::deadline::Deadline,
        #[pin]
        sleep: Sleep,
    }
}

impl Scope {
    /// No deadline.
    #[inline]
    pub(crate) const fn none() -> Scope {
        #[cfg(feature = "http")]
        {
            Scope(ColdBox::none())
        }
        #[cfg(not(feature = "http"))]
        {
            Scope
        }
    }

    /// The deadline in scope now if `caps` (else none); `None` when it has passed.
    #[inline]
    pub(crate) fn current(caps: bool) -> Option<Scope> {
        #[cfg(feature = "http")]
        if caps {
            if let Some(deadline) = crate::deadline::Deadline::current() {
                return Scope::bound(deadline);
            }
        }
        let _ = caps;
        Some(Scope::none())
    }

    #[cfg(feature = "http")]
    #[cold]
    #[inline(never)]
    fn bound(deadline: crate::deadline::Deadline) -> Option<Scope> {
        if deadline.is_expired() {
            return None;
        }
        Some(Scope(ColdBox(ManuallyDrop::new(Some(Box::pin(Bound {
            deadline,
            sleep: tokio::time::sleep_until(deadline.instant()),
        }))))))
    }

    /// Whether there is a deadline.
    #[inline(always)]
    fn is_some(&self) -> bool {
        #[cfg(feature = "http")]
        {
            self.0.is_some()
        }
        #[cfg(not(feature = "http"))]
        {
            false
        }
    }
}

/// What a retry needs. Written in full by every call (a branch here made the compiler build it
/// on the stack and copy it), so it holds nothing a retry can make later: the previous delay
/// lives with the timer, allocated by the first retry that waits.
pub(crate) struct Replay<S, Req, C, H> {
    /// The copy of the request for the next attempt; `None` when the request cannot be
    /// replayed (one attempt only, or the copy hook said no) and once no further attempt may be
    /// made. Apart from `service`, so that the copy is moved into place once, not as a pair.
    pub(crate) next: Option<Req>,
    /// The inner service the next attempt calls: `Some` exactly when `next` is.
    pub(crate) service: Option<S>,
    pub(crate) classifier: C,
    pub(crate) copy: H,
    pub(crate) backoff: Backoff,
    pub(crate) budget: Option<BudgetHandle>,
    pub(crate) max_attempts: u32,
    /// Attempts started so far.
    pub(crate) attempts: u32,
    /// When the total timeout ends (see [`Deadline`]).
    pub(crate) deadline: Deadline,
    /// Whether this future ends the call at the total timeout itself.
    pub(crate) enforce_total: EnforceTotal,
    /// Whether it did: the call's outcome is the total timeout's [`Elapsed`].
    pub(crate) total_elapsed: bool,
    pub(crate) clock: crate::clock::Clock,
    /// The backoff timer and the previous delay, allocated by the first retry that waits and
    /// reset by later ones: a `Sleep` is over 100 bytes, which a call that is never retried
    /// should not carry or move.
    pub(crate) timer: Timer,
    pub(crate) metrics: metrics::Handles<RetryMetrics>,
    /// The deadline in scope the call ends at, for a policy that caps at it.
    pub(crate) scope: Scope,
}

pin_project! {
    /// The backoff timer, the delay the last retry waited (decorrelated jitter reads it), and
    /// the total timeout's timer once it is made.
    struct Wait {
        #[pin]
        sleep: Sleep,
        previous: Duration,
        #[pin]
        total: Option<Sleep>,
    }
}

/// The backoff timer of [`Replay`]: `None` until a retry first waits, so the previous delay
/// is zero while it is `None` (retries so far waited zero).
///
/// Boxed in a [`ColdBox`], so a response future without a timer drops a null pointer.
pub(crate) struct Timer(ColdBox<Wait>);

impl Timer {
    pub(crate) const fn new() -> Timer {
        Timer(ColdBox::none())
    }

    /// The delay the last retry waited; zero before the first.
    fn previous(&self) -> Duration {
        self.0.as_ref().map_or(Duration::ZERO, |b| b.previous)
    }

    /// Start waiting `delay` (zero: no wait, and no timer is made for it).
    fn start(&mut self, delay: Duration) {
        if delay.is_zero() {
            if let Some(b) = self.0.as_mut() {
                *b.as_mut().project().previous = Duration::ZERO;
            }
            return;
        }
        let now = tokio::time::Instant::now();
        // A delay past what an `Instant` holds (max_delay may be `Duration::MAX`): sleep for 30
        // years instead, as tokio's own `sleep` does.
        let deadline = now
            .checked_add(delay)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        match self.0.as_mut() {
            Some(b) => {
                let b = b.as_mut().project();
                b.sleep.reset(deadline);
                *b.previous = delay;
            }
            None => {
                *self.0 = Some(Box::pin(Wait {
                    sleep: tokio::time::sleep_until(deadline),
                    previous: delay,
                    total: None,
                }))
            }
        }
    }

    /// Whether the total timeout's timer is made.
    #[inline]
    fn has_total(&self) -> bool {
        self.0.as_ref().is_some_and(|b| b.total.is_some())
    }

    /// Make the total timeout's timer, ending at `end`.
    #[cold]
    fn start_total(&mut self, end: tokio::time::Instant) {
        match self.0.as_mut() {
            Some(b) => b
                .as_mut()
                .project()
                .total
                .set(Some(tokio::time::sleep_until(end))),
            None => {
                *self.0 = Some(Box::pin(Wait {
                    // Never polled before `start` resets it: no timer entry is made for it.
                    sleep: tokio::time::sleep_until(end),
                    previous: Duration::ZERO,
                    total: Some(tokio::time::sleep_until(end)),
                }))
            }
        }
    }

    /// Polls the total timeout's timer; pending while there is none.
    fn poll_total(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.0.as_mut() {
            Some(b) => match b.as_mut().project().total.as_pin_mut() {
                Some(total) => total.poll(cx),
                None => Poll::Pending,
            },
            None => Poll::Pending,
        }
    }

    /// Polls the wait started last.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.0.as_mut() {
            Some(b) => b.as_mut().project().sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

/// An optional pinned box whose drop is a null check inline and the box's own drop out of line:
/// left to the compiler, the drop of an `Option<Pin<Box<_>>>` became a call on every response
/// future, box or not.
pub(crate) struct ColdBox<T>(ManuallyDrop<Option<Pin<Box<T>>>>);

impl<T> ColdBox<T> {
    const fn none() -> ColdBox<T> {
        ColdBox(ManuallyDrop::new(None))
    }
}

impl<T> std::ops::Deref for ColdBox<T> {
    type Target = Option<Pin<Box<T>>>;

    #[inline(always)]
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<T> std::ops::DerefMut for ColdBox<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<T> Drop for ColdBox<T> {
    #[inline]
    fn drop(&mut self) {
        if self.0.is_some() {
            drop_cold(ManuallyDrop::into_inner(std::mem::replace(
                &mut self.0,
                ManuallyDrop::new(None),
            )));
        }
    }
}

#[cold]
#[inline(never)]
fn drop_cold<T>(boxed: Option<Pin<Box<T>>>) {
    drop(boxed);
}

impl<S, Req, C, H> ResponseFuture<S, Req, C, H>
where
    S: Service<Req>,
{
    pub(crate) fn new(future: S::Future, replay: Replay<S, Req, C, H>, trace: Trace) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            replay,
            trace,
        }
    }

    /// A call made after the deadline in scope: it fails with [`Elapsed`] without an attempt.
    pub(crate) fn expired(replay: Replay<S, Req, C, H>) -> Self {
        ResponseFuture {
            state: State::Expired,
            replay,
            trace: Trace::off(),
        }
    }

    /// Whether the call ended at the total timeout this future enforces.
    #[cfg(feature = "reqwest")]
    pub(crate) fn total_elapsed(&self) -> bool {
        self.replay.total_elapsed
    }
}

impl<S, Req, C, H> Replay<S, Req, C, H> {
    /// Whether a poll that left the call pending must also poll (or make) the total's timer.
    #[inline]
    fn watches_total(&self) -> bool {
        match self.enforce_total {
            EnforceTotal::No => false,
            EnforceTotal::Always => true,
            EnforceTotal::AfterFirstAttempt => self.timer.has_total(),
        }
    }

    /// Before the next attempt's backoff: make the total's timer if this future enforces the
    /// total and has none yet, then start waiting `delay`. `false`: the total is over.
    fn start_retry(&mut self, delay: Duration) -> bool {
        if self.enforce_total != EnforceTotal::No && !self.timer.has_total() && !self.start_total()
        {
            return false;
        }
        self.timer.start(delay);
        true
    }

    /// Make the total's timer at what is left of the total timeout; `false` if nothing is.
    #[cold]
    fn start_total(&mut self) -> bool {
        match self.deadline.enforced_remaining(self.clock) {
            Some(0) => false,
            Some(left) => {
                let now = tokio::time::Instant::now();
                let left = Duration::from_nanos(left);
                // As in `Timer::start`: an end past what an `Instant` holds sleeps 30 years.
                let end = now
                    .checked_add(left)
                    .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
                self.timer.start_total(end);
                true
            }
            None => true,
        }
    }

    /// The total timeout's outcome, counted.
    #[cold]
    fn end_at_total<Res>(&mut self) -> Result<Res, BoxError> {
        self.total_elapsed = true;
        if let Some(counter) = &self.metrics.total_timeouts {
            counter.increment(1);
        }
        Err(Elapsed::new().into())
    }

    /// After a poll that left the call pending: make the total's timer if it is due and poll
    /// it. `true`, with the outcome in `out`, if the total is over.
    #[inline(never)]
    fn poll_total<Res>(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Option<Result<Res, BoxError>>,
    ) -> bool {
        if !self.timer.has_total() && !self.start_total() {
            *out = Some(self.end_at_total());
            return true;
        }
        if self.timer.poll_total(cx).is_ready() {
            *out = Some(self.end_at_total());
            return true;
        }
        false
    }

    /// The classifier's decision for an attempt's outcome; harden's rejections and the retry's
    /// own errors are never retried, whatever the classifier says.
    #[inline]
    fn classify<Res>(&self, result: &Result<Res, BoxError>) -> RetryDecision
    where
        C: RetryClassifier<Res>,
    {
        if let Err(e) = result {
            // Rejections and the retry's own refusals are never retried, whatever the classifier
            // says: the next attempt would meet the same refusal.
            if is_rejection(&**e) || e.is::<BudgetExhausted>() || e.is::<RetryAfterTooLong>() {
                return RetryDecision::DoNotRetry;
            }
        }
        self.classifier.classify(result.as_ref())
    }

    /// What follows an attempt the classifier judged: the delay before the next one, or the
    /// end of the call. Withdraws from the budget when it says yes.
    fn decide(&mut self, decision: RetryDecision) -> Next {
        let requested = match decision {
            RetryDecision::DoNotRetry => {
                self.metrics.done.increment(1);
                return Next::Return;
            }
            RetryDecision::Retry => None,
            RetryDecision::RetryAfter(d) => Some(d),
        };
        if self.attempts >= self.max_attempts || self.next.is_none() {
            self.metrics.gave_up.increment(1);
            return Next::Return;
        }
        let delay = match requested {
            None => {
                let delay =
                    self.backoff
                        .jittered(self.attempts, self.timer.previous(), random_u64());
                // A backoff past the deadline in scope: the last outcome now, not at the deadline.
                if scoped_remaining().is_some_and(|left| duration_to_nanos(delay) >= left) {
                    self.metrics.gave_up.increment(1);
                    return Next::Return;
                }
                delay
            }
            Some(d) => {
                let delay = self.backoff.requested(d);
                let remaining = match (self.deadline.remaining(self.clock), scoped_remaining()) {
                    (Some(own), Some(scoped)) => Some(own.min(scoped)),
                    (own, scoped) => own.or(scoped),
                };
                if let Some(remaining) = remaining {
                    if duration_to_nanos(delay) > remaining {
                        self.metrics.gave_up.increment(1);
                        // The error carries what the server asked for, not the capped
                        // delay: that is what a caller (or an HTTP answer) should wait.
                        return Next::TooLong(RetryAfterTooLong::new(
                            d.max(delay),
                            Duration::from_nanos(remaining),
                        ));
                    }
                }
                delay
            }
        };
        if let Some(budget) = &self.budget {
            if !budget.try_withdraw() {
                self.metrics.gave_up.increment(1);
                self.metrics.budget_exhausted.increment(1);
                return Next::BudgetExhausted;
            }
        }
        self.metrics.retried.increment(1);
        Next::Retry(delay)
    }

    /// [`decide`](Self::decide), and the attempt's event when a subscriber listens.
    #[inline]
    fn decide_traced<Res>(
        &mut self,
        decision: RetryDecision,
        result: &Result<Res, BoxError>,
        trace: &Trace,
    ) -> Next
    where
        C: RetryClassifier<Res>,
    {
        let next = self.decide(decision);
        if trace.on() {
            let what = match (&next, decision) {
                (Next::Return, RetryDecision::DoNotRetry) => What::Done,
                (Next::Return, _) if self.attempts >= self.max_attempts => {
                    What::GiveUp(GiveUp::AttemptsExhausted)
                }
                (Next::Return, _) if self.next.is_none() => What::GiveUp(GiveUp::NotReplayable),
                (Next::Return, _) => What::GiveUp(GiveUp::Deadline),
                (Next::Retry(delay), decision) => What::Retry {
                    delay: *delay,
                    retry_after: match decision {
                        RetryDecision::RetryAfter(asked) => Some(asked),
                        _ => None,
                    },
                },
                (Next::BudgetExhausted, _) => What::GiveUp(GiveUp::Budget),
                (Next::TooLong(_), _) => What::GiveUp(GiveUp::TotalTimeout),
            };
            trace.attempt(self.attempts, &self.classifier, result.as_ref(), what);
        }
        next
    }
}

/// Nanoseconds left of the deadline in scope (a server's incoming deadline; see
/// `crate::deadline`), which bounds the retry as its total timeout does.
#[inline]
fn scoped_remaining() -> Option<u64> {
    #[cfg(feature = "http")]
    {
        crate::deadline::Deadline::current().map(|d| duration_to_nanos(d.remaining()))
    }
    #[cfg(not(feature = "http"))]
    {
        None
    }
}

/// What [`Replay::decide`] says after an attempt.
enum Next {
    /// Return the attempt's outcome.
    Return,
    /// Retry after this delay.
    Retry(Duration),
    /// A retry was due but the budget refused it: an error is wrapped in [`BudgetExhausted`],
    /// a response returned as it is.
    BudgetExhausted,
    /// The server asked for longer than what is left of the total timeout.
    TooLong(RetryAfterTooLong),
}

/// The caller's outcome when no retry follows.
#[cold]
fn finish<Res>(next: Next, result: Result<Res, BoxError>) -> Result<Res, BoxError> {
    match (next, result) {
        (Next::BudgetExhausted, Err(e)) => Err(Box::new(BudgetExhausted::new(e))),
        (Next::TooLong(too_long), _) => Err(Box::new(too_long)),
        (_, result) => result,
    }
}

/// The end of the total timeout a server-requested delay is judged against. It starts when the
/// retry's future first waits — as the timer of a [`TimeoutLayer`](crate::timeout::TimeoutLayer)
/// around the retry would — or, for a call whose attempts never waited, when a delay is first
/// judged. So a call that is not retried
/// reads no clock. The end is one word: no deadline, a total not started yet (top bit set), or
/// the end on the retry's clock; the skew is where the total this future enforces ends, from
/// that end (zero unless a policy's own total differs from its stack's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(u64, i64);

const UNSTARTED: u64 = 1 << 63;

impl Deadline {
    #[inline]
    pub(crate) fn new(total: Option<Duration>, skew: i64) -> Deadline {
        match total {
            // Totals beyond 2^63 ns (292 years) are as good as none: kept at the bound.
            Some(total) => Deadline(
                UNSTARTED | crate::clock::duration_to_nanos(total).min(UNSTARTED - 1),
                skew,
            ),
            None => Deadline(u64::MAX, 0),
        }
    }

    /// Start the total timeout now, if there is one and it has not started.
    #[inline]
    fn start(&mut self, clock: crate::clock::Clock) {
        if self.0 != u64::MAX && self.0 & UNSTARTED != 0 {
            // The clock's readings stay below 2^63 ns (292 years) after boot, so an end never
            // has the top bit set; one that would saturates just below it.
            let end = clock.now().saturating_add(self.0 & !UNSTARTED);
            self.0 = end.min(UNSTARTED - 1);
        }
    }

    /// Time left until the end, starting the total timeout if it has not started; `None`
    /// without a total timeout.
    fn remaining(&mut self, clock: crate::clock::Clock) -> Option<u64> {
        if self.0 == u64::MAX {
            return None;
        }
        self.start(clock);
        Some(self.0.saturating_sub(clock.now()))
    }

    /// Time left of the total this future enforces; see [`remaining`](Self::remaining).
    fn enforced_remaining(&mut self, clock: crate::clock::Clock) -> Option<u64> {
        self.remaining(clock)
            .map(|left| left.saturating_add_signed(self.1))
    }
}

impl<S, Req, C, H> Future for ResponseFuture<S, Req, C, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: RetryClassifier<S::Response>,
    H: CopyRequest<Req>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The common case inline, and nothing else: a response the classifier does not retry.
        // Everything else (errors, retries, later attempts, a traced call, a deadline in scope)
        // is out of line, so this path stays small enough for the compiler to keep the response
        // in registers.
        let mut out = None;
        let cold = this.trace.on() || this.replay.scope.is_some();
        let ready = match this.state.as_mut().project() {
            StateProj::Calling { future } if !cold => match future.poll(cx) {
                Poll::Pending => {
                    this.replay.deadline.start(this.replay.clock);
                    if this.replay.watches_total() && this.replay.poll_total(cx, &mut out) {
                        if let Some(result) = out {
                            return Poll::Ready(result);
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(mut response)) => {
                    let decision = this.replay.classifier.classify(Ok(&response));
                    if decision == RetryDecision::DoNotRetry {
                        let replay = &*this.replay;
                        replay.metrics.done.increment(1);
                        replay.classifier.returned(&mut response, replay.attempts);
                        return Poll::Ready(Ok(response));
                    }
                    settle(
                        this.state,
                        this.replay,
                        this.trace,
                        Ok(response),
                        decision,
                        cx,
                        &mut out,
                    )
                }
                Poll::Ready(Err(e)) => {
                    let result = Err(e.into());
                    let decision = this.replay.classify(&result);
                    settle(
                        this.state,
                        this.replay,
                        this.trace,
                        result,
                        decision,
                        cx,
                        &mut out,
                    )
                }
            },
            _ if cold => in_span(this.state, this.replay, this.trace, cx.waker(), &mut out),
            _ => drive(this.state, this.replay, this.trace, cx, &mut out),
        };
        // The outcome of the out-of-line paths comes back through `out`, not as a returned
        // `Poll` (which the compiler would build in the same stack slot as the inline path's,
        // with narrow stores read back wide by the caller: a failed store forward per call).
        match (ready, out) {
            (true, Some(mut result)) => {
                if let Ok(response) = &mut result {
                    this.replay
                        .classifier
                        .returned(response, this.replay.attempts);
                }
                Poll::Ready(result)
            }
            _ => {
                this.replay.deadline.start(this.replay.clock);
                Poll::Pending
            }
        }
    }
}

/// After an attempt the classifier judged: return its outcome, or start the next attempt.
#[inline(never)]
fn settle<S, Req, C, H>(
    mut state: Pin<&mut State<S::Future>>,
    replay: &mut Replay<S, Req, C, H>,
    trace: &Trace,
    result: Result<S::Response, BoxError>,
    decision: RetryDecision,
    cx: &mut Context<'_>,
    out: &mut Option<Result<S::Response, BoxError>>,
) -> bool
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: RetryClassifier<S::Response>,
    H: CopyRequest<Req>,
{
    match replay.decide_traced(decision, &result, trace) {
        Next::Return => {
            *out = Some(result);
            return true;
        }
        Next::Retry(delay) => {
            if !replay.start_retry(delay) {
                *out = Some(replay.end_at_total());
                return true;
            }
            state.set(if delay.is_zero() {
                State::Checking
            } else {
                State::Waiting
            });
        }
        next => {
            *out = Some(finish(next, result));
            return true;
        }
    }
    drive(state, replay, trace, cx, out)
}

/// [`drive`] for a traced call, in its span, and for a call that ends at the deadline in scope
/// when it was made: inside that scope (so its attempts see the deadline wherever the call is
/// driven), then the deadline's timer, as a `DeadlineCap` around the retry would. Given the
/// waker (on stable Rust all a context carries) rather than the context, so that the untraced
/// path of `poll`, which may reach this, needs no `Context` in memory of its own.
#[cold]
#[inline(never)]
fn in_span<S, Req, C, H>(
    state: Pin<&mut State<S::Future>>,
    replay: &mut Replay<S, Req, C, H>,
    trace: &Trace,
    waker: &std::task::Waker,
    out: &mut Option<Result<S::Response, BoxError>>,
) -> bool
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: RetryClassifier<S::Response>,
    H: CopyRequest<Req>,
{
    let _in_span = trace.enter();
    let cx = &mut Context::from_waker(waker);
    #[cfg(feature = "http")]
    if let Some(deadline) = replay.scope.0.as_ref().map(|bound| bound.deadline) {
        if deadline.sync_scope(|| drive(state, replay, trace, cx, out)) {
            return true;
        }
        if let Some(bound) = replay.scope.0.as_mut() {
            if bound.as_mut().project().sleep.poll(cx).is_ready() {
                *out = Some(Err(Elapsed::new().into()));
                return true;
            }
        }
        return false;
    }
    drive(state, replay, trace, cx, out)
}

/// Backoff, readiness and the attempts after the first, until one is not retried: `true` with
/// the caller's outcome in `out`, `false` while pending.
#[inline(never)]
fn drive<S, Req, C, H>(
    state: Pin<&mut State<S::Future>>,
    replay: &mut Replay<S, Req, C, H>,
    trace: &Trace,
    cx: &mut Context<'_>,
    out: &mut Option<Result<S::Response, BoxError>>,
) -> bool
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: RetryClassifier<S::Response>,
    H: CopyRequest<Req>,
{
    match retry_loop(state, replay, trace, cx) {
        Poll::Ready(result) => {
            *out = Some(result);
            true
        }
        // The attempt or the backoff first, as a timeout layer around the retry would.
        Poll::Pending => replay.watches_total() && replay.poll_total(cx, out),
    }
}

/// The loop of [`drive`].
#[inline]
fn retry_loop<S, Req, C, H>(
    mut state: Pin<&mut State<S::Future>>,
    replay: &mut Replay<S, Req, C, H>,
    trace: &Trace,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: RetryClassifier<S::Response>,
    H: CopyRequest<Req>,
{
    loop {
        match state.as_mut().project() {
            StateProj::Calling { future } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                let decision = replay.classify(&result);
                match replay.decide_traced(decision, &result, trace) {
                    Next::Return => return Poll::Ready(result),
                    Next::Retry(delay) => {
                        if !replay.start_retry(delay) {
                            return Poll::Ready(replay.end_at_total());
                        }
                        state.set(if delay.is_zero() {
                            State::Checking
                        } else {
                            State::Waiting
                        });
                    }
                    next => return Poll::Ready(finish(next, result)),
                }
            }
            StateProj::Waiting => {
                ready!(replay.timer.poll(cx));
                state.set(State::Checking);
            }
            StateProj::Expired => return Poll::Ready(Err(Elapsed::new().into())),
            StateProj::Checking => {
                let Some(service) = replay.service.as_mut() else {
                    unreachable!("`decide` checked that the future can replay")
                };
                if let Err(e) = ready!(service.poll_ready(cx)) {
                    return Poll::Ready(Err(e.into()));
                }
                let (Some(mut service), Some(request)) =
                    (replay.service.take(), replay.next.take())
                else {
                    unreachable!("checked above, and `next` is `Some` with `service`")
                };
                replay.attempts += 1;
                let copy = if replay.attempts < replay.max_attempts {
                    replay.copy.copy_request(&request)
                } else {
                    None
                };
                let future = service.call(request);
                // The service is kept only while another attempt may follow.
                if copy.is_some() {
                    replay.service = Some(service);
                }
                replay.next = copy;
                state.set(State::Calling { future });
            }
        }
    }
}

impl<S, Req, C, H> fmt::Debug for ResponseFuture<S, Req, C, H>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "calling",
            State::Waiting => "waiting",
            State::Checking => "checking",
            State::Expired => "expired",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.replay.attempts)
            .finish_non_exhaustive()
    }
}
