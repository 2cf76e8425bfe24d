//! One node, one connection: connect, authenticate, ship the program if the node lacks it,
//! then keep the node's in-flight window full of jobs until the connection ends.
//!
//! While jobs flow, the client sends a `Heartbeat` every heartbeat interval, and any
//! message from the node (results or a `HeartbeatAck`) shows it is alive; the node is lost
//! by the liveness policy
//! ([`ClusterOptions::liveness_timeout`](pp_runtime::ClusterOptions::liveness_timeout)).
//! Messages to the node go through a task of their own, so a node that stops reading cannot
//! stall the session's clock.
//!
//! When the node is lost, each job it still held is given back with
//! [`JobFeed::lost`](pp_runtime::remote::JobFeed::lost) (the attempt policy); when the
//! server shuts down, they are simply given back. Results of the old connection can never
//! reach a new one, and a result whose job is not in flight is dropped, so each job is
//! completed once.
//!
//! Straggler copies (the policy:
//! [`ClusterOptions::duplicate_stragglers`](pp_runtime::ClusterOptions::duplicate_stragglers)):
//! when the queue is empty and the window has room, the session looks in the other
//! sessions' in-flight maps (the `flights` module, whose thresholds are
//! [`STRAGGLER_FACTOR`](super::flights::STRAGGLER_FACTOR) and
//! [`STRAGGLER_MIN`](super::flights::STRAGGLER_MIN)) and sends a second copy
//! ([`RemoteJob::duplicate`](pp_runtime::remote::RemoteJob::duplicate)).

use super::flights::{self, Flights, SharedFlight, Straggler};
use super::lane::{ClientLane, Event, Sent};
use super::NodeState;
use crate::channel::{connect_client, ChannelConfig, NetError, Secret, SecureReader, SecureWriter};
use crate::lane::LANE_MAX_ARGS;
use crate::program::{this_target, Program};
use crate::protocol::{JobReply, JobRequest, Message, Outcome};
use pp_runtime::remote::{ClusterOptions, JobFeed, RemoteJob};
use std::io::Read;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

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
    /// Heartbeats, liveness, attempts, straggler copies.
    pub(crate) options: ClusterOptions,
    /// Every session's jobs in flight, to find stragglers.
    pub(crate) flights: Flights,
}

/// Why a session ended.
pub(crate) enum End {
    /// The server is shutting down.
    Shutdown,
    /// The node could not be used (unreachable, refused, setup failed); the text says why.
    Failed(String),
    /// The node was serving and was lost: its connection broke, it broke the protocol, or
    /// it fell silent. The session logged why and gave back its jobs in flight.
    Lost,
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
    let (reader, writer, workers) = tokio::select! {
        done = setup => match done {
            Ok(session) => session,
            Err(why) => return End::Failed(why),
        },
        _ = shutdown.changed() => return End::Shutdown,
    };
    node.set_connected(workers);
    tracing::info!(node = %node.name, workers, "node connected");
    let (me, in_flight) = ctx.flights.register();
    let end = serve(node, ctx, reader, writer, workers, me, &in_flight, shutdown).await;
    // First, so that no submitting thread adds to the jobs in flight after they are taken.
    let adopted = node.end_direct();
    ctx.flights.unregister(me);
    node.set_disconnected(matches!(end, Serve::Lost(_)));
    let jobs: Vec<RemoteJob> = flights::lock(&in_flight)
        .drain()
        .map(|(_, (job, _))| job)
        .collect();
    // Taken from the queue by a submitting thread and never sent: as if never taken.
    for (job, _) in adopted {
        ctx.feed.requeue(job);
    }
    match end {
        Serve::Shutdown => {
            for job in jobs {
                ctx.feed.requeue(job);
            }
            End::Shutdown
        }
        Serve::Lost(why) => {
            let held = jobs.len();
            tracing::warn!(
                node = %node.name,
                held,
                "node lost: {why}; {held} jobs it held go back to the queue, each up to its \
                 attempt limit, unless another copy of the job completed it or still runs \
                 (retrying the node in the background)"
            );
            for job in jobs {
                ctx.feed.lost(job, &node.executor);
            }
            End::Lost
        }
    }
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
    let send_err = |e: NetError| e.to_string();
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

/// How the working phase of a session ended.
enum Serve {
    Shutdown,
    Lost(String),
}

/// The connection's writing half, on a task of its own: a node that stops reading fills
/// the socket's buffers and blocks this task, never the session.
struct Outbox {
    queue: mpsc::UnboundedSender<Message>,
    task: JoinHandle<Result<(), NetError>>,
}

impl Outbox {
    fn start(mut writer: SecureWriter) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<Message>();
        let task = tokio::spawn(async move {
            while let Some(message) = pending.recv().await {
                match &message {
                    Message::Submit { jobs } => writer.send_submit(jobs).await?,
                    other => writer.send(other).await?,
                }
            }
            Ok(())
        });
        Outbox { queue, task }
    }

