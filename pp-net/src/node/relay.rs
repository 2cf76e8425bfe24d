//! The working phase of a session: jobs from the client to the workers, results back.
//!
//! Three kinds of tasks share one connection:
//! - the reader turns each `Submit` into queued jobs and answers heartbeats;
//! - one loop per worker process (see `pump`) takes queued jobs, runs them and hands the
//!   replies on; a worker that dies fails its job with `WorkerCrashed` and is replaced;
//! - the writer sends replies, all those ready at once in one `Results` message.
//!
//! The session ends when the client disconnects (or breaks the protocol), or when the node
//! shuts down: then every worker process is killed and reaped before this returns.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::process::{WorkerProcess, WorkerSpec};
use super::pump::{worker_loop, Pool};
use super::stats::Counters;
use crate::{JobReply, JobRequest, Message, NetError, Outcome, SecureReader, SecureWriter};

/// Room left in a `Results` message for everything but the payloads.
pub(crate) const MESSAGE_SLACK: u32 = 1024;

/// Time allowed for worker loops to stop after the session ends (they kill and reap).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the writer sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A job's outcome, to batch into `Results`.
    Reply(JobReply),
    /// The answer to a heartbeat.
    Ack(u64),
}

/// Why the session ended, for the log.
#[derive(Debug)]
pub(crate) enum End {
    /// The client closed the connection.
    ClientLeft,
    /// The node is shutting down.
    NodeStopping,
    /// The connection failed or the client broke the protocol.
    Failed(String),
}

/// What a relay needs besides the connection and the workers.
#[derive(Debug)]
pub(crate) struct RelayConfig {
    /// How to start a replacement worker.
    pub(crate) spec: WorkerSpec,
    /// The node's counters.
    pub(crate) counters: Arc<Counters>,
    /// Queued jobs beyond which the client is not read.
    pub(crate) max_queued_jobs: usize,
    /// The channel's message limit.
    pub(crate) max_message: u32,
}

/// Relays jobs until the session ends; kills and reaps every worker before returning.
pub(crate) async fn relay(
    reader: SecureReader,
    writer: SecureWriter,
    workers: Vec<WorkerProcess>,
    config: RelayConfig,
    mut node_stop: watch::Receiver<bool>,
) -> End {
    let (jobs, queue) = mpsc::channel(config.max_queued_jobs.max(1));
    let (replies, outgoing) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let max_message = config.max_message;
    let workers_count = workers.len();
    let pool = Arc::new(Pool::new(
        queue,
        replies.clone(),
        config.spec,
        config.counters,
        workers_count,
    ));
    let mut loops = JoinSet::new();
    for process in workers {
        loops.spawn(worker_loop(process, Arc::clone(&pool), stopped.clone()));
    }
    drop(pool);

    let end = tokio::select! {
        end = read_loop(reader, jobs, replies) => end,
        end = write_loop(writer, outgoing, max_message) => end,
        _ = node_stop.wait_for(|&stop| stop) => End::NodeStopping,
    };
    let _ = stop.send(true);
    let joined = tokio::time::timeout(STOP_GRACE, async {
        while loops.join_next().await.is_some() {}
    })
    .await;
    if joined.is_err() {
        // Aborted loops drop their processes, which kills them (kill_on_drop).
        loops.shutdown().await;
    }
    end
}

async fn read_loop(
    mut reader: SecureReader,
    jobs: mpsc::Sender<JobRequest>,
    replies: mpsc::UnboundedSender<Outgoing>,
) -> End {
    loop {
        match reader.recv().await {
            Ok(Message::Submit { jobs: batch }) => {
                for job in batch {
                    if jobs.send(job).await.is_err() {
                        return End::Failed("every worker loop has stopped".into());
                    }
                }
            }
            Ok(Message::Heartbeat { seq }) => {
                let _ = replies.send(Outgoing::Ack(seq));
            }
            Ok(Message::HeartbeatAck { .. }) => {}
            Ok(other) => {
                return End::Failed(format!(
                    "the client broke the protocol: unexpected {} after Ready",
                    other.kind()
                ))
            }
            Err(NetError::Disconnected { .. }) => return End::ClientLeft,
            Err(error) => return End::Failed(error.to_string()),
        }
    }
}

async fn write_loop(
    mut writer: SecureWriter,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    max_message: u32,
) -> End {
    let budget = u64::from(max_message.saturating_sub(MESSAGE_SLACK));
    let mut carry: Option<JobReply> = None;
    loop {
        let mut results = Vec::new();
        let mut acks = Vec::new();
        let mut size = 0u64;
        if let Some(reply) = carry.take() {
            size += reply_size(&reply);
            results.push(reply);
        } else {
            match outgoing.recv().await {
                Some(Outgoing::Reply(reply)) => {
                    size += reply_size(&reply);
                    results.push(reply);
                }
                Some(Outgoing::Ack(seq)) => acks.push(seq),
                None => return End::Failed("every worker loop has stopped".into()),
            }
        }
        // Take whatever else is ready, so that many replies share one frame.
        while let Ok(next) = outgoing.try_recv() {
            match next {
                Outgoing::Ack(seq) => acks.push(seq),
                Outgoing::Reply(reply)
                    if results.is_empty() || size + reply_size(&reply) <= budget =>
                {
                    size += reply_size(&reply);
                    results.push(reply);
                }
                Outgoing::Reply(reply) => {
                    carry = Some(reply);
                    break;
                }
            }
        }
        for seq in acks {
            if let Err(error) = writer.send(&Message::HeartbeatAck { seq }).await {
                return End::Failed(error.to_string());
            }
        }
        if !results.is_empty() {
            if let Err(error) = send_results(&mut writer, results, budget).await {
                return End::Failed(error.to_string());
            }
        }
    }
}

/// Sends one `Results`. If it is still too large (a lone reply above the limit), the
/// replies too large to travel become `Failed` outcomes and the message goes again.
async fn send_results(
    writer: &mut SecureWriter,
    results: Vec<JobReply>,
    budget: u64,
) -> Result<(), NetError> {
    let message = Message::Results { results };
    match writer.send(&message).await {
        Err(NetError::MessageTooLarge { len, limit, .. }) => {
            let Message::Results { mut results } = message else {
                return Ok(());
            };
            for reply in &mut results {
                if reply_size(reply) > budget {
                    reply.outcome = Outcome::Failed(format!(
                        "the job's result is too large for one message (the Results message \
                         was {len} bytes, the limit is {limit} bytes)"
                    ));
                }
            }
            writer.send(&Message::Results { results }).await
        }
        other => other,
    }
}

/// Encoded size of a reply, near enough to keep a batch under the message limit.
fn reply_size(reply: &JobReply) -> u64 {
    let payload = match &reply.outcome {
        Outcome::Ok(bytes) => bytes.len(),
        Outcome::Panicked(text) | Outcome::WorkerCrashed(text) | Outcome::Failed(text) => {
            text.len()
        }
    };
    payload as u64 + 32
}
