//! How executors other than the local pool take jobs from a server: the attachment point of
//! the cluster client (in `pp-net`).
//!
//! A remote executor takes jobs from the same queue as the local workers ([`JobFeed::take`]),
//! ships their encoded arguments, and completes them with the encoded result
//! ([`JobFeed::complete`]) or puts them back at the front of the queue
//! ([`JobFeed::requeue`]). pp-runtime itself has no network code: the connector comes from
//! [`ProgramHooks`], which every registered task points at.

use crate::codec::CodecError;
use crate::error::Error;
use crate::pool::Core;
use crate::runnable::Runnable;
use crate::stats::Counters;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

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

/// A job taken from the queue to run elsewhere.
pub struct RemoteJob {
    job: Box<dyn Runnable>,
}

impl RemoteJob {
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
}

impl fmt::Debug for RemoteJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJob")
            .field("task", &self.task_id())
            .finish()
    }
}

/// A row of the statistics for one remote executor (a node).
#[derive(Clone)]
pub struct ExecutorHandle {
    counters: Arc<Counters>,
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
}

impl fmt::Debug for JobFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobFeed")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl JobFeed {
    pub(crate) fn new(core: &Arc<Core>) -> Self {
        JobFeed {
            core: Arc::downgrade(core),
        }
    }

    /// The next queued job, if any (retried jobs first).
    pub fn take(&self) -> Option<RemoteJob> {
        let core = self.core.upgrade()?;
        core.take_for_remote().map(|job| RemoteJob { job })
    }

    /// Completes `job` with what `executor` reported; `elapsed` is the job's run time there.
    /// A job completed twice keeps its first result.
    pub fn complete(
        &self,
        job: RemoteJob,
        executor: &ExecutorHandle,
        outcome: RemoteOutcome,
        elapsed: Duration,
    ) {
        let callback_panic = job
            .job
            .complete_remote(outcome, &executor.counters, elapsed);
        match self.core.upgrade() {
            Some(core) => core.finished_remote(callback_panic),
            None => tracing::debug!("a remote result arrived after its server was dropped"),
        }
    }

    /// Puts `job` back at the front of the queue, to run on the next free executor.
    pub fn requeue(&self, job: RemoteJob) {
        match self.core.upgrade() {
            Some(core) => core.requeue(job.job),
            None => drop(job),
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

    /// Calls `waker` (cheaply, without blocking) every time a job is queued.
    pub fn on_job_queued(&self, waker: Arc<dyn Fn() + Send + Sync>) {
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

/// What the client of a cluster asked for: the nodes and the shared secret.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ClusterSpec {
    /// Nodes as `host:port` or `host` (port [`DEFAULT_PORT`]).
    pub nodes: Vec<String>,
    /// The shared secret, if one was given.
    pub secret: Option<Vec<u8>>,
}

impl fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("nodes", &self.nodes)
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .finish()
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
}

impl NodeStatus {
    /// Builds a status row.
    pub fn new(address: String, workers: u32, connected: bool) -> Self {
        NodeStatus {
            address,
            workers,
            connected,
        }
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
    /// The constructor that turns a process started by a node into a worker
    /// ([`crate::worker::WORKER_HOOK`]); pointing at it keeps the linker from dropping it.
    pub worker_hook: &'static extern "C" fn(),
}
