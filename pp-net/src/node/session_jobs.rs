//! The working phase of a session: jobs from the client to the workers, results back.
//!
//! Three kinds of tasks share one connection:
//! - the reader turns each `Submit` into queued jobs and answers heartbeats at once, also
//!   while every worker runs a long job (the node takes far more jobs than the client's
//!   window sends). A job counts against the client's limit (`max_queued_jobs`) from the
//!   moment it is read until its reply is written to the socket, so a client that stops
//!   reading results cannot make the node pile up replies: past the limit the reader stops
//!   reading and repeats its last answer every [`STALLED_ACK`] instead (one at a time), so
//!   that the client, which counts any message as a sign of life, does not declare a busy
//!   node lost. A `Cancel` is recorded (`cancels`) for the worker loops to act on; while
//!   the reader waits for room, a `Cancel` behind the waiting jobs waits too (a pp client
//!   keeps fewer jobs on a node than the default limit, so this takes a node configured
//!   below it);
//! - one loop per worker process (see `worker_loop`) takes queued jobs, runs them and hands the
//!   replies on; a worker that dies fails its job with `WorkerCrashed` and is replaced; one
//!   whose running job passes its time limit (answered `TimedOut`) or is withdrawn is
//!   killed and replaced; a withdrawn job still queued is dropped, its place given back
//!   (`Outgoing::Dropped`);
//! - the writer sends replies, all those ready at once in one `Results` message, and jobs'
//!   output one piece at a time in between, each job's before its reply (`output_queue`).
//!
//! The session ends when the client disconnects (or breaks the protocol), or when the node
//! shuts down: then every worker process is killed and reaped before this returns.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::cancels::Cancels;
use super::lanes::{Lanes, SessionLanes};
use super::outgoing::Outgoing;
use super::output_queue::OutputQueue;
use super::process::{WorkerProcess, WorkerSpec};
use super::queued::{self, Incoming, QueuedJob};
use super::stats::NodeCounters;
use super::worker_loop::{worker_loop, JobQueue};
use crate::protocol::{reply_size, MESSAGE_SLACK};
use crate::{JobReply, Message, NetError, SecureReader, SecureWriter};

/// Time allowed for worker loops to stop after the session ends (they kill and reap).
const LOOPS_STOP_GRACE: Duration = Duration::from_secs(5);

/// How often a reader that waits for room in a full queue repeats its last heartbeat
/// answer: well below any sensible client liveness timeout (3 s by default).
pub(crate) const STALLED_ACK: Duration = Duration::from_millis(250);

/// Why the session ended, for the log.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// The client closed the connection.
    ClientLeft,
    /// The node is shutting down.
    NodeStopping,
    /// The connection failed or the client broke the protocol.
    Failed(String),
}

/// What the working phase needs besides the connection and the workers.
#[derive(Debug)]
pub(crate) struct JobsConfig {
    /// How to start a replacement worker.
    pub(crate) spec: WorkerSpec,
    /// The node's counters.
    pub(crate) counters: Arc<NodeCounters>,
    /// Jobs of the client on the node (queued, running, or with a reply not yet written)
    /// beyond which the client is not read.
    pub(crate) max_queued_jobs: usize,
    /// The channel's message limit.
    pub(crate) max_message: u32,
    /// The node's lane offers, for the session's `LaneRequest`s.
    pub(crate) lanes: Arc<Lanes>,
}

