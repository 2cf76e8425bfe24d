//! [`Deadlines`]: the time limits of jobs running on a server's local threads, and the one
//! timer thread per server that ends them.
//!
//! A thread cannot be stopped from outside, so at a job's deadline the timer settles the
//! job instead ([`JobError::TimedOut`]): its result, future and callback are released
//! then, [`should_stop`](crate::should_stop) turns true inside it, and whatever the thread
//! returns later is dropped. Jobs in a remote executor's hands never come here: their
//! executor enforces their limits itself.
//!
//! The deadlines are a binary heap under a mutex, which the timer sleeps on (a condition
//! variable) until the earliest one. Nothing of it exists until the first job with a time
//! limit starts: no thread, and no cost for jobs without one. A job that finishes before
//! its deadline is not looked for in the heap (a removal would cost a search): its entry
//! stays until its time comes and then finds the job settled, or is swept out when the heap
//! has doubled since the last sweep. An entry holds the job's slot weakly, so it keeps no
//! result alive.

use crate::error::JobError;
use crate::queue::JobQueue;
use crate::settle::Settle;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

/// The fewest entries the heap holds before it sweeps out settled jobs.
const FIRST_SWEEP: usize = 1024;

/// A server's deadline timer (started on first use).
pub(crate) struct Deadlines {
    shared: Arc<Shared>,
    /// The queue whose jobs the timer settles (the queue owns this timer).
    queue: Weak<JobQueue>,
}

struct Shared {
    heap: Mutex<Heap>,
    /// Signalled when an earlier deadline is added, or on stop.
    changed: Condvar,
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
    sweep_at: usize,
    stopped: bool,
    thread: Option<(ThreadId, JoinHandle<()>)>,
}

/// A job's deadline.
struct Entry {
    at: Instant,
    /// Orders entries with the same instant (and makes them distinct).
    seq: u64,
    job: Weak<dyn Settle>,
    /// The job's time limit, for its error.
    after: Duration,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl Entry {
    fn live(&self) -> bool {
        self.job.upgrade().is_some_and(|job| !job.is_settled())
    }
}

impl Deadlines {
    /// The timer of `queue`'s jobs; no thread runs until [`arm`](Deadlines::arm).
    pub(crate) fn new(queue: Weak<JobQueue>) -> Self {
        Deadlines {
            shared: Arc::new(Shared {
                heap: Mutex::new(Heap::default()),
                changed: Condvar::new(),
            }),
            queue,
        }
    }

    fn heap(&self) -> MutexGuard<'_, Heap> {
        self.shared.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the deadline of `job`, which starts running on a local thread now with time
    /// limit `after`. Starts the timer thread on first use.
    pub(crate) fn arm(&self, job: Weak<dyn Settle>, after: Duration) {
        let now = Instant::now();
        let at = now
            .checked_add(after)
            .unwrap_or(now + Duration::from_secs(1 << 40));
        let mut heap = self.heap();
        if heap.stopped {
            return;
        }
        if heap.entries.len() >= heap.sweep_at.max(FIRST_SWEEP) {
            heap.entries.retain(|Reverse(entry)| entry.live());
            heap.sweep_at = heap.entries.len() * 2;
        }
        let seq = heap.next_seq;
        heap.next_seq += 1;
        let earliest = heap
            .entries
            .peek()
            .is_none_or(|Reverse(first)| at < first.at);
        heap.entries.push(Reverse(Entry {
            at,
            seq,
            job,
            after,
        }));
        if heap.thread.is_none() {
            match self.start() {
                Ok(thread) => heap.thread = Some(thread),
                Err(error) => {
                    crate::error!("cannot start the deadline timer thread: {error}; time limits of local jobs are not enforced");
                    heap.stopped = true;
                }
            }
        } else if earliest {
            self.shared.changed.notify_one();
        }
    }

    fn start(&self) -> std::io::Result<(ThreadId, JoinHandle<()>)> {
        let shared = Arc::clone(&self.shared);
        let queue = self.queue.clone();
        let handle = thread::Builder::new()
            .name("pp-deadlines".into())
            .spawn(move || run(&shared, &queue))?;
        Ok((handle.thread().id(), handle))
    }

    /// Stops the timer thread (the server shuts down) and joins it, unless called on it.
    pub(crate) fn stop(&self) {
        let thread = {
            let mut heap = self.heap();
            heap.stopped = true;
            heap.entries.clear();
            self.shared.changed.notify_all();
            heap.thread.take()
        };
        if let Some((id, handle)) = thread {
            if id != thread::current().id() && handle.join().is_err() {
                crate::warn!("the deadline timer thread panicked");
            }
        }
    }
}

/// The timer thread: settles each job whose deadline passed, sleeping until the next one.
fn run(shared: &Shared, queue: &Weak<JobQueue>) {
    let mut heap = shared.heap.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if heap.stopped {
            return;
        }
        let now = Instant::now();
        let wait = match heap.entries.peek() {
            None => None,
            Some(Reverse(first)) if first.at <= now => {
                let Some(Reverse(due)) = heap.entries.pop() else {
                    continue;
                };
                drop(heap);
                expire(&due, queue);
                heap = shared.heap.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            Some(Reverse(first)) => Some(first.at - now),
        };
        heap = match wait {
            None => shared.changed.wait(heap).unwrap_or_else(|e| e.into_inner()),
            Some(wait) => {
                let (heap, _) = shared
                    .changed
                    .wait_timeout(heap, wait)
                    .unwrap_or_else(|e| e.into_inner());
                heap
            }
        };
    }
}

/// Ends a job whose deadline passed, unless it already has a result.
fn expire(entry: &Entry, queue: &Weak<JobQueue>) {
    let (Some(job), Some(queue)) = (entry.job.upgrade(), queue.upgrade()) else {
        return;
    };
    if job.is_settled() {
        return;
    }
    let task = job.task();
    let error = JobError::TimedOut {
        task: task.to_owned(),
        after: entry.after,
        attempts: 1,
    };
    if queue.settle(&*job, error, false).is_some() {
        crate::debug!(
            task,
            "a job ran past its time limit of {:?}: it ended TimedOut; its thread runs on until it returns",
            entry.after
        );
    }
}
