//! The nodes a client knows: the named ones from the start, discovered ones as they come.

use super::node_state::NodeState;
use std::sync::{Arc, RwLock};

/// The client's nodes, shared by the tasks that feed them, wake them and report them.
pub(crate) struct NodeList {
    nodes: RwLock<Vec<Arc<NodeState>>>,
}

impl NodeList {
    /// The list of `nodes`, to which discovered ones are added later.
    pub(crate) fn new(nodes: Vec<Arc<NodeState>>) -> Self {
        NodeList {
            nodes: RwLock::new(nodes),
        }
    }

    /// The nodes now.
    pub(crate) fn snapshot(&self) -> Vec<Arc<NodeState>> {
        self.read().clone()
    }

    /// Calls `f` with the nodes, without copying the list.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&[Arc<NodeState>]) -> T) -> T {
        f(&self.read())
    }

    /// The node called `name` (`host:port`), if known.
    pub(crate) fn find(&self, name: &str) -> Option<Arc<NodeState>> {
        self.read().iter().find(|n| n.name == name).cloned()
    }

    /// Whether a node other than `me` takes jobs now (connected, not put aside): where a
    /// job `me` should avoid can go.
    pub(crate) fn others_take_jobs(&self, me: &NodeState) -> bool {
        self.read()
            .iter()
            .any(|node| !std::ptr::eq(&**node, me) && node.takes_jobs())
    }

    /// Adds a node.
    pub(crate) fn push(&self, node: Arc<NodeState>) {
        self.nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(node);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<NodeState>>> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }
}
