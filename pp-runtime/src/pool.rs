//! The local pool: one FIFO queue drained by jobs running on a rayon thread pool we own.
//!
//! A "drainer" is a rayon task that pops and runs jobs until the queue stays empty. At most
//! `ncpus` drainers hold a slot at once, so at most `ncpus` jobs run at once. Changing
//! `ncpus` builds a new rayon pool of that size and bumps a generation number: drainers of
//! the old generation finish the job in hand and retire, handing their slot to the new
//! pool. The queue itself never changes, so no job is lost or reordered.
//!
//! Remote executors (see [`crate::remote`]) take jobs from the same queue; a job they give
//! back goes to a retry queue that every taker empties first, with the nodes of its failed
//! attempts (see [`Retry`]).

use crate::backlog::{Backlog, Sleepers};
use crate::error::{Error, JobError};
use crate::job::{Completion, Polling, MAX_IDLE_CORE_WAIT, SPIN};
use crate::pending::{wait_until, Pending};
use crate::remote::QueueWaker;
use crate::runnable::Runnable;
use crate::stats::{Counters, ExecutorStats, LocalStats};
use crossbeam_deque::{Injector, Steal};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How many empty polls a drainer makes before it gives its slot back: enough to catch a
/// job submitted right behind the last one without a new rayon spawn.
const IDLE_POLLS: u32 = 256;

thread_local! {
    /// Id of the server whose worker this thread is (0 for other threads).
    static WORKER_OF: Cell<u64> = const { Cell::new(0) };
}

struct Threads {
    pool: Option<Arc<rayon::ThreadPool>>,
    generation: u64,
}

/// Join handles of every worker thread this server started, across all its pools.
type WorkerThreads = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// A job given back by a remote executor, waiting in the retry queue.
pub(crate) struct Retry {
    pub(crate) job: Box<dyn Runnable>,
    /// The nodes of the job's failed attempts so far (lost node or dead worker), in order:
    /// what the attempt limit counts.
    pub(crate) failed_on: Vec<String>,
}

/// State shared by the [`Server`](crate::Server) handle and its drainers.
pub(crate) struct Core {
    id: u64,
    queue: Injector<Box<dyn Runnable>>,
    /// Jobs that only local workers may run (they borrow the caller's data).
    local_queue: Injector<Box<dyn Runnable>>,
    /// Jobs given back by remote executors: they run before anything newer.
    retry: Mutex<VecDeque<Retry>>,
    retry_len: AtomicUsize,
    /// Called on every enqueue once a remote executor is attached.
    wakers: RwLock<Vec<QueueWaker>>,
    has_wakers: AtomicBool,
    executors: Mutex<Vec<Arc<Counters>>>,
    ncpus: AtomicUsize,
    active: AtomicUsize,
    generation: AtomicU64,
    threads: RwLock<Threads>,
    workers: WorkerThreads,
    shutdown: AtomicBool,
    /// Threads waiting for a result while the queue has a backlog (see [`crate::backlog`]).
    sleepers: Sleepers,
    idle: Mutex<()>,
    no_active: Condvar,
    pub(crate) pending: Pending,
    pub(crate) groups: Mutex<HashMap<String, Arc<Pending>>>,
    pub(crate) stats: LocalStats,
    pub(crate) created: Instant,
    /// Cores available to the process when the server started.
    cores: usize,
}

impl Core {
    /// Starts the pool; `ncpus` may be zero only when remote executors will run the jobs.
    pub(crate) fn start(ncpus: usize, remote: bool) -> Result<Arc<Core>, Error> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        if ncpus == 0 && !remote {
            return Err(Error::InvalidNcpus(0));
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let workers = WorkerThreads::default();
        let pool = build_pool(id, ncpus.max(1), &workers)?;
        Ok(Arc::new(Core {
            id,
            queue: Injector::new(),
            local_queue: Injector::new(),
            retry: Mutex::new(VecDeque::new()),
            retry_len: AtomicUsize::new(0),
            wakers: RwLock::new(Vec::new()),
            has_wakers: AtomicBool::new(false),
            executors: Mutex::new(Vec::new()),
            ncpus: AtomicUsize::new(ncpus),
            active: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            threads: RwLock::new(Threads {
                pool: Some(Arc::new(pool)),
                generation: 0,
            }),
            workers,
            shutdown: AtomicBool::new(false),
            sleepers: Sleepers::default(),
            idle: Mutex::new(()),
            no_active: Condvar::new(),
            pending: Pending::default(),
            groups: Mutex::new(HashMap::new()),
            stats: LocalStats::default(),
            created: Instant::now(),
            cores: crate::server::available_cores(),
        }))
    }

