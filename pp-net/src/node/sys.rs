//! The few operating-system calls the node needs beyond std and tokio.

/// The effective user id (0 where there is none).
pub(crate) fn user_id() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// This machine's host name, if the system gives one.
pub(crate) fn host_name() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname writes at most that.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).into_owned();
        (!name.is_empty()).then_some(name)
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").ok()
    }
}

/// Sends SIGKILL to the process group `pgid` (a worker and whatever it started).
/// Errors (the group is already gone) are ignored.
pub(crate) fn kill_group(pgid: u32) {
    #[cfg(unix)]
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 1 {
            // SAFETY: killpg has no memory preconditions; a stale group gives ESRCH.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = pgid;
}

/// Whether an I/O error is "text file busy" (exec of a file another process still has
/// open for writing), which is worth a retry.
pub(crate) fn is_text_busy(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(libc::ETXTBSY)
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

/// Asks for a pipe buffer of `bytes` on `fd` (Linux; elsewhere nothing happens). Large
/// arguments then cross to a worker in a few system calls instead of one per 64 KiB, each
/// of which would wake the worker. The kernel may give less (`/proc/sys/fs/pipe-max-size`
/// caps unprivileged users at 1 MiB by default); the pipe works either way, so a refusal
/// is only logged.
#[cfg(unix)]
pub(crate) fn grow_pipe(fd: i32, bytes: usize) {
    #[cfg(target_os = "linux")]
    if let Ok(size) = libc::c_int::try_from(bytes) {
        // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours; a descriptor
        // that is not a pipe gives EBADF or EINVAL.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size) };
        if rc < 0 {
            pp_runtime::debug!(
                fd,
                bytes,
                error = %std::io::Error::last_os_error(),
                "cannot grow a worker pipe"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (fd, bytes);
}

/// Makes `command` start its process with an address-space limit (`RLIMIT_AS`) of
/// `bytes`: allocations past it fail in that process alone. Not available (ignored) on
/// other platforms than Linux and the BSDs.
pub(crate) fn limit_address_space(command: &mut tokio::process::Command, bytes: u64) {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    {
        let limit = libc::rlimit {
            rlim_cur: bytes as libc::rlim_t,
            rlim_max: bytes as libc::rlim_t,
        };
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: setrlimit is one, and nothing allocates.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    )))]
    {
        let _ = (command, bytes);
        pp_runtime::warn!("worker memory limits are not supported on this platform");
    }
}

/// Makes `command` start its process with `fd` open (it is close-on-exec in the node, so
/// no other child gets it), and its number in the environment variable `var`.
pub(crate) fn inherit_fd(
    command: &mut tokio::process::Command,
    fd: &crate::area::OwnedFd,
    var: &str,
) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let fd = fd.as_raw_fd();
        command.env(var, fd.to_string());
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: fcntl is one, and nothing allocates. The
        // descriptor is open in the child: the caller keeps it open until the spawn.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (command, fd, var);
}
