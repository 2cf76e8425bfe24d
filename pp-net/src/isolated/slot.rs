//! One slot of an isolated executor: a thread that takes jobs from the server's queue and
//! runs each in its worker process, one at a time, and starts a fresh worker when the last
//! one died, ran past a deadline or was stopped by a cancel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pp_runtime::remote::RemoteJob;
use pp_runtime::Outcome;

use super::child::WorkerChild;
use super::watch::{self, Running, RunningCell, Stop};
use super::Shared;
use crate::client::job_output;
use crate::protocol::pipe::{self, FromWorker, WorkerError, DEFAULT_MAX_FRAME};
use crate::protocol::JobReply;

/// A slot's thread state: its worker (started with its first job) and its running job.
pub(super) struct Slot {
    shared: Arc<Shared>,
    index: usize,
    running: Arc<RunningCell>,
    worker: Option<WorkerChild>,
    next_id: u64,
}

impl Slot {
    /// Slot `index` of `shared`, its running job watched by the executor's watchdog.
    pub(super) fn new(shared: Arc<Shared>, index: usize) -> Self {
        let running = Arc::new(RunningCell::default());
        shared.watchdog.watch(&running);
        Slot {
            shared,
            index,
            running,
            worker: None,
            next_id: 0,
        }
    }

    /// The thread's body: runs jobs until the executor stops or shrinks below this slot,
    /// then ends its worker.
    pub(super) fn run(mut self) {
        while let Some(job) = self.shared.next_job(self.index) {
            self.run_job(job);
        }
        if let Some(worker) = self.worker.take() {
            worker.end();
        }
    }

    fn complete(&self, job: RemoteJob, outcome: Outcome, run_time: Duration) {
        self.shared
            .feed
            .complete(job, &self.shared.handle, outcome, run_time);
    }

    fn run_job(&mut self, job: RemoteJob) {
        if job.is_settled() {
            // Cancelled while queued, or completed by another copy: dropped there.
            self.shared.feed.requeue(job);
            return;
        }
        let args = match job.encode_args() {
            Ok(args) => args,
            Err(e) => {
                let why = format!("cannot encode the arguments: {e}");
                return self.complete(job, Outcome::Failed(why), Duration::ZERO);
            }
        };
        self.next_id += 1;
        let id = self.next_id;
        let head = pipe::encode_job_head(
            id,
            job.task_id(),
            job.fingerprint(),
            // The worker ignores it: this executor's watchdog enforces the limit.
            job.timeout(),
            &args,
            DEFAULT_MAX_FRAME,
        );
        let head = match head {
            Ok(head) => head,
            Err(e) => return self.complete(job, Outcome::Failed(e.to_string()), Duration::ZERO),
        };
        let worker = match self.worker.take() {
            Some(worker) => worker,
            None => match WorkerChild::start(self.shared.forward_output) {
                Ok(worker) => worker,
                Err(why) => {
                    pp_runtime::error!("{why}; the job fails");
                    return self.complete(job, Outcome::Failed(why), Duration::ZERO);
                }
            },
        };
        let worker = self.worker.insert(worker);
        let pid = worker.pid();
        let started = Instant::now();
        if let Err(error) = worker.send(&head, &args) {
            return self.crashed(job, pid, started, &error);
        }
        let deadline = job.timeout().map(|limit| started + limit);
        let settled_meanwhile = job.is_settled();
        *watch::lock(&self.running) = Some(Running {
            job,
            pid,
            started,
            deadline,
            stopped: None,
        });
        if settled_meanwhile {
            self.shared.watchdog.look_for_settled();
        } else if deadline.is_some() {
            self.shared.watchdog.poke();
        }
        let answer = read_reply(worker);
        // Emptied before the worker may be reaped (see the `watch` module).
        let Some(running) = watch::lock(&self.running).take() else {
            return;
        };
        let run_time = started.elapsed();
        match (answer, running.stopped) {
            (Ok(reply), stopped) if reply.job_id == id => {
                self.shared.handle.record_round_trip(run_time);
                // After the job's lines, if some still wait for the printer.
                self.complete_after_lines(running.job, reply.outcome, reply.run_time);
                if stopped.is_some() {
                    // Killed just as it answered: its successor takes the next job.
                    if let Some(worker) = self.worker.take() {
                        worker.end();
                    }
                }
            }
            (Ok(reply), _) => {
                let error = WorkerError::Io {
                    during: "reading an isolated worker's reply",
                    source: std::io::Error::other(format!(
                        "a reply to job {} when job {id} was running",
                        reply.job_id
                    )),
                };
                self.crashed(running.job, pid, started, &error);
            }
            (Err(_), Some(Stop::TimedOut(after))) => {
                // Reaped first: what the job printed until it was killed goes before its
                // error, as a live job's lines go before its result.
                self.end_printing();
                self.complete_after_lines(running.job, Outcome::TimedOut(after), run_time);
            }
            (Err(_), Some(Stop::Settled)) => {
                if let Some(worker) = self.worker.take() {
                    worker.end();
                }
                // Settled already: the feed drops this copy.
                let why = "its worker was stopped: the job was settled elsewhere".to_owned();
                self.complete(running.job, Outcome::WorkerCrashed(why), run_time);
            }
            (Err(error), None) => self.crashed(running.job, pid, started, &error),
        }
    }

    /// The worker died while it held `job`: says how, and completes the job as a crash
    /// (the feed reschedules it while it has attempts left).
    fn crashed(&mut self, job: RemoteJob, pid: u32, started: Instant, error: &WorkerError) {
        let how = self.end_printing().unwrap_or_else(|| "ended".to_owned());
        let mut report = format!(
            "isolated worker pid {pid} {how} while running task `{}`",
            job.task_id()
        );
        // A closed pipe is what a dead worker looks like; anything else is worth saying.
        if !matches!(error, WorkerError::Truncated { .. }) {
            report.push_str(&format!(" ({error})"));
        }
        // The feed says it when it reschedules the job; the last attempt's is its error.
        pp_runtime::debug!("{report}; a new worker starts with the next job");
        let run_time = started.elapsed();
        self.complete_after_lines(job, Outcome::WorkerCrashed(report), run_time);
    }

    /// Completes `job` once the lines handed to the printer so far are printed.
    fn complete_after_lines(&self, job: RemoteJob, outcome: Outcome, run_time: Duration) {
        let (feed, handle) = (self.shared.feed.clone(), self.shared.handle.clone());
        job_output::then(move || feed.complete(job, &handle, outcome, run_time));
    }

    /// Ends the slot's dead (or killed) worker, if it has one, and prints what its job
    /// wrote that the worker could not send; returns how the worker ended.
    fn end_printing(&mut self) -> Option<String> {
        // The job it ran is the last one sent.
        let (how, output) = self.worker.take()?.end_with_output(self.next_id);
        if let Some(output) = output {
            job_output::print_local(output);
        }
        Some(how)
    }
}

/// Reads the worker's frames up to its reply, printing what the job wrote on the way.
fn read_reply(worker: &mut WorkerChild) -> Result<JobReply, WorkerError> {
    loop {
        match worker.read()? {
            FromWorker::Output(output) => job_output::print_local(output),
            FromWorker::Reply(reply) => return Ok(reply),
        }
    }
}
