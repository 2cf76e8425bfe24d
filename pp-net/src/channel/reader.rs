//! The receiving half of a secure channel: reads frames, opens them as their bytes arrive
//! and hands out each message's plaintext. Bytes only: decoding a message is the protocol
//! layer's (`crate::protocol`, which adds `recv` to this type).
//!
//! Buffers: a small message is decrypted into a buffer the reader keeps; a large one into
//! a buffer it lends out with the message (see [`Plaintext`]), or into the
//! [`PlaintextArea`] plugged in from above, while no holder of the last message there is
//! left. Both are taken back for the next large message once free, and let go after a
//! while without large messages ([`KEEP_LARGE_FOR`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;

use super::config::ChannelConfig;
use super::error::{NetError, Peer};
use super::frame::{self, Opener, FRAME_HEADER};
use super::plaintext::{Buffer, Plaintext, PlaintextArea};

/// Buffers up to this size are always kept for the next message.
const KEEP_BUFFER: usize = 1 << 20;

/// A larger message buffer is kept for the next large message (refilling pages already
/// mapped costs far less than faulting in fresh ones), and released at the first message
/// that finds it unused by any large message for this long: a session that stopped sending
/// large messages does not pin their memory. One such buffer per reader, of at most the
/// channel's message limit.
const KEEP_LARGE_FOR: Duration = Duration::from_secs(2);

/// Size of the read buffer: many small frames are read with one system call.
const READ_BUFFER: usize = 64 << 10;

/// Most bytes of a frame's body read ahead of their decryption: a large frame is read and
/// opened piece by piece, so that decryption works on bytes still in the cache and keeps
/// pace with the socket instead of waiting for the whole frame.
const STAGE: usize = 512 << 10;

/// Room for one whole segment and its header: the stage is compacted below this.
const MIN_READ: usize = 64 << 10;

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
    /// The frame being opened, once its header is read.
    opener: Option<Opener>,
    /// Body bytes read and not yet opened: `stage[staged]`.
    stage: Vec<u8>,
    staged: std::ops::Range<usize>,
    /// The last message is `plain[..plain_len]`; the buffer may be longer (see `Opener`).
    plain: Vec<u8>,
    plain_len: usize,
    /// A large message's buffer handed out by `recv_plaintext`, taken back for the next
    /// large message once nothing else holds it.
    lent: Option<Arc<Buffer>>,
    /// The area plugged in from above, when it is free (see `set_plaintext_area`).
    area: Option<Box<dyn PlaintextArea>>,
    /// The current frame (or the last message) is in `area`, not in `plain`.
    area_current: bool,
    /// The area, lent with a large message by `recv_plaintext`.
    area_lent: Option<Arc<Buffer>>,
    /// When a large message last used the kept buffer (see [`KEEP_LARGE_FOR`]).
    large_used: Option<Instant>,
    scratch: Vec<u8>,
    broken: bool,
}

impl<R: AsyncRead + Unpin> SecureReader<R> {
    /// The reader of a channel whose handshake produced `cipher` (shared with the writer).
    pub(crate) fn new(
        io: R,
        peer: Peer,
        cipher: Arc<StatelessTransportState>,
        config: ChannelConfig,
    ) -> Self {
        SecureReader {
            io: BufReader::with_capacity(READ_BUFFER, io),
            cipher,
            nonce: 0,
            peer,
            max_message: config.max_message,
            header: [0; FRAME_HEADER],
            header_filled: 0,
            opener: None,
            stage: Vec::new(),
            staged: 0..0,
            plain: Vec::new(),
            plain_len: 0,
            lent: None,
            area: None,
            area_current: false,
            area_lent: None,
            large_used: None,
            scratch: Vec::new(),
            broken: false,
        }
    }

    /// Receives the next message as raw bytes (what
    /// [`SecureWriter::send_bytes`](super::SecureWriter::send_bytes) sent).
    ///
    /// # Errors
    /// [`NetError::Disconnected`] when the peer closed the connection between messages;
    /// [`NetError::FrameTooLarge`] for a frame above the limit (refused before allocating);
    /// [`NetError::FrameRejected`] for a frame that fails authentication;
    /// [`NetError::Truncated`] when the stream ends inside a frame. After an error the
    /// reader only returns [`NetError::Broken`].
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped (for example in `tokio::select!`), the bytes
    /// already read are kept and the next call continues the same frame.
    pub async fn recv_bytes(&mut self) -> Result<Vec<u8>, NetError> {
        self.recv_limited(self.max_message).await?;
        if self.area_current {
            return Ok(self.last_plaintext().to_vec());
        }
        let mut bytes = std::mem::take(&mut self.plain);
        bytes.truncate(self.plain_len);
        Ok(bytes)
    }

    /// Plugs in memory to decrypt large messages into: from then on the reader uses `area`
    /// whenever nobody holds the last message decrypted there, and `recv_plaintext` hands
    /// them out in it. (The node plugs in its session's shared argument area, so that a
    /// job's arguments are where its worker can map them.)
    pub(crate) fn set_plaintext_area(&mut self, area: impl PlaintextArea) {
        self.area = Some(Box::new(area));
    }

