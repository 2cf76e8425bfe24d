//! The two halves of an authenticated, encrypted channel.
//!
//! After the handshake the stream is split: a [`SecureReader`] and a [`SecureWriter`] that
//! different tasks may own. Each keeps its own nonce counter (one per direction) over a
//! shared, immutable Noise state (`snow`'s stateless transport), so neither needs a lock.
//! Frames are laid out as described in the `frame` module.

use std::sync::Arc;

use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::config::ChannelConfig;
use crate::error::{NetError, Peer};
use crate::frame::{self, FRAME_HEADER};
use crate::message::{JobRequest, Message, SubmitEncoding};

/// Buffers above this size are released after use, so that one large message does not pin
/// its memory for the rest of a long-lived connection.
const KEEP_BUFFER: usize = 1 << 20;

/// Size of the read buffer: many small frames are read with one system call.
const READ_BUFFER: usize = 64 << 10;

/// Builds both halves once the handshake has produced the session keys.
pub(crate) fn channel<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: R,
    writer: W,
    peer: Peer,
    cipher: impl Into<Arc<StatelessTransportState>>,
    config: ChannelConfig,
) -> (SecureReader<R>, SecureWriter<W>) {
    let cipher = cipher.into();
    let reader = SecureReader {
        io: BufReader::with_capacity(READ_BUFFER, reader),
        cipher: Arc::clone(&cipher),
        nonce: 0,
        peer,
        max_message: config.max_message,
        header: [0; FRAME_HEADER],
        header_filled: 0,
        body: Vec::new(),
        body_filled: 0,
        in_body: false,
        plain: Vec::new(),
        scratch: Vec::new(),
        broken: false,
    };
    let writer = SecureWriter {
        io: writer,
        cipher,
        nonce: 0,
        peer,
        max_message: config.max_message,
        frame: Vec::new(),
        scratch: Vec::new(),
        broken: false,
    };
    (reader, writer)
}

/// The receiving half of a secure channel.
///
/// Dropping it does not close the connection; dropping both halves does.
pub struct SecureReader<R = OwnedReadHalf> {
    io: BufReader<R>,
    cipher: Arc<StatelessTransportState>,
    nonce: u64,
    peer: Peer,
    max_message: u32,
    // Progress through the current frame, kept here (not in the future) so that a
    // cancelled `recv` loses nothing.
    header: [u8; FRAME_HEADER],
    header_filled: usize,
    body: Vec<u8>,
    body_filled: usize,
    in_body: bool,
    plain: Vec<u8>,
    scratch: Vec<u8>,
    broken: bool,
}

impl<R: AsyncRead + Unpin> SecureReader<R> {
    /// Receives the next message.
    ///
    /// # Errors
    /// [`NetError::Disconnected`] when the peer closed the connection between messages;
    /// [`NetError::FrameTooLarge`] for a frame above the limit (refused before allocating);
    /// [`NetError::FrameRejected`] for a frame that fails authentication;
    /// [`NetError::Truncated`] when the stream ends inside a frame; [`NetError::Codec`]
    /// when an authentic frame is not a valid [`Message`]. After an error the reader only
    /// returns [`NetError::Broken`].
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped (for example in `tokio::select!`), the bytes
    /// already read are kept and the next call continues the same frame.
    pub async fn recv(&mut self) -> Result<Message, NetError> {
        self.recv_limited(self.max_message).await?;
        let decoded =
            pp_runtime::codec::decode_with_limit(&self.plain, u64::from(self.max_message));
        release_if_large(&mut self.plain);
        decoded.map_err(|source| {
            // An authentic frame that is not a message: the peer runs other code than we
            // think, so nothing after it can be trusted to make sense either.
            self.broken = true;
            NetError::Codec {
                peer: self.peer,
                source,
            }
        })
    }

    /// Receives the next message as raw bytes (what [`SecureWriter::send_bytes`] sent).
    ///
    /// # Errors
    /// As [`SecureReader::recv`], without the decoding.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`SecureReader::recv`].
    pub async fn recv_bytes(&mut self) -> Result<Vec<u8>, NetError> {
        self.recv_limited(self.max_message).await?;
        Ok(std::mem::take(&mut self.plain))
    }

    /// The remote end.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Reads and authenticates one frame of at most `limit` message bytes into `plain`.
    pub(crate) async fn recv_limited(&mut self, limit: u32) -> Result<(), NetError> {
        if self.broken {
            return Err(NetError::Broken { peer: self.peer });
        }
        let result = self.read_frame(limit).await;
        // Only a returned error breaks the reader; a cancelled future never gets here.
        self.broken = result.is_err();
        result
    }

    /// The plaintext of the last frame received with `recv_limited`.
    pub(crate) fn last_plaintext(&self) -> &[u8] {
        &self.plain
    }

