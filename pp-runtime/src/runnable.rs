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
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A job waiting in the queue: run it, or fail it without running.
pub(crate) trait Runnable: Send {
    /// The task's id, for errors and logs.
    fn task_id(&self) -> &'static str;
    /// Runs the job on this thread, counts it in `counters`, then completes it; returns the
    /// callback's panic message if the callback panicked.
    fn run(self: Box<Self>, counters: &Counters) -> Option<String>;
    /// Completes the job with `error` without running it.
    fn fail(self: Box<Self>, error: JobError);
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
    /// Completes the job with what a remote executor reported, counted in `counters`.
    fn complete_remote(
        self: Box<Self>,
        _outcome: RemoteOutcome,
        _counters: &Counters,
        _elapsed: Duration,
    ) -> Option<String> {
        let task = self.task_id().to_owned();
        self.fail(JobError::Remote {
            task,
            message: "this job runs only in its own process".into(),
        });
        None
    }
}

/// A typed job bound for a local worker: the function is called directly, nothing encoded.
pub(crate) struct LocalJob<F: TaskFn> {
    pub(crate) task: Task<F>,
    pub(crate) args: F::Args,
    pub(crate) state: Arc<JobState<F::Output>>,
    pub(crate) callback: Option<Callback<F::Output>>,
    pub(crate) group: Option<Arc<Pending>>,
}

impl<F: TaskFn> LocalJob<F> {
    fn finish(
        state: &JobState<F::Output>,
        result: Result<F::Output, JobError>,
        callback: Option<Callback<F::Output>>,
        group: Option<Arc<Pending>>,
    ) -> Option<String> {
        let callback_panic = match state.complete(result, callback) {
            Completion::Stored { callback_panic } => callback_panic,
            Completion::Duplicate => None,
        };
        if let Some(group) = group {
            group.done();
        }
        callback_panic
    }
}

impl<F: TaskFn> Runnable for LocalJob<F> {
    fn task_id(&self) -> &'static str {
        self.task.id()
    }

    fn fingerprint(&self) -> u64 {
        self.task.fingerprint()
    }

    fn encode_args(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(&self.args)
    }

    fn complete_remote(
        self: Box<Self>,
        outcome: RemoteOutcome,
        counters: &Counters,
        elapsed: Duration,
    ) -> Option<String> {
        let LocalJob {
            task,
            state,
            callback,
            group,
            ..
        } = *self;
        let task_id = || task.id().to_owned();
        let result = match outcome {
            RemoteOutcome::Ok(bytes) => {
                codec::decode::<F::Output>(&bytes).map_err(|e| JobError::Remote {
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
        counters.record(elapsed);
        Self::finish(&state, result, callback, group)
    }

    fn run(self: Box<Self>, counters: &Counters) -> Option<String> {
        let LocalJob {
            task,
            args,
            state,
            callback,
            group,
        } = *self;
        let start = Instant::now();
        let result =
            catch_unwind(AssertUnwindSafe(move || task.function().call(args))).map_err(|payload| {
                JobError::Panicked {
                    task: task.id().to_owned(),
                    message: panic_message(payload.as_ref()),
                }
            });
        // Counted before completion, so whoever sees the result also sees it in the stats.
        counters.record(start.elapsed());
        Self::finish(&state, result, callback, group)
    }

    fn fail(self: Box<Self>, error: JobError) {
        let LocalJob {
            task,
            state,
            callback,
            group,
            ..
        } = *self;
        if let Some(message) = Self::finish(&state, Err(error), callback, group) {
            tracing::error!(task = task.id(), %message, "job callback panicked");
        }
    }
}