    /// Receives the next message's plaintext, undecoded, for a decoder that keeps parts of
    /// it (see [`Plaintext`]).
    ///
    /// # Errors
    /// As [`SecureReader::recv_bytes`].
    ///
    /// # Cancel safety
    /// Cancel safe, as [`SecureReader::recv_bytes`].
    pub(crate) async fn recv_plaintext(&mut self) -> Result<Plaintext<'_>, NetError> {
        self.recv_limited(self.max_message).await?;
        if self.area_current {
            if let Some(area) = self.area.take() {
                self.area_current = false;
                let buffer = Arc::new(Buffer::Area(area));
                self.area_lent = Some(Arc::clone(&buffer));
                return Ok(Plaintext::Shared(buffer, self.plain_len));
            }
        }
        if self.plain_len <= KEEP_BUFFER {
            return Ok(Plaintext::Borrowed(&self.plain[..self.plain_len]));
        }
        let buffer = Arc::new(Buffer::Heap(std::mem::take(&mut self.plain)));
        self.lent = Some(Arc::clone(&buffer));
        Ok(Plaintext::Shared(buffer, self.plain_len))
    }

    /// The remote end.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// The channel's limit on a message, in bytes.
    pub(crate) fn max_message(&self) -> u32 {
        self.max_message
    }

    /// Marks the reader broken, for a layer above that found an authentic frame it cannot
    /// make sense of: every later receive returns [`NetError::Broken`].
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
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
        match (&self.area, self.area_current) {
            (Some(area), true) => &area.as_slice()[..self.plain_len],
            _ => &self.plain[..self.plain_len],
        }
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
        if self.opener.is_none() {
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
            // `len` is bounded by the limit, so what is reserved for it is too.
            let len = len as u32;
            self.prepare_buffers(len as usize);
            self.opener = Some(Opener::new(len, self.nonce, limit));
        }
        let rejected = |reason| NetError::FrameRejected { peer, reason };
        let Some(opener) = self.opener.as_mut() else {
            return Err(NetError::Broken { peer });
        };
        // Open every whole segment read so far, then read more, until the body is done.
        // Nothing of the plaintext is used before `finish` has seen the whole frame.
        loop {
            loop {
                let staged = &self.stage[self.staged.clone()];
                let opened = match (self.area.as_mut(), self.area_current) {
                    (Some(area), true) => {
                        opener.open_next(&self.cipher, staged, &mut **area, &mut self.scratch)
                    }
                    _ => opener.open_next(&self.cipher, staged, &mut self.plain, &mut self.scratch),
                };
                match opened.map_err(rejected)? {
                    Some(taken) => self.staged.start += taken,
                    None => break,
                }
            }
            if opener.left() == 0 {
                break;
            }
            if self.stage.len() - self.staged.end < MIN_READ && self.staged.start > 0 {
                // What is left is less than one segment: move it to the front, only once
                // the room behind it runs low, so that little is ever copied twice.
                self.stage.copy_within(self.staged.clone(), 0);
                self.staged = 0..self.staged.len();
            }
            // Never read past this frame's body: the stage holds one frame at a time.
            let unread = opener.left() - self.staged.len();
            let end = self.stage.len().min(self.staged.end + unread);
            if end == self.staged.end {
                return Err(rejected("a segment runs past the end of the frame"));
            }
            let n = self
                .io
                .read(&mut self.stage[self.staged.end..end])
                .await
                .map_err(|source| NetError::Io { peer, source })?;
            if n == 0 {
                return Err(NetError::Truncated {
                    peer,
                    during: "a frame",
                });
            }
            self.staged.end += n;
        }
        let (next, len) = opener.finish().map_err(rejected)?;
        self.nonce = next;
        self.plain_len = len;
        self.opener = None;
        self.staged = 0..0;
        self.header_filled = 0;
        Ok(())
    }

    /// Readies the buffers for a frame body of `len` bytes: takes back the buffer lent
    /// with an earlier large message if it is needed and free, or lets large buffers go
    /// under the rule of [`KEEP_LARGE_FOR`].
    fn prepare_buffers(&mut self, len: usize) {
        self.area_current = false;
        if let Some(lent) = self.area_lent.take() {
            // Back home once no job of its message holds it any more.
            match Arc::try_unwrap(lent) {
                Ok(Buffer::Area(area)) => self.area = Some(area),
                Ok(Buffer::Heap(_)) => {}
                Err(lent) => self.area_lent = Some(lent),
            }
        }
        if len > KEEP_BUFFER {
            self.large_used = Some(Instant::now());
            if let Some(area) = self.area.as_mut() {
                // The whole body's length: more than the plaintext and its last tag.
                match area.reserve(len) {
                    Ok(()) => self.area_current = true,
                    Err(error) => {
                        pp_runtime::debug!(%error, len, "a large message goes to the heap: the shared argument area cannot hold it")
                    }
                }
            }
            if !self.area_current && len > self.plain.capacity() {
                if let Some(lent) = self.lent.take() {
                    // Still held (a job of that message waits or runs): it is freed once
                    // its holders are done, and this message gets a buffer of its own.
                    if let Ok(Buffer::Heap(buffer)) = Arc::try_unwrap(lent) {
                        if buffer.capacity() > self.plain.capacity() {
                            self.plain = buffer;
                        }
                    }
                }
            }
        } else if self
            .large_used
            .is_some_and(|used| used.elapsed() > KEEP_LARGE_FOR)
        {
            self.large_used = None;
            self.lent = None;
            self.plain = Vec::new();
            self.stage = Vec::new();
            if let Some(area) = self.area.as_mut() {
                area.release();
            }
        }
        // Room for one whole segment at least, which `STAGE` is.
        let stage = len.min(STAGE);
        if self.stage.len() < stage {
            self.stage.resize(stage, 0);
        }
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

#[cfg(all(test, target_os = "linux"))]
mod tests;
