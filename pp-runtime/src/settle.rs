//! [`Settle`]: a job's result slot with its types erased, as those who end a job without
//! running it see it: a cancel ([`Job::cancel`](crate::Job::cancel), a group's, all jobs'),
//! and the deadline timer. Settling fills the slot with an error, runs the callback and
//! counts the job's group done, exactly as a completion would; whoever settles then counts
//! the job finished (see `JobQueue::settle`).

use crate::error::JobError;

/// Where a job was when it was settled: what the settler must still count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Was {
    /// In the queue: whoever pops it skips it without running it.
    Queued,
    /// Running on a local worker thread: the thread runs on, its result is dropped.
    Local,
    /// In a remote executor's hands: it no longer counts in flight, and the executor is
    /// told ([`Executor::settled_elsewhere`](crate::remote::Executor::settled_elsewhere)).
    Remote,
}

/// A job's result slot, whatever its result type.
pub(crate) trait Settle: Send + Sync {
    /// The task's id, for the error.
    fn task(&self) -> &'static str;

    /// Whether the slot is already claimed (completed, cancelled, timed out).
    fn is_settled(&self) -> bool;

    /// Fills the slot with `error` unless it is already claimed (or, if `queued_only`, the
    /// job was taken from the queue): runs the callback and counts the group done. Returns
    /// where the job was and the callback's panic message, or `None` if it did nothing.
    fn settle(&self, error: JobError, queued_only: bool) -> Option<(Was, Option<String>)>;
}
