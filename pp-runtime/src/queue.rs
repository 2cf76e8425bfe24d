//! [`JobQueue`]: a server's one FIFO queue of jobs, which every executor takes from, with
//! what is counted about the jobs in it (pending counts, groups, server-wide counters).
//!
//! Three parts, taken in this order: the retry queue (jobs given back by remote executors,
//! with the nodes of their failed attempts: they run before anything newer, and a node
//! leaves alone those that failed on it while another place can take them: see
//! `remote::routing`), the
//! local-only queue (`par!` chunks that borrow the caller's data), and the shared queue
//! (crossbeam's injector). A job settled while queued (cancelled) stays where it is, counted
//! in `settled_queued`: whoever pops it drops it without running it, so a cancel never
//! scans the queue. Queuing a job or giving one back notifies every
//! [`Executor`]: the local pool first (no lock: the hot path of a local submit), then the
//! remote ones, once any is attached. A thread waiting for a result may sleep on the queue
//! while it has a backlog (see [`crate::backlog`]); takers wake it when the backlog runs low.

mod drain;

use crate::backlog::{Backlog, Sleepers};
use crate::deadline::Deadlines;
use crate::error::JobError;
use crate::executor::{Executor, QueueView};
use crate::group::{Group, Members};
use crate::job::Completion;
use crate::pending::Pending;
use crate::queued_job::QueuedJob;
use crate::remote::remote_job::RemoteJob;
use crate::remote::routing::{self, Take};
use crate::settle::{Settle, Was};
use crate::stats::{ExecutorCounters, ExecutorStats, NodeStatus, ServerCounters};
use crossbeam_deque::{Injector, Steal};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// A server's queue and its bookkeeping, shared by the server, its executors and the jobs'
/// waiters.
pub(crate) struct JobQueue {
    /// Jobs any executor may run.
    shared: Injector<Box<dyn QueuedJob>>,
    /// Jobs that only local workers may run (they borrow the caller's data).
    local_only: Injector<Box<dyn QueuedJob>>,
    /// Jobs given back by remote executors: they run before anything newer.
    retry: Mutex<VecDeque<RemoteJob>>,
    retry_len: AtomicUsize,
    /// Jobs settled (cancelled) while queued and not popped yet: the queue's parts hold
    /// them, but they do not count as queued. Briefly negative when a taker skips a job
    /// before its canceller counted it.
    settled_queued: AtomicIsize,
    /// The deadline timer of jobs with a time limit run on local threads.
    pub(crate) deadlines: Deadlines,
    /// The jobs in no group, for `cancel_all` to find those in remote executors' hands:
    /// kept only once a remote executor is attached (a local server finds its jobs in its
    /// queues and on its threads, see [`crate::running`], and spares its submissions this).
    pub(crate) ungrouped: Members,
    /// The local pool, notified first and without a lock.
    local: OnceLock<Arc<dyn Executor>>,
    /// Remote executors (the cluster client), notified once `has_remote` is set.
    remote: RwLock<Vec<Arc<dyn Executor>>>,
    has_remote: AtomicBool,
    shutdown: AtomicBool,
    /// The local worker count, as the pool last set it: the queue has a backlog when it
    /// holds at least one job per local worker.
    local_workers: AtomicUsize,
    /// Threads waiting for a result while the queue has a backlog (see [`crate::backlog`]).
    sleepers: Sleepers,
    /// Jobs submitted and not yet finished: what `Server::wait` waits for.
    pub(crate) pending: Pending,
    pub(crate) groups: Mutex<HashMap<String, Arc<Group>>>,
    pub(crate) counters: ServerCounters,
    pub(crate) created: Instant,
}

impl JobQueue {
    /// An empty queue; its executors are attached next.
    pub(crate) fn new() -> Arc<JobQueue> {
        Arc::new_cyclic(|me| JobQueue {
            shared: Injector::new(),
            local_only: Injector::new(),
            retry: Mutex::new(VecDeque::new()),
            retry_len: AtomicUsize::new(0),
            settled_queued: AtomicIsize::new(0),
            deadlines: Deadlines::new(me.clone()),
            ungrouped: Members::default(),
            local: OnceLock::new(),
            remote: RwLock::new(Vec::new()),
            has_remote: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            local_workers: AtomicUsize::new(0),
            sleepers: Sleepers::default(),
            pending: Pending::default(),
            groups: Mutex::new(HashMap::new()),
            counters: ServerCounters::default(),
            created: Instant::now(),
        })
    }

