//! [`JobFeed`]: a server's queue as remote executors see it, and the attempt policy of
//! jobs that fail remotely.
//!
//! A remote executor takes jobs from the same queue as the local workers ([`JobFeed::take`]),
//! ships their encoded arguments, and completes them with the node's [`Outcome`]
//! ([`JobFeed::complete`]). When its node is lost with jobs in flight it gives them back
//! ([`JobFeed::lost`]): each goes to the retry queue, which every taker empties first (a
//! node leaves alone the jobs that failed on it while another place can take them:
//! [`JobFeed::take_for`], the `routing` module), until
//! the job has failed [`ClusterOptions::max_attempts`](super::ClusterOptions::max_attempts)
//! times (lost nodes and dead workers together); then it resolves to [`JobError::NodeLost`]
//! (or [`JobError::WorkerCrashed`]). A job has one copy, or two while a straggler's second
//! copy runs ([`RemoteJob::duplicate`]); its result slot takes one completion, and only that
//! completion counts the job finished (statistics, `wait`, groups), so a result is
//! delivered once. A copy given back while the other is live is dropped.

use super::remote_job::RemoteJob;
use super::routing::Take;
use crate::error::{Error, JobError};
use crate::job::Completion;
use crate::outcome::Outcome;
use crate::pool::LocalPool;
use crate::queue::JobQueue;
use crate::queued_job::QueuedJob;
use crate::stats::{ExecutorHandle, Tally};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A server's queue as remote executors see it. Holds the server weakly: once the server
/// is dropped, [`take`](JobFeed::take) returns `None` and [`is_closed`](JobFeed::is_closed)
/// is true.
#[derive(Clone)]
pub struct JobFeed {
    queue: Weak<JobQueue>,
    pool: Weak<LocalPool>,
    max_attempts: u32,
}

