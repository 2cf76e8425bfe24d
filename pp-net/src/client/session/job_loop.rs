//! A session's working phase: keep the node's in-flight window full, send a lone job on
//! the lane, complete jobs as results come back (on the connection or the lane), print
//! what they wrote (`job_output`), send heartbeats, and withdraw jobs the runtime settled
//! elsewhere (`Cancel`; a settled job on the lane closes the lane, whose worker ends with
//! it), until the server shuts down or the node is lost.

use super::finish;
use super::heartbeat::Heartbeats;
use super::job_source::{next_job, NextJob};
use super::outbox::Outbox;
use super::setup::protocol_error;
use super::window::InFlightWindow;
use crate::channel::{SecureReader, SecureWriter};
use crate::client::classify::connection_lost;
use crate::client::context::ClientContext;
use crate::client::flights::{self, Flight, SharedInFlight};
use crate::client::lane::{ClientLane, LaneEvent};
use crate::client::node_state::NodeState;
use crate::client::shared_session::{LaneSent, SharedSession};
use crate::lane::LANE_MAX_ARGS;
use crate::protocol::{JobReply, JobRequest, Message, Outcome};
use pp_runtime::NodeFailure;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How the working phase of a session ended.
pub(crate) enum ServeEnd {
    /// The server is shutting down.
    Shutdown,
    /// The node was lost, for this reason.
    Lost(NodeFailure),
}

