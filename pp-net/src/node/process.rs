//! One worker process: the client's program started in worker mode, spoken to over pipes
//! with the protocol of `crate::worker`, with a shared argument area for large
//! arguments where the system has one (see the `area` module).

use crate::exit_status::describe;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use std::sync::Arc;

use crate::protocol::pipe::{
    self, ArgsArea, FromWorker, WorkerError, WorkerHello, FRAME_HEADER, WORKER_PROTOCOL,
};
use crate::worker::{
    KEPT_OUTPUT_ENV, LANE_COUNT_ENV, LANE_ENV, LANE_HANDSHAKE_ENV, MAX_FRAME_ENV, OUTPUT_ENV,
    SESSION_ARGS_ENV, SHARED_ARGS_ENV, WORKER_ENV,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::queued::QueuedJob;
use super::sys;
use crate::area::{OwnedFd, SharedArea, SHARED_ABOVE};
use crate::channel::SharedBytes;
#[cfg(unix)]
use crate::kept_output::KeptOutput;
use crate::protocol::JobOutput;

/// How long a worker that closed its pipe has to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Bodies up to this size are written in one piece with their header.
const SMALL_FRAME: usize = 64 << 10;

/// Pipe buffer asked for each direction of a worker's pipes: 1 MiB, the most an
/// unprivileged process gets by default on Linux.
#[cfg(unix)]
const PIPE_BUFFER: usize = 1 << 20;

/// How to start the workers of one session.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSpec {
    /// The cached program.
    pub(crate) program: PathBuf,
    /// Frame limit of the pipe protocol.
    pub(crate) limit: u32,
    /// Time allowed for the hello.
    pub(crate) start_timeout: Duration,
    /// Time a lane worker allows its client for the lane's handshake.
    pub(crate) handshake_timeout: Duration,
    /// The registry fingerprint the client announced.
    pub(crate) fingerprint: u64,
    /// Address-space limit of each worker, in bytes (`NodeConfig::worker_memory`).
    pub(crate) memory_limit: Option<u64>,
    /// The read-only descriptor of the session's shared argument area, which the
    /// session's reader decrypts large messages into, for every worker.
    pub(crate) session_area: Option<Arc<OwnedFd>>,
    /// Whether workers catch what jobs print and send it with their replies (the client's
    /// hello asked for it); else it goes to the node's log.
    pub(crate) forward_output: bool,
}

/// A running worker process.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    limit: u32,
    /// Where large arguments go instead of the pipe; `None` where the system has none.
    shared: Option<SharedArea>,
    /// Whether the worker maps the session's shared argument area.
    session_area: bool,
    /// Where the worker keeps its running job's output for a crash (see the
    /// `kept_output` module), when it catches output.
    #[cfg(unix)]
    kept: Option<KeptOutput>,
}

impl WorkerProcess {
    /// Starts a worker and waits for its hello. The error is a reason for the client.
    pub(crate) async fn start(spec: &WorkerSpec) -> Result<Self, String> {
        Self::start_with(spec, None).await
    }

    /// Starts a lane worker for the client's connection `lane` (see the `lane` module),
    /// and waits for its hello; it then waits for its key ([`Self::send_lane_key`]).
    /// `count` is the writable descriptor of its job count (see `SharedCounter`).
    pub(crate) async fn start_lane(
        spec: &WorkerSpec,
        lane: &OwnedFd,
        count: &OwnedFd,
    ) -> Result<Self, String> {
        Self::start_with(spec, Some((lane, count))).await
    }

