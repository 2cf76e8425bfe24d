//! [`Server::map`]: a task over many inputs, results in input order, with a bound on the
//! jobs in flight so that inputs are read only as results are taken (mapping over 100
//! million inputs never queues them all).
//!
//! Locally the inputs travel in batches: one job runs the task on several inputs, so that
//! a tiny task does not pay a job's cost per input. The batch size adapts: it doubles
//! while a batch runs in less than half of [`BATCH_TIME`] and halves when one takes more
//! than twice that, between 1 and [`MAX_BATCH`]. In cluster mode each input is one job
//! (nodes run jobs from bytes, one task call each).

use crate::codec::CodecError;
use crate::error::{panic_message, JobError};
use crate::job::{Completion, Job, JobState};
use crate::queued_job::QueuedJob;
use crate::server::Server;
use crate::stats::ExecutorCounters;
use crate::task::{Task, TaskFn};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long a batch should run: long enough that the cost of a job (some microseconds)
/// is small beside it, short enough that the workers share the inputs evenly.
const BATCH_TIME: Duration = Duration::from_micros(200);

/// The most inputs in one batch.
const MAX_BATCH: usize = 1 << 14;

/// Jobs in flight per worker (local or on a node) when [`MapOptions::in_flight`] is not set.
const IN_FLIGHT_PER_WORKER: usize = 4;

/// Options of [`Server::map_with`].
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct MapOptions {
    in_flight: Option<usize>,
    batch: Option<usize>,
}

impl MapOptions {
    /// The defaults: 4 jobs in flight per worker (local workers and the nodes' workers),
    /// batches sized to the task's run time.
    pub fn new() -> Self {
        MapOptions::default()
    }

    /// At most `jobs` jobs submitted and not yet yielded (at least 1).
    pub fn in_flight(mut self, jobs: usize) -> Self {
        self.in_flight = Some(jobs.max(1));
        self
    }

    /// Exactly `inputs` inputs per local job (at least 1) instead of a size that adapts.
    pub fn batch(mut self, inputs: usize) -> Self {
        self.batch = Some(inputs.max(1));
        self
    }
}

impl Server {
    /// Runs `task` on every input (a tuple of its arguments, as for
    /// [`submit`](Server::submit)) and yields the results in input order, with at most 4
    /// jobs per worker in flight: inputs are read as results are taken. See
    /// [`map_with`](Server::map_with) to set the bound.
    ///
    /// # Examples
    /// ```
    /// #[pp::parallel]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let server = pp::Server::builder().ncpus(2).build()?;
    /// let squares: Vec<u64> = server
    ///     .map(square, (0..1000u64).map(|x| (x,)))
    ///     .map(Result::unwrap)
    ///     .collect();
    /// assert_eq!(squares[999], 998_001);
    /// # Ok::<(), pp::Error>(())
    /// ```
    pub fn map<F, I>(&self, task: Task<F>, inputs: I) -> Map<'_, F, I::IntoIter>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Args>,
    {
        self.map_with(task, inputs, MapOptions::new())
    }

    /// As [`map`](Server::map), with `options` (the jobs in flight, the batch size).
    pub fn map_with<F, I>(
        &self,
        task: Task<F>,
        inputs: I,
        options: MapOptions,
    ) -> Map<'_, F, I::IntoIter>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Args>,
    {
        let remote = self.has_cluster();
        let in_flight = options.in_flight.unwrap_or_else(|| {
            let nodes: usize = (self.active_nodes().iter())
                .map(|node| node.workers as usize)
                .sum();
            IN_FLIGHT_PER_WORKER * (self.ncpus() + nodes).max(1)
        });
        Map {
            server: self,
            task,
            inputs: inputs.into_iter(),
            in_flight,
            batch: if remote { Some(1) } else { options.batch },
            size: 1,
            remote,
            flights: VecDeque::new(),
            current: Vec::new().into_iter(),
            errors: VecDeque::new(),
            position: 0,
            left: 0,
        }
    }

    /// Queues a batch job of `task` on `args` and returns its handle.
    fn enqueue_batch<F: TaskFn>(&self, task: Task<F>, args: Vec<F::Args>) -> Job<Batch<F::Output>> {
        let state = Arc::new(JobState::with_poll(self.pool.waiter_poll(&self.queue)));
        self.queue.pending.add();
        self.pool.submit(
            &self.queue,
            Box::new(BatchJob {
                task,
                args,
                state: Arc::clone(&state),
            }),
        );
        let backlog = Arc::downgrade(&self.queue) as Weak<dyn crate::backlog::Backlog>;
        Job::on_backlog(state, task.id(), backlog).with_progress(self.progress.clone())
    }
}

/// The results of [`Server::map`], in input order.
#[must_use = "a Map submits nothing unless iterated"]
pub struct Map<'s, F: TaskFn, I> {
    server: &'s Server,
    task: Task<F>,
    inputs: I,
    in_flight: usize,
    /// A fixed batch size, if set (1 in cluster mode).
    batch: Option<usize>,
    /// The adaptive batch size.
    size: usize,
    remote: bool,
    flights: VecDeque<Flight<F::Output>>,
    /// The values of the batch being yielded (its failed inputs left out).
    current: std::vec::IntoIter<F::Output>,
    /// The failed inputs of that batch: their positions in it, in order, and errors.
    errors: VecDeque<(usize, JobError)>,
    /// The position in that batch of the next input to yield.
    position: usize,
    /// Its inputs not yet yielded.
    left: usize,
}

