//! One node, one connection: connect, authenticate, ship the program if the node lacks it,
//! then keep the node's in-flight window full of jobs until the connection ends.
//!
//! Whatever ends a session (an error, the node closing, the server shutting down), the jobs
//! it still held go back to the front of the queue, so nothing is lost.

use super::NodeState;
use crate::program::{this_target, Program};
use crate::{
    connect_client, ChannelConfig, JobRequest, Message, Outcome, Secret, SecureReader, SecureWriter,
};
use pp_runtime::remote::{JobFeed, RemoteJob, RemoteOutcome};
use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Jobs in flight on a node beyond its worker count, at least: enough to hide the round
/// trip for jobs that take longer than it.
pub(crate) const MIN_EXTRA_IN_FLIGHT: usize = 2;

/// Jobs in flight on a node beyond its worker count, at most.
pub(crate) const MAX_EXTRA_IN_FLIGHT: usize = 1024;

/// How much work, per worker, the window keeps queued on a node beyond what its workers
/// run: short jobs get a deep window (so tiny jobs stream), long ones a shallow one (so a
/// node never hoards work that others could do).
pub(crate) const QUEUED_WORK_PER_WORKER: Duration = Duration::from_millis(2);

/// How long a TCP connection to a node may take to open.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a node may take to answer the hello and to start its workers.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Size of one upload chunk.
const UPLOAD_CHUNK: usize = 1 << 20;

/// What every session of a client shares.
pub(crate) struct Context {
    pub(crate) feed: JobFeed,
    pub(crate) secret: Secret,
    pub(crate) channel: ChannelConfig,
    pub(crate) program: &'static Program,
    pub(crate) registry_fingerprint: u64,
}

/// Why a session ended.
pub(crate) enum End {
    /// The server is shutting down.
    Shutdown,
    /// The node cannot be used or the connection broke; the text says why.
    Failed(String),
}

/// Runs one session with `node` until it ends.
pub(crate) async fn run(
    node: &NodeState,
    ctx: &Context,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let setup = async {
        let (mut reader, mut writer) = open(node, ctx).await?;
        let workers = handshake(&mut reader, &mut writer, ctx).await?;
        Ok::<_, String>((reader, writer, workers))
    };
    let (mut reader, mut writer, workers) = tokio::select! {
        done = setup => match done {
            Ok(session) => session,
            Err(why) => return End::Failed(why),
        },
        _ = shutdown.changed() => return End::Shutdown,
    };
    node.set_connected(workers);
    tracing::info!(node = %node.name, workers, "node connected");
    let mut in_flight = HashMap::new();
    let end = serve(
        node,
        ctx,
        &mut reader,
        &mut writer,
        workers,
        &mut in_flight,
        shutdown,
    )
    .await;
    node.set_disconnected();
    let returned = in_flight.len();
    for (_, (job, _)) in in_flight.drain() {
        ctx.feed.requeue(job);
    }
    if returned > 0 {
        tracing::debug!(node = %node.name, returned, "jobs in flight put back in the queue");
    }
    end
}

async fn open(node: &NodeState, ctx: &Context) -> Result<(SecureReader, SecureWriter), String> {
    let target = (node.address.host.as_str(), node.address.port);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot connect: {e}"))?;
    connect_client(stream, &ctx.secret, ctx.channel)
        .await
        .map_err(|e| e.to_string())
}

/// Hello, upload if asked, wait for `Ready`; returns the node's worker count.
async fn handshake(
    reader: &mut SecureReader,
    writer: &mut SecureWriter,
    ctx: &Context,
) -> Result<u32, String> {
    let send_err = |e: crate::NetError| e.to_string();
    writer
        .send(&Message::ClientHello {
            program_sha256: ctx.program.sha256,
            program_size: ctx.program.size,
            target: this_target(),
            registry_fingerprint: ctx.registry_fingerprint,
        })
        .await
        .map_err(send_err)?;
    let need_upload = match recv_setup(reader).await? {
        Message::ServerHello { need_upload, .. } => need_upload,
        other => return Err(unexpected(&other, "a hello")),
    };
    if need_upload {
        upload(writer, ctx.program).await?;
    }
    match recv_setup(reader).await? {
        Message::Ready { workers } if workers > 0 => Ok(workers),
        Message::Ready { .. } => Err("the node has no workers".into()),
        other => Err(unexpected(&other, "`Ready`")),
    }
}

