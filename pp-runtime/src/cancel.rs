//! Cancellation: [`Server::cancel_group`], [`Server::cancel_all`] (and, through the queue,
//! [`Job::cancel`](crate::Job::cancel)).
//!
//! A cancel settles each job's result slot with [`JobError::Cancelled`] at once, O(1) per
//! job: the callback runs, `wait` and the group count it finished. Nothing is searched in
//! the queue: a queued job stays there, settled, and whoever pops it drops it unrun. A job
//! running on a local thread runs on with [`should_stop`](crate::should_stop) true, its
//! result dropped. For jobs in a remote executor's hands the executors are told once
//! ([`Executor::settled_elsewhere`](crate::remote::Executor::settled_elsewhere)), and stop
//! their work. The jobs of a group are found in the group's member list. `cancel_all` takes
//! every submitted job out of the queues and cancels it, then the jobs running on the local
//! pool's threads (see [`crate::running`]) and, with remote executors, the jobs in no group
//! that the server lists for them. Cancelling costs O(the jobs cancelled).

use crate::error::JobError;
use crate::group::Members;
use crate::job::Completion;
use crate::queue::JobQueue;
use crate::queued_job::QueuedJob;
use crate::server::Server;
use crate::settle::{Settle, Was};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl JobQueue {
    /// Cancels `jobs` (those that have no result yet); returns how many this call settled.
    ///
    /// Queued jobs go first: a running job cancelled first could free its worker, which
    /// would then start a queued job of the same batch before its turn came.
    pub(crate) fn cancel_jobs(&self, jobs: &[&dyn Settle]) -> usize {
        let mut settled = 0;
        let mut remote = false;
        for queued_only in [true, false] {
            for &job in jobs {
                if job.is_settled() {
                    continue;
                }
                let error = JobError::Cancelled {
                    task: job.task().to_owned(),
                };
                if let Some(was) = self.settle(job, error, queued_only) {
                    settled += 1;
                    remote |= was == Was::Remote;
                }
            }
        }
        if remote {
            self.tell_settled_elsewhere();
        }
        settled
    }

    /// Cancels the submitted jobs that `cancel_all` took out of the queues, except those
    /// settled while queued; returns how many this settled. Counted once for them all.
    pub(crate) fn cancel_taken_out(
        &self,
        jobs: impl IntoIterator<Item = Box<dyn QueuedJob>>,
    ) -> usize {
        let mut settled = 0;
        for job in jobs {
            if !job.take(false) {
                self.skipped_settled();
                continue;
            }
            let task = job.task_id();
            let completion = job.fail(JobError::Cancelled {
                task: task.to_owned(),
            });
            if let Completion::Stored { callback_panic } = completion {
                settled += 1;
                // `fail` logged it.
                if callback_panic.is_some() {
                    (self.counters.callback_panics).fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.counters
            .cancelled
            .fetch_add(settled as u64, Ordering::Relaxed);
        self.pending.done_many(settled);
        settled
    }

    /// Cancels every job of `lists`.
    fn cancel_members<'a>(&self, lists: impl IntoIterator<Item = &'a Members>) -> usize {
        let jobs: Vec<Arc<dyn Settle>> = lists
            .into_iter()
            .flat_map(Members::take)
            .filter_map(|job| job.upgrade())
            .collect();
        let jobs: Vec<&dyn Settle> = jobs.iter().map(|job| &**job).collect();
        self.cancel_jobs(&jobs)
    }
}

impl Server {
    /// Cancels every unfinished job of group `group` submitted so far, as
    /// [`Job::cancel`](crate::Job::cancel) does for one; returns how many it cancelled.
    /// Each ends with [`JobError::Cancelled`] at once; [`wait_group`](Server::wait_group)
    /// then returns without waiting for them. Costs O(the group's jobs), not of the queue.
    ///
    /// # Examples
    /// ```
    /// #[pp::parallel]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let server = pp::Server::builder().ncpus(1).build()?;
    /// let jobs: Vec<_> = (0..100).map(|_| server.job(nap, (20,)).group("naps").submit()).collect();
    /// assert!(server.cancel_group("naps") >= 98);
    /// server.wait_group("naps");
    /// let cancelled = jobs.into_iter().filter(|job| job.is_finished()).count();
    /// assert_eq!(cancelled, 100);
    /// # Ok::<(), pp::Error>(())
    /// ```
    pub fn cancel_group(&self, group: &str) -> usize {
        match self.existing_group(group) {
            Some(group) => self.queue.cancel_members([&group.members]),
            None => 0,
        }
    }

    /// Cancels every unfinished job submitted so far, in a group or not, as
    /// [`Job::cancel`](crate::Job::cancel) does for one; returns how many it cancelled.
    /// [`wait`](Server::wait) then returns without waiting for them. `par!` runs are not
    /// jobs and are not cancelled. A job that a local worker was just taking from the queue
    /// ends cancelled too as it starts, without counting in the number returned.
    pub fn cancel_all(&self) -> usize {
        let queue = &self.queue;
        if queue.has_remote() {
            // Remote executors hold jobs the server cannot see: every job is in a list.
            let groups: Vec<_> = {
                let groups = queue.groups.lock().unwrap_or_else(|e| e.into_inner());
                groups.values().cloned().collect()
            };
            let lists = groups.iter().map(|group| &group.members);
            return queue.cancel_members(std::iter::once(&queue.ungrouped).chain(lists));
        }
        let running = self.pool.running();
        // Jobs submitted before this, which a worker took but has not named yet, cancel
        // themselves when they start (see `crate::running`).
        running.bump();
        let mut settled = queue.cancel_taken_out(queue.take_queued_jobs());
        settled += self.pool.cancel_nested(queue);
        let on_threads = running.collect();
        let on_threads: Vec<&dyn Settle> = on_threads.iter().map(|job| &**job).collect();
        settled + queue.cancel_jobs(&on_threads)
    }
}
