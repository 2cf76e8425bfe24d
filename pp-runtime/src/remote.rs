//! How executors other than the local pool take jobs from a server: the attachment point of
//! the cluster client (in `pp-net`).
//!
//! A remote executor takes jobs from the same queue as the local workers ([`JobFeed::take`]),
//! ships their encoded arguments, and completes them with the encoded result
//! ([`JobFeed::complete`]). When its node is lost with jobs in flight it gives them back
//! ([`JobFeed::lost`]): each goes to the front of the queue to run elsewhere, until the job
//! has failed [`ClusterOptions::max_attempts`] times (lost nodes and dead workers together);
//! then it resolves to [`JobError::NodeLost`] (or [`JobError::WorkerCrashed`]). A job has
//! one copy, or two while a straggler's second copy runs ([`RemoteJob::duplicate`]); its
//! result slot takes one completion, and only that completion counts the job finished
//! (statistics, `wait`, groups), so a result is delivered once. A copy given back while the
//! other is live is dropped. pp-runtime itself has no network code: the connector comes
//! from [`ProgramHooks`], which every registered task points at.

use crate::codec::CodecError;
use crate::error::{Error, JobError};
use crate::pool::{Core, Retry};
use crate::runnable::Runnable;
use crate::stats::Counters;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// What [`JobFeed::on_job_queued`] calls, with the number of jobs queued.
pub type QueueWaker = Arc<dyn Fn(usize) + Send + Sync>;

/// Port of a node named without one (`PP_SERVERS=host`), as in PP.
pub const DEFAULT_PORT: u16 = 60000;

/// What a remote run of a job gave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteOutcome {
    /// The encoded result.
    Ok(Vec<u8>),
    /// The function panicked with this message.
    Panicked(String),
    /// The worker process died while running the job.
    WorkerCrashed(String),
    /// The node could not run the job (unknown task, undecodable arguments, ...).
    Failed(String),
}

/// Default for [`ClusterOptions::heartbeat_interval`]: 500 ms.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// Default for [`ClusterOptions::fallback_wait`]: 2 seconds.
pub const DEFAULT_FALLBACK_WAIT: Duration = Duration::from_secs(2);

/// Default for [`ClusterOptions::liveness_timeout`]: 3 s.
pub const DEFAULT_LIVENESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Default for [`ClusterOptions::max_attempts`]: 3.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Default for [`ClusterOptions::duplicate_stragglers`]: on.
pub const DEFAULT_DUPLICATE_STRAGGLERS: bool = true;

/// How the cluster client watches its nodes and retries jobs; set through
/// [`ServerBuilder`](crate::ServerBuilder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// How often the client sends a heartbeat on each node's connection. Default
    /// [`DEFAULT_HEARTBEAT_INTERVAL`].
    pub heartbeat_interval: Duration,
    /// A node from which no message at all (results or heartbeat answers) came for this
    /// long is lost: its connection is closed, its jobs in flight are rescheduled, and it
    /// is retried in the background. The check runs with each heartbeat, so a silent node
    /// is lost between this and this plus one `heartbeat_interval` after its last message
    /// (a node whose connection breaks is lost at once). Time during which the client's
    /// network thread was itself held up does not count against the node. Default
    /// [`DEFAULT_LIVENESS_TIMEOUT`]; it must exceed `heartbeat_interval`, and also the time
    /// one message (a job's arguments or result) takes to cross the network.
    pub liveness_timeout: Duration,
    /// Attempts a job gets on nodes: each lost node or dead worker process while the job
    /// was in flight counts one; below the limit the job is rescheduled, at the limit it
    /// fails with [`JobError::NodeLost`] or [`JobError::WorkerCrashed`]. Default
    /// [`DEFAULT_MAX_ATTEMPTS`]; at least 1.
    pub max_attempts: u32,
    /// Whether a node with room in its window, when the queue is empty, runs a second copy
    /// of a job that has been in flight on another node far longer than jobs usually take
    /// (a straggler): the first result is kept, the other copy's result is dropped (the
    /// slower node is not told to stop; it finishes the job and its result is ignored).
    /// Each job completes once, its callback runs once and it counts once in the
    /// statistics, in the row of the node that won; but its function may run twice, so a
    /// job with side effects (files, network) may have them twice, as it already may when
    /// a lost node's job is rescheduled. Default [`DEFAULT_DUPLICATE_STRAGGLERS`] (on).
    pub duplicate_stragglers: bool,
    /// With no local workers (`ncpus` 0): how long jobs wait while no node is usable
    /// before they run on local workers after all, with a warning, so that a job never
    /// waits forever for a node that does not come. Default [`DEFAULT_FALLBACK_WAIT`].
    pub fallback_wait: Duration,
    /// Whether a lone job (the only one in flight on a node, with nothing else queued, and
    /// arguments up to 64 KiB) goes on a lane: a second connection the node hands to a
    /// worker process started for it, so that the job does not pass through the node
    /// process on its way there and back. Faster for one job at a time; everything else
    /// (retries, crashes, statistics) is as on the session's connection. Default
    /// [`DEFAULT_LANES`] (on).
    pub lanes: bool,
}

