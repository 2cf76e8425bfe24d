//! Waiting out a backlog (the second stage of the waiting policy, see [`crate::job`]): a
//! thread that waits for one result while every local worker has more queued work sleeps
//! until the backlog runs low, instead of being woken by each result in turn.
//!
//! A caller that submits a batch and then takes the results in order would otherwise be
//! parked and woken once per job; with every core busy, each wake-up preempts a worker
//! (on a virtual machine, with a costly cross-CPU interrupt). While the queue holds at
//! least one more job per worker, taking a result early gains nothing: the workers are
//! busy either way. So the waiter sleeps until a taker sees the queue drop below one job
//! per worker (then it has the results to take while the last jobs run), and at most
//! [`BACKLOG_NAP`] at a time, so that a result is never held back long whatever the queue
//! does (other threads may keep it full, or a queued job may wait on the caller).

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::{self, Thread};
use std::time::Instant;

/// The longest a waiter sleeps at a time on a backlog before it looks at its job again.
pub(crate) const BACKLOG_NAP: std::time::Duration = std::time::Duration::from_millis(5);

/// A queue that a waiter can sleep on while it holds a backlog (the local pool).
pub(crate) trait Backlog: Send + Sync {
    /// Whether every local worker has at least one more queued job to go on with.
    fn busy(&self) -> bool;

    /// The threads sleeping on this backlog.
    fn sleepers(&self) -> &Sleepers;
}

/// Threads sleeping until a backlog runs low.
#[derive(Debug, Default)]
pub(crate) struct Sleepers {
    count: AtomicUsize,
    threads: Mutex<Vec<Thread>>,
}

impl Sleepers {
    /// Sleeps the calling thread while `keep_sleeping` holds, until [`wake_all`] or
    /// `until`, whichever comes first (or a spurious wake-up: callers look again).
    ///
    /// [`wake_all`]: Sleepers::wake_all
    pub(crate) fn sleep(&self, keep_sleeping: impl Fn() -> bool, until: Instant) {
        let me = thread::current();
        {
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            threads.push(me.clone());
            self.count.store(threads.len(), Ordering::SeqCst);
        }
        // Orders the registration before the look at the queue (see `any`).
        fence(Ordering::SeqCst);
        if keep_sleeping() {
            let now = Instant::now();
            if until > now {
                thread::park_timeout(until - now);
            }
        }
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.retain(|thread| thread.id() != me.id());
        self.count.store(threads.len(), Ordering::SeqCst);
    }

    /// Wakes every sleeper. Takers call it after taking a job when [`any`](Sleepers::any)
    /// thread sleeps and the backlog is no longer busy.
    pub(crate) fn wake_all(&self) {
        let threads = {
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            self.count.store(0, Ordering::SeqCst);
            std::mem::take(&mut *threads)
        };
        for thread in threads {
            thread.unpark();
        }
    }

    /// Whether any thread sleeps on the backlog: one load when nobody does.
    pub(crate) fn any(&self) -> bool {
        // A taker's steal is a sequentially consistent compare-and-swap, and sleepers
        // register with a sequentially consistent store before they look at the queue: either
        // the taker sees the sleeper here, or the sleeper sees the queue the taker shrank.
        self.count.load(Ordering::SeqCst) > 0
    }
}
