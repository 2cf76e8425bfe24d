//! Shared mappings of memory files: the one place pp calls `mmap`, for the node's argument
//! areas and lane counts (in pp-net) and the workers' views of them.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Maps the first `len` bytes of `file` shared (what one process writes, the others see),
/// readable, and writable if `writable`. The kernel picks the address; the caller owns the
/// mapping and unmaps it with `libc::munmap(ptr, len)` when done.
///
/// # Errors
/// The system refuses the mapping (a file shorter than needed is not an error here: the
/// caller checks it, as touching bytes past the file's end faults).
pub fn map_shared(file: &File, len: usize, writable: bool) -> std::io::Result<*mut u8> {
    let protection = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: a fresh shared mapping of an open file; the kernel picks the address, and
    // the result is checked before use.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            protection,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(map.cast())
}
