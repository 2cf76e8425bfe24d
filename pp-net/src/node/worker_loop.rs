//! One loop per worker process: feed it queued jobs, pass its replies on.
//!
//! Writing jobs and reading replies go on side by side. Long jobs go to a worker one at a
//! time, written only when it is idle, so that every idle worker gets the next job. Tiny
//! jobs (a session's mean service time below [`TINY_JOB`]) stream: a worker holds up to
//! [`MAX_AHEAD`] jobs, a fair share of the queue written at once, and is topped up as its
//! replies come back, so it never waits for the node between jobs and answers many jobs
//! per wake-up. Replies are passed on one by one as they arrive.
//!
//! A job whose arguments were decrypted into the session's shared argument area goes to
//! the worker as a head that says where they are: nothing is copied. Else a job with
//! arguments above [`SHARED_ABOVE`](crate::area::SHARED_ABOVE) goes through the worker's
//! own area when it has one and no job the worker holds is still reading from it: the
//! arguments are copied there once and only the job's head crosses the pipe (see the
//! `area` module). Otherwise it goes through the pipe.
//!
//! A worker that dies fails the job it was running (the oldest without a reply) with
//! `WorkerCrashed`, after what the job printed until then (the crate's `kept_output`); the jobs written after it had not started and go back to the front of
//! the queue, and a fresh worker replaces it.
//!
//! The job a worker runs is the oldest it holds: a worker starts its next job when it has
//! written the previous reply, so the node knows when each job starts (the later of its
//! write and the previous reply) without a word from the worker. A watch (`job_watch`)
//! keeps the running job's time limit and looks out for its cancel: past the limit the
//! job is answered `TimedOut` at once, a cancelled one is dropped, and either way the
//! worker is killed and replaced like a dead one, its other jobs back at the front of the
//! queue. Neither counts as a crash. A cancelled job still queued is dropped when taken.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::pipe::{ArgsArea, FromWorker, WorkerError};
use crate::protocol::JobOutput;
use tokio::sync::{mpsc, watch, Mutex, Notify};

use super::cancels::Cancels;
use super::job_watch::{watch_running, Running};
use super::outgoing::Outgoing;
use super::process::{Shared, WorkerProcess, WorkerSpec};
use super::queued::QueuedJob;
use super::stats::NodeCounters;
use ended::{crashed, killed, Ended};

mod ended;
use crate::channel::SharedBytes;
use crate::{JobReply, Message, Outcome};

/// Jobs whose mean service time is below this are batched.
const TINY_JOB: Duration = Duration::from_micros(200);

/// Most tiny jobs a worker holds (written, not yet answered).
const MAX_AHEAD: usize = 64;

/// The jobs of one session and what its worker loops share.
pub(crate) struct JobQueue {
    queue: Mutex<mpsc::Receiver<QueuedJob>>,
    /// Jobs of a crashed worker's batch that never started; taken before the queue.
    retry: std::sync::Mutex<VecDeque<QueuedJob>>,
    replies: mpsc::UnboundedSender<Outgoing>,
    spec: WorkerSpec,
    counters: Arc<NodeCounters>,
    workers: usize,
    /// Moving average of the time per job, in nanoseconds.
    mean_nanos: AtomicU64,
    /// The jobs the client withdrew.
    cancels: Arc<Cancels>,
}

impl JobQueue {
    /// A queue fed by `queue` for `workers` worker loops.
    pub(crate) fn new(
        queue: mpsc::Receiver<QueuedJob>,
        replies: mpsc::UnboundedSender<Outgoing>,
        spec: WorkerSpec,
        counters: Arc<NodeCounters>,
        workers: usize,
        cancels: Arc<Cancels>,
    ) -> Self {
        JobQueue {
            queue: Mutex::new(queue),
            retry: std::sync::Mutex::new(VecDeque::new()),
            replies,
            spec,
            counters,
            workers: workers.max(1),
            // Not tiny until measured.
            mean_nanos: AtomicU64::new(2 * TINY_JOB.as_nanos() as u64),
            cancels,
        }
    }

