//! The jobs a session's client withdrew (`Message::Cancel`) that may still be on the node.
//!
//! The reader records the ids; whoever meets such a job next acts on it: a worker loop
//! taking it from the queue drops it unanswered (its place in the client's count is given
//! back), and the watch of a worker whose running job it is kills that worker (see
//! `worker_loop`). An id leaves the set when its job is met, or when the session holds no
//! job at all (then every id left names a job answered before its cancel arrived).
//!
//! With no cancel pending, checking a job costs one relaxed atomic load.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// A session's withdrawn jobs.
#[derive(Debug)]
pub(crate) struct Cancels {
    ids: Mutex<HashSet<u64>>,
    /// Whether `ids` may be non-empty: the fast path of [`Cancels::take`].
    any: AtomicBool,
    /// Bumped on every cancel, so that the watches of running jobs look again.
    changed: watch::Sender<u64>,
}

impl Default for Cancels {
    fn default() -> Self {
        Cancels {
            ids: Mutex::new(HashSet::new()),
            any: AtomicBool::new(false),
            changed: watch::Sender::new(0),
        }
    }
}

impl Cancels {
    fn ids(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the client withdrew `job_ids`. `idle` says that the session holds no
    /// job now: then these ids, and any left, name jobs already answered, and are dropped.
    pub(crate) fn cancel(&self, job_ids: &[u64], idle: bool) {
        {
            let mut ids = self.ids();
            if idle {
                ids.clear();
            } else {
                ids.extend(job_ids);
            }
            self.any.store(!ids.is_empty(), Ordering::Release);
        }
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// Whether `job_id` was withdrawn; forgets it if so (its job is being dealt with).
    pub(crate) fn take(&self, job_id: u64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut ids = self.ids();
        let taken = ids.remove(&job_id);
        self.any.store(!ids.is_empty(), Ordering::Release);
        taken
    }

    /// Whether `job_id` was withdrawn (without forgetting it).
    #[cfg(test)]
    pub(crate) fn contains(&self, job_id: u64) -> bool {
        self.any.load(Ordering::Acquire) && self.ids().contains(&job_id)
    }

    /// Whether any cancel is pending: a worker loop then tells its watch when its running
    /// job changes.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Changes whenever jobs are withdrawn.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_job_is_taken_once_and_an_idle_session_forgets_stale_ids() {
        let cancels = Cancels::default();
        assert!(!cancels.take(1));
        cancels.cancel(&[1, 2], false);
        assert!(cancels.contains(2));
        assert!(cancels.take(1));
        assert!(!cancels.take(1));
        assert!(cancels.any());
        // Nothing on the node: 2 was answered before its cancel came, and 3 too.
        cancels.cancel(&[3], true);
        assert!(!cancels.any());
        assert!(!cancels.take(2) && !cancels.take(3));
    }

    #[test]
    fn watchers_hear_of_every_cancel() {
        let cancels = Cancels::default();
        let mut watch = cancels.subscribe();
        assert!(!watch.has_changed().unwrap());
        cancels.cancel(&[5], false);
        assert!(watch.has_changed().unwrap());
        watch.mark_unchanged();
        cancels.cancel(&[], true);
        assert!(watch.has_changed().unwrap());
    }
}