/// Runs the session's jobs until the session ends; kills and reaps every worker before returning.
pub(crate) async fn serve_jobs(
    reader: SecureReader,
    writer: SecureWriter,
    workers: Vec<WorkerProcess>,
    config: JobsConfig,
    mut node_stop: watch::Receiver<bool>,
) -> SessionEnd {
    let limit = config.max_queued_jobs.max(1);
    // The channel never fills: only jobs holding one of `limit` permits enter it.
    let (jobs, queue) = mpsc::channel(limit);
    let in_flight = Arc::new(Semaphore::new(limit));
    let stalled_ack = Arc::new(AtomicBool::new(false));
    let (replies, outgoing) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let max_message = config.max_message;
    let workers_count = workers.len();
    // Lanes need memory files for their job counts (Linux); elsewhere a request goes
    // unanswered and the client keeps to the session.
    let lanes = cfg!(target_os = "linux").then(|| {
        SessionLanes::new(
            config.lanes,
            config.spec.clone(),
            Arc::clone(&config.counters),
            replies.clone(),
            stopped.clone(),
        )
    });
    let cancels = Arc::new(Cancels::default());
    let work = Arc::new(JobQueue::new(
        queue,
        replies.clone(),
        config.spec,
        config.counters,
        workers_count,
        Arc::clone(&cancels),
    ));
    let mut loops = JoinSet::new();
    for process in workers {
        loops.spawn(worker_loop(process, Arc::clone(&work), stopped.clone()));
    }
    drop(work);

    let flow = Flow {
        in_flight,
        limit,
        stalled_ack,
        cancels,
    };
    let end = tokio::select! {
        end = read_loop(reader, jobs, replies, flow.clone(), max_message, lanes.as_ref()) => end,
        end = write_loop(writer, outgoing, max_message, &flow) => end,
        _ = node_stop.wait_for(|&stop| stop) => SessionEnd::NodeStopping,
    };
    let _ = stop.send(true);
    let joined = tokio::time::timeout(LOOPS_STOP_GRACE, async {
        while loops.join_next().await.is_some() {}
    })
    .await;
    if joined.is_err() {
        // Aborted loops drop their processes, which kills them (kill_on_drop).
        loops.shutdown().await;
    }
    end
}

/// What the reader and the writer share to bound what the node holds for a client.
#[derive(Clone)]
struct Flow {
    /// One permit per job the client may still send; a job returns its permit when its
    /// reply has been written (or when it was dropped, withdrawn by the client).
    in_flight: Arc<Semaphore>,
    /// The number of permits: all are free when the node holds no job of the client.
    limit: usize,
    /// Set while a repeated heartbeat answer waits to be written, so that a client that
    /// reads nothing does not make them pile up either.
    stalled_ack: Arc<AtomicBool>,
    /// The jobs the client withdrew.
    cancels: Arc<Cancels>,
}

async fn read_loop(
    mut reader: SecureReader,
    jobs: mpsc::Sender<QueuedJob>,
    replies: mpsc::UnboundedSender<Outgoing>,
    flow: Flow,
    max_message: u32,
    lanes: Option<&SessionLanes>,
) -> SessionEnd {
    let mut last_seq = 0;
    loop {
        let incoming = match reader.recv_plaintext().await {
            Ok(plain) => queued::decode(&plain, max_message),
            Err(NetError::Disconnected { .. }) => return SessionEnd::ClientLeft,
            Err(error) => return SessionEnd::Failed(error.to_string()),
        };
        match incoming {
            Ok(Incoming::Submit(batch)) => {
                for job in batch {
                    if !queue_job(&jobs, &flow, job, &replies, last_seq).await {
                        return SessionEnd::Failed("every worker loop has stopped".into());
                    }
                }
            }
            Ok(Incoming::Other(Message::Heartbeat { seq })) => {
                last_seq = seq;
                let _ = replies.send(Outgoing::Ack(seq));
            }
            Ok(Incoming::Other(Message::HeartbeatAck { .. })) => {}
            Ok(Incoming::Other(Message::Cancel { job_ids })) => {
                // Only the reader takes permits: all free means no job of the client is
                // on the node, so these were answered before their cancel arrived.
                let idle = flow.in_flight.available_permits() >= flow.limit;
                flow.cancels.cancel(&job_ids, idle);
            }
            Ok(Incoming::Other(Message::LaneRequest)) => match lanes.map(SessionLanes::offer) {
                Some(Ok(Some(offer))) => {
                    let _ = replies.send(Outgoing::Note(offer));
                }
                // One lane per session: answered when the one in use ends.
                Some(Ok(None)) => {
                    pp_runtime::debug!(
                        "a lane request while the session's lane is in use, held back"
                    )
                }
                // The client goes on without a lane.
                Some(Err(reason)) => pp_runtime::warn!("no lane for the client: {reason}"),
                None => pp_runtime::debug!("a lane request without lanes, left unanswered"),
            },
            Ok(Incoming::Other(other)) => {
                return SessionEnd::Failed(format!(
                    "the client broke the protocol: unexpected {} after Ready",
                    other.kind()
                ))
            }
            Err(source) => {
                let peer = reader.peer();
                return SessionEnd::Failed(NetError::Codec { peer, source }.to_string());
            }
        }
    }
}

