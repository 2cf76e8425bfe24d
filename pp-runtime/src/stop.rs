//! [`should_stop`]: whether the job running on this thread should stop, because it was
//! cancelled or ran past its time limit. A local worker thread cannot be stopped from
//! outside; a long job that looks now and then can return early instead.

use crate::settle::Settle;
use std::cell::Cell;

thread_local! {
    /// The result slot of the job this thread runs now (null: none).
    static RUNNING: Cell<Option<*const dyn Settle>> = const { Cell::new(None) };
}

/// Whether the job running on this thread was cancelled or ran past its time limit: its
/// result is already settled ([`JobError::Cancelled`](crate::JobError::Cancelled) or
/// [`JobError::TimedOut`](crate::JobError::TimedOut)) and whatever it returns is dropped,
/// so it may as well return now. False outside a job, and in a job that runs in another
/// process (a node's or an isolated worker, which is stopped instead).
///
/// It costs a thread-local read and an atomic load: cheap enough to call in a loop.
///
/// # Examples
/// ```
/// #[pp::parallel]
/// fn count_up(limit: u64) -> u64 {
///     let mut n = 0;
///     while n < limit && !pp::should_stop() {
///         n += 1;
///     }
///     n
/// }
///
/// let server = pp::Server::builder().ncpus(1).build()?;
/// assert_eq!(server.submit(count_up, (1000,)).result()?, 1000);
/// assert!(!pp::should_stop());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn should_stop() -> bool {
    RUNNING.with(|running| {
        running.get().is_some_and(|job| {
            // SAFETY: set only by `enter` for the job this thread runs, whose guard clears
            // it (`leave`) before the job's slot can be dropped.
            unsafe { (*job).is_settled() }
        })
    })
}

/// Records that this thread runs `job`; returns what it ran before (a job that runs a
/// nested job meanwhile), to give back to [`leave`]. The caller keeps `job` alive until then.
pub(crate) fn enter(job: &(dyn Settle + 'static)) -> Option<*const dyn Settle> {
    RUNNING.with(|running| running.replace(Some(job as *const dyn Settle)))
}

/// Records that this thread's job is over, restoring `previous` (from [`enter`]).
pub(crate) fn leave(previous: Option<*const dyn Settle>) {
    RUNNING.with(|running| running.set(previous));
}