/// Default for [`ClusterOptions::lanes`]: on.
pub const DEFAULT_LANES: bool = true;

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            liveness_timeout: DEFAULT_LIVENESS_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            duplicate_stragglers: DEFAULT_DUPLICATE_STRAGGLERS,
            fallback_wait: DEFAULT_FALLBACK_WAIT,
            lanes: DEFAULT_LANES,
        }
    }
}

impl ClusterOptions {
    /// Checks that the options make sense together.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero interval, a liveness timeout not above the interval, or
    /// zero attempts.
    pub fn check(&self) -> Result<(), Error> {
        if self.heartbeat_interval.is_zero() {
            return Err(Error::Config(
                "the heartbeat interval must be above zero".into(),
            ));
        }
        if self.liveness_timeout <= self.heartbeat_interval {
            return Err(Error::Config(format!(
                "the liveness timeout ({:?}) must exceed the heartbeat interval ({:?})",
                self.liveness_timeout, self.heartbeat_interval
            )));
        }
        if self.max_attempts == 0 {
            return Err(Error::Config("max_attempts must be at least 1".into()));
        }
        Ok(())
    }
}

/// A job taken from the queue to run elsewhere.
pub struct RemoteJob {
    job: Box<dyn Runnable>,
    /// Nodes of the job's failed attempts so far, in order.
    failed_on: Vec<String>,
}

impl RemoteJob {
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

    /// A second copy of this job, to run on another node while this one straggles (see
    /// [`ClusterOptions::duplicate_stragglers`]). The copies share the job's result slot:
    /// whichever completes first through [`JobFeed::complete`] wins, the other's result is
    /// dropped, and the job counts once. A copy given back while the other is still live
    /// ([`JobFeed::lost`], [`JobFeed::requeue`], a dead worker) is dropped, not rescheduled.
    /// `None` if the job is already completed, already has a second copy, or cannot be
    /// copied (`par!` chunks).
    pub fn duplicate(&mut self) -> Option<RemoteJob> {
        self.job.duplicate().map(|job| RemoteJob {
            job,
            failed_on: self.failed_on.clone(),
        })
    }

    /// Whether the job was already completed (by this copy or another).
    pub fn is_completed(&self) -> bool {
        self.job.is_completed()
    }

