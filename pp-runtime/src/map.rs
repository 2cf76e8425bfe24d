//! [`Server::map`]: a task over many inputs, results in input order, with a bound on the
//! jobs in flight so that inputs are read only as results are taken (mapping over 100
//! million inputs never queues them all).
//!
//! Locally the inputs travel in batches: one job runs the task on several inputs, so that
//! a tiny task does not pay a job's cost per input. The batch size adapts to the batches'
//! run times, towards [`BATCH_TIME`] a batch, between 1 and [`MAX_BATCH`] inputs. The
//! caller works too: a batch that no worker has started when the caller needs it, or
//! while the caller waits for an earlier one, the caller takes back and runs itself (see
//! [`crate::map_batch`]), as rayon's caller does. Yielding a value of a batch without
//! failed inputs is one step of a vector's iterator. In cluster mode each input is one
//! job (nodes run jobs from bytes, one task call each).

use crate::error::JobError;
use crate::job::Job;
use crate::map_batch::{Batch, Queued};
use crate::server::Server;
use crate::task::{Task, TaskFn};
use std::collections::VecDeque;
use std::time::Duration;

/// How long a batch should run: long enough that the cost of a job (some microseconds)
/// is small beside it, short enough that the workers share the inputs evenly.
const BATCH_TIME: Duration = Duration::from_micros(200);

/// The most inputs in one batch.
const MAX_BATCH: usize = 1 << 14;

/// Jobs in flight per worker (local or on a node) when [`MapOptions::in_flight`] is not set.
const IN_FLIGHT_PER_WORKER: usize = 4;

/// The most a batch grows (or shrinks) from one size to the next.
const MAX_STEP: usize = 8;

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
    /// Locally the calling thread runs batches of inputs too while it waits for results.
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
            flying: 0,
            current: Vec::new().into_iter(),
            rest: VecDeque::new(),
        }
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
    flights: VecDeque<Flight<F>>,
    /// The inputs of the jobs in `flights`.
    flying: usize,
    /// The values of the batch being yielded, up to its next failed input.
    current: std::vec::IntoIter<F::Output>,
    /// The rest of that batch: each failed input's error, then the values after it up to
    /// the next failed input. Kept apart so that yielding a value is one step of
    /// `current` and nothing else.
    rest: VecDeque<(JobError, std::vec::IntoIter<F::Output>)>,
}

/// A job of a [`Map`] in flight.
enum Flight<F: TaskFn> {
    /// One input as a job of its own (cluster mode).
    One(Job<F::Output>),
    /// A batch of this many inputs, queued or running.
    Batch(Queued<F>, usize),
    /// A batch the caller took back and ran while it waited for an earlier one.
    Ran(Result<Batch<F::Output>, JobError>, usize),
}

