//! What a job printed, kept where the worker's parent (the node, or the program of an
//! isolated server) can still read it after the worker died: so that the last lines of a
//! job that aborted, segfaulted or was killed (the OOM killer, a signal) reach the user
//! before its `WorkerCrashed`, instead of dying with the worker's memory.
//!
//! The parent makes the two pipes that the worker points descriptors 1 and 2 at (see
//! `worker::capture`) and a save file, hands them to the worker (their numbers in
//! [`KEPT_OUTPUT_ENV`]) and keeps the pipes' read ends and the file. While the worker
//! lives the parent never reads them: the worker's reader thread drains the pipes as
//! before, and writes each byte it keeps for the running job into the save file too,
//! under a header that names the job. After the worker died, the parent reads the file
//! (if its header names the job the worker was running) and then what is left in the
//! pipes (written by the job, not read by the worker yet), within the job's bound.
//!
//! Exact but for two things: bytes the worker's reader had taken from a pipe and not
//! written to the file yet when the process died (a window of a system call), and what the
//! job's own buffers held (a `print!` with no newline yet).
//!
//! The save file: [`HEADER`] bytes (job id, bytes of standard output, bytes of standard
//! error, bytes dropped: four `u64`, little-endian), standard output from [`HEADER`],
//! standard error from [`HEADER`] + [`OUTPUT_BOUND`]. A memory file on Linux, an unlinked
//! temporary file elsewhere. The worker runs the client's code, so the parent trusts none
//! of it: lengths are clamped to the bound, reads are bounded, and a file that was
//! truncated or garbled gives less output, never an error.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use crate::protocol::{JobOutput, OUTPUT_BOUND};
use crate::worker::KEPT_OUTPUT_ENV;

/// Bytes of the save file's header.
const HEADER: u64 = 32;

/// The header's job id while no job has started.
const NO_JOB: u64 = u64::MAX;

/// Most bytes read from one pipe after the worker died: more than a pipe holds, yet an
/// end while a program the job started keeps writing.
const DRAIN_MAX: usize = 1 << 20;

/// The parent's ends: the pipes' read ends (non-blocking) and the save file.
#[derive(Debug)]
pub(crate) struct KeptOutput {
    stdout: File,
    stderr: File,
    saved: File,
}

/// The descriptors the worker inherits; dropped by the parent once the worker started.
#[derive(Debug)]
pub(crate) struct ChildEnds {
    fds: [OwnedFd; 5],
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
        let fds: [RawFd; 5] = std::array::from_fn(|i| self.fds[i].as_raw_fd());
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
    /// New pipes and save file: the parent's ends, and the worker's.
    ///
    /// # Errors
    /// A pipe or the file could not be made; the worker then makes its own pipes, and a
    /// crashed job's output is lost as before.
    pub(crate) fn create() -> io::Result<(KeptOutput, ChildEnds)> {
        let (stdout, stdout_write) = pipe()?;
        let (stderr, stderr_write) = pipe()?;
        let saved = save_file()?;
        saved.write_all_at(&header(NO_JOB, 0, 0, 0), 0)?;
        let child = ChildEnds {
            fds: [
                duplicate(stdout.as_raw_fd())?,
                stdout_write,
                duplicate(stderr.as_raw_fd())?,
                stderr_write,
                duplicate(saved.as_raw_fd())?,
            ],
        };
        Ok((
            KeptOutput {
                stdout,
                stderr,
                saved,
            },
            child,
        ))
    }

    /// After the worker died while running job `job_id` (`None`: the job its header
    /// names, if any): what the job printed, within `bound` bytes (the rest counted as
    /// dropped); `None` if it printed nothing or the worker was not running it. Reads what
    /// is left in the pipes either way, so that it is not taken for the next job's.
    pub(crate) fn recover(&self, job_id: Option<u64>, bound: usize) -> Option<JobOutput> {
        let mut head = [0u8; HEADER as usize];
        let read = self.saved.read_exact_at(&mut head, 0).is_ok();
        let running = field(&head, 0);
        let started = read && running != NO_JOB && job_id.is_none_or(|id| id == running);
        let mut output = JobOutput {
            job_id: running,
            ..JobOutput::default()
        };
        if started {
            let bound = bound.min(OUTPUT_BOUND) as u64;
            let stdout_len = field(&head, 1).min(bound);
            let stderr_len = field(&head, 2).min(bound - stdout_len);
            output.stdout = read_at(&self.saved, HEADER, stdout_len);
            output.stderr = read_at(&self.saved, HEADER + OUTPUT_BOUND as u64, stderr_len);
            output.dropped = field(&head, 3);
        }
        let bound = bound.min(OUTPUT_BOUND);
        for (pipe, is_stdout) in [(&self.stdout, true), (&self.stderr, false)] {
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
                if !started {
                    continue;
                }
                let kept = output.stdout.len() + output.stderr.len();
                let room = bound.saturating_sub(kept).min(n);
                let stream = if is_stdout {
                    &mut output.stdout
                } else {
                    &mut output.stderr
                };
                stream.extend_from_slice(&chunk[..room]);
                output.dropped += (n - room) as u64;
            }
        }
        (started && !output.is_empty()).then_some(output)
    }
}

