//! Lane mode: a worker that serves one client's direct connection (a "lane") instead of
//! the node's pipe.
//!
//! A node starts a lane worker with [`LANE_ENV`] naming the descriptor of a TCP connection
//! the client opened for lone jobs. The worker says hello on its output pipe as every
//! worker does, reads the lane's 32-byte key from its input pipe, authenticates the client
//! with the key (the lane's handshake: `crate::lane`; all of it within the node's handshake
//! timeout, however the client paces its bytes) and runs the jobs that come on the
//! connection. It counts the jobs it answers in memory the node reads ([`LANE_COUNT_ENV`]),
//! so that the node counts them with no system call or wake-up per job, even when the
//! worker dies. The process exits when the client closes the lane (at once, even in the
//! middle of a job: that is how a client withdraws the lane's job), or at once when the
//! node closes the worker's input; its exit status tells the node why ([`LaneExit`]).

use std::fs::File;
use std::io::Read;
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::blocking::{Blocking, Deadline};
use super::env::{LANE_COUNT_ENV, LANE_ENV, LANE_HANDSHAKE_ENV};
use super::serve::{run_job_timed, say_hello, Capture};
use crate::channel::{ChannelConfig, NetError, Peer};
use crate::protocol::pipe::{LaneExit, WorkerError};
use crate::protocol::{decode_submit, JobOutput, JobReply, Message};
use std::time::Duration;

/// The lane's connection named by [`LANE_ENV`], which is removed; made close-on-exec so
/// that programs a job starts do not inherit it. `None` when the variable is unset.
///
/// Called before `main`, while the process has one thread (it changes the environment).
pub(super) fn from_env() -> Option<Result<Lane, WorkerError>> {
    std::env::var_os(LANE_ENV)?;
    let socket = inherited(LANE_ENV, "taking the lane's connection");
    let handshake_timeout = std::env::var(LANE_HANDSHAKE_ENV)
        .ok()
        .and_then(|ms| ms.trim().parse().ok())
        .map_or(DEFAULT_HANDSHAKE_TIMEOUT, Duration::from_millis);
    std::env::remove_var(LANE_HANDSHAKE_ENV);
    let count = inherited(LANE_COUNT_ENV, "taking the lane's job count");
    Some(socket.and_then(|socket| {
        // SAFETY: the node handed this descriptor to this process alone; from here on this
        // `TcpStream` owns it.
        let socket = unsafe { TcpStream::from_raw_fd(socket) };
        // SAFETY: as above, for the count's memory file.
        let count = map_count(unsafe { File::from_raw_fd(count?) })?;
        Ok(Lane {
            socket,
            count,
            handshake_timeout,
        })
    }))
}

/// The lane's connection and its job count.
pub(super) struct Lane {
    socket: TcpStream,
    count: &'static AtomicU64,
    handshake_timeout: Duration,
}

/// The lane's handshake time when the node gave none.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The descriptor named by the environment variable `var`, which is removed, made
/// close-on-exec so that programs a job starts do not inherit it.
fn inherited(var: &str, during: &'static str) -> Result<i32, WorkerError> {
    let value = std::env::var(var).unwrap_or_default();
    std::env::remove_var(var);
    let bad = |why: &str| WorkerError::Io {
        during,
        source: std::io::Error::other(format!("{var}={value:?}: {why}")),
    };
    let fd = value
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&fd| fd > 2)
        .ok_or_else(|| bad("not a descriptor number above 2"))?;
    // SAFETY: fcntl on a descriptor number only sets its flags; a number that is not open
    // gives -1 and is not used.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(bad("not an open descriptor"));
    }
    Ok(fd)
}

