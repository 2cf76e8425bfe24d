//! Errors of the server and of single jobs, and the text of a caught panic.

use std::any::Any;
use std::time::Duration;

/// Why a job gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job's function panicked; `message` is the panic payload.
    #[error("job `{task}` panicked: {message}")]
    Panicked {
        /// Id of the task that panicked.
        task: String,
        /// The panic message.
        message: String,
    },
    /// The worker process running the job on a node died (abort, signal, crash) on every
    /// attempt the attempt limit allows (see `ServerBuilder::max_attempts`); a crash before
    /// the limit reschedules the job instead.
    #[error("job `{task}`: its worker process died: {message}")]
    WorkerCrashed {
        /// Id of the task.
        task: String,
        /// What the node saw (exit status or signal), and the nodes of earlier attempts.
        message: String,
    },
    /// The job was in flight on a node that was lost (its connection broke, or it stayed
    /// silent past the liveness timeout) on every attempt the attempt limit allows (see
    /// `ServerBuilder::max_attempts`); each loss before the limit rescheduled the job.
    #[error(
        "job `{task}` was lost with its node on {} attempts (on {}): the attempt limit is reached",
        .nodes.len(),
        .nodes.join(", ")
    )]
    NodeLost {
        /// Id of the task.
        task: String,
        /// The nodes (`host:port`) of the failed attempts, in order; a node appears once per
        /// attempt it failed, a worker crash included.
        nodes: Vec<String>,
    },
    /// A node could not run the job, or its result could not be decoded.
    #[error("job `{task}` failed on a remote node: {message}")]
    Remote {
        /// Id of the task.
        task: String,
        /// What went wrong.
        message: String,
    },
    /// The job was cancelled before it gave a result: by [`Job::cancel`](crate::Job::cancel),
    /// [`Server::cancel_group`](crate::Server::cancel_group) or
    /// [`Server::cancel_all`](crate::Server::cancel_all), or because its server shut down
    /// before the job started.
    #[error("job `{task}` was cancelled before it gave a result")]
    Cancelled {
        /// Id of the cancelled task.
        task: String,
    },
    /// The job ran past its time limit (`timeout`) on its last attempt: its result, future
    /// and callback were released at the deadline. A limit counts from when an attempt
    /// starts running, not from submission.
    #[error(
        "job `{task}` timed out: it ran past its limit of {after:?} on {attempts} attempt{}",
        if *.attempts == 1 { "" } else { "s" }
    )]
    TimedOut {
        /// Id of the task.
        task: String,
        /// The time limit of each attempt.
        after: Duration,
        /// Attempts made, the last included (retries by policy: `retries`).
        attempts: u32,
    },
}

/// Errors of server set-up and configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A worker count of zero with no remote node to run jobs.
    #[error("ncpus must be at least 1 when no remote node is configured (got {0})")]
    InvalidNcpus(usize),
    /// A setting (an environment variable or a builder value) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The cluster client could not start.
    #[error("cannot start the cluster client: {0}")]
    Cluster(String),
    /// The local thread pool could not be started.
    #[error("cannot start {threads} worker threads: {source}")]
    ThreadPool {
        /// Threads requested.
        threads: usize,
        /// What the thread pool builder said.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
}

/// The text of a panic payload (`&str` or `String`), or a placeholder for other payloads.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
