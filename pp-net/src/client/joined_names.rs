//! The rows of nodes that join the client, by identity: which row a new connection serves
//! as, and when it replaces the session of its row.
//!
//! What identifies a joined node across its connections and restarts is the name it gives
//! itself in its hello and the address it joins from ([`Identity`]). The name is unique
//! among the running nodes of a host (`host:port` for a node that listens, which no other
//! process of the host can hold; for one that only joins, its host name and a join slot of
//! its host: the node's `join_name` module), so a second connection with the same
//! identity is the same node joining again (restarted, or its host back), never another
//! node: its old session is ended at once. The discovery identifier could not serve: it
//! is random at each start. The address keeps apart hosts that share a host name.
//!
//! Two running nodes could still give one identity: two hosts of the same name behind one
//! NAT address. Each would end the other's session as it joins again, forever, using
//! attempts of the jobs it held. So a row replaced a second time within
//! [`REPLACE_GUARD`] stops being replaced: its identity is *shared* from then on (said
//! once), and a connection that finds its rows busy gets a row of its own, `name#2` and
//! so on, as nodes of other addresses with a listed name do.

use super::address::NodeAddress;
use super::joined::MAX_JOINED;
use super::node_state::NodeState;
use super::nodes::NodeList;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Longest name a joined node is listed under; a longer one is cut.
const MAX_NAME: usize = 100;

/// A row replaced again within this time is taken to be shared by two running nodes.
pub(crate) const REPLACE_GUARD: Duration = Duration::from_secs(30);

/// A joined node's identity: the name it gives itself (cleaned) and its address.
type Identity = (String, IpAddr);

/// A joined node's row, and the sender of its session's `replaced` signal while one runs.
struct Row {
    node: Arc<NodeState>,
    session: Option<watch::Sender<bool>>,
}

/// The rows of one identity: one, unless the identity turned out shared.
#[derive(Default)]
struct Group {
    rows: Vec<Row>,
    /// A connection waits for the session it replaces to end.
    replacing: bool,
    /// When the group's session was last replaced.
    replaced_at: Option<Instant>,
    /// Two running nodes give this identity: no more replacing.
    shared: bool,
}

/// What [`JoinedNames::claim`] decided.
pub(crate) enum Claim {
    /// Serve as this row; the receiver turns true when a newer connection replaces this one.
    Serve(Arc<NodeState>, watch::Receiver<bool>),
    /// The row's session still runs and was told to end: claim again once it is released.
    Replacing,
    /// Past [`MAX_JOINED`] (said once).
    Refused,
}

/// The joined nodes by identity.
#[derive(Default)]
pub(crate) struct JoinedNames {
    groups: Mutex<HashMap<Identity, Group>>,
    /// Signalled when a session ends and frees its row.
    pub(crate) released: Notify,
}

impl JoinedNames {
    /// The row for a session with a node calling itself `name` from `peer`: a free row of
    /// its identity, else the replacement of its running session (see the module's doc),
    /// else a new row (added to `nodes`, under a name no other row has); see [`Claim`].
    pub(crate) fn claim(&self, name: &str, peer: SocketAddr, nodes: &NodeList) -> Claim {
        let name = clean_name(name, peer);
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let known: usize = groups.values().map(|g| g.rows.len()).sum();
        let taken = |groups: &HashMap<Identity, Group>, listed: &str| {
            (groups.values().flat_map(|g| &g.rows)).any(|row| row.node.name == listed)
        };
        let listed = (1..)
            .map(|n| match n {
                1 => name.clone(),
                n => format!("{name}#{n}"),
            })
            .find(|listed| !taken(&groups, listed))
            .unwrap_or_else(|| name.clone());
        let identity = (name.clone(), peer.ip());
        if known >= MAX_JOINED && !groups.contains_key(&identity) {
            refused(&name, peer);
            return Claim::Refused;
        }
        let group = groups.entry(identity).or_default();
        if let Some(row) = group.rows.iter_mut().find(|row| row.session.is_none()) {
            let (session, replaced) = watch::channel(false);
            row.session = Some(session);
            group.replacing = false;
            return Claim::Serve(Arc::clone(&row.node), replaced);
        }
        if group.replacing {
            return Claim::Replacing;
        }
        if !group.rows.is_empty() && !group.shared {
            let recent = group
                .replaced_at
                .is_some_and(|at| at.elapsed() < REPLACE_GUARD);
            if !recent {
                group.replacing = true;
                group.replaced_at = Some(Instant::now());
                for session in group.rows.iter().filter_map(|row| row.session.as_ref()) {
                    let _ = session.send(true);
                }
                return Claim::Replacing;
            }
            group.shared = true;
            pp_runtime::warn!(
                "two running nodes call themselves {name} from {}: each would end the \
                 other's session as it joins again, so they are listed apart from now on \
                 (the newer as {listed}); give them distinct host names",
                peer.ip()
            );
        }
        if known >= MAX_JOINED {
            refused(&name, peer);
            return Claim::Refused;
        }
        let address = NodeAddress {
            host: peer.ip().to_string(),
            port: peer.port(),
        };
        let node = Arc::new(NodeState::joined(listed, address));
        let (session, replaced) = watch::channel(false);
        group.rows.push(Row {
            node: Arc::clone(&node),
            session: Some(session),
        });
        nodes.push(Arc::clone(&node));
        Claim::Serve(node, replaced)
    }