    pub(crate) fn ncpus(&self) -> usize {
        self.ncpus.load(Ordering::SeqCst)
    }

    /// How a thread waiting for a job's result should poll before it parks, decided when
    /// the job is submitted:
    /// - no local workers: not at all behind queued jobs; else, giving the CPU away between
    ///   polls from the start, about twice the fastest node's average round trip (at least
    ///   [`SPIN`], at most [`MAX_IDLE_CORE_WAIT`]);
    /// - fewer workers than cores: a core is idle, so polling costs nothing and spares the
    ///   worker a wake-up: about twice the average job's run time (at most
    ///   [`MAX_IDLE_CORE_WAIT`]);
    /// - otherwise, with enough queued work to keep every worker busy: no polling at all, as
    ///   a polling waiter would take a worker's core;
    /// - otherwise the short [`SPIN`], which catches a lone short job without a wake-up.
    pub(crate) fn waiter_poll(&self) -> Polling {
        let ncpus = self.ncpus();
        if ncpus == 0 {
            // Every job goes to a node. Behind queued jobs a polling waiter would only take
            // a core from the network thread (or, on one machine, from the node and its
            // workers). A lone job is a chain of hops that runs on one core at a time, so
            // polling about as long as a node's round trip spares the last wake-up; the
            // waiter yields between polls from the start, since the hops may need its CPU
            // (pinned to one CPU, a 20 µs spin first made a lone job 38 µs instead of 20).
            if self.queued() > 0 {
                return Polling::spinning(Duration::ZERO);
            }
            let executors = self.executors.lock().unwrap_or_else(|e| e.into_inner());
            let fastest = executors
                .iter()
                .map(|c| c.average())
                .filter(|d| !d.is_zero())
                .min();
            let time = fastest.map_or(SPIN, |d| {
                d.saturating_mul(2).clamp(SPIN, MAX_IDLE_CORE_WAIT)
            });
            return Polling {
                time,
                yielding: true,
            };
        }
        Polling::spinning(if ncpus < self.cores {
            let typical = self.stats.local.average().saturating_mul(2);
            typical.clamp(SPIN, MAX_IDLE_CORE_WAIT)
        } else if self.queued() >= ncpus {
            Duration::ZERO
        } else {
            SPIN
        })
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len() + self.local_queue.len() + self.retry_len.load(Ordering::SeqCst)
    }

    fn has_work(&self) -> bool {
        !self.queue.is_empty()
            || !self.local_queue.is_empty()
            || self.retry_len.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Queues a job (already counted in `pending`) and makes sure a drainer will see it.
    pub(crate) fn enqueue(self: &Arc<Self>, job: Box<dyn Runnable>) {
        if self.shutdown.load(Ordering::SeqCst) {
            self.cancel(job);
            return;
        }
        if job.local_only() {
            self.local_queue.push(job);
            self.wake();
        } else {
            self.queue.push(job);
            self.wake();
            self.wake_remote();
        }
    }

    fn wake_remote(&self) {
        if self.has_wakers.load(Ordering::Acquire) {
            let queued = self.queued();
            for waker in self.wakers.read().unwrap_or_else(|e| e.into_inner()).iter() {
                waker(queued);
            }
        }
    }

    pub(crate) fn add_waker(&self, waker: QueueWaker) {
        self.wakers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(waker);
        self.has_wakers.store(true, Ordering::Release);
    }

    pub(crate) fn add_executor(&self, counters: Arc<Counters>) {
        self.executors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counters);
    }