    /// Queues `message`; if the task has stopped, the session learns it from the task.
    fn send(&self, message: Message) {
        let _ = self.queue.send(message);
    }
}

impl Drop for Outbox {
    /// Stops the task, even in the middle of a send to a node that reads nothing: the
    /// connection is being dropped anyway.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps up to the window's size of jobs on the node, completes them as results come back,
/// and sends heartbeats; returns when the server shuts down or the node is lost. With
/// nothing left to take and room in the window, it sends second copies of stragglers of
/// other sessions (when the options allow).
#[allow(clippy::too_many_arguments)]
async fn serve(
    node: &NodeState,
    ctx: &Context,
    mut reader: SecureReader,
    writer: SecureWriter,
    workers: u32,
    me: u64,
    in_flight: &SharedFlight,
    shutdown: &mut watch::Receiver<bool>,
) -> Serve {
    let mut outbox = Outbox::start(writer);
    let interval = ctx.options.heartbeat_interval;
    let liveness = ctx.options.liveness_timeout;
    let mut beat = tokio::time::interval_at(Instant::now() + interval, interval);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut last_heard = Instant::now();
    let mut window = Window::new(workers);
    let direct = node.start_direct(in_flight);
    let mut lane = ClientLane::new(ctx.options.lanes);
    loop {
        if lane.should_request() {
            outbox.send(Message::LaneRequest);
        }
        if direct.take_broke() {
            tracing::debug!(node = %node.name, "lane broke on a send from a submitting thread");
            lane.broke(&direct);
        }
        let window_size = window.size();
        let mut batch = Vec::new();
        // When a job in flight elsewhere becomes a straggler, if nothing else wakes us first.
        let mut straggler_at = None;
        while flights::lock(in_flight).len() < window_size {
            let adopted = direct.adopted();
            let (job, copy, encoded) = match adopted.or_else(|| Some((ctx.feed.take()?, None))) {
                Some((job, encoded)) => (job, false, encoded),
                None if ctx.options.duplicate_stragglers => {
                    match ctx.flights.straggler(me, Instant::now()) {
                        Straggler::Found(job) => (job, true, None),
                        Straggler::Later(at) => {
                            straggler_at = Some(at);
                            break;
                        }
                        Straggler::None => break,
                    }
                }
                None => break,
            };
            match encoded.map_or_else(|| job.encode_args(), Ok) {
                Ok(args) => {
                    if copy {
                        tracing::debug!(node = %node.name, task = job.task_id(), "running a second copy of a straggler");
                    }
                    let request = JobRequest {
                        job_id: direct.next_id(),
                        task: job.task_id().to_owned(),
                        fingerprint: job.fingerprint(),
                        args,
                    };
                    // A lone job: nothing else in flight here or waiting to be sent.
                    let lone = !copy
                        && batch.is_empty()
                        && request.args.len() <= LANE_MAX_ARGS
                        && flights::lock(in_flight).is_empty()
                        && ctx.feed.queued() == 0;
                    flights::lock(in_flight).insert(request.job_id, (job, Instant::now()));
                    if lone {
                        match direct.send(&request) {
                            Sent::Yes => continue,
                            Sent::NotFree => {}
                            // Sent whole or not at all as far as the worker can tell: a
                            // worker that got it answers on a lane now closed, so the job
                            // goes on the session.
                            Sent::Broke(error) => {
                                tracing::debug!(node = %node.name, %error, "lane broke on send");
                                lane.broke(&direct);
                            }
                        }
                    }
                    batch.push(request);
                }
                // The first copy still runs: this one is dropped.
                Err(_) if copy => ctx.feed.requeue(job),
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
                Event::Opened(opened) => match lane.opened(opened, &direct) {
                    None => tracing::debug!(node = %node.name, "lane open"),
                    Some(why) => tracing::debug!(node = %node.name, "no lane: {why}"),
                },
                Event::Received(Ok(Message::Results { results })) => {
                    for reply in results {
                        // Free for the next lone job before this one completes.
                        direct.answered(reply.job_id);
                        settle(node, ctx, in_flight, &mut window, reply);
                    }
                }
                Event::Received(other) => {
                    if let Ok(message) = other {
                        tracing::debug!(node = %node.name, "{}", unexpected(&message, "results on the lane"));
                    }
                    lane.broke(&direct);
                }
            },
            message = reader.recv() => {
                last_heard = Instant::now();
                match message {
                    Ok(Message::Results { results }) => {
                        for reply in results {
                            settle(node, ctx, in_flight, &mut window, reply);
                        }
                    }
                    Ok(Message::HeartbeatAck { .. }) => {}
                    Ok(Message::LaneOffer { lane: number, key }) => {
                        lane.offered(number, key, &node.address, ctx.channel);
                    }
                    Ok(Message::LaneEnded { lane: number, crashed, reason }) => {
                        let held = lane.ended(number, &direct);
                        let entry = held.and_then(|id| flights::lock(in_flight).remove(&id));
                        if let Some((job, sent)) = entry {
                            if crashed {
                                let report = format!("{reason} while running task `{}`", job.task_id());
                                ctx.feed.complete(job, &node.executor, Outcome::WorkerCrashed(report), sent.elapsed());
                            } else {
                                tracing::warn!(node = %node.name, "the lane holding a job closed: {reason}");
                                ctx.feed.lost(job, &node.executor);
                            }
                        }
                    }
                    Ok(Message::Refused { reason }) => return Serve::Lost(format!("refused: {reason}")),
                    Ok(other) => return Serve::Lost(unexpected(&other, "results")),
                    Err(e) => return Serve::Lost(e.to_string()),
                }
            }
            sent = &mut outbox.task => {
                return Serve::Lost(match sent {
                    Ok(Ok(())) => "the connection's sending task stopped".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => format!("the connection's sending task failed: {e}"),
                });
            }
            _ = shutdown.changed() => return Serve::Shutdown,
            scheduled = beat.tick() => {
                let now = Instant::now();
                if now.duration_since(scheduled) > interval {
                    // This thread was held up (a slow callback runs on it), so heartbeats
                    // went out late and answers may wait unread: the silence was not the
                    // node's. Its clock starts again with the heartbeat sent now.
                    last_heard = now;
                }
                if now.duration_since(last_heard) >= liveness {
                    return Serve::Lost(format!(
                        "no message from the node within the liveness timeout ({liveness:?})"
                    ));
                }
                seq += 1;
                outbox.send(Message::Heartbeat { seq });
            }
            _ = node.notify.notified(), if room => {}
            _ = sleep_until_some(straggler_at), if room && straggler_at.is_some() => {}
        }
    }
}

/// Completes the job in flight that `reply` answers; a reply for a job no longer in flight
/// (a straggler's copy that lost) is dropped.
fn settle(
    node: &NodeState,
    ctx: &Context,
    in_flight: &SharedFlight,
    window: &mut Window,
    reply: JobReply,
) {
    let entry = flights::lock(in_flight).remove(&reply.job_id);
    match entry {
        Some((job, sent)) => {
            let latency = sent.elapsed();
            // Itself and the jobs still in flight: about the depth it was sent at, in a
            // steady stream.
            let depth = flights::lock(in_flight).len() + 1;
            window.observe(latency, depth);
            ctx.flights.observe(latency);
            ctx.feed
                .complete(job, &node.executor, reply.outcome, latency);
        }
        None => tracing::debug!(
            node = %node.name,
            job = reply.job_id,
            "result for a job not in flight dropped"
        ),
    }
}

/// The number of jobs to keep in flight on one node, from the service time of its jobs.
struct Window {
    workers: usize,
    /// Moving average of the time a job takes on the node, in seconds.
    service: Option<f64>,
}

impl Window {
    fn new(workers: u32) -> Self {
        Window {
            workers: workers as usize,
            service: None,
        }
    }

