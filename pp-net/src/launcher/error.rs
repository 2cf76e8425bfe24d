//! Why a launcher run cannot start as asked: the variables, the rendezvous directory, the
//! node of a rank.

use std::io;
use std::path::PathBuf;

/// A failure of launcher mode, said on standard error by the rank that meets it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LauncherError {
    /// A variable has a value that cannot be used.
    #[error("{name}={value:?} is not {expected}")]
    Var {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// `PP_LAUNCHER` names a launcher whose variables are absent.
    #[error("PP_LAUNCHER={mode}, but this process has no {looked_for} in its environment")]
    Absent {
        /// The mode asked for.
        mode: &'static str,
        /// The variables looked for.
        looked_for: &'static str,
    },
    /// The launcher gives a rank not below its size.
    #[error("the launcher says rank {rank} of {size}")]
    RankOutOfRange {
        /// The rank.
        rank: u32,
        /// The number of processes.
        size: u32,
    },
    /// An MPI run that nothing tells from another one.
    #[error(
        "nothing tells this MPI run from another (no OMPI_MCA_ess_base_jobid, PMIX_NAMESPACE \
         or PMI_KVSNAME): set PP_LAUNCHER_ID to a value unique to the run, or PP_LAUNCHER=off"
    )]
    NoRunId,
    /// The rendezvous directory, or a file in it, cannot be used.
    #[error("rendezvous directory {}: {what}: {source}", path.display())]
    Rendezvous {
        /// The directory or file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The rendezvous directory is not private to this user: another user could have made
    /// it, and its secret could be theirs.
    #[error(
        "rendezvous directory {}: {reason}; remove it, or choose another with \
         PP_RENDEZVOUS_DIR", path.display()
    )]
    Untrusted {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Rank 0 did not make the rendezvous directory in time.
    #[error(
        "rank 0 did not create {} within {secs}s (is PP_RENDEZVOUS_DIR, or the submit or \
         current directory, shared by every host of the run?)", path.display()
    )]
    NoRendezvous {
        /// The directory waited for.
        path: PathBuf,
        /// How long.
        secs: u64,
    },
    /// The address to listen on cannot be found.
    #[error("cannot find an address of {host} to listen on (set PP_LAUNCHER_HOST): {reason}")]
    Address {
        /// The host name, or `PP_LAUNCHER_HOST`.
        host: String,
        /// Why.
        reason: String,
    },
    /// This rank's own executable cannot be put in its node's program cache.
    #[error("cannot put this program in the node's cache {}: {reason}", dir.display())]
    Program {
        /// The cache directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A secret from the environment cannot be read.
    #[error("{0}")]
    Secret(String),
    /// The runtime of this rank's node could not start, or its task failed.
    #[error("this rank's node: {0}")]
    Runtime(String),
    /// This rank's node could not start.
    #[error("cannot start this rank's node: {0}")]
    Node(#[from] crate::node::NodeError),
}

impl LauncherError {
    /// The error of doing `what` at `path`.
    pub(super) fn io(path: impl Into<PathBuf>, what: &'static str, source: io::Error) -> Self {
        LauncherError::Rendezvous {
            path: path.into(),
            what,
            source,
        }
    }
}
