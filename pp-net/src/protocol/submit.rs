//! The encoding of a `Submit`, written out once, for the two places that must not go through
//! a `Message` value: the client seals a `Submit` from its jobs' arguments where they are
//! (no copy of large arguments into one encoding), and the node and the lane decode one in
//! place (no copy out of the buffer it was decrypted into).
//!
//! A `Submit` is the variant's index (`u32`), the number of jobs (`u64`), then each job as
//! [`JobHead`] and its arguments: the layout of a [`JobRequest`], which is also the layout
//! of a worker's job (the worker reads it as a [`JobView`]). Tests pin the parts and the
//! in-place decoding to `codec::encode(&Message::Submit { .. })`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::job::JobRequest;

/// A job's fields before its arguments, with the arguments' length: what is encoded ahead
/// of arguments that travel from where they are.
#[derive(Debug, Serialize)]
pub(crate) struct JobHead<'a> {
    /// As [`JobRequest::job_id`].
    pub(crate) job_id: u64,
    /// As [`JobRequest::task`].
    pub(crate) task: &'a str,
    /// As [`JobRequest::fingerprint`].
    pub(crate) fingerprint: u64,
    /// As [`JobRequest::timeout`].
    #[serde(with = "pp_runtime::codec::duration::option")]
    pub(crate) timeout: Option<Duration>,
    /// The length of [`JobRequest::args`].
    pub(crate) args_len: u64,
}

/// A [`JobRequest`] decoded in place: same fields, same encoding, borrowed from the bytes,
/// so that large arguments are not copied out of them.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct JobView<'a> {
    /// As [`JobRequest::job_id`].
    pub(crate) job_id: u64,
    /// As [`JobRequest::task`].
    pub(crate) task: &'a str,
    /// As [`JobRequest::fingerprint`].
    pub(crate) fingerprint: u64,
    /// As [`JobRequest::timeout`].
    #[serde(with = "pp_runtime::codec::duration::option")]
    pub(crate) timeout: Option<Duration>,
    /// As [`JobRequest::args`].
    pub(crate) args: &'a [u8],
}

/// Arguments above this size travel from where they are (see [`SubmitEncoding`]).
const SEPARATE_ARGS: usize = 64 << 10;

/// The encoding of a [`Message::Submit`](super::Message::Submit) as parts: the fields of its jobs gathered in one
/// buffer, large arguments left where they are. One after the other, the parts are the
/// bytes of `codec::encode(&Message::Submit { jobs })`, with no copy of large arguments.
pub(crate) struct SubmitEncoding<'a> {
    buffer: Vec<u8>,
    /// `(end of the buffer's part, the arguments that follow it)`.
    marks: Vec<(usize, &'a [u8])>,
}

impl<'a> SubmitEncoding<'a> {
    /// Encodes the message `Submit { jobs }`.
    pub(crate) fn new(jobs: &'a [JobRequest]) -> Result<Self, pp_runtime::codec::CodecError> {
        /// The start of a `Submit`: the variant's index, then the number of jobs.
        #[derive(Serialize)]
        struct Head {
            variant: u32,
            jobs: u64,
        }
        let mut buffer = pp_runtime::codec::encode(&Head {
            variant: SUBMIT_VARIANT,
            jobs: jobs.len() as u64,
        })?;
        let mut marks = Vec::new();
        for job in jobs {
            // A `JobRequest` has a worker job's layout: its head, then its arguments.
            buffer.extend_from_slice(&pp_runtime::codec::encode(&JobHead {
                job_id: job.job_id,
                task: &job.task,
                fingerprint: job.fingerprint,
                timeout: job.timeout,
                args_len: job.args.len() as u64,
            })?);
            if job.args.len() > SEPARATE_ARGS {
                marks.push((buffer.len(), job.args.as_slice()));
            } else {
                buffer.extend_from_slice(&job.args);
            }
        }
        Ok(SubmitEncoding { buffer, marks })
    }

    /// The parts, in order.
    pub(crate) fn parts(&self) -> Vec<&[u8]> {
        let mut parts = Vec::with_capacity(2 * self.marks.len() + 1);
        let mut start = 0;
        for &(end, args) in &self.marks {
            parts.push(&self.buffer[start..end]);
            parts.push(args);
            start = end;
        }
        parts.push(&self.buffer[start..]);
        parts
    }
}

/// Index of [`Message::Submit`](super::Message::Submit) among the variants: its encoding starts with it.
const SUBMIT_VARIANT: u32 = 5;

/// Decodes `bytes` as a [`Message::Submit`](super::Message::Submit) whose jobs borrow from them, with at most
/// `limit` bytes of claimed lengths; `Ok(None)` when they hold another message (to decode
/// as a [`Message`](super::Message)).
///
/// # Errors
/// The bytes start as a `Submit` and are not a valid one.
pub(crate) fn decode_submit(
    bytes: &[u8],
    limit: u64,
) -> Result<Option<Vec<JobView<'_>>>, pp_runtime::codec::CodecError> {
    if bytes.first_chunk::<4>() != Some(&SUBMIT_VARIANT.to_le_bytes()) {
        return Ok(None);
    }
    // An enum variant is its index and then its fields, as this tuple is.
    let (_, jobs): (u32, Vec<JobView<'_>>) = pp_runtime::codec::decode_borrowed(bytes, limit)?;
    Ok(Some(jobs))
}
