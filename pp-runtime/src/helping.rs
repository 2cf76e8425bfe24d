//! Nested jobs: a job may submit jobs to its own server and wait for them, to any depth,
//! with any number of such jobs, without deadlock.
//!
//! # The policy: help while waiting
//!
//! Without it, every local worker can end up blocked in a job that waits for sub-jobs
//! queued behind it, with no worker left to run them (a pool of 2 deadlocked with 3 such
//! jobs). Two cures are known: the waiting worker runs queued jobs meanwhile, or the pool
//! adds a compensating thread for each blocked one. pp helps while waiting:
//! - a compensating thread per blocked job means as many threads as jobs waiting at once:
//!   with FIFO order every outer job starts (and blocks) before any sub-job runs, so
//!   10,000 outer jobs would mean 10,000 threads; capping them brings the deadlock back;
//! - a helping worker keeps `ncpus` threads and runs what the blocked jobs need.
//!
//! Its two classic dangers, and how they are bounded here:
//! - **A helper stuck under a long job, or under a job that waits for one beneath it.**
//!   A helper runs only *sub-jobs*: jobs that a job of this pool submitted (they go to the
//!   pool's own deque, not to the server's queue), never the server's queued top-level
//!   jobs. A job can only wait for jobs it holds a [`Job`](crate::Job) handle of, which it
//!   submitted after it started; every job a helper runs starts after the one it helps
//!   under; so the chain "waits for, or sits beneath" always goes to later-started jobs and
//!   cannot close into a cycle. What a helper runs is work some running job waits for, so
//!   the delay to the job beneath is work that had to be done anyway. The exception is a
//!   job that waits for a *group* holding jobs that started before it (its own group, or a
//!   job of an earlier phase it was run beneath): `wait_group` inside a job is safe for
//!   groups of its own sub-jobs, as [`Server::wait_group`](crate::Server::wait_group) says.
//! - **Stack depth, and helpers that park.** A waiting job runs only *its own* sub-jobs
//!   (those it submitted), newest first (LIFO), so a helper goes depth first down its own
//!   tree: its stack holds one job per level of nesting, never a job of another branch.
//!   (Helping with any sub-job let two workers pile each other's branches on their stacks:
//!   a binary tree 16 levels deep reached 128 jobs on both stacks, where helping stopped,
//!   and hung.) A waiting job whose own sub-jobs have all been taken parks until they
//!   finish: each was taken by a drainer that was idle, and runs at the bottom of its
//!   stack, helping only with its own sub-jobs in turn, so every chain of waits ends at a
//!   job that runs. [`MAX_HELP_DEPTH`] remains as a guard, and workers have
//!   [`WORKER_STACK`]-byte stacks.
//!
//! Drainers that are not waiting take the *oldest* sub-job of any job first, before the
//! queue's jobs: the jobs that wait for them hold workers.
//!
//! In cluster mode sub-jobs that may run on a node go to the server's queue as before, so
//! that nodes take them; a waiting worker then sleeps until its result comes, as nodes
//! and free workers run them.
//!
//! Each job run by a drainer is a *frame*: the sub-jobs it submits are counted there, and
//! [`Server::wait`](crate::Server::wait) called inside a job waits for them (waiting for
//! every job of the server would wait for the job itself).

use crate::job::Callback;
use crate::pending::Pending;
use crate::pool::{LocalPool, Pick};
use crate::queue::JobQueue;
use crate::settle::Settle;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most jobs one thread's stack holds through helping; past it a waiting drainer parks
/// instead of helping.
pub(crate) const MAX_HELP_DEPTH: usize = 128;

/// Stack size of a local worker thread: room for [`MAX_HELP_DEPTH`] jobs of up to 64 KiB
/// of stack each (address space only: pages are used as touched).
pub(crate) const WORKER_STACK: usize = 16 << 20;

/// The longest a helper with nothing to run sleeps before it looks again (it is woken
/// when a sub-job comes or its result is ready: this only bounds a missed wake-up).
const HELP_NAP: Duration = Duration::from_millis(50);

/// Names the job a sub-job was submitted by (the address of that job's count of sub-jobs;
/// 0 for none): a waiting job helps only with its own sub-jobs.
pub(crate) type FrameId = usize;

/// The [`FrameId`] of the job running on this thread (made on first use, as its count of
/// sub-jobs is: a sub-job submitted without being counted, as `map`'s batches are, is
/// still its job's); 0 on a thread running no job.
pub(crate) fn frame_id() -> FrameId {
    children().map_or(0, |children| Arc::as_ptr(&children) as FrameId)
}

/// The drainer running on this thread: its pool and queue.
#[derive(Clone, Copy)]
pub(crate) struct Drainer {
    pub(crate) pool: *const LocalPool,
    queue: *const JobQueue,
}

thread_local! {
    static DRAINER: Cell<Option<Drainer>> = const { Cell::new(None) };
    /// Jobs on this thread's stack run by helping (0: the drainer's own job).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// One entry per job running on this thread: its sub-jobs' count, made on first use.
    static FRAMES: RefCell<Vec<Option<Arc<Pending>>>> = const { RefCell::new(Vec::new()) };
}

