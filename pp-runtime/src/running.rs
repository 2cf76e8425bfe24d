//! [`Running`]: the jobs running now on a local pool's worker threads, which
//! [`Server::cancel_all`](crate::Server::cancel_all) settles without a list of every job.
//!
//! Why: a server-wide list of the jobs in no group cost every submission a lock, a push and
//! a weak handle (the hot path; see BENCHMARKS.md, "Job control"). A local server instead
//! finds the jobs it must cancel where they are: in its queues (drained), and on its worker
//! threads, each of which owns a [`Slot`] naming the jobs on its stack (one per level of
//! nesting: a job waiting for its sub-jobs runs them meanwhile, see [`crate::helping`]).
//!
//! A slot is written only by its thread and read by a canceller, with no lock: the thread
//! publishes a job with one sequentially consistent store of its depth, and on leaving it
//! waits until no canceller is reading (a canceller only copies a strong handle of each job,
//! a few instructions). A job that a worker took from the queue but has not published yet
//! would escape both the drain and the scan; so every `cancel_all` bumps an epoch first, each
//! job remembers the epoch it was submitted in, and a job that starts after an epoch newer
//! than its own cancels itself (it was submitted before a `cancel_all` that may have missed
//! it). Either the canceller sees the job published, or the job sees the bumped epoch: both
//! sides order their store before their load (sequentially consistent).

use crate::helping::MAX_HELP_DEPTH;
use crate::settle::Settle;
use std::cell::{OnceCell, UnsafeCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The most jobs a slot names: one thread's stack never holds more (helping stops at
/// [`MAX_HELP_DEPTH`]); deeper jobs would go unnamed, and a `cancel_all` would miss them.
const CAPACITY: usize = MAX_HELP_DEPTH + 2;

/// How many times a leaving job spins on a reading canceller before it yields its CPU.
const SPINS: u32 = 64;

thread_local! {
    /// The slot of the pool whose worker this thread is (unset on other threads).
    static SLOT: OnceCell<Arc<Slot>> = const { OnceCell::new() };
}

/// The running jobs of one local pool: a slot per worker thread, and the cancel epoch.
#[derive(Default)]
pub(crate) struct Running {
    /// Bumped by each `cancel_all` (shared with the slots, which jobs read it through).
    epoch: Arc<AtomicU64>,
    slots: Mutex<Vec<Arc<Slot>>>,
}

/// The jobs on one worker thread's stack, bottom first.
pub(crate) struct Slot {
    jobs: [UnsafeCell<Option<*const dyn Settle>>; CAPACITY],
    /// How many of `jobs` are published.
    depth: AtomicUsize,
    /// Cancellers reading `jobs` now.
    readers: AtomicUsize,
    epoch: Arc<AtomicU64>,
}

// SAFETY: `jobs[i]` is written only by the slot's thread while `depth <= i` and no canceller
// reads (it waits for `readers` to drop to zero before it unpublishes a level it may rewrite);
// cancellers read only `jobs[..depth]` while counted in `readers`. The pointers name jobs
// kept alive by the running frame until after they are unpublished.
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

impl Running {
    /// The current epoch, which a job records when it is submitted.
    pub(crate) fn epoch(&self) -> u64 {
        // Relaxed: an older value only makes the job cancel itself if a `cancel_all` ran
        // meanwhile, which is what that `cancel_all` asked for.
        self.epoch.load(Ordering::Relaxed)
    }

    /// Starts a new epoch: jobs submitted before it cancel themselves when they start.
    pub(crate) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Gives the calling thread (a new worker thread of this pool) its slot.
    pub(crate) fn adopt_thread(&self) {
        let slot = Arc::new(Slot {
            jobs: std::array::from_fn(|_| UnsafeCell::new(None)),
            depth: AtomicUsize::new(0),
            readers: AtomicUsize::new(0),
            epoch: Arc::clone(&self.epoch),
        });
        {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            // Threads of pools replaced by `set_ncpus` end on their own; forget their slots.
            slots.retain(|slot| Arc::strong_count(slot) > 1);
            slots.push(Arc::clone(&slot));
        }
        SLOT.with(|mine| {
            if mine.set(slot).is_err() {
                crate::error!("a worker thread was given a second running-jobs slot");
            }
        });
    }

    /// Strong handles on every job published on this pool's threads now.
    pub(crate) fn collect(&self) -> Vec<Arc<dyn Settle>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut jobs = Vec::new();
        for slot in slots {
            slot.readers.fetch_add(1, Ordering::SeqCst);
            let depth = slot.depth.load(Ordering::SeqCst).min(CAPACITY);
            for cell in &slot.jobs[..depth] {
                // SAFETY: published levels are not rewritten while we are counted in
                // `readers`, and the job they name is alive until its level is unpublished,
                // which waits for us. The pointer came from an `Arc` (see `enter`), so a
                // strong count can be added and owned.
                unsafe {
                    if let Some(job) = *cell.get() {
                        Arc::increment_strong_count(job);
                        jobs.push(Arc::from_raw(job));
                    }
                }
            }
            slot.readers.fetch_sub(1, Ordering::SeqCst);
        }
        jobs
    }
}