    /// Drops `job` if the client withdrew it, giving its place back; returns whether it did.
    fn withdrawn(&self, job: &QueuedJob) -> bool {
        if !self.cancels.take(job.job_id) {
            return false;
        }
        NodeCounters::bump(&self.counters.jobs_cancelled);
        self.dropped();
        true
    }

    /// A withdrawn job leaves the node unanswered: its place in the client's count is free.
    fn dropped(&self) {
        let _ = self.replies.send(Outgoing::Dropped);
    }

    /// Whether the watch must hear when `job` becomes the one its worker runs: it has a
    /// time limit, or a cancel is pending.
    fn watched(&self, job: &QueuedJob) -> bool {
        job.timeout.is_some() || self.cancels.any()
    }

    /// Passes a job's reply on; `run_time` is how long it ran in its worker.
    fn reply(&self, job_id: u64, outcome: Outcome, run_time: Duration) {
        // A closed channel means the session is ending; the reply has nowhere to go.
        let _ = self.replies.send(Outgoing::Reply(JobReply {
            job_id,
            outcome,
            run_time,
        }));
    }

    /// Passes a piece of what a job printed on to the client, ahead of the job's reply
    /// (the session's writer keeps that order).
    fn output(&self, output: JobOutput) {
        let _ = self.replies.send(Outgoing::Note(Message::Output(output)));
    }

    fn retry(&self) -> std::sync::MutexGuard<'_, VecDeque<QueuedJob>> {
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

    /// Puts jobs back at the front of the queue, in order.
    fn give_back(&self, given: Vec<QueuedJob>) {
        let mut retry = self.retry();
        for (i, job) in given.into_iter().enumerate() {
            retry.insert(i, job);
        }
    }

    fn tiny(&self) -> bool {
        self.mean_nanos.load(Ordering::Relaxed) < TINY_JOB.as_nanos() as u64
    }

    /// How many jobs a worker may hold: [`MAX_AHEAD`] when jobs are tiny, else one.
    fn ahead(&self) -> usize {
        if self.tiny() {
            MAX_AHEAD
        } else {
            1
        }
    }

