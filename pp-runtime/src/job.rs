//! A job's result slot and the [`Job`] handle that waits on it.
//!
//! The slot is written once by whoever completes the job (a local worker or a remote
//! node); a second completion is refused, which is what makes delivery exactly-once when a
//! job is retried elsewhere or a straggler's second copy runs. A completer first wins the
//! claim ([`JobState::claim`]), so that only the completion whose result is kept counts the
//! job (statistics, `wait`, groups), then stores the result.
//!
//! # The waiting policy
//!
//! A thread that blocks on a job's result ([`Job::result`], [`Job::wait_timeout`]) goes
//! through three stages; an async task (`.await`) only stores its waker.
//! 1. It polls the slot for a time decided when the job was submitted ([`Polling`], from
//!    `LocalPool::waiter_poll`), spinning for the first [`SPIN`] and giving the CPU away
//!    between polls after that, or from the start for a remote job (its chain of hops may
//!    need this very CPU). The time is: with no local workers, none behind queued jobs,
//!    else about twice the fastest node's average round trip; with fewer workers than
//!    cores, about twice the average job's run time (a core is idle, so polling costs
//!    nothing and spares the worker a wake-up); with at least one queued job per worker,
//!    none (a polling waiter would take a worker's core); otherwise [`SPIN`], which catches
//!    a lone short job. Polling never lasts more than [`MAX_IDLE_CORE_WAIT`].
//! 2. While the queue holds at least one job per local worker, it sleeps on the queue
//!    rather than asking to be woken by this job, at most [`BACKLOG_NAP`] at a time (why:
//!    [`crate::backlog`]).
//! 3. It parks until the completer wakes it (a system call for the completer, and on a
//!    virtual machine a costly cross-CPU interrupt: what the first two stages spare).
//!
//! A thread that is one of the server's own local workers (the wait is inside a job) does
//! none of that: it runs the server's sub-jobs while it waits, and sleeps only when there
//! is none (help-while-waiting, so that nested jobs cannot deadlock: why and its bounds
//! are in [`crate::helping`]).

use crate::backlog::{Backlog, BACKLOG_NAP};
use crate::error::{panic_message, JobError};
use crate::group::Group;
use crate::helping;
use crate::progress::{ProgressBar, Source};
use crate::queue::JobQueue;
use crate::settle::{Settle, Was};
use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

const CLAIMED: u8 = 1;
const DONE: u8 = 2;
const WAITING: u8 = 4;
/// Taken from the queue (by a local worker or a remote executor).
const TAKEN: u8 = 8;
/// Taken by a remote executor (with `TAKEN`).
const REMOTE: u8 = 16;

pub(crate) use crate::polling::{Polling, MAX_IDLE_CORE_WAIT, SPIN};

/// A function run on a job's result before the job counts as finished.
pub type Callback<R> = Box<dyn FnOnce(&Result<R, JobError>) + Send>;

enum Waiter {
    Thread(Thread),
    Task(Waker),
}

/// The shared result slot of one job, with what its completion runs and counts (the
/// callback, the group), so that whoever completes the job, a worker, a node's result, a
/// cancel or the deadline timer, does the same.
pub(crate) struct JobState<R> {
    state: AtomicU8,
    /// How a blocking waiter polls before it parks (see [`JobState::with_poll`]).
    poll: Polling,
    task: &'static str,
    /// The result, its error boxed: a slot with a small result stays small (the
    /// allocator serves it from its fast lists; the hot path).
    result: UnsafeCell<Option<Result<R, Box<JobError>>>>,
    callback: UnsafeCell<Option<Callback<R>>>,
    group: Option<Arc<Group>>,
    waiter: Mutex<Option<Waiter>>,
}

// SAFETY: `result` is written only by the single completer that won the CLAIMED bit, before
// it publishes DONE with release ordering; it is read only by the one `Job` handle after it
// observed DONE with acquire ordering. `callback` is set before the slot is shared and taken
// only by the completer that won the CLAIMED bit. Neither is ever accessed concurrently.
unsafe impl<R: Send> Send for JobState<R> {}
// SAFETY: as above.
unsafe impl<R: Send> Sync for JobState<R> {}

/// What an attempt to complete a job did (see [`JobState::claim`]).
pub(crate) enum Completion {
    /// The result was stored; carries the callback's panic message if it panicked.
    Stored { callback_panic: Option<String> },
    /// Another completion came first; this result was dropped.
    Duplicate,
}

