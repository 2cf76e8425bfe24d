//! The nodes a client knows: the named ones from the start, discovered, joined and
//! resolved ones as they come; resolved ones also go (see the `dns` module).

use super::node_state::NodeState;
use pp_runtime::ExecutorStats;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// The client's nodes, shared by the tasks that feed them, wake them and report them.
pub(crate) struct NodeList {
    nodes: RwLock<Vec<Arc<NodeState>>>,
    /// Nodes removed after they ran jobs: their rows stay in the statistics, so that the
    /// jobs they ran still count.
    retired: Mutex<Vec<Arc<NodeState>>>,
}

impl NodeList {
    /// The list of `nodes`, to which discovered ones are added later.
    pub(crate) fn new(nodes: Vec<Arc<NodeState>>) -> Self {
        NodeList {
            nodes: RwLock::new(nodes),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// Removes `node` (its task has ended): it gets no more jobs and is no longer listed,
    /// but the jobs it ran stay in the statistics.
    pub(crate) fn remove(&self, node: &Arc<NodeState>) {
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|n| !Arc::ptr_eq(n, node));
        if node.executor.stats().jobs > 0 {
            self.retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Arc::clone(node));
        }
    }

    /// Lists again the removed node called `name`, if there is one: an address that comes
    /// back keeps its row (and the jobs it ran) rather than getting a second one.
    pub(crate) fn revive(&self, name: &str) -> Option<Arc<NodeState>> {
        let node = {
            let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
            let at = retired.iter().position(|n| n.name == name)?;
            retired.remove(at)
        };
        self.push(Arc::clone(&node));
        Some(node)
    }

    /// The statistics rows of the nodes, removed ones that ran jobs included.
    pub(crate) fn stats_rows(&self, rows: &mut Vec<ExecutorStats>) {
        self.with(|nodes| rows.extend(nodes.iter().map(|n| n.executor.stats())));
        let retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        rows.extend(retired.iter().map(|n| n.executor.stats()));
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
