//! One loop per worker process: take queued jobs, run them, hand the replies on.
//!
//! Long jobs go to a worker one at a time, so that every idle worker gets the next job.
//! Tiny jobs (a session's mean service time below [`TINY_JOB`]) go in small batches, a fair
//! share of the queue, written to the worker at once: the worker then answers many jobs
//! per wake-up instead of paying a pipe round trip for each. Replies are passed on one by
//! one as they arrive, batched or not.
//!
//! A worker that dies fails the job it was running with `WorkerCrashed`; the jobs of its
//! batch that had not started go back to the front of the queue, and a fresh worker
//! replaces it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pp_runtime::worker::{WorkerError, WorkerOutcome, WorkerReply};
use tokio::sync::{mpsc, watch, Mutex};

use super::process::{WorkerProcess, WorkerSpec};
use super::relay::Outgoing;
use super::stats::Counters;
use crate::{JobReply, JobRequest, Outcome};

/// Jobs whose mean service time is below this are batched.
const TINY_JOB: Duration = Duration::from_micros(200);

/// Most jobs written to one worker at once.
const MAX_BATCH: usize = 64;

/// The jobs of one session and what its worker loops share.
pub(crate) struct Pool {
    queue: Mutex<mpsc::Receiver<JobRequest>>,
    /// Jobs of a crashed worker's batch that never started; taken before the queue.
    retry: std::sync::Mutex<VecDeque<JobRequest>>,
    replies: mpsc::UnboundedSender<Outgoing>,
    spec: WorkerSpec,
    counters: Arc<Counters>,
    workers: usize,
    /// Moving average of the time per job, in nanoseconds.
    mean_nanos: AtomicU64,
}

impl Pool {
    /// A pool fed by `queue` for `workers` worker loops.
    pub(crate) fn new(
        queue: mpsc::Receiver<JobRequest>,
        replies: mpsc::UnboundedSender<Outgoing>,
        spec: WorkerSpec,
        counters: Arc<Counters>,
        workers: usize,
    ) -> Self {
        Pool {
            queue: Mutex::new(queue),
            retry: std::sync::Mutex::new(VecDeque::new()),
            replies,
            spec,
            counters,
            workers: workers.max(1),
            // Not tiny until measured.
            mean_nanos: AtomicU64::new(2 * TINY_JOB.as_nanos() as u64),
        }
    }

    fn reply(&self, job_id: u64, outcome: Outcome) {
        // A closed channel means the session is ending; the reply has nowhere to go.
        let _ = self
            .replies
            .send(Outgoing::Reply(JobReply { job_id, outcome }));
    }

    fn retry(&self) -> std::sync::MutexGuard<'_, VecDeque<JobRequest>> {
        self.retry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, elapsed: Duration) {
        let sample = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let mean = self.mean_nanos.load(Ordering::Relaxed);
        let mean = mean - mean / 8 + sample / 8;
        self.mean_nanos.store(mean, Ordering::Relaxed);
    }

    fn tiny(&self) -> bool {
        self.mean_nanos.load(Ordering::Relaxed) < TINY_JOB.as_nanos() as u64
    }

    /// The next jobs for one worker: retried ones first, else one from the queue plus,
    /// when jobs are tiny, a fair share of what is queued. `None` when the queue closed.
    async fn take(&self) -> Option<Vec<JobRequest>> {
        {
            let mut retry = self.retry();
            if !retry.is_empty() {
                let n = if self.tiny() { MAX_BATCH } else { 1 };
                let n = n.min(retry.len());
                return Some(retry.drain(..n).collect());
            }
        }
        let mut queue = self.queue.lock().await;
        let first = queue.recv().await?;
        let mut batch = vec![first];
        if self.tiny() {
            let share = (queue.len() / self.workers).min(MAX_BATCH - 1);
            while batch.len() <= share {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        Some(batch)
    }
}

/// Runs jobs on `process` (and its replacements) until the queue closes or `stopped`.
pub(crate) async fn worker_loop(
    process: WorkerProcess,
    pool: Arc<Pool>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut current = Some(process);
    loop {
        let batch = tokio::select! {
            biased;
            _ = stopped.wait_for(|&stop| stop) => break,
            batch = pool.take() => match batch {
                Some(batch) => batch,
                None => break,
            },
        };
        if current.is_none() {
            match WorkerProcess::start(&pool.spec).await {
                Ok(fresh) => current = Some(fresh),
                Err(reason) => {
                    tracing::warn!(%reason, "cannot replace a worker");
                    for job in batch {
                        pool.reply(
                            job.job_id,
                            Outcome::WorkerCrashed(format!(
                                "no worker could run the job on this node: {reason}"
                            )),
                        );
                    }
                    continue;
                }
            }
        }
        let Some(worker) = current.as_mut() else {
            continue;
        };
        let keep = tokio::select! {
            biased;
            _ = stopped.wait_for(|&stop| stop) => break,
            keep = run_batch(worker, &pool, batch) => keep,
        };
        if !keep {
            current = None;
            match WorkerProcess::start(&pool.spec).await {
                Ok(fresh) => current = Some(fresh),
                Err(reason) => tracing::warn!(%reason, "cannot replace a worker"),
            }
        }
    }
    if let Some(mut worker) = current.take() {
        worker.stop().await;
    }
}

/// Runs a batch on `worker`; returns whether the worker is still usable.
async fn run_batch(worker: &mut WorkerProcess, pool: &Pool, batch: Vec<JobRequest>) -> bool {
    let mut bodies = Vec::with_capacity(batch.len());
    // Kept to report the task of a crash and to requeue the jobs that never started.
    let mut requests = Vec::with_capacity(batch.len());
    for request in batch {
        match worker.encode(&request) {
            Ok(body) => {
                bodies.push((request.job_id, body));
                requests.push(request);
            }
            Err(error) => pool.reply(
                request.job_id,
                Outcome::Failed(format!("cannot pass the job to a worker: {error}")),
            ),
        }
    }
    if bodies.is_empty() {
        return true;
    }
    let mut since = Instant::now();
    let result = worker
        .run_batch(&bodies, |reply: WorkerReply| {
            let now = Instant::now();
            pool.record(now - since);
            since = now;
            Counters::bump(&pool.counters.jobs_run);
            let outcome = match reply.outcome {
                WorkerOutcome::Ok(bytes) => Outcome::Ok(bytes),
                WorkerOutcome::Panicked(message) => Outcome::Panicked(message),
                WorkerOutcome::Failed(reason) => Outcome::Failed(reason),
            };
            pool.reply(reply.job_id, outcome);
        })
        .await;
    drop(bodies);
    let Err((running, error)) = result else {
        return true;
    };
    let pid = worker.pid();
    let how = worker.exit_report().await;
    let task = requests.get(running).map_or("?", |job| job.task.as_str());
    let mut report = format!("worker pid {pid} {how} while running task `{task}`");
    // A closed pipe is what a dead worker looks like; anything else is worth saying.
    if !matches!(error, WorkerError::Truncated { .. }) {
        report.push_str(&format!(" ({error})"));
    }
    Counters::bump(&pool.counters.worker_crashes);
    let mut requests = requests.into_iter().skip(running);
    if let Some(crashed) = requests.next() {
        tracing::warn!(job_id = crashed.job_id, "{report}; starting a new worker");
        pool.reply(crashed.job_id, Outcome::WorkerCrashed(report));
    }
    let mut retry = pool.retry();
    for (i, job) in requests.enumerate() {
        retry.insert(i, job);
    }
    false
}
