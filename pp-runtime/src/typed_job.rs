//! [`TypedJob`]: a submitted job with its task's types: run by a local worker as a direct
//! function call, or its arguments encoded for a node and its result decoded from one.

use crate::codec::{self, CodecError};
use crate::error::{panic_message, JobError};
use crate::job::{Completion, JobState};
use crate::limits::JobLimits;
use crate::outcome::Outcome;
use crate::queued_job::QueuedJob;
use crate::settle::Settle;
use crate::stats::{ExecutorCounters, Tally};
use crate::task::{Task, TaskFn};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

/// A typed job: the function is called directly by a local worker, or its arguments are
/// encoded for a node (see [`crate::remote`]). Its callback and group are in its result slot
/// ([`JobState`]), which whoever completes the job uses.
pub(crate) struct TypedJob<F: TaskFn> {
    task: Task<F>,
    state: Arc<JobState<F::Output>>,
    body: Body<F>,
    limits: JobLimits,
    /// The cancel epoch it was submitted in (see [`crate::running`]).
    epoch: u64,
}

/// The job's arguments.
enum Body<F: TaskFn> {
    /// The job's only copy owns them: the common case, with no lock and no sharing.
    Owned(F::Args),
    /// A job that was copied (see [`QueuedJob::duplicate`]): its copies share this.
    Shared(Arc<Shared<F>>),
}

/// What the copies of one typed job share.
struct Shared<F: TaskFn> {
    /// The arguments, until a local run takes them.
    args: Mutex<Option<F::Args>>,
    /// Live copies of the job: 1, or 2 while a duplicate of a straggler runs.
    copies: AtomicU32,
}

impl<F: TaskFn> Shared<F> {
    fn args(&self) -> MutexGuard<'_, Option<F::Args>> {
        self.args.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Marks the calling thread as running a job (what [`crate::should_stop`] reads) until
/// dropped.
struct Running(Option<*const dyn Settle>);

impl Running {
    /// The guard lives within the job's run, which holds `job` alive: the pointer that
    /// `should_stop` reads stays valid while it is set.
    fn enter(job: &(dyn Settle + 'static)) -> Self {
        Running(crate::stop::enter(job))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        crate::stop::leave(self.0);
    }
}

impl<F: TaskFn> TypedJob<F> {
    /// A job of `task` with `args`, whose result goes to `state`.
    #[cfg(test)]
    pub(crate) fn new(task: Task<F>, args: F::Args, state: Arc<JobState<F::Output>>) -> Self {
        TypedJob {
            task,
            state,
            body: Body::Owned(args),
            limits: JobLimits::default(),
            epoch: 0,
        }
    }

    /// A job as a server submits it, built in place: with `limits`, in cancel epoch
    /// `epoch` (see [`crate::running`]).
    pub(crate) fn submitted(
        task: Task<F>,
        args: F::Args,
        state: Arc<JobState<F::Output>>,
        limits: JobLimits,
        epoch: u64,
    ) -> Self {
        TypedJob {
            task,
            state,
            body: Body::Owned(args),
            limits,
            epoch,
        }
    }

    /// The same job with `limits` (its time limit and retries).
    #[cfg(test)]
    pub(crate) fn with_limits(mut self, limits: JobLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Completes the job with `result` if no other completion did: counts it with `tally`
    /// first (so whoever sees the result also sees it in the stats), then stores the result
    /// (which runs the callback and counts the group done). Only the completion that stores
    /// the result counts anything.
    fn finish(
        state: &JobState<F::Output>,
        result: Result<F::Output, JobError>,
        tally: Option<Tally<'_>>,
    ) -> Completion {
        if !state.claim() {
            return Completion::Duplicate;
        }
        if let Some(tally) = tally {
            tally.count();
        }
        let callback_panic = state.store(result);
        Completion::Stored { callback_panic }
    }

    /// Calls the function, counted as running in `counters` meanwhile; returns its result
    /// and the tally of a local run: its run time is the call's, nothing else.
    fn call<'c>(
        task: Task<F>,
        args: F::Args,
        state: &JobState<F::Output>,
        counters: &'c ExecutorCounters,
    ) -> (Result<F::Output, JobError>, Tally<'c>) {
        let (result, run_time) = counters.timed(|| {
            let _running = Running::enter(state);
            catch_unwind(AssertUnwindSafe(move || task.function().call(args))).map_err(|payload| {
                JobError::Panicked {
                    task: task.id().to_owned(),
                    message: panic_message(payload.as_ref()),
                }
            })
        });
        let tally = Tally {
            row: counters,
            run_time,
            in_flight: None,
        };
        (result, tally)
    }
}

impl<F: TaskFn> QueuedJob for TypedJob<F> {
    fn task_id(&self) -> &'static str {
        self.task.id()
    }

    fn fingerprint(&self) -> u64 {
        self.task.fingerprint()
    }

    fn encode_args_within(&self, limit: u64) -> Result<Option<Vec<u8>>, CodecError> {
        match &self.body {
            Body::Owned(args) => codec::encode_payload_within(args, limit),
            Body::Shared(shared) => match &*shared.args() {
                Some(args) => codec::encode_payload_within(args, limit),
                None => Err(CodecError::new(
                    "the job's arguments were taken by a local run",
                )),
            },
        }
    }