    /// The session with `node` ended: the next connection of its identity may take its row.
    pub(crate) fn release(&self, node: &Arc<NodeState>) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        for row in groups.values_mut().flat_map(|g| &mut g.rows) {
            if Arc::ptr_eq(&row.node, node) {
                row.session = None;
            }
        }
        drop(groups);
        self.released.notify_waiters();
    }
}

/// Says (once) that joined nodes past [`MAX_JOINED`] are refused.
fn refused(name: &str, peer: SocketAddr) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        pp_runtime::warn!(
            "{MAX_JOINED} nodes joined already: further ones are refused ({name} from {peer})"
        )
    });
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

    fn serve(claim: Claim) -> (Arc<NodeState>, watch::Receiver<bool>) {
        match claim {
            Claim::Serve(node, replaced) => (node, replaced),
            Claim::Replacing => panic!("replacing"),
            Claim::Refused => panic!("refused"),
        }
    }

    #[test]
    fn the_same_identity_replaces_its_session_and_takes_its_row_back() {
        let nodes = NodeList::new(Vec::new());
        let names = JoinedNames::default();
        let (first, replaced) = serve(names.claim("h1", peer(), &nodes));
        assert!(first.joined && !*replaced.borrow());
        // Joined again while the old session runs: the old one is told, the new one waits.
        assert!(matches!(
            names.claim("h1", peer(), &nodes),
            Claim::Replacing
        ));
        assert!(*replaced.borrow(), "the old session is told to end");
        assert!(matches!(
            names.claim("h1", peer(), &nodes),
            Claim::Replacing
        ));
        names.release(&first);
        let (again, replaced_again) = serve(names.claim("h1", peer(), &nodes));
        assert!(Arc::ptr_eq(&again, &first), "it takes its row back");
        assert!(!*replaced_again.borrow());
        assert_eq!(nodes.snapshot().len(), 1);
    }

    #[test]
    fn a_row_replaced_twice_at_once_is_shared_and_numbered() {
        let nodes = NodeList::new(Vec::new());
        let names = JoinedNames::default();
        let (a, _a) = serve(names.claim("h1", peer(), &nodes));
        assert!(matches!(
            names.claim("h1", peer(), &nodes),
            Claim::Replacing
        ));
        names.release(&a);
        let (b, _b) = serve(names.claim("h1", peer(), &nodes));
        // The node whose session was ended joins again at once: two nodes give one name.
        let (c, _c) = serve(names.claim("h1", peer(), &nodes));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(c.name, "h1#2");
        // From then on, neither replaces the other.
        names.release(&c);
        let (d, _d) = serve(names.claim("h1", peer(), &nodes));
        assert!(Arc::ptr_eq(&c, &d));
        let (e, _e) = serve(names.claim("h1", peer(), &nodes));
        assert_eq!(e.name, "h1#3");
    }

    #[test]
    fn other_names_and_other_hosts_get_rows_of_their_own() {
        let nodes = NodeList::new(Vec::new());
        let names = JoinedNames::default();
        let other_host: SocketAddr = "10.0.0.10:41000".parse().unwrap();
        let (a, _a) = serve(names.claim("h1", peer(), &nodes));
        let (b, _b) = serve(names.claim("h1#2", peer(), &nodes));
        let (c, _c) = serve(names.claim("h1", other_host, &nodes));
        let listed = [a.name.as_str(), b.name.as_str(), c.name.as_str()];
        assert_eq!(listed, ["h1", "h1#2", "h1#3"]);
        assert_eq!(nodes.snapshot().len(), 3);
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("h\u{1b}[2Jost", peer()), "h[2Jost");
        assert_eq!(clean_name(" \n", peer()), "10.0.0.9");
        assert_eq!(clean_name(&"x".repeat(500), peer()).len(), MAX_NAME);
    }
}