impl<R> JobState<R> {
    /// A slot whose blocking waiter polls for `poll` before it parks. Parking makes the
    /// worker that completes the job pay a wake-up (a system call, and on a virtual machine
    /// a costly cross-CPU interrupt); when the server has an idle core, polling a little
    /// longer than the jobs usually take avoids that at no cost to the workers.
    pub(crate) fn with_poll(poll: Polling) -> Self {
        JobState {
            poll,
            state: AtomicU8::new(0),
            task: "",
            result: UnsafeCell::new(None),
            callback: UnsafeCell::new(None),
            group: None,
            waiter: Mutex::new(None),
        }
    }

    /// A slot for a job of task `task`, whose completion runs `callback` and counts `group`
    /// done, built in place (see [`with_poll`](JobState::with_poll) for `poll`).
    pub(crate) fn new_job(
        poll: Polling,
        task: &'static str,
        callback: Option<Callback<R>>,
        group: Option<Arc<Group>>,
    ) -> Self {
        JobState {
            poll,
            state: AtomicU8::new(0),
            task,
            result: UnsafeCell::new(None),
            callback: UnsafeCell::new(callback),
            group,
            waiter: Mutex::new(None),
        }
    }

    /// The same slot for a job of task `task`, whose completion runs `callback` and counts
    /// `group` done.
    #[cfg(test)]
    pub(crate) fn for_job(
        mut self,
        task: &'static str,
        callback: Option<Callback<R>>,
        group: Option<Arc<Group>>,
    ) -> Self {
        self.task = task;
        self.callback = UnsafeCell::new(callback);
        self.group = group;
        self
    }

    fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) & DONE != 0
    }

    /// Wins the right to complete the job: true for the first caller only, who must then
    /// call [`store`](JobState::store). Lets a completer count the job (statistics) only
    /// when its result is the one kept, and before anyone can see that result.
    pub(crate) fn claim(&self) -> bool {
        self.claim_where().is_some()
    }

    /// [`claim`](JobState::claim) of a job not taken from the queue yet; `None` if it was
    /// taken or claimed.
    fn claim_queued(&self) -> Option<Was> {
        let mut now = self.state.load(Ordering::Acquire);
        loop {
            if now & (CLAIMED | TAKEN) != 0 {
                return None;
            }
            match self.state.compare_exchange_weak(
                now,
                now | CLAIMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Was::Queued),
                Err(actual) => now = actual,
            }
        }
    }

    /// [`claim`](JobState::claim), saying where the job was when it was claimed.
    fn claim_where(&self) -> Option<Was> {
        let before = self.state.fetch_or(CLAIMED, Ordering::AcqRel);
        if before & CLAIMED != 0 {
            return None;
        }
        Some(if before & REMOTE != 0 {
            Was::Remote
        } else if before & TAKEN != 0 {
            Was::Local
        } else {
            Was::Queued
        })
    }

    /// Marks the job taken from the queue, by a remote executor if `remote`; returns false
    /// (and the taker skips it) if it was settled while queued.
    pub(crate) fn mark_taken(&self, remote: bool) -> bool {
        let bits = if remote { TAKEN | REMOTE } else { TAKEN };
        self.state.fetch_or(bits, Ordering::AcqRel) & CLAIMED == 0
    }

    /// Marks the job queued again (given back by a remote executor); returns false if it
    /// was settled meanwhile, and must then not be queued.
    pub(crate) fn mark_queued(&self) -> bool {
        self.state.fetch_and(!(TAKEN | REMOTE), Ordering::AcqRel) & CLAIMED == 0
    }

    /// Whether some completion claimed the job (its result is kept or being stored).
    pub(crate) fn is_claimed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLAIMED != 0
    }

    /// Stores the result of a completion that won [`claim`](JobState::claim), runs the
    /// callback, marks the job done, wakes its waiter and counts the group done; returns
    /// the callback's panic message if it panicked. Call once, and only after a successful
    /// `claim`.
    pub(crate) fn store(&self, result: Result<R, JobError>) -> Option<String> {
        debug_assert!(self.is_claimed());
        // SAFETY: the caller won CLAIMED, DONE is not yet set: nobody else touches the slot
        // or the callback.
        let (slot, callback) = unsafe { (&mut *self.result.get(), (*self.callback.get()).take()) };
        let callback_panic = callback.and_then(|callback| {
            // A callback's time is no job's run time (see `crate::clock`).
            crate::clock::break_chain();
            catch_unwind(AssertUnwindSafe(|| callback(&result)))
                .err()
                .map(|payload| panic_message(payload.as_ref()))
        });
        *slot = Some(result.map_err(Box::new));
        let previous = self.state.fetch_or(DONE, Ordering::AcqRel);
        if previous & WAITING != 0 {
            crate::clock::break_chain();
            let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take();
            match waiter {
                Some(Waiter::Thread(thread)) => thread.unpark(),
                Some(Waiter::Task(waker)) => waker.wake(),
                None => {}
            }
        }
        if let Some(group) = &self.group {
            group.pending.done();
        }
        callback_panic
    }

    /// Registers a waiter; returns true if the job is already done.
    fn register(&self, waiter: Waiter) -> bool {
        *self.waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(waiter);
        self.state.fetch_or(WAITING, Ordering::AcqRel) & DONE != 0
    }

    fn spin_until_done(&self) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..32 {
                if self.is_done() {
                    return true;
                }
                std::hint::spin_loop();
            }
            let waited = start.elapsed();
            if waited > self.poll.time() {
                return self.is_done();
            }
            if self.poll.yielding() || waited > SPIN {
                // Past the short spin, give the CPU to anyone who wants it between polls.
                thread::yield_now();
            }
        }
    }

    /// Blocks until done or until `deadline`; returns whether the job is done. While
    /// `backlog` is busy, sleeps on it rather than asking to be woken by this job (see
    /// [`crate::backlog`]).
    fn block(&self, deadline: Option<Instant>, backlog: Option<&dyn Backlog>) -> bool {
        if self.spin_until_done() {
            return true;
        }
        if let Some(backlog) = backlog {
            while !self.is_done() && backlog.busy() {
                let now = Instant::now();
                let mut until = now + BACKLOG_NAP;
                if let Some(deadline) = deadline {
                    if now >= deadline {
                        return self.is_done();
                    }
                    until = until.min(deadline);
                }
                backlog
                    .sleepers()
                    .sleep(|| !self.is_done() && backlog.busy(), until);
            }
        }
        if self.is_done() || self.register(Waiter::Thread(thread::current())) {
            return true;
        }
        loop {
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return self.is_done();
                    }
                    thread::park_timeout(deadline - now);
                }
            }
            if self.is_done() {
                return true;
            }
        }
    }

    /// Takes the result out. Call only once, after observing DONE.
    fn take(&self) -> Option<Result<R, JobError>> {
        debug_assert!(self.is_done());
        // SAFETY: DONE was observed with acquire ordering, so the completer is finished with
        // the slot; the single `Job` handle is the only reader.
        unsafe { (*self.result.get()).take() }.map(|result| result.map_err(|error| *error))
    }
}

impl<R: Send + 'static> Settle for JobState<R> {
    fn task(&self) -> &'static str {
        self.task
    }

    fn is_settled(&self) -> bool {
        self.is_claimed()
    }

    fn settle(&self, error: JobError, queued_only: bool) -> Option<(Was, Option<String>)> {
        let was = if queued_only {
            self.claim_queued()?
        } else {
            self.claim_where()?
        };
        Some((was, self.store(Err(error))))
    }
}

/// A submitted job: wait for its result with [`Job::result`], or `.await` it.
///
/// Dropping a `Job` does not cancel it; the job still runs and its callback is still called.
/// [`Job::cancel`] does.
#[must_use = "a Job does nothing by itself: call `.result()` or `.await` it to get the value"]
pub struct Job<R> {
    state: Arc<JobState<R>>,
    task: &'static str,
    /// The queue the job was submitted to: it counts a cancel, and a blocking wait may
    /// sleep on its backlog (`None` inside: a job whose waits only park).
    queue: Weak<JobQueue>,
    /// The server's progress bar, which a blocking wait shows (`None`: off).
    progress: Option<Arc<ProgressBar>>,
}

impl<R> Job<R> {
    /// A job whose blocking waits only park (used by tests that drive a core by hand).
    #[cfg(test)]
    pub(crate) fn new(state: Arc<JobState<R>>, task: &'static str) -> Self {
        Job {
            state,
            task,
            queue: Weak::new(),
            progress: None,
        }
    }

