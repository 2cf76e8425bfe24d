//! [`Outcome`]: what became of a job run outside this process, the one type the worker, the
//! node and the cluster client share.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What became of a job run in another process (a node's worker): the worker answers the
/// node with it, the node sends it to the client in its results, and the client completes
/// the job with it ([`JobFeed::complete`](crate::remote::JobFeed::complete)).
///
/// Its encoding is part of pp's network protocol and of the pipe protocol between a node and
/// its workers: the variants keep this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The job returned; its result encoded by [`crate::codec`].
    Ok(#[serde(with = "crate::codec::bytes")] Vec<u8>),
    /// The job panicked; the panic message.
    Panicked(String),
    /// The worker process running the job died; what the node knows about it (the node's
    /// report: a worker never sends it).
    WorkerCrashed(String),
    /// The job could not be run (unknown task, bad arguments, ...); why.
    Failed(String),
    /// The job ran past its time limit (the limit, [`RemoteJob::timeout`](crate::remote::RemoteJob::timeout)),
    /// and its worker was stopped: reported by whoever enforces the deadline (the node, an
    /// isolated local executor), like `WorkerCrashed`; a worker never sends it.
    TimedOut(#[serde(with = "crate::codec::duration")] Duration),
}
