//! The job records a `Submit` and a `Results` carry: a job sent to a node and its reply,
//! and how large a reply is when batching them under the message limit.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::outcome::Outcome;

/// One job sent to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The client's id for the job, echoed in its [`JobReply`].
    pub job_id: u64,
    /// The task's stable id (module path and name).
    pub task: String,
    /// Fingerprint of the task's signature, so a worker with another version refuses it.
    pub fingerprint: u64,
    /// The job's time limit, counted from when its worker starts it (time queued on the
    /// node does not count): past it the node kills the worker, answers
    /// [`Outcome::TimedOut`] and starts a new worker. `None`: no limit.
    #[serde(with = "pp_runtime::codec::duration::option")]
    pub timeout: Option<Duration>,
    /// The arguments, already encoded by `pp_runtime::codec`.
    #[serde(with = "pp_runtime::codec::bytes")]
    pub args: Vec<u8>,
}

/// The outcome of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobReply {
    /// The `job_id` of the [`JobRequest`].
    pub job_id: u64,
    /// What happened.
    pub outcome: Outcome,
    /// How long the job ran in its worker (the task's call, measured by the worker): what
    /// the client's statistics count as the job's time. Zero when the job never ran (its
    /// arguments could not be read); for a worker that died, the time from when it could
    /// start the job to its death, as the node saw it.
    #[serde(with = "pp_runtime::codec::duration")]
    pub run_time: Duration,
}

/// Room left in a `Results` message for everything but the payloads.
pub(crate) const MESSAGE_SLACK: u32 = 1024;

/// Encoded size of a reply, near enough to keep a batch under the message limit.
pub(crate) fn reply_size(reply: &JobReply) -> u64 {
    let payload = match &reply.outcome {
        Outcome::Ok(bytes) => bytes.len(),
        Outcome::Panicked(text) | Outcome::WorkerCrashed(text) | Outcome::Failed(text) => {
            text.len()
        }
        Outcome::TimedOut(_) => 0,
    };
    // job_id, the outcome's tag and length, the run time (12 bytes), and some slack.
    payload as u64 + 48
}
