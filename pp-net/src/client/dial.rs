//! Opening a TCP connection to a node, for its session and for the session's lane alike.

use super::address::NodeAddress;
use super::classify::{dial_error, dial_timeout};
use pp_runtime::NodeFailure;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a TCP connection to a node may take to open.
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to `address` within [`NODE_CONNECT_TIMEOUT`]; the error says why it failed.
pub(crate) async fn dial(address: &NodeAddress) -> Result<TcpStream, String> {
    dial_node(address).await.map_err(|e| e.to_string())
}

/// As [`dial`], with the reason typed as the node's failure.
pub(crate) async fn dial_node(address: &NodeAddress) -> Result<TcpStream, NodeFailure> {
    let target = (address.host.as_str(), address.port);
    tokio::time::timeout(NODE_CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| dial_timeout(NODE_CONNECT_TIMEOUT))?
        .map_err(|e| dial_error(&e))
}