/// Maps the first 8 bytes of `file` writable and shared, for the rest of the process's
/// life.
fn map_count(file: File) -> Result<&'static AtomicU64, WorkerError> {
    let len = std::mem::size_of::<u64>();
    let too_short = file
        .metadata()
        .map(|m| m.len() < len as u64)
        .unwrap_or(true);
    let failed = |source| WorkerError::Io {
        during: "mapping the lane's job count",
        source,
    };
    if too_short {
        return Err(failed(std::io::Error::other(
            "the count's memory file is shorter than 8 bytes",
        )));
    }
    let map = memmap2::MmapOptions::new()
        .len(len)
        .map_raw(&file)
        .map_err(failed)?;
    // The count is used until the process exits.
    let map: &'static memmap2::MmapRaw = Box::leak(Box::new(map));
    // SAFETY: the mapping is page-aligned, 8 bytes long, never unmapped (leaked above),
    // and both processes change it only atomically.
    Ok(unsafe { AtomicU64::from_ptr(map.as_mut_ptr().cast::<u64>()) })
}

/// Why a lane worker ends with an error: what its exit status tells the node, and the error
/// it writes on standard error.
pub(super) struct LaneFailure {
    pub(super) exit: LaneExit,
    pub(super) error: WorkerError,
}

impl From<WorkerError> for LaneFailure {
    fn from(error: WorkerError) -> Self {
        LaneFailure {
            exit: LaneExit::Failed,
            error,
        }
    }
}

