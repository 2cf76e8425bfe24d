//! Jobs as the node holds them, from the moment they are read until their reply is
//! written: a large job's arguments stay in the buffer they were decrypted into, and go to
//! the worker (its pipe or its shared argument area) from there.

use pp_runtime::codec::{self, CodecError};

use crate::channel::{Plaintext, SharedBytes};
use crate::protocol::{self, Message};

/// One job of a client, queued for a worker.
#[derive(Debug, Clone)]
pub(crate) struct QueuedJob {
    /// The client's id for the job.
    pub(crate) job_id: u64,
    /// The task's stable id.
    pub(crate) task: String,
    /// Fingerprint of the task's signature.
    pub(crate) fingerprint: u64,
    /// Its time limit once its worker starts it.
    pub(crate) timeout: Option<std::time::Duration>,
    /// The encoded arguments (large ones share the received message's buffer).
    pub(crate) args: SharedBytes,
}

/// A message from the client in the working phase.
pub(crate) enum Incoming {
    /// The jobs of a `Submit`.
    Submit(Vec<QueuedJob>),
    /// Any other message.
    Other(Message),
}

/// Decodes a received message, with at most `limit` bytes of claimed lengths.
///
/// # Errors
/// The bytes are not a valid [`Message`].
pub(crate) fn decode(plain: &Plaintext<'_>, limit: u32) -> Result<Incoming, CodecError> {
    let bytes = plain.bytes();
    let limit = u64::from(limit);
    Ok(match protocol::decode_submit(bytes, limit)? {
        Some(jobs) => Incoming::Submit(
            jobs.into_iter()
                .map(|job| QueuedJob {
                    job_id: job.job_id,
                    task: job.task.to_owned(),
                    fingerprint: job.fingerprint,
                    timeout: job.timeout,
                    args: plain.keep(job.args),
                })
                .collect(),
        ),
        None => Incoming::Other(codec::decode_with_limit(bytes, limit)?),
    })
}
