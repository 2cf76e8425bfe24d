//! The sending half of a secure channel: seals messages into frames and writes them.
//! Bytes only: encoding a message is the protocol layer's (`crate::protocol`, which adds
//! `send` and friends to this type on top of [`SecureWriter::send_parts`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use snow::StatelessTransportState;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use super::config::ChannelConfig;
use super::error::{NetError, Peer};
use super::frame::{self, Sealer};

/// A large frame is sealed and written about this many bytes at a time (whole segments), so
/// that the peer opens the start of the frame while the rest is still being sealed.
const WRITE_BATCH: usize = 1 << 20;

/// The sending half of a secure channel.
pub struct SecureWriter<W = OwnedWriteHalf> {
    io: W,
    cipher: Arc<StatelessTransportState>,
    nonce: u64,
    peer: Peer,
    max_message: u32,
    write_timeout: Option<Duration>,
    frame: Vec<u8>,
    scratch: Vec<u8>,
    // Set while a frame is being written: still set on entry means a send was cancelled
    // half-way and the peer would read a torn frame.
    broken: bool,
}

impl<W: AsyncWrite + Unpin> SecureWriter<W> {
    /// The writer of a channel whose handshake produced `cipher` (shared with the reader).
    pub(crate) fn new(
        io: W,
        peer: Peer,
        cipher: Arc<StatelessTransportState>,
        config: ChannelConfig,
    ) -> Self {
        SecureWriter {
            io,
            cipher,
            nonce: 0,
            peer,
            max_message: config.max_message,
            write_timeout: config.write_timeout,
            frame: Vec::new(),
            scratch: Vec::new(),
            broken: false,
        }
    }

    /// Sends raw bytes as one message, as one frame: one write, unless the frame is large
    /// (it then goes in batches of about a MiB, sealed as they are written). Received with
    /// [`SecureReader::recv_bytes`](super::SecureReader::recv_bytes).
    ///
    /// # Errors
    /// [`NetError::MessageTooLarge`] (nothing sent, the writer stays usable) when `bytes`
    /// exceed [`ChannelConfig::max_message`]; [`NetError::Io`] from the socket;
    /// [`NetError::WriteStalled`] past [`ChannelConfig::write_timeout`].
    ///
    /// # Cancel safety
    /// Not cancel safe: a send dropped half-way leaves a torn frame on the stream, and
    /// every later call returns [`NetError::Broken`].
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        self.send_parts(&[bytes]).await
    }

    /// Sends the message made of `parts`, one after the other, as one frame: large parts
    /// are sealed from where they are, never copied into one buffer first.
    ///
    /// # Errors
    /// As [`SecureWriter::send_bytes`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`SecureWriter::send_bytes`].
    pub(crate) async fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), NetError> {
        let peer = self.peer;
        let mut sealer = self.begin_frame(parts)?;
        // A small frame is one buffer and one write: with TCP_NODELAY it leaves at once,
        // and the header never waits in Nagle's buffer for the body. A large one goes in
        // batches, each written while the peer opens the one before.
        loop {
            self.frame.clear();
            let done = sealer
                .seal_some(
                    &self.cipher,
                    &mut self.frame,
                    &mut self.scratch,
                    WRITE_BATCH,
                )
                .map_err(|e| NetError::crypto(peer, &e))?;
            self.nonce = sealer.next_nonce();
            within(self.write_timeout, peer, self.io.write_all(&self.frame)).await?;
            if done {
                break;
            }
        }
        within(self.write_timeout, peer, self.io.flush()).await?;
        // `frame` is kept: it never holds more than one batch and one segment.
        self.broken = false;
        Ok(())
    }

    /// Checks that the message made of `parts` may go, and starts its frame: the writer
    /// counts as broken until the frame is written whole.
    fn begin_frame<'a>(&mut self, parts: &'a [&'a [u8]]) -> Result<Sealer<'a>, NetError> {
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
        let sealer = Sealer::new(parts, self.nonce).map_err(|e| NetError::crypto(peer, &e))?;
        self.broken = true;
        Ok(sealer)
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

    /// The channel's limit on a message, in bytes.
    pub(crate) fn max_message(&self) -> u32 {
        self.max_message
    }
}

/// Longest [`SecureWriter::send_parts_now`] waits for room in the socket's buffer.
const SEND_NOW_LIMIT: Duration = Duration::from_secs(1);

impl SecureWriter<OwnedWriteHalf> {
    /// Sends the message made of `parts` at once, from any thread, without the runtime:
    /// for a small message on a connection with room in its socket buffer (a lane with no
    /// job in flight), where it is one system call. Waits for room, giving the CPU away
    /// between tries, at most [`SEND_NOW_LIMIT`].
    ///
    /// # Errors
    /// As [`SecureWriter::send_bytes`]; [`NetError::WriteStalled`] when the socket took
    /// nothing for [`SEND_NOW_LIMIT`] (the writer is then broken).
    pub(crate) fn send_parts_now(&mut self, parts: &[&[u8]]) -> Result<(), NetError> {
        let peer = self.peer;
        let mut sealer = self.begin_frame(parts)?;
        self.frame.clear();
        // The whole frame in one batch: it is small.
        sealer
            .seal_some(&self.cipher, &mut self.frame, &mut self.scratch, usize::MAX)
            .map_err(|e| NetError::crypto(peer, &e))?;
        self.nonce = sealer.next_nonce();
        let deadline = Instant::now() + SEND_NOW_LIMIT;
        let mut written = 0;
        while written < self.frame.len() {
            match self.io.try_write(&self.frame[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(NetError::WriteStalled {
                            peer,
                            timeout: SEND_NOW_LIMIT,
                        });
                    }
                    std::thread::yield_now();
                }
                Err(source) => return Err(NetError::Io { peer, source }),
            }
        }
        self.broken = false;
        Ok(())
    }
}

/// Runs one write of a frame, failing with [`NetError::WriteStalled`] if it is not done
/// within `timeout` (when set).
async fn within(
    timeout: Option<Duration>,
    peer: Peer,
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<(), NetError> {
    let written = match timeout {
        None => write.await,
        Some(timeout) => tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| NetError::WriteStalled { peer, timeout })?,
    };
    written.map_err(|source| NetError::Io { peer, source })
}

impl<W> std::fmt::Debug for SecureWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureWriter")
            .field("peer", &self.peer)
            .field("segments_sent", &self.nonce)
            .finish_non_exhaustive()
    }
}