impl<F: TaskFn, I: Iterator<Item = F::Args>> Map<'_, F, I> {
    /// Submits jobs until `in_flight` are out or the inputs run out.
    fn top_up(&mut self) {
        while self.flights.len() < self.in_flight {
            let size = self.batch.unwrap_or(self.size);
            if self.remote && size == 1 {
                match self.inputs.next() {
                    Some(args) => {
                        let job = self.server.submit(self.task, args);
                        self.flights.push_back(Flight::One(job));
                        self.flying += 1;
                    }
                    None => return,
                }
                continue;
            }
            let args: Vec<F::Args> = self.inputs.by_ref().take(size).collect();
            if args.is_empty() {
                return;
            }
            let len = args.len();
            let queued = self.server.enqueue_batch(self.task, args);
            self.flights.push_back(Flight::Batch(queued, len));
            self.flying += len;
        }
    }

    /// The result of `queued`, the oldest batch in flight: run here if no worker started
    /// it; else, while a worker runs it, the caller runs the next batches no worker
    /// started (their results wait in `flights`).
    fn batch_result(&mut self, queued: Queued<F>) -> Result<Batch<F::Output>, JobError> {
        if let Some(result) = self.server.take_back(self.task, &queued) {
            return result;
        }
        while !queued.job.is_finished() {
            let unstarted = self.flights.iter().position(
                |flight| matches!(flight, Flight::Batch(later, _) if !later.args.is_started()),
            );
            let Some(at) = unstarted else {
                break;
            };
            let Some(Flight::Batch(later, len)) = self.flights.get(at) else {
                break;
            };
            let len = *len;
            if let Some(result) = self.server.take_back(self.task, later) {
                self.flights[at] = Flight::Ran(result, len);
            }
        }
        queued.job.result()
    }

    /// Makes `batch`, of `len` inputs, the batch being yielded.
    fn start_batch(&mut self, batch: Result<Batch<F::Output>, JobError>, len: usize) {
        match batch {
            Ok(batch) => {
                self.adapt(batch.took, len);
                self.split(batch.values, batch.errors);
            }
            Err(error) => {
                self.current = Vec::new().into_iter();
                self.rest = (0..len)
                    .map(|_| (error.clone(), Vec::new().into_iter()))
                    .collect();
            }
        }
    }

    /// Splits the `values` of a batch at its failed inputs (`errors`, by position in the
    /// batch, in order) into `current` and `rest`.
    fn split(&mut self, values: Vec<F::Output>, errors: VecDeque<(usize, JobError)>) {
        if errors.is_empty() {
            self.current = values.into_iter();
            return;
        }
        let mut values = values.into_iter();
        let mut segment = |len: usize| values.by_ref().take(len).collect::<Vec<_>>().into_iter();
        let mut previous = errors.front().map_or(0, |(at, _)| *at);
        self.current = segment(previous);
        // The values after a failed input: those up to the next failed one.
        let ends: Vec<usize> = (errors.iter().skip(1))
            .map(|(at, _)| *at)
            .chain([usize::MAX])
            .collect();
        self.rest = (errors.into_iter().zip(ends))
            .map(|((_, error), end)| {
                let len = end.saturating_sub(previous + 1);
                previous = end;
                (error, segment(len))
            })
            .collect();
    }

    /// Adapts the batch size to a batch of `len` inputs that ran for `took`: towards
    /// [`BATCH_TIME`] a batch, by at most [`MAX_STEP`] times at once.
    fn adapt(&mut self, took: Duration, len: usize) {
        // A batch much smaller than the size now (sent before the last change, or the
        // inputs' last) says little, unless it was too long already.
        if len < self.size / 2 && took <= BATCH_TIME {
            return;
        }
        let per_input = took.as_nanos() / len.max(1) as u128;
        let ideal = BATCH_TIME.as_nanos() / per_input.max(1);
        let ideal = usize::try_from(ideal).unwrap_or(MAX_BATCH);
        let size = self.size;
        self.size = ideal
            .clamp(size / MAX_STEP, size.saturating_mul(MAX_STEP))
            .clamp(1, MAX_BATCH);
    }

    /// [`Iterator::next`] past the values of the batch being yielded: its next error, or
    /// the first result of the next job.
    #[cold]
    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<F::Output, JobError>> {
        if let Some((error, values)) = self.rest.pop_front() {
            self.current = values;
            return Some(Err(error));
        }
        self.top_up();
        let (result, len) = match self.flights.pop_front()? {
            Flight::One(job) => {
                self.flying -= 1;
                let result = job.result();
                // The next job goes out while the caller uses this result.
                self.top_up();
                return Some(result);
            }
            Flight::Batch(queued, len) => (self.batch_result(queued), len),
            Flight::Ran(result, len) => (result, len),
        };
        self.flying -= len;
        self.start_batch(result, len);
        self.top_up();
        self.next()
    }
}

impl<F: TaskFn, I: Iterator<Item = F::Args>> Iterator for Map<'_, F, I> {
    type Item = Result<F::Output, JobError>;

    /// The next input's result, waiting for it if need be.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self.current.next() {
            Some(value) => Some(Ok(value)),
            None => self.next_slow(),
        }
    }

    /// Exact when the inputs' own hint is: the results not yet yielded of the batch in
    /// hand, of the jobs in flight, and of the inputs not read yet.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let rest: usize = self.rest.iter().map(|(_, values)| 1 + values.len()).sum();
        let held = self.current.len() + rest + self.flying;
        let (low, high) = self.inputs.size_hint();
        (
            low.saturating_add(held),
            high.and_then(|high| high.checked_add(held)),
        )
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
