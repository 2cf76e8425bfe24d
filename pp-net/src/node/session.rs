//! One client's session, up to the point where jobs flow: authentication, hello, program
//! upload or cache hit, worker start, `Ready`.
//!
//! ```text
//! client                                 node
//!   handshake (preamble, Noise)   <->
//!   ClientHello                   ->
//!                                 <-     ServerHello { platform, build, need_upload }
//!                                        or Refused; `build: None` (no build of the
//!                                        client's runs here): the connection closes
//!   UploadChunk* , UploadDone     ->     (only if need_upload)
//!                                 <-     Ready { workers }             or Refused
//!   Submit / Heartbeat            ->     ... see `session_jobs`
//! ```
//! Every refusal is a `Refused { reason }` followed by closing the connection; the reason
//! is also logged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::admission::Ticket;
use super::busy::BusyNotice;
use super::cache::{ProgramCache, ProgramLease, Upload};
use super::config::NodeConfig;
use super::failure_log::FailureLog;
use super::lanes::{serve_lane, Lanes};
use super::process::{WorkerProcess, WorkerSpec};
use super::session_jobs::{serve_jobs, JobsConfig, SessionEnd};
use super::stats::NodeCounters;
use crate::channel::accept_server_answered;
use crate::channel::preamble::{self, PREAMBLE_LEN, PROTOCOL_VERSION};
use crate::lane::{LaneId, LANE_MAGIC};
use crate::program::hex;
use crate::{Message, NetError, Peer, SecureReader, SecureWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What every session of a node shares.
#[derive(Debug)]
pub(crate) struct NodeContext {
    pub(crate) config: NodeConfig,
    pub(crate) cache: Arc<ProgramCache>,
    pub(crate) counters: Arc<NodeCounters>,
    pub(crate) node_name: String,
    /// Lanes offered to sessions and not yet taken up.
    pub(crate) lanes: Arc<Lanes>,
    /// Where failed handshakes are logged, a few per address and the rest counted.
    pub(crate) failures: FailureLog,
}

/// Why the node will not serve this client: sent as `Refused`, then the connection closes.
struct Refusal(String);

/// A setup step failed: refuse the client, or the connection is gone already.
enum SetupError {
    Refuse(Refusal),
    /// The client offers no build for this node's platform; the hello said so.
    NoBuild(String),
    Net(NetError),
}

impl From<NetError> for SetupError {
    fn from(error: NetError) -> Self {
        SetupError::Net(error)
    }
}

fn refuse(reason: impl Into<String>) -> SetupError {
    SetupError::Refuse(Refusal(reason.into()))
}

/// Serves one accepted connection to its end, holding its `ticket` (slot) meanwhile. Never
/// fails: everything is logged.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    mut ticket: Ticket,
    ctx: Arc<NodeContext>,
    mut node_stop: watch::Receiver<bool>,
) {
    let config = &ctx.config;
    let mut stream = stream;
    // One bound for the opening bytes and the handshake together (the lane's handshake is
    // its worker's, bounded there).
    let timeout = config.channel.handshake_timeout;
    let busy = BusyNotice::of(&stream);
    // Whether the node's preamble went out: what an evicted client is still owed.
    let answered = AtomicBool::new(false);
    let opened = async {
        match read_opening(&mut stream, addr).await? {
            Opening::Session(theirs) => {
                stream
                    .write_all(&preamble::ours())
                    .await
                    .map_err(|source| NetError::Io {
                        peer: Peer(Some(addr)),
                        source,
                    })?;
                answered.store(true, Ordering::Relaxed);
                accept_server_answered(stream, theirs, &config.secret, config.channel)
                    .await
                    .map(|halves| Opened::Session(Box::new(halves)))
            }
            Opening::Lane(id) => Ok(Opened::Lane(stream, id)),
        }
    };
    let handshake = tokio::time::timeout(timeout, opened);
    // Polled by reference: on eviction the handshake, which holds the connection, is
    // dropped only after the notice went out (its write half would shut the connection
    // down first).
    tokio::pin!(handshake);
    let opened = tokio::select! {
        opened = &mut handshake => opened.unwrap_or(Err(NetError::HandshakeTimeout {
            peer: Peer(Some(addr)),
            timeout,
        })),
        () = ticket.evicted() => {
            pp_runtime::debug!("closed {addr} in its handshake: its slot went to a newer connection");
            busy.send(answered.load(Ordering::Relaxed));
            return;
        }
    };
    drop(busy);
    ticket.authenticated();
    let (mut reader, mut writer) = match opened {
        Ok(Opened::Session(halves)) => *halves,
        Ok(Opened::Lane(stream, id)) => {
            serve_lane(stream, addr, id, &ctx.lanes, &ctx.failures, node_stop).await;
            return;
        }
        Err(NetError::AuthenticationFailed { reason, .. }) => {
            NodeCounters::bump(&ctx.counters.auth_failures);
            ctx.failures.failed(
                addr.ip(),
                format_args!("authentication failed from {addr}: {reason}"),
            );
            return;
        }
        // A TCP probe (health checks connect and close): nothing to warn about, and no
        // handshake to count.
        Err(NetError::Disconnected { .. }) => {
            pp_runtime::debug!("{addr} connected and closed without a byte (a TCP probe)");
            return;
        }
        Err(error) => {
            // Nothing was decided about the peer's secret: it went away, stalled, or speaks
            // something else.
            NodeCounters::bump(&ctx.counters.incomplete_handshakes);
            ctx.failures.failed(
                addr.ip(),
                format_args!("handshake with {addr} failed: {error}"),
            );
            return;
        }
    };
    pp_runtime::info!("client {addr} authenticated");
    let setup = tokio::select! {
        setup = setup(&ctx, addr, &mut reader, &mut writer) => setup,
        _ = node_stop.wait_for(|&stop| stop) => return,
    };
    let (workers, spec, _lease) = match setup {
        Ok(ready) => ready,
        Err(SetupError::Refuse(Refusal(reason))) => {
            NodeCounters::bump(&ctx.counters.refused);
            pp_runtime::warn!("refused client {addr}: {reason}");
            let _ = writer.send(&Message::Refused { reason }).await;
            let _ = writer.shutdown().await;
            return;
        }
        Err(SetupError::NoBuild(reason)) => {
            NodeCounters::bump(&ctx.counters.refused);
            pp_runtime::warn!("refused client {addr}: {reason}");
            let _ = writer.shutdown().await;
            return;
        }
        Err(SetupError::Net(error)) => {
            pp_runtime::warn!("client {addr} left during setup: {error}");
            return;
        }
    };
    let jobs_config = JobsConfig {
        spec,
        counters: Arc::clone(&ctx.counters),
        max_queued_jobs: config.max_queued_jobs,
        max_message: config.channel.max_message,
        lanes: Arc::clone(&ctx.lanes),
    };
    let end = serve_jobs(reader, writer, workers, jobs_config, node_stop).await;
    match end {
        SessionEnd::ClientLeft => {
            pp_runtime::info!("client {addr} disconnected; its workers are stopped")
        }
        SessionEnd::NodeStopping => {
            pp_runtime::info!("session of {addr} ended: the node is stopping")
        }
        SessionEnd::Failed(reason) => {
            pp_runtime::warn!("session of {addr} ended: {reason}; its workers are stopped")
        }
    }
}

