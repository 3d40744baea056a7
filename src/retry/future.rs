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
use super::policy::{CopyRequest, RetryClassifier, RetryDecision, RetryMetrics};
use crate::classify::is_rejection;
use crate::metrics;
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
        // Sleeping before the next attempt (the timer is `Replay::sleep`).
        Waiting,
        // Waiting for the inner service to be ready for the next attempt.
        Checking,
    }
}

/// What a retry needs. Written in full by every call (a branch here made the compiler build it
/// on the stack and copy it); `service` and `request` are `None` when the request cannot be
/// replayed (one attempt only, or the copy hook said no).
pub(crate) struct Replay<S, Req, C, H> {
    /// A clone of the inner service, made only when the request could be copied.
    pub(crate) service: Option<S>,
    /// The copy for the next attempt; `None` once no further attempt may be made.
    pub(crate) request: Option<Req>,
    pub(crate) classifier: C,
    pub(crate) copy: H,
    pub(crate) backoff: Backoff,
    pub(crate) budget: Option<BudgetHandle>,
    pub(crate) max_attempts: u32,
    /// Attempts started so far.
    pub(crate) attempts: u32,
    pub(crate) previous_delay: Duration,
    /// When the total timeout ends, on `clock`; `u64::MAX` when no deadline is known.
    pub(crate) deadline: u64,
    pub(crate) clock: crate::clock::Clock,
    /// The backoff timer, allocated by the first retry that waits and reset by later ones: a
    /// `Sleep` is over 100 bytes, which a call that is never retried should not carry or move.
    pub(crate) sleep: Timer,
    pub(crate) metrics: metrics::Handles<RetryMetrics>,
}

/// The backoff timer of [`Replay`]: `None` until a retry first waits.
///
/// Its drop is a null check inline and the timer's own drop out of line: left to the compiler,
/// the drop of an `Option<Pin<Box<Sleep>>>` became a call on every response future, timer or not.
pub(crate) struct Timer(ManuallyDrop<Option<Pin<Box<Sleep>>>>);

impl Timer {
    pub(crate) const fn new() -> Timer {
        Timer(ManuallyDrop::new(None))
    }
}

impl Drop for Timer {
    #[inline]
    fn drop(&mut self) {
        if self.0.is_some() {
            drop_timer(ManuallyDrop::into_inner(std::mem::replace(
                &mut self.0,
                ManuallyDrop::new(None),
            )));
        }
    }
}

#[cold]
#[inline(never)]
fn drop_timer(timer: Option<Pin<Box<Sleep>>>) {
    drop(timer);
}

impl<S, Req, C, H> ResponseFuture<S, Req, C, H>
where
    S: Service<Req>,
{
    pub(crate) fn new(future: S::Future, replay: Replay<S, Req, C, H>) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            replay,
        }
    }
}

