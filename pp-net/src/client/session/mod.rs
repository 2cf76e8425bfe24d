//! One node, one connection: set up (connect, authenticate, ship the program if the node
//! lacks it: `setup`), then keep the node's in-flight window full of jobs until the
//! connection ends (`job_loop`), then give back the jobs the node still held.
//!
//! - `setup`: the connection and the hello, upload and `Ready` exchange;
//! - `job_loop`: the working phase, one `select!` over the node's messages, the lane's,
//!   the heartbeat clock and the wake-ups of queued jobs;
//! - `job_source`: where the next job comes from (a job left by a submitting thread, the
//!   queue, a straggler's second copy);
//! - `window`: how many jobs to keep on the node;
//! - `heartbeat`: heartbeats and the liveness check;
//! - `outbox`: the connection's sending half, on a task of its own.
//!
//! The node is lost by the liveness policy
//! ([`ClusterOptions::liveness_timeout`](pp_runtime::ClusterOptions::liveness_timeout)).
//! Each job it still held is then given back with
//! [`JobFeed::lost`](pp_runtime::remote::JobFeed::lost) (the attempt policy:
//! [`ClusterOptions::max_attempts`](pp_runtime::ClusterOptions::max_attempts)); when the
//! server shuts down, they are simply given back. Results of the old connection can never
//! reach a new one, and a result whose job is not in flight is dropped, so each job is
//! completed once. Straggler copies follow the straggler policy
//! ([`ClusterOptions::duplicate_stragglers`](pp_runtime::ClusterOptions::duplicate_stragglers)).

mod finish;
mod heartbeat;
mod job_loop;
mod job_source;
mod outbox;
mod setup;
mod window;

use crate::channel::{SecureReader, SecureWriter};
use crate::client::context::ClientContext;
use crate::client::flights;
use crate::client::node_state::NodeState;
use job_loop::{serve_jobs, ServeEnd};
use pp_runtime::remote::RemoteJob;
use pp_runtime::NodeFailure;
use tokio::sync::watch;

/// Why a session ended.
pub(crate) enum SessionEnd {
    /// The server is shutting down.
    Shutdown,
    /// The node could not be used (unreachable, refused, setup failed), for this reason.
    Failed(NodeFailure),
    /// The node was serving and was lost: its connection broke, it broke the protocol, or
    /// it fell silent. The session gave back the `held` jobs it had in flight.
    Lost {
        /// Why.
        failure: NodeFailure,
        /// How many jobs the node held, now back in the queue (or completed by a copy).
        held: usize,
    },
}

/// Runs one session with `node` until it ends.
pub(crate) async fn run(
    node: &NodeState,
    ctx: &ClientContext,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let (reader, writer, workers) = tokio::select! {
        done = setup::set_up(node, ctx) => match done {
            Ok(session) => session,
            Err(why) => return SessionEnd::Failed(why),
        },
        _ = shutdown.changed() => return SessionEnd::Shutdown,
    };
    // A dialed node is never replaced by another connection: no sender.
    let never = watch::channel(false).1;
    serve(node, ctx, reader, writer, workers, shutdown, never).await
}

/// Sets up a session on a connection a node opened and the client authenticated (a node
/// that joins): hello, upload if asked, `Ready`. Returns the node's worker count, its own
/// name for itself and its platform.
pub(crate) async fn set_up_joined(
    reader: &mut SecureReader,
    writer: &mut SecureWriter,
    ctx: &ClientContext,
) -> Result<setup::Handshaken, NodeFailure> {
    setup::handshake(reader, writer, ctx).await
}

/// The working phase of a session set up with `node` (`workers` workers), to its end: the
/// server shuts down, or the node is lost, which includes `replaced` turning true (the
/// node joined again on another connection: this one is left behind).
pub(crate) async fn serve(
    node: &NodeState,
    ctx: &ClientContext,
    reader: SecureReader,
    writer: SecureWriter,
    workers: u32,
    shutdown: &mut watch::Receiver<bool>,
    replaced: watch::Receiver<bool>,
) -> SessionEnd {
    node.set_connected(workers);
    let (session_id, in_flight) = ctx.flights.register();
    let end = serve_jobs(
        node, ctx, reader, writer, workers, session_id, &in_flight, shutdown, replaced,
    )
    .await;
    // First, so that no submitting thread adds to the jobs in flight after they are taken.
    let adopted = node.close_shared_session();
    ctx.flights.unregister(session_id);
    node.set_disconnected(matches!(end, ServeEnd::Lost(_)));
    let jobs: Vec<RemoteJob> = flights::lock(&in_flight)
        .drain()
        .map(|(_, entry)| {
            entry.leaves();
            entry.job
        })
        .collect();
    // Taken from the queue by a submitting thread and never sent: as if never taken.
    for (job, _) in adopted {
        ctx.feed.requeue(job);
    }
    match end {
        ServeEnd::Shutdown => {
            for job in jobs {
                ctx.feed.requeue(job);
            }
            SessionEnd::Shutdown
        }
        ServeEnd::Lost(failure) => {
            let held = jobs.len();
            for job in jobs {
                ctx.feed.lost(job, &node.executor);
            }
            SessionEnd::Lost { failure, held }
        }
    }
}
