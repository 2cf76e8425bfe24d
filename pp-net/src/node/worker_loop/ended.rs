//! A worker's end: the jobs it held when it died or was killed, answered (after what the
//! running one printed, which the worker could not send: see the crate's `kept_output`
//! module) or given back.

use std::time::Duration;

use super::super::job_watch::Kill;
use super::super::process::WorkerProcess;
use super::super::queued::QueuedJob;
use super::super::stats::NodeCounters;
use super::JobQueue;
use crate::protocol::pipe::WorkerError;
use crate::Outcome;

/// The jobs a worker held when it died or was killed.
pub(super) struct Ended {
    /// Oldest (the one it ran) first.
    pub(super) held: Vec<QueuedJob>,
    /// How long it ran the first.
    pub(super) ran: Duration,
    /// The last job whose output it sent.
    pub(super) sent_output: Option<u64>,
}

/// Passes on what the job `job_id` printed before its dead (or killed) worker could send
/// it: ahead of the job's reply, as a live worker's output.
fn pass_on_output(worker: &WorkerProcess, work: &JobQueue, job_id: u64, sent: Option<u64>) {
    if sent == Some(job_id) {
        return;
    }
    if let Some(output) = worker.recover_output(Some(job_id)) {
        output
            .into_pieces()
            .into_iter()
            .for_each(|piece| work.output(piece));
    }
}

/// Kills a worker whose running job (the first held, which ran for `ran`) passed its
/// time limit or was cancelled: a job past its limit is answered `TimedOut` first (after
/// what it printed), so that the client hears at the deadline; a cancelled one leaves
/// unanswered. The other jobs had not started and go back to the front of the queue.
pub(super) async fn killed(worker: &mut WorkerProcess, work: &JobQueue, ended: Ended, kill: Kill) {
    let Ended {
        held,
        ran,
        sent_output,
    } = ended;
    let mut held = held.into_iter();
    let Some(running) = held.next() else {
        // The watch only kills a worker that runs a job.
        return;
    };
    let pid = worker.pid();
    // Stopped first, so that what the job printed until now is all there.
    worker.stop().await;
    let why = match kill {
        Kill::TimedOut { after } => {
            pass_on_output(worker, work, running.job_id, sent_output);
            work.reply(running.job_id, Outcome::TimedOut(after), ran);
            NodeCounters::bump(&work.counters.jobs_timed_out);
            format!("ran past its time limit of {after:?}")
        }
        Kill::Cancelled => {
            work.dropped();
            NodeCounters::bump(&work.counters.jobs_cancelled);
            "was cancelled by the client".to_owned()
        }
    };
    pp_runtime::info!(
        "killed worker pid {pid}: its job (task `{}`) {why}; starting a new worker",
        running.task
    );
    work.give_back(held.collect());
}

/// Reports a dead worker: the oldest job it held (which ran for `ran`) failed with
/// `WorkerCrashed`, after what it printed; the others never started and go back to the
/// front of the queue. A worker that held no job is reported as idle.
pub(super) async fn crashed(
    worker: &mut WorkerProcess,
    work: &JobQueue,
    ended: Ended,
    error: WorkerError,
) {
    let Ended {
        held,
        ran,
        sent_output,
    } = ended;
    let pid = worker.pid();
    let how = worker.exit_report().await;
    let mut held = held.into_iter();
    let running = held.next();
    let mut report = match &running {
        Some(job) => format!("worker pid {pid} {how} while running task `{}`", job.task),
        None => format!("an idle worker (pid {pid}, holding no job) {how}"),
    };
    // A closed pipe is what a dead worker looks like; anything else is worth saying.
    if !matches!(error, WorkerError::Truncated { .. }) {
        report.push_str(&format!(" ({error})"));
    }
    NodeCounters::bump(&work.counters.worker_crashes);
    pp_runtime::warn!("{report}; starting a new worker");
    if let Some(job) = running {
        pass_on_output(worker, work, job.job_id, sent_output);
        work.reply(job.job_id, Outcome::WorkerCrashed(report), ran);
    }
    work.give_back(held.collect());
}
