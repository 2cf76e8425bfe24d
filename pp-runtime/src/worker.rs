//! Worker mode: any program that links pp can run jobs for a `ppserver` node.
//!
//! A node runs a client's jobs in processes of the client's own executable, started with
//! the environment variable [`WORKER_ENV`] (`PP_WORKER=1`) and its standard input and
//! output as pipes. [`WORKER_HOOK`], placed in the platform's table of initialisers, runs
//! before `main`: when the variable is set it turns the process into a worker that serves
//! jobs until its input closes, then exits, so `main` never runs. Examples, user binaries
//! and `cargo test` harnesses all work this way with no code from the user.
//!
//! # The pipe protocol
//! Every message is a frame: a `u32` little-endian length, then the value encoded by
//! [`crate::codec`]. A frame longer than the limit (from [`MAX_FRAME_ENV`], default
//! [`DEFAULT_MAX_FRAME`]) is refused before memory is reserved for it.
//!
//! ```text
//! worker -> node   WorkerHello                      once, at start
//! node -> worker   WorkerInput, WorkerInput, ...    jobs, possibly several ahead
//! worker -> node   WorkerReply, WorkerReply, ...    one per job, in order, each flushed
//! node closes the worker's input                    the worker exits with status 0
//! ```
//! A job comes with its arguments in the frame ([`WorkerInput::Job`]), or, when they are
//! large and the node gave the worker a shared argument area ([`SHARED_ARGS_ENV`]), as a
//! [`SharedJob`] that says where in the area they are: the node writes them there once,
//! and they do not cross the pipe.
//! The worker runs one job at a time, in the order received, and starts the next job only
//! after writing the previous reply: a worker that dies leaves its later jobs unstarted.
//! The worker protocol is versioned by [`WORKER_PROTOCOL`], the first field of the hello.
//!
//! Inside a worker, what a job writes to standard output goes to standard error (the pipe
//! belongs to the protocol) and standard input reads nothing.
//!
//! A node may also start a *lane worker* ([`LANE_ENV`]): it says hello the same way, then
//! serves one client's direct connection instead of the pipe (see the `lane` module).

use std::io::{self, BufReader, BufWriter, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::registry::{registry, InvokeError};

#[cfg(unix)]
mod lane;
#[cfg(unix)]
mod mapping;
#[cfg(unix)]
mod shared_args;

#[cfg(unix)]
pub use mapping::map_shared;

/// Version of the pipe protocol between a node and its workers (2: jobs are tagged, and a
/// job's arguments may wait in a shared area).
pub const WORKER_PROTOCOL: u16 = 2;

/// The environment variable that makes a pp program start as a worker (value `1`).
pub const WORKER_ENV: &str = "PP_WORKER";

/// The environment variable with the largest frame, in bytes, a worker reads or writes.
pub const MAX_FRAME_ENV: &str = "PP_WORKER_MAX_FRAME";

/// The environment variable with the number of a read-only file descriptor, open in the
/// worker, of the node's shared argument area for this worker alone
/// ([`ArgsArea::Worker`]). Unset when the node has none (on systems without memory files,
/// for example).
pub const SHARED_ARGS_ENV: &str = "PP_WORKER_SHARED_ARGS_FD";

/// As [`SHARED_ARGS_ENV`], for the area the node decrypts its client's large messages
/// into, which every worker of the session maps ([`ArgsArea::Session`]).
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

/// Default frame limit of the pipe protocol: 64 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 64 << 20;

/// Bytes of a frame's length prefix.
pub const FRAME_HEADER: usize = 4;

/// The initialiser that makes a process a worker before `main` runs (see the module docs).
///
/// The loader calls every function of this table before `main`; this one returns at once
/// unless [`WORKER_ENV`] is set. It must be linked into the program to work: code that
/// `#[pp::parallel]` generates refers to it. Not public API.
#[doc(hidden)]
#[used]
#[cfg_attr(
    any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
        target_os = "illumos",
        target_os = "solaris"
    ),
    unsafe(link_section = ".init_array")
)]
#[cfg_attr(
    target_vendor = "apple",
    unsafe(link_section = "__DATA,__mod_init_func")
)]
#[cfg_attr(windows, unsafe(link_section = ".CRT$XCU"))]
pub static WORKER_HOOK: extern "C" fn() = worker_hook;

// On ELF the loader passes (argc, argv, envp); a function that takes no arguments ignores
// them, as C constructors do.
extern "C" fn worker_hook() {
    enter_worker_mode_if_requested();
}

