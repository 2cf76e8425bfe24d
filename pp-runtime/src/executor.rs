//! [`Executor`]: what runs a server's jobs, as the queue sees it. Two kinds exist: the
//! local pool ([`crate::pool`]) and the cluster client (in `pp-net`), which takes jobs
//! through [`JobFeed`](crate::remote::JobFeed) and runs them on nodes.

use crate::queue::JobQueue;
use crate::stats::{ExecutorStats, NodeStatus};
use std::time::Duration;

/// Something that runs a server's queued jobs: the local pool, or the cluster client.
///
/// The queue tells every executor when a job is queued or given back
/// ([`notify`](Executor::notify)), asks them for their statistics rows and nodes, and shuts
/// them down (remote executors first, so that the jobs they give back are cancelled with
/// the rest) when the server drops.
pub trait Executor: Send + Sync {
    /// A job was queued or given back to `queue`. Runs on the thread that queued it, right
    /// after: it must be cheap and must not block (the local pool starts a drainer if a
    /// slot is free; the cluster client wakes its node tasks, or sends a lone job on a free
    /// lane, which needs the queue's length).
    fn notify(&self, queue: QueueView<'_>);

    /// Appends this executor's statistics rows: one per place it runs jobs (`local`, or
    /// each node's `host:port`).
    fn stats_rows(&self, rows: &mut Vec<ExecutorStats>);

    /// This executor's nodes and their state (none for the local pool).
    fn nodes(&self) -> Vec<NodeStatus> {
        Vec::new()
    }

    /// Where nodes join this executor (the cluster client's bound `PP_LISTEN` address), if
    /// they do.
    fn listen_address(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// The shortest average job time, from sending to result, among the places this
    /// executor runs jobs, if a job finished there: how long a thread waiting for a remote
    /// job polls before it parks (the waiting policy, in the `job` module). `None` for the local pool.
    fn fastest_average(&self) -> Option<Duration> {
        None
    }

    /// The runtime settled jobs without this executor (a cancel: [`Job::cancel`](crate::Job::cancel),
    /// `cancel_group`, `cancel_all`), some of which a remote executor may hold. Called on
    /// every remote executor after such a settlement, on the cancelling thread: it must be
    /// cheap and must not block. An executor holding jobs then looks for the settled ones
    /// ([`RemoteJob::is_settled`](crate::remote::RemoteJob::is_settled)) and stops their
    /// work (a node kills the worker running one). The default does nothing: the work runs
    /// on and its result is dropped.
    fn settled_elsewhere(&self) {}

    /// Stops taking jobs and gives back the ones in flight (a remote executor), or lets
    /// running jobs finish and joins the threads (the local pool). Called once, when the
    /// server drops.
    fn shutdown(&self);
}

/// The queue as an executor sees it when told of a job: what it may ask, at no cost unless
/// it asks (no reference count taken, unlike a remote executor's weak handle).
#[derive(Clone, Copy)]
pub struct QueueView<'a>(pub(crate) &'a JobQueue);

impl QueueView<'_> {
    /// Jobs waiting in the queue now, the one just queued included.
    pub fn queued(&self) -> usize {
        self.0.queued()
    }
}

impl std::fmt::Debug for QueueView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueView")
            .field("queued", &self.queued())
            .finish()
    }
}
