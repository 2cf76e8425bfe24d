//! Opening a TCP connection to a node, for its session and for the session's lane alike.

use super::address::NodeAddress;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a TCP connection to a node may take to open.
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to `address` within [`NODE_CONNECT_TIMEOUT`]; the error says why it failed.
pub(crate) async fn dial(address: &NodeAddress) -> Result<TcpStream, String> {
    let target = (address.host.as_str(), address.port);
    tokio::time::timeout(NODE_CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| format!("no answer within {NODE_CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot connect: {e}"))
}
