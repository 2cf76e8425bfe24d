//! The network half of pp: the wire protocol between a client program and `ppserver` nodes.
//!
//! So far it holds the protocol layer: it opens an authenticated, encrypted channel over a
//! TCP connection and carries [`Message`]s on it:
//!
//! 1. **Preamble** ([`preamble`]): each side sends `b"PPRS"`, the protocol version and two
//!    reserved bytes; a peer of another version gets an error naming both versions.
//! 2. **Handshake** ([`client_handshake`], [`server_handshake`]): Noise `NNpsk0` with a
//!    key derived from the cluster's shared [`Secret`]. Both sides prove they know the
//!    secret without sending it, both contribute fresh ephemeral keys, and a recorded
//!    handshake replayed later fails. Bounded by [`ChannelConfig::handshake_timeout`].
//! 3. **Frames**: every message is encrypted and authenticated (AES-256-GCM); a frame
//!    announcing more than [`ChannelConfig::max_message`] is refused before any memory is
//!    reserved, and an altered byte is rejected.
//!
//! After the handshake the connection is a [`SecureReader`] and a [`SecureWriter`] that
//! separate tasks can own. Messages are encoded by `pp_runtime::codec`, the one module that
//! owns pp's wire encoding.
//!
//! Besides the protocol: the cluster client ([`client`]), the node daemon ([`node`]) and
//! the automatic discovery of nodes over UDP ([`discovery`]).
//!
//! # Examples
//! ```no_run
//! # async fn demo() -> Result<(), pp_net::NetError> {
//! use pp_net::{accept_server, connect_client, ChannelConfig, Message, Secret};
//! let secret = Secret::new("a long random secret")?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:60000").await.unwrap();
//! let client = tokio::net::TcpStream::connect("127.0.0.1:60000").await.unwrap();
//! let (server, _) = listener.accept().await.unwrap();
//! let config = ChannelConfig::default();
//! let (client, server) = tokio::join!(
//!     connect_client(client, &secret, config),
//!     accept_server(server, &secret, config),
//! );
//! let ((_, mut to_server), (mut from_client, _)) = (client?, server?);
//! to_server.send(&Message::Heartbeat { seq: 1 }).await?;
//! assert_eq!(from_client.recv().await?, Message::Heartbeat { seq: 1 });
//! # Ok(()) }
//! ```

mod area;
pub mod client;
mod config;
pub mod discovery;
mod error;
mod frame;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod lane;
mod message;
pub mod node;
pub mod preamble;
pub mod program;
mod secure;
mod shared;
#[cfg(test)]
mod test_channel;
pub mod worker;

pub use config::{ChannelConfig, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE};
pub use error::{NetError, Peer};
pub use handshake::{client_handshake, server_handshake, Secret};
pub use message::{JobReply, JobRequest, Message, Outcome};
pub use preamble::PROTOCOL_VERSION;
pub use secure::{SecureReader, SecureWriter};

use tokio::net::TcpStream;

/// The network half's entry points, referenced by every registered task (see
/// `pp_runtime::remote::ProgramHooks`).
pub static HOOKS: pp_runtime::remote::ProgramHooks = pp_runtime::remote::ProgramHooks {
    connect: client::connect,
    worker_hook: &worker::WORKER_HOOK,
};

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

/// As [`accept_server`], for a connection whose preamble the node read already (to tell a
/// session from a lane).
pub(crate) async fn accept_server_after(
    stream: TcpStream,
    theirs: [u8; preamble::PREAMBLE_LEN],
    secret: &Secret,
    config: ChannelConfig,
) -> Result<(SecureReader, SecureWriter), NetError> {
    let peer = prepare(&stream)?;
    let (reader, writer) = stream.into_split();
    let steps = handshake::server_steps(reader, writer, peer, secret, config, Some(theirs));
    handshake::bounded("server", peer, config, steps).await
}

fn prepare(stream: &TcpStream) -> Result<Peer, NetError> {
    let peer = Peer(stream.peer_addr().ok());
    stream
        .set_nodelay(true)
        .map_err(|source| NetError::Io { peer, source })?;
    Ok(peer)
}
