//! Nodes that join the client (`PP_LISTEN=ADDR:PORT`, `ppserver --join ADDR:PORT`): the
//! client listens, a node dials in, and the session is the one a dialed node gets.
//!
//! Only the TCP direction changes: on an accepted connection the client still speaks
//! first and is the handshake's initiator (`connect_client`), so a node that joins proves
//! it knows the secret as a dialed one does, and then the hello, the upload and the jobs
//! are the `session` module's. What differs:
//! - **identity**: a joined node is listed under the name it gives itself in its hello
//!   (`host:port` of a node that also listens, else its host name and its join slot:
//!   `host`, `host#2`, ...; the node's `join_name` module), unique among the running nodes
//!   of its host. That name and the address it joins from identify it (the `joined_names`
//!   module): a node that joins again takes its old row back, so that `print_stats()`
//!   shows one row per node with its losses and connections; one that joins again while
//!   its old session still runs (the node was killed with its connection left open, or
//!   its host went away and came back) ends that session at once, as a loss, instead of
//!   waiting for the liveness timeout (up to [`REPLACE_WAIT`] for it to end). A node of
//!   another address with a name already listed is `name#2`, and two running nodes found
//!   to give one identity are listed apart;
//! - **no lane**: the client may not be able to reach the node (NAT), so lone jobs go on
//!   the session's connection;
//! - **no retry from here**: when the connection ends the node is lost as any node is (its
//!   jobs go back to the queue), and the node dials again by itself.
//!
//! What an unauthenticated dialer can make the client hold is bounded as on a node (the
//! node's `admission`): at most [`MAX_HANDSHAKES`] connections in their handshake, a new
//! one past it taking the place of the oldest handshake from the address with the most;
//! each handshake is bounded in time by the channel's handshake timeout. Failed
//! handshakes of nodes with another secret or protocol version are said (a few lines per
//! address a minute, the rest counted, as on a node); connections that go away or speak
//! something else only at debug level. At most
//! [`MAX_JOINED`] distinct joined nodes are kept; past that a new name is refused (said
//! once).

use super::classify::handshake_error;
use super::context::ClientContext;
use super::joined_names::{Claim, JoinedNames};
use super::node_state::NodeState;
use super::nodes::NodeList;
use super::session::{self, SessionEnd};
use crate::channel::connect_client;
use crate::node::admission::{Admission, Admit};
use crate::node::failure_log::{FailureLog, FLUSH_PERIOD};
use pp_runtime::NodeFailure;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Connections in their handshake at once, at most.
pub(crate) const MAX_HANDSHAKES: usize = 64;

/// Distinct joined nodes a client keeps, at most.
pub(crate) const MAX_JOINED: usize = 1024;

