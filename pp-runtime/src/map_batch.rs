//! The local jobs of [`Server::map`](crate::Server::map): one job runs the task on a batch
//! of inputs, and a batch not started yet can be taken back by the caller, which runs it
//! itself while it would otherwise wait (as rayon's caller works inside `install`).
//!
//! Whoever starts a batch first wins it: a worker when it pops the job, or the caller when
//! it takes the batch back ([`Server::take_back`]). The caller then claims the job's
//! result slot and counts the job done and no longer queued itself, as a cancel of a
//! queued job does; the worker that pops the job later drops it without running it. A
//! batch is never run twice and its result never stored twice.

use crate::codec::CodecError;
use crate::error::{panic_message, JobError};
use crate::job::{Completion, Job, JobState};
use crate::queued_job::QueuedJob;
use crate::server::Server;
use crate::stats::ExecutorCounters;
use crate::task::{Task, TaskFn};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a batch gives back: the values of the inputs that succeeded, in order, the failed
/// ones' positions and errors (kept apart, so that yielding a value moves just the value),
/// and the batch's run time.
pub(crate) struct Batch<R> {
    pub(crate) values: Vec<R>,
    pub(crate) errors: VecDeque<(usize, JobError)>,
    pub(crate) took: Duration,
}

/// [`BatchArgs::owner`]: queued, no one started the batch.
const QUEUED: u8 = 0;
/// A worker took the job from the queue.
const WORKER: u8 = 1;
/// The caller took the batch back.
const CALLER: u8 = 2;

/// A batch's inputs, held by its job and by the caller until one of them starts it.
pub(crate) struct BatchArgs<A> {
    /// Who started the batch: [`QUEUED`], [`WORKER`] or [`CALLER`].
    owner: AtomicU8,
    args: Mutex<Option<Vec<A>>>,
}

impl<A> BatchArgs<A> {
    fn new(args: Vec<A>) -> Self {
        BatchArgs {
            owner: AtomicU8::new(QUEUED),
            args: Mutex::new(Some(args)),
        }
    }

    /// Whether a worker or the caller started the batch.
    pub(crate) fn is_started(&self) -> bool {
        self.owner.load(Ordering::Acquire) != QUEUED
    }

    /// Makes `who` the batch's owner if no one started it yet; whether it did.
    fn start(&self, who: u8) -> bool {
        (self.owner)
            .compare_exchange(QUEUED, who, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The inputs, for the batch's owner (once).
    fn take(&self) -> Vec<A> {
        (self.args.lock().unwrap_or_else(|e| e.into_inner()).take()).unwrap_or_default()
    }
}

/// Runs `task` on every input of `args`; a panic fails its input only. One `catch_unwind`
/// for the whole batch, resumed after the input that panicked: a tiny task pays nothing
/// per input for it.
fn run_inputs<F: TaskFn>(task: Task<F>, args: Vec<F::Args>) -> Batch<F::Output> {
    let mut values = Vec::with_capacity(args.len());
    let mut errors = VecDeque::new();
    let mut args = args.into_iter();
    let function = *task.function();
    loop {
        let run = catch_unwind(AssertUnwindSafe(|| {
            for input in args.by_ref() {
                values.push(function.call(input));
            }
        }));
        match run {
            Ok(()) => break,
            Err(payload) => {
                let at = values.len() + errors.len();
                errors.push_back((
                    at,
                    JobError::Panicked {
                        task: task.id().to_owned(),
                        message: panic_message(payload.as_ref()),
                    },
                ));
            }
        }
    }
    Batch {
        values,
        errors,
        took: Duration::ZERO,
    }
}

/// A batch job queued for a local worker, and what its caller keeps of it.
pub(crate) struct Queued<F: TaskFn> {
    pub(crate) job: Job<Batch<F::Output>>,
    pub(crate) args: Arc<BatchArgs<F::Args>>,
    state: Arc<JobState<Batch<F::Output>>>,
}

impl Server {
    /// Queues a batch job of `task` on `args`.
    pub(crate) fn enqueue_batch<F: TaskFn>(&self, task: Task<F>, args: Vec<F::Args>) -> Queued<F> {
        let state = Arc::new(JobState::with_poll(self.pool.waiter_poll(&self.queue)));
        let args = Arc::new(BatchArgs::new(args));
        self.queue.pending.add();
        self.pool.submit(
            &self.queue,
            Box::new(BatchJob {
                task,
                args: Arc::clone(&args),
                state: Arc::clone(&state),
            }),
        );
        let job = Job::on_queue(Arc::clone(&state), task.id(), Arc::downgrade(&self.queue))
            .with_progress(self.progress.clone());
        Queued { job, args, state }
    }

    /// Runs the batch of `queued` on the calling thread if no worker started it yet; its
    /// result then, else `None` (a worker has it, or the job was settled otherwise).
    pub(crate) fn take_back<F: TaskFn>(
        &self,
        task: Task<F>,
        queued: &Queued<F>,
    ) -> Option<Result<Batch<F::Output>, JobError>> {
        if !queued.args.start(CALLER) || !queued.state.claim() {
            // A worker has it, or it was settled while queued (the server shut down):
            // that result stands.
            return None;
        }
        // No longer queued: the worker that pops the job drops it.
        self.queue.settled_outside();
        let counters = self.pool.counters();
        let (mut batch, took) = counters.timed(|| run_inputs(task, queued.args.take()));
        counters.record(took);
        batch.took = took;
        // Done as far as the server's count of jobs goes (`Server::wait`).
        self.queue.pending.done();
        Some(Ok(batch))
    }
}

/// A local job running a task on a batch of inputs.
struct BatchJob<F: TaskFn> {
    task: Task<F>,
    args: Arc<BatchArgs<F::Args>>,
    state: Arc<JobState<Batch<F::Output>>>,
}

impl<F: TaskFn> QueuedJob for BatchJob<F> {
    fn task_id(&self) -> &'static str {
        self.task.id()
    }

    /// Taken by a worker unless the caller took the batch back or the job was settled
    /// while queued: the taker then drops the job, as one cancelled while queued.
    fn take(&self, _remote: bool) -> bool {
        self.args.start(WORKER) && !self.state.is_claimed()
    }

    fn run(self: Box<Self>, counters: &ExecutorCounters) -> Completion {
        let args = self.args.take();
        let (mut batch, took) = counters.timed(|| run_inputs(self.task, args));
        if !self.state.claim() {
            return Completion::Duplicate;
        }
        counters.record(took);
        batch.took = took;
        let callback_panic = self.state.store(Ok(batch));
        Completion::Stored { callback_panic }
    }

    fn fail(self: Box<Self>, error: JobError) -> Completion {
        // A batch the caller took back is its own: nothing to fail.
        self.args.start(WORKER);
        if self.args.owner.load(Ordering::Acquire) == CALLER || !self.state.claim() {
            return Completion::Duplicate;
        }
        let callback_panic = self.state.store(Err(error));
        Completion::Stored { callback_panic }
    }

    fn local_only(&self) -> bool {
        true
    }

    fn encode_args(&self) -> Result<Vec<u8>, CodecError> {
        Err(CodecError::new(
            "a batch of `map` runs only in its own process",
        ))
    }
}
