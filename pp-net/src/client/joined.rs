//! Nodes that join the client (`PP_LISTEN=ADDR:PORT`, `ppserver --join ADDR:PORT`): the
//! client listens, a node dials in, and the session is the one a dialed node gets.
//!
//! Only the TCP direction changes: on an accepted connection the client still speaks
//! first and is the handshake's initiator (`connect_client`), so a node that joins proves
//! it knows the secret as a dialed one does, and then the hello, the upload and the jobs
//! are the `session` module's. What differs:
//! - **names**: a joined node is listed under the name it gives itself in its hello
//!   (`host:port` of a node that also listens, its host name otherwise); a second node
//!   with the same name is `name#2`, and so on. A node that joins again after its
//!   connection ended takes its old row back (same name, not connected), so that
//!   `print_stats()` shows one row per node with its losses and connections;
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

use super::address::NodeAddress;
use super::classify::handshake_error;
use super::context::ClientContext;
use super::node_state::NodeState;
use super::nodes::NodeList;
use super::session::{self, SessionEnd};
use crate::channel::connect_client;
use crate::node::admission::{Admission, Admit};
use crate::node::failure_log::{FailureLog, FLUSH_PERIOD};
use pp_runtime::NodeFailure;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Connections in their handshake at once, at most.
pub(crate) const MAX_HANDSHAKES: usize = 64;

/// Distinct joined nodes a client keeps, at most.
pub(crate) const MAX_JOINED: usize = 1024;

/// Longest name a joined node is listed under; a longer one is cut.
const MAX_NAME: usize = 100;

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
                    let line =
                        format_args!("a node joining from {peer} failed its handshake: {why}");
                    self.failures.failed(peer.ip(), line);
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
        let (workers, name) = match setup {
            Ok(ready) => ready,
            Err(why) => {
                pp_runtime::warn!("a node joining from {peer} cannot be used: {why}");
                return;
            }
        };
        let Some(node) = self.names.claim(&name, peer, &self.nodes) else {
            return;
        };
        pp_runtime::info!(node = %node.name, "node joined from {peer} ({workers} workers)");
        let end = session::serve(&node, ctx, reader, writer, workers, &mut stopped).await;
        if let SessionEnd::Lost { failure, held } = end {
            let jobs = if held == 0 {
                String::new()
            } else {
                format!(
                    "the {held} jobs it held go back to the queue (each up to its attempt \
                     limit) and "
                )
            };
            let consequence = if ctx.feed.local_workers() > 0 {
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
}

/// A joined node, and whether a session runs with it now.
type Row = (Arc<NodeState>, bool);

/// The joined nodes by the name they give themselves.
#[derive(Default)]
struct JoinedNames {
    by_name: Mutex<HashMap<String, Vec<Row>>>,
}

impl JoinedNames {
    /// The node a session with a node calling itself `name` (from `peer`) runs as: a known
    /// one of that name with no session now, else a new one (added to `nodes`); `None` past
    /// [`MAX_JOINED`] (said once).
    fn claim(&self, name: &str, peer: SocketAddr, nodes: &NodeList) -> Option<Arc<NodeState>> {
        let name = clean_name(name, peer);
        let mut by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        let known: usize = by_name.values().map(Vec::len).sum();
        let same = by_name.entry(name.clone()).or_default();
        if let Some((node, busy)) = same.iter_mut().find(|(_, busy)| !*busy) {
            *busy = true;
            return Some(Arc::clone(node));
        }
        if known >= MAX_JOINED {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                pp_runtime::warn!(
                    "{MAX_JOINED} nodes joined already: further ones are refused ({name} from {peer})"
                )
            });
            return None;
        }
        let listed = match same.len() {
            0 => name,
            n => format!("{name}#{}", n + 1),
        };
        let address = NodeAddress {
            host: peer.ip().to_string(),
            port: peer.port(),
        };
        let node = Arc::new(NodeState::joined(listed, address));
        same.push((Arc::clone(&node), true));
        nodes.push(Arc::clone(&node));
        Some(node)
    }

    /// The session with `node` ended: the next node of its name may take its row.
    fn release(&self, node: &Arc<NodeState>) {
        let mut by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        for (known, busy) in by_name.values_mut().flatten() {
            if Arc::ptr_eq(known, node) {
                *busy = false;
            }
        }
    }
}

/// The name a node gave itself, fit for a terminal line: printable characters only, at
/// most [`MAX_NAME`] of them; its address when it gave none.
fn clean_name(name: &str, peer: SocketAddr) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    if cleaned.trim().is_empty() {
        peer.ip().to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "10.0.0.9:41000".parse().unwrap()
    }

    #[test]
    fn a_name_is_reused_when_free_and_numbered_when_taken() {
        let nodes = NodeList::new(Vec::new());
        let names = JoinedNames::default();
        let first = names.claim("h1", peer(), &nodes).unwrap();
        let second = names.claim("h1", peer(), &nodes).unwrap();
        assert_eq!((first.name.as_str(), second.name.as_str()), ("h1", "h1#2"));
        assert!(first.joined && second.joined);
        names.release(&first);
        let again = names.claim("h1", peer(), &nodes).unwrap();
        assert!(
            Arc::ptr_eq(&again, &first),
            "a node that joins again takes its row back"
        );
        assert_eq!(nodes.snapshot().len(), 2);
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("h\u{1b}[2Jost", peer()), "h[2Jost");
        assert_eq!(clean_name(" \n", peer()), "10.0.0.9");
        assert_eq!(clean_name(&"x".repeat(500), peer()).len(), MAX_NAME);
    }
}
