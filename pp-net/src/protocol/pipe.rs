//! The pipe protocol between a node and its workers: the messages, their frames and their
//! limits, one place for both ends (the node in `node::process` and `node::worker_loop`, the
//! worker in `worker::serve`).
//!
//! Every message is a frame: a `u32` little-endian length, then the value encoded by
//! `pp_runtime::codec`. A frame longer than the limit (from `PP_WORKER_MAX_FRAME`, default
//! [`DEFAULT_MAX_FRAME`]) is refused before memory is reserved for it.
//!
//! ```text
//! worker -> node   WorkerHello                      once, at start
//! node -> worker   WorkerInput, WorkerInput, ...    jobs, possibly several ahead
//! worker -> node   FromWorker, FromWorker, ...      per job, in order: its Output if it
//!                                                   printed (and the node asked), then
//!                                                   its Reply, flushed
//! node closes the worker's input                    the worker exits with status 0
//! ```
//! A job comes with its arguments in the frame ([`WorkerInput::Job`]), or, when they are
//! large and the node gave the worker a shared argument area (`PP_WORKER_SHARED_ARGS_FD`), as a
//! [`SharedJob`] that says where in the area they are: the node writes them there once,
//! and they do not cross the pipe.
//! The worker runs one job at a time, in the order received, and starts the next job only
//! after writing the previous reply: a worker that dies leaves its later jobs unstarted,
//! and the node knows when each job starts (it keeps jobs' time limits from that).
//! The worker protocol is versioned by [`WORKER_PROTOCOL`], the first field of the hello.
//! A lane worker answers on its lane, not on the pipe; its exit status tells the node why
//! its lane ended ([`LaneExit`]).

use std::io::{self, Read, Write};
use std::time::Duration;

use pp_runtime::codec::{self, CodecError};
use pp_runtime::registry;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::job::{JobReply, JobRequest};
#[cfg(doc)]
use super::outcome::Outcome;
use super::output::JobOutput;
use super::submit::{JobHead, JobView};

/// Version of the pipe protocol between a node and its workers (2: jobs are tagged, and a
/// job's arguments may wait in a shared area; 3: a worker answers with the protocol's
/// [`JobReply`], whose [`Outcome`] is the one outcome type of worker, node and client;
/// 4: a worker's frames are [`FromWorker`], a job's output before its reply, and the reply
/// carries the job's run time, measured by the worker; 5: a job carries its time limit,
/// [`JobRequest::timeout`], as in a `Submit`: the node enforces it, the worker need not).
pub const WORKER_PROTOCOL: u16 = 5;

/// Why a lane worker ended, as its exit status tells the node: so that the node counts what
/// happened (a client that went away is not a crashed worker, a lane handshake that stopped
/// half-way is not a failed authentication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneExit {
    /// The client closed the lane, or the node closed the worker's input (status 0).
    Closed,
    /// The lane's handshake did not complete: the client went away or stalled past the
    /// handshake timeout, or sent something other than a handshake (status 3).
    HandshakeIncomplete,
    /// The client's handshake did not authenticate with the lane's key (status 4).
    WrongKey,
    /// After the handshake the lane's connection broke, or the client broke the lane's
    /// protocol (status 5).
    ClientGone,
    /// The worker failed (status 1, and any status not listed here).
    Failed,
}

impl LaneExit {
    /// The exit status that tells the node this.
    pub fn status(self) -> i32 {
        match self {
            LaneExit::Closed => 0,
            LaneExit::Failed => 1,
            LaneExit::HandshakeIncomplete => 3,
            LaneExit::WrongKey => 4,
            LaneExit::ClientGone => 5,
        }
    }

    /// What a lane worker's exit status `code` tells (a status this version does not use
    /// is a failure).
    pub fn from_status(code: i32) -> Self {
        match code {
            0 => LaneExit::Closed,
            3 => LaneExit::HandshakeIncomplete,
            4 => LaneExit::WrongKey,
            5 => LaneExit::ClientGone,
            _ => LaneExit::Failed,
        }
    }
}

/// Default frame limit of the pipe protocol: 64 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 64 << 20;

/// Bytes of a frame's length prefix.
pub const FRAME_HEADER: usize = 4;

/// First message of a worker: who it is and which tasks it can run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerHello {
    /// [`WORKER_PROTOCOL`] of the program. Always the first field, in every version.
    pub protocol: u16,
    /// [`Registry::fingerprint`](pp_runtime::Registry::fingerprint) of the program.
    pub registry_fingerprint: u64,
    /// Number of registered tasks.
    pub tasks: u32,
    /// The worker's process id.
    pub pid: u32,
}

