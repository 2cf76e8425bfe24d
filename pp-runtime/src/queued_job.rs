//! [`QueuedJob`]: a job with its types erased, as the queue, the local pool and remote
//! executors see it.

use crate::codec::CodecError;
use crate::error::JobError;
use crate::job::Completion;
use crate::outcome::Outcome;
use crate::stats::{ExecutorCounters, Tally};

/// A job waiting in the queue: run it, or fail it without running.
///
/// Running, failing and completing return a [`Completion`]: `Stored` when this call
/// completed the job (the caller then counts it finished, once), `Duplicate` when another
/// copy of the job (see [`duplicate`](QueuedJob::duplicate)) completed it first.
pub(crate) trait QueuedJob: Send {
    /// The task's id, for errors and logs.
    fn task_id(&self) -> &'static str;
    /// Runs the job on this thread (counted as running in `counters` while its function
    /// runs), counts it in `counters` if its result is the one kept, then completes it.
    fn run(self: Box<Self>, counters: &ExecutorCounters) -> Completion;
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
    /// [`QueuedJob::encode_args`] if the encoding is at most `limit` bytes, else `None`
    /// (found out without encoding much more than `limit` bytes).
    fn encode_args_within(&self, limit: u64) -> Result<Option<Vec<u8>>, CodecError> {
        let _ = limit;
        self.encode_args().map(Some)
    }
    /// Completes the job with what a remote executor reported, counted with `tally` if its
    /// result is the one kept (before the result is visible).
    fn complete_remote(self: Box<Self>, _outcome: Outcome, tally: Tally<'_>) -> Completion {
        let task = self.task_id().to_owned();
        let completion = self.fail(JobError::Remote {
            task,
            message: "this job runs only in its own process".into(),
        });
        if let Completion::Stored { .. } = completion {
            tally.leave_flight();
        }
        completion
    }
    /// Completes the job, which ran past its time limit `after` on its last attempt, the
    /// `attempts`-th, counted with `tally` if this completion is kept.
    fn complete_timed_out(
        self: Box<Self>,
        after: std::time::Duration,
        attempts: u32,
        tally: Tally<'_>,
    ) -> Completion {
        let _ = attempts;
        self.complete_remote(Outcome::TimedOut(after), tally)
    }
    /// Marks the job taken from the queue (by a remote executor if `remote`); false if it
    /// was settled while queued (cancelled): the taker then drops it without running it.
    fn take(&self, remote: bool) -> bool {
        let _ = remote;
        true
    }
    /// Whether this is a submitted job (its own result slot), which `cancel_all` cancels;
    /// false for the pieces of other work (`par!` chunks, `map` batches).
    fn is_job(&self) -> bool {
        false
    }
    /// Marks a job given back by a remote executor queued again; false if it was settled
    /// meanwhile: it must then be dropped, not queued.
    fn untake(&self) -> bool {
        true
    }
    /// Retries after a `TimedOut` or `WorkerCrashed` attempt, if set for this job (else the
    /// defaults: see [`JobFeed::complete`](crate::remote::JobFeed::complete)).
    fn retries(&self) -> Option<u32> {
        None
    }
    /// A second copy of this job, to run on another node while this one straggles: both
    /// copies share one result slot, the first completion wins. `None` if the job cannot
    /// be copied, is already completed, or already has a second copy.
    fn duplicate(&mut self) -> Option<Box<dyn QueuedJob>> {
        None
    }
    /// The time limit of each attempt of the job, counted from when the attempt starts
    /// running; `None`: no limit.
    fn timeout(&self) -> Option<std::time::Duration> {
        None
    }
    /// For a job with a time limit, its result slot and limit, which a local worker arms
    /// the server's deadline timer with as the job starts (see [`crate::deadline`]).
    fn deadline(
        &self,
    ) -> Option<(
        std::sync::Weak<dyn crate::settle::Settle>,
        std::time::Duration,
    )> {
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
