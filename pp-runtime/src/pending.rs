//! Counts of unfinished jobs that `wait()` and `wait_group()` block on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// A count of unfinished jobs with a way to wait until it reaches zero.
///
/// The lock is only taken when somebody waits, so counting a job costs two atomic
/// operations.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    count: AtomicUsize,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Pending {
    pub(crate) fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn done(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 && self.waiters.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this wake-up after the waiter's check of `count`.
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.zero.notify_all();
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
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let zero = loop {
            if self.count() == 0 {
                break true;
            }
            match deadline {
                None => guard = self.zero.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    guard = self
                        .zero
                        .wait_timeout(guard, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        zero
    }
}
