//! Catching what jobs print, so that the node can send it to the client (when the node
//! starts the worker with [`OUTPUT_ENV`](super::OUTPUT_ENV)).
//!
//! Descriptors 1 and 2 point at two pipes. A reader thread always drains them, so a job
//! never blocks on a write however much it prints: it keeps up to the job's bound and
//! counts the rest, which it reads and drops. Around each job the worker marks where the
//! job's output starts and ends: at the end Rust's buffered standard output (and C's) is
//! flushed and both pipes are drained until they are empty, under the lock the reader
//! drains under, so every byte the job wrote before it returned is the job's. What is
//! written between jobs (a thread a job left running, the worker's own messages) goes to
//! the node's log, where all of it went before.
//!
//! What a job writes is kept in a save file per stream, not in this process's memory: the
//! pipes and files are the parent's (`crate::kept_output`), which reads them if the worker
//! dies before it answers. A parent that gave none (an older node) gets the same catch on
//! pipes and files of the worker's own.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::kept_output::{self, move_bytes, WorkerEnds, HEADER, NO_JOB};
use crate::protocol::JobOutput;

/// The worker's catch of its jobs' output; dropping it points descriptors 1 and 2 back at
/// the node's log.
pub(crate) struct Capture {
    shared: Arc<Shared>,
}

/// What the worker's thread and the reader thread share.
struct Shared {
    state: Mutex<State>,
    /// The read ends of the pipes behind descriptors 1 and 2, non-blocking.
    pipes: [File; 2],
    /// Where each stream's bytes for the running job go.
    saved: [File; 2],
    /// The node's log: the standard error the worker was started with.
    node_log: File,
    /// An epoll set of both pipes (Linux), for the look at them as a job ends: half the
    /// cost of a `poll` of two descriptors (171 against 349 ns here), paid by every job.
    #[cfg(target_os = "linux")]
    epoll: Option<File>,
}

/// What has been read, and for whom.
struct State {
    /// Whether a job runs: what is read goes to it, else to the node's log.
    in_job: bool,
    /// The running job.
    job_id: u64,
    /// Whether each save file's header names the running job (written when the job first
    /// printed there, so that a job that prints nothing costs no system call).
    named: [bool; 2],
    /// Whether each save file holds bytes of an earlier job, to drop before the next.
    dirty: [bool; 2],
    /// Bytes of each stream in its save file for the running job.
    kept: [usize; 2],
    /// Bytes of each stream dropped past the bound.
    dropped: [u64; 2],
    /// Bytes of output one job may keep.
    bound: usize,
    /// Which pipes have ended (every write end closed): the reader stops polling them.
    ended: [bool; 2],
    /// Where reads land, allocated once.
    chunk: Vec<u8>,
}

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 << 10;

/// Most bytes read from one pipe per drain: more than a pipe holds (1 MiB at most for an
/// unprivileged process on Linux), so a drain empties what was written before it started,
/// yet ends even while something (a program a job left running) keeps writing.
const DRAIN_MAX: usize = 1 << 20;

