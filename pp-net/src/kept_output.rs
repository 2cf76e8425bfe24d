//! What a job printed, kept where the worker's parent (the node, or the program of an
//! isolated server) can still read it after the worker died: so that the last lines of a
//! job that aborted, segfaulted or was killed (the OOM killer, a signal) reach the user
//! before its `WorkerCrashed`, instead of dying with the worker's memory.
//!
//! The parent makes the two pipes that the worker points descriptors 1 and 2 at (see
//! `worker::capture`) and a save file for each, hands them to the worker (their numbers in
//! [`KEPT_OUTPUT_ENV`]) and keeps the pipes' read ends and the files. While the worker
//! lives the parent never reads them: the worker's reader thread drains the pipes into the
//! save files, under a header that names the running job, and reads a job's output back
//! from them when the job ends. After the worker died, the parent reads the files (if
//! their header names the job the worker was running) and then what is left in the pipes
//! (written by the job, not read by the worker yet), within the job's bound.
//!
//! On Linux the bytes move from a pipe to its file in one system call (`splice`), so each
//! byte is in the pipe or in the file whenever the worker dies: nothing is lost but what
//! the job's own buffers held (a `print!` with no newline yet). Elsewhere they are read
//! and then written, and what the reader held between the two when the worker died is lost.
//!
//! A save file: [`HEADER`] bytes (the job id, then the bytes of this stream dropped past
//! the bound: two `u64`, little-endian), then what the job wrote on the stream, up to the
//! file's end. A memory file on Linux, an unlinked temporary file elsewhere. The worker
//! runs the client's code, so the parent trusts none of it: lengths are clamped to the
//! bound, reads are bounded, and a truncated or garbled file gives less output, never an
//! error.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use crate::protocol::{JobOutput, OUTPUT_BOUND};
use crate::worker::KEPT_OUTPUT_ENV;

/// Bytes of a save file's header.
pub(crate) const HEADER: u64 = 16;

/// The header's job id while no job's output is in the file; also the job id of a lane
/// worker's output when its job is not known, which the client takes for the lane's job.
pub(crate) const NO_JOB: u64 = crate::protocol::LANE_JOB;

/// Most bytes read from one pipe after the worker died: more than a pipe holds, yet an
/// end while a program the job started keeps writing.
const DRAIN_MAX: usize = 1 << 20;

/// The descriptors a worker gets: standard output's pipe (read end, write end), standard
/// error's, standard output's save file, standard error's.
const CHILD_FDS: usize = 6;

/// The parent's ends: the pipes' read ends (non-blocking) and the save files, standard
/// output's first.
#[derive(Debug)]
pub(crate) struct KeptOutput {
    pipes: [File; 2],
    saved: [File; 2],
}

/// The descriptors the worker inherits; dropped by the parent once the worker started.
#[derive(Debug)]
pub(crate) struct ChildEnds {
    fds: [OwnedFd; CHILD_FDS],
}

impl ChildEnds {
    /// The value of [`KEPT_OUTPUT_ENV`] for the worker.
    pub(crate) fn env_value(&self) -> String {
        let numbers: Vec<String> = self
            .fds
            .iter()
            .map(|fd| fd.as_raw_fd().to_string())
            .collect();
        numbers.join(",")
    }

