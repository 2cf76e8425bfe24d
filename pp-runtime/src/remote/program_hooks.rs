//! [`ProgramHooks`]: the entry points the network half (`pp-net`) gives pp-runtime through
//! the task registry, so that pp-runtime needs no network code and every program with a
//! `#[pp::parallel]` task links them.

use super::cluster_options::ClusterSpec;
use super::job_feed::JobFeed;
use crate::error::Error;
use crate::executor::Executor;

/// Starts a cluster client for `spec` feeding on `feed`: the executor the server attaches
/// to its queue.
pub type ConnectFn = fn(ClusterSpec, JobFeed) -> Result<Box<dyn Executor>, Error>;

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