impl<S, Req, C, H> Replay<S, Req, C, H> {
    fn sleep(&mut self, delay: Duration) {
        let now = tokio::time::Instant::now();
        // A delay past what an `Instant` holds (max_delay may be `Duration::MAX`): sleep for 30
        // years instead, as tokio's own `sleep` does.
        let deadline = now
            .checked_add(delay)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        match &mut *self.sleep.0 {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => *self.sleep.0 = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// The classifier's decision for an attempt's outcome; harden's rejections and the retry's
    /// own errors are never retried, whatever the classifier says.
    #[inline]
    fn classify<Res>(&self, result: &Result<Res, BoxError>) -> RetryDecision
    where
        C: RetryClassifier<Res>,
    {
        if let Err(e) = result {
            // NOTE: rejections are never retried, whatever the classifier says (DESIGN).
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
        if self.attempts >= self.max_attempts || self.request.is_none() {
            self.metrics.gave_up.increment(1);
            return Next::Return;
        }
        let delay = match requested {
            None => self
                .backoff
                .jittered(self.attempts, self.previous_delay, random_u64()),
            Some(d) => {
                let delay = self.backoff.requested(d);
                if self.deadline != u64::MAX {
                    let remaining = self.deadline.saturating_sub(self.clock.now());
                    if crate::clock::duration_to_nanos(delay) > remaining {
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
        self.previous_delay = delay;
        Next::Retry(delay)
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
        // Everything else (errors, retries, later attempts) is out of line, so this path stays
        // small enough for the compiler to keep the response in registers.
        let mut out = None;
        let ready = match this.state.as_mut().project() {
            StateProj::Calling { future } => match ready!(future.poll(cx)) {
                Ok(response) => {
                    let decision = this.replay.classifier.classify(Ok(&response));
                    if decision == RetryDecision::DoNotRetry {
                        this.replay.metrics.done.increment(1);
                        return Poll::Ready(Ok(response));
                    }
                    settle(
                        this.state,
                        this.replay,
                        Ok(response),
                        decision,
                        cx,
                        &mut out,
                    )
                }
                Err(e) => {
                    let result = Err(e.into());
                    let decision = this.replay.classify(&result);
                    settle(this.state, this.replay, result, decision, cx, &mut out)
                }
            },
            _ => drive(this.state, this.replay, cx, &mut out),
        };
        // The outcome of the out-of-line paths comes back through `out`, not as a returned
        // `Poll` (which the compiler would build in the same stack slot as the inline path's,
        // with narrow stores read back wide by the caller: a failed store forward per call).
        match (ready, out) {
            (true, Some(result)) => Poll::Ready(result),
            _ => Poll::Pending,
        }
    }
}

/// After an attempt the classifier judged: return its outcome, or start the next attempt.
#[inline(never)]
fn settle<S, Req, C, H>(
    mut state: Pin<&mut State<S::Future>>,
    replay: &mut Replay<S, Req, C, H>,
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
    match replay.decide(decision) {
        Next::Return => {
            *out = Some(result);
            return true;
        }
        Next::Retry(Duration::ZERO) => state.set(State::Checking),
        Next::Retry(delay) => {
            replay.sleep(delay);
            state.set(State::Waiting);
        }
        next => {
            *out = Some(finish(next, result));
            return true;
        }
    }
    drive(state, replay, cx, out)
}

/// Backoff, readiness and the attempts after the first, until one is not retried: `true` with
/// the caller's outcome in `out`, `false` while pending.
#[inline(never)]
fn drive<S, Req, C, H>(
    state: Pin<&mut State<S::Future>>,
    replay: &mut Replay<S, Req, C, H>,
    cx: &mut Context<'_>,
    out: &mut Option<Result<S::Response, BoxError>>,
) -> bool
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: RetryClassifier<S::Response>,
    H: CopyRequest<Req>,
{
    match retry_loop(state, replay, cx) {
        Poll::Ready(result) => {
            *out = Some(result);
            true
        }
        Poll::Pending => false,
    }
}

/// The loop of [`drive`].
#[inline]
fn retry_loop<S, Req, C, H>(
    mut state: Pin<&mut State<S::Future>>,
    replay: &mut Replay<S, Req, C, H>,
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
                match replay.decide(decision) {
                    Next::Return => return Poll::Ready(result),
                    Next::Retry(Duration::ZERO) => state.set(State::Checking),
                    Next::Retry(delay) => {
                        replay.sleep(delay);
                        state.set(State::Waiting);
                    }
                    next => return Poll::Ready(finish(next, result)),
                }
            }
            StateProj::Waiting => {
                if let Some(sleep) = replay.sleep.0.as_mut() {
                    ready!(sleep.as_mut().poll(cx));
                }
                state.set(State::Checking);
            }
            StateProj::Checking => {
                let Some(service) = replay.service.as_mut() else {
                    unreachable!("`decide` checked that the future can replay")
                };
                if let Err(e) = ready!(service.poll_ready(cx)) {
                    return Poll::Ready(Err(e.into()));
                }
                let Some(request) = replay.request.take() else {
                    unreachable!("`decide` checked that a copy is there")
                };
                replay.attempts += 1;
                if replay.attempts < replay.max_attempts {
                    replay.request = replay.copy.copy_request(&request);
                }
                let future = service.call(request);
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
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.replay.attempts)
            .finish_non_exhaustive()
    }
}