impl WorkerHello {
    /// The hello of this process: its protocol, registry and pid.
    pub(crate) fn of_this_process() -> Self {
        let registry = registry();
        WorkerHello {
            protocol: WORKER_PROTOCOL,
            registry_fingerprint: registry.fingerprint(),
            tasks: u32::try_from(registry.len()).unwrap_or(u32::MAX),
            pid: std::process::id(),
        }
    }
}

/// What a node sends a worker, one per frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerInput {
    /// A job with its arguments in the frame.
    Job(JobRequest),
    /// A job whose arguments wait in the worker's shared argument area.
    Shared(SharedJob),
}

/// What a worker sends a node after its hello, one per frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// A job's reply: the job is done.
    Reply(JobReply),
    /// What the job about to be answered wrote on its standard output and error (sent only
    /// when the node asked for it with `PP_WORKER_OUTPUT`, and only if it wrote something).
    Output(JobOutput),
}

/// A job whose encoded arguments are `len` bytes at `offset` in one of the worker's shared
/// argument areas. The node writes them before it sends the job and leaves them alone
/// until the worker's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedJob {
    /// As [`JobRequest::job_id`].
    pub job_id: u64,
    /// As [`JobRequest::task`].
    pub task: String,
    /// As [`JobRequest::fingerprint`].
    pub fingerprint: u64,
    /// Which area holds the arguments.
    pub area: ArgsArea,
    /// Where the arguments start in the area.
    pub offset: u64,
    /// Their length.
    pub len: u64,
}

/// A shared argument area of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArgsArea {
    /// The worker's own (`PP_WORKER_SHARED_ARGS_FD`): the node copies a job's arguments there.
    Worker,
    /// The session's (`PP_WORKER_SESSION_ARGS_FD`): the node decrypted the client's message
    /// there, arguments included.
    Session,
}

/// Why the pipe protocol failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Reading or writing a pipe failed.
    #[error("i/o error while {during}: {source}")]
    Io {
        /// What was being done.
        during: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The pipe closed in the middle of a frame.
    #[error("the pipe closed in the middle of {during}")]
    Truncated {
        /// What was being read.
        during: &'static str,
    },
    /// A frame is longer than the limit.
    #[error("a {what} of {len} bytes is above the frame limit of {limit} bytes")]
    TooLarge {
        /// What the frame holds.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        limit: u32,
    },
    /// A frame is not a valid value of its type.
    #[error("bad {what}: {source}")]
    Codec {
        /// What the frame holds.
        what: &'static str,
        /// What the codec reported.
        #[source]
        source: CodecError,
    },
}

/// Encodes `value` as a frame body, checking it against `limit`.
///
/// # Errors
/// [`WorkerError::Codec`] if it cannot be encoded, [`WorkerError::TooLarge`] if the
/// encoding is longer than `limit`.
pub fn encode_body<T: Serialize>(
    value: &T,
    what: &'static str,
    limit: u32,
) -> Result<Vec<u8>, WorkerError> {
    let body = codec::encode(value).map_err(|source| WorkerError::Codec { what, source })?;
    if body.len() as u64 > u64::from(limit) {
        return Err(WorkerError::TooLarge {
            what,
            len: body.len() as u64,
            limit,
        });
    }
    Ok(body)
}

/// Encodes everything of the [`WorkerInput::Job`] with these fields that comes before the
/// arguments' bytes: the body is this head followed by `args` itself, so a node can write
/// large arguments to the pipe from where they are, uncopied (the head and the arguments
/// together are the bytes of `encode_body(&WorkerInput::Job(..))`).
///
/// # Errors
/// As [`encode_body`], for the whole body.
pub fn encode_job_head(
    job_id: u64,
    task: &str,
    fingerprint: u64,
    timeout: Option<Duration>,
    args: &[u8],
    limit: u32,
) -> Result<Vec<u8>, WorkerError> {
    let head = InputHead::Job(JobHead {
        job_id,
        task,
        fingerprint,
        timeout,
        args_len: args.len() as u64,
    });
    let head = encode_body(&head, "job", limit)?;
    let len = head.len() as u64 + args.len() as u64;
    if len > u64::from(limit) {
        return Err(WorkerError::TooLarge {
            what: "job",
            len,
            limit,
        });
    }
    Ok(head)
}

