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

/// Gives the nodes of a launcher run (`srun`, `mpirun`) to its rank 0: `None` when this
/// process is not rank 0 of one. The first call waits (bounded) for the other ranks to say
/// where they listen; later calls return the same answer at once.
pub type LauncherFn = fn() -> Option<LauncherCluster>;

/// What rank 0 of a launcher run (`srun -n N`, `mpirun -n N`) gets from the network half:
/// the other ranks, each serving as a node, and the secret the run generated when the
/// environment gave none.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LauncherCluster {
    /// The ranks' nodes, as `host:port`.
    pub nodes: Vec<String>,
    /// The rank of each node of `nodes`, in the same order: pp's warnings and statistics
    /// call a rank's node `rank N (host:port)`.
    pub ranks: Vec<u32>,
    /// The secret generated for this run, when neither `PP_SECRET` nor `PP_SECRET_FILE`
    /// is set (the ranks read it from the run's private rendezvous directory).
    pub secret: Option<Vec<u8>>,
}

impl LauncherCluster {
    /// The nodes of a launcher run, each with its rank (`(rank, host:port)`), and its
    /// secret.
    pub fn new(ranks: Vec<(u32, String)>, secret: Option<Vec<u8>>) -> Self {
        let (ranks, nodes) = ranks.into_iter().unzip();
        LauncherCluster {
            nodes,
            ranks,
            secret,
        }
    }
}

impl std::fmt::Debug for LauncherCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LauncherCluster")
            .field("nodes", &self.nodes)
            .field("ranks", &self.ranks)
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .finish()
    }
}

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
    /// The nodes of a launcher run, for its rank 0 (see [`LauncherCluster`]).
    pub launcher: LauncherFn,
    /// The constructor that turns a process started by a node into a worker (pp-net's
    /// `worker::WORKER_HOOK`); pointing at it keeps the linker from dropping it.
    pub worker_hook: &'static extern "C" fn(),
}