/// The worker's ends, from [`KEPT_OUTPUT_ENV`].
#[derive(Debug)]
pub(crate) struct WorkerEnds {
    /// Standard output's pipe: read end (non-blocking), write end.
    pub(crate) stdout: (File, OwnedFd),
    /// Standard error's pipe.
    pub(crate) stderr: (File, OwnedFd),
    /// Where the running job's output is saved for the parent.
    pub(crate) saved: SaveFile,
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
        let [a, b, c, d, e] = fds[..] else {
            return None;
        };
        for fd in [a, b, c, d, e] {
            // SAFETY: fcntl on a descriptor number only sets its flags; one that is not
            // open gives -1 and none is used.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
                return None;
            }
        }
        // SAFETY: the descriptors are open (above) and the parent handed them to this
        // process alone; from here on each is owned by one value.
        let [a, b, c, d, e] = [a, b, c, d, e].map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        Some(WorkerEnds {
            stdout: (File::from(a), b),
            stderr: (File::from(c), d),
            saved: SaveFile(File::from(e)),
        })
    }
}

/// The worker's end of the save file.
#[derive(Debug)]
pub(crate) struct SaveFile(File);

impl SaveFile {
    /// Job `job_id` starts: nothing saved for it yet.
    pub(crate) fn begin(&self, job_id: u64) {
        let _ = self.0.write_all_at(&header(job_id, 0, 0, 0), 0);
    }

    /// The running job ended: its output goes with its reply, not from here.
    pub(crate) fn end(&self) {
        self.begin(NO_JOB);
    }

    /// Saves `bytes`, which the running job wrote on standard output (`is_stdout`) or
    /// error, at `offset` of that stream's bytes kept so far.
    pub(crate) fn save(&self, is_stdout: bool, offset: usize, bytes: &[u8]) {
        let base = if is_stdout { 0 } else { OUTPUT_BOUND as u64 };
        // A failed write loses this part of the output if the worker dies, nothing more.
        let _ = self.0.write_all_at(bytes, HEADER + base + offset as u64);
    }

    /// Updates the header: the running job `job_id` has kept these bytes so far.
    pub(crate) fn mark(&self, job_id: u64, stdout: usize, stderr: usize, dropped: u64) {
        let head = header(job_id, stdout as u64, stderr as u64, dropped);
        let _ = self.0.write_all_at(&head, 0);
    }
}

fn header(job_id: u64, stdout: u64, stderr: u64, dropped: u64) -> [u8; HEADER as usize] {
    let mut head = [0u8; HEADER as usize];
    for (i, value) in [job_id, stdout, stderr, dropped].into_iter().enumerate() {
        head[i * 8..i * 8 + 8].copy_from_slice(&value.to_le_bytes());
    }
    head
}

/// Field `i` of a header.
fn field(head: &[u8; HEADER as usize], i: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&head[i * 8..i * 8 + 8]);
    u64::from_le_bytes(bytes)
}

/// Up to `len` bytes of `file` at `offset`: fewer if the file is shorter.
fn read_at(file: &File, offset: u64, len: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len as usize];
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

/// A close-on-exec duplicate of `fd`.
fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
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
pub(crate) fn pipe() -> io::Result<(File, OwnedFd)> {
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

/// A new, empty file only this process (and whom it hands it to) can reach: a memory file
/// on Linux, an unlinked temporary file elsewhere. Close-on-exec.
fn save_file() -> io::Result<File> {
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

    #[test]
    fn a_dead_workers_job_output_is_the_saved_bytes_then_what_the_pipes_hold() {
        let (kept, ends) = KeptOutput::create().unwrap();
        let [out_read, out_write, _, err_write, saved] = ends.fds;
        drop(out_read);
        let saved = SaveFile(File::from(saved));
        saved.begin(7);
        saved.save(true, 0, b"one\n");
        saved.save(false, 0, b"oops\n");
        saved.mark(7, 4, 5, 0);
        File::from(out_write).write_all(b"two\n").unwrap();
        File::from(err_write).write_all(b"last words\n").unwrap();
        let output = kept.recover(Some(7), OUTPUT_BOUND).unwrap();
        assert_eq!(output.stdout, b"one\ntwo\n");
        assert_eq!(output.stderr, b"oops\nlast words\n");
        assert_eq!(output.dropped, 0);
    }

    #[test]
    fn another_jobs_header_gives_nothing_and_the_pipes_are_emptied() {
        let (kept, ends) = KeptOutput::create().unwrap();
        let [_, out_write, _, _, saved] = ends.fds;
        let saved = SaveFile(File::from(saved));
        saved.begin(3);
        saved.save(true, 0, b"old\n");
        saved.mark(3, 4, 0, 0);
        File::from(out_write).write_all(b"stray\n").unwrap();
        assert_eq!(kept.recover(Some(4), OUTPUT_BOUND), None);
        // Emptied: a later look finds nothing of it.
        assert_eq!(kept.recover(None, OUTPUT_BOUND).unwrap().stdout, b"old\n");
    }

    #[test]
    fn the_bound_holds_whatever_the_header_says() {
        let (kept, ends) = KeptOutput::create().unwrap();
        let [_, out_write, _, _, saved] = ends.fds;
        let saved = SaveFile(File::from(saved));
        saved.save(true, 0, &[b'x'; 100]);
        saved.mark(1, u64::MAX as usize, 50, 0);
        File::from(out_write).write_all(&[b'y'; 30]).unwrap();
        let output = kept.recover(Some(1), 64).unwrap();
        assert_eq!(output.stdout, vec![b'x'; 64]);
        assert!(output.stderr.is_empty());
        assert_eq!(output.dropped, 30);
    }
}
