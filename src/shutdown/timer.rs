//! The timer [`Shutdown::serve`](super::Shutdown::serve) gives hyper for HTTP/1's header-read
//! timeout: tokio sleeps kept in a small pool, still registered, and reset for the next head.
//!
//! hyper arms its header-read timer for every request head (a keep-alive connection waiting for
//! its next request always waits on it) and drops it once the head is parsed, so a timer's
//! `reset` never gets the chance to reuse it. With hyper-util's `TokioTimer` each head therefore
//! boxes a new tokio `Sleep`, inserts it in tokio's timer wheel under the driver's lock and
//! removes it under the lock again. [`HeaderTimer`] instead takes a `Sleep` that an earlier head
//! dropped, still in the wheel, and resets it: a deadline not earlier than the one registered is
//! a lock-free update of the entry in tokio (`Sleep::reset`), and the wheel moves the entry to its
//! new deadline when the old one comes. HTTP/2's timers stay on `TokioTimer`.
//!
//! - **The deadline is exact** either way: never early, as late as tokio's wheel makes any sleep.
//!   A pooled entry whose old deadline is earlier is extended (tokio's wheel, reaching the old
//!   deadline, sees the new one and re-inserts the entry there instead of firing it); one whose
//!   old deadline is later, or that already fired in the pool, is re-registered at the new one
//!   under the driver's lock — correct, only not cheaper than a new sleep.
//! - **A pooled entry may wake a task once for nothing**: it keeps the waker of the connection
//!   that last polled it, so if it is not reused before its old deadline it fires then and wakes
//!   that task, which polls, finds nothing to do and waits again (or has ended: a no-op); that
//!   task's allocation is kept until the entry is reused or fires. At most [`POOL_CAP`] entries
//!   wait like that, none longer than the header-read timeout.
//! - **One runtime**: tokio panics when a `Sleep` is polled after its runtime shut down, and a
//!   `Sleep` belongs to the runtime it was created on. Each `serve` call has its own timer, used
//!   only by the connections `serve` spawns on the runtime that polls it and joins before it
//!   returns, so every entry the pool hands out belongs to a runtime that is running; dropping
//!   the pool after that runtime shut down is fine (tokio panics on a poll, not on a drop).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// The most tokio sleeps a [`HeaderTimer`] keeps for reuse (a few hundred bytes each): one for
/// each HTTP/1 request a busy server handles at once; beyond it a dropped sleep leaves the wheel
/// as `TokioTimer`'s does.
pub(crate) const POOL_CAP: usize = 1024;

/// hyper's timer for HTTP/1's header-read timeout (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderTimer {
    pool: Arc<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    sleeps: Mutex<Vec<Pin<Box<tokio::time::Sleep>>>>,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Vec<Pin<Box<tokio::time::Sleep>>>> {
        // Nothing panics while the lock is held: a poisoned pool is still a valid one.
        self.sleeps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Option<Pin<Box<tokio::time::Sleep>>> {
        self.lock().pop()
    }

    fn give(&self, sleep: Pin<Box<tokio::time::Sleep>>) {
        let mut sleeps = self.lock();
        if sleeps.len() < POOL_CAP {
            sleeps.push(sleep);
            return;
        }
        drop(sleeps);
        // Over the cap: deregistered here, outside the pool's lock.
        drop(sleep);
    }
}

impl HeaderTimer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn tokio_sleep(&self, deadline: tokio::time::Instant) -> Pin<Box<tokio::time::Sleep>> {
        match self.pool.take() {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.pool.lock().len()
    }
}