    /// Drops this copy if the job is completed or another copy of it is live; returns
    /// whether it did.
    fn drop_if_redundant(&self, executor: Option<&ExecutorHandle>, why: &str) -> bool {
        let redundant = self.job.is_completed() || self.job.release_copy();
        if redundant {
            tracing::debug!(
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

/// A row of the statistics for one remote executor (a node).
#[derive(Clone)]
pub struct ExecutorHandle {
    counters: Arc<Counters>,
}

impl ExecutorHandle {
    /// The executor's name (a node's `host:port`).
    pub fn name(&self) -> &str {
        self.counters.name()
    }
}

impl fmt::Debug for ExecutorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorHandle")
            .field("name", &self.counters.name())
            .finish()
    }
}

/// A server's queue as remote executors see it. Holds the server weakly: once the server
/// is dropped, [`take`](JobFeed::take) returns `None` and [`is_closed`](JobFeed::is_closed)
/// is true.
#[derive(Clone)]
pub struct JobFeed {
    core: Weak<Core>,
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
    pub(crate) fn new(core: &Arc<Core>, max_attempts: u32) -> Self {
        JobFeed {
            core: Arc::downgrade(core),
            max_attempts: max_attempts.max(1),
        }
    }

    /// The next queued job, if any (jobs given back first).
    pub fn take(&self) -> Option<RemoteJob> {
        let core = self.core.upgrade()?;
        core.take_for_remote()
            .map(|Retry { job, failed_on }| RemoteJob { job, failed_on })
    }

    /// Completes `job` with what `executor` reported; `elapsed` is the job's run time there.
    ///
    /// A [`RemoteOutcome::WorkerCrashed`] counts as a failed attempt: below the attempt
    /// limit the job is rescheduled (as by [`lost`](JobFeed::lost)) and nothing completes;
    /// at the limit the job fails with [`JobError::WorkerCrashed`]; but a copy whose job
    /// is completed or has another live copy (see [`RemoteJob::duplicate`]) is just dropped.
    /// A job completed twice keeps its first result and counts once (statistics, `wait`).
    pub fn complete(
        &self,
        mut job: RemoteJob,
        executor: &ExecutorHandle,
        outcome: RemoteOutcome,
        elapsed: Duration,
    ) {
        let outcome = match outcome {
            RemoteOutcome::WorkerCrashed(message) => {
                if job.drop_if_redundant(Some(executor), "worker died") {
                    return;
                }
                job.failed_on.push(executor.name().to_owned());
                if self.may_retry(&job) {
                    tracing::warn!(
                        task = job.task_id(),
                        node = executor.name(),
                        attempt = job.failed_on.len(),
                        "{message}; the job is rescheduled"
                    );
                    self.reschedule(job);
                    return;
                }
                RemoteOutcome::WorkerCrashed(with_attempts(message, &job.failed_on))
            }
            other => other,
        };
        let completion = job
            .job
            .complete_remote(outcome, &executor.counters, elapsed);
        match self.core.upgrade() {
            Some(core) => core.finished_remote(completion),
            None => tracing::debug!("a remote result arrived after its server was dropped"),
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
        tracing::warn!(
            task = %task,
            nodes = %job.failed_on.join(", "),
            "a job was lost with its node {} times: it fails",
            job.failed_on.len()
        );
        let error = JobError::NodeLost {
            task,
            nodes: job.failed_on,
        };
        match self.core.upgrade() {
            Some(core) => core.fail_remote(job.job, error),
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
        let RemoteJob { job, failed_on } = job;
        match self.core.upgrade() {
            Some(core) => {
                core.requeue(Retry { job, failed_on });
            }
            None => cancel_orphan(job),
        }
    }

    fn may_retry(&self, job: &RemoteJob) -> bool {
        u32::try_from(job.failed_on.len()).unwrap_or(u32::MAX) < self.max_attempts
    }

    /// Requeues a job after a failed attempt, counted in the statistics.
    fn reschedule(&self, job: RemoteJob) {
        let RemoteJob { job, failed_on } = job;
        match self.core.upgrade() {
            Some(core) => {
                if core.requeue(Retry { job, failed_on }) {
                    core.stats.rescheduled.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => cancel_orphan(job),
        }
    }

    /// Adds a row named `name` (a node's `host:port`) to the server's statistics.
    pub fn register_executor(&self, name: &str) -> ExecutorHandle {
        let counters = Arc::new(Counters::new(name));
        if let Some(core) = self.core.upgrade() {
            core.add_executor(Arc::clone(&counters));
        }
        ExecutorHandle { counters }
    }

    /// Calls `waker` every time a job is queued, on the thread that queued it, with the
    /// number of jobs queued then (that one included). It must be cheap and not block.
    pub fn on_job_queued(&self, waker: QueueWaker) {
        if let Some(core) = self.core.upgrade() {
            core.add_waker(waker);
        }
    }

    /// Whether the server is gone or shutting down.
    pub fn is_closed(&self) -> bool {
        self.core.upgrade().is_none_or(|core| core.is_shut_down())
    }

    /// Jobs waiting in the queue.
    pub fn queued(&self) -> usize {
        self.core.upgrade().map_or(0, |core| core.queued())
    }

    /// The local worker count.
    pub fn local_workers(&self) -> usize {
        self.core.upgrade().map_or(0, |core| core.ncpus())
    }

    /// Changes the local worker count: the fallback when no node can take jobs.
    ///
    /// # Errors
    /// As [`Server::set_ncpus`](crate::Server::set_ncpus).
    pub fn set_local_workers(&self, ncpus: usize) -> Result<(), Error> {
        match self.core.upgrade() {
            Some(core) => core.set_ncpus(ncpus),
            None => Ok(()),
        }
    }
}

/// What the client of a cluster asked for: the nodes, the shared secret, the options.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ClusterSpec {
    /// Nodes as `host:port` or `host` (port [`DEFAULT_PORT`]).
    pub nodes: Vec<String>,
    /// The shared secret, if one was given.
    pub secret: Option<Vec<u8>>,
    /// Heartbeats, liveness and attempts.
    pub options: ClusterOptions,
}

impl fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("nodes", &self.nodes)
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .field("options", &self.options)
            .finish()
    }
}

/// Fails a job whose server is gone, so that its handle does not wait forever.
fn cancel_orphan(job: Box<dyn Runnable>) {
    let task = job.task_id().to_owned();
    job.fail(JobError::Cancelled { task });
}

/// A dead worker's report, with the nodes of the earlier failed attempts if there were any.
fn with_attempts(message: String, failed_on: &[String]) -> String {
    match failed_on {
        [] | [_] => message,
        _ => format!(
            "{message} (attempt {} of the job; every attempt failed, on {})",
            failed_on.len(),
            failed_on.join(", ")
        ),
    }
}

/// A node as [`Server::active_nodes`](crate::Server::active_nodes) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// `host:port` as configured.
    pub address: String,
    /// Worker processes the node runs for this client (0 while not connected).
    pub workers: u32,
    /// Whether the node is connected and taking jobs.
    pub connected: bool,
    /// How many times a connection to the node was established (more than once: it
    /// rejoined after a loss).
    pub connections: u32,
    /// How many times the node was lost (silent past the liveness timeout, or its
    /// connection broke) while connected.
    pub losses: u32,
}

impl NodeStatus {
    /// Builds a status row of a node that was never lost.
    pub fn new(address: String, workers: u32, connected: bool) -> Self {
        NodeStatus {
            address,
            workers,
            connected,
            connections: u32::from(connected),
            losses: 0,
        }
    }

    /// The same row with its history: connections established and losses.
    pub fn with_history(mut self, connections: u32, losses: u32) -> Self {
        self.connections = connections;
        self.losses = losses;
        self
    }
}

/// Something that runs beside a server and feeds on its queue: the cluster client.
pub trait Attachment: Send + Sync {
    /// The nodes and their state.
    fn nodes(&self) -> Vec<NodeStatus>;
    /// Stops taking jobs and gives back the ones in flight; called when the server drops.
    fn shutdown(&self);
}

/// Starts a cluster client for `spec` feeding on `feed`.
pub type ConnectFn = fn(ClusterSpec, JobFeed) -> Result<Box<dyn Attachment>, Error>;

/// Program-wide entry points provided by the network half and reached through the task
/// registry, so that pp-runtime needs no network code and every program with a task links
/// them.
#[derive(Debug)]
pub struct ProgramHooks {
    /// Starts the cluster client.
    pub connect: ConnectFn,
    /// The constructor that turns a process started by a node into a worker (pp-net's
    /// `worker::WORKER_HOOK`); pointing at it keeps the linker from dropping it.
    pub worker_hook: &'static extern "C" fn(),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Job, JobState, Polling, SPIN};
    use crate::runnable::LocalJob;
    use crate::task::Task;

    fn double(x: u64) -> u64 {
        2 * x
    }

    const DOUBLE: Task<fn(u64) -> u64> = Task::new("remote::tests::double", 1, double);

    /// A server core with no local worker, one queued job, and a feed allowing 3 attempts.
    fn queued_job() -> (Arc<Core>, JobFeed, Job<u64>) {
        let core = Core::start(0, true).unwrap();
        let state = Arc::new(JobState::with_poll(Polling::spinning(SPIN)));
        core.pending.add();
        core.enqueue(Box::new(LocalJob::new(
            DOUBLE,
            (21,),
            Arc::clone(&state),
            None,
            None,
        )));
        let feed = JobFeed::new(&core, 3);
        (core, feed, Job::new(state, DOUBLE.id()))
    }

    fn rescheduled(core: &Core) -> u64 {
        core.stats.rescheduled.load(Ordering::Relaxed)
    }

    #[test]
    fn a_job_lost_with_its_node_runs_again_until_the_attempt_limit_then_names_the_nodes() {
        let (core, feed, job) = queued_job();
        for (attempt, node) in ["a:1", "b:2", "c:3"].into_iter().enumerate() {
            let taken = feed.take().expect("the job is queued again");
            assert_eq!(taken.failed_on().len(), attempt);
            feed.lost(taken, &feed.register_executor(node));
        }
        assert!(feed.take().is_none(), "not queued after the third loss");
        assert_eq!(rescheduled(&core), 2);
        assert_eq!(core.pending.count(), 0, "the failed job counts as finished");
        match job.result() {
            Err(JobError::NodeLost { task, nodes }) => {
                assert_eq!(task, "remote::tests::double");
                assert_eq!(nodes, ["a:1", "b:2", "c:3"]);
            }
            other => panic!("expected NodeLost, got {other:?}"),
        }
        core.shutdown();
    }

    #[test]
    fn a_rescheduled_job_completes_once_and_counts_once() {
        let (core, feed, job) = queued_job();
        let (a, b) = (feed.register_executor("a:1"), feed.register_executor("b:2"));
        feed.lost(feed.take().unwrap(), &a);
        let taken = feed.take().unwrap();
        assert_eq!(taken.failed_on(), ["a:1"]);
        let bytes = crate::codec::encode(&42u64).unwrap();
        feed.complete(taken, &b, RemoteOutcome::Ok(bytes), Duration::ZERO);
        assert_eq!(job.result(), Ok(42));
        let rows = core.executor_stats();
        let jobs: Vec<(&str, u64)> = rows.iter().map(|r| (r.name.as_str(), r.jobs)).collect();
        assert_eq!(jobs, [("local", 0), ("a:1", 0), ("b:2", 1)]);
        assert_eq!(rescheduled(&core), 1);
        assert_eq!(core.pending.count(), 0);
        core.shutdown();
    }

    #[test]
    fn a_worker_crash_is_an_attempt_and_the_last_one_is_the_error() {
        let (core, feed, job) = queued_job();
        let node = feed.register_executor("a:1");
        for _ in 0..3 {
            let taken = feed.take().expect("queued again after a crash");
            let outcome = RemoteOutcome::WorkerCrashed("worker killed by SIGABRT".into());
            feed.complete(taken, &node, outcome, Duration::ZERO);
        }
        assert!(feed.take().is_none());
        assert_eq!(rescheduled(&core), 2);
        match job.result() {
            Err(JobError::WorkerCrashed { message, .. }) => {
                assert!(message.starts_with("worker killed by SIGABRT"), "{message}");
                assert!(message.contains("attempt 3"), "{message}");
            }
            other => panic!("expected WorkerCrashed, got {other:?}"),
        }
        assert_eq!(core.executor_stats()[1].jobs, 1, "the failure counts once");
        core.shutdown();
    }

    #[test]
    fn a_job_given_back_at_shutdown_is_not_an_attempt() {
        let (core, feed, job) = queued_job();
        feed.requeue(feed.take().unwrap());
        assert_eq!(rescheduled(&core), 0);
        let taken = feed.take().unwrap();
        assert!(taken.failed_on().is_empty());
        core.shutdown();
        feed.requeue(taken);
        assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    }

    #[test]
    fn a_straggler_copy_that_completes_first_wins_and_the_job_counts_once() {
        let (core, feed, job) = queued_job();
        let (a, b) = (feed.register_executor("a:1"), feed.register_executor("b:2"));
        let mut first = feed.take().unwrap();
        let mut copy = first.duplicate().expect("a first copy can be duplicated");
        assert!(first.duplicate().is_none(), "at most two copies");
        assert!(copy.duplicate().is_none(), "at most two copies");
        assert_eq!(copy.encode_args(), first.encode_args());
        let bytes = |v: u64| crate::codec::encode(&v).unwrap();
        feed.complete(copy, &b, RemoteOutcome::Ok(bytes(42)), Duration::ZERO);
        assert!(first.is_completed());
        assert_eq!(core.pending.count(), 0);
        // The slow copy's result comes later: dropped, not counted again.
        feed.complete(first, &a, RemoteOutcome::Ok(bytes(7)), Duration::ZERO);
        assert_eq!(core.pending.count(), 0, "not decremented twice");
        assert_eq!(job.result(), Ok(42));
        let rows = core.executor_stats();
        let jobs: Vec<(&str, u64)> = rows.iter().map(|r| (r.name.as_str(), r.jobs)).collect();
        assert_eq!(jobs, [("local", 0), ("a:1", 0), ("b:2", 1)]);
        core.shutdown();
    }

    #[test]
    fn the_group_of_a_copied_job_counts_it_once() {
        let core = Core::start(0, true).unwrap();
        let group = Arc::new(crate::pending::Pending::default());
        let state = Arc::new(JobState::with_poll(Polling::spinning(SPIN)));
        core.pending.add();
        group.add();
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        core.enqueue(Box::new(LocalJob::new(
            DOUBLE,
            (21,),
            Arc::clone(&state),
            Some(Box::new(move |_: &Result<u64, JobError>| {
                counted.fetch_add(1, Ordering::SeqCst);
            })),
            Some(Arc::clone(&group)),
        )));
        let feed = JobFeed::new(&core, 3);
        let node = feed.register_executor("a:1");
        let mut first = feed.take().unwrap();
        let copy = first.duplicate().unwrap();
        for taken in [first, copy] {
            let bytes = crate::codec::encode(&42u64).unwrap();
            feed.complete(taken, &node, RemoteOutcome::Ok(bytes), Duration::ZERO);
        }
        assert_eq!(group.count(), 0);
        assert_eq!(core.pending.count(), 0);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the callback ran once");
        assert_eq!(core.executor_stats()[1].jobs, 1);
        assert_eq!(Job::new(state, DOUBLE.id()).result(), Ok(42));
        core.shutdown();
    }

    #[test]
    fn a_copy_lost_while_the_other_runs_is_dropped_and_the_last_one_is_rescheduled() {
        let (core, feed, job) = queued_job();
        let (a, b, c) = (
            feed.register_executor("a:1"),
            feed.register_executor("b:2"),
            feed.register_executor("c:3"),
        );
        let mut first = feed.take().unwrap();
        let copy = first.duplicate().unwrap();
        feed.lost(first, &a);
        assert!(
            feed.take().is_none(),
            "the other copy still runs: nothing requeued"
        );
        assert_eq!(rescheduled(&core), 0);
        feed.lost(copy, &b);
        let again = feed.take().expect("both copies lost: the job runs again");
        assert_eq!(again.failed_on(), ["b:2"]);
        assert_eq!(rescheduled(&core), 1);
        assert!(feed.take().is_none(), "requeued once");
        let bytes = crate::codec::encode(&42u64).unwrap();
        feed.complete(again, &c, RemoteOutcome::Ok(bytes), Duration::ZERO);
        assert_eq!(job.result(), Ok(42));
        assert_eq!(core.pending.count(), 0);
        core.shutdown();
    }

    #[test]
    fn a_copy_lost_after_the_job_completed_is_dropped() {
        let (core, feed, job) = queued_job();
        let (a, b) = (feed.register_executor("a:1"), feed.register_executor("b:2"));
        let mut first = feed.take().unwrap();
        let copy = first.duplicate().unwrap();
        let bytes = crate::codec::encode(&42u64).unwrap();
        feed.complete(first, &a, RemoteOutcome::Ok(bytes), Duration::ZERO);
        let outcome = RemoteOutcome::WorkerCrashed("worker killed by SIGKILL".into());
        feed.complete(copy, &b, outcome, Duration::ZERO);
        assert!(feed.take().is_none(), "a completed job is not rescheduled");
        assert_eq!(rescheduled(&core), 0);
        assert_eq!(core.pending.count(), 0);
        assert_eq!(job.result(), Ok(42));
        core.shutdown();
    }

    #[test]
    fn two_copies_given_back_at_shutdown_cancel_the_job_once() {
        let (core, feed, job) = queued_job();
        let mut first = feed.take().unwrap();
        let copy = first.duplicate().unwrap();
        core.shutdown();
        feed.requeue(first);
        feed.requeue(copy);
        assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
        assert_eq!(core.pending.count(), 0);
        assert_eq!(core.stats.cancelled.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn options_are_checked() {
        let default = ClusterOptions::default();
        assert!(default.check().is_ok());
        let bad = [
            ClusterOptions {
                liveness_timeout: default.heartbeat_interval,
                ..default
            },
            ClusterOptions {
                max_attempts: 0,
                ..default
            },
            ClusterOptions {
                heartbeat_interval: Duration::ZERO,
                ..default
            },
        ];
        for options in bad {
            assert!(
                matches!(options.check(), Err(Error::Config(_))),
                "{options:?}"
            );
        }
    }
}
