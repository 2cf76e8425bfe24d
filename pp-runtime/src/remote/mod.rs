//! The seam between a server and its remote executors (the cluster client, in `pp-net`):
//! what only pp's own crates use, so hidden from the facade's documentation.
//!
//! - `cluster_options`: what a cluster client is asked for ([`ClusterSpec`]) and its
//!   policies ([`ClusterOptions`], explained there once);
//! - `job_feed`: the queue as remote executors see it ([`JobFeed`]) and the attempt
//!   policy of jobs that fail remotely;
//! - `remote_job`: a job in a remote executor's hands or given back ([`RemoteJob`]);
//! - `routing`: where a retried job goes, away from the nodes it failed on ([`Take`]);
//! - `program_hooks`: the entry points `pp-net` gives pp-runtime ([`ProgramHooks`]): the
//!   cluster client, and the worker processes of an isolated server ([`Isolated`]).
//!
//! A remote executor implements [`Executor`](crate::executor::Executor), as the local pool
//! does; its rows in the statistics are [`ExecutorHandle`]s, and a job's result comes back
//! as an [`Outcome`](crate::Outcome).

pub(crate) mod cluster_options;
pub(crate) mod job_feed;
pub(crate) mod program_hooks;
pub(crate) mod remote_job;
pub(crate) mod routing;

pub use crate::executor::{Executor, QueueView};
pub use crate::stats::ExecutorHandle;
pub use cluster_options::{
    ClusterOptions, ClusterSpec, DEFAULT_DNS_REFRESH, DEFAULT_DUPLICATE_STRAGGLERS,
    DEFAULT_FALLBACK_WAIT, DEFAULT_FORWARD_OUTPUT, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LANES,
    DEFAULT_LIVENESS_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_PORT,
};
pub use job_feed::JobFeed;
pub use program_hooks::{
    ConnectFn, IsolateFn, Isolated, IsolatedSpec, LauncherCluster, LauncherFn, ProgramHooks,
    WorkerProcesses, ISOLATED_WORKER_ENV,
};
pub use remote_job::RemoteJob;
pub use routing::{Take, RETRY_ELSEWHERE_WAIT};
