//! The channel layer: an authenticated, encrypted, ordered stream of byte messages over one
//! connection. It deals in bytes only: what the bytes mean is the [`protocol`](crate::protocol)
//! layer's, and nothing here knows a message, a job or the node's memory.
//!
//! A connection goes through three steps:
//!
//! 1. **Preamble** ([`preamble`]): each side sends `b"PPRS"`, the protocol version and two
//!    reserved bytes; a peer of another version gets an error naming both versions.
//! 2. **Handshake** (`handshake`, with the cluster's [`Secret`] from `secret`): Noise
//!    `NNpsk0`. Both sides prove they know the secret without sending it, both contribute
//!    fresh ephemeral keys, and a recorded handshake replayed later fails. Bounded by
//!    [`ChannelConfig::handshake_timeout`].
//! 3. **Frames** (`frame`): every message is sealed (AES-256-GCM) into a frame of segments;
//!    a frame announcing more than [`ChannelConfig::max_message`] is refused before any
//!    memory is reserved, and an altered, reordered or missing segment is rejected.
//!
//! After the handshake the connection is a [`SecureReader`] (`reader`) and a
//! [`SecureWriter`] (`writer`) that separate tasks can own. The writer seals a message
//! given in parts from where the parts are; the reader opens a frame as its bytes arrive,
//! and hands a large message out in a shared buffer (`plaintext`) whose parts a decoder may
//! keep without copying. Where a large plaintext is decrypted is a seam: a layer above may
//! plug in a [`PlaintextArea`] (the node plugs in its shared argument area).
//!
//! `tcp` opens the channel on a TCP connection; `config` holds its limits, and `error` the
//! one error type of pp-net (the layers above share it: its `Codec` variant is theirs).

mod config;
mod error;
pub(crate) mod frame;
pub(crate) mod handshake;
mod plaintext;
pub mod preamble;
mod reader;
mod secret;
mod tcp;
mod writer;

pub use config::{ChannelConfig, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE};
pub use error::{NetError, Peer};
pub(crate) use frame::PlainOut;
pub use handshake::{client_handshake, server_handshake};
pub(crate) use plaintext::{Plaintext, PlaintextArea, SharedBytes};
pub use reader::SecureReader;
pub use secret::Secret;
pub use tcp::{accept_server, connect_client};
pub(crate) use tcp::{accept_server_answered, prepare};
pub use writer::SecureWriter;
