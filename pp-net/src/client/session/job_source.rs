//! Where a session's next job comes from: a job a submitting thread left to it, then the
//! queue, then, with nothing queued, a second copy of a straggler in flight on another node
//! (the straggler policy:
//! [`ClusterOptions::duplicate_stragglers`](pp_runtime::ClusterOptions::duplicate_stragglers);
//! its thresholds are [`STRAGGLER_FACTOR`](crate::client::flights::STRAGGLER_FACTOR) and
//! [`STRAGGLER_MIN`](crate::client::flights::STRAGGLER_MIN)).
//!
//! A node put aside (the `put_aside` module) takes nothing while another place can take
//! jobs, and a node leaves alone retried jobs that failed on it (the queue's side:
//! [`JobFeed::take_for`](pp_runtime::remote::JobFeed::take_for)). "Another place" is a
//! connected node that is not put aside, or a local worker.

use crate::client::context::ClientContext;
use crate::client::flights::{Copies, Straggler};
use crate::client::node_state::NodeState;
use crate::client::shared_session::SharedSession;
use pp_runtime::remote::{RemoteJob, Take};
use std::sync::Arc;
use tokio::time::Instant;

/// What the session sends next, if anything.
pub(crate) enum NextJob {
    /// A job of its own: taken from the queue, or left by a submitting thread (with its
    /// arguments when that thread encoded them).
    Own(RemoteJob, Option<Vec<u8>>),
    /// A second copy of a straggler of another session, and what the copies share.
    StragglerCopy(RemoteJob, Arc<Copies>),
    /// Nothing now; look again at this time (a job in flight elsewhere becomes a
    /// straggler, a retried job left for other nodes becomes this node's, the node's
    /// put-aside ends).
    WakeAt(Instant),
    /// Nothing to send.
    Nothing,
}

/// The next job for session `session_id` with `node`.
pub(crate) fn next_job(
    node: &NodeState,
    shared: &SharedSession,
    ctx: &ClientContext,
    session_id: u64,
) -> NextJob {
    if let Some((job, encoded)) = shared.adopted() {
        return NextJob::Own(job, encoded);
    }
    let elsewhere = || ctx.feed.local_workers() > 0 || ctx.nodes.others_take_jobs(node);
    if let Some((until, _)) = node.put_aside() {
        if elsewhere() {
            return NextJob::WakeAt(Instant::from_std(until));
        }
    }
    let later = match ctx.feed.take_for(&node.executor, elsewhere) {
        Take::Job(job) => return NextJob::Own(job, None),
        Take::NotBefore(at) => Some(Instant::from_std(at)),
        Take::Empty => None,
    };
    let straggler = if ctx.options.duplicate_stragglers {
        ctx.flights.straggler(session_id, Instant::now())
    } else {
        Straggler::None
    };
    match (straggler, later) {
        (Straggler::Found(job, copies), _) => NextJob::StragglerCopy(job, copies),
        (Straggler::Later(at), Some(later)) => NextJob::WakeAt(at.min(later)),
        (Straggler::Later(at), None) | (Straggler::None, Some(at)) => NextJob::WakeAt(at),
        (Straggler::None, None) => NextJob::Nothing,
    }
}