impl Capture {
    /// Points descriptors 1 and 2 at pipes drained by a reader thread, keeping up to
    /// `bound` bytes per job: the pipes and save files of `ends` when the parent gave
    /// them, else new ones. Call before `main` (one thread), after the protocol has taken
    /// its own descriptors.
    ///
    /// # Errors
    /// A pipe, a file, a descriptor or the thread could not be made; nothing was changed
    /// then.
    pub(crate) fn start(bound: usize, ends: Option<WorkerEnds>) -> io::Result<Capture> {
        let node_log = File::from(kept_output::duplicate(2)?);
        let ends = match ends {
            Some(ends) => ends,
            None => WorkerEnds::own()?,
        };
        let [(stdout, stdout_write), (stderr, stderr_write)] = ends.pipes;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                in_job: false,
                job_id: NO_JOB,
                named: [false; 2],
                dirty: [false; 2],
                kept: [0; 2],
                dropped: [0; 2],
                bound,
                ended: [false; 2],
                chunk: vec![0; READ_CHUNK],
            }),
            #[cfg(target_os = "linux")]
            epoll: epoll_of(&[&stdout, &stderr]),
            pipes: [stdout, stderr],
            saved: ends.saved,
            node_log,
        });
        let reader = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("pp-output".into())
            .spawn(move || reader.read_forever())?;
        // From here on a job's writes land in the pipes. A failure leaves both pointing at
        // the node's log, as before.
        for (fd, write) in [(1, &stdout_write), (2, &stderr_write)] {
            // SAFETY: dup2 on descriptors this process owns; fd 1 and 2 stay open either way.
            if unsafe { libc::dup2(write.as_raw_fd(), fd) } < 0 {
                let error = io::Error::last_os_error();
                point_at(&shared.node_log);
                return Err(error);
            }
        }
        Ok(Capture { shared })
    }

    /// Job `job_id` starts: from here on what the pipes hold is its.
    ///
    /// Nothing is drained here: what the previous job wrote was drained when it ended, so
    /// what could be pending is only what something outside any job (a thread a job left
    /// running) wrote in between, at a moment of its own choosing; the reader thread sends
    /// it to the node's log if it wakes first, else it counts as this job's. Draining it
    /// here would cost every job two system calls (half a tiny job's rate on a node).
    pub(crate) fn start_job(&self, job_id: u64) {
        let mut state = self.shared.lock();
        state.in_job = true;
        state.job_id = job_id;
        state.named = [false; 2];
        state.kept = [0; 2];
        state.dropped = [0; 2];
    }

    /// The job `job_id` ended: what it wrote, or `None` when it wrote nothing.
    pub(crate) fn end_job(&self, job_id: u64) -> Option<JobOutput> {
        flush_buffers();
        let mut state = self.shared.lock();
        // The job has returned: nothing of it can die mid-way any more. One look at both
        // pipes first: a job that printed nothing costs that one system call.
        if self.shared.readable(&state) {
            self.shared.drain(&mut state, false);
        }
        state.in_job = false;
        if state.named == [false; 2] {
            return None;
        }
        let saved = &self.shared.saved;
        let read = |i: usize| kept_output::read_at(&saved[i], HEADER, state.kept[i] as u64);
        let output = JobOutput {
            job_id,
            stdout: read(0),
            stderr: read(1),
            dropped: state.dropped[0] + state.dropped[1],
        };
        // Its output goes with its reply from here: the parent must not take it again, and
        // the file gives its pages back.
        for (i, file) in saved.iter().enumerate() {
            if state.named[i] {
                let _ = kept_output::write_header(file, NO_JOB, 0);
                let _ = file.set_len(HEADER);
                state.dirty[i] = false;
            }
        }
        state.named = [false; 2];
        (!output.is_empty()).then_some(output)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        flush_buffers();
        point_at(&self.shared.node_log);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reader thread: waits for either pipe to be readable and drains both, until both
    /// have ended.
    fn read_forever(&self) {
        loop {
            let ended = self.lock().ended;
            if ended == [true, true] {
                return;
            }
            let (ready, fds) = self.poll(ended, -1);
            if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
            let mut state = self.lock();
            for (i, polled) in fds.iter().enumerate() {
                // An error on a pipe that reads nothing would wake poll forever.
                if polled.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                    self.ended(&mut state, i);
                }
            }
            self.drain(&mut state, true);
        }
    }

    /// `poll` on the pipes not `ended`, waiting at most `timeout` ms (-1: no limit): its
    /// return value and what it says of each pipe.
    fn poll(&self, ended: [bool; 2], timeout: libc::c_int) -> (libc::c_int, [libc::pollfd; 2]) {
        let fd = |i: usize| libc::pollfd {
            // A negative descriptor is skipped by poll.
            fd: if ended[i] {
                -1
            } else {
                self.pipes[i].as_raw_fd()
            },
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [fd(0), fd(1)];
        // SAFETY: `fds` is valid for its length during the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        (ready, fds)
    }

    /// Whether either pipe not ended yet has bytes to read, or cannot be looked into (one
    /// `poll` that does not wait). Called under the state's lock, so that the reader
    /// thread holds no bytes between a pipe and a file meanwhile.
    fn readable(&self, state: &State) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(epoll) = &self.epoll {
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
            // SAFETY: `events` is valid for its length during the call; no wait.
            let ready = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), 2, 0) };
            // An error, or any event: let the drain see.
            return ready != 0;
        }
        // An error, or any event (bytes, a closed or broken pipe): let the drain see.
        self.poll(state.ended, 0).0 != 0
    }

    /// Pipe `i` has ended (every write end closed) or broken: no one looks at it again.
    fn ended(&self, state: &mut State, i: usize) {
        state.ended[i] = true;
        #[cfg(target_os = "linux")]
        if let Some(epoll) = &self.epoll {
            // SAFETY: epoll_ctl on descriptors this process owns; no event is passed.
            unsafe {
                libc::epoll_ctl(
                    epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    self.pipes[i].as_raw_fd(),
                    std::ptr::null_mut(),
                );
            }
        }
    }

    /// Names the running job in save file `i`, emptied of the job before: from here on
    /// its bytes are the job's.
    fn name_job(&self, state: &mut State, i: usize) {
        if std::mem::replace(&mut state.dirty[i], true) {
            let _ = self.saved[i].set_len(HEADER);
        }
        let _ = kept_output::write_header(&self.saved[i], state.job_id, 0);
        state.named[i] = true;
    }

    /// Reads both pipes until they are empty (or [`DRAIN_MAX`] bytes each): into the job's
    /// save files while a job runs (up to the bound, the rest counted and dropped), else
    /// into the node's log. `careful`: the job may still be running (and die), so the
    /// bytes go from pipe to file in one step (see `kept_output::move_bytes`); a pipe is
    /// looked into first, so that a job that prints nothing costs no more than a read.
    fn drain(&self, state: &mut State, careful: bool) {
        for i in 0..2 {
            let pipe = &self.pipes[i];
            let mut read = 0;
            while read < DRAIN_MAX && !state.ended[i] {
                let room = state.bound.saturating_sub(state.kept[0] + state.kept[1]);
                let saving = state.in_job && room > 0;
                let moved = if saving && (state.named[i] || (careful && pending(pipe))) {
                    if !state.named[i] {
                        self.name_job(state, i);
                    }
                    let at = HEADER + state.kept[i] as u64;
                    let len = room.min(READ_CHUNK);
                    move_bytes(pipe, &self.saved[i], at, len, &mut state.chunk)
                } else {
                    (&*pipe).read(&mut state.chunk)
                };
                let n = match moved {
                    Ok(0) => {
                        self.ended(state, i);
                        break;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // Empty (`WouldBlock`), or broken: either way nothing more to read now.
                    Err(_) => break,
                };
                read += n;
                if !state.in_job {
                    // The node's log is where these bytes went before pp caught them; if it
                    // is gone they have nowhere else to go.
                    let _ = (&self.node_log).write_all(&state.chunk[..n]);
                    continue;
                }
                if !state.named[i] {
                    // Read, not moved: the job's first bytes here.
                    self.name_job(state, i);
                    let keep = n.min(room);
                    let at = HEADER + state.kept[i] as u64;
                    let _ = self.saved[i].write_all_at(&state.chunk[..keep], at);
                    state.kept[i] += keep;
                    state.dropped[i] += (n - keep) as u64;
                } else if saving {
                    state.kept[i] += n;
                } else {
                    state.dropped[i] += n as u64;
                }
                if !saving {
                    let dropped = state.dropped[i];
                    let _ = kept_output::write_header(&self.saved[i], state.job_id, dropped);
                }
            }
        }
    }
}

