//! The protocol's ends of the process's standard streams.

#[cfg(unix)]
use std::fs::File;
use std::io;

/// Takes standard input and output for the protocol. On Unix, file descriptor 1 then
/// points to standard error and 0 to `/dev/null`, so a job that prints or reads cannot
/// corrupt the protocol.
#[cfg(unix)]
pub(super) fn take() -> Result<(File, File), crate::protocol::pipe::WorkerError> {
    use std::os::fd::AsRawFd;
    let err = |source| crate::protocol::pipe::WorkerError::Io {
        during: "setting up the worker's pipes",
        source,
    };
    let null = File::open("/dev/null").map_err(err)?;
    let input = File::from(crate::kept_output::duplicate(0).map_err(err)?);
    let output = File::from(crate::kept_output::duplicate(1).map_err(err)?);
    // SAFETY: dup2 on descriptors this process owns.
    if unsafe { libc::dup2(2, 1) < 0 || libc::dup2(null.as_raw_fd(), 0) < 0 } {
        return Err(err(io::Error::last_os_error()));
    }
    Ok((input, output))
}

/// Elsewhere the protocol uses the standard streams as they are.
#[cfg(not(unix))]
pub(super) fn take() -> Result<(io::Stdin, io::Stdout), crate::protocol::pipe::WorkerError> {
    Ok((io::stdin(), io::stdout()))
}
