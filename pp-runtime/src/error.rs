//! Errors of the server and of single jobs.

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
    /// The server was dropped before the job started.
    #[error("job `{task}` was cancelled: its server shut down before the job started")]
    Cancelled {
        /// Id of the cancelled task.
        task: String,
    },
}

/// Errors of server set-up and configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A worker count of zero with no remote node to run jobs.
    #[error("ncpus must be at least 1 when no remote node is configured (got {0})")]
    InvalidNcpus(usize),
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