    /// A job queued on `queue`, whose blocking waits sleep on its backlog while it is busy
    /// and whose [`cancel`](Job::cancel) it counts.
    pub(crate) fn on_queue(
        state: Arc<JobState<R>>,
        task: &'static str,
        queue: Weak<JobQueue>,
    ) -> Self {
        Job {
            state,
            task,
            queue,
            progress: None,
        }
    }

    /// The same job, whose blocking waits show `progress` (the server's bar, if it has one).
    pub(crate) fn with_progress(mut self, progress: Option<Arc<ProgressBar>>) -> Self {
        self.progress = progress;
        self
    }

    fn block(&self, deadline: Option<Instant>) -> bool {
        if self.state.is_done() {
            return true;
        }
        if let Some(done) = self.help(deadline) {
            return done;
        }
        let _shown = match &self.progress {
            Some(bar) if !self.state.is_done() => Some(bar.wait(Source::Queue, true)),
            _ => None,
        };
        let queue = self.queue.upgrade();
        self.state.block(
            deadline,
            queue.as_deref().map(|queue| queue as &dyn Backlog),
        )
    }

    /// Inside a job of the same server: runs its sub-jobs until this one is done (see
    /// [`crate::helping`]); `None` elsewhere.
    fn help(&self, deadline: Option<Instant>) -> Option<bool> {
        helping::current()?;
        if self.queue.strong_count() == 0 {
            return None;
        }
        let queue = Weak::as_ptr(&self.queue).cast::<()>();
        if self.state.register(Waiter::Thread(thread::current())) {
            return Some(true);
        }
        helping::help_while_waiting(queue, deadline, &|| self.state.is_done())
    }

    /// Asks for `waker` to be woken when the job is done; returns true (and keeps no
    /// waker) if it is done already. Replaces any waker or thread registered before.
    pub(crate) fn wake_when_done(&self, waker: Waker) -> bool {
        self.state.is_done() || self.state.register(Waiter::Task(waker))
    }

    /// The result of a job that is done (see [`Job::is_finished`]), without waiting.
    pub(crate) fn take_done(self) -> Result<R, JobError> {
        debug_assert!(self.state.is_done());
        self.result()
    }

    /// The id of the task this job runs.
    pub fn task_id(&self) -> &'static str {
        self.task
    }

    /// Whether the result is ready (and the callback, if any, has run).
    pub fn is_finished(&self) -> bool {
        self.state.is_done()
    }

    /// Waits for the job to finish, at most `timeout`; returns whether it finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.block(Some(Instant::now() + timeout))
    }

    /// Cancels the job: unless it already has a result, it ends at once with
    /// [`JobError::Cancelled`] (its callback runs now, on this thread, and it counts as
    /// finished for `wait`); returns whether this call ended it.
    ///
    /// A queued job is then skipped, never run. A job running on a local worker thread runs
    /// on (a thread cannot be stopped from outside): [`should_stop`](crate::should_stop)
    /// turns true inside it, so a job that looks can return early, and its result is
    /// dropped. A job on a node (or an isolated local worker) has its worker stopped by its
    /// executor.
    pub fn cancel(&self) -> bool
    where
        R: Send + 'static,
    {
        match self.queue.upgrade() {
            Some(queue) => queue.cancel_jobs(&[&*self.state as &dyn Settle]) > 0,
            None => self
                .state
                .settle(
                    JobError::Cancelled {
                        task: self.task.to_owned(),
                    },
                    false,
                )
                .is_some(),
        }
    }

    /// Waits for the job and returns its result: PP's `job()`.
    ///
    /// # Errors
    /// [`JobError::Panicked`] if the function panicked; [`JobError::Cancelled`] if it was
    /// cancelled or the server shut down before the job started; [`JobError::TimedOut`] if
    /// it ran past its time limit; for jobs on nodes, the errors of remote runs.
    pub fn result(self) -> Result<R, JobError> {
        self.block(None);
        self.state
            .take()
            .expect("a finished job holds its result until its only handle takes it")
    }
}

impl<R> Future for Job<R> {
    type Output = Result<R, JobError>;

    /// # Panics
    /// If polled again after it returned `Ready`, like most futures.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.state.is_done() || self.state.register(Waiter::Task(cx.waker().clone())) {
            Poll::Ready(
                self.state
                    .take()
                    .expect("`Job` polled after it returned `Ready`"),
            )
        } else {
            Poll::Pending
        }
    }
}

impl<R> fmt::Debug for Job<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("task", &self.task)
            .field("finished", &self.is_finished())
            .finish()
    }
}
