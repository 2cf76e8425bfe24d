//! [`LocalPool`]: the local workers, drainer tasks on a rayon thread pool the server owns,
//! taking jobs from the server's [`JobQueue`].
//!
//! A "drainer" is a rayon task that pops and runs jobs until the queue stays empty. At most
//! `ncpus` drainers hold a slot at once, so at most `ncpus` jobs run at once. Changing
//! `ncpus` builds a new rayon pool of that size and bumps a generation number: drainers of
//! the old generation finish the job in hand and retire, handing their slot to the new
//! pool. The queue itself never changes, so no job is lost or reordered.
//!
//! Jobs submitted from inside a job of this pool (sub-jobs) do not go to the server's
//! queue but to the pool's own `nested` deque, which drainers take first and which a
//! drainer waiting for a result runs meanwhile: see [`crate::helping`] (help-while-waiting,
//! and why sub-jobs stay on this machine only when the server has no nodes).

use crate::backlog::Sleepers;
use crate::error::{Error, JobError};
use crate::executor::{Executor, QueueView};
use crate::helping::{self, FrameId};
use crate::job::Completion;
use crate::job::{Polling, MAX_IDLE_CORE_WAIT, SPIN};
use crate::pending::wait_until;
use crate::queue::JobQueue;
use crate::queued_job::QueuedJob;
use crate::running::Running;
use crate::stats::{ExecutorCounters, ExecutorStats};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// Sub-jobs waiting to run, oldest first (see [`crate::helping`]).
pub(crate) type Nested = VecDeque<(FrameId, Box<dyn QueuedJob>)>;

/// Which sub-job [`LocalPool::pop_nested`] takes.
#[derive(Clone, Copy)]
pub(crate) enum Pick {
    /// The oldest of any job: what an idle drainer runs.
    Oldest,
    /// The newest sub-job of the job whose frame this is: what a job waiting for its own
    /// sub-jobs runs meanwhile (see [`crate::helping`]).
    NewestOf(FrameId),
}

/// Join handles of every worker thread this server started, across all its pools.
type WorkerThreads = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// A server's local workers. The queue holds the pool (to notify it); the pool holds the
/// queue weakly, and each running drainer strongly.
pub(crate) struct LocalPool {
    id: u64,
    queue: Weak<JobQueue>,
    /// This pool, for the drainers it spawns.
    me: Weak<LocalPool>,
    ncpus: AtomicUsize,
    active: AtomicUsize,
    generation: AtomicU64,
    threads: RwLock<Threads>,
    workers: WorkerThreads,
    stopping: AtomicBool,
    idle: Mutex<()>,
    no_active: Condvar,
    /// The `local` row of the statistics.
    counters: ExecutorCounters,
    /// Cores available to the process when the server started.
    cores: usize,
    /// Sub-jobs: jobs submitted by this pool's own drainers (see [`crate::helping`]).
    nested: Mutex<Nested>,
    nested_len: AtomicUsize,
    /// Drainers waiting for a result with no sub-job to run: woken when one comes.
    helpers: Sleepers,
    /// The jobs running on the worker threads, for `cancel_all`.
    running: Arc<Running>,
}

impl LocalPool {
    /// Starts the pool on `queue` and attaches it there; `ncpus` may be zero only when
    /// remote executors will run the jobs.
    pub(crate) fn start(
        queue: &Arc<JobQueue>,
        ncpus: usize,
        remote: bool,
    ) -> Result<Arc<LocalPool>, Error> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        if ncpus == 0 && !remote {
            return Err(Error::InvalidNcpus(0));
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let workers = WorkerThreads::default();
        let running = Arc::new(Running::default());
        let threads = build_threads(id, ncpus.max(1), &workers, &running)?;
        let pool = Arc::new_cyclic(|me| LocalPool {
            id,
            queue: Arc::downgrade(queue),
            me: me.clone(),
            ncpus: AtomicUsize::new(ncpus),
            active: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            threads: RwLock::new(Threads {
                pool: Some(Arc::new(threads)),
                generation: 0,
            }),
            workers,
            stopping: AtomicBool::new(false),
            idle: Mutex::new(()),
            no_active: Condvar::new(),
            counters: ExecutorCounters::new("local"),
            cores: available_cores(),
            nested: Mutex::new(VecDeque::new()),
            nested_len: AtomicUsize::new(0),
            helpers: Sleepers::default(),
            running,
        });
        queue.set_local_workers(ncpus);
        queue.attach_local(Arc::clone(&pool) as Arc<dyn Executor>);
        Ok(pool)
    }

