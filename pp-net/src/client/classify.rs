//! Every way a node fails, as the [`NodeFailure`] the user reads in pp's warnings and in
//! the node's row of the statistics: the network's errors are turned into the likely cause
//! here, once, so that the rest of the client deals in reasons, not error codes.
//!
//! A wrong secret shows on the client as the node hanging up (or resetting) right after
//! the client's first handshake message, or as a reply that does not decrypt: the
//! handshake reports both as [`NetError::AuthenticationFailed`].

use crate::channel::NetError;
use pp_runtime::NodeFailure;
use std::io;
use std::time::Duration;

/// The node's own words before a refusal that are already in [`NodeFailure`]'s text.
const NODE_CANNOT_RUN_PREFIX: &str = "cannot run the program on this node: ";

/// A TCP connection to the node could not be opened.
pub(crate) fn dial_error(error: &io::Error) -> NodeFailure {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => NodeFailure::ConnectionRefused,
        _ => NodeFailure::Unreachable(error.to_string()),
    }
}

/// The TCP connection did not open within `after`.
pub(crate) fn dial_timeout(after: Duration) -> NodeFailure {
    NodeFailure::Unreachable(format!("no answer within {after:?}"))
}

/// The preamble exchange or the handshake failed.
pub(crate) fn handshake_error(error: &NetError) -> NodeFailure {
    match error {
        NetError::AuthenticationFailed { .. } => NodeFailure::AuthenticationFailed,
        NetError::Busy { .. } => NodeFailure::Busy,
        NetError::VersionMismatch { ours, theirs, .. } => NodeFailure::ProtocolVersion {
            ours: *ours,
            theirs: *theirs,
        },
        NetError::WrongMagic { found, .. } => {
            NodeFailure::NotAPpNode(format!("its first bytes are {found:02x?}"))
        }
        NetError::HandshakeTimeout { timeout, .. } => NodeFailure::Other(format!(
            "the node did not finish the handshake within {timeout:?}"
        )),
        // Closed before even answering the preamble: a node whose every connection slot
        // holds an authenticated session closes newcomers at once.
        NetError::Truncated {
            during: "the preamble",
            ..
        } => NodeFailure::ConnectionLost(format!(
            "{error} (a node with all its connections taken closes new ones: ppserver \
             --max-connections)"
        )),
        other => connection_lost(other),
    }
}

/// The connection broke after the handshake (in setup or while the node served).
pub(crate) fn connection_lost(error: &NetError) -> NodeFailure {
    NodeFailure::ConnectionLost(error.to_string())
}

/// The node refused this client in setup (`Refused { reason }`): every refusal there is
/// about the program (its target, its size against the node's cache, an upload the node
/// cannot store, workers that cannot start it).
pub(crate) fn refusal(reason: &str) -> NodeFailure {
    let reason = reason
        .strip_prefix(NODE_CANNOT_RUN_PREFIX)
        .unwrap_or(reason);
    NodeFailure::ProgramNotRunnable(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Peer;

    #[test]
    fn network_errors_become_their_likely_cause() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(dial_error(&refused), NodeFailure::ConnectionRefused);
        let peer = Peer(None);
        let auth = NetError::AuthenticationFailed {
            peer,
            reason: "the node closed the connection",
        };
        assert_eq!(handshake_error(&auth), NodeFailure::AuthenticationFailed);
        let busy = NetError::Busy { peer };
        assert_eq!(handshake_error(&busy), NodeFailure::Busy);
        assert!(NodeFailure::Busy
            .hint()
            .is_some_and(|h| h.contains("--max-connections")));
        let version = NetError::VersionMismatch {
            peer,
            ours: 3,
            theirs: 2,
        };
        assert_eq!(
            handshake_error(&version),
            NodeFailure::ProtocolVersion { ours: 3, theirs: 2 }
        );
        let full = NetError::Truncated {
            peer,
            during: "the preamble",
        };
        assert!(
            matches!(handshake_error(&full), NodeFailure::ConnectionLost(t) if t.contains("--max-connections"))
        );
    }

    #[test]
    fn a_refusal_keeps_the_nodes_reason_without_repeating_it() {
        assert_eq!(
            refusal("cannot run the program on this node: the worker did not say hello"),
            NodeFailure::ProgramNotRunnable("the worker did not say hello".into())
        );
        assert_eq!(
            refusal("this node runs x86_64-linux programs and the client's program is built for aarch64-linux"),
            NodeFailure::ProgramNotRunnable(
                "this node runs x86_64-linux programs and the client's program is built for aarch64-linux".into()
            )
        );
    }
}