    async fn read_frame(&mut self, limit: u32) -> Result<(), NetError> {
        let peer = self.peer;
        while self.header_filled < FRAME_HEADER {
            let n = self
                .io
                .read(&mut self.header[self.header_filled..])
                .await
                .map_err(|source| NetError::Io { peer, source })?;
            if n == 0 {
                return Err(if self.header_filled == 0 {
                    NetError::Disconnected { peer }
                } else {
                    NetError::Truncated {
                        peer,
                        during: "a frame header",
                    }
                });
            }
            self.header_filled += n;
        }
        if !self.in_body {
            let len = u64::from(u32::from_le_bytes(self.header));
            let max = frame::body_len(u64::from(limit));
            if len > max {
                return Err(NetError::FrameTooLarge {
                    peer,
                    what: "frame",
                    len,
                    limit: max,
                });
            }
            if len < frame::body_len(0) {
                return Err(NetError::FrameRejected {
                    peer,
                    reason: "the frame is shorter than the smallest possible frame",
                });
            }
            // `len` is bounded by the limit, so this allocation is too.
            self.body.clear();
            self.body.resize(len as usize, 0);
            self.body_filled = 0;
            self.in_body = true;
        }
        while self.body_filled < self.body.len() {
            let n = self
                .io
                .read(&mut self.body[self.body_filled..])
                .await
                .map_err(|source| NetError::Io { peer, source })?;
            if n == 0 {
                return Err(NetError::Truncated {
                    peer,
                    during: "a frame",
                });
            }
            self.body_filled += n;
        }
        self.header_filled = 0;
        self.in_body = false;
        let opened = frame::open(
            &self.cipher,
            &mut self.nonce,
            &self.body,
            limit,
            &mut self.plain,
            &mut self.scratch,
        );
        release_if_large(&mut self.body);
        opened.map_err(|reason| NetError::FrameRejected { peer, reason })
    }
}

/// The sending half of a secure channel.
pub struct SecureWriter<W = OwnedWriteHalf> {
    io: W,
    cipher: Arc<StatelessTransportState>,
    nonce: u64,
    peer: Peer,
    max_message: u32,
    frame: Vec<u8>,
    scratch: Vec<u8>,
    // Set while a frame is being written: still set on entry means a send was cancelled
    // half-way and the peer would read a torn frame.
    broken: bool,
}

impl<W: AsyncWrite + Unpin> SecureWriter<W> {
    /// Encodes and sends one message, as one frame written with one `write_all`.
    ///
    /// Many small jobs should share a message (for example one [`Message::Submit`] with
    /// every queued job): each message costs a frame and its authentication.
    ///
    /// # Errors
    /// [`NetError::MessageTooLarge`] (nothing sent, the writer stays usable) when the
    /// encoding exceeds [`ChannelConfig::max_message`]; [`NetError::Codec`] when the message
    /// cannot be encoded; [`NetError::Io`] from the socket.
    ///
    /// # Cancel safety
    /// Not cancel safe: a send dropped half-way leaves a torn frame on the stream, and
    /// every later call returns [`NetError::Broken`].
    pub async fn send(&mut self, message: &Message) -> Result<(), NetError> {
        let bytes = pp_runtime::codec::encode(message).map_err(|source| NetError::Codec {
            peer: self.peer,
            source,
        })?;
        self.send_bytes(&bytes).await
    }

    /// Sends raw bytes as one message (received with [`SecureReader::recv_bytes`]).
    ///
    /// # Errors
    /// As [`SecureWriter::send`], without the encoding.
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`SecureWriter::send`].
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        self.send_parts(&[bytes]).await
    }

    /// Sends `Message::Submit { jobs }`, with large arguments encrypted from where they
    /// are rather than copied into an encoding of the whole message first.
    ///
    /// # Errors
    /// As [`SecureWriter::send`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`SecureWriter::send`].
    pub(crate) async fn send_submit(&mut self, jobs: &[JobRequest]) -> Result<(), NetError> {
        let encoding = SubmitEncoding::new(jobs).map_err(|source| NetError::Codec {
            peer: self.peer,
            source,
        })?;
        self.send_parts(&encoding.parts()).await
    }

    /// Sends the message made of `parts`, as one frame written with one `write_all`.
    async fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), NetError> {
        let peer = self.peer;
        if self.broken {
            return Err(NetError::Broken { peer });
        }
        let len: u64 = parts.iter().map(|part| part.len() as u64).sum();
        if len > u64::from(self.max_message) || frame::body_len(len) > u64::from(u32::MAX) {
            return Err(NetError::MessageTooLarge {
                peer,
                len,
                limit: u64::from(self.max_message),
            });
        }
        self.broken = true;
        frame::seal_parts(
            &self.cipher,
            &mut self.nonce,
            parts,
            &mut self.frame,
            &mut self.scratch,
        )
        .map_err(|e| NetError::crypto(peer, &e))?;
        // One buffer, one write: with TCP_NODELAY the frame leaves at once, and the header
        // never waits in Nagle's buffer for the body.
        self.io
            .write_all(&self.frame)
            .await
            .map_err(|source| NetError::Io { peer, source })?;
        self.io
            .flush()
            .await
            .map_err(|source| NetError::Io { peer, source })?;
        release_if_large(&mut self.frame);
        self.broken = false;
        Ok(())
    }

    /// Closes the sending direction (TCP FIN); the peer's reader then gets
    /// [`NetError::Disconnected`].
    ///
    /// # Errors
    /// [`NetError::Io`] from the socket.
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        let peer = self.peer;
        self.io
            .shutdown()
            .await
            .map_err(|source| NetError::Io { peer, source })
    }

    /// The remote end.
    pub fn peer(&self) -> Peer {
        self.peer
    }
}

impl<R> std::fmt::Debug for SecureReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureReader")
            .field("peer", &self.peer)
            .field("segments_received", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl<W> std::fmt::Debug for SecureWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureWriter")
            .field("peer", &self.peer)
            .field("segments_sent", &self.nonce)
            .finish_non_exhaustive()
    }
}

fn release_if_large(buffer: &mut Vec<u8>) {
    if buffer.capacity() > KEEP_BUFFER {
        *buffer = Vec::new();
    }
}