    /// The next jobs for a worker with room for `room` (at least one): retried ones
    /// first, else one from the queue plus, when there is room, a fair share of what is
    /// queued; jobs the client withdrew are dropped on the way. `None` when the queue
    /// closed.
    async fn take(&self, room: usize) -> Option<Vec<QueuedJob>> {
        loop {
            let mut batch = self.take_any(room).await?;
            if self.cancels.any() {
                batch.retain(|job| !self.withdrawn(job));
            }
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }

    /// [`JobQueue::take`], withdrawn jobs included.
    async fn take_any(&self, room: usize) -> Option<Vec<QueuedJob>> {
        {
            let mut retry = self.retry();
            if !retry.is_empty() {
                let n = room.min(retry.len());
                return Some(retry.drain(..n).collect());
            }
        }
        let mut queue = self.queue.lock().await;
        let first = queue.recv().await?;
        let mut batch = vec![first];
        if room > 1 {
            let share = (queue.len() / self.workers).min(room - 1);
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
    work: Arc<JobQueue>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut current = Some(process);
    loop {
        let worker = match current.as_mut() {
            Some(worker) => worker,
            None => {
                // Only once there is work: a node that cannot start workers then fails
                // jobs instead of trying again and again.
                let batch = tokio::select! {
                    biased;
                    _ = stopped.wait_for(|&stop| stop) => break,
                    batch = work.take(MAX_AHEAD) => match batch {
                        Some(batch) => batch,
                        None => break,
                    },
                };
                match WorkerProcess::start(&work.spec).await {
                    Ok(fresh) => {
                        work.give_back(batch);
                        current.insert(fresh)
                    }
                    Err(reason) => {
                        pp_runtime::warn!(%reason, "cannot replace a worker");
                        for job in batch {
                            work.reply(
                                job.job_id,
                                Outcome::WorkerCrashed(format!(
                                    "no worker could run the job on this node: {reason}"
                                )),
                                Duration::ZERO,
                            );
                        }
                        continue;
                    }
                }
            }
        };
        let fed = tokio::select! {
            biased;
            _ = stopped.wait_for(|&stop| stop) => break,
            fed = feed(worker, &work) => fed,
        };
        match fed {
            Fed::QueueClosed => break,
            Fed::Crashed => {
                current = None;
                match WorkerProcess::start(&work.spec).await {
                    Ok(fresh) => current = Some(fresh),
                    Err(reason) => pp_runtime::warn!(%reason, "cannot replace a worker"),
                }
            }
        }
    }
    if let Some(mut worker) = current.take() {
        worker.stop().await;
    }
}

/// How feeding a worker ended.
enum Fed {
    /// The session's queue closed: the session is ending.
    QueueClosed,
    /// The worker died or broke the protocol, or was killed (its job's time limit, a
    /// cancel); its jobs were answered or given back. A new worker replaces it.
    Crashed,
}

/// A job written to a worker and not yet answered.
struct Held {
    /// The job; its arguments are shared with the write in progress, which sends them.
    request: QueuedJob,
    written: Instant,
    /// Its arguments wait in the worker's own shared argument area, which must stay as
    /// it is until the reply.
    in_worker_area: bool,
}

/// What a worker holds, and when it last answered.
struct Holding {
    /// The jobs written to it and not answered, oldest (the one it runs) first.
    jobs: VecDeque<Held>,
    /// When the worker last answered: it could start its next job from then on.
    last_reply: Instant,
    /// The last job whose output the worker sent: a job that dies after that has sent
    /// its output already, and none is recovered for it.
    sent_output: Option<u64>,
}

impl Holding {
    /// The job the worker runs now, if it holds any: the oldest, started when it was
    /// written or when the worker answered the one before, whichever came later.
    fn running(&self) -> Option<Running> {
        self.jobs.front().map(|held| Running {
            job_id: held.request.job_id,
            timeout: held.request.timeout,
            started: held.written.max(self.last_reply),
        })
    }
}

/// Streams jobs to `worker` and passes its replies on until the queue closes or the
/// worker fails (or is killed by the watch of its running job).
async fn feed(worker: &mut WorkerProcess, work: &JobQueue) -> Fed {
    // A lock, so that the futures below share it (the future must be `Send`); it is never
    // held across an `.await`.
    let holding = std::sync::Mutex::new(Holding {
        jobs: VecDeque::new(),
        last_reply: Instant::now(),
        sent_output: None,
    });
    let lock = || {
        holding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    // Signalled when a reply frees room in the worker.
    let room = Notify::new();
    // Signalled when the job the worker runs changes to one the watch must see.
    let running_changed = Notify::new();
    let encoder = worker.encoder();
    let (mut jobs, mut replies) = worker.pipes();

    let write = async {
        let mut bodies: Vec<(Vec<u8>, SharedBytes)> = Vec::new();
        let mut staged: Vec<(QueuedJob, Option<Shared>)> = Vec::new();
        loop {
            let free = loop {
                let free = work.ahead().saturating_sub(lock().jobs.len());
                if free > 0 {
                    break free;
                }
                room.notified().await;
            };
            // Long jobs: only to an idle worker. Tiny ones: top up once half the room is
            // free, so that writes stay batched.
            if free < work.ahead() / 2 {
                room.notified().await;
                continue;
            }
            let Some(batch) = work.take(free).await else {
                return Ok::<Fed, WorkerError>(Fed::QueueClosed);
            };
            bodies.clear();
            // One job at a time in the shared argument area: a large job goes there only
            // while no job held by the worker is reading from it.
            let mut area_free = !lock().jobs.iter().any(|held| held.in_worker_area);
            if area_free {
                jobs.release_shared_if_unused();
            }
            // Arguments are copied into the worker's area here, outside the lock that the
            // reply reader takes.
            staged.clear();
            staged.extend(batch.into_iter().map(|request| {
                let shared = jobs.share(&request, area_free);
                if let Some(shared) = &shared {
                    area_free &= shared.area != ArgsArea::Worker;
                    NodeCounters::bump(&work.counters.shared_args);
                }
                (request, shared)
            }));
            {
                let mut held = lock();
                let was_idle = held.jobs.is_empty();
                let now = Instant::now();
                for (request, shared) in staged.drain(..) {
                    // Only the worker's own area must wait for the reply; the session's
                    // is kept whole by the job's hold on its message.
                    let in_worker_area =
                        shared.as_ref().is_some_and(|s| s.area == ArgsArea::Worker);
                    let written = match shared {
                        Some(shared) => Ok((shared.head, SharedBytes::default())),
                        None => encoder
                            .encode_head(&request)
                            .map(|head| (head, request.args.clone())),
                    };
                    match written {
                        Ok(body) => {
                            bodies.push(body);
                            held.jobs.push_back(Held {
                                request,
                                written: now,
                                in_worker_area,
                            });
                        }
                        Err(error) => work.reply(
                            request.job_id,
                            Outcome::Failed(format!("cannot pass the job to a worker: {error}")),
                            Duration::ZERO,
                        ),
                    }
                }
                if was_idle && held.jobs.front().is_some_and(|h| work.watched(&h.request)) {
                    running_changed.notify_one();
                }
            }
            jobs.write(&bodies).await?;
            bodies.clear();
        }
    };
    let read = async {
        loop {
            let reply = match replies.read().await {
                Ok(FromWorker::Reply(reply)) => reply,
                Ok(FromWorker::Output(output)) => {
                    lock().sent_output = Some(output.job_id);
                    work.output(output);
                    continue;
                }
                Err(error) => break error,
            };
            let now = Instant::now();
            let (written, last) = {
                let mut held = lock();
                let written = match held.jobs.front() {
                    Some(front) if front.request.job_id == reply.job_id => {
                        held.jobs.pop_front().map(|job| job.written)
                    }
                    front => {
                        let expected = front.map(|job| job.request.job_id);
                        break WorkerError::Io {
                            during: "reading the worker's reply",
                            source: std::io::Error::other(format!(
                                "reply for job {} while the oldest job held is {expected:?}",
                                reply.job_id
                            )),
                        };
                    }
                };
                let last = std::mem::replace(&mut held.last_reply, now);
                if held.jobs.front().is_some_and(|h| work.watched(&h.request)) {
                    running_changed.notify_one();
                }
                (written, last)
            };
            room.notify_one();
            // A job's service time runs from when the worker could start it: after the
            // previous reply, or when it was written, whichever came later.
            work.record(now - written.map_or(last, |written| written.max(last)));
            NodeCounters::bump(&work.counters.jobs_run);
            work.reply(reply.job_id, reply.outcome, reply.run_time);
        }
    };
    let watch = watch_running(|| lock().running(), &running_changed, &work.cancels);
    let ended_by = tokio::select! {
        written = write => match written {
            Ok(fed) => return fed,
            Err(error) => Err(error),
        },
        error = read => Err(error),
        kill = watch => Ok(kill),
    };
    let (held, ran, sent_output) = {
        let mut holding = lock();
        // The job the worker was running: from when it could start it to now.
        let ran = holding
            .running()
            .map_or(Duration::ZERO, |running| running.started.elapsed());
        let held: Vec<QueuedJob> = holding.jobs.drain(..).map(|held| held.request).collect();
        (held, ran, holding.sent_output)
    };
    let ended = Ended {
        held,
        ran,
        sent_output,
    };
    match ended_by {
        Err(error) => crashed(worker, work, ended, error).await,
        Ok(kill) => killed(worker, work, ended, kill).await,
    }
    Fed::Crashed
}
