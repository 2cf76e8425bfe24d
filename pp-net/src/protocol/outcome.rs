//! What became of a job on a node, as the client gets it in a reply.

use serde::{Deserialize, Serialize};

/// What became of a job on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The job returned; its result encoded by `pp_runtime::codec`.
    Ok(#[serde(with = "pp_runtime::codec::bytes")] Vec<u8>),
    /// The job panicked; the panic message.
    Panicked(String),
    /// The worker process running the job died; what the node knows about it.
    WorkerCrashed(String),
    /// The job could not be run (unknown task, bad arguments, ...); why.
    Failed(String),
}