/// Publishes `job` (submitted in epoch `submitted`) as running on this thread until the
/// guard drops; `None` on a thread that is no pool worker, or when the slot is full.
pub(crate) fn enter<S: Settle + 'static>(job: &Arc<S>, submitted: u64) -> Option<Entered> {
    SLOT.with(|mine| {
        let slot = mine.get()?;
        let depth = slot.depth.load(Ordering::Relaxed);
        if depth >= CAPACITY {
            return None;
        }
        let pointer: *const S = Arc::as_ptr(job);
        let pointer: *const dyn Settle = pointer;
        // SAFETY: only this thread writes the slot, and level `depth` is unpublished with
        // no reader of it (see `Entered::drop`).
        unsafe { *slot.jobs[depth].get() = Some(pointer) };
        slot.depth.store(depth + 1, Ordering::SeqCst);
        let missed = slot.epoch.load(Ordering::SeqCst) != submitted;
        Some(Entered {
            slot: Arc::as_ptr(slot),
            depth,
            missed,
        })
    })
}

/// A job published as running (see [`enter`]); unpublished when dropped.
pub(crate) struct Entered {
    /// The thread's slot, which its thread-local keeps alive while the thread runs.
    slot: *const Slot,
    depth: usize,
    missed: bool,
}

impl Entered {
    /// Whether a `cancel_all` began after the job was submitted and may have missed it: the
    /// job must then be cancelled before it runs.
    pub(crate) fn missed_cancel(&self) -> bool {
        self.missed
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: the guard lives on the thread that owns the slot, within its job's run.
        let slot = unsafe { &*self.slot };
        slot.depth.store(self.depth, Ordering::SeqCst);
        // A canceller counted in `readers` may be copying this job's handle: wait until it
        // is done (a few instructions, or its thread's time slice if it is preempted).
        let mut spins = 0;
        while slot.readers.load(Ordering::SeqCst) != 0 {
            spins += 1;
            if spins < SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{enter, Running};
    use crate::job::{JobState, Polling};
    use crate::settle::Settle;
    use std::sync::Arc;
    use std::time::Duration;

    fn slot_for_test() -> Arc<JobState<u64>> {
        Arc::new(JobState::with_poll(Polling::spinning(Duration::ZERO)))
    }

    #[test]
    fn a_worker_names_its_jobs_while_they_run_nested_or_not() {
        let running = Arc::new(Running::default());
        let (outer, inner) = (slot_for_test(), slot_for_test());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                running.adopt_thread();
                assert!(running.collect().is_empty());
                let entered = enter(&outer, running.epoch()).expect("a worker thread");
                assert!(!entered.missed_cancel());
                let nested = enter(&inner, running.epoch()).expect("room for nesting");
                let seen = running.collect();
                assert_eq!(seen.len(), 2);
                drop(nested);
                assert_eq!(running.collect().len(), 1);
                drop(entered);
                assert!(running.collect().is_empty());
                drop(seen);
            });
        });
        // Only the test's two handles are left: the slot kept no count.
        assert_eq!(Arc::strong_count(&outer), 1);
        assert!(!outer.is_settled());
    }

    #[test]
    fn a_job_submitted_before_a_cancel_all_that_starts_after_it_knows() {
        let running = Arc::new(Running::default());
        let job = slot_for_test();
        let submitted = running.epoch();
        running.bump();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                running.adopt_thread();
                let entered = enter(&job, submitted).expect("a worker thread");
                assert!(entered.missed_cancel());
                let later = enter(&job, running.epoch()).expect("room");
                assert!(!later.missed_cancel());
            });
        });
        // A thread that is no worker names nothing.
        assert!(enter(&job, submitted).is_none());
    }
}