    async fn start_with(
        spec: &WorkerSpec,
        lane: Option<(&OwnedFd, &OwnedFd)>,
    ) -> Result<Self, String> {
        let (mut child, shared, kept) = spawn(spec, lane).await.map_err(|e| {
            format!(
                "cannot run the program on this node: cannot start {}: {e}",
                spec.program.display()
            )
        })?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("cannot run the program on this node: no pipes to the worker".into());
        };
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            sys::grow_pipe(stdin.as_raw_fd(), PIPE_BUFFER);
            sys::grow_pipe(stdout.as_raw_fd(), PIPE_BUFFER);
        }
        let mut process = WorkerProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            pid,
            limit: spec.limit,
            shared,
            session_area: spec.session_area.is_some() && lane.is_none(),
            #[cfg(unix)]
            kept,
        };
        #[cfg(not(unix))]
        let _: Option<()> = kept;
        let hello = tokio::time::timeout(spec.start_timeout, process.read_hello()).await;
        let problem = match hello {
            Ok(Ok(hello)) if hello.registry_fingerprint != spec.fingerprint => format!(
                "the program's task registry differs between the client and this node \
                 (fingerprint {:016x} on the client, {:016x} in the worker with {} tasks): \
                 tasks are registered in an order-dependent way, or the upload is another build",
                spec.fingerprint, hello.registry_fingerprint, hello.tasks
            ),
            Ok(Ok(hello)) => {
                pp_runtime::debug!(pid, tasks = hello.tasks, "worker started");
                return Ok(process);
            }
            Ok(Err(error)) => {
                let status = process.exit_report().await;
                format!(
                    "cannot run the program on this node: the worker did not say hello \
                     ({error}); it {status} (does the program link pp, built for this \
                     system?)"
                )
            }
            Err(_) => format!(
                "cannot run the program on this node: the worker did not say hello within \
                 {:?} (does the program link pp's worker mode?)",
                spec.start_timeout
            ),
        };
        process.stop().await;
        Err(problem)
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Once the worker died (or was killed) while running job `job_id` (`None`: whichever
    /// it ran, for a lane worker): what the job printed, which the worker could not send
    /// (see the `kept_output` module); `None` when it printed nothing, was not running
    /// that job, or the worker does not catch output.
    pub(crate) fn recover_output(&self, job_id: Option<u64>) -> Option<JobOutput> {
        #[cfg(unix)]
        {
            let bound = crate::protocol::output_bound(self.limit);
            self.kept.as_ref()?.recover(job_id, bound)
        }
        #[cfg(not(unix))]
        {
            let _ = job_id;
            None
        }
    }

    async fn read_hello(&mut self) -> Result<WorkerHello, WorkerError> {
        let body = read_frame(&mut self.stdout, "worker hello", self.limit).await?;
        // The protocol is the first field in every version: check it before the rest.
        if let Some(version) = body.first_chunk::<2>().map(|b| u16::from_le_bytes(*b)) {
            if version != WORKER_PROTOCOL {
                return Err(WorkerError::Io {
                    during: "checking the worker's protocol",
                    source: std::io::Error::other(format!(
                        "the program speaks worker protocol {version}, this node {WORKER_PROTOCOL}"
                    )),
                });
            }
        }
        pipe::decode_body(&body, "worker hello", self.limit)
    }

    /// What encodes jobs for this worker's pipe.
    pub(crate) fn encoder(&self) -> JobEncoder {
        JobEncoder { limit: self.limit }
    }

    /// The two ends of the worker's pipes, to write jobs and read replies at the same time
    /// (see [`JobWriter`] and [`ReplyReader`]).
    pub(crate) fn pipes(&mut self) -> (JobWriter<'_>, ReplyReader<'_>) {
        (
            JobWriter {
                stdin: &mut self.stdin,
                gathered: Vec::new(),
                shared: self.shared.as_mut(),
                session_area: self.session_area,
                limit: self.limit,
            },
            ReplyReader {
                stdout: &mut self.stdout,
                limit: self.limit,
            },
        )
    }

    /// After a failed exchange: how the process ended ("exited with signal 6 (SIGABRT)"),
    /// killing it first if it is still running.
    pub(crate) async fn exit_report(&mut self) -> String {
        self.ended().await.1
    }

    /// As [`Self::exit_report`], with the status the process exited with: `None` when it
    /// was killed by a signal, could not be waited for, or was killed for not exiting.
    pub(crate) async fn ended(&mut self) -> (Option<i32>, String) {
        match tokio::time::timeout(EXIT_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => (status.code(), describe(status)),
            Ok(Err(error)) => (None, format!("could not be waited for ({error})")),
            Err(_) => {
                self.stop().await;
                (None, "stopped answering and was killed".to_owned())
            }
        }
    }

    /// Gives a lane worker its key (its first input).
    pub(crate) async fn send_lane_key(&mut self, key: &[u8; 32]) -> std::io::Result<()> {
        self.stdin.write_all(key).await?;
        self.stdin.flush().await
    }

    /// Kills the worker (and its process group) and reaps it.
    pub(crate) async fn stop(&mut self) {
        // Only while the worker runs: once it is reaped its pid (the group's id) may be
        // reused by an unrelated process.
        if matches!(self.child.try_wait(), Ok(None)) {
            sys::kill_group(self.pid);
        }
        if let Err(error) = self.child.kill().await {
            pp_runtime::debug!(pid = self.pid, %error, "killing a worker");
        }
    }
}

/// Encodes jobs for a worker's pipe, within its frame limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobEncoder {
    limit: u32,
}