    /// Makes `command` start its process with these descriptors open and their numbers in
    /// [`KEPT_OUTPUT_ENV`]: they are close-on-exec here, so no other child gets them.
    pub(crate) fn hand_to(&self, command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        command.env(KEPT_OUTPUT_ENV, self.env_value());
        let fds: [RawFd; CHILD_FDS] = std::array::from_fn(|i| self.fds[i].as_raw_fd());
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: fcntl is one, and nothing allocates. The
        // descriptors are open: the caller keeps `self` until the spawn.
        unsafe {
            command.pre_exec(move || {
                for fd in fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

impl KeptOutput {
    /// New pipes and save files: the parent's ends, and the worker's.
    ///
    /// # Errors
    /// A pipe or a file could not be made; the worker then makes its own, and a crashed
    /// job's output is lost as before.
    pub(crate) fn create() -> io::Result<(KeptOutput, ChildEnds)> {
        let (stdout, stdout_write) = pipe()?;
        let (stderr, stderr_write) = pipe()?;
        let saved = [save_file()?, save_file()?];
        let child = ChildEnds {
            fds: [
                duplicate(stdout.as_raw_fd())?,
                stdout_write,
                duplicate(stderr.as_raw_fd())?,
                stderr_write,
                duplicate(saved[0].as_raw_fd())?,
                duplicate(saved[1].as_raw_fd())?,
            ],
        };
        let kept = KeptOutput {
            pipes: [stdout, stderr],
            saved,
        };
        Ok((kept, child))
    }

    /// After the worker died while running job `job_id` (`None`: a lane worker's job,
    /// whose id the parent does not know: the one the files name, else [`NO_JOB`]): what
    /// the job printed, within `bound` bytes (the rest counted as dropped); `None` if it
    /// printed nothing. The files count only if they name the job (the worker names it
    /// when the job first prints); what is left in the pipes is the job's.
    pub(crate) fn recover(&self, job_id: Option<u64>, bound: usize) -> Option<JobOutput> {
        let named = read_header(&self.saved[0]).map(|(id, _)| id);
        let running = job_id.or(named).unwrap_or(NO_JOB);
        let bound = bound.min(OUTPUT_BOUND);
        let mut output = JobOutput {
            job_id: running,
            ..JobOutput::default()
        };
        for (i, file) in self.saved.iter().enumerate() {
            let Some((id, dropped)) = read_header(file) else {
                continue;
            };
            if id != running || id == NO_JOB {
                continue;
            }
            let kept = output.stdout.len() + output.stderr.len();
            let room = bound.saturating_sub(kept) as u64;
            let len = file
                .metadata()
                .map_or(0, |m| m.len().saturating_sub(HEADER));
            let bytes = read_at(file, HEADER, len.min(room));
            output.dropped += dropped + (len - bytes.len() as u64);
            if i == 0 {
                output.stdout = bytes;
            } else {
                output.stderr = bytes;
            }
        }
        for (i, pipe) in self.pipes.iter().enumerate() {
            let mut chunk = [0u8; 16 << 10];
            let mut read = 0;
            while read < DRAIN_MAX {
                let n = match (&*pipe).read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                read += n;
                let kept = output.stdout.len() + output.stderr.len();
                let room = bound.saturating_sub(kept).min(n);
                let stream = if i == 0 {
                    &mut output.stdout
                } else {
                    &mut output.stderr
                };
                stream.extend_from_slice(&chunk[..room]);
                output.dropped += (n - room) as u64;
            }
        }
        (!output.is_empty()).then_some(output)
    }
}

/// The worker's ends, from [`KEPT_OUTPUT_ENV`].
#[derive(Debug)]
pub(crate) struct WorkerEnds {
    /// Standard output's pipe, then standard error's: read end (non-blocking), write end.
    pub(crate) pipes: [(File, OwnedFd); 2],
    /// Their save files.
    pub(crate) saved: [File; 2],
}

impl WorkerEnds {
    /// The ends the parent handed this worker, if it did (the variable is removed): each
    /// made close-on-exec again, so that programs the job starts get none of them.
    pub(crate) fn from_env() -> Option<WorkerEnds> {
        let value = std::env::var(KEPT_OUTPUT_ENV).ok()?;
        std::env::remove_var(KEPT_OUTPUT_ENV);
        let fds: Vec<RawFd> = value
            .split(',')
            .map(|n| n.trim().parse().ok().filter(|&fd: &RawFd| fd > 2))
            .collect::<Option<_>>()?;
        let fds: [RawFd; CHILD_FDS] = fds.try_into().ok()?;
        for fd in fds {
            // SAFETY: fcntl on a descriptor number only sets its flags; one that is not
            // open gives -1 and none is used.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
                return None;
            }
        }
        // SAFETY: the descriptors are open (above) and the parent handed them to this
        // process alone; from here on each is owned by one value.
        let [a, b, c, d, e, f] = fds.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        Some(WorkerEnds {
            pipes: [(File::from(a), b), (File::from(c), d)],
            saved: [File::from(e), File::from(f)],
        })
    }

    /// New pipes and save files of the worker's own, for a parent that gave none: the
    /// output is caught the same way, and lost with the worker.
    ///
    /// # Errors
    /// A pipe or a file could not be made.
    pub(crate) fn own() -> io::Result<WorkerEnds> {
        Ok(WorkerEnds {
            pipes: [pipe()?, pipe()?],
            saved: [save_file()?, save_file()?],
        })
    }
}

/// Writes a save file's header: the job whose output follows, and the bytes it dropped.
pub(crate) fn write_header(file: &File, job_id: u64, dropped: u64) -> io::Result<()> {
    let mut head = [0u8; HEADER as usize];
    head[..8].copy_from_slice(&job_id.to_le_bytes());
    head[8..].copy_from_slice(&dropped.to_le_bytes());
    file.write_all_at(&head, 0)
}

/// A save file's header: its job and the bytes dropped; `None` if it cannot be read.
fn read_header(file: &File) -> Option<(u64, u64)> {
    let mut head = [0u8; HEADER as usize];
    file.read_exact_at(&mut head, 0).ok()?;
    let field = |i: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&head[i * 8..i * 8 + 8]);
        u64::from_le_bytes(bytes)
    };
    Some((field(0), field(1)))
}

/// Up to `len` bytes of `file` at `offset`: fewer if the file is shorter.
pub(crate) fn read_at(file: &File, offset: u64, len: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(OUTPUT_BOUND)];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    bytes.truncate(filled);
    bytes
}

/// Moves up to `len` bytes from the non-blocking `pipe` to `file` at `offset`; returns
/// how many (0: every write end closed). On Linux in one system call, so that no byte is
/// ever only in this process's memory (unless the system refuses `splice`: then as
/// elsewhere); elsewhere read into `chunk` (at least `len` bytes) and written.
///
/// # Errors
/// `WouldBlock` when the pipe is empty; others when it or the file is broken.
pub(crate) fn move_bytes(
    pipe: &File,
    file: &File,
    offset: u64,
    len: usize,
    chunk: &mut [u8],
) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        /// Set once `splice` failed for another reason than an empty pipe.
        static NO_SPLICE: AtomicBool = AtomicBool::new(false);
        if !NO_SPLICE.load(Ordering::Relaxed) {
            let mut at = libc::loff_t::try_from(offset).map_err(io::Error::other)?;
            // SAFETY: splice between two descriptors this process owns; `at` is valid for
            // the call. The pipe's own offset must be null.
            let n = unsafe {
                libc::splice(
                    pipe.as_raw_fd(),
                    std::ptr::null_mut(),
                    file.as_raw_fd(),
                    &mut at,
                    len,
                    libc::SPLICE_F_NONBLOCK,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let error = io::Error::last_os_error();
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                return Err(error);
            }
            // Not allowed here (a filter, an old kernel): read and write, as elsewhere.
            NO_SPLICE.store(true, Ordering::Relaxed);
        }
    }
    let len = len.min(chunk.len());
    let n = (&*pipe).read(&mut chunk[..len])?;
    file.write_all_at(&chunk[..n], offset)?;
    Ok(n)
}

