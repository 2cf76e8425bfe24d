//! The environment through which a node starts a worker: the variables it sets, read once
//! before `main`.

use crate::protocol::pipe::DEFAULT_MAX_FRAME;

/// The environment variable that makes a pp program start as a worker (value `1`).
pub const WORKER_ENV: &str = "PP_WORKER";

/// The environment variable with the largest frame, in bytes, a worker reads or writes.
pub const MAX_FRAME_ENV: &str = "PP_WORKER_MAX_FRAME";

/// The environment variable with the number of a read-only file descriptor, open in the
/// worker, of the node's shared argument area for this worker alone
/// ([`ArgsArea::Worker`](crate::worker::ArgsArea::Worker)). Unset when the node has none (on systems without memory files,
/// for example).
pub const SHARED_ARGS_ENV: &str = "PP_WORKER_SHARED_ARGS_FD";

/// As [`SHARED_ARGS_ENV`], for the area the node decrypts its client's large messages
/// into, which every worker of the session maps ([`ArgsArea::Session`](crate::worker::ArgsArea::Session)).
pub const SESSION_ARGS_ENV: &str = "PP_WORKER_SESSION_ARGS_FD";

/// The environment variable with the descriptor number of a lane worker's connection (see
/// the `lane` module; Unix only).
pub const LANE_ENV: &str = "PP_WORKER_LANE_FD";

/// The environment variable with the descriptor number of a lane worker's job count: a
/// memory file whose first 8 bytes are a `u64` the worker adds to atomically (native byte
/// order: the node is the same machine).
pub const LANE_COUNT_ENV: &str = "PP_WORKER_LANE_COUNT_FD";

/// The environment variable with the time, in milliseconds, a lane worker allows its
/// client for the lane's handshake (the node's handshake timeout; 5 s when unset).
pub const LANE_HANDSHAKE_ENV: &str = "PP_WORKER_LANE_HANDSHAKE_MS";

/// The environment variable that makes a worker catch what its jobs print and send it to
/// the node with each job's reply (value `1`; see the `capture` module). Unset, what jobs
/// print goes to the node's log.
pub const OUTPUT_ENV: &str = "PP_WORKER_OUTPUT";

/// The environment variable with the descriptor numbers a worker's parent hands it for
/// its jobs' output, comma-separated: standard output's pipe (read end, write end),
/// standard error's (read end, write end), and a file where the worker saves the running
/// job's output, which the parent reads if the worker dies (Unix; see the crate's
/// `kept_output` module). Set with [`OUTPUT_ENV`] only; a worker without it makes its own
/// pipes.
pub const KEPT_OUTPUT_ENV: &str = "PP_WORKER_OUTPUT_FDS";

/// The variable a worker sets to `1` for its jobs (`PP_NCPUS`): a job's own
/// `Server::new()` inside a worker runs one local worker thread, in that process.
pub const NESTED_NCPUS_ENV: &str = "PP_NCPUS";

/// The frame limit set by the node in [`MAX_FRAME_ENV`], or [`DEFAULT_MAX_FRAME`].
pub(super) fn frame_limit_from_env() -> u32 {
    std::env::var(MAX_FRAME_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&limit| limit >= 1024)
        .unwrap_or(DEFAULT_MAX_FRAME)
}