impl fmt::Debug for JobFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobFeed")
            .field("closed", &self.is_closed())
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl JobFeed {
    pub(crate) fn new(queue: &Arc<JobQueue>, pool: &Arc<LocalPool>, max_attempts: u32) -> Self {
        JobFeed {
            queue: Arc::downgrade(queue),
            pool: Arc::downgrade(pool),
            max_attempts: max_attempts.max(1),
        }
    }

    /// The next queued job, if any (jobs given back first); `None` once the server is
    /// shutting down.
    pub fn take(&self) -> Option<RemoteJob> {
        self.queue.upgrade()?.take_for_remote()
    }

    /// The next queued job for the node of `taker`: as [`take`](JobFeed::take), except
    /// that a retried job that failed on that node is left for other places while
    /// `elsewhere()` says another one can take jobs (a connected node that is not put
    /// aside, a local worker), for at most
    /// [`RETRY_ELSEWHERE_WAIT`](super::RETRY_ELSEWHERE_WAIT) after it was given back.
    /// `elsewhere` is asked only when retried jobs are queued, out of the queue's locks.
    /// [`Take::NotBefore`] says when such a job becomes this node's, if nothing else is
    /// queued.
    pub fn take_for(&self, taker: &ExecutorHandle, elsewhere: impl FnOnce() -> bool) -> Take {
        match self.queue.upgrade() {
            Some(queue) => queue.take_for_node(taker.name(), elsewhere),
            None => Take::Empty,
        }
    }

    /// Completes `job` with what `executor` reported; `run_time` is how long the job ran on
    /// the node's worker, as the node reported it (zero when unknown: a job that never
    /// reached a worker). This is what the statistics count as the job's time, not the round
    /// trip, which the executor counts itself
    /// ([`ExecutorHandle::record_round_trip`]).
    ///
    /// [`Outcome::WorkerCrashed`] and [`Outcome::TimedOut`] are failed attempts, which the
    /// retries policy governs: while the job has retries left it is rescheduled (as by
    /// [`lost`](JobFeed::lost), `executor` in its [`failed_on`](RemoteJob::failed_on)) and
    /// nothing completes; then it fails with [`JobError::WorkerCrashed`] or
    /// [`JobError::TimedOut`], naming its attempts. The retries are the job's (`retries(n)`
    /// on the job, its template or the server: n retries after either failure); without
    /// them, a timed-out job is not retried, and one whose worker died is retried while it
    /// has had fewer than [`ClusterOptions::max_attempts`](super::ClusterOptions::max_attempts)
    /// failed attempts (lost nodes included). A copy whose job is completed or has another
    /// live copy (see [`RemoteJob::duplicate`]) is just dropped.
    /// A job completed twice keeps its first result and counts once (statistics, `wait`).
    pub fn complete(
        &self,
        mut job: RemoteJob,
        executor: &ExecutorHandle,
        outcome: Outcome,
        run_time: Duration,
    ) {
        let timed_out = match &outcome {
            Outcome::WorkerCrashed(_) => None,
            Outcome::TimedOut(after) => Some(*after),
            _ => return self.keep(job, executor, outcome, run_time),
        };
        let why = if timed_out.is_some() {
            "timed out"
        } else {
            "worker died"
        };
        if job.drop_if_redundant(Some(executor), why) {
            return;
        }
        job.failed_on.push(executor.name().to_owned());
        job.policy_failures += 1;
        let retry = match job.retry_budget() {
            Some(retries) => job.policy_failures <= retries,
            None => timed_out.is_none() && self.may_retry(&job),
        };
        if retry {
            let what = match (&outcome, timed_out) {
                (Outcome::WorkerCrashed(message), _) => message.clone(),
                (_, Some(after)) => format!("the job ran past its time limit of {after:?}"),
                _ => String::new(),
            };
            crate::warn!(
                task = job.task_id(),
                node = executor.name(),
                attempt = job.failed_on.len(),
                "{what}; the job is rescheduled"
            );
            self.reschedule(job);
            return;
        }
        match (outcome, timed_out) {
            (Outcome::WorkerCrashed(message), _) => {
                let message = with_attempts(message, &job.failed_on);
                self.keep(job, executor, Outcome::WorkerCrashed(message), run_time);
            }
            (_, Some(after)) => {
                let attempts = u32::try_from(job.failed_on.len()).unwrap_or(u32::MAX);
                self.keep_with(job, executor, run_time, true, |job, tally| {
                    job.complete_timed_out(after, attempts, tally)
                });
            }
            _ => {}
        }
    }

    /// Completes `job` with `outcome`, counted in `executor`'s row if this result is kept.
    fn keep(
        &self,
        job: RemoteJob,
        executor: &ExecutorHandle,
        outcome: Outcome,
        run_time: Duration,
    ) {
        let counts_timed_out = matches!(outcome, Outcome::TimedOut(_));
        self.keep_with(job, executor, run_time, counts_timed_out, |job, tally| {
            job.complete_remote(outcome, tally)
        });
    }

    /// Completes `job` with `complete`, counted in `executor`'s row if this result is kept
    /// (and among the jobs timed out if `counts_timed_out`).
    fn keep_with(
        &self,
        job: RemoteJob,
        executor: &ExecutorHandle,
        run_time: Duration,
        counts_timed_out: bool,
        complete: impl FnOnce(Box<dyn QueuedJob>, Tally<'_>) -> Completion,
    ) {
        let job_task = job.task_id();
        let queue = self.queue.upgrade();
        let tally = Tally {
            row: executor.counters(),
            run_time,
            in_flight: queue.as_ref().map(|queue| &queue.counters.in_flight),
        };
        let completion = complete(job.job, tally);
        match queue {
            Some(queue) => {
                if counts_timed_out && matches!(completion, Completion::Stored { .. }) {
                    queue.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                queue.finished(completion, job_task)
            }
            None => crate::debug!("a remote result arrived after its server was dropped"),
        }
    }

    /// Gives back `job`, which was in flight on `executor`'s node when the node was lost
    /// (its connection broke or it stayed silent past the liveness timeout): a failed
    /// attempt. Below the attempt limit the job goes back to the front of the queue, to run
    /// on the next free executor; at the limit it fails with [`JobError::NodeLost`] naming
    /// the nodes of its attempts. A copy whose job is completed or has another live copy
    /// (see [`RemoteJob::duplicate`]) is dropped instead, without counting an attempt.
    pub fn lost(&self, mut job: RemoteJob, executor: &ExecutorHandle) {
        if job.drop_if_redundant(Some(executor), "node lost") {
            return;
        }
        job.failed_on.push(executor.name().to_owned());
        if self.may_retry(&job) {
            self.reschedule(job);
            return;
        }
        let task = job.task_id().to_owned();
        crate::warn!(
            task = %task,
            nodes = %job.failed_on.join(", "),
            "a job was lost with its node {} times: it fails",
            job.failed_on.len()
        );
        let error = JobError::NodeLost {
            task,
            nodes: job.failed_on,
        };
        match self.queue.upgrade() {
            Some(queue) => queue.fail_taken(job.job, error),
            None => {
                job.job.fail(error);
            }
        }
    }

    /// Puts `job` back at the front of the queue without counting an attempt (the client
    /// is shutting down, or the job never reached its node); a copy whose job is completed
    /// or has another live copy is dropped instead.
    pub fn requeue(&self, job: RemoteJob) {
        if job.drop_if_redundant(None, "given back") {
            return;
        }
        match self.queue.upgrade() {
            Some(queue) => {
                queue.requeue(job);
            }
            None => cancel_orphan(job.job),
        }
    }

    fn may_retry(&self, job: &RemoteJob) -> bool {
        u32::try_from(job.failed_on.len()).unwrap_or(u32::MAX) < self.max_attempts
    }

    /// Requeues a job after a failed attempt, counted in the statistics.
    fn reschedule(&self, job: RemoteJob) {
        match self.queue.upgrade() {
            Some(queue) => {
                if queue.requeue(job) {
                    queue.counters.rescheduled.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => cancel_orphan(job.job),
        }
    }

    /// Whether the server is gone or shutting down.
    pub fn is_closed(&self) -> bool {
        self.queue
            .upgrade()
            .is_none_or(|queue| queue.is_shut_down())
    }

    /// Jobs waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.upgrade().map_or(0, |queue| queue.queued())
    }

    /// The local worker count.
    pub fn local_workers(&self) -> usize {
        self.pool.upgrade().map_or(0, |pool| pool.ncpus())
    }

    /// Changes the local worker count: the fallback when no node can take jobs, and zero
    /// again when nodes serve (running jobs finish, queued ones stay queued).
    ///
    /// # Errors
    /// As [`Server::set_ncpus`](crate::Server::set_ncpus).
    pub fn set_local_workers(&self, ncpus: usize) -> Result<(), Error> {
        match self.pool.upgrade() {
            Some(pool) => pool.set_ncpus(ncpus),
            None => Ok(()),
        }
    }
}

/// Fails a job whose server is gone, so that its handle does not wait forever.
fn cancel_orphan(job: Box<dyn QueuedJob>) {
    let task = job.task_id().to_owned();
    job.fail(JobError::Cancelled { task });
}

/// A dead worker's report, with the job's attempts and the nodes of the failed ones.
fn with_attempts(message: String, failed_on: &[String]) -> String {
    match failed_on {
        [] => message,
        [node] => format!("{message} (attempt 1 of the job, on {node}; no retry left)"),
        _ => format!(
            "{message} (attempt {} of the job; every attempt failed, on {})",
            failed_on.len(),
            failed_on.join(", ")
        ),
    }
}

#[cfg(test)]
#[path = "job_feed_tests.rs"]
mod tests;
