//! [`RemoteJob`]: a job with the nodes of its failed attempts, as a remote executor holds it
//! and as the retry queue keeps it once given back.

use crate::codec::CodecError;
use crate::queued_job::QueuedJob;
use crate::stats::ExecutorHandle;
use std::fmt;
use std::time::{Duration, Instant};

/// A job taken from the queue to run elsewhere, or given back to run again.
pub struct RemoteJob {
    pub(crate) job: Box<dyn QueuedJob>,
    /// The nodes of the job's failed attempts so far (lost node or dead worker), in order:
    /// what the attempt limit counts.
    pub(crate) failed_on: Vec<String>,
    /// When the job was last given back to the retry queue: how long it has waited there
    /// for a node it did not fail on (see the `routing` module).
    pub(crate) given_back: Option<Instant>,
    /// How many of those attempts ended `TimedOut` or `WorkerCrashed`: what the job's
    /// retries count (see [`RemoteJob::retry_budget`]).
    pub(crate) policy_failures: u32,
}

impl RemoteJob {
    /// A job's first attempt.
    pub(crate) fn first(job: Box<dyn QueuedJob>) -> Self {
        RemoteJob {
            job,
            failed_on: Vec::new(),
            given_back: None,
            policy_failures: 0,
        }
    }

    /// The retries the job has after `TimedOut` or `WorkerCrashed` attempts, if set (on the
    /// job, its template or the server); `None`: the defaults (see
    /// [`JobFeed::complete`](super::JobFeed::complete)).
    pub(crate) fn retry_budget(&self) -> Option<u32> {
        self.job.retries()
    }

    /// The nodes on which earlier attempts of this job failed (lost node or dead worker),
    /// in order; empty for a job's first attempt.
    pub fn failed_on(&self) -> &[String] {
        &self.failed_on
    }

    /// Id of the job's task.
    pub fn task_id(&self) -> &'static str {
        self.job.task_id()
    }

    /// Signature fingerprint of the job's task.
    pub fn fingerprint(&self) -> u64 {
        self.job.fingerprint()
    }

    /// The arguments in pp's wire encoding.
    ///
    /// # Errors
    /// When an argument's `Serialize` fails.
    pub fn encode_args(&self) -> Result<Vec<u8>, CodecError> {
        self.job.encode_args()
    }

    /// [`RemoteJob::encode_args`] if the encoding is at most `limit` bytes, else `None`,
    /// found out without encoding much more than `limit` bytes.
    ///
    /// # Errors
    /// When an argument's `Serialize` fails.
    pub fn encode_args_within(&self, limit: u64) -> Result<Option<Vec<u8>>, CodecError> {
        self.job.encode_args_within(limit)
    }

    /// A second copy of this job, to run on another node while this one straggles (the
    /// policy: [`ClusterOptions::duplicate_stragglers`](super::ClusterOptions::duplicate_stragglers)).
    /// The copies share the job's result slot: whichever completes first through
    /// [`JobFeed::complete`](super::JobFeed::complete) wins, the other's result is dropped,
    /// and the job counts once. A copy given back while the other is still live
    /// ([`JobFeed::lost`](super::JobFeed::lost), [`JobFeed::requeue`](super::JobFeed::requeue),
    /// a dead worker) is dropped, not rescheduled. `None` if the job is already completed,
    /// already has a second copy, or cannot be copied (`par!` chunks).
    pub fn duplicate(&mut self) -> Option<RemoteJob> {
        self.job.duplicate().map(|job| RemoteJob {
            job,
            failed_on: self.failed_on.clone(),
            given_back: None,
            policy_failures: self.policy_failures,
        })
    }

    /// Whether the job was already completed (by this copy or another).
    pub fn is_completed(&self) -> bool {
        self.job.is_completed()
    }

    /// The job's time limit per attempt, counted from when a worker starts running it
    /// (time in queues does not count); `None`: no limit. The executor enforces it: past the
    /// limit it stops the work (a node kills the worker) and reports
    /// [`Outcome::TimedOut`](crate::Outcome::TimedOut) to
    /// [`JobFeed::complete`](super::JobFeed::complete).
    pub fn timeout(&self) -> Option<Duration> {
        self.job.timeout()
    }

    /// Whether the job's result slot is already filled (another copy finished it, it was
    /// cancelled, ...): work on it may be abandoned, and whatever it reports later is
    /// dropped. See [`Executor::settled_elsewhere`](super::Executor::settled_elsewhere).
    pub fn is_settled(&self) -> bool {
        self.job.is_completed()
    }

    /// Drops this copy if the job is completed or another copy of it is live; returns
    /// whether it did.
    pub(crate) fn drop_if_redundant(&self, executor: Option<&ExecutorHandle>, why: &str) -> bool {
        let redundant = self.job.is_completed() || self.job.release_copy();
        if redundant {
            crate::debug!(
                task = self.task_id(),
                node = executor.map(ExecutorHandle::name),
                "{why}: another copy of the job completed it or still runs; this copy is dropped"
            );
        }
        redundant
    }
}

impl fmt::Debug for RemoteJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJob")
            .field("task", &self.task_id())
            .field("failed_on", &self.failed_on)
            .finish()
    }
}