impl JobEncoder {
    /// Encodes a job for the pipe, up to its arguments (see
    /// [`pipe::encode_job_head`]): the frame's body is this head, then the arguments.
    ///
    /// # Errors
    /// [`WorkerError::TooLarge`] when the job exceeds the frame limit: it cannot be sent,
    /// and the worker is still fine.
    pub(crate) fn encode_head(&self, job: &QueuedJob) -> Result<Vec<u8>, WorkerError> {
        pipe::encode_job_head(
            job.job_id,
            &job.task,
            job.fingerprint,
            job.timeout,
            &job.args,
            self.limit,
        )
    }
}

/// The job-writing end of a worker's pipes, with its shared argument area.
pub(crate) struct JobWriter<'a> {
    stdin: &'a mut ChildStdin,
    gathered: Vec<u8>,
    shared: Option<&'a mut SharedArea>,
    session_area: bool,
    limit: u32,
}

/// A job whose arguments wait in a shared argument area: its head for the pipe, and which
/// area.
pub(crate) struct Shared {
    /// The whole frame body for the pipe: a `WorkerInput::Shared`.
    pub(crate) head: Vec<u8>,
    /// The area that holds the arguments.
    pub(crate) area: ArgsArea,
}

impl JobWriter<'_> {
    /// Where the worker can find `job`'s arguments without the pipe: in the session's
    /// shared argument area if they were decrypted there (and the worker maps it), else,
    /// when they are large, `worker_area_free` and the worker has an area of its own,
    /// copied into that one. Returns the job's head for the pipe (see
    /// [`pipe::encode_shared_job`]); `None` when the job goes through the pipe. After a
    /// job put in the worker's own area, the caller must not offer it another before the
    /// worker has answered that job (the area holds one job's arguments).
    pub(crate) fn share(&mut self, job: &QueuedJob, worker_area_free: bool) -> Option<Shared> {
        let len = job.args.len();
        let (area, offset) = match job.args.area_range() {
            Some(range) if self.session_area => (ArgsArea::Session, range.start as u64),
            _ => {
                let shared = self.shared.as_deref_mut().filter(|_| worker_area_free)?;
                if len <= SHARED_ABOVE {
                    return None;
                }
                if let Err(error) = shared.write(&job.args) {
                    pp_runtime::debug!(%error, len, "large arguments go through the pipe");
                    return None;
                }
                // One job at a time: its arguments start the area.
                (ArgsArea::Worker, 0)
            }
        };
        let head = pipe::encode_shared_job(
            job.job_id,
            &job.task,
            job.fingerprint,
            area,
            offset,
            len as u64,
            self.limit,
        )
        .ok()?;
        Some(Shared { head, area })
    }

    /// Gives the shared argument area's pages back if it has not been used for a while;
    /// only while the worker holds no job from it.
    pub(crate) fn release_shared_if_unused(&mut self) {
        if let Some(shared) = self.shared.as_deref_mut() {
            shared.release_if_unused();
        }
    }

    /// Writes jobs, each as its head (from [`JobEncoder::encode_head`]) and its
    /// arguments. Small jobs are gathered into one write, so that a batch of tiny jobs
    /// costs the worker one wake-up; large arguments go to the pipe from where they are.
    ///
    /// # Errors
    /// The pipe is closed or broken: the worker died.
    pub(crate) async fn write(
        &mut self,
        jobs: &[(Vec<u8>, SharedBytes)],
    ) -> Result<(), WorkerError> {
        let io = |source| WorkerError::Io {
            during: "writing to the worker",
            source,
        };
        let gathered = &mut self.gathered;
        gathered.clear();
        for (head, args) in jobs {
            let args: &[u8] = args;
            let header = pipe::frame_header(head.len() + args.len());
            gathered.extend_from_slice(&header);
            gathered.extend_from_slice(head);
            if args.len() <= SMALL_FRAME {
                gathered.extend_from_slice(args);
                if gathered.len() < SMALL_FRAME {
                    continue;
                }
                self.stdin.write_all(gathered).await.map_err(io)?;
            } else {
                self.stdin.write_all(gathered).await.map_err(io)?;
                self.stdin.write_all(args).await.map_err(io)?;
            }
            gathered.clear();
        }
        if !gathered.is_empty() {
            self.stdin.write_all(gathered).await.map_err(io)?;
        }
        if gathered.capacity() > 4 * SMALL_FRAME {
            *gathered = Vec::new();
        }
        Ok(())
    }
}

/// The reply-reading end of a worker's pipes.
pub(crate) struct ReplyReader<'a> {
    stdout: &'a mut BufReader<ChildStdout>,
    limit: u32,
}