/// How a connection opened: its first bytes.
enum Opening {
    /// A client's session, with this preamble (checked by the handshake).
    Session([u8; PREAMBLE_LEN]),
    /// A lane, with this id.
    Lane(LaneId),
}

/// An opened connection: an authenticated session, or a lane for its worker to
/// authenticate.
enum Opened {
    Session(Box<(SecureReader, SecureWriter)>),
    Lane(TcpStream, LaneId),
}

/// Reads the first bytes of a connection: a preamble, and a lane id after a lane's
/// preamble.
async fn read_opening(stream: &mut TcpStream, addr: SocketAddr) -> Result<Opening, NetError> {
    let peer = Peer(Some(addr));
    let mut preamble = [0u8; PREAMBLE_LEN];
    let first = stream
        .read(&mut preamble)
        .await
        .map_err(|e| NetError::reading(peer, "the preamble", e))?;
    // Closed before its first byte: a TCP probe (a health check, a port scan), no handshake.
    if first == 0 {
        return Err(NetError::Disconnected { peer });
    }
    stream
        .read_exact(&mut preamble[first..])
        .await
        .map_err(|e| NetError::reading(peer, "the preamble", e))?;
    if preamble[..4] != LANE_MAGIC {
        return Ok(Opening::Session(preamble));
    }
    let version = u16::from_le_bytes([preamble[4], preamble[5]]);
    if version != PROTOCOL_VERSION {
        return Err(NetError::VersionMismatch {
            peer,
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    let mut id = LaneId::default();
    stream
        .read_exact(&mut id)
        .await
        .map_err(|e| NetError::reading(peer, "a lane id", e))?;
    Ok(Opening::Lane(id))
}

/// Where a session's program comes from.
enum ProgramSource {
    /// The cache had it, checked.
    Cached(ProgramLease),
    /// The client sends it, into this upload.
    Upload(Box<Upload>),
}

/// Runs the setup steps; on success the workers are running and `Ready` was sent.
async fn setup(
    ctx: &Arc<NodeContext>,
    addr: SocketAddr,
    reader: &mut SecureReader,
    writer: &mut SecureWriter,
) -> Result<(Vec<WorkerProcess>, WorkerSpec, ProgramLease), SetupError> {
    let config = &ctx.config;
    let Message::ClientHello {
        program_sha256,
        program_size,
        target,
        registry_fingerprint,
        forward_output,
        builds,
    } = recv(ctx, reader).await?
    else {
        return Err(refuse("the first message must be ClientHello"));
    };
    let workers = u32::try_from(config.workers).unwrap_or(u32::MAX);
    let platform = pp_runtime::Platform::this();
    // The build this node runs: the client's own program, or one it offers for this
    // node's platform.
    let chosen = if target == crate::program::this_target() {
        Some((0, program_sha256, program_size))
    } else {
        (builds.iter().enumerate())
            .find(|(_, offer)| offer.platform.runs(&platform))
            .map(|(i, offer)| (i + 1, offer.program_sha256, offer.program_size))
    };
    let Some((build, program_sha256, program_size)) = chosen else {
        // Said in the hello, so the client can tell its user which build to make.
        writer
            .send(&Message::ServerHello {
                node_name: ctx.node_name.clone(),
                workers,
                need_upload: false,
                platform: platform.clone(),
                build: None,
            })
            .await?;
        let offered: Vec<String> = std::iter::once(target)
            .chain(builds.iter().map(|b| b.platform.to_string()))
            .collect();
        return Err(SetupError::NoBuild(format!(
            "this node runs {platform} programs and the client offers builds for {}",
            offered.join(", ")
        )));
    };
    if build > 0 {
        pp_runtime::info!("client {addr}: runs its build {build} for {platform}");
    }
    if program_size == 0 || program_size > config.max_upload {
        return Err(refuse(format!(
            "the program is {program_size} bytes; this node accepts programs of 1 to {} \
             bytes (ppserver --max-upload)",
            config.max_upload
        )));
    }
    let name = hex(&program_sha256);
    let program = match ctx.cache.lookup(&program_sha256).await {
        Some(lease) => ProgramSource::Cached(lease),
        // The upload's room is reserved before the client is told to send it.
        None => ProgramSource::Upload(Box::new(
            ctx.cache
                .begin_upload(program_sha256, program_size)
                .map_err(|e| refuse(e.to_string()))?,
        )),
    };
    writer
        .send(&Message::ServerHello {
            node_name: ctx.node_name.clone(),
            workers,
            need_upload: matches!(program, ProgramSource::Upload(_)),
            platform,
            build: u32::try_from(build).ok(),
        })
        .await?;
    let lease = match program {
        ProgramSource::Cached(lease) => {
            NodeCounters::bump(&ctx.counters.cache_hits);
            pp_runtime::info!("client {addr}: program {name} found in the cache (cache hit)");
            lease
        }
        ProgramSource::Upload(upload) => {
            let lease = receive_upload(ctx, reader, *upload).await?;
            NodeCounters::bump(&ctx.counters.uploads);
            pp_runtime::info!("client {addr}: program {name} uploaded ({program_size} bytes)");
            lease
        }
    };
    // The area the reader decrypts large messages into, mapped by every worker.
    // It holds a whole frame's body: the largest message with its segments' tags.
    let capacity = crate::channel::frame::body_len(u64::from(config.channel.max_message));
    let session_area =
        match crate::area::SharedArea::create(usize::try_from(capacity).unwrap_or(usize::MAX)) {
            Ok((area, worker_fd)) => {
                reader.set_plaintext_area(area);
                Some(Arc::new(worker_fd))
            }
            Err(error) => {
                pp_runtime::debug!(%error, "no shared argument area for the session");
                None
            }
        };
    let spec = WorkerSpec {
        program: lease.path().to_owned(),
        limit: config
            .channel
            .max_message
            .saturating_sub(crate::protocol::MESSAGE_SLACK),
        start_timeout: config.worker_start_timeout,
        handshake_timeout: config.channel.handshake_timeout,
        fingerprint: registry_fingerprint,
        memory_limit: config.worker_memory,
        session_area,
        forward_output,
    };
    let processes = start_workers(&spec, config.workers).await.map_err(refuse)?;
    writer.send(&Message::Ready { workers }).await?;
    pp_runtime::info!("client {addr}: {workers} workers ready");
    Ok((processes, spec, lease))
}

/// Receives the next setup message within the setup timeout.
async fn recv(ctx: &NodeContext, reader: &mut SecureReader) -> Result<Message, SetupError> {
    let timeout = ctx.config.setup_timeout;
    match tokio::time::timeout(timeout, reader.recv()).await {
        Ok(message) => Ok(message?),
        Err(_) => Err(refuse(format!(
            "no message from the client within {timeout:?}"
        ))),
    }
}

/// Receives the program into `upload`, which holds its room in the cache until it ends.
async fn receive_upload(
    ctx: &Arc<NodeContext>,
    reader: &mut SecureReader,
    mut upload: Upload,
) -> Result<ProgramLease, SetupError> {
    loop {
        match recv(ctx, reader).await? {
            Message::UploadChunk { offset, bytes } => {
                upload.write(offset, &bytes).await.map_err(refuse)?;
            }
            Message::UploadDone => return upload.finish().await.map_err(refuse),
            other => {
                return Err(refuse(format!(
                    "expected UploadChunk or UploadDone, got {}",
                    other.kind()
                )))
            }
        }
    }
}

/// Starts `count` workers at once; if one fails, stops the others and gives its reason.
async fn start_workers(spec: &WorkerSpec, count: usize) -> Result<Vec<WorkerProcess>, String> {
    let mut starting = JoinSet::new();
    for _ in 0..count {
        let spec = spec.clone();
        starting.spawn(async move { WorkerProcess::start(&spec).await });
    }
    let mut started = Vec::with_capacity(count);
    let mut failure = None;
    while let Some(result) = starting.join_next().await {
        match result {
            Ok(Ok(process)) => started.push(process),
            Ok(Err(reason)) => failure = failure.or(Some(reason)),
            Err(error) => failure = failure.or(Some(format!("a worker start failed: {error}"))),
        }
    }
    match failure {
        None => Ok(started),
        Some(reason) => {
            for process in &mut started {
                process.stop().await;
            }
            Err(reason)
        }
    }
}