/// Becomes a worker if [`WORKER_ENV`] is set, and then never returns.
///
/// Without the variable this returns at once (it runs in every pp program). With it, the
/// variable is removed (so jobs that start programs do not make more workers), the worker
/// loop serves jobs on standard input and output, and the process exits: with status 0
/// when the node closes the input, 1 after a protocol error (reported on standard error).
///
/// [`WORKER_HOOK`] calls it before `main`, while the process has one thread; a program
/// that calls it itself must do so before it starts any thread (it changes the
/// environment).
pub fn enter_worker_mode_if_requested() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    // Still single-threaded here (before `main`), so changing the environment is sound.
    std::env::remove_var(WORKER_ENV);
    let limit = frame_limit_from_env();
    #[cfg(unix)]
    if let Some(socket) = lane::from_env() {
        let served =
            stdio::take().and_then(|(input, output)| lane::serve(socket, input, output, limit));
        let status = match served {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("pp lane worker {}: {error}", std::process::id());
                1
            }
        };
        std::process::exit(status);
    }
    #[cfg(unix)]
    let mut areas = [
        SharedArea::from_env(SHARED_ARGS_ENV),
        SharedArea::from_env(SESSION_ARGS_ENV),
    ];
    #[cfg(not(unix))]
    let mut areas: [Option<SharedArea>; 2] = [None, None];
    let result = stdio::take().and_then(|(input, output)| serve(input, output, limit, &mut areas));
    let status = match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("pp worker {}: {error}", std::process::id());
            1
        }
    };
    std::process::exit(status);
}

/// The frame limit set by the node in [`MAX_FRAME_ENV`], or [`DEFAULT_MAX_FRAME`].
fn frame_limit_from_env() -> u32 {
    std::env::var(MAX_FRAME_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&limit| limit >= 1024)
        .unwrap_or(DEFAULT_MAX_FRAME)
}

/// First message of a worker: who it is and which tasks it can run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerHello {
    /// [`WORKER_PROTOCOL`] of the program. Always the first field, in every version.
    pub protocol: u16,
    /// [`Registry::fingerprint`](crate::Registry::fingerprint) of the program.
    pub registry_fingerprint: u64,
    /// Number of registered tasks.
    pub tasks: u32,
    /// The worker's process id.
    pub pid: u32,
}

impl WorkerHello {
    /// The hello of this process: its protocol, registry and pid.
    fn of_this_process() -> Self {
        let registry = registry();
        WorkerHello {
            protocol: WORKER_PROTOCOL,
            registry_fingerprint: registry.fingerprint(),
            tasks: u32::try_from(registry.len()).unwrap_or(u32::MAX),
            pid: std::process::id(),
        }
    }
}

/// One job for a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerJob {
    /// The node's id for the job, echoed in the [`WorkerReply`].
    pub job_id: u64,
    /// The task's stable id.
    pub task: String,
    /// The signature fingerprint the client expects.
    pub fingerprint: u64,
    /// The arguments, encoded by [`crate::codec`].
    #[serde(with = "crate::codec::bytes")]
    pub args: Vec<u8>,
}

/// What a node sends a worker, one per frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerInput {
    /// A job with its arguments in the frame.
    Job(WorkerJob),
    /// A job whose arguments wait in the worker's shared argument area.
    Shared(SharedJob),
}

/// A job whose encoded arguments are `len` bytes at `offset` in one of the worker's shared
/// argument areas. The node writes them before it sends the job and leaves them alone
/// until the worker's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedJob {
    /// As [`WorkerJob::job_id`].
    pub job_id: u64,
    /// As [`WorkerJob::task`].
    pub task: String,
    /// As [`WorkerJob::fingerprint`].
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
    /// The worker's own ([`SHARED_ARGS_ENV`]): the node copies a job's arguments there.
    Worker,
    /// The session's ([`SESSION_ARGS_ENV`]): the node decrypted the client's message
    /// there, arguments included.
    Session,
}

/// A worker's answer to one [`WorkerJob`] or [`SharedJob`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReply {
    /// The `job_id` of the job.
    pub job_id: u64,
    /// What became of it.
    pub outcome: WorkerOutcome,
}

