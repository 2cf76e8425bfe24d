//! The root task of the client's network thread: one task per node (named ones from the
//! start, discovered ones as they answer), the fallback watch, discovery when some entry
//! asks for it, one task per `dns:` entry, and the listener of nodes that join.

use super::context::ClientContext;
use super::discovered::DiscoveryAdmission;
use super::dns::{follow, DnsEntry};
use super::fallback::fall_back_when_stranded;
use super::joined::accept_nodes;
use super::nodes::NodeList;
use super::reconnect::keep_node_connected;
use crate::discovery::{self, SearchStatus, Target};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// How many announcements may wait for the cluster loop; more are dropped (nodes repeat
/// them).
const ANNOUNCEMENT_BACKLOG: usize = 256;

/// Where nodes come from besides the named ones.
pub(crate) struct Sources {
    /// Discovery entries.
    pub(crate) targets: Vec<Target>,
    /// `dns:` entries.
    pub(crate) dns: Vec<DnsEntry>,
    /// Where nodes join (`PP_LISTEN`), bound already.
    pub(crate) listener: Option<std::net::TcpListener>,
}

/// Runs the client's tasks until every one of them has ended (after `stopped` is set).
pub(crate) async fn run_cluster(
    nodes: Arc<NodeList>,
    sources: Sources,
    ctx: Arc<ClientContext>,
    stopped: watch::Receiver<bool>,
) {
    let Sources {
        targets,
        dns,
        listener,
    } = sources;
    let mut tasks = tokio::task::JoinSet::new();
    for node in nodes.snapshot() {
        tasks.spawn(keep_node_connected(node, Arc::clone(&ctx), stopped.clone()));
    }
    for entry in dns {
        tasks.spawn(follow(
            entry,
            Arc::clone(&nodes),
            Arc::clone(&ctx),
            stopped.clone(),
        ));
    }
    if let Some(listener) = listener {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                tasks.spawn(accept_nodes(
                    listener,
                    Arc::clone(&nodes),
                    Arc::clone(&ctx),
                    stopped.clone(),
                ));
            }
            Err(e) => pp_runtime::error!("cannot listen for nodes that join: {e}"),
        }
    }
    let search = (!targets.is_empty()).then(|| Arc::new(SearchStatus::new(&targets)));
    tasks.spawn(fall_back_when_stranded(
        Arc::clone(&nodes),
        Arc::clone(&ctx),
        search.clone(),
        stopped.clone(),
    ));
    let (found_tx, mut found) = tokio::sync::mpsc::channel(ANNOUNCEMENT_BACKLOG);
    let ignored = Arc::new(AtomicU64::new(0));
    let discovering = search.is_some();
    if let Some(status) = search {
        let mut stop = stopped.clone();
        let search = discovery::discover(targets, found_tx, Arc::clone(&ignored), status);
        tasks.spawn(async move {
            tokio::select! {
                _ = search => {}
                _ = stop.changed() => {}
            }
        });
    } else {
        drop(found_tx);
    }
    let mut admission = if discovering {
        Some(DiscoveryAdmission::new(&nodes).await)
    } else {
        None
    };
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            Some(found) = found.recv() => {
                if *stopped.borrow() {
                    continue;
                }
                let Some(admission) = admission.as_mut() else { continue };
                if let Some(node) = admission.admit(found, &nodes) {
                    tasks.spawn(keep_node_connected(node, Arc::clone(&ctx), stopped.clone()));
                }
            }
        }
    }
    if discovering {
        pp_runtime::debug!(
            ignored = ignored.load(Ordering::Relaxed),
            "discovery stopped; datagrams ignored"
        );
    }
}