impl Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeaderSleep {
            sleep: Some(self.tokio_sleep(deadline.into())),
            pool: Arc::clone(&self.pool),
        })
    }

    fn now(&self) -> Instant {
        // tokio's clock, as `TokioTimer`'s: it follows `tokio::time::pause`.
        tokio::time::Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeaderSleep>() {
            Some(ours) => {
                if let Some(inner) = &mut ours.get_mut().sleep {
                    inner.as_mut().reset(new_deadline.into());
                }
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// One head's sleep: a tokio `Sleep` that goes back to the pool, still registered, when dropped.
struct HeaderSleep {
    /// Always `Some` until dropped.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    pool: Arc<Pool>,
}

impl Future for HeaderSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Sleep for HeaderSleep {}

impl Drop for HeaderSleep {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            self.pool.give(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(after: Duration) -> Instant {
        (tokio::time::Instant::now() + after).into_std()
    }

    /// Polls once on the test's task (outside tokio's budget: the cap test polls a thousand).
    async fn is_ready(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        tokio::task::unconstrained(poll_fn(|cx| {
            Poll::Ready(sleep.as_mut().poll(cx).is_ready())
        }))
        .await
    }

    /// Pending until `after` from now, ready at it.
    async fn fires_after(sleep: &mut Pin<Box<dyn Sleep>>, after: Duration) {
        tokio::time::advance(after - MS).await;
        assert!(!is_ready(sleep).await, "ready before its deadline");
        tokio::time::advance(MS).await;
        assert!(is_ready(sleep).await, "not ready at its deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_fires_at_its_deadline() {
        let timer = HeaderTimer::new();
        let mut sleep = timer.sleep_until(at(Duration::from_secs(10)));
        assert!(!is_ready(&mut sleep).await);
        fires_after(&mut sleep, Duration::from_secs(10)).await;
        let mut sleep = timer.sleep(Duration::from_secs(3));
        fires_after(&mut sleep, Duration::from_secs(3)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_reset_later_fires_at_the_later_deadline() {
        let timer = HeaderTimer::new();
        let mut sleep = timer.sleep_until(at(Duration::from_secs(10)));
        assert!(!is_ready(&mut sleep).await);
        timer.reset(&mut sleep, at(Duration::from_secs(20)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!is_ready(&mut sleep).await, "fired at the earlier deadline");
        fires_after(&mut sleep, Duration::from_secs(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_reset_earlier_fires_at_the_earlier_deadline() {
        let timer = HeaderTimer::new();
        let mut sleep = timer.sleep_until(at(Duration::from_secs(20)));
        assert!(!is_ready(&mut sleep).await);
        timer.reset(&mut sleep, at(Duration::from_secs(5)));
        fires_after(&mut sleep, Duration::from_secs(5)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_pooled_sleep_with_an_earlier_deadline_fires_at_the_new_one() {
        let timer = HeaderTimer::new();
        let mut first = timer.sleep_until(at(Duration::from_secs(10)));
        assert!(!is_ready(&mut first).await);
        drop(first);
        assert_eq!(timer.pooled(), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        // The pooled entry, registered for t = 10 s, extended to t = 15 s.
        let mut second = timer.sleep_until(at(Duration::from_secs(10)));
        assert_eq!(timer.pooled(), 0);
        assert!(!is_ready(&mut second).await);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!is_ready(&mut second).await, "fired at the pooled deadline");
        fires_after(&mut second, Duration::from_secs(5)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_pooled_sleep_with_a_later_deadline_fires_at_the_new_one() {
        let timer = HeaderTimer::new();
        let mut first = timer.sleep_until(at(Duration::from_secs(20)));
        assert!(!is_ready(&mut first).await);
        drop(first);
        let mut second = timer.sleep_until(at(Duration::from_secs(5)));
        assert_eq!(timer.pooled(), 0);
        fires_after(&mut second, Duration::from_secs(5)).await;
        // And not again at the pooled deadline once back in the pool and out again.
        drop(second);
        let mut third = timer.sleep_until(at(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(!is_ready(&mut third).await, "fired at the pooled deadline");
        fires_after(&mut third, Duration::from_secs(15)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_that_fired_in_the_pool_fires_again_at_its_new_deadline() {
        let timer = HeaderTimer::new();
        let mut first = timer.sleep_until(at(Duration::from_secs(1)));
        assert!(!is_ready(&mut first).await);
        drop(first);
        tokio::time::advance(Duration::from_secs(2)).await;
        let mut second = timer.sleep_until(at(Duration::from_secs(10)));
        assert_eq!(timer.pooled(), 0);
        assert!(
            !is_ready(&mut second).await,
            "ready with the fired entry's result"
        );
        fires_after(&mut second, Duration::from_secs(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_unpolled_sleep_is_pooled_and_fires_at_its_new_deadline() {
        let timer = HeaderTimer::new();
        drop(timer.sleep_until(at(Duration::from_secs(10))));
        assert_eq!(timer.pooled(), 1);
        let mut sleep = timer.sleep_until(at(Duration::from_secs(4)));
        fires_after(&mut sleep, Duration::from_secs(4)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_pool_keeps_at_most_its_cap() {
        let timer = HeaderTimer::new();
        let mut sleeps = Vec::new();
        for _ in 0..POOL_CAP + 10 {
            let mut sleep = timer.sleep_until(at(Duration::from_secs(30)));
            assert!(!is_ready(&mut sleep).await);
            sleeps.push(sleep);
        }
        assert_eq!(timer.pooled(), 0);
        drop(sleeps);
        assert_eq!(timer.pooled(), POOL_CAP);
        // Every one taken from the pool again still fires at its own deadline.
        let mut sleeps: Vec<_> = (0..POOL_CAP + 10)
            .map(|_| timer.sleep_until(at(Duration::from_secs(40))))
            .collect();
        assert_eq!(timer.pooled(), 0);
        tokio::time::advance(Duration::from_secs(40) - MS).await;
        for sleep in &mut sleeps {
            assert!(!is_ready(sleep).await);
        }
        tokio::time::advance(MS).await;
        for sleep in &mut sleeps {
            assert!(is_ready(sleep).await);
        }
    }
}
