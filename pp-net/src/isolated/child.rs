//! One isolated worker process: this very executable started in pp's worker mode (as a node
//! starts its workers), spoken to over its pipes with the pipe protocol, blocking, from the
//! thread of its slot.

use crate::exit_status::describe;
use std::io::{BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use pp_runtime::remote::ISOLATED_WORKER_ENV;

#[cfg(unix)]
use crate::protocol::output_bound;
use crate::protocol::pipe::{
    self, FromWorker, WorkerError, WorkerHello, DEFAULT_MAX_FRAME, WORKER_PROTOCOL,
};
use crate::protocol::JobOutput;
use crate::worker::{KEPT_OUTPUT_ENV, MAX_FRAME_ENV, OUTPUT_ENV, WORKER_ENV};

/// Variables of this program a worker must not see: a job's own `Server` in a worker is a
/// local one (no cluster, no isolation of its own, no progress bar), and the secret stays
/// here.
const NOT_FOR_WORKERS: [&str; 5] = [
    "PP_SERVERS",
    "PP_ISOLATED",
    "PP_SECRET",
    "PP_SECRET_FILE",
    "PP_PROGRESS",
];

/// How long a worker that closed its pipe has to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A running worker process and its pipes.
#[derive(Debug)]
pub(super) struct WorkerChild {
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    /// Frame bodies read from the worker.
    buffer: Vec<u8>,
    pid: u32,
    /// Where the worker keeps its running job's output for a crash (see the crate's
    /// `kept_output` module), when it catches output.
    #[cfg(unix)]
    kept: Option<crate::kept_output::KeptOutput>,
}

impl WorkerChild {
    /// Starts a worker and reads its hello, which must come from this very program (same
    /// protocol, same task registry). `forward_output`: the worker catches what jobs print
    /// and sends it before each reply. The error is a sentence for the user.
    pub(super) fn start(forward_output: bool) -> Result<Self, String> {
        let program = this_program();
        let mut command = Command::new(&program);
        command
            .env(WORKER_ENV, "1")
            .env(ISOLATED_WORKER_ENV, "1")
            .env(MAX_FRAME_ENV, DEFAULT_MAX_FRAME.to_string())
            .env_remove(OUTPUT_ENV)
            .env_remove(KEPT_OUTPUT_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for name in NOT_FOR_WORKERS {
            command.env_remove(name);
        }
        #[cfg(unix)]
        let mut kept = None;
        #[cfg(unix)]
        let mut child_ends = None;
        if forward_output {
            command.env(OUTPUT_ENV, "1");
            #[cfg(unix)]
            match crate::kept_output::KeptOutput::create() {
                Ok((parent, ends)) => {
                    ends.hand_to(&mut command);
                    kept = Some(parent);
                    child_ends = Some(ends);
                }
                Err(error) => pp_runtime::debug!(
                    %error,
                    "a crashed worker's job output cannot be kept: it is lost"
                ),
            }
        }
        die_with_parent(&mut command);
        let spawned = command.spawn();
        // The worker has its copies now; the write ends must close with it.
        #[cfg(unix)]
        drop(child_ends);
        let mut child = spawned
            .map_err(|e| format!("cannot start a worker process ({}): {e}", program.display()))?;
        let pid = child.id();
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("cannot start a worker process: no pipes to it".into());
        };
        let mut worker = WorkerChild {
            child,
            input: BufWriter::new(input),
            output: BufReader::new(output),
            buffer: Vec::new(),
            pid,
            #[cfg(unix)]
            kept,
        };
        match worker.read_hello() {
            Ok(()) => Ok(worker),
            Err(why) => {
                let status = worker.end();
                Err(format!(
                    "a worker process did not start: {why}; it {status} (does the program \
                     link pp's worker mode?)"
                ))
            }
        }
    }

    /// The process id.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    fn read_hello(&mut self) -> Result<(), String> {
        let len = pipe::read_frame_into(&mut self.output, &mut self.buffer, "hello", limit())
            .map_err(|e| e.to_string())?
            .ok_or("it closed its pipe before saying hello")?;
        let body = &self.buffer[..len];
        if let Some(version) = body.first_chunk::<2>().map(|b| u16::from_le_bytes(*b)) {
            if version != WORKER_PROTOCOL {
                return Err(format!(
                    "it speaks worker protocol {version}, this program {WORKER_PROTOCOL}"
                ));
            }
        }
        let hello: WorkerHello =
            pipe::decode_body(body, "worker hello", limit()).map_err(|e| e.to_string())?;
        let ours = pp_runtime::registry().fingerprint();
        if hello.registry_fingerprint != ours {
            return Err(format!(
                "its task registry differs from this program's ({:016x}, here {ours:016x}): \
                 the executable changed on disk?",
                hello.registry_fingerprint
            ));
        }
        pp_runtime::debug!(
            pid = self.pid,
            tasks = hello.tasks,
            "isolated worker started"
        );
        Ok(())
    }

    /// Sends one job: `head` (from [`pipe::encode_job_head`]) and its arguments.
    ///
    /// # Errors
    /// The pipe is broken: the worker died.
    pub(super) fn send(&mut self, head: &[u8], args: &[u8]) -> Result<(), WorkerError> {
        let io = |source| WorkerError::Io {
            during: "writing to an isolated worker",
            source,
        };
        let header = pipe::frame_header(head.len() + args.len());
        self.input.write_all(&header).map_err(io)?;
        self.input.write_all(head).map_err(io)?;
        self.input.write_all(args).map_err(io)?;
        self.input.flush().map_err(io)
    }

    /// Reads the worker's next frame: a job's output, or its reply.
    ///
    /// # Errors
    /// [`WorkerError::Truncated`] when the pipe closed (the worker died or was killed);
    /// other errors when it broke the protocol.
    pub(super) fn read(&mut self) -> Result<FromWorker, WorkerError> {
        let len = pipe::read_frame_into(&mut self.output, &mut self.buffer, "reply", limit())?
            .ok_or(WorkerError::Truncated {
                during: "waiting for a reply",
            })?;
        pipe::decode_body(&self.buffer[..len], "reply", limit())
    }

    /// Ends the worker and says how it ended ("was killed by signal 6 (SIGABRT)"): closes
    /// its input (a live worker then exits) and waits for it, killing it if it does not
    /// exit within a grace period.
    pub(super) fn end(self) -> String {
        self.end_process()
    }

    /// [`Self::end`], with what the job `job_id` the worker was running printed and could
    /// not send (it died, or was killed): see the crate's `kept_output` module.
    #[cfg_attr(not(unix), allow(unused_mut))]
    pub(super) fn end_with_output(mut self, job_id: u64) -> (String, Option<JobOutput>) {
        #[cfg(unix)]
        let kept = self.kept.take();
        let how = self.end_process();
        #[cfg(unix)]
        let output = kept.and_then(|kept| kept.recover(Some(job_id), output_bound(limit())));
        #[cfg(not(unix))]
        let output = {
            let _ = job_id;
            None
        };
        (how, output)
    }

    fn end_process(self) -> String {
        let WorkerChild {
            mut child, input, ..
        } = self;
        drop(input);
        let deadline = std::time::Instant::now() + EXIT_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return describe(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return "stopped answering and was killed".to_owned();
                }
                Err(error) => return format!("could not be waited for ({error})"),
            }
        }
    }
}

/// The frame limit of the pipe to isolated workers (the node's default).
fn limit() -> u32 {
    DEFAULT_MAX_FRAME
}

/// This very executable: on Linux through `/proc/self/exe`, which still runs it if the
/// file was replaced on disk (a rebuild while the program runs).
fn this_program() -> std::path::PathBuf {
    #[cfg(target_os = "linux")]
    {
        std::path::PathBuf::from("/proc/self/exe")
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::env::current_exe()
            .unwrap_or_else(|_| std::env::args_os().next().unwrap_or_default().into())
    }
}

/// On Linux, a worker is killed when the thread that started it ends, which is never
/// before this program ends or the worker is done with: so a program killed outright
/// leaves no worker behind, running a job nobody waits for.
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Sends SIGKILL to the worker `pid`. The caller makes sure it is not reaped yet (its pid
/// is not reused); errors (it is already dead) are ignored.
pub(super) fn kill(pid: u32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 1 {
            // SAFETY: kill has no memory preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}