/// Restores the thread's previous drainer when a drainer ends.
pub(crate) struct Entered(Option<Drainer>);

impl Drop for Entered {
    fn drop(&mut self) {
        DRAINER.with(|d| d.set(self.0));
    }
}

/// Marks the calling thread as a drainer of `pool` on `queue` until the guard drops. Both
/// must outlive the guard (the drainer holds them).
pub(crate) fn enter(pool: &LocalPool, queue: &JobQueue) -> Entered {
    let drainer = Drainer {
        pool: std::ptr::from_ref(pool),
        queue: std::ptr::from_ref(queue),
    };
    Entered(DRAINER.with(|d| d.replace(Some(drainer))))
}

/// The drainer running on this thread, if any.
pub(crate) fn current() -> Option<Drainer> {
    DRAINER.with(Cell::get)
}

/// Runs `run` (one job) in a frame of its own, which counts the sub-jobs it submits.
pub(crate) fn in_frame<T>(run: impl FnOnce() -> T) -> T {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            FRAMES.with(|f| f.borrow_mut().pop());
        }
    }
    FRAMES.with(|f| f.borrow_mut().push(None));
    let _pop = Pop;
    run()
}

/// The count of sub-jobs of the job running on this thread, made if need be; `None` on a
/// thread that runs no job.
pub(crate) fn children() -> Option<Arc<Pending>> {
    FRAMES.with(|f| {
        let mut frames = f.borrow_mut();
        let top = frames.last_mut()?;
        Some(Arc::clone(top.get_or_insert_with(Arc::default)))
    })
}

/// The count of sub-jobs of the job running on this thread, if it submitted any.
pub(crate) fn existing_children() -> Option<Arc<Pending>> {
    FRAMES.with(|f| f.borrow().last().cloned().flatten())
}

/// Cancels `job` through the queue of the drainer running on this thread (a job that a
/// `cancel_all` may have missed: see [`crate::running`]); returns false, doing nothing, on
/// a thread that is no drainer.
pub(crate) fn cancel_on_this_drainer(job: &dyn Settle) -> bool {
    let Some(drainer) = current() else {
        return false;
    };
    // SAFETY: `DRAINER` is set only while `LocalPool::drain` runs on this thread, which
    // holds the queue; a job it runs calls this.
    let queue = unsafe { &*drainer.queue };
    queue.cancel_jobs(&[job]);
    true
}

/// If this thread is a drainer of the pool whose queue is at `queue`, runs the sub-jobs of
/// the job waiting on it (newest first) until `done()`, or until `deadline`; returns
/// `Some(done())` then. Returns `None` when this thread is no such drainer, its job
/// submitted no sub-job, or it holds [`MAX_HELP_DEPTH`] jobs already: the caller then
/// blocks its usual way.
///
/// Whatever makes `done()` true must unpark this thread (the caller registered it), and
/// so must a new sub-job (the pool wakes its `helpers`).
pub(crate) fn help_while_waiting(
    queue: *const (),
    deadline: Option<Instant>,
    done: &dyn Fn() -> bool,
) -> Option<bool> {
    let drainer = current().filter(|d| d.queue.cast::<()>() == queue)?;
    let depth = DEPTH.with(Cell::get);
    let frame = frame_id();
    if depth >= MAX_HELP_DEPTH || frame == 0 {
        return None;
    }
    // SAFETY: `DRAINER` is set only while `LocalPool::drain` runs on this thread, which
    // holds the pool and the queue; we are inside it (called from a job it runs).
    let (pool, queue) = unsafe { (&*drainer.pool, &*drainer.queue) };
    loop {
        if done() {
            return Some(true);
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            return Some(done());
        }
        if let Some(job) = pool.pop_nested(Pick::NewestOf(frame)) {
            DEPTH.with(|d| d.set(depth + 1));
            pool.run(queue, job);
            DEPTH.with(|d| d.set(depth));
            continue;
        }
        let until = deadline.map_or(now + HELP_NAP, |d| d.min(now + HELP_NAP));
        pool.helpers()
            .sleep(|| !done() && !pool.has_sub_job_of(frame), until);
    }
}

/// Counts a job submitted by one of the pool's drainers (the caller checked) among the
/// sub-jobs of the job that drainer runs, until it completes: its callback is wrapped to
/// count it done (even if the callback panics, or the job is dropped uncompleted).
pub(crate) fn count_child<R: 'static>(callback: Option<Callback<R>>) -> Option<Callback<R>> {
    let Some(children) = children() else {
        return callback;
    };
    children.add();
    let done = ChildDone(children);
    Some(Box::new(move |result| {
        let _done = done;
        if let Some(callback) = callback {
            callback(result);
        }
    }))
}

/// Counts a sub-job done when dropped.
struct ChildDone(Arc<Pending>);

impl Drop for ChildDone {
    fn drop(&mut self) {
        self.0.done();
    }
}
