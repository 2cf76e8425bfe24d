//! [`TypedJob`]: a submitted job with its task's types: run by a local worker as a direct
//! function call, or its arguments encoded for a node and its result decoded from one.

use crate::codec::{self, CodecError};
use crate::error::{panic_message, JobError};
use crate::job::{Callback, Completion, JobState};
use crate::limits::JobLimits;
use crate::outcome::Outcome;
use crate::pending::Pending;
use crate::queued_job::QueuedJob;
use crate::stats::{ExecutorCounters, Tally};
use crate::task::{Task, TaskFn};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A typed job: the function is called directly by a local worker, or its arguments are
/// encoded for a node (see [`crate::remote`]).
pub(crate) struct TypedJob<F: TaskFn> {
    task: Task<F>,
    state: Arc<JobState<F::Output>>,
    body: Body<F>,
    limits: JobLimits,
}

/// What a job carries besides its task and result slot.
enum Body<F: TaskFn> {
    /// The job's only copy owns everything: the common case, with no lock and no sharing.
    Owned {
        args: F::Args,
        callback: Option<Callback<F::Output>>,
        group: Option<Arc<Pending>>,
    },
    /// A job that was copied (see [`QueuedJob::duplicate`]): its copies share this.
    Shared(Arc<Shared<F>>),
}

/// What the copies of one typed job share.
struct Shared<F: TaskFn> {
    group: Option<Arc<Pending>>,
    /// The arguments (taken by a local run) and the callback (taken by the completion that
    /// wins).
    parts: Mutex<Parts<F>>,
    /// Live copies of the job: 1, or 2 while a duplicate of a straggler runs.
    copies: AtomicU32,
}

struct Parts<F: TaskFn> {
    args: Option<F::Args>,
    callback: Option<Callback<F::Output>>,
}

impl<F: TaskFn> Shared<F> {
    fn parts(&self) -> MutexGuard<'_, Parts<F>> {
        self.parts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The callback and group, for the completion that won the claim.
    fn take_for_completion(&self) -> (Option<Callback<F::Output>>, Option<Arc<Pending>>) {
        (self.parts().callback.take(), self.group.clone())
    }
}

impl<F: TaskFn> TypedJob<F> {
    pub(crate) fn new(
        task: Task<F>,
        args: F::Args,
        state: Arc<JobState<F::Output>>,
        callback: Option<Callback<F::Output>>,
        group: Option<Arc<Pending>>,
    ) -> Self {
        TypedJob {
            task,
            state,
            body: Body::Owned {
                args,
                callback,
                group,
            },
            limits: JobLimits::default(),
        }
    }

    /// The same job with `limits` (its time limit and retries).
    pub(crate) fn with_limits(mut self, limits: JobLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Completes the job with `result` if no other copy did: counts it with `tally` first
    /// (so whoever sees the result also sees it in the stats), then takes the callback and
    /// group from `take`, stores the result and counts the group done. Only the completion
    /// that stores the result counts anything.
    fn finish(
        state: &JobState<F::Output>,
        result: Result<F::Output, JobError>,
        tally: Option<Tally<'_>>,
        take: impl FnOnce() -> (Option<Callback<F::Output>>, Option<Arc<Pending>>),
    ) -> Completion {
        if !state.claim() {
            return Completion::Duplicate;
        }
        if let Some(tally) = tally {
            tally.count();
        }
        let (callback, group) = take();
        let callback_panic = state.store(result, callback);
        if let Some(group) = group {
            group.done();
        }
        Completion::Stored { callback_panic }
    }

    /// Completes the job without running it here (a remote result, or an error).
    fn complete(self, result: Result<F::Output, JobError>, tally: Option<Tally<'_>>) -> Completion {
        let TypedJob { state, body, .. } = self;
        match body {
            Body::Owned {
                callback, group, ..
            } => Self::finish(&state, result, tally, || (callback, group)),
            Body::Shared(shared) => {
                Self::finish(&state, result, tally, || shared.take_for_completion())
            }
        }
    }

    /// Calls the function, counted as running in `counters` meanwhile; returns its result
    /// and the tally of a local run: its run time is the call's, nothing else.
    fn call(
        task: Task<F>,
        args: F::Args,
        counters: &ExecutorCounters,
    ) -> (Result<F::Output, JobError>, Tally<'_>) {
        let (result, run_time) = counters.timed(|| {
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
            Body::Owned { args, .. } => codec::encode_payload_within(args, limit),
            Body::Shared(shared) => match &shared.parts().args {
                Some(args) => codec::encode_payload_within(args, limit),
                None => Err(CodecError::new(
                    "the job's arguments were taken by a local run",
                )),
            },
        }
    }

    fn encode_args(&self) -> Result<Vec<u8>, CodecError> {
        match &self.body {
            Body::Owned { args, .. } => codec::encode_payload(args),
            Body::Shared(shared) => match &shared.parts().args {
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
        self.complete(result, Some(tally))
    }

    fn run(self: Box<Self>, counters: &ExecutorCounters) -> Completion {
        let TypedJob {
            task, state, body, ..
        } = *self;
        match body {
            Body::Owned {
                args,
                callback,
                group,
            } => {
                let (result, tally) = Self::call(task, args, counters);
                Self::finish(&state, result, Some(tally), || (callback, group))
            }
            Body::Shared(shared) => {
                if state.is_claimed() {
                    return Completion::Duplicate;
                }
                let Some(args) = shared.parts().args.take() else {
                    // Another copy runs locally. Only one copy of a job is ever queued, so
                    // this is not expected; that copy completes the job.
                    return Completion::Duplicate;
                };
                let (result, tally) = Self::call(task, args, counters);
                Self::finish(&state, result, Some(tally), || shared.take_for_completion())
            }
        }
    }

    fn fail(self: Box<Self>, error: JobError) -> Completion {
        let task = self.task.id();
        let completion = self.complete(Err(error), None);
        if let Completion::Stored {
            callback_panic: Some(message),
        } = &completion
        {
            crate::error!(task, "a job callback panicked: {message}");
        }
        completion
    }

    fn duplicate(&mut self) -> Option<Box<dyn QueuedJob>> {
        if self.state.is_claimed() {
            return None;
        }
        if let Body::Owned { .. } = self.body {
            // First copy: move what the job owns into a shared body.
            let placeholder = Body::Shared(Arc::new(Shared {
                group: None,
                parts: Mutex::new(Parts {
                    args: None,
                    callback: None,
                }),
                copies: AtomicU32::new(1),
            }));
            if let Body::Owned {
                args,
                callback,
                group,
            } = std::mem::replace(&mut self.body, placeholder)
            {
                self.body = Body::Shared(Arc::new(Shared {
                    group,
                    parts: Mutex::new(Parts {
                        args: Some(args),
                        callback,
                    }),
                    copies: AtomicU32::new(1),
                }));
            }
        }
        let Body::Shared(shared) = &self.body else {
            return None;
        };
        // A local run took the arguments: nothing to copy.
        shared.parts().args.as_ref()?;
        shared
            .copies
            .compare_exchange(1, 2, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        Some(Box::new(TypedJob {
            task: self.task,
            state: Arc::clone(&self.state),
            body: Body::Shared(Arc::clone(shared)),
            limits: self.limits,
        }))
    }

    fn timeout(&self) -> Option<Duration> {
        self.limits.timeout
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