/// Keeps up to the window's size of jobs on the node, completes them as results come back,
/// and sends heartbeats; returns when the server shuts down or the node is lost. With
/// nothing left to take and room in the window, it sends second copies of stragglers of
/// other sessions (when the options allow).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_jobs(
    node: &NodeState,
    ctx: &ClientContext,
    mut reader: SecureReader,
    writer: SecureWriter,
    workers: u32,
    session_id: u64,
    in_flight: &SharedInFlight,
    shutdown: &mut watch::Receiver<bool>,
    mut replaced: watch::Receiver<bool>,
) -> ServeEnd {
    let mut outbox = Outbox::start(writer);
    let mut heartbeats = Heartbeats::start(&ctx.options);
    let mut window = InFlightWindow::new(workers);
    let shared = node.open_shared_session(in_flight);
    // A node that joined may be unreachable from here (NAT): its lane could not be dialed.
    let mut lane = ClientLane::new(ctx.options.lanes && !node.joined);
    let mut settled = ctx.flights.subscribe_settled();
    loop {
        if lane.should_request() {
            outbox.send(Message::LaneRequest);
        }
        if shared.take_broke() {
            pp_runtime::debug!(node = %node.name, "lane broke on a send from a submitting thread");
            lane.broke(&shared);
        }
        let window_size = window.size();
        let mut batch = Vec::new();
        // When to look for a job again (a straggler, a retried job, the end of a
        // put-aside), if nothing else wakes us first.
        let mut wake_at = None;
        while flights::lock(in_flight).len() < window_size {
            let (job, copies, encoded) = match next_job(node, &shared, ctx, session_id) {
                NextJob::Own(job, encoded) => (job, None, encoded),
                NextJob::StragglerCopy(job, copies) => (job, Some(copies), None),
                NextJob::WakeAt(at) => {
                    wake_at = Some(at);
                    break;
                }
                NextJob::Nothing => break,
            };
            let copy = copies.is_some();
            if job.is_settled() {
                // Cancelled before it left: nothing to send.
                if let Some(copies) = &copies {
                    copies.leaves();
                }
                ctx.feed.requeue(job);
                continue;
            }
            match encoded.map_or_else(|| job.encode_args(), Ok) {
                Ok(args) => {
                    if copy {
                        pp_runtime::debug!(node = %node.name, task = job.task_id(), "running a second copy of a straggler");
                    }
                    let request = JobRequest {
                        job_id: shared.next_id(),
                        task: job.task_id().to_owned(),
                        fingerprint: job.fingerprint(),
                        timeout: job.timeout(),
                        args,
                    };
                    // A lone job: nothing else in flight here or waiting to be sent. Never
                    // one with a time limit: only the session's node enforces it.
                    let lone = !copy
                        && request.timeout.is_none()
                        && batch.is_empty()
                        && request.args.len() <= LANE_MAX_ARGS
                        && flights::lock(in_flight).is_empty()
                        && ctx.feed.queued() == 0;
                    flights::lock(in_flight).insert(request.job_id, Flight::new(job, copies));
                    if lone {
                        match shared.send(&request) {
                            LaneSent::Yes => continue,
                            LaneSent::NotFree => {}
                            // Sent whole or not at all as far as the worker can tell: a
                            // worker that got it answers on a lane now closed, so the job
                            // goes on the session.
                            LaneSent::Broke(error) => {
                                pp_runtime::debug!(node = %node.name, %error, "lane broke on send");
                                lane.broke(&shared);
                            }
                        }
                    }
                    batch.push(request);
                }
                // The first copy still runs: this one is dropped.
                Err(_) if copy => {
                    if let Some(copies) = &copies {
                        copies.leaves();
                    }
                    ctx.feed.requeue(job)
                }
                // It never ran: no run time.
                Err(e) => ctx.feed.complete(
                    job,
                    &node.executor,
                    Outcome::Failed(format!("cannot encode the arguments: {e}")),
                    Duration::ZERO,
                ),
            }
        }
        if !batch.is_empty() {
            outbox.send(Message::Submit { jobs: batch });
        }
        let room = flights::lock(in_flight).len() < window_size;
        // Biased to the node's messages: one that is already here counts before the
        // liveness check looks at the clock.
        tokio::select! {
            biased;
            event = lane.event() => match event {
                LaneEvent::Opened(opened) => match lane.opened(opened, &shared) {
                    None => pp_runtime::debug!(node = %node.name, "lane open"),
                    Some(why) => pp_runtime::debug!(node = %node.name, "no lane: {why}"),
                },
                LaneEvent::Received(Ok(Message::Results { results })) => {
                    for reply in results {
                        // Free for the next lone job before this one completes.
                        shared.answered(reply.job_id);
                        settle(node, ctx, in_flight, &mut window, reply);
                    }
                }
                LaneEvent::Received(Ok(Message::Output(output))) => finish::printed(node, in_flight, output, None),
                LaneEvent::Received(other) => {
                    if let Ok(message) = other {
                        pp_runtime::debug!(node = %node.name, "{}", protocol_error(&message, "results on the lane"));
                    }
                    lane.broke(&shared);
                }
            },
            message = reader.recv() => {
                heartbeats.heard();
                match message {
                    Ok(Message::Results { results }) => {
                        for reply in results {
                            settle(node, ctx, in_flight, &mut window, reply);
                        }
                    }
                    Ok(Message::HeartbeatAck { .. }) => {}
                    Ok(Message::Output(output)) => {
                        let lane_job = lane.held_job(&shared);
                        finish::printed(node, in_flight, output, lane_job)
                    }
                    Ok(Message::LaneOffer { lane: number, key }) => {
                        lane.offered(number, key, &node.address, ctx.channel);
                    }
                    Ok(Message::LaneEnded { lane: number, crashed, reason }) => {
                        let held = lane.ended(number, &shared);
                        let entry = held.and_then(|id| flights::lock(in_flight).remove(&id));
                        if let Some(entry) = entry {
                            if crashed {
                                node.job_ended(true);
                                let report = format!("{reason} while running task `{}`", entry.job.task_id());
                                // The node does not say how long the lane's worker ran it;
                                // it sent the job's lines first.
                                finish::finish(node, ctx, entry, Outcome::WorkerCrashed(report), Duration::ZERO);
                            } else {
                                pp_runtime::warn!(node = %node.name, "the lane holding a job closed: {reason}");
                                entry.leaves();
                                ctx.feed.lost(entry.job, &node.executor);
                            }
                        }
                    }
                    Ok(Message::Refused { reason }) => return ServeEnd::Lost(NodeFailure::Other(format!("refused: {reason}"))),
                    Ok(other) => return ServeEnd::Lost(NodeFailure::Other(protocol_error(&other, "results"))),
                    Err(e) => return ServeEnd::Lost(connection_lost(&e)),
                }
            }
            sent = &mut outbox.task => {
                return ServeEnd::Lost(match sent {
                    Ok(Ok(())) => NodeFailure::Other("the connection's sending task stopped".to_owned()),
                    Ok(Err(e)) => connection_lost(&e),
                    Err(e) => NodeFailure::Other(format!("the connection's sending task failed: {e}")),
                });
            }
            _ = shutdown.changed() => {
                lane.close().await;
                return ServeEnd::Shutdown;
            }
            // No sender (a dialed node): `Err`, and the branch is off.
            Ok(()) = replaced.changed() => return ServeEnd::Lost(NodeFailure::ConnectionLost(
                "it joined again (restarted, or its host came back) while this connection \
                 still looked open".to_owned(),
            )),
            Ok(()) = settled.changed() => withdraw_settled(node, ctx, in_flight, &shared, &mut lane, &outbox),
            scheduled = heartbeats.due() => match heartbeats.beat(scheduled) {
                Ok(heartbeat) => outbox.send(heartbeat),
                Err(why) => return ServeEnd::Lost(why),
            },
            _ = node.notify.notified(), if room => {}
            _ = sleep_until_some(wake_at), if room && wake_at.is_some() => {}
        }
    }
}

