//! Why a node is not usable, as the cluster client classifies it ([`NodeFailure`]), and
//! where the client stands with a node ([`NodeConnection`]): what a node's row of the
//! statistics and pp's warnings say about it.
//!
//! The cluster client (in `pp-net`) turns every way a node fails into one of these; this
//! crate has no network code, so the variants carry what the user needs to read and act
//! on, not the network errors themselves.

use std::time::{Duration, SystemTime};

/// Why a node could not be used, or was lost: the last failure a client met with it, as
/// [`NodeStatus::last_failure`](crate::NodeStatus::last_failure) and pp's warnings show it.
///
/// Its `Display` is the short reason (`authentication failed: wrong secret?`);
/// [`NodeFailure::hint`] says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeFailure {
    /// Nothing listens at the node's address and port: the connection was refused.
    #[error("connection refused")]
    ConnectionRefused,
    /// The node's host cannot be reached (no route, unknown name), or did not answer in
    /// time; the text is the system's or says how long the client waited.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The handshake failed: the node and this program do not share the secret.
    #[error("authentication failed: wrong secret?")]
    AuthenticationFailed,
    /// The node closed the handshake unfinished to make room for other connections: it
    /// had all its connection slots taken while many connections were in their handshake
    /// (a burst of clients, or a flood). Nothing is wrong with the secret.
    #[error("busy: it closed our handshake to make room for other connections")]
    Busy,
    /// The node speaks another version of pp's protocol.
    #[error("the node speaks pp protocol version {theirs}, this program version {ours}")]
    ProtocolVersion {
        /// This program's protocol version.
        ours: u16,
        /// The node's.
        theirs: u16,
    },
    /// Something else than a pp node answers at that address; the text says what came.
    #[error("not a pp node: {0}")]
    NotAPpNode(String),
    /// The node refused to run this program, with its reason: built for another
    /// architecture or system, too large for its program cache, its worker processes
    /// cannot start, ...
    #[error("the node cannot run this program: {0}")]
    ProgramNotRunnable(String),
    /// The node runs programs of another target than any build this client offers; the
    /// text names the node's target and the command that makes a build for it.
    #[error("no build of this program for the node's target {target}: make one with `{command}`")]
    NoBuild {
        /// The node's target triple, with its byte order and pointer width.
        target: String,
        /// The `cargo build --target ...` command that makes the build.
        command: String,
    },
    /// The node was serving and fell silent: no message within the liveness timeout.
    #[error("lost after {after:?} of silence")]
    Silent {
        /// The liveness timeout that passed without a word from the node.
        after: Duration,
    },
    /// The connection to the node broke (while it served, or while it was being set up);
    /// the text says how.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// Any other reason (the node broke the protocol, did not answer the setup, ...).
    #[error("{0}")]
    Other(String),
}

impl NodeFailure {
    /// What the user can check for this failure, where pp knows a likely cause.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            NodeFailure::AuthenticationFailed => Some(
                "this program's secret must be the node's: check PP_SECRET, PP_SECRET_FILE \
                 or `.secret(..)`",
            ),
            NodeFailure::ConnectionRefused => {
                Some("nothing listens on that port: is ppserver running there?")
            }
            NodeFailure::Busy => Some(
                "more connections reached the node at once than its `ppserver \
                 --max-connections`; not a wrong secret",
            ),
            NodeFailure::ProtocolVersion { .. } => {
                Some("run the same version of pp on the client and the node")
            }
            NodeFailure::Unreachable(_) => Some("check the address and the network to it"),
            _ => None,
        }
    }
}

/// Where a client stands with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeConnection {
    /// A session runs: the node takes jobs.
    Connected,
    /// A session runs, but the node's worker processes kept dying: it takes no new job
    /// until `until` while another node (or a local worker) can take jobs; its jobs in
    /// flight run on. Then it is on probation: one more crash before it has run a few jobs
    /// puts it aside again, for twice as long.
    PutAside {
        /// The worker crashes that put it aside (more may have come since).
        crashes: u32,
        /// When it takes jobs again.
        until: SystemTime,
    },
    /// The first attempt to reach the node has not ended yet.
    Connecting,
    /// The node is not usable now (it failed or was lost, see
    /// [`NodeStatus::last_failure`](crate::NodeStatus::last_failure)); the client retries
    /// it in the background.
    Down,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reasons_read_as_the_user_needs_them() {
        assert_eq!(
            NodeFailure::AuthenticationFailed.to_string(),
            "authentication failed: wrong secret?"
        );
        assert!(NodeFailure::AuthenticationFailed
            .hint()
            .is_some_and(|h| h.contains("PP_SECRET")));
        assert_eq!(
            NodeFailure::Silent {
                after: Duration::from_secs(3)
            }
            .to_string(),
            "lost after 3s of silence"
        );
        assert_eq!(
            NodeFailure::Busy.to_string(),
            "busy: it closed our handshake to make room for other connections"
        );
        assert!(NodeFailure::Busy
            .hint()
            .is_some_and(|h| h.contains("not a wrong secret")));
        assert_eq!(
            NodeFailure::ProtocolVersion { ours: 3, theirs: 2 }.to_string(),
            "the node speaks pp protocol version 2, this program version 3"
        );
    }
}
