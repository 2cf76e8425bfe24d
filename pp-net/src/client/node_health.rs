//! What the user learns about one node's failures: where the client stands with it and its
//! last failure (the node's row of the statistics), and pp's warnings about it.
//!
//! Each kind of failure is said once per outage: a node retried every few seconds with the
//! same wrong secret says it once, not once per retry (the rest go to `debug`). The kinds
//! said are forgotten only when the node has served steadily again, so a node that flaps
//! (connects, is lost at once, again and again) does not repeat itself either. When a node
//! that was reported comes back, one line says so, naming the failure that began its
//! outage; a first connection that nothing went wrong before says nothing at the default
//! level.

use pp_runtime::{NodeConnection, NodeFailure};
use std::mem::Discriminant;
use std::time::SystemTime;

/// A node's state and failures, as the user sees them.
pub(crate) struct NodeHealth {
    connection: NodeConnection,
    /// The last failure and when it happened.
    last_failure: Option<(NodeFailure, SystemTime)>,
    /// Kinds of failure said since the node last served steadily.
    said: Vec<Discriminant<NodeFailure>>,
    /// The first failure said since the node last connected (what began its outage): its
    /// return is news.
    outage: Option<NodeFailure>,
}

impl Default for NodeHealth {
    fn default() -> Self {
        NodeHealth {
            connection: NodeConnection::Connecting,
            last_failure: None,
            said: Vec::new(),
            outage: None,
        }
    }
}

impl NodeHealth {
    /// The node `who` (`node host:port`, `rank N (host:port)`) failed (could not be used,
    /// or was lost): records it as the node's last failure and, unless this kind was said
    /// already, warns, with the `hint` for the failure and the `consequence` for the user's
    /// jobs.
    pub(crate) fn failed(
        &mut self,
        who: &str,
        failure: NodeFailure,
        hint: Option<&str>,
        consequence: &str,
    ) {
        let kind = std::mem::discriminant(&failure);
        if self.said.contains(&kind) {
            pp_runtime::debug!("{who}: still not usable: {failure}");
        } else {
            let hint = hint.map(|hint| format!(" ({hint})")).unwrap_or_default();
            pp_runtime::warn!("{who}: {failure}{hint}; {consequence}");
            self.said.push(kind);
            self.outage.get_or_insert_with(|| failure.clone());
        }
        self.connection = NodeConnection::Down;
        self.last_failure = Some((failure, SystemTime::now()));
    }

    /// The node `who` is connected with `workers` workers, after `before` earlier
    /// connections: says so at the default level only when a failure of it was said.
    pub(crate) fn connected(&mut self, who: &str, workers: u32, before: u32) {
        match self.outage.take() {
            Some(failure) => {
                let again = if before > 0 { " again" } else { "" };
                pp_runtime::warn!(
                    "{who}: connected{again} ({}) after \"{failure}\"",
                    count_workers(workers)
                );
            }
            None => pp_runtime::info!("{who}: connected ({})", count_workers(workers)),
        }
        self.connection = NodeConnection::Connected;
    }

    /// The session ended; its failure, if it was lost, comes through [`NodeHealth::failed`].
    pub(crate) fn disconnected(&mut self) {
        self.connection = NodeConnection::Down;
    }

    /// The node served long enough to count as well again: a failure of any kind is news
    /// again.
    pub(crate) fn served_steadily(&mut self) {
        self.said.clear();
    }

    /// Where the client stands with the node.
    pub(crate) fn connection(&self) -> NodeConnection {
        self.connection
    }

    /// The node's last failure and when it happened.
    pub(crate) fn last_failure(&self) -> Option<&(NodeFailure, SystemTime)> {
        self.last_failure.as_ref()
    }
}

/// `1 worker`, `4 workers`.
fn count_workers(workers: u32) -> String {
    let plural = if workers == 1 { "" } else { "s" };
    format!("{workers} worker{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_is_news_once_until_the_node_serves_steadily() {
        let mut health = NodeHealth::default();
        assert_eq!(health.connection(), NodeConnection::Connecting);
        health.failed("n:1", NodeFailure::ConnectionRefused, None, "elsewhere");
        assert_eq!(health.said.len(), 1);
        health.failed("n:1", NodeFailure::ConnectionRefused, None, "elsewhere");
        assert_eq!(health.said.len(), 1, "the same kind is not said twice");
        health.failed("n:1", NodeFailure::AuthenticationFailed, None, "elsewhere");
        assert_eq!(health.said.len(), 2);
        assert_eq!(health.connection(), NodeConnection::Down);
        assert_eq!(
            health.last_failure().map(|(f, _)| f),
            Some(&NodeFailure::AuthenticationFailed)
        );
        assert_eq!(health.outage, Some(NodeFailure::ConnectionRefused));
        health.connected("n:1", 2, 0);
        assert_eq!(health.outage, None);
        assert_eq!(health.connection(), NodeConnection::Connected);
        health.failed("n:1", NodeFailure::AuthenticationFailed, None, "elsewhere");
        assert_eq!(health.outage, None, "a flapping node repeats nothing");
        health.served_steadily();
        health.failed("n:1", NodeFailure::AuthenticationFailed, None, "elsewhere");
        assert_eq!(health.outage, Some(NodeFailure::AuthenticationFailed));
    }
}