    pub(crate) fn ncpus(&self) -> usize {
        self.ncpus.load(Ordering::SeqCst)
    }

    /// The `local` row's counters, which chunks run by a waiting caller count in too.
    pub(crate) fn counters(&self) -> &ExecutorCounters {
        &self.counters
    }

    /// How a thread waiting for a job's result should poll before it parks, decided when
    /// the job is submitted: the first stage of the waiting policy (see [`crate::job`]).
    pub(crate) fn waiter_poll(&self, queue: &JobQueue) -> Polling {
        let ncpus = self.ncpus();
        if ncpus == 0 {
            // Every job goes to a node. Behind queued jobs a polling waiter would only take
            // a core from the network thread (or, on one machine, from the node and its
            // workers). A lone job is a chain of hops that runs on one core at a time, so
            // polling about as long as a node's round trip spares the last wake-up; the
            // waiter yields between polls from the start, since the hops may need its CPU
            // (pinned to one CPU, a 20 µs spin first made a lone job 38 µs instead of 20).
            if queue.queued() > 0 {
                return Polling::spinning(Duration::ZERO);
            }
            let time = queue.fastest_remote_average().map_or(SPIN, |d| {
                d.saturating_mul(2).clamp(SPIN, MAX_IDLE_CORE_WAIT)
            });
            return Polling::new(time, true);
        }
        Polling::spinning(if ncpus < self.cores {
            let typical = self.counters.average().saturating_mul(2);
            typical.clamp(SPIN, MAX_IDLE_CORE_WAIT)
        } else if queue.queued() >= ncpus {
            Duration::ZERO
        } else {
            SPIN
        })
    }

    /// Resizes the pool; queued jobs stay queued in order. Zero only with remote
    /// executors: the drainers finish the job in hand and retire.
    pub(crate) fn set_ncpus(&self, ncpus: usize) -> Result<(), Error> {
        let Some(queue) = self.queue.upgrade() else {
            return Ok(());
        };
        if ncpus == 0 && !queue.has_remote() {
            return Err(Error::InvalidNcpus(0));
        }
        let mut threads = self.threads.write().unwrap_or_else(|e| e.into_inner());
        if threads.pool.is_none() {
            return Ok(());
        }
        let pool = build_threads(self.id, ncpus.max(1), &self.workers, &self.running)?;
        threads.pool = Some(Arc::new(pool));
        threads.generation += 1;
        self.generation.store(threads.generation, Ordering::SeqCst);
        self.ncpus.store(ncpus, Ordering::SeqCst);
        queue.set_local_workers(ncpus);
        drop(threads);
        crate::debug!(ncpus, "local pool resized");
        while self.has_work(&queue) && self.wake() {}
        Ok(())
    }

