//! Where a session's next job comes from: a job a submitting thread left to it, then the
//! queue, then, with nothing queued, a second copy of a straggler in flight on another node
//! (the straggler policy:
//! [`ClusterOptions::duplicate_stragglers`](pp_runtime::ClusterOptions::duplicate_stragglers);
//! its thresholds are [`STRAGGLER_FACTOR`](crate::client::flights::STRAGGLER_FACTOR) and
//! [`STRAGGLER_MIN`](crate::client::flights::STRAGGLER_MIN)).

use crate::client::context::ClientContext;
use crate::client::flights::Straggler;
use crate::client::shared_session::SharedSession;
use pp_runtime::remote::RemoteJob;
use tokio::time::Instant;

/// What the session sends next, if anything.
pub(crate) enum NextJob {
    /// A job of its own: taken from the queue, or left by a submitting thread (with its
    /// arguments when that thread encoded them).
    Own(RemoteJob, Option<Vec<u8>>),
    /// A second copy of a straggler of another session.
    StragglerCopy(RemoteJob),
    /// Nothing now; a job in flight elsewhere becomes a straggler at this time.
    StragglerAt(Instant),
    /// Nothing to send.
    Nothing,
}

/// The next job for session `session_id`.
pub(crate) fn next_job(shared: &SharedSession, ctx: &ClientContext, session_id: u64) -> NextJob {
    let adopted = shared.adopted();
    match adopted.or_else(|| Some((ctx.feed.take()?, None))) {
        Some((job, encoded)) => NextJob::Own(job, encoded),
        None if ctx.options.duplicate_stragglers => {
            match ctx.flights.straggler(session_id, Instant::now()) {
                Straggler::Found(job) => NextJob::StragglerCopy(job),
                Straggler::Later(at) => NextJob::StragglerAt(at),
                Straggler::None => NextJob::Nothing,
            }
        }
        None => NextJob::Nothing,
    }
}