/// Encodes a [`WorkerInput::Shared`]: the job whose `len` bytes of arguments the node has
/// written at `offset` in the worker's shared argument `area`.
///
/// # Errors
/// As [`encode_body`].
pub fn encode_shared_job(
    job_id: u64,
    task: &str,
    fingerprint: u64,
    area: ArgsArea,
    offset: u64,
    len: u64,
    limit: u32,
) -> Result<Vec<u8>, WorkerError> {
    let job = InputHead::Shared(SharedJobView {
        job_id,
        task,
        fingerprint,
        area,
        offset,
        len,
    });
    encode_body(&job, "job", limit)
}

/// The length prefix for a body of `len` bytes (already checked against the limit).
pub fn frame_header(len: usize) -> [u8; FRAME_HEADER] {
    // Bodies are bounded by a `u32` limit before they get here.
    (len as u32).to_le_bytes()
}

/// The body length announced by a frame header, if within `limit`.
///
/// # Errors
/// [`WorkerError::TooLarge`] above the limit: nothing should be allocated for it.
pub fn body_len(
    header: [u8; FRAME_HEADER],
    what: &'static str,
    limit: u32,
) -> Result<usize, WorkerError> {
    let len = u32::from_le_bytes(header);
    if len > limit {
        return Err(WorkerError::TooLarge {
            what,
            len: u64::from(len),
            limit,
        });
    }
    Ok(len as usize)
}

/// Decodes a frame body, allowing no more than `limit` bytes of claimed lengths inside it.
///
/// # Errors
/// [`WorkerError::Codec`] if the body is not a valid `T`.
pub fn decode_body<T: DeserializeOwned>(
    body: &[u8],
    what: &'static str,
    limit: u32,
) -> Result<T, WorkerError> {
    codec::decode_with_limit(body, u64::from(limit))
        .map_err(|source| WorkerError::Codec { what, source })
}

/// The start of a [`WorkerInput`], as a node encodes it: same variants, same encoding.
#[derive(Serialize)]
enum InputHead<'a> {
    /// [`WorkerInput::Job`], up to its arguments' bytes.
    Job(JobHead<'a>),
    /// [`WorkerInput::Shared`].
    Shared(SharedJobView<'a>),
}

/// A [`WorkerInput`] decoded in place.
#[derive(Deserialize)]
pub(crate) enum InputView<'a> {
    /// [`WorkerInput::Job`].
    #[serde(borrow)]
    Job(JobView<'a>),
    /// [`WorkerInput::Shared`].
    #[serde(borrow)]
    Shared(SharedJobView<'a>),
}

/// A [`SharedJob`] decoded in place, or borrowed to encode one.
#[derive(Serialize, Deserialize)]
pub(crate) struct SharedJobView<'a> {
    pub(crate) job_id: u64,
    pub(crate) task: &'a str,
    pub(crate) fingerprint: u64,
    pub(crate) area: ArgsArea,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// Writes one frame and flushes it.
pub(crate) fn write_frame<W: Write, T: Serialize>(
    output: &mut W,
    value: &T,
    what: &'static str,
    limit: u32,
) -> Result<(), WorkerError> {
    let body = encode_body(value, what, limit)?;
    let io = |source| WorkerError::Io {
        during: "writing to the node",
        source,
    };
    output.write_all(&frame_header(body.len())).map_err(io)?;
    output.write_all(&body).map_err(io)?;
    output.flush().map_err(io)
}

/// Reads one frame body into `buffer[..len]` and returns `len`; `None` when the input ends
/// before a new frame. The buffer only grows (what it held before is not zeroed again), so
/// it may be longer than the body.
pub(crate) fn read_frame_into<R: Read>(
    input: &mut R,
    buffer: &mut Vec<u8>,
    what: &'static str,
    limit: u32,
) -> Result<Option<usize>, WorkerError> {
    let mut header = [0u8; FRAME_HEADER];
    let mut filled = 0;
    while filled < FRAME_HEADER {
        match input.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => {
                return Err(WorkerError::Truncated {
                    during: "a frame header",
                })
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(WorkerError::Io {
                    during: "reading from the node",
                    source,
                })
            }
        }
    }
    let len = body_len(header, what, limit)?;
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
    input.read_exact(&mut buffer[..len]).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            WorkerError::Truncated { during: "a frame" }
        } else {
            WorkerError::Io {
                during: "reading from the node",
                source,
            }
        }
    })?;
    Ok(Some(len))
}