    /// Starts a drainer if a slot is free; returns whether it did.
    fn wake(&self) -> bool {
        if !self.try_take_slot() {
            return false;
        }
        let threads = self.threads.read().unwrap_or_else(|e| e.into_inner());
        let (me, queue) = (self.me.upgrade(), self.queue.upgrade());
        match (&threads.pool, me, queue) {
            (Some(pool), Some(me), Some(queue))
                if !self.stopping.load(Ordering::SeqCst) && !queue.is_shut_down() =>
            {
                let generation = threads.generation;
                pool.spawn(move || me.drain(&queue, generation));
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
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 && self.stopping.load(Ordering::SeqCst) {
            let _guard = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            self.no_active.notify_all();
        }
    }

    /// Whether a drainer has something to take: a sub-job or a queued job.
    fn has_work(&self, queue: &JobQueue) -> bool {
        self.nested_len.load(Ordering::SeqCst) > 0 || queue.has_work()
    }

    /// The next job for a drainer: the oldest sub-job (its parent holds a worker while it
    /// waits), else the queue's next job.
    fn pop(&self, queue: &JobQueue) -> Option<Box<dyn QueuedJob>> {
        if self.nested_len.load(Ordering::SeqCst) > 0 {
            if let Some(job) = self.pop_nested(Pick::Oldest) {
                return Some(job);
            }
        }
        queue.pop_local()
    }

    /// A sub-job, as `pick` says; sub-jobs cancelled while queued are dropped on the way.
    pub(crate) fn pop_nested(&self, pick: Pick) -> Option<Box<dyn QueuedJob>> {
        loop {
            let mut nested = self.nested.lock().unwrap_or_else(|e| e.into_inner());
            let job = match pick {
                Pick::Oldest => nested.pop_front(),
                Pick::NewestOf(frame) => nested
                    .iter()
                    .rposition(|(parent, _)| *parent == frame)
                    .and_then(|at| nested.remove(at)),
            }
            .map(|(_, job)| job);
            self.nested_len.store(nested.len(), Ordering::SeqCst);
            drop(nested);
            let job = job?;
            if job.take(false) {
                return Some(job);
            }
            if let Some(queue) = self.queue.upgrade() {
                queue.skipped_settled();
            }
        }
    }

    /// Cancels the sub-jobs waiting to run (`cancel_all`); the pieces of other work (`par!`
    /// chunks, `map` batches) stay where they are. Returns how many this settled.
    pub(crate) fn cancel_nested(&self, queue: &JobQueue) -> usize {
        let jobs: Nested = {
            let mut nested = self.nested.lock().unwrap_or_else(|e| e.into_inner());
            let (jobs, others): (Nested, Nested) =
                nested.drain(..).partition(|(_, job)| job.is_job());
            *nested = others;
            self.nested_len.store(nested.len(), Ordering::SeqCst);
            jobs
        };
        queue.cancel_taken_out(jobs.into_iter().map(|(_, job)| job))
    }

    /// Whether a sub-job of the job whose frame is `frame` waits to run.
    pub(crate) fn has_sub_job_of(&self, frame: FrameId) -> bool {
        let nested = self.nested.lock().unwrap_or_else(|e| e.into_inner());
        nested.iter().any(|(parent, _)| *parent == frame)
    }

    /// Sub-jobs waiting to run.
    pub(crate) fn nested_queued(&self) -> usize {
        self.nested_len.load(Ordering::SeqCst)
    }

    /// The drainers waiting for a result with nothing to help with.
    pub(crate) fn helpers(&self) -> &Sleepers {
        &self.helpers
    }

    /// Whether the calling thread is one of this pool's drainers, running a job.
    pub(crate) fn is_own_drainer(&self) -> bool {
        helping::current().is_some_and(|drainer| std::ptr::eq(drainer.pool, self))
    }

    /// The jobs running on this pool's threads.
    pub(crate) fn running(&self) -> &Running {
        &self.running
    }

    /// Queues `job` (already counted in `pending`): a sub-job submitted by one of this
    /// pool's drainers goes to the pool's own deque (see [`crate::helping`]), unless the
    /// server has nodes and the job may run there; any other job goes to the queue.
    pub(crate) fn submit(&self, queue: &JobQueue, job: Box<dyn QueuedJob>) {
        self.submit_from(queue, job, self.is_own_drainer());
    }

    /// [`submit`](LocalPool::submit) by a caller that knows whether it is one of this
    /// pool's drainers (`own`: [`is_own_drainer`](LocalPool::is_own_drainer)).
    pub(crate) fn submit_from(&self, queue: &JobQueue, job: Box<dyn QueuedJob>, own: bool) {
        if !own || (queue.has_remote() && !job.local_only()) {
            queue.push(job);
            return;
        }
        if queue.is_shut_down() {
            self.cancel(queue, job);
            return;
        }
        {
            let mut nested = self.nested.lock().unwrap_or_else(|e| e.into_inner());
            nested.push_back((helping::frame_id(), job));
            self.nested_len.store(nested.len(), Ordering::SeqCst);
        }
        // A drainer waiting for a result may be idle: it runs the job at once.
        if self.helpers.any() {
            self.helpers.wake_all();
        }
        self.wake();
    }

    /// Fails a job that never ran with [`JobError::Cancelled`] (the server shuts down).
    fn cancel(&self, queue: &JobQueue, job: Box<dyn QueuedJob>) {
        let task = job.task_id();
        let completion = job.fail(JobError::Cancelled {
            task: task.to_owned(),
        });
        if let Completion::Stored { .. } = completion {
            queue.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        queue.finished(completion, task);
    }

    fn retiring(&self, queue: &JobQueue, generation: u64) -> bool {
        self.generation.load(Ordering::Relaxed) != generation || queue.is_shut_down()
    }

    /// The body of a drainer: run queued jobs until the queue stays empty.
    fn drain(&self, queue: &JobQueue, generation: u64) {
        let _drainer = helping::enter(self, queue);
        let _clock = crate::clock::chain();
        loop {
            while let Some(job) = self.pop(queue) {
                self.run(queue, job);
                if self.retiring(queue, generation) {
                    self.release_slot();
                    if self.has_work(queue) {
                        self.wake();
                    }
                    return;
                }
            }
            // Idle polls are no job's time.
            crate::clock::break_chain();
            if (0..IDLE_POLLS).any(|_| {
                std::hint::spin_loop();
                self.has_work(queue)
            }) {
                continue;
            }
            self.release_slot();
            // A job pushed after our last look may have seen every slot taken: look again.
            if !self.has_work(queue) || self.retiring(queue, generation) || !self.try_take_slot() {
                if self.has_work(queue) {
                    self.wake();
                }
                return;
            }
        }
    }

    /// Runs one job. It counts as running (in `counters`) only while its function runs,
    /// which ends before its result is stored: a reader woken by the result never sees it
    /// still running. The job's sub-jobs are counted for `wait()` inside it (a frame of
    /// [`crate::helping`]). A job with a time limit has its deadline armed as it starts.
    pub(crate) fn run(&self, queue: &JobQueue, job: Box<dyn QueuedJob>) {
        let task = job.task_id();
        if let Some((slot, limit)) = job.deadline() {
            queue.deadlines.arm(slot, limit);
        }
        let completion = helping::in_frame(|| job.run(&self.counters));
        queue.finished(completion, task);
    }
}

impl Executor for LocalPool {
    fn notify(&self, _queue: QueueView<'_>) {
        self.wake();
    }

    fn stats_rows(&self, rows: &mut Vec<ExecutorStats>) {
        rows.push(self.counters.snapshot());
    }

    /// Lets running jobs finish and joins every worker thread (the queue is closed
    /// already, its jobs cancelled).
    fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Sub-jobs not started are cancelled like the queue's jobs, which releases the jobs
        // waiting for them.
        if let Some(queue) = self.queue.upgrade() {
            while let Some(job) = self.pop_nested(Pick::Oldest) {
                self.cancel(&queue, job);
            }
        }
        self.helpers.wake_all();
        let on_own_worker = WORKER_OF.with(Cell::get) == self.id;
        if on_own_worker {
            crate::debug!("server dropped by one of its own jobs; not waiting for its workers");
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
                    crate::warn!("a worker thread panicked while exiting");
                }
            }
        }
    }
}

/// Number of cores this process may use (at least 1).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn build_threads(
    id: u64,
    threads: usize,
    workers: &WorkerThreads,
    running: &Arc<Running>,
) -> Result<rayon::ThreadPool, Error> {
    let workers = Arc::clone(workers);
    let running = Arc::clone(running);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        // Room for the jobs a waiting worker runs on its stack (see `crate::helping`).
        .stack_size(helping::WORKER_STACK)
        .spawn_handler(move |thread| {
            let name = format!("pp-worker-{}", thread.index());
            let running = Arc::clone(&running);
            let handle = std::thread::Builder::new().name(name).spawn(move || {
                WORKER_OF.with(|w| w.set(id));
                running.adopt_thread();
                drop(running);
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
