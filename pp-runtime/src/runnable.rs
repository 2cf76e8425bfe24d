//! A queued job with its types erased, as the scheduler sees it.

use crate::codec::{self, CodecError};
use crate::error::JobError;
use crate::job::{Callback, Completion, JobState};
use crate::panic_message;
use crate::pending::Pending;
use crate::remote::RemoteOutcome;
use crate::stats::Counters;
use crate::task::{Task, TaskFn};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A job waiting in the queue: run it, or fail it without running.
///
/// Running, failing and completing return a [`Completion`]: `Stored` when this call
/// completed the job (the caller then counts it finished, once), `Duplicate` when another
/// copy of the job (see [`duplicate`](Runnable::duplicate)) completed it first.
pub(crate) trait Runnable: Send {
    /// The task's id, for errors and logs.
    fn task_id(&self) -> &'static str;
    /// Runs the job on this thread, counts it in `counters` if its result is the one kept,
    /// then completes it.
    fn run(self: Box<Self>, counters: &Counters) -> Completion;
    /// Completes the job with `error` without running it.
    fn fail(self: Box<Self>, error: JobError) -> Completion;
    /// Whether the job can only run in this process (it borrows the caller's data, as the
    /// chunks of `par!` do); such jobs are never handed to a remote executor.
    fn local_only(&self) -> bool {
        false
    }
    /// The task's signature fingerprint.
    fn fingerprint(&self) -> u64 {
        0
    }
    /// The arguments in pp's wire encoding, for a remote run.
    fn encode_args(&self) -> Result<Vec<u8>, CodecError> {
        Err(CodecError::new("this job runs only in its own process"))
    }
    /// [`Runnable::encode_args`] if the encoding is at most `limit` bytes, else `None`
    /// (found out without encoding much more than `limit` bytes).
    fn encode_args_within(&self, limit: u64) -> Result<Option<Vec<u8>>, CodecError> {
        let _ = limit;
        self.encode_args().map(Some)
    }
    /// Completes the job with what a remote executor reported, counted in `counters` if
    /// its result is the one kept.
    fn complete_remote(
        self: Box<Self>,
        _outcome: RemoteOutcome,
        _counters: &Counters,
        _elapsed: Duration,
    ) -> Completion {
        let task = self.task_id().to_owned();
        self.fail(JobError::Remote {
            task,
            message: "this job runs only in its own process".into(),
        })
    }
    /// A second copy of this job, to run on another node while this one straggles: both
    /// copies share one result slot, the first completion wins. `None` if the job cannot
    /// be copied, is already completed, or already has a second copy.
    fn duplicate(&mut self) -> Option<Box<dyn Runnable>> {
        None
    }
    /// Whether the job is already completed (by this copy or another).
    fn is_completed(&self) -> bool {
        false
    }
    /// Drops this copy if another copy of the job is still live (in flight, queued or
    /// running) and returns true; returns false if this is the job's only live copy, which
    /// must then be kept (requeued, failed or completed).
    fn release_copy(&self) -> bool {
        false
    }
}

/// A typed job: the function is called directly by a local worker, or its arguments are
/// encoded for a node.
pub(crate) struct LocalJob<F: TaskFn> {
    task: Task<F>,
    state: Arc<JobState<F::Output>>,
    body: Body<F>,
}

/// What a job carries besides its task and result slot.
enum Body<F: TaskFn> {
    /// The job's only copy owns everything: the common case, with no lock and no sharing.
    Owned {
        args: F::Args,
        callback: Option<Callback<F::Output>>,
        group: Option<Arc<Pending>>,
    },
    /// A job that was copied (see [`Runnable::duplicate`]): its copies share this.
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

impl<F: TaskFn> LocalJob<F> {
    pub(crate) fn new(
        task: Task<F>,
        args: F::Args,
        state: Arc<JobState<F::Output>>,
        callback: Option<Callback<F::Output>>,
        group: Option<Arc<Pending>>,
    ) -> Self {
        LocalJob {
            task,
            state,
            body: Body::Owned {
                args,
                callback,
                group,
            },
        }
    }

    /// Completes the job with `result` if no other copy did: counts it in `counters` with
    /// `elapsed` first (so whoever sees the result also sees it in the stats), then takes
    /// the callback and group from `take`, stores the result and counts the group done.
    /// Only the completion that stores the result counts anything.
    fn finish(
        state: &JobState<F::Output>,
        result: Result<F::Output, JobError>,
        counted: Option<(&Counters, Duration)>,
        take: impl FnOnce() -> (Option<Callback<F::Output>>, Option<Arc<Pending>>),
    ) -> Completion {
        if !state.claim() {
            return Completion::Duplicate;
        }
        if let Some((counters, elapsed)) = counted {
            counters.record(elapsed);
        }
        let (callback, group) = take();
        let callback_panic = state.store(result, callback);
        if let Some(group) = group {
            group.done();
        }
        Completion::Stored { callback_panic }
    }

    /// Completes the job without running it here (a remote result, or an error).
    fn complete(
        self,
        result: Result<F::Output, JobError>,
        counted: Option<(&Counters, Duration)>,
    ) -> Completion {
        let LocalJob { state, body, .. } = self;
        match body {
            Body::Owned {
                callback, group, ..
            } => Self::finish(&state, result, counted, || (callback, group)),
            Body::Shared(shared) => {
                Self::finish(&state, result, counted, || shared.take_for_completion())
            }
        }
    }

    fn call(task: Task<F>, args: F::Args) -> (Result<F::Output, JobError>, Duration) {
        let start = Instant::now();
        let result =
            catch_unwind(AssertUnwindSafe(move || task.function().call(args))).map_err(|payload| {
                JobError::Panicked {
                    task: task.id().to_owned(),
                    message: panic_message(payload.as_ref()),
                }
            });
        (result, start.elapsed())
    }
}

impl<F: TaskFn> Runnable for LocalJob<F> {
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

    fn complete_remote(
        self: Box<Self>,
        outcome: RemoteOutcome,
        counters: &Counters,
        elapsed: Duration,
    ) -> Completion {
        let task_id = || self.task.id().to_owned();
        let result = match outcome {
            RemoteOutcome::Ok(bytes) => {
                codec::decode_payload::<F::Output>(&bytes).map_err(|e| JobError::Remote {
                    task: task_id(),
                    message: format!("cannot decode the result: {e}"),
                })
            }
            RemoteOutcome::Panicked(message) => Err(JobError::Panicked {
                task: task_id(),
                message,
            }),
            RemoteOutcome::WorkerCrashed(message) => Err(JobError::WorkerCrashed {
                task: task_id(),
                message,
            }),
            RemoteOutcome::Failed(message) => Err(JobError::Remote {
                task: task_id(),
                message,
            }),
        };
        self.complete(result, Some((counters, elapsed)))
    }

    fn run(self: Box<Self>, counters: &Counters) -> Completion {
        let LocalJob { task, state, body } = *self;
        match body {
            Body::Owned {
                args,
                callback,
                group,
            } => {
                let (result, elapsed) = Self::call(task, args);
                Self::finish(&state, result, Some((counters, elapsed)), || {
                    (callback, group)
                })
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
                let (result, elapsed) = Self::call(task, args);
                Self::finish(&state, result, Some((counters, elapsed)), || {
                    shared.take_for_completion()
                })
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
            tracing::error!(task, %message, "job callback panicked");
        }
        completion
    }

    fn duplicate(&mut self) -> Option<Box<dyn Runnable>> {
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
        Some(Box::new(LocalJob {
            task: self.task,
            state: Arc::clone(&self.state),
            body: Body::Shared(Arc::clone(shared)),
        }))
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
