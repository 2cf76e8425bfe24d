//! For unit tests: both ends of an authenticated channel over loopback TCP.

use crate::channel::{
    accept_server, connect_client, ChannelConfig, Secret, SecureReader, SecureWriter,
};
use tokio::net::{TcpListener, TcpStream};

/// The client's and the node's halves of a fresh channel with the default configuration.
pub(crate) async fn connected() -> ((SecureReader, SecureWriter), (SecureReader, SecureWriter)) {
    let secret = Secret::new("a secret for the crate's own tests").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let config = ChannelConfig::default();
    let (client, node) = tokio::join!(
        connect_client(client.unwrap(), &secret, config),
        accept_server(accepted.unwrap().0, &secret, config),
    );
    (client.unwrap(), node.unwrap())
}