/// Queues `job`; returns false when every worker loop has stopped. While the client has
/// its limit of jobs on the node its heartbeats stay unread, so the answer to the last one
/// is repeated every [`STALLED_ACK`] until a job's reply is written.
async fn queue_job(
    jobs: &mpsc::Sender<QueuedJob>,
    flow: &Flow,
    job: QueuedJob,
    replies: &mpsc::UnboundedSender<Outgoing>,
    last_seq: u64,
) -> bool {
    let permit = match flow.in_flight.try_acquire() {
        Ok(permit) => permit,
        Err(_) => {
            let room = flow.in_flight.acquire();
            tokio::pin!(room);
            let mut repeat =
                tokio::time::interval_at(tokio::time::Instant::now() + STALLED_ACK, STALLED_ACK);
            loop {
                tokio::select! {
                    permit = &mut room => match permit {
                        Ok(permit) => break permit,
                        Err(_) => return false,
                    },
                    _ = repeat.tick() => {
                        if !flow.stalled_ack.swap(true, Ordering::Relaxed) {
                            let _ = replies.send(Outgoing::Ack(last_seq));
                        }
                    }
                }
            }
        }
    };
    // Given back by the writer once the job's reply is on the socket.
    permit.forget();
    jobs.send(job).await.is_ok()
}

async fn write_loop(
    mut writer: SecureWriter,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    max_message: u32,
    flow: &Flow,
) -> SessionEnd {
    let budget = u64::from(max_message.saturating_sub(MESSAGE_SLACK));
    // Replies that may go, in order: one message's worth per round.
    let mut ready: VecDeque<JobReply> = VecDeque::new();
    // Jobs' output, one piece per round, and the replies that wait for it.
    let mut outputs = OutputQueue::default();
    // Notes released by the output queue wait here for the next round.
    let mut notes = Vec::new();
    loop {
        let mut acks = Vec::new();
        let mut dropped = 0;
        if ready.is_empty() && outputs.is_empty() && notes.is_empty() {
            match outgoing.recv().await {
                Some(Outgoing::Dropped) => dropped += 1,
                Some(next) => sort(next, &mut acks, &mut notes, &mut ready, &mut outputs),
                None => return SessionEnd::Failed("every worker loop has stopped".into()),
            }
        }
        // Take whatever else is ready, so that many replies share one frame.
        while let Ok(next) = outgoing.try_recv() {
            match next {
                Outgoing::Dropped => dropped += 1,
                next => sort(next, &mut acks, &mut notes, &mut ready, &mut outputs),
            }
        }
        flow.in_flight.add_permits(dropped);
        if !acks.is_empty() {
            flow.stalled_ack.store(false, Ordering::Relaxed);
        }
        let acks = acks.into_iter().map(|seq| Message::HeartbeatAck { seq });
        for message in acks.chain(notes.drain(..)) {
            if let Err(error) = writer.send(&message).await {
                return SessionEnd::Failed(error.to_string());
            }
        }
        let mut results = Vec::new();
        let mut size = 0u64;
        while let Some(reply) = ready.front() {
            if !results.is_empty() && size + reply_size(reply) > budget {
                break;
            }
            size += reply_size(reply);
            results.extend(ready.pop_front());
        }
        if !results.is_empty() {
            let written = results.len();
            if let Err(error) = writer.send_results(results).await {
                return SessionEnd::Failed(error.to_string());
            }
            flow.in_flight.add_permits(written);
        }
        if let Some(piece) = outputs.next_piece(&mut ready, &mut notes) {
            if let Err(error) = writer.send(&Message::Output(piece)).await {
                return SessionEnd::Failed(error.to_string());
            }
            outputs.release_replies(&mut ready, &mut notes);
        }
    }
}