    /// Attaches the local pool (once).
    pub(crate) fn attach_local(&self, pool: Arc<dyn Executor>) {
        if self.local.set(pool).is_err() {
            crate::error!("a second local pool was attached to a queue; it is ignored");
        }
    }

    /// Attaches a remote executor (the cluster client).
    pub(crate) fn attach_remote(&self, executor: Arc<dyn Executor>) {
        self.remote
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(executor);
        self.has_remote.store(true, Ordering::Release);
    }

    /// Whether a remote executor is attached (cluster mode).
    pub(crate) fn has_remote(&self) -> bool {
        self.has_remote.load(Ordering::Acquire)
    }

    /// Records the local worker count, which decides when the queue has a backlog.
    pub(crate) fn set_local_workers(&self, workers: usize) {
        self.local_workers.store(workers, Ordering::SeqCst);
    }

    pub(crate) fn queued(&self) -> usize {
        let held =
            self.shared.len() + self.local_only.len() + self.retry_len.load(Ordering::SeqCst);
        let settled = usize::try_from(self.settled_queued.load(Ordering::SeqCst)).unwrap_or(0);
        held.saturating_sub(settled)
    }

    pub(crate) fn has_work(&self) -> bool {
        !self.shared.is_empty()
            || !self.local_only.is_empty()
            || self.retry_len.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Queues a job (already counted in `pending`) and notifies the executors that may run
    /// it; cancels it instead once shutting down.
    pub(crate) fn push(&self, job: Box<dyn QueuedJob>) {
        if self.is_shut_down() {
            self.cancel(job);
            return;
        }
        if job.local_only() {
            self.local_only.push(job);
            self.notify_local();
        } else {
            self.shared.push(job);
            self.notify_local();
            self.notify_remote();
        }
    }

    fn notify_local(&self) {
        if let Some(local) = self.local.get() {
            local.notify(QueueView(self));
        }
    }

    fn notify_remote(&self) {
        if self.has_remote() {
            for executor in self.remote.read().unwrap_or_else(|e| e.into_inner()).iter() {
                executor.notify(QueueView(self));
            }
        }
    }

    /// The remote executors, out of the lock (their calls may come back to the queue).
    fn remote_executors(&self) -> Vec<Arc<dyn Executor>> {
        self.remote
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The next job for a local worker: retried jobs, then local-only ones, then the rest.
    /// Jobs settled while queued are dropped on the way.
    pub(crate) fn pop_local(&self) -> Option<Box<dyn QueuedJob>> {
        loop {
            let job = self
                .pop_retry()
                .map(|retry| retry.job)
                .or_else(|| steal(&self.local_only))
                .or_else(|| steal(&self.shared))?;
            self.took();
            if job.take(false) {
                return Some(job);
            }
            self.skipped_settled();
        }
    }

    /// A queued job was settled without the queue (a batch of `map` its caller ran): it no
    /// longer counts as queued, and whoever pops it drops it ([`JobQueue::skipped_settled`]).
    pub(crate) fn settled_outside(&self) {
        self.settled_queued.fetch_add(1, Ordering::SeqCst);
    }

    /// A taker dropped a job settled while it was queued (here or among the local pool's
    /// sub-jobs): it no longer counts in `settled_queued`.
    pub(crate) fn skipped_settled(&self) {
        self.settled_queued.fetch_sub(1, Ordering::SeqCst);
    }

    /// A job for a remote executor, with the nodes of its failed attempts; `None` once
    /// shutting down. The job counts as in flight until a completion of it is kept, or it
    /// comes back ([`JobQueue::requeue`]) or fails ([`JobQueue::fail_taken`]).
    pub(crate) fn take_for_remote(&self) -> Option<RemoteJob> {
        if self.is_shut_down() {
            return None;
        }
        loop {
            let Some(job) = self
                .pop_retry()
                .or_else(|| steal(&self.shared).map(RemoteJob::first))
            else {
                self.took();
                return None;
            };
            // Counted in flight before it is marked taken: a cancel that sees it taken
            // counts it out of flight.
            self.counters.in_flight.fetch_add(1, Ordering::AcqRel);
            if job.job.take(true) {
                self.took();
                return Some(job);
            }
            self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.settled_queued.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A job for the node `taker` (see the `routing` module): retried jobs first, except
    /// those that failed on `taker` while `elsewhere()` says another place can take them
    /// (asked only when retried jobs are queued), then the shared queue. As
    /// [`JobQueue::take_for_remote`] otherwise.
    pub(crate) fn take_for_node(&self, taker: &str, elsewhere: impl FnOnce() -> bool) -> Take {
        if self.is_shut_down() {
            return Take::Empty;
        }
        let mut later = None;
        // Asked once at most, even when a cancelled job is skipped.
        let (mut elsewhere, mut said) = (Some(elsewhere), None);
        loop {
            let ask = || match said {
                Some(answer) => answer,
                None => *said.insert(elsewhere.take().is_some_and(|ask| ask())),
            };
            let job = self
                .pop_retry_for(taker, ask, &mut later)
                .or_else(|| steal(&self.shared).map(RemoteJob::first));
            let Some(job) = job else {
                self.took();
                return match later {
                    Some(at) => Take::NotBefore(at),
                    None => Take::Empty,
                };
            };
            // As in `take_for_remote`: in flight before it is marked taken.
            self.counters.in_flight.fetch_add(1, Ordering::AcqRel);
            if job.job.take(true) {
                self.took();
                return Take::Job(job);
            }
            self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.settled_queued.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The first retried job `taker` may take; else `later` is when one becomes its.
    fn pop_retry_for(
        &self,
        taker: &str,
        elsewhere: impl FnOnce() -> bool,
        later: &mut Option<Instant>,
    ) -> Option<RemoteJob> {
        if self.retry_len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        // Out of the lock: the cluster client looks at its nodes.
        let elsewhere = elsewhere();
        let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
        let job = match routing::pick(&retry, taker, elsewhere, Instant::now()) {
            Ok(index) => retry.remove(index),
            Err(at) => {
                *later = at;
                None
            }
        };
        self.retry_len.store(retry.len(), Ordering::SeqCst);
        job
    }

    /// Moves back the time every retried job was given back, as if it had waited `by`.
    #[cfg(test)]
    pub(crate) fn age_retries(&self, by: Duration) {
        let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
        for job in retry.iter_mut() {
            job.given_back = job.given_back.and_then(|at| at.checked_sub(by));
        }
    }

    /// Jobs running now: on the local workers, or in remote executors' hands.
    pub(crate) fn active(&self, local: &ExecutorCounters) -> usize {
        local.running() + self.counters.in_flight.load(Ordering::Acquire)
    }

    fn pop_retry(&self) -> Option<RemoteJob> {
        if self.retry_len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
        let job = retry.pop_front();
        self.retry_len.store(retry.len(), Ordering::SeqCst);
        job
    }

    /// After a job left the queue: wakes the threads sleeping on a backlog once there is
    /// none left.
    fn took(&self) {
        if self.sleepers.any() && !self.busy() {
            self.sleepers.wake_all();
        }
    }

    /// Bookkeeping after an executor completed a job of task `task`: counts it finished if
    /// this completion is the one that stored its result (not a copy that came second).
    pub(crate) fn finished(&self, completion: Completion, task: &str) {
        if let Completion::Stored { callback_panic } = completion {
            if let Some(message) = callback_panic {
                self.counters
                    .callback_panics
                    .fetch_add(1, Ordering::Relaxed);
                crate::error!(
                    task,
                    "a job callback panicked: {message}; the job still counts as finished"
                );
            }
            self.pending.done();
        }
    }

    /// Fails a job taken by a remote executor without a result (its attempts are used up).
    /// The caller made sure it is the job's only live copy: it leaves the jobs in flight.
    pub(crate) fn fail_taken(&self, job: Box<dyn QueuedJob>, error: JobError) {
        // Out of flight only if this failure is kept: a cancel that came first counted it out.
        if let Completion::Stored { .. } = job.fail(error) {
            self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.pending.done();
        }
    }

    /// Puts a job given back by a remote executor at the front of the queue (behind other
    /// jobs given back); returns false if it was cancelled instead, the server shutting down.
    /// The caller made sure it is the job's only live copy: it leaves the jobs in flight.
    pub(crate) fn requeue(&self, mut job: RemoteJob) -> bool {
        if !job.job.untake() {
            // Settled (cancelled) in the executor's hands: its canceller counted it out of
            // flight and finished; nothing to run again.
            return false;
        }
        self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.is_shut_down() {
            self.cancel(job.job);
            return false;
        }
        job.given_back = Some(Instant::now());
        let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
        retry.push_back(job);
        self.retry_len.store(retry.len(), Ordering::SeqCst);
        drop(retry);
        self.notify_local();
        self.notify_remote();
        true
    }

    /// Settles `job` with `error` unless it already has a result (or, if `queued_only`, was
    /// taken from the queue), and counts what is left to count: the job finished (`wait`,
    /// its callback's panic), cancelled or timed out, and out of the queue or out of
    /// flight. Returns where the job was, if this settled it.
    pub(crate) fn settle(
        &self,
        job: &dyn Settle,
        error: JobError,
        queued_only: bool,
    ) -> Option<Was> {
        let timed_out = matches!(error, JobError::TimedOut { .. });
        let (was, callback_panic) = job.settle(error, queued_only)?;
        match was {
            Was::Queued => {
                self.settled_queued.fetch_add(1, Ordering::SeqCst);
            }
            Was::Local => {}
            Was::Remote => {
                self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let counter = if timed_out {
            &self.counters.timed_out
        } else {
            &self.counters.cancelled
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.finished(Completion::Stored { callback_panic }, job.task());
        Some(was)
    }

    /// Tells every remote executor that jobs were settled without them (see
    /// [`Executor::settled_elsewhere`]).
    pub(crate) fn tell_settled_elsewhere(&self) {
        for executor in self.remote_executors() {
            executor.settled_elsewhere();
        }
    }

    fn cancel(&self, job: Box<dyn QueuedJob>) {
        let task = job.task_id().to_owned();
        if let Completion::Stored { .. } = job.fail(JobError::Cancelled { task }) {
            self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            self.pending.done();
        }
    }

    /// Statistics rows of every executor: the local pool's, then each node's.
    pub(crate) fn executor_stats(&self) -> Vec<ExecutorStats> {
        let mut rows = Vec::new();
        if let Some(local) = self.local.get() {
            local.stats_rows(&mut rows);
        }
        for executor in self.remote_executors() {
            executor.stats_rows(&mut rows);
        }
        rows
    }

    /// The remote nodes and their state.
    pub(crate) fn nodes(&self) -> Vec<NodeStatus> {
        self.remote_executors()
            .iter()
            .flat_map(|executor| executor.nodes())
            .collect()
    }

    /// Where nodes join a remote executor, if one listens.
    pub(crate) fn listen_address(&self) -> Option<std::net::SocketAddr> {
        (self.remote_executors().iter()).find_map(|executor| executor.listen_address())
    }

    /// The shortest average round trip (sending a job to its result) among the remote
    /// executors' nodes, if any job finished there.
    pub(crate) fn fastest_remote_average(&self) -> Option<Duration> {
        let remote = self.remote.read().unwrap_or_else(|e| e.into_inner());
        remote
            .iter()
            .filter_map(|executor| executor.fastest_average())
            .min()
    }

    /// Shuts the server's executors down and cancels what is still queued: remote
    /// executors first (the jobs they give back are cancelled with the rest), then the
    /// queue closes, then the local pool lets running jobs finish and joins its threads.
    pub(crate) fn shutdown(&self) {
        for executor in self.remote_executors() {
            executor.shutdown();
        }
        self.shutdown.store(true, Ordering::SeqCst);
        self.deadlines.stop();
        while let Some(job) = self.pop_local() {
            self.cancel(job);
        }
        self.sleepers.wake_all();
        if let Some(local) = self.local.get() {
            local.shutdown();
        }
    }
}

impl Backlog for JobQueue {
    fn busy(&self) -> bool {
        let workers = self.local_workers.load(Ordering::SeqCst);
        workers > 0 && self.queued() >= workers
    }

    fn sleepers(&self) -> &Sleepers {
        &self.sleepers
    }
}

fn steal(queue: &Injector<Box<dyn QueuedJob>>) -> Option<Box<dyn QueuedJob>> {
    loop {
        match queue.steal() {
            Steal::Success(job) => return Some(job),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
}