/// Says hello on `output`, then serves `lane` with the key read from `input`, counting the
/// jobs it answers in the lane's shared count. `output` stays open (and silent) until the
/// process ends, so that the node sees the worker's end when it closes. With a `capture`,
/// what each job prints goes to the client on the lane just before the job's result.
pub(super) fn serve(
    lane: Result<Lane, WorkerError>,
    mut input: File,
    output: File,
    limit: u32,
    capture: Option<Capture>,
) -> Result<(), LaneFailure> {
    let _output = say_hello(output, limit)?;
    let Lane {
        socket,
        count,
        handshake_timeout,
    } = lane?;
    let mut key = [0u8; 32];
    input
        .read_exact(&mut key)
        .map_err(|source| WorkerError::Io {
            during: "reading the lane's key",
            source,
        })?;
    // The node closes the input when the lane must end (its session ended, the node stops):
    // the process goes at once, even in the middle of a job.
    std::thread::Builder::new()
        .name("pp-lane-watch".into())
        .spawn(move || {
            let mut sink = [0u8; 64];
            while matches!(input.read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        })
        .map_err(|source| WorkerError::Io {
            during: "starting the lane's watcher thread",
            source,
        })?;
    let report = move |answered: u64| {
        count.fetch_add(answered, Ordering::Release);
    };
    let capture = capture.as_ref();
    serve_connection(socket, &key, limit, handshake_timeout, capture, report).map_err(
        |(exit, why)| LaneFailure {
            exit,
            error: WorkerError::Io {
                during: "serving the lane",
                source: std::io::Error::other(why),
            },
        },
    )
}

/// Serves the lane on `socket` until the client closes it: the handshake keyed from `key`,
/// then each job that comes, answered on the lane and counted with `report`.
///
/// # Errors
/// The handshake failed, the connection broke, or the client broke the protocol; with what
/// the exit status tells the node.
fn serve_connection(
    socket: TcpStream,
    key: &[u8; 32],
    limit: u32,
    handshake_timeout: Duration,
    capture: Option<&Capture>,
    mut report: impl FnMut(u64),
) -> Result<(), (LaneExit, String)> {
    let config = ChannelConfig {
        max_message: limit,
        handshake_timeout,
        ..ChannelConfig::default()
    };
    let peer = Peer(socket.peer_addr().ok());
    let setup = |e: std::io::Error| {
        let why = format!("cannot set up the lane's connection: {e}");
        (LaneExit::Failed, why)
    };
    let client_gone = |why: String| (LaneExit::ClientGone, why);
    // Blocking calls, bounded: the whole handshake by one deadline (each read and write
    // waits at most for the time left: a peer trickling bytes cannot stretch it), every
    // later write by a write timeout (no progress for that long), and the wait for the
    // next job by the client's closing the lane or the node's killing the worker.
    socket.set_nonblocking(false).map_err(setup)?;
    socket.set_nodelay(true).map_err(setup)?;
    let deadline = Deadline::after(config.handshake_timeout);
    let reader = Blocking::new(socket.try_clone().map_err(setup)?, Arc::clone(&deadline));
    let writer = Blocking::new(socket.try_clone().map_err(setup)?, Arc::clone(&deadline));
    // The runtime only drives the channel's futures: every call blocks in the system call.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| {
            let why = format!("cannot start the lane's runtime: {e}");
            (LaneExit::Failed, why)
        })?;
    runtime.block_on(async move {
        let accepted = crate::lane::accept(reader, writer, peer, key, config).await;
        let (mut reader, mut writer) = match accepted {
            Ok(halves) => halves,
            Err(_) if deadline.has_passed() => {
                return Err((
                    LaneExit::HandshakeIncomplete,
                    format!(
                        "lane handshake: not finished within {:?} (the node's handshake timeout)",
                        deadline.allowed()
                    ),
                ))
            }
            Err(e) => {
                let exit = match e {
                    NetError::AuthenticationFailed { .. } => LaneExit::WrongKey,
                    NetError::Crypto { .. } => LaneExit::Failed,
                    _ => LaneExit::HandshakeIncomplete,
                };
                return Err((exit, format!("lane handshake: {e}")));
            }
        };
        // A lane waits for its next job as long as the client keeps it open, and a write
        // may take as long as it makes progress.
        deadline.lift();
        socket.set_read_timeout(None).map_err(setup)?;
        socket
            .set_write_timeout(Some(LANE_WRITE_TIMEOUT))
            .map_err(setup)?;
        pp_runtime::debug!(peer = %reader.peer(), "lane open");
        watch_hang_up(&socket);
        loop {
            let plaintext = match reader.recv_plaintext().await {
                Ok(plaintext) => plaintext,
                Err(NetError::Disconnected { .. }) => return Ok(()),
                Err(error) => return Err(client_gone(error.to_string())),
            };
            let jobs = match decode_submit(plaintext.bytes(), u64::from(limit)) {
                Ok(Some(jobs)) => jobs,
                Ok(None) => {
                    let why = "the client sent a lane something other than jobs";
                    return Err(client_gone(why.into()));
                }
                Err(error) => return Err(client_gone(format!("bad jobs on the lane: {error}"))),
            };
            let mut printed = Vec::new();
            let results: Vec<JobReply> = jobs
                .iter()
                .map(|job| {
                    if let Some(capture) = capture {
                        capture.start_job(job.job_id);
                    }
                    let (outcome, run_time) = run_job_timed(job.task, job.fingerprint, job.args);
                    let output = capture.and_then(|capture| capture.end_job(job.job_id));
                    printed.extend(output.into_iter().flat_map(JobOutput::into_pieces));
                    JobReply {
                        job_id: job.job_id,
                        outcome,
                        run_time,
                    }
                })
                .collect();
            for output in printed {
                // Within the message limit by the capture's bound.
                writer
                    .send(&Message::Output(output))
                    .await
                    .map_err(|e| client_gone(e.to_string()))?;
            }
            let answered = results.len() as u64;
            writer
                .send_results(results)
                .await
                .map_err(|e| client_gone(e.to_string()))?;
            report(answered);
        }
    })
}

/// From the lane's handshake on, ends the process when the client hangs up, even in the
/// middle of a job: a client closes its lane to withdraw the job on it (a cancel), and
/// the core must be free again at once, not when the job returns. Best effort: without the
/// watch, the lane still ends when its job returns.
fn watch_hang_up(socket: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // A descriptor of its own: it stays open as long as the thread polls it.
        let Ok(watched) = socket.try_clone() else {
            return;
        };
        let watch = move || loop {
            let mut poll = libc::pollfd {
                fd: watched.as_raw_fd(),
                events: libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: one pollfd, of a descriptor this closure owns.
            let ready = unsafe { libc::poll(&mut poll, 1, -1) };
            let hung_up = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
            if ready > 0 && poll.revents & hung_up != 0 {
                std::process::exit(LaneExit::Closed.status());
            }
        };
        if let Err(error) = std::thread::Builder::new()
            .name("pp-lane-hang-up".into())
            .spawn(watch)
        {
            pp_runtime::debug!(%error, "no watch of the lane's client");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// Longest a lane worker's write may make no progress (a client that stops reading).
const LANE_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
