//! Counts of unfinished jobs that `wait()` and `wait_group()` block on.

use crate::helping;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::{self, Thread};
use std::time::Instant;

/// A count of unfinished jobs with a way to wait until it reaches zero.
///
/// The lock is only taken when somebody waits, so counting a job costs two atomic
/// operations.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    count: AtomicUsize,
    waiters: AtomicUsize,
    /// The threads that help while they wait (see [`crate::helping`]): unparked at zero.
    lock: Mutex<Vec<Thread>>,
    zero: Condvar,
}

impl Pending {
    pub(crate) fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn done(&self) {
        self.done_many(1);
    }

    /// [`done`](Pending::done) for `jobs` jobs at once.
    pub(crate) fn done_many(&self, jobs: usize) {
        if jobs == 0 {
            return;
        }
        if self.count.fetch_sub(jobs, Ordering::SeqCst) == jobs
            && self.waiters.load(Ordering::SeqCst) > 0
        {
            // Taking the lock orders this wake-up after the waiter's check of `count`.
            let helpers = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.zero.notify_all();
            for thread in helpers.iter() {
                thread.unpark();
            }
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Blocks until the count is zero or `deadline` passes; returns whether it is zero.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        if self.count() == 0 {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let zero = wait_until(&self.lock, &self.zero, deadline, |_| self.count() == 0);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        zero
    }
}

impl Pending {
    /// As [`wait`](Pending::wait), for a caller that may be a local worker of the server
    /// whose queue is at `queue`: such a worker runs sub-jobs meanwhile (see
    /// [`crate::helping`]); any other thread just waits.
    pub(crate) fn wait_helping(&self, queue: *const (), deadline: Option<Instant>) -> bool {
        if self.count() == 0 {
            return true;
        }
        if helping::current().is_none() {
            return self.wait(deadline);
        }
        let me = thread::current();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        self.lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(me.clone());
        let helped = helping::help_while_waiting(queue, deadline, &|| self.count() == 0);
        self.lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|thread| thread.id() != me.id());
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        helped.unwrap_or_else(|| self.wait(deadline))
    }
}

/// Waits on `condvar` until `done` holds for the guarded value or `deadline` passes
/// (`None`: no deadline); returns whether `done` held.
pub(crate) fn wait_until<T>(
    mutex: &Mutex<T>,
    condvar: &Condvar,
    deadline: Option<Instant>,
    mut done: impl FnMut(&mut T) -> bool,
) -> bool {
    let guard = mutex.lock().unwrap_or_else(|e| e.into_inner());
    match deadline {
        None => {
            let _guard = condvar
                .wait_while(guard, |value| !done(value))
                .unwrap_or_else(|e| e.into_inner());
            true
        }
        Some(deadline) => {
            let timeout = deadline.saturating_duration_since(Instant::now());
            let (mut guard, _) = condvar
                .wait_timeout_while(guard, timeout, |value| !done(value))
                .unwrap_or_else(|e| e.into_inner());
            done(&mut guard)
        }
    }
}
