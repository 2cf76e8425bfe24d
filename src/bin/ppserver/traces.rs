//! Keeping the node's secret inside the node: the variables that may carry it leave the
//! environment (and on Linux the bytes `/proc/PID/environ` shows are overwritten), the
//! stack it passed through is overwritten, and the process is made non-dumpable.
//!
//! Non-dumpable (Linux `PR_SET_DUMPABLE` 0) means no core file, and the node's
//! `/proc/PID/{environ,mem,...}` and `ptrace` closed to its own user (the user its workers,
//! and so its clients' code, run as); only root can still look inside. Workers get back
//! the default at `exec`, so their crashes still dump core.

use zeroize::Zeroize;

/// The variables that carry the secret or name its file.
const SECRET_VARIABLES: [&str; 2] = ["PP_SECRET", "PP_SECRET_FILE"];

/// Makes the process non-dumpable (Linux), or gives it no core file (other Unix).
///
/// # Errors
/// The system's refusal, which leaves the process as it was.
pub(crate) fn forbid_core_dumps() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_DUMPABLE takes integers and touches no memory of ours.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Removes `PP_SECRET` and `PP_SECRET_FILE` from the environment, so that nothing the node
/// starts inherits them, and on Linux overwrites them where the kernel keeps the
/// environment the process started with (what `/proc/PID/environ` shows).
///
/// Call it while the process has one thread: the environment is not safe to change while
/// another thread may read it.
///
/// # Errors
/// On Linux, when the initial environment cannot be found (`/proc` not mounted): the
/// variables are removed all the same, but `/proc/PID/environ` may still show them.
pub(crate) fn clear_environment() -> std::io::Result<()> {
    for name in SECRET_VARIABLES {
        std::env::remove_var(name);
    }
    #[cfg(target_os = "linux")]
    wipe_initial_environment()?;
    Ok(())
}

/// Zeroes the `NAME=value` strings of [`SECRET_VARIABLES`] in the block the kernel set up
/// at `exec`, whose bounds are fields 50 and 51 (`env_start`, `env_end`) of
/// `/proc/self/stat`.
#[cfg(target_os = "linux")]
fn wipe_initial_environment() -> std::io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command's name, field 2, may hold spaces: count from the `)` that ends it, after
    // which comes field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok());
    let (Some(start), Some(end)) = (field(50), field(51)) else {
        return Err(std::io::Error::other(
            "no environment bounds in /proc/self/stat",
        ));
    };
    if start == 0 || end <= start {
        return Err(std::io::Error::other(
            "empty environment bounds in /proc/self/stat",
        ));
    }
    // SAFETY: [start, end) is this process's initial environment, which the kernel placed
    // on the main thread's stack at exec: mapped, writable and never freed. No one else
    // touches it while this slice lives: the process has one thread (see the caller), and
    // the only pointers into the entries written here, `environ`'s, were removed with the
    // variables.
    let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    for entry in block.split_mut(|&byte| byte == 0) {
        let named =
            |name: &str| entry.starts_with(name.as_bytes()) && entry.get(name.len()) == Some(&b'=');
        if SECRET_VARIABLES.into_iter().any(named) {
            entry.zeroize();
        }
    }
    Ok(())
}

/// Overwrites 32 KiB of the stack below the caller, where the functions that read and
/// hashed the secret had their frames.
#[inline(never)]
pub(crate) fn scrub_stack() {
    let mut stack = [0u8; 32 << 10];
    stack.zeroize();
    std::hint::black_box(&stack);
}