async fn recv_setup(reader: &mut SecureReader) -> Result<Message, String> {
    match tokio::time::timeout(SETUP_TIMEOUT, reader.recv()).await {
        Err(_) => Err(format!("no answer within {SETUP_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(Message::Refused { reason })) => Err(format!("refused: {reason}")),
        Ok(Ok(message)) => Ok(message),
    }
}

fn unexpected(message: &Message, wanted: &str) -> String {
    format!("protocol error: expected {wanted}, got {}", message.kind())
}

async fn upload(writer: &mut SecureWriter, program: &Program) -> Result<(), String> {
    let mut file = std::fs::File::open(&program.path)
        .map_err(|e| format!("cannot read {}: {e}", program.path.display()))?;
    let mut offset = 0u64;
    loop {
        let mut bytes = vec![0u8; UPLOAD_CHUNK];
        let n = file
            .read(&mut bytes)
            .map_err(|e| format!("cannot read {}: {e}", program.path.display()))?;
        if n == 0 {
            break;
        }
        bytes.truncate(n);
        writer
            .send(&Message::UploadChunk { offset, bytes })
            .await
            .map_err(|e| e.to_string())?;
        offset += n as u64;
    }
    if offset != program.size {
        return Err(format!(
            "{} changed while it was uploaded ({offset} bytes read, {} expected)",
            program.path.display(),
            program.size
        ));
    }
    writer
        .send(&Message::UploadDone)
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(bytes = offset, "program uploaded");
    Ok(())
}

type InFlight = HashMap<u64, (RemoteJob, Instant)>;

/// Keeps up to `workers + EXTRA_IN_FLIGHT` jobs on the node and completes them as results
/// come back.
async fn serve(
    node: &NodeState,
    ctx: &Context,
    reader: &mut SecureReader,
    writer: &mut SecureWriter,
    workers: u32,
    in_flight: &mut InFlight,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let mut window = Window::new(workers);
    let mut next_id = 0u64;
    loop {
        let window_size = window.size();
        let mut batch = Vec::new();
        while in_flight.len() < window_size {
            let Some(job) = ctx.feed.take() else { break };
            match job.encode_args() {
                Ok(args) => {
                    next_id += 1;
                    batch.push(JobRequest {
                        job_id: next_id,
                        task: job.task_id().to_owned(),
                        fingerprint: job.fingerprint(),
                        args,
                    });
                    in_flight.insert(next_id, (job, Instant::now()));
                }
                Err(e) => ctx.feed.complete(
                    job,
                    &node.executor,
                    RemoteOutcome::Failed(format!("cannot encode the arguments: {e}")),
                    Duration::ZERO,
                ),
            }
        }
        if !batch.is_empty() {
            if let Err(e) = writer.send(&Message::Submit { jobs: batch }).await {
                return End::Failed(e.to_string());
            }
        }
        let room = in_flight.len() < window_size;
        tokio::select! {
            message = reader.recv() => match message {
                Ok(Message::Results { results }) => {
                    for reply in results {
                        match in_flight.remove(&reply.job_id) {
                            Some((job, sent)) => {
                                let latency = sent.elapsed();
                                window.observe(latency);
                                ctx.feed.complete(job, &node.executor, outcome(reply.outcome), latency);
                            }
                            None => tracing::debug!(node = %node.name, job = reply.job_id, "result for a job not in flight dropped"),
                        }
                    }
                }
                Ok(Message::HeartbeatAck { .. }) => {}
                Ok(Message::Refused { reason }) => return End::Failed(format!("refused: {reason}")),
                Ok(other) => return End::Failed(unexpected(&other, "results")),
                Err(e) => return End::Failed(e.to_string()),
            },
            _ = node.notify.notified(), if room => {}
            _ = shutdown.changed() => return End::Shutdown,
        }
    }
}

/// The number of jobs to keep in flight on one node, from the latency of its jobs.
struct Window {
    workers: usize,
    /// Moving average of the time from sending a job to its result, in seconds.
    latency: Option<f64>,
}

impl Window {
    fn new(workers: u32) -> Self {
        Window {
            workers: workers as usize,
            latency: None,
        }
    }

    fn observe(&mut self, latency: Duration) {
        let sample = latency.as_secs_f64();
        self.latency = Some(match self.latency {
            None => sample,
            Some(avg) => 0.9 * avg + 0.1 * sample,
        });
    }

    fn size(&self) -> usize {
        let extra = match self.latency {
            None => MIN_EXTRA_IN_FLIGHT,
            Some(latency) => {
                let budget = QUEUED_WORK_PER_WORKER.as_secs_f64() * self.workers as f64;
                let extra = (budget / latency.max(1e-9)).ceil();
                (extra.min(MAX_EXTRA_IN_FLIGHT as f64) as usize).max(MIN_EXTRA_IN_FLIGHT)
            }
        };
        self.workers + extra
    }
}

fn outcome(outcome: Outcome) -> RemoteOutcome {
    match outcome {
        Outcome::Ok(bytes) => RemoteOutcome::Ok(bytes),
        Outcome::Panicked(message) => RemoteOutcome::Panicked(message),
        Outcome::WorkerCrashed(message) => RemoteOutcome::WorkerCrashed(message),
        Outcome::Failed(message) => RemoteOutcome::Failed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_deep_for_tiny_jobs_and_shallow_for_long_ones() {
        let mut window = Window::new(2);
        assert_eq!(window.size(), 2 + MIN_EXTRA_IN_FLIGHT, "before any result");
        for _ in 0..100 {
            window.observe(Duration::from_micros(20));
        }
        assert_eq!(window.size(), 2 + 200, "4 ms of 20 µs jobs");
        for _ in 0..200 {
            window.observe(Duration::from_millis(50));
        }
        assert_eq!(window.size(), 2 + MIN_EXTRA_IN_FLIGHT);
        for _ in 0..200 {
            window.observe(Duration::from_nanos(10));
        }
        assert_eq!(window.size(), 2 + MAX_EXTRA_IN_FLIGHT);
    }
}