/// A job of a [`Map`] in flight.
enum Flight<R> {
    One(Job<R>),
    Batch(Job<Batch<R>>, usize),
}

/// What a batch job gives back: the values of the inputs that succeeded, in order, the
/// failed ones' positions and errors (kept apart, so that yielding a value moves just the
/// value), and the batch's run time.
struct Batch<R> {
    values: Vec<R>,
    errors: VecDeque<(usize, JobError)>,
    took: Duration,
}

impl<F: TaskFn, I: Iterator<Item = F::Args>> Map<'_, F, I> {
    /// Submits jobs until `in_flight` are out or the inputs run out.
    fn top_up(&mut self) {
        while self.flights.len() < self.in_flight {
            let size = self.batch.unwrap_or(self.size);
            if self.remote && size == 1 {
                match self.inputs.next() {
                    Some(args) => self
                        .flights
                        .push_back(Flight::One(self.server.submit(self.task, args))),
                    None => return,
                }
                continue;
            }
            let args: Vec<F::Args> = self.inputs.by_ref().take(size).collect();
            if args.is_empty() {
                return;
            }
            let len = args.len();
            let job = self.server.enqueue_batch(self.task, args);
            self.flights.push_back(Flight::Batch(job, len));
        }
    }

    /// The next result of the batch being yielded, if any is left.
    fn next_of_batch(&mut self) -> Option<Result<F::Output, JobError>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let position = self.position;
        self.position += 1;
        if self.errors.front().is_some_and(|(at, _)| *at == position) {
            return self.errors.pop_front().map(|(_, error)| Err(error));
        }
        self.current.next().map(Ok)
    }

    /// Makes `batch`, of `len` inputs, the batch being yielded.
    fn start_batch(&mut self, batch: Result<Batch<F::Output>, JobError>, len: usize) {
        (self.position, self.left) = (0, len);
        match batch {
            Ok(batch) => {
                self.adapt(batch.took);
                self.current = batch.values.into_iter();
                self.errors = batch.errors;
            }
            Err(error) => {
                self.current = Vec::new().into_iter();
                self.errors = (0..len).map(|at| (at, error.clone())).collect();
            }
        }
    }

    /// Adapts the batch size to a batch's run time.
    fn adapt(&mut self, took: Duration) {
        if took < BATCH_TIME / 2 {
            self.size = (self.size * 2).min(MAX_BATCH);
        } else if took > BATCH_TIME * 2 {
            self.size = (self.size / 2).max(1);
        }
    }
}

impl<F: TaskFn, I: Iterator<Item = F::Args>> Iterator for Map<'_, F, I> {
    type Item = Result<F::Output, JobError>;

    /// The next input's result, waiting for it if need be.
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(result) = self.next_of_batch() {
            return Some(result);
        }
        self.top_up();
        let result = match self.flights.pop_front()? {
            Flight::One(job) => job.result(),
            Flight::Batch(job, len) => {
                self.start_batch(job.result(), len);
                self.next_of_batch()?
            }
        };
        // The next job goes out while the caller uses this result.
        self.top_up();
        Some(result)
    }
}

impl<F: TaskFn, I> std::fmt::Debug for Map<'_, F, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("task", &self.task.id())
            .field("in_flight", &self.flights.len())
            .finish()
    }
}

/// A local job running a task on a batch of inputs.
struct BatchJob<F: TaskFn> {
    task: Task<F>,
    args: Vec<F::Args>,
    state: Arc<JobState<Batch<F::Output>>>,
}

impl<F: TaskFn> QueuedJob for BatchJob<F> {
    fn task_id(&self) -> &'static str {
        self.task.id()
    }

    fn run(self: Box<Self>, counters: &ExecutorCounters) -> Completion {
        let BatchJob { task, args, state } = *self;
        let ((values, errors), took) = counters.timed(|| {
            let mut values = Vec::with_capacity(args.len());
            let mut errors = VecDeque::new();
            for (at, args) in args.into_iter().enumerate() {
                match catch_unwind(AssertUnwindSafe(|| task.function().call(args))) {
                    Ok(value) => values.push(value),
                    Err(payload) => errors.push_back((
                        at,
                        JobError::Panicked {
                            task: task.id().to_owned(),
                            message: panic_message(payload.as_ref()),
                        },
                    )),
                }
            }
            (values, errors)
        });
        if !state.claim() {
            return Completion::Duplicate;
        }
        counters.record(took);
        let batch = Batch {
            values,
            errors,
            took,
        };
        let callback_panic = state.store(Ok(batch));
        Completion::Stored { callback_panic }
    }

    fn fail(self: Box<Self>, error: JobError) -> Completion {
        if !self.state.claim() {
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
