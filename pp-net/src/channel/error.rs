//! The one error type of pp-net, with the peer's address in every message where it is known.
//!
//! Messages are written for the person reading a log line: what happened, with whom, and
//! the likely cause. Nothing here carries key material or decrypted bytes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use pp_runtime::codec::CodecError;

/// The remote end of a connection, as shown in error messages.
///
/// The address is unknown for streams that are not TCP sockets (in-memory pipes in tests,
/// or a socket whose `peer_addr` failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peer(pub Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "peer {addr}"),
            None => f.write_str("peer (address unknown)"),
        }
    }
}

/// Everything that can go wrong while connecting, authenticating, sending or receiving.
///
/// A connection that returned any error other than [`NetError::MessageTooLarge`] should be
/// dropped: the stream is no longer in step with the peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The operating system reported an error on the socket.
    #[error("i/o error with {peer}: {source}")]
    Io {
        /// The remote end.
        peer: Peer,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The peer closed the connection cleanly between two messages.
    #[error("{peer} closed the connection")]
    Disconnected {
        /// The remote end.
        peer: Peer,
    },

    /// The peer closed the connection in the middle of something (a preamble, a handshake
    /// message or a frame).
    #[error("{peer} closed the connection in the middle of {during}")]
    Truncated {
        /// The remote end.
        peer: Peer,
        /// What was being read.
        during: &'static str,
    },

    /// The first bytes from the peer are not pp's magic: it is not a pp node or client.
    // The magic as `{:02x?}` prints it, written out so that this file imports nothing
    // of the channel's (the preamble imports it); a test in `preamble` pins the two.
    #[error(
        "{peer} is not speaking the pp protocol: its first bytes are {found:02x?}, expected [50, 50, 52, 53] (\"PPRS\")"
    )]
    WrongMagic {
        /// The remote end.
        peer: Peer,
        /// The four bytes received in place of the magic.
        found: [u8; 4],
    },

    /// The peer speaks another version of the protocol.
    #[error("{peer} speaks pp protocol version {theirs}, this build speaks version {ours}")]
    VersionMismatch {
        /// The remote end.
        peer: Peer,
        /// This build's version ([`PROTOCOL_VERSION`](super::preamble::PROTOCOL_VERSION)).
        ours: u16,
        /// The version the peer announced.
        theirs: u16,
    },

    /// The peer did not prove that it knows the shared secret (or we could not prove it to
    /// the peer): the secrets differ, or the peer replayed or forged a handshake.
    #[error("authentication with {peer} failed: {reason}")]
    AuthenticationFailed {
        /// The remote end.
        peer: Peer,
        /// Which step failed and what it most likely means.
        reason: &'static str,
    },

    /// The node closed the handshake unfinished to make room for other connections: it
    /// had every connection slot taken while many connections were in their handshake
    /// (see `ppserver --max-connections`), and sent an empty handshake message in place of
    /// its reply to say so. Nothing is wrong with the secret; a later attempt may succeed.
    #[error("{peer} was busy with other handshakes and closed ours to make room (too many connections at once)")]
    Busy {
        /// The remote end.
        peer: Peer,
    },

    /// The handshake did not finish within [`ChannelConfig::handshake_timeout`](super::ChannelConfig::handshake_timeout).
    #[error("handshake with {peer} did not finish within {timeout:?}")]
    HandshakeTimeout {
        /// The remote end.
        peer: Peer,
        /// The configured limit.
        timeout: Duration,
    },

    /// A write to the peer made no progress within [`ChannelConfig::write_timeout`](super::ChannelConfig::write_timeout):
    /// the peer stopped reading (or the network to it stalled).
    #[error("{peer} read nothing of what was sent to it for {timeout:?}")]
    WriteStalled {
        /// The remote end.
        peer: Peer,
        /// The configured limit.
        timeout: Duration,
    },

    /// A frame announced more bytes than the configured limit; nothing was allocated for it.
    #[error("{peer} announced a {what} of {len} bytes, above the limit of {limit} bytes")]
    FrameTooLarge {
        /// The remote end.
        peer: Peer,
        /// What kind of frame ("handshake message" or "frame").
        what: &'static str,
        /// The announced length.
        len: u64,
        /// The largest length accepted.
        limit: u64,
    },

    /// A frame failed authentication or is malformed: it was altered, truncated by an
    /// attacker, or does not belong to this session.
    #[error("frame from {peer} rejected: {reason}")]
    FrameRejected {
        /// The remote end.
        peer: Peer,
        /// Why the frame was rejected.
        reason: &'static str,
    },

    /// A message to send is larger than [`ChannelConfig::max_message`](super::ChannelConfig::max_message). Nothing was
    /// sent; the connection is still usable.
    #[error(
        "message of {len} bytes for {peer} is above the limit of {limit} bytes; nothing was sent"
    )]
    MessageTooLarge {
        /// The remote end.
        peer: Peer,
        /// The encoded message's length.
        len: u64,
        /// The configured limit.
        limit: u64,
    },

    /// A message could not be encoded, or a received frame is not a valid message.
    #[error("bad message for or from {peer}: {source}")]
    Codec {
        /// The remote end.
        peer: Peer,
        /// What the codec reported.
        #[source]
        source: CodecError,
    },

    /// The connection is unusable because an earlier operation on it failed or was cancelled
    /// half-way.
    #[error("connection with {peer} is unusable after an earlier error or cancelled send")]
    Broken {
        /// The remote end.
        peer: Peer,
    },

    /// The shared secret is empty. pp has no default secret: give one explicitly.
    #[error("the shared secret is empty; give a non-empty secret (for example from PP_SECRET)")]
    EmptySecret,

    /// The Noise library failed for a reason that is not the peer's fault (it should not
    /// happen; the text is the library's).
    #[error("noise protocol error with {peer}: {reason}")]
    Crypto {
        /// The remote end.
        peer: Peer,
        /// The library's description.
        reason: String,
    },
}

impl NetError {
    /// Turns an I/O error met while reading `during` into the matching `NetError`: an early
    /// end of stream is [`NetError::Truncated`], anything else [`NetError::Io`].
    pub(crate) fn reading(peer: Peer, during: &'static str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            NetError::Truncated { peer, during }
        } else {
            NetError::Io { peer, source }
        }
    }

    /// Wraps a `snow` error that is a local failure, not the peer's.
    pub(crate) fn crypto(peer: Peer, source: &snow::Error) -> Self {
        NetError::Crypto {
            peer,
            reason: source.to_string(),
        }
    }
}