impl ReplyReader<'_> {
    /// Reads the worker's next frame: a reply, or the output of the job it answers next.
    ///
    /// # Errors
    /// [`WorkerError::Truncated`] when the pipe closed (the worker died); other errors
    /// when it broke the protocol.
    pub(crate) async fn read(&mut self) -> Result<FromWorker, WorkerError> {
        let body = read_frame(self.stdout, "reply", self.limit).await?;
        pipe::decode_body(&body, "reply", self.limit)
    }
}

/// What keeps a crashed worker's job output on this platform.
#[cfg(unix)]
type Kept = KeptOutput;
#[cfg(not(unix))]
type Kept = ();

/// Starts the program, with a shared argument area where the system has one (and the
/// ends that keep its jobs' output when it catches it), retrying a few times while the
/// just-written file is "busy".
async fn spawn(
    spec: &WorkerSpec,
    lane: Option<(&OwnedFd, &OwnedFd)>,
) -> std::io::Result<(Child, Option<SharedArea>, Option<Kept>)> {
    let mut attempt = 0;
    loop {
        // A lane worker takes small jobs on its connection only: no area.
        let shared = match lane {
            Some(_) => None,
            None => SharedArea::create(spec.limit as usize)
                .inspect_err(|error| {
                    pp_runtime::debug!(%error, "no shared argument area: all arguments go through the pipe");
                })
                .ok(),
        };
        let mut command = Command::new(&spec.program);
        command
            .env(WORKER_ENV, "1")
            .env(MAX_FRAME_ENV, spec.limit.to_string())
            .env_remove("PP_SECRET")
            .env_remove("PP_SECRET_FILE")
            .env_remove(OUTPUT_ENV)
            .env_remove(KEPT_OUTPUT_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // Own process group: a Ctrl-C meant for the node does not hit the workers first,
        // and the node can kill a worker together with what it started.
        #[cfg(unix)]
        let mut kept = None;
        #[cfg(not(unix))]
        let kept: Option<Kept> = None;
        #[cfg(unix)]
        let mut child_ends = None;
        if spec.forward_output {
            command.env(OUTPUT_ENV, "1");
            #[cfg(unix)]
            match KeptOutput::create() {
                Ok((parent, ends)) => {
                    ends.hand_to(command.as_std_mut());
                    kept = Some(parent);
                    child_ends = Some(ends);
                }
                Err(error) => pp_runtime::debug!(
                    %error,
                    "a crashed worker's job output cannot be kept: it goes to the log"
                ),
            }
        }
        #[cfg(unix)]
        command.process_group(0);
        if let Some(bytes) = spec.memory_limit {
            sys::limit_address_space(&mut command, bytes);
        }
        let (shared, worker_fd) = shared.unzip();
        if let Some(worker_fd) = &worker_fd {
            sys::inherit_fd(&mut command, worker_fd, SHARED_ARGS_ENV);
        }
        match (lane, &spec.session_area) {
            (Some((lane, count)), _) => {
                sys::inherit_fd(&mut command, lane, LANE_ENV);
                sys::inherit_fd(&mut command, count, LANE_COUNT_ENV);
                let millis = spec.handshake_timeout.as_millis().max(1);
                command.env(LANE_HANDSHAKE_ENV, millis.to_string());
            }
            (None, Some(session_fd)) => sys::inherit_fd(&mut command, session_fd, SESSION_ARGS_ENV),
            (None, None) => {}
        }
        let spawned = command.spawn();
        // The child has its own copy of the worker's descriptor by now, and of the write
        // ends of its output pipes (which must close with the worker).
        drop(worker_fd);
        #[cfg(unix)]
        drop(child_ends);
        match spawned {
            Err(error) if sys::is_text_busy(&error) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
            other => return other.map(|child| (child, shared, kept)),
        }
    }
}

/// Reads one frame body, bounded by `limit`.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    what: &'static str,
    limit: u32,
) -> Result<Vec<u8>, WorkerError> {
    let mut header = [0u8; FRAME_HEADER];
    reader
        .read_exact(&mut header)
        .await
        .map_err(|e| reading(e, "a frame header"))?;
    let len = pipe::body_len(header, what, limit)?;
    let mut body = vec![0u8; len];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|e| reading(e, "a frame"))?;
    Ok(body)
}

fn reading(source: std::io::Error, during: &'static str) -> WorkerError {
    if source.kind() == std::io::ErrorKind::UnexpectedEof {
        WorkerError::Truncated { during }
    } else {
        WorkerError::Io {
            during: "reading from the worker",
            source,
        }
    }
}