/// What became of a job in a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerOutcome {
    /// The job returned; its result encoded by [`crate::codec`].
    Ok(#[serde(with = "crate::codec::bytes")] Vec<u8>),
    /// The job panicked; the panic message.
    Panicked(String),
    /// The job could not be run (unknown task, other signature, bad arguments, a result
    /// above the frame limit); why.
    Failed(String),
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
    args: &[u8],
    limit: u32,
) -> Result<Vec<u8>, WorkerError> {
    let head = InputHead::Job(JobHead {
        job_id,
        task,
        fingerprint,
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

/// Serves jobs from `input` to `output` until `input` ends cleanly between frames.
///
/// Writes the [`WorkerHello`] first, then answers each [`WorkerInput`] with a
/// [`WorkerReply`], flushed at once. Jobs run through [`Registry::invoke`](crate::Registry::invoke),
/// which catches panics. [`enter_worker_mode_if_requested`] runs it on the process's pipes
/// (with the node's shared argument area); tests may run it on buffers, where a
/// [`SharedJob`] fails for want of an area.
///
/// # Errors
/// An I/O error on either side, a frame above `limit`, a truncated or undecodable frame.
pub fn run_worker<R: Read, W: Write>(input: R, output: W, limit: u32) -> Result<(), WorkerError> {
    serve(input, output, limit, &mut [None, None])
}

/// The worker's view of a shared argument area on this platform.
#[cfg(unix)]
type SharedArea = shared_args::SharedArgs;
#[cfg(not(unix))]
type SharedArea = NoSharedArgs;

/// No shared argument area exists on this platform.
#[cfg(not(unix))]
enum NoSharedArgs {}

#[cfg(not(unix))]
impl NoSharedArgs {
    fn bytes(&mut self, _: u64, _: u64) -> Result<&[u8], String> {
        match *self {}
    }
}

/// [`run_worker`], with the shared argument areas the node gave ([`ArgsArea::Worker`],
/// then [`ArgsArea::Session`]).
fn serve<R: Read, W: Write>(
    input: R,
    output: W,
    limit: u32,
    areas: &mut [Option<SharedArea>; 2],
) -> Result<(), WorkerError> {
    let mut input = BufReader::new(input);
    let mut output = say_hello(output, limit)?;
    let mut buffer = Vec::new();
    while let Some(len) = read_frame_into(&mut input, &mut buffer, "job", limit)? {
        let body = &buffer[..len];
        // Borrowed: the arguments are decoded straight from the frame (or the shared
        // area), not copied first.
        let input: InputView<'_> =
            codec::decode_borrowed(body, u64::from(limit)).map_err(|source| {
                WorkerError::Codec {
                    what: "job",
                    source,
                }
            })?;
        let (job, args) = match input {
            InputView::Job(job) => {
                let args = job.args;
                (job, Ok(args))
            }
            InputView::Shared(job) => {
                let area = match job.area {
                    ArgsArea::Worker => &mut areas[0],
                    ArgsArea::Session => &mut areas[1],
                };
                let args = match area {
                    Some(area) => area.bytes(job.offset, job.len),
                    None => Err(format!(
                        "the node sent the arguments in a shared area ({:?}), and this \
                         worker has none",
                        job.area
                    )),
                };
                let view = JobView {
                    job_id: job.job_id,
                    task: job.task,
                    fingerprint: job.fingerprint,
                    args: &[],
                };
                (view, args)
            }
        };
        let outcome = match args {
            Err(why) => WorkerOutcome::Failed(format!(
                "cannot read the arguments of task `{}`: {why}",
                job.task
            )),
            Ok(args) => run_job(job.task, job.fingerprint, args),
        };
        let reply = WorkerReply {
            job_id: job.job_id,
            outcome,
        };
        match write_frame(&mut output, &reply, "reply", limit) {
            Err(WorkerError::TooLarge { len, limit, .. }) => {
                let reply = WorkerReply {
                    job_id: job.job_id,
                    outcome: WorkerOutcome::Failed(format!(
                        "the result of task `{}` is {len} bytes when encoded, above the \
                         node's limit of {limit} bytes",
                        job.task
                    )),
                };
                write_frame(&mut output, &reply, "reply", limit)?;
            }
            other => other?,
        }
        if len <= KEEP_BUFFER && buffer.len() > KEEP_BUFFER {
            buffer = Vec::new();
        }
    }
    Ok(())
}

/// Writes this process's [`WorkerHello`] on `output`, the first frame of every worker;
/// returns the buffered output.
fn say_hello<W: Write>(output: W, limit: u32) -> Result<BufWriter<W>, WorkerError> {
    let mut output = BufWriter::new(output);
    write_frame(
        &mut output,
        &WorkerHello::of_this_process(),
        "worker hello",
        limit,
    )?;
    Ok(output)
}

/// Runs one job of this program's registry, as every kind of worker does: the task named
/// `task`, if its signature has `fingerprint`, on the encoded `args`.
pub fn run_job(task: &str, fingerprint: u64, args: &[u8]) -> WorkerOutcome {
    match registry().invoke(task, Some(fingerprint), args) {
        Ok(result) => WorkerOutcome::Ok(result),
        Err(InvokeError::Panicked(message)) => WorkerOutcome::Panicked(message),
        Err(other) => WorkerOutcome::Failed(other.to_string()),
    }
}

/// A job frame buffer up to this size is kept for the next job. A larger one is kept only
/// while large jobs follow one another: refilling pages already mapped costs far less than
/// faulting in fresh ones, and the first small job lets it go.
const KEEP_BUFFER: usize = 1 << 20;

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
enum InputView<'a> {
    /// [`WorkerInput::Job`].
    #[serde(borrow)]
    Job(JobView<'a>),
    /// [`WorkerInput::Shared`].
    #[serde(borrow)]
    Shared(SharedJobView<'a>),
}

/// A [`SharedJob`] decoded in place, or borrowed to encode one.
#[derive(Serialize, Deserialize)]
struct SharedJobView<'a> {
    job_id: u64,
    task: &'a str,
    fingerprint: u64,
    area: ArgsArea,
    offset: u64,
    len: u64,
}

/// A [`WorkerJob`] up to its arguments' bytes: the last field is their length, which is
/// how a byte vector's encoding starts, so this head followed by the arguments is the
/// job's encoding. A client's `Submit` carries its jobs in the same layout, and pp-net
/// encodes them with it too.
#[derive(Debug, Serialize)]
pub struct JobHead<'a> {
    /// As [`WorkerJob::job_id`].
    pub job_id: u64,
    /// As [`WorkerJob::task`].
    pub task: &'a str,
    /// As [`WorkerJob::fingerprint`].
    pub fingerprint: u64,
    /// The length of [`WorkerJob::args`].
    pub args_len: u64,
}

/// A [`WorkerJob`] decoded in place: same fields, same encoding, borrowed from the bytes,
/// so that large arguments are not copied out of them (used for a `Submit`'s jobs too).
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub struct JobView<'a> {
    /// As [`WorkerJob::job_id`].
    pub job_id: u64,
    /// As [`WorkerJob::task`].
    pub task: &'a str,
    /// As [`WorkerJob::fingerprint`].
    pub fingerprint: u64,
    /// As [`WorkerJob::args`].
    pub args: &'a [u8],
}

/// Writes one frame and flushes it.
fn write_frame<W: Write, T: Serialize>(
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
fn read_frame_into<R: Read>(
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

/// The protocol's ends of the process's standard streams.
mod stdio {
    use std::fs::File;
    use std::io;

    /// Takes standard input and output for the protocol. On Unix, file descriptor 1 then
    /// points to standard error and 0 to `/dev/null`, so a job that prints or reads cannot
    /// corrupt the protocol.
    #[cfg(unix)]
    pub(super) fn take() -> Result<(File, File), super::WorkerError> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let err = |source| super::WorkerError::Io {
            during: "setting up the worker's pipes",
            source,
        };
        let null = File::open("/dev/null").map_err(err)?;
        // SAFETY: plain descriptor calls on descriptors this process owns; each new
        // descriptor is owned by exactly one `File`.
        unsafe {
            let input = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3);
            if input < 0 {
                return Err(err(io::Error::last_os_error()));
            }
            let input = File::from_raw_fd(input);
            let output = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
            if output < 0 {
                return Err(err(io::Error::last_os_error()));
            }
            let output = File::from_raw_fd(output);
            if libc::dup2(2, 1) < 0 || libc::dup2(null.as_raw_fd(), 0) < 0 {
                return Err(err(io::Error::last_os_error()));
            }
            Ok((input, output))
        }
    }

    /// Elsewhere the protocol uses the standard streams as they are.
    #[cfg(not(unix))]
    pub(super) fn take() -> Result<(io::Stdin, io::Stdout), super::WorkerError> {
        Ok((io::stdin(), io::stdout()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden<T>(value: &T, bytes: &[u8])
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        assert_eq!(
            codec::encode(value).unwrap(),
            bytes,
            "encoding of {value:?} drifted"
        );
        assert_eq!(&codec::decode::<T>(bytes).unwrap(), value);
    }

    #[test]
    fn golden_hello() {
        let hello = WorkerHello {
            protocol: 1,
            registry_fingerprint: 0x0102,
            tasks: 3,
            pid: 0x0A0B,
        };
        #[rustfmt::skip]
        golden(&hello, &[
            1, 0,                           // protocol
            2, 1, 0, 0, 0, 0, 0, 0,         // registry_fingerprint
            3, 0, 0, 0,                     // tasks
            0x0B, 0x0A, 0, 0,               // pid
        ]);
    }

    #[test]
    fn golden_job() {
        let job = WorkerInput::Job(WorkerJob {
            job_id: 7,
            task: "m::f".into(),
            fingerprint: 0xAABB,
            args: vec![5, 6],
        });
        #[rustfmt::skip]
        golden(&job, &[
            0, 0, 0, 0,                     // Job
            7, 0, 0, 0, 0, 0, 0, 0,         // job_id
            4, 0, 0, 0, 0, 0, 0, 0,         // task.len()
            b'm', b':', b':', b'f',
            0xBB, 0xAA, 0, 0, 0, 0, 0, 0,   // fingerprint
            2, 0, 0, 0, 0, 0, 0, 0, 5, 6,   // args
        ]);
    }

    #[test]
    fn golden_shared_job() {
        let job = WorkerInput::Shared(SharedJob {
            job_id: 7,
            task: "m::f".into(),
            fingerprint: 0xAABB,
            area: ArgsArea::Session,
            offset: 0x10,
            len: 0x0102,
        });
        #[rustfmt::skip]
        golden(&job, &[
            1, 0, 0, 0,                     // Shared
            7, 0, 0, 0, 0, 0, 0, 0,         // job_id
            4, 0, 0, 0, 0, 0, 0, 0,         // task.len()
            b'm', b':', b':', b'f',
            0xBB, 0xAA, 0, 0, 0, 0, 0, 0,   // fingerprint
            1, 0, 0, 0,                     // area: Session
            0x10, 0, 0, 0, 0, 0, 0, 0,      // offset
            2, 1, 0, 0, 0, 0, 0, 0,         // len
        ]);
        assert_eq!(
            encode_shared_job(
                7,
                "m::f",
                0xAABB,
                ArgsArea::Session,
                0x10,
                0x0102,
                DEFAULT_MAX_FRAME
            )
            .unwrap(),
            codec::encode(&job).unwrap()
        );
    }

    #[test]
    fn a_job_head_and_its_arguments_are_a_worker_job() {
        let job = WorkerInput::Job(WorkerJob {
            job_id: 9,
            task: "a::b".into(),
            fingerprint: 3,
            args: vec![1, 2, 3],
        });
        let mut body = encode_job_head(9, "a::b", 3, &[1, 2, 3], DEFAULT_MAX_FRAME).unwrap();
        body.extend_from_slice(&[1, 2, 3]);
        assert_eq!(body, codec::encode(&job).unwrap());
        assert!(matches!(
            encode_job_head(9, "a::b", 3, &[0; 64], 64),
            Err(WorkerError::TooLarge { .. })
        ));
    }

    #[test]
    fn golden_replies() {
        #[rustfmt::skip]
        golden(&WorkerReply { job_id: 1, outcome: WorkerOutcome::Ok(vec![9]) }, &[
            1, 0, 0, 0, 0, 0, 0, 0,         // job_id
            0, 0, 0, 0,                     // Ok
            1, 0, 0, 0, 0, 0, 0, 0, 9,
        ]);
        #[rustfmt::skip]
        golden(&WorkerReply { job_id: 2, outcome: WorkerOutcome::Panicked("p".into()) }, &[
            2, 0, 0, 0, 0, 0, 0, 0,
            1, 0, 0, 0,                     // Panicked
            1, 0, 0, 0, 0, 0, 0, 0, b'p',
        ]);
        #[rustfmt::skip]
        golden(&WorkerReply { job_id: 3, outcome: WorkerOutcome::Failed("f".into()) }, &[
            3, 0, 0, 0, 0, 0, 0, 0,
            2, 0, 0, 0,                     // Failed
            1, 0, 0, 0, 0, 0, 0, 0, b'f',
        ]);
    }

    fn frame<T: Serialize>(value: &T) -> Vec<u8> {
        let body = encode_body(value, "test", DEFAULT_MAX_FRAME).unwrap();
        let mut out = frame_header(body.len()).to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// Splits `bytes` into frame bodies.
    fn frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let (mut out, mut buffer) = (Vec::new(), Vec::new());
        while let Some(len) =
            read_frame_into(&mut bytes, &mut buffer, "test", DEFAULT_MAX_FRAME).unwrap()
        {
            out.push(buffer[..len].to_vec());
        }
        out
    }

    #[test]
    fn worker_says_hello_then_answers_each_job() {
        let job = WorkerInput::Job(WorkerJob {
            job_id: 42,
            task: "no::such_task".into(),
            fingerprint: 1,
            args: vec![],
        });
        let input = [frame(&job), frame(&job)].concat();
        let mut output = Vec::new();
        run_worker(&input[..], &mut output, DEFAULT_MAX_FRAME).unwrap();
        let frames = frames(&output);
        assert_eq!(frames.len(), 3);
        let hello: WorkerHello = codec::decode(&frames[0]).unwrap();
        assert_eq!(hello.protocol, WORKER_PROTOCOL);
        assert_eq!(hello.pid, std::process::id());
        assert_eq!(hello.registry_fingerprint, registry().fingerprint());
        let reply: WorkerReply = codec::decode(&frames[1]).unwrap();
        assert_eq!(reply.job_id, 42);
        assert!(
            matches!(&reply.outcome, WorkerOutcome::Failed(m) if m.contains("no::such_task")),
            "{reply:?}"
        );
    }

    #[test]
    fn a_shared_job_without_an_area_fails_by_name_and_the_worker_goes_on() {
        let shared = WorkerInput::Shared(SharedJob {
            job_id: 5,
            task: "m::f".into(),
            fingerprint: 1,
            area: ArgsArea::Worker,
            offset: 0,
            len: 8,
        });
        let input = [frame(&shared), frame(&shared)].concat();
        let mut output = Vec::new();
        run_worker(&input[..], &mut output, DEFAULT_MAX_FRAME).unwrap();
        let frames = frames(&output);
        assert_eq!(frames.len(), 3, "hello and two replies");
        let reply: WorkerReply = codec::decode(&frames[2]).unwrap();
        assert_eq!(reply.job_id, 5);
        match &reply.outcome {
            WorkerOutcome::Failed(why) => {
                assert!(why.contains("`m::f`") && why.contains("has none"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_shared_job_reads_its_arguments_from_the_area() {
        let path = std::env::temp_dir().join(format!("pp-worker-area-{}", std::process::id()));
        std::fs::write(&path, [0xEE; 64]).unwrap();
        let area = shared_args::SharedArgs::new(std::fs::File::open(&path).unwrap());
        let job = |job_id, area, offset, len| {
            frame(&WorkerInput::Shared(SharedJob {
                job_id,
                task: "no::such_task".into(),
                fingerprint: 1,
                area,
                offset,
                len,
            }))
        };
        let input = [
            job(1, ArgsArea::Session, 8, 16),
            job(2, ArgsArea::Session, 60, 16),
            job(3, ArgsArea::Worker, 0, 1),
        ]
        .concat();
        let mut output = Vec::new();
        serve(
            &input[..],
            &mut output,
            DEFAULT_MAX_FRAME,
            &mut [None, Some(area)],
        )
        .unwrap();
        let frames = frames(&output);
        let reason = |frame: &[u8]| match codec::decode::<WorkerReply>(frame).unwrap().outcome {
            WorkerOutcome::Failed(why) => why,
            other => panic!("{other:?}"),
        };
        // Arguments found: the task is what is missing. Outside the area: said so.
        assert!(
            reason(&frames[1]).contains("no::such_task"),
            "{}",
            reason(&frames[1])
        );
        assert!(
            reason(&frames[2]).contains("beyond the 64 bytes"),
            "{}",
            reason(&frames[2])
        );
        assert!(
            reason(&frames[3]).contains("(Worker)"),
            "{}",
            reason(&frames[3])
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut huge = frame_header(1 << 20).to_vec();
        huge.extend_from_slice(&[0; 16]);
        let err = run_worker(&huge[..], Vec::new(), 1024).unwrap_err();
        assert!(
            matches!(err, WorkerError::TooLarge { len, .. } if len == 1 << 20),
            "{err}"
        );

        let cut = &frame(&7u64)[..6];
        let err = run_worker(cut, Vec::new(), DEFAULT_MAX_FRAME).unwrap_err();
        assert!(matches!(err, WorkerError::Truncated { .. }), "{err}");
    }

    #[test]
    fn without_the_variable_the_hook_returns() {
        // The test harness does not set PP_WORKER, so this must come back.
        assert!(std::env::var_os(WORKER_ENV).is_none());
        enter_worker_mode_if_requested();
        let _ = &WORKER_HOOK;
    }
}