/// A close-on-exec epoll set watching `pipes` for bytes to read (level-triggered), or
/// `None` if one cannot be made (a `poll` then does its work).
#[cfg(target_os = "linux")]
fn epoll_of(pipes: &[&File]) -> Option<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: epoll_create1 has no preconditions; the descriptor is owned by the `File`.
    let epoll = unsafe {
        let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if fd < 0 {
            return None;
        }
        File::from_raw_fd(fd)
    };
    for pipe in pipes {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        // SAFETY: epoll_ctl on descriptors this process owns, with a valid event.
        let added = unsafe {
            libc::epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                pipe.as_raw_fd(),
                &mut event,
            )
        };
        if added < 0 {
            return None;
        }
    }
    Some(epoll)
}

/// Whether `pipe` has bytes to read (or cannot tell).
fn pending(pipe: &File) -> bool {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer given, valid for the call.
    let rc = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut bytes) };
    rc != 0 || bytes > 0
}

/// Writes out what Rust's standard output and C's streams hold back, so that it reaches
/// the pipes before they are drained.
fn flush_buffers() {
    let _ = io::stdout().flush();
    // SAFETY: fflush(NULL) flushes every C output stream; it has no preconditions.
    unsafe {
        libc::fflush(std::ptr::null_mut());
    }
}

/// Points descriptors 1 and 2 at `file`; errors leave them as they were.
fn point_at(file: &File) {
    for fd in [1, 2] {
        // SAFETY: dup2 on descriptors this process owns.
        unsafe {
            libc::dup2(file.as_raw_fd(), fd);
        }
    }
}