/// Puts what the writer got where it waits: acknowledgements and notes go this round, a
/// piece of output in the output queue, a reply in `ready` unless its job's output has yet
/// to go.
fn sort(
    next: Outgoing,
    acks: &mut Vec<u64>,
    notes: &mut Vec<Message>,
    ready: &mut VecDeque<JobReply>,
    outputs: &mut OutputQueue,
) {
    match next {
        Outgoing::Ack(seq) => acks.push(seq),
        Outgoing::Note(Message::Output(piece)) => outputs.push_piece(piece),
        // After the output of the lane's job, when it crashed.
        Outgoing::Note(message @ Message::LaneEnded { .. }) => {
            notes.extend(outputs.note_after_pieces(message))
        }
        Outgoing::Note(message) => notes.push(message),
        Outgoing::Reply(reply) => ready.extend(outputs.reply(reply)),
        // Counted by the caller.
        Outgoing::Dropped => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChannelConfig, JobRequest};

    const WAIT: Duration = Duration::from_secs(20);

    fn job(job_id: u64) -> JobRequest {
        JobRequest {
            job_id,
            task: "t".into(),
            fingerprint: 0,
            timeout: None,
            args: Vec::new(),
        }
    }

    /// The next acknowledgement, written as far as the reader can tell.
    async fn next_ack(outgoing: &mut mpsc::UnboundedReceiver<Outgoing>, flow: &Flow) -> u64 {
        match tokio::time::timeout(WAIT, outgoing.recv()).await {
            Ok(Some(Outgoing::Ack(seq))) => {
                flow.stalled_ack.store(false, Ordering::Relaxed);
                seq
            }
            other => panic!("expected an acknowledgement, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_reader_waiting_for_room_in_a_full_queue_still_shows_it_is_alive() {
        let config = ChannelConfig::default();
        let ((_, mut to_node), (from_client, _)) = crate::test_channel::connected().await;

        // Room for one job: the second of the batch stops the reader.
        let (jobs, mut queue) = mpsc::channel(1);
        let (replies, mut outgoing) = mpsc::unbounded_channel();
        let flow = Flow {
            in_flight: Arc::new(Semaphore::new(1)),
            limit: 1,
            stalled_ack: Arc::new(AtomicBool::new(false)),
            cancels: Arc::default(),
        };
        let reader = tokio::spawn(read_loop(
            from_client,
            jobs,
            replies,
            flow.clone(),
            config.max_message,
            None,
        ));
        to_node.send(&Message::Heartbeat { seq: 6 }).await.unwrap();
        assert_eq!(next_ack(&mut outgoing, &flow).await, 6);
        to_node
            .send(&Message::Submit {
                jobs: vec![job(1), job(2), job(3)],
            })
            .await
            .unwrap();
        to_node.send(&Message::Heartbeat { seq: 7 }).await.unwrap();

        // Heartbeat 7 waits behind the stalled batch: the node repeats its last answer.
        assert_eq!(next_ack(&mut outgoing, &flow).await, 6);
        assert_eq!(next_ack(&mut outgoing, &flow).await, 6);
        // A job's reply is written each time: the batch goes through, then heartbeat 7 is
        // read and answered.
        for id in 1..=3 {
            assert_eq!(queue.recv().await.map(|j| j.job_id), Some(id));
            flow.in_flight.add_permits(1);
        }
        loop {
            match next_ack(&mut outgoing, &flow).await {
                6 => continue,
                seq => break assert_eq!(seq, 7),
            }
        }
        drop(to_node);
        let end = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
        assert!(matches!(end, SessionEnd::ClientLeft), "{end:?}");
    }
}
