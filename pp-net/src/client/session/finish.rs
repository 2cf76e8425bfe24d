//! The end of a job in flight on a session: what it printed, and its completion.
//!
//! A job's output is printed as it comes (each job's lines come just before its result),
//! except for a job that runs as two copies (a straggler's): each copy's output is held
//! until that copy's reply, then printed if that reply is the one taken for the job
//! (the first that completes it, or a failure when the other copy is gone) and dropped
//! otherwise, so that the job's lines appear once, from the copy whose result is used. A
//! job whose lines were printed as they came is never copied (see `flights`), so no job
//! prints from both. Once a copy's reply is taken, the other copy is withdrawn from its
//! node (`Cancel`, through [`Flights::settled_elsewhere`](crate::client::flights::Flights)):
//! a queued copy is dropped, a running one has its worker killed and replaced, which
//! frees that worker for the next job rather than leaving it on work nobody waits for.
//!
//! A job completes after its lines are printed (`job_output::then`).

use std::time::Duration;

use crate::client::context::ClientContext;
use crate::client::flights::{self, Flight, SharedInFlight};
use crate::client::job_output;
use crate::client::node_state::NodeState;
use crate::protocol::{JobOutput, Outcome, LANE_JOB};

/// A piece of what job `output.job_id` of this session printed: printed now, held (a job
/// with two copies), or dropped (a copy whose other copy's reply was taken, or a job no
/// longer in flight: withdrawn). [`LANE_JOB`] stands for `lane_job`, the job of the lane
/// whose worker died.
pub(crate) fn printed(
    node: &NodeState,
    in_flight: &SharedInFlight,
    mut output: JobOutput,
    lane_job: Option<u64>,
) {
    if output.job_id == LANE_JOB {
        match lane_job {
            Some(job_id) => output.job_id = job_id,
            None => return,
        }
    }
    let mut flight = flights::lock(in_flight);
    let Some(entry) = flight.get_mut(&output.job_id) else {
        drop(flight);
        pp_runtime::debug!(node = %node.name, job = output.job_id, "output of a job no longer in flight dropped");
        return;
    };
    match &entry.copies {
        None => {
            entry.printed = true;
            drop(flight);
            job_output::print(&node.name, output);
        }
        Some(copies) if copies.used() => {}
        Some(_) => entry.held.push(output),
    }
}

/// Completes `entry`, a job that was in flight on this session, with `outcome` (after its
/// lines). For a job with two copies: prints this copy's held lines if its reply is taken
/// for the job, and then has the other copy withdrawn.
pub(crate) fn finish(
    node: &NodeState,
    ctx: &ClientContext,
    entry: Flight,
    outcome: Outcome,
    run_time: Duration,
) {
    let Flight {
        job, copies, held, ..
    } = entry;
    let mut withdraw_other = None;
    if let Some(copies) = copies {
        let failed = matches!(outcome, Outcome::WorkerCrashed(_) | Outcome::TimedOut(_));
        // A failed copy whose other copy still runs is dropped by the feed: the other's
        // reply will be the job's. Else this reply is the job's, unless the other's was.
        let taken = if failed && copies.leaves() {
            false
        } else {
            copies.use_this()
        };
        if taken {
            held.into_iter()
                .for_each(|piece| job_output::print(&node.name, piece));
            withdraw_other = Some(ctx.flights.settled_sender());
        }
    }
    let (feed, executor) = (ctx.feed.clone(), node.executor.clone());
    job_output::then(move || {
        feed.complete(job, &executor, outcome, run_time);
        // Completed: the other copy's session finds it settled and withdraws it.
        if let Some(settled) = withdraw_other {
            settled.send_modify(|generation| *generation += 1);
        }
    });
}
