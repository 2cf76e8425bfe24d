//! Joining a client (`ppserver --join HOST:PORT`): the node dials a client that listens
//! (`PP_LISTEN`) and serves it on that connection exactly as on one it accepted.
//!
//! Only the TCP direction changes: on the dialed connection the client still speaks first
//! and is the handshake's initiator, so authentication, setup and jobs are the session of
//! `session.rs`, unchanged. This is for nodes the client cannot reach (behind NAT, in a
//! batch job, started by an autoscaler): only the node can connect out.
//!
//! The node keeps dialing while it runs: at once at start, then, after a failed attempt or
//! a session that ended, after a pause that doubles from [`DIAL_PAUSE_FIRST`] up to
//! [`DIAL_PAUSE_MAX`] (with jitter), and starts afresh after a session that lasted. A
//! joined session holds one of the node's connection slots like an accepted one. The
//! first failure of each kind is a warning, repeats are debug lines.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::admission::{Admission, Admit};
use super::session::{serve_connection, NodeContext};
use super::stats::NodeCounters;

/// First pause between two dials of a client.
pub(crate) const DIAL_PAUSE_FIRST: Duration = Duration::from_millis(100);

/// Longest pause between two dials of a client; a session that lasted longer starts the
/// backoff afresh.
pub(crate) const DIAL_PAUSE_MAX: Duration = Duration::from_secs(5);

/// How long one dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// Dials the client at `target` (`host:port`) and serves it, again and again, until the
/// node stops.
pub(crate) async fn join_client(
    target: String,
    ctx: Arc<NodeContext>,
    admission: Arc<Admission>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut pause = DIAL_PAUSE_FIRST;
    let mut last_failure: Option<String> = None;
    loop {
        if *stopping.borrow() {
            return;
        }
        let started = Instant::now();
        match dial(&target).await {
            Ok((stream, peer)) => {
                if last_failure.take().is_some() {
                    pp_runtime::info!("client {target} reached again");
                }
                serve_joined(stream, peer, &target, &ctx, &admission, &stopping).await;
            }
            Err(why) => {
                if last_failure.as_deref() == Some(why.as_str()) {
                    pp_runtime::debug!("cannot join client {target}: {why}; retrying");
                } else {
                    pp_runtime::warn!(
                        "cannot join client {target}: {why}; retrying every {DIAL_PAUSE_MAX:?} \
                         at most while the node runs"
                    );
                    last_failure = Some(why);
                }
            }
        }
        if started.elapsed() > DIAL_PAUSE_MAX {
            pause = DIAL_PAUSE_FIRST;
        }
        let wait = pause + jitter(pause / 4);
        pause = (pause * 2).min(DIAL_PAUSE_MAX);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Connects to `target` within [`DIAL_TIMEOUT`].
async fn dial(target: &str) -> Result<(TcpStream, SocketAddr), String> {
    let stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| format!("no answer within {DIAL_TIMEOUT:?}"))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (no client listens there now: is it running with \
                 PP_LISTEN set to that address?)"
                    .to_owned()
            }
            _ => e.to_string(),
        })?;
    let peer = stream.peer_addr().map_err(|e| e.to_string())?;
    Ok((stream, peer))
}

/// Serves one dialed connection as if it had been accepted, holding a connection slot.
async fn serve_joined(
    stream: TcpStream,
    peer: SocketAddr,
    target: &str,
    ctx: &Arc<NodeContext>,
    admission: &Admission,
    stopping: &watch::Receiver<bool>,
) {
    NodeCounters::bump(&ctx.counters.connections);
    let ticket = match admission.admit(peer.ip()) {
        Admit::Yes { ticket, .. } => ticket,
        Admit::Full => {
            NodeCounters::bump(&ctx.counters.rejected);
            pp_runtime::warn!(
                "cannot join client {target}: every connection slot holds a session \
                 (--max-connections {})",
                ctx.config.max_connections
            );
            return;
        }
    };
    if target == peer.to_string() {
        pp_runtime::info!("joined client {target}");
    } else {
        pp_runtime::info!("joined client {target} ({peer})");
    }
    ctx.counters
        .active_connections
        .fetch_add(1, Ordering::Relaxed);
    serve_connection(stream, peer, ticket, Arc::clone(ctx), stopping.clone()).await;
    ctx.counters
        .active_connections
        .fetch_sub(1, Ordering::Relaxed);
}

/// Up to `max`, from the clock's low bits: enough to keep many nodes from dialing in step.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let max = u32::try_from(max.as_nanos()).unwrap_or(u32::MAX).max(1);
    Duration::from_nanos(u64::from(nanos % max))
}
