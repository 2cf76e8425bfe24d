//! Turns announcements into nodes: each address once, restarts noticed.
//!
//! The discovery module reports every announcement it hears, again and again. A node is
//! added the first time its address (`ip:job_port`) is heard, unless a named node already
//! has that address; later announcements from it change nothing, except one with a new
//! identifier: the node restarted, and its connection task is told to retry now rather
//! than at the end of its backoff.
//!
//! Announcements are not authenticated, so their number is bounded: past
//! [`MAX_DISCOVERED`] nodes, new addresses are ignored (with one warning), and a flood of
//! forged announcements cannot grow the client without limit.

use super::address::NodeAddress;
use super::node_state::NodeState;
use super::nodes::NodeList;
use crate::discovery::Found;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Most nodes one client adds by discovery.
pub(crate) const MAX_DISCOVERED: usize = 1024;

/// How long the named nodes' host names may take to resolve, each.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the client learned from announcements so far.
pub(crate) struct DiscoveryAdmission {
    /// The identifier last announced from each discovered address.
    ids: HashMap<String, u64>,
    /// The addresses of the named nodes, so that discovery does not add them twice.
    named: HashSet<SocketAddr>,
    /// Whether [`MAX_DISCOVERED`] was reached (and said).
    full: bool,
}

impl DiscoveryAdmission {
    /// Starts with the named nodes of `nodes`, resolved.
    pub(crate) async fn new(nodes: &NodeList) -> Self {
        let mut named = HashSet::new();
        for node in nodes.snapshot() {
            let target = (node.address.host.as_str(), node.address.port);
            if let Ok(Ok(addrs)) =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(target)).await
            {
                named.extend(addrs);
            }
        }
        DiscoveryAdmission {
            ids: HashMap::new(),
            named,
            full: false,
        }
    }

    /// Handles one announcement: returns the node to start driving if it is new.
    pub(crate) fn admit(&mut self, found: Found, nodes: &NodeList) -> Option<Arc<NodeState>> {
        if self.named.contains(&found.addr) {
            return None;
        }
        let name = found.addr.to_string();
        let id = found.announcement.node_id;
        if let Some(node) = nodes.find(&name) {
            let previous = self.ids.insert(name, id);
            if previous.is_some_and(|p| p != id) {
                pp_runtime::info!(node = %node.name, "node restarted ({}): reconnecting", found.announcement);
                node.retry.notify_one();
            }
            return None;
        }
        if self.ids.len() >= MAX_DISCOVERED {
            if !self.full {
                pp_runtime::warn!(
                    node = %name,
                    "{MAX_DISCOVERED} nodes discovered already: further ones are ignored"
                );
                self.full = true;
            }
            return None;
        }
        let address = NodeAddress {
            host: found.addr.ip().to_string(),
            port: found.addr.port(),
        };
        let node = Arc::new(NodeState::new(address));
        pp_runtime::info!(node = %node.name, "node discovered: {}", found.announcement);
        self.ids.insert(name, id);
        nodes.push(Arc::clone(&node));
        Some(node)
    }
}
