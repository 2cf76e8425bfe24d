//! [`AsCompleted`]: the results of many jobs in the order they finish
//! ([`Server::as_completed`]).
//!
//! No polling: each job's result slot holds a waker (the slot's one waiter) that, when the
//! job completes, puts the job's index on a shared ready list and wakes whoever waits for
//! it, a blocked thread or an async task. A local worker that waits (inside a job) runs
//! sub-jobs meanwhile, as every wait inside a job does (see [`crate::helping`]).

use crate::error::JobError;
use crate::helping;
use crate::job::Job;
use crate::server::Server;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Wake, Waker};
use std::thread::{self, Thread};

impl Server {
    /// The results of `jobs` as they finish, each with its position in `jobs`: an
    /// iterator that blocks until the next job finishes, or, in async code,
    /// [`AsCompleted::next_async`].
    ///
    /// # Examples
    /// ```
    /// #[pp::parallel]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let server = pp::Server::builder().ncpus(2).build()?;
    /// let jobs: Vec<_> = (0..5).map(|x| server.submit(square, (x,))).collect();
    /// let mut seen = vec![0; 5];
    /// for (index, result) in server.as_completed(jobs) {
    ///     seen[index] = result.unwrap();
    /// }
    /// assert_eq!(seen, vec![0, 1, 4, 9, 16]);
    /// # Ok::<(), pp::Error>(())
    /// ```
    pub fn as_completed<R>(&self, jobs: Vec<Job<R>>) -> AsCompleted<R> {
        let ready = Arc::new(Ready::default());
        for (index, job) in jobs.iter().enumerate() {
            let waker = Waker::from(Arc::new(IndexWaker {
                index,
                ready: Arc::clone(&ready),
            }));
            if job.wake_when_done(waker) {
                ready.push(index);
            }
        }
        AsCompleted {
            remaining: jobs.len(),
            jobs: jobs.into_iter().map(Some).collect(),
            ready,
            queue: self.queue_ptr() as usize,
        }
    }
}

/// The results of jobs in the order they finish, with their index in the `Vec` given to
/// [`Server::as_completed`]; an [`Iterator`], and [`next_async`](AsCompleted::next_async)
/// for async code (pp has no `futures` dependency, so no `Stream` impl).
#[must_use = "an AsCompleted yields nothing unless iterated"]
pub struct AsCompleted<R> {
    jobs: Vec<Option<Job<R>>>,
    ready: Arc<Ready>,
    remaining: usize,
    /// The server's queue, as an address (see `Server::queue_ptr`).
    queue: usize,
}

/// Indices of the jobs that finished and were not yet yielded, and who to wake for them.
#[derive(Default)]
struct Ready {
    state: Mutex<ReadyState>,
    more: Condvar,
    len: AtomicUsize,
}

#[derive(Default)]
struct ReadyState {
    done: VecDeque<usize>,
    /// A helping worker waiting for the next result.
    thread: Option<Thread>,
    /// An async task waiting for the next result.
    waker: Option<Waker>,
}

impl Ready {
    fn state(&self) -> MutexGuard<'_, ReadyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, index: usize) {
        let (thread, waker) = {
            let mut state = self.state();
            state.done.push_back(index);
            self.len.store(state.done.len(), Ordering::SeqCst);
            (state.thread.take(), state.waker.take())
        };
        self.more.notify_one();
        if let Some(thread) = thread {
            thread.unpark();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn pop(&self) -> Option<usize> {
        if self.len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut state = self.state();
        let index = state.done.pop_front();
        self.len.store(state.done.len(), Ordering::SeqCst);
        index
    }
}

/// Wakes an [`AsCompleted`] when job `index` finishes.
struct IndexWaker {
    index: usize,
    ready: Arc<Ready>,
}

impl Wake for IndexWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.push(self.index);
    }
}

impl<R> AsCompleted<R> {
    /// Jobs not yet yielded.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The result of finished job `index`.
    fn yield_index(&mut self, index: usize) -> (usize, Result<R, JobError>) {
        self.remaining -= 1;
        let job = self.jobs[index]
            .take()
            .expect("a job's index is ready once");
        (index, job.take_done())
    }

    /// Blocks the calling thread until some job is ready; a local worker of the server
    /// runs sub-jobs meanwhile.
    fn block(&self) {
        let ready = &self.ready;
        if helping::current().is_some() {
            ready.state().thread = Some(thread::current());
            let helped = helping::help_while_waiting(self.queue as *const (), None, &|| {
                ready.len.load(Ordering::SeqCst) > 0
            });
            ready.state().thread = None;
            if helped.is_some() {
                return;
            }
        }
        let state = ready.state();
        let _state = ready
            .more
            .wait_while(state, |state| state.done.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// The next job to finish, with its index, as a future: for async code, which must
    /// not block its thread. `None` once every job was yielded.
    pub async fn next_async(&mut self) -> Option<(usize, Result<R, JobError>)> {
        if self.remaining == 0 {
            return None;
        }
        let index = poll_fn(|cx| {
            if let Some(index) = self.ready.pop() {
                return Poll::Ready(index);
            }
            self.ready.state().waker = Some(cx.waker().clone());
            // A job that finished before the waker was stored already pushed its index.
            match self.ready.pop() {
                Some(index) => Poll::Ready(index),
                None => Poll::Pending,
            }
        })
        .await;
        Some(self.yield_index(index))
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = (usize, Result<R, JobError>);

    /// Blocks until the next job finishes; `None` once every job was yielded.
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            if let Some(index) = self.ready.pop() {
                return Some(self.yield_index(index));
            }
            self.block();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<R> ExactSizeIterator for AsCompleted<R> {}

impl<R> std::fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.remaining)
            .finish()
    }
}