    fn encode_args(&self) -> Result<Vec<u8>, CodecError> {
        match &self.body {
            Body::Owned(args) => codec::encode_payload(args),
            Body::Shared(shared) => match &*shared.args() {
                Some(args) => codec::encode_payload(args),
                None => Err(CodecError::new(
                    "the job's arguments were taken by a local run",
                )),
            },
        }
    }

    fn complete_remote(self: Box<Self>, outcome: Outcome, tally: Tally<'_>) -> Completion {
        let task_id = || self.task.id().to_owned();
        let result = match outcome {
            Outcome::Ok(bytes) => {
                codec::decode_payload::<F::Output>(&bytes).map_err(|e| JobError::Remote {
                    task: task_id(),
                    message: format!("cannot decode the result: {e}"),
                })
            }
            Outcome::Panicked(message) => Err(JobError::Panicked {
                task: task_id(),
                message,
            }),
            Outcome::WorkerCrashed(message) => Err(JobError::WorkerCrashed {
                task: task_id(),
                message,
            }),
            Outcome::Failed(message) => Err(JobError::Remote {
                task: task_id(),
                message,
            }),
            Outcome::TimedOut(after) => Err(JobError::TimedOut {
                task: task_id(),
                after,
                attempts: 1,
            }),
        };
        Self::finish(&self.state, result, Some(tally))
    }

    fn complete_timed_out(
        self: Box<Self>,
        after: Duration,
        attempts: u32,
        tally: Tally<'_>,
    ) -> Completion {
        let error = JobError::TimedOut {
            task: self.task.id().to_owned(),
            after,
            attempts,
        };
        Self::finish(&self.state, Err(error), Some(tally))
    }

    fn run(self: Box<Self>, counters: &ExecutorCounters) -> Completion {
        let TypedJob {
            task,
            state,
            body,
            epoch,
            ..
        } = *self;
        if state.is_claimed() {
            // Settled (cancelled, timed out) after it was taken: not run.
            return Completion::Duplicate;
        }
        // Named as running on this thread, for `cancel_all`, until its function returns.
        let running = crate::running::enter(&state, epoch);
        if running
            .as_ref()
            .is_some_and(crate::running::Entered::missed_cancel)
            && crate::helping::cancel_on_this_drainer(&*state)
        {
            // A `cancel_all` began after it was submitted and may not have seen it.
            return Completion::Duplicate;
        }
        let args = match body {
            Body::Owned(args) => args,
            Body::Shared(shared) => match shared.args().take() {
                Some(args) => args,
                // Another copy runs locally. Only one copy of a job is ever queued, so
                // this is not expected; that copy completes the job.
                None => return Completion::Duplicate,
            },
        };
        let (result, tally) = Self::call(task, args, &state, counters);
        drop(running);
        Self::finish(&state, result, Some(tally))
    }

    fn fail(self: Box<Self>, error: JobError) -> Completion {
        let task = self.task.id();
        let completion = Self::finish(&self.state, Err(error), None);
        if let Completion::Stored {
            callback_panic: Some(message),
        } = &completion
        {
            crate::error!(task, "a job callback panicked: {message}");
        }
        completion
    }

    fn take(&self, remote: bool) -> bool {
        self.state.mark_taken(remote)
    }

    fn is_job(&self) -> bool {
        true
    }

    fn untake(&self) -> bool {
        self.state.mark_queued()
    }

    fn retries(&self) -> Option<u32> {
        self.limits.retries
    }

    fn duplicate(&mut self) -> Option<Box<dyn QueuedJob>> {
        if self.state.is_claimed() {
            return None;
        }
        if let Body::Owned(_) = self.body {
            // First copy: move the arguments into a shared body.
            let placeholder = Body::Shared(Arc::new(Shared {
                args: Mutex::new(None),
                copies: AtomicU32::new(1),
            }));
            if let Body::Owned(args) = std::mem::replace(&mut self.body, placeholder) {
                self.body = Body::Shared(Arc::new(Shared {
                    args: Mutex::new(Some(args)),
                    copies: AtomicU32::new(1),
                }));
            }
        }
        let Body::Shared(shared) = &self.body else {
            return None;
        };
        // A local run took the arguments: nothing to copy.
        shared.args().as_ref()?;
        shared
            .copies
            .compare_exchange(1, 2, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(Box::new(TypedJob {
            task: self.task,
            state: Arc::clone(&self.state),
            body: Body::Shared(Arc::clone(shared)),
            limits: self.limits,
            epoch: self.epoch,
        }))
    }

    fn timeout(&self) -> Option<Duration> {
        self.limits.timeout
    }

    fn deadline(&self) -> Option<(Weak<dyn Settle>, Duration)> {
        let limit = self.limits.timeout?;
        Some((Arc::downgrade(&self.state) as Weak<dyn Settle>, limit))
    }

    fn is_completed(&self) -> bool {
        self.state.is_claimed()
    }

    fn release_copy(&self) -> bool {
        let Body::Shared(shared) = &self.body else {
            return false;
        };
        let copies = &shared.copies;
        let mut live = copies.load(Ordering::Acquire);
        while live > 1 {
            match copies.compare_exchange_weak(live, live - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => live = now,
            }
        }
        false
    }
}