    /// Statistics rows of the local pool and every remote executor.
    pub(crate) fn executor_stats(&self) -> Vec<ExecutorStats> {
        let mut rows = vec![self.stats.local.snapshot()];
        let executors = self.executors.lock().unwrap_or_else(|e| e.into_inner());
        rows.extend(executors.iter().map(|c| c.snapshot()));
        rows
    }

    /// A job for a remote executor, with the nodes of its failed attempts; `None` once
    /// shutting down.
    pub(crate) fn take_for_remote(&self) -> Option<Retry> {
        if self.is_shut_down() {
            return None;
        }
        let job = self.pop_retry().or_else(|| {
            steal(&self.queue).map(|job| Retry {
                job,
                failed_on: Vec::new(),
            })
        });
        self.took();
        job
    }

    /// After a job left the queue: wakes the threads sleeping on a backlog once there is
    /// none left.
    fn took(&self) {
        if self.sleepers.any() && !self.busy() {
            self.sleepers.wake_all();
        }
    }

    /// Bookkeeping after a remote executor completed a job: counts it finished if this
    /// completion is the one that stored its result (not a copy that came second).
    pub(crate) fn finished_remote(&self, completion: Completion) {
        if let Completion::Stored { callback_panic } = completion {
            if let Some(message) = callback_panic {
                self.stats.callback_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%message, "job callback panicked; the job still counts as finished");
            }
            self.pending.done();
        }
    }

    /// Fails a job taken by a remote executor without a result (its attempts are used up).
    pub(crate) fn fail_remote(&self, job: Box<dyn Runnable>, error: JobError) {
        if let Completion::Stored { .. } = job.fail(error) {
            self.pending.done();
        }
    }

    /// Puts a job given back by a remote executor at the front of the queue (behind other
    /// jobs given back); returns false if it was cancelled instead, the server shutting down.
    pub(crate) fn requeue(self: &Arc<Self>, job: Retry) -> bool {
        if self.is_shut_down() {
            self.cancel(job.job);
            return false;
        }
        let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
        retry.push_back(job);
        self.retry_len.store(retry.len(), Ordering::SeqCst);
        drop(retry);
        self.wake();
        self.wake_remote();
        true
    }

    /// Resizes the pool; queued jobs stay queued in order.
    pub(crate) fn set_ncpus(self: &Arc<Self>, ncpus: usize) -> Result<(), Error> {
        if ncpus == 0 {
            return Err(Error::InvalidNcpus(0));
        }
        let mut threads = self.threads.write().unwrap_or_else(|e| e.into_inner());
        if threads.pool.is_none() {
            return Ok(());
        }
        let pool = build_pool(self.id, ncpus, &self.workers)?;
        threads.pool = Some(Arc::new(pool));
        threads.generation += 1;
        self.generation.store(threads.generation, Ordering::SeqCst);
        self.ncpus.store(ncpus, Ordering::SeqCst);
        drop(threads);
        tracing::debug!(ncpus, "local pool resized");
        while self.has_work() && self.wake() {}
        Ok(())
    }

    /// Starts a drainer if a slot is free; returns whether it did.
    fn wake(self: &Arc<Self>) -> bool {
        if !self.try_take_slot() {
            return false;
        }
        let threads = self.threads.read().unwrap_or_else(|e| e.into_inner());
        match &threads.pool {
            Some(pool) if !self.shutdown.load(Ordering::SeqCst) => {
                let core = Arc::clone(self);
                let generation = threads.generation;
                pool.spawn(move || core.drain(generation));
                true
            }
            _ => {
                drop(threads);
                self.release_slot();
                false
            }
        }
    }

    fn try_take_slot(&self) -> bool {
        let mut active = self.active.load(Ordering::SeqCst);
        loop {
            if active >= self.ncpus.load(Ordering::SeqCst) {
                return false;
            }
            match self.active.compare_exchange_weak(
                active,
                active + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => active = now,
            }
        }
    }

    fn release_slot(&self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 && self.shutdown.load(Ordering::SeqCst) {
            let _guard = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            self.no_active.notify_all();
        }
    }

    /// The next job for a local worker: retried jobs, then local-only ones, then the rest.
    fn pop(&self) -> Option<Box<dyn Runnable>> {
        let job = self
            .pop_retry()
            .map(|retry| retry.job)
            .or_else(|| steal(&self.local_queue))
            .or_else(|| steal(&self.queue));
        if job.is_some() {
            self.took();
        }
        job
    }

    fn pop_retry(&self) -> Option<Retry> {
        if self.retry_len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
        let job = retry.pop_front();
        self.retry_len.store(retry.len(), Ordering::SeqCst);
        job
    }

    fn retiring(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Relaxed) != generation
            || self.shutdown.load(Ordering::Relaxed)
    }

    /// The body of a drainer: run queued jobs until the queue stays empty.
    fn drain(self: Arc<Self>, generation: u64) {
        loop {
            while let Some(job) = self.pop() {
                self.run(job);
                if self.retiring(generation) {
                    self.release_slot();
                    if self.has_work() {
                        self.wake();
                    }
                    return;
                }
            }
            if (0..IDLE_POLLS).any(|_| {
                std::hint::spin_loop();
                self.has_work()
            }) {
                continue;
            }
            self.release_slot();
            // A job pushed after our last look may have seen every slot taken: look again.
            if !self.has_work() || self.retiring(generation) || !self.try_take_slot() {
                if self.has_work() {
                    self.wake();
                }
                return;
            }
        }
    }

    fn run(&self, job: Box<dyn Runnable>) {
        let task = job.task_id();
        self.stats.running.fetch_add(1, Ordering::Relaxed);
        let completion = job.run(&self.stats.local);
        self.stats.running.fetch_sub(1, Ordering::Relaxed);
        if let Completion::Stored { callback_panic } = completion {
            if let Some(message) = callback_panic {
                self.stats.callback_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(task, %message, "job callback panicked; the job still counts as finished");
            }
            self.pending.done();
        }
    }

    fn cancel(&self, job: Box<dyn Runnable>) {
        let task = job.task_id().to_owned();
        if let Completion::Stored { .. } = job.fail(JobError::Cancelled { task }) {
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
            self.pending.done();
        }
    }

    /// Stops the pool: queued jobs fail with `Cancelled`, running ones finish, threads exit.
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        while let Some(job) = self.pop() {
            self.cancel(job);
        }
        self.sleepers.wake_all();
        let on_own_worker = WORKER_OF.with(Cell::get) == self.id;
        if on_own_worker {
            tracing::debug!("server dropped by one of its own jobs; not waiting for its workers");
        } else {
            wait_until(&self.idle, &self.no_active, None, |_| {
                self.active.load(Ordering::SeqCst) == 0
            });
        }
        let pool = self
            .threads
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .pool
            .take();
        drop(pool);
        if !on_own_worker {
            let handles =
                std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
            for handle in handles {
                // The pool is gone and no drainer is active, so each thread is exiting.
                if handle.join().is_err() {
                    tracing::warn!("a worker thread panicked while exiting");
                }
            }
        }
    }
}

impl Backlog for Core {
    fn busy(&self) -> bool {
        let ncpus = self.ncpus();
        ncpus > 0 && self.queued() >= ncpus
    }

    fn sleepers(&self) -> &Sleepers {
        &self.sleepers
    }
}

fn steal(queue: &Injector<Box<dyn Runnable>>) -> Option<Box<dyn Runnable>> {
    loop {
        match queue.steal() {
            Steal::Success(job) => return Some(job),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
}

fn build_pool(
    id: u64,
    threads: usize,
    workers: &WorkerThreads,
) -> Result<rayon::ThreadPool, Error> {
    let workers = Arc::clone(workers);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .spawn_handler(move |thread| {
            let name = format!("pp-worker-{}", thread.index());
            let handle = std::thread::Builder::new().name(name).spawn(move || {
                WORKER_OF.with(|w| w.set(id));
                thread.run();
            })?;
            let mut workers = workers.lock().unwrap_or_else(|e| e.into_inner());
            // Threads of pools replaced by `set_ncpus` end on their own; forget those.
            workers.retain(|h| !h.is_finished());
            workers.push(handle);
            Ok(())
        })
        .build()
        .map_err(|source| Error::ThreadPool { threads, source })
}