    /// Takes in a result that came `latency` after its job was sent with `depth` jobs in
    /// flight (itself included). Those ahead of it were shared by the node's workers, so
    /// the job's own time is about the latency over `depth / workers` (at least one):
    /// the window measures work, not the queueing it causes itself. With no queue the
    /// round trip counts as service, which errs on the side of a shallower window.
    fn observe(&mut self, latency: Duration, depth: usize) {
        let rounds = (depth as f64 / self.workers.max(1) as f64).max(1.0);
        let sample = latency.as_secs_f64() / rounds;
        self.service = Some(match self.service {
            None => sample,
            Some(avg) => 0.9 * avg + 0.1 * sample,
        });
    }

    fn size(&self) -> usize {
        let extra = match self.service {
            None => MIN_EXTRA_IN_FLIGHT,
            Some(service) => {
                let budget = QUEUED_WORK_PER_WORKER.as_secs_f64() * self.workers as f64;
                let extra = (budget / service.max(1e-9)).ceil();
                (extra.min(MAX_EXTRA_IN_FLIGHT as f64) as usize).max(MIN_EXTRA_IN_FLIGHT)
            }
        };
        self.workers + extra
    }
}

/// Sleeps until `at`; never returns for `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
            window.observe(Duration::from_micros(20), 1);
        }
        assert_eq!(window.size(), 2 + 200, "4 ms of 20 µs jobs");
        for _ in 0..200 {
            window.observe(Duration::from_millis(50), 2);
        }
        assert_eq!(window.size(), 2 + MIN_EXTRA_IN_FLIGHT);
        for _ in 0..200 {
            window.observe(Duration::from_nanos(10), 1);
        }
        assert_eq!(window.size(), 2 + MAX_EXTRA_IN_FLIGHT);
    }

    #[test]
    fn queueing_behind_the_window_does_not_shrink_it() {
        // 10 µs jobs on 2 workers, 400 in flight: each waits 200 rounds, 2 ms in all.
        let mut window = Window::new(2);
        for _ in 0..200 {
            window.observe(Duration::from_millis(2), 400);
        }
        assert_eq!(
            window.size(),
            2 + 400,
            "4 ms of 10 µs jobs, as without a queue"
        );
    }
}