/// Pause after a failed `accept` (too many open files), so that the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts nodes on `listener` until the server shuts down; each runs its session on a
/// task of its own, which ends with it.
pub(crate) async fn accept_nodes(
    listener: TcpListener,
    nodes: Arc<NodeList>,
    ctx: Arc<ClientContext>,
    mut stopped: watch::Receiver<bool>,
) {
    let admission = Admission::new(MAX_HANDSHAKES);
    let names = Arc::new(JoinedNames::default());
    let failures = Arc::new(FailureLog::default());
    let mut sessions = JoinSet::new();
    let mut summaries = tokio::time::interval(FLUSH_PERIOD);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Admit::Yes { ticket, .. } = admission.admit(peer.ip()) else {
                        // Never: tickets are dropped after the handshake, so every slot
                        // held is a handshake that can make room.
                        continue;
                    };
                    let joining = Joining {
                        nodes: Arc::clone(&nodes),
                        names: Arc::clone(&names),
                        ctx: Arc::clone(&ctx),
                        failures: Arc::clone(&failures),
                    };
                    let stopped = stopped.clone();
                    sessions.spawn(async move {
                        joining.serve(stream, peer, ticket, stopped).await;
                    });
                }
                Err(error) => {
                    pp_runtime::warn!("cannot accept a node's connection: {error}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = summaries.tick() => failures.flush(),
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
    failures.flush_all();
}

/// What one accepted connection's task needs.
struct Joining {
    nodes: Arc<NodeList>,
    names: Arc<JoinedNames>,
    ctx: Arc<ClientContext>,
    failures: Arc<FailureLog>,
}

impl Joining {
    /// Authenticates the node on `stream`, sets its session up and serves it to its end.
    async fn serve(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        mut ticket: crate::node::admission::Ticket,
        mut stopped: watch::Receiver<bool>,
    ) {
        let ctx = &self.ctx;
        let authenticated = tokio::select! {
            done = connect_client(stream, &ctx.secret, ctx.channel) => done,
            () = ticket.evicted() => {
                pp_runtime::debug!("closed {peer} in its handshake: its slot went to a newer connection");
                return;
            }
            _ = stopped.changed() => return,
        };
        // Authenticated or failed: either way the slot is free for the next handshake.
        drop(ticket);
        let (mut reader, mut writer) = match authenticated {
            Ok(halves) => halves,
            Err(error) => {
                let why = handshake_error(&error);
                // A node with the wrong secret or version is worth saying (a few lines per
                // address a minute); a connection that went away or spoke something else
                // (a port scanner) is not.
                if matches!(
                    why,
                    NodeFailure::AuthenticationFailed | NodeFailure::ProtocolVersion { .. }
                ) {
                    self.failures.failed(
                        peer.ip(),
                        format_args!("a node joining from {peer} failed its handshake: {why}"),
                    );
                } else {
                    pp_runtime::debug!("a connection from {peer} failed its handshake: {why}");
                }
                return;
            }
        };
        let setup = tokio::select! {
            done = session::set_up_joined(&mut reader, &mut writer, ctx) => done,
            _ = stopped.changed() => return,
        };
        let ready = match setup {
            Ok(ready) => ready,
            Err(why) => {
                pp_runtime::warn!("a node joining from {peer} cannot be used: {why}");
                return;
            }
        };
        let Some((node, replaced)) = self.claim(&ready.name, peer, &mut stopped).await else {
            return;
        };
        node.set_platform(ready.platform);
        let workers = ready.workers;
        pp_runtime::info!(node = %node.name, "node joined from {peer} ({workers} workers)");
        let left_behind = replaced.clone();
        let end = session::serve(&node, ctx, reader, writer, workers, &mut stopped, replaced).await;
        if let SessionEnd::Lost { failure, held } = end {
            let jobs = if held == 0 {
                String::new()
            } else {
                format!(
                    "the {held} jobs it held go back to the queue (each up to its attempt \
                     limit) and "
                )
            };
            let consequence = if *left_behind.borrow() {
                format!("{jobs}its new connection takes its place")
            } else if ctx.feed.local_workers() > 0 {
                format!("{jobs}its jobs run elsewhere; it may join again")
            } else {
                format!(
                    "{jobs}its jobs run on other nodes, or locally if no node is usable for \
                     {:?}; it may join again",
                    ctx.options.fallback_wait
                )
            };
            node.failed(failure, &consequence);
        }
        self.names.release(&node);
    }

    /// The row a node calling itself `name` from `peer` serves as, and the signal that a
    /// newer connection replaced this one. When the row's session still runs, the node
    /// joined again while its old connection looked open (it restarted, or its host came
    /// back): the old session is ended at once (a loss: its jobs go back to the queue) and
    /// this one waits, up to [`REPLACE_WAIT`], for the row. `None`: refused or stopped.
    async fn claim(
        &self,
        name: &str,
        peer: SocketAddr,
        stopped: &mut watch::Receiver<bool>,
    ) -> Option<(Arc<NodeState>, watch::Receiver<bool>)> {
        let deadline = tokio::time::Instant::now() + REPLACE_WAIT;
        loop {
            // Enabled before the claim, so that a release between the two is not missed.
            let released = self.names.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.names.claim(name, peer, &self.nodes) {
                Claim::Serve(node, replaced) => return Some((node, replaced)),
                Claim::Refused => return None,
                Claim::Replacing => {}
            }
            tokio::select! {
                () = released => {}
                () = tokio::time::sleep_until(deadline) => {
                    pp_runtime::warn!(
                        "a node joining from {peer} as {name} waited {REPLACE_WAIT:?} for its \
                         old session to end; closing the new connection (the node joins again)"
                    );
                    return None;
                }
                _ = stopped.changed() => return None,
            }
        }
    }
}

/// How long a node that joins again waits for its old session to end (it ends at once
/// when told: this bounds a stuck one).
const REPLACE_WAIT: Duration = Duration::from_secs(10);
