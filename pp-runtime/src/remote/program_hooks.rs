//! [`ProgramHooks`]: the entry points the network half (`pp-net`) gives pp-runtime through
//! the task registry, so that pp-runtime needs no network code and every program with a
//! `#[pp::parallel]` task links them.

use super::cluster_options::ClusterSpec;
use super::job_feed::JobFeed;
use crate::error::Error;
use crate::executor::Executor;
use std::sync::Arc;

/// Starts a cluster client for `spec` feeding on `feed`: the executor the server attaches
/// to its queue.
pub type ConnectFn = fn(ClusterSpec, JobFeed) -> Result<Box<dyn Executor>, Error>;

/// Starts the local worker processes of an isolated server
/// ([`ServerBuilder::isolated`](crate::ServerBuilder::isolated)) feeding on `feed`.
pub type IsolateFn = fn(IsolatedSpec, JobFeed) -> Result<Isolated, Error>;

/// The environment variable an isolated server sets in its worker processes (value `1`).
/// A server built inside such a worker (a job's own `Server`) is never isolated, whatever
/// the builder or `PP_ISOLATED` say, so that workers do not start workers of their own.
pub const ISOLATED_WORKER_ENV: &str = "PP_ISOLATED_WORKER";

/// What an isolated server asks of its worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IsolatedSpec {
    /// How many worker processes run jobs at once (the server's `ncpus`); at least 1.
    pub workers: usize,
    /// Whether what jobs print is caught in the worker and printed by this program, on its
    /// standard output and error (else a job's standard output goes to standard error).
    pub forward_output: bool,
}

impl IsolatedSpec {
    /// `workers` processes, with the jobs' output forwarded.
    pub fn new(workers: usize) -> Self {
        IsolatedSpec {
            workers,
            forward_output: true,
        }
    }
}

/// The local worker processes of an isolated server, as the server resizes them
/// ([`Server::set_ncpus`](crate::Server::set_ncpus)).
pub trait WorkerProcesses: Send + Sync {
    /// How many worker processes run jobs at once.
    fn workers(&self) -> usize;

    /// Changes how many worker processes run jobs at once: new ones start for the jobs
    /// queued; surplus ones end after their current job.
    ///
    /// # Errors
    /// [`Error::InvalidNcpus`] for zero.
    fn set_workers(&self, workers: usize) -> Result<(), Error>;
}

/// A running set of isolated worker processes: the executor the server attaches to its
/// queue, and the handle that resizes it.
pub struct Isolated {
    /// What the queue notifies and asks for statistics.
    pub executor: Arc<dyn Executor>,
    /// What `ncpus` and `set_ncpus` reach.
    pub processes: Arc<dyn WorkerProcesses>,
}

impl std::fmt::Debug for Isolated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolated")
            .field("workers", &self.processes.workers())
            .finish()
    }
}

/// Program-wide entry points provided by the network half and reached through the task
/// registry, so that pp-runtime needs no network code and every program with a task links
/// them.
#[derive(Debug)]
pub struct ProgramHooks {
    /// Starts the cluster client.
    pub connect: ConnectFn,
    /// Starts the worker processes of an isolated server.
    pub isolate: IsolateFn,
    /// The constructor that turns a process started by a node into a worker (pp-net's
    /// `worker::WORKER_HOOK`); pointing at it keeps the linker from dropping it.
    pub worker_hook: &'static extern "C" fn(),
}
