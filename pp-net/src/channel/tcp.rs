//! The channel over a TCP connection: the entry points the client, the node and the lanes
//! open it with.

use tokio::net::TcpStream;

use super::config::ChannelConfig;
use super::error::{NetError, Peer};
use super::handshake::{self, client_handshake, server_handshake};
use super::preamble::PREAMBLE_LEN;
use super::reader::SecureReader;
use super::secret::Secret;
use super::writer::SecureWriter;

/// Connects as a client on an open TCP connection: preamble, handshake, confirmation.
///
/// Sets `TCP_NODELAY`, so that each frame leaves at once.
///
/// # Errors
/// See [`client_handshake`]; [`NetError::Io`] if the socket cannot be configured.
pub async fn connect_client(
    stream: TcpStream,
    secret: &Secret,
    config: ChannelConfig,
) -> Result<(SecureReader, SecureWriter), NetError> {
    let peer = prepare(&stream)?;
    let (reader, writer) = stream.into_split();
    client_handshake(reader, writer, peer, secret, config).await
}

/// Accepts a client on a TCP connection just accepted: preamble, handshake, confirmation.
///
/// Sets `TCP_NODELAY`. The connection is trusted only when this returns `Ok`.
///
/// # Errors
/// See [`server_handshake`]; [`NetError::Io`] if the socket cannot be configured.
pub async fn accept_server(
    stream: TcpStream,
    secret: &Secret,
    config: ChannelConfig,
) -> Result<(SecureReader, SecureWriter), NetError> {
    let peer = prepare(&stream)?;
    let (reader, writer) = stream.into_split();
    server_handshake(reader, writer, peer, secret, config).await
}

/// As [`accept_server`], for a connection whose preamble `theirs` the node read (to tell a
/// session from a lane) and answered with its own already (so that it knows what it sent
/// if it must close the handshake early: see the node's `busy` module).
pub(crate) async fn accept_server_answered(
    stream: TcpStream,
    theirs: [u8; PREAMBLE_LEN],
    secret: &Secret,
    config: ChannelConfig,
) -> Result<(SecureReader, SecureWriter), NetError> {
    let peer = prepare(&stream)?;
    let (reader, writer) = stream.into_split();
    let steps = handshake::answered_steps(reader, writer, peer, secret, config, theirs);
    handshake::bounded("server", peer, config, steps).await
}

/// Readies a TCP connection for the channel (`TCP_NODELAY`), and names its peer.
///
/// # Errors
/// [`NetError::Io`] if the socket cannot be configured.
pub(crate) fn prepare(stream: &TcpStream) -> Result<Peer, NetError> {
    let peer = Peer(stream.peer_addr().ok());
    stream
        .set_nodelay(true)
        .map_err(|source| NetError::Io { peer, source })?;
    Ok(peer)
}
