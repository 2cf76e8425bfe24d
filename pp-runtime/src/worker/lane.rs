//! Lane mode: a worker that serves one client's direct connection (a "lane") instead of
//! the node's pipe.
//!
//! A node starts a lane worker with [`LANE_ENV`] naming the descriptor of a TCP connection
//! the client opened for lone jobs. The worker says hello on its output pipe as every
//! worker does, reads the lane's 32-byte key from its input pipe, and hands the connection
//! and the key to the network half of the program ([`ProgramHooks::serve_lane`]), which
//! authenticates the client with the key and runs the jobs that come on the connection.
//! It counts the jobs it answers in memory the node reads ([`LANE_COUNT_ENV`]), so that
//! the node counts them with no system call or wake-up per job, even when the worker dies. The process exits when the client closes the lane, or at once
//! when the node closes the worker's input.
//!
//! [`ProgramHooks::serve_lane`]: crate::remote::ProgramHooks::serve_lane

use std::fs::File;
use std::io::Read;
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{say_hello, WorkerError, LANE_COUNT_ENV, LANE_ENV, LANE_HANDSHAKE_ENV};
use crate::registry::registry;
use crate::remote::LaneStart;
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
    if too_short {
        return Err(WorkerError::Io {
            during: "mapping the lane's job count",
            source: std::io::Error::other("the count's memory file is shorter than 8 bytes"),
        });
    }
    let map = super::map_shared(&file, len, true).map_err(|source| WorkerError::Io {
        during: "mapping the lane's job count",
        source,
    })?;
    // SAFETY: the mapping is page-aligned, 8 bytes long, never unmapped (it lives as long
    // as the process, the file with it), and both processes change it only atomically.
    Ok(unsafe { AtomicU64::from_ptr(map.cast::<u64>()) })
}

/// Says hello on `output`, then serves `lane` with the key read from `input`, counting the
/// jobs it answers in the lane's shared count. `output` stays open (and silent) until the
/// process ends, so that the node sees the worker's end when it closes.
pub(super) fn serve(
    lane: Result<Lane, WorkerError>,
    mut input: File,
    output: File,
    limit: u32,
) -> Result<(), WorkerError> {
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
    let Some(hooks) = registry().hooks() else {
        return Err(WorkerError::Io {
            during: "starting the lane",
            source: std::io::Error::other(
                "the program registers no task, so it has no network half",
            ),
        });
    };
    let report = Box::new(move |answered: u64| {
        count.fetch_add(answered, Ordering::Release);
    });
    (hooks.serve_lane)(LaneStart {
        socket,
        key,
        limit,
        handshake_timeout,
        report,
    })
    .map_err(|why| WorkerError::Io {
        during: "serving the lane",
        source: std::io::Error::other(why),
    })
}