/// Completes the job in flight that `reply` answers, counted with the run time the node
/// reported; the round trip (sent to result) feeds the scheduling: the window, the
/// stragglers' threshold and the node's round-trip average. A reply for a job no longer in
/// flight (a straggler's copy that lost) is dropped.
fn settle(
    node: &NodeState,
    ctx: &ClientContext,
    in_flight: &SharedInFlight,
    window: &mut InFlightWindow,
    reply: JobReply,
) {
    let entry = flights::lock(in_flight).remove(&reply.job_id);
    match entry {
        Some(entry) => {
            let latency = entry.sent.elapsed();
            // Itself and the jobs still in flight: about the depth it was sent at, in a
            // steady stream.
            let depth = flights::lock(in_flight).len() + 1;
            window.observe(latency, depth);
            ctx.flights.observe(latency);
            node.executor.record_round_trip(latency);
            node.job_ended(matches!(reply.outcome, Outcome::WorkerCrashed(_)));
            finish::finish(node, ctx, entry, reply.outcome, reply.run_time);
        }
        None => pp_runtime::debug!(
            node = %node.name,
            job = reply.job_id,
            "result for a job not in flight dropped"
        ),
    }
}

/// Forgets the jobs in flight that the runtime settled elsewhere (cancelled): those on the
/// session are withdrawn with `Cancel` (the node drops them, or kills and replaces the
/// worker running one), the lane holding one is closed.
fn withdraw_settled(
    node: &NodeState,
    ctx: &ClientContext,
    in_flight: &SharedInFlight,
    shared: &SharedSession,
    lane: &mut ClientLane,
    outbox: &Outbox,
) {
    let mut job_ids = flights::forget_settled(in_flight, &ctx.feed);
    if job_ids.is_empty() {
        return;
    }
    if let Some(on_lane) = shared.lane_job() {
        if job_ids.contains(&on_lane) {
            pp_runtime::debug!(node = %node.name, "the lane's job was settled elsewhere: closing the lane");
            lane.broke(shared);
            job_ids.retain(|&id| id != on_lane);
        }
    }
    if !job_ids.is_empty() {
        pp_runtime::debug!(node = %node.name, jobs = job_ids.len(), "withdrawing jobs settled elsewhere");
        outbox.send(Message::Cancel { job_ids });
    }
}

/// Sleeps until `at`; never returns for `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