/// A close-on-exec duplicate of `fd`, numbered 3 or above (never a standard stream's).
pub(crate) fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on a descriptor this process owns; the new one is owned by the result.
    unsafe {
        let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(copy))
    }
}

/// A pipe: its read end (non-blocking) and its write end, both close-on-exec.
fn pipe() -> io::Result<(File, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe returned two new descriptors, each owned from here on by one value.
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on descriptors owned above.
    let ok = unsafe {
        let flags = libc::fcntl(read.as_raw_fd(), libc::F_GETFL);
        flags >= 0
            && libc::fcntl(read.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
            && libc::fcntl(read.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) == 0
            && libc::fcntl(write.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    Ok((read, write))
}

/// A new save file, its header naming no job: a memory file on Linux, an unlinked
/// temporary file elsewhere, that only this process (and whom it hands it to) can reach.
/// Close-on-exec.
fn save_file() -> io::Result<File> {
    let file = new_private_file()?;
    write_header(&file, NO_JOB, 0)?;
    Ok(file)
}

fn new_private_file() -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: memfd_create takes a NUL-terminated name and flags; the descriptor it
        // returns is checked, then owned by one `File`.
        unsafe {
            let fd = libc::memfd_create(c"pp-job-output".as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(File::from_raw_fd(fd))
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut attempt = 0u32;
        loop {
            let path = std::env::temp_dir().join(format!(
                "pp-job-output-{}-{}-{attempt}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            ));
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path);
            match opened {
                Ok(file) => {
                    let _ = std::fs::remove_file(&path);
                    return Ok(file);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The worker's ends as `from_env` would make them.
    fn worker_ends(ends: ChildEnds) -> WorkerEnds {
        let [a, b, c, d, e, f] = ends.fds;
        WorkerEnds {
            pipes: [(File::from(a), b), (File::from(c), d)],
            saved: [File::from(e), File::from(f)],
        }
    }

    /// Saves `bytes` of job `job_id` in the worker's file `i` as the capture does.
    fn save(worker: &WorkerEnds, i: usize, job_id: u64, bytes: &[u8]) {
        write_header(&worker.saved[i], job_id, 0).unwrap();
        worker.saved[i].write_all_at(bytes, HEADER).unwrap();
    }

    #[test]
    fn a_dead_workers_job_output_is_the_saved_bytes_then_what_the_pipes_hold() {
        let (kept, ends) = KeptOutput::create().unwrap();
        let worker = worker_ends(ends);
        save(&worker, 0, 7, b"one\n");
        save(&worker, 1, 7, b"oops\n");
        let [(_, out), (_, err)] = worker.pipes;
        File::from(out).write_all(b"two\n").unwrap();
        File::from(err).write_all(b"last words\n").unwrap();
        let output = kept.recover(Some(7), OUTPUT_BOUND).unwrap();
        assert_eq!(output.stdout, b"one\ntwo\n");
        assert_eq!(output.stderr, b"oops\nlast words\n");
        assert_eq!(output.dropped, 0);
    }

    #[test]
    fn another_jobs_files_are_left_out_but_the_pipes_are_the_jobs() {
        let (kept, ends) = KeptOutput::create().unwrap();
        let worker = worker_ends(ends);
        save(&worker, 0, 3, b"old\n");
        let [(_, out), _] = worker.pipes;
        File::from(out).write_all(b"new\n").unwrap();
        assert_eq!(
            kept.recover(Some(4), OUTPUT_BOUND).unwrap().stdout,
            b"new\n"
        );
        // A lane's: the job the files name, and the pipes are empty by now.
        let output = kept.recover(None, OUTPUT_BOUND).unwrap();
        assert_eq!((output.job_id, &output.stdout[..]), (3, &b"old\n"[..]));
    }

    #[test]
    fn a_lane_jobs_output_with_no_job_named_is_the_pipes_for_no_known_job() {
        let (kept, ends) = KeptOutput::create().unwrap();
        let worker = worker_ends(ends);
        let [(_, out), _] = worker.pipes;
        File::from(out).write_all(b"last\n").unwrap();
        let output = kept.recover(None, OUTPUT_BOUND).unwrap();
        assert_eq!(
            (output.job_id, &output.stdout[..]),
            (NO_JOB, &b"last\n"[..])
        );
        assert_eq!(kept.recover(None, OUTPUT_BOUND), None);
    }

    #[test]
    fn the_bound_holds() {
        let (kept, ends) = KeptOutput::create().unwrap();
        let worker = worker_ends(ends);
        save(&worker, 0, 1, &[b'x'; 100]);
        let [(_, out), _] = worker.pipes;
        File::from(out).write_all(&[b'y'; 30]).unwrap();
        let output = kept.recover(Some(1), 64).unwrap();
        assert_eq!(output.stdout, vec![b'x'; 64]);
        assert!(output.stderr.is_empty());
        assert_eq!(output.dropped, 36 + 30);
    }

    #[test]
    fn moved_bytes_land_in_the_file_at_the_offset() {
        let (read, write) = pipe().unwrap();
        let file = save_file().unwrap();
        File::from(write).write_all(b"hello").unwrap();
        let mut chunk = [0u8; 64];
        assert_eq!(move_bytes(&read, &file, HEADER, 64, &mut chunk).unwrap(), 5);
        assert_eq!(read_at(&file, HEADER, 5), b"hello");
        // Every write end closed, the pipe empty: its end.
        assert_eq!(
            move_bytes(&read, &file, HEADER + 5, 64, &mut chunk).unwrap(),
            0
        );
    }
}
