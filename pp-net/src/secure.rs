//! The two halves of an authenticated, encrypted channel.
//!
//! After the handshake the stream is split: a [`SecureReader`] and a [`SecureWriter`] that
//! different tasks may own. Each keeps its own nonce counter (one per direction) over a
//! shared, immutable Noise state (`snow`'s stateless transport), so neither needs a lock.
//! Frames are laid out as described in the `frame` module.

use std::sync::Arc;
use std::time::{Duration, Instant};

use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::area::SharedArea;
use crate::config::ChannelConfig;
use crate::error::{NetError, Peer};
use crate::frame::{self, Opener, Sealer, FRAME_HEADER};
use crate::message::{
    reply_size, JobReply, JobRequest, Message, Outcome, SubmitEncoding, MESSAGE_SLACK,
};
use crate::shared::{Buffer, SharedBytes};

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

/// A large frame is sealed and written about this many bytes at a time (whole segments), so
/// that the peer opens the start of the frame while the rest is still being sealed.
const WRITE_BATCH: usize = 1 << 20;

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
    };
    let writer = SecureWriter {
        io: writer,
        cipher,
        nonce: 0,
        peer,
        max_message: config.max_message,
        write_timeout: config.write_timeout,
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
    /// The session's shared argument area, when it is free (see `set_shared_area`).
    area: Option<SharedArea>,
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
        let decoded = pp_runtime::codec::decode_with_limit(
            self.last_plaintext(),
            u64::from(self.max_message),
        );
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
        if self.area_current {
            return Ok(self.last_plaintext().to_vec());
        }
        let mut bytes = std::mem::take(&mut self.plain);
        bytes.truncate(self.plain_len);
        Ok(bytes)
    }

    /// Gives the reader the session's shared argument area (see the `area` module): from
    /// then on it decrypts large messages into it whenever no job of an earlier message
    /// still holds it, and `recv_plaintext` hands them out there, so that a job's arguments
    /// are where its worker can map them.
    pub(crate) fn set_shared_area(&mut self, area: SharedArea) {
        self.area = Some(area);
    }

    /// Receives the next message's plaintext, undecoded, for a decoder that keeps parts of
    /// it (see [`Plaintext`]).
    ///
    /// # Errors
    /// As [`SecureReader::recv`], without the decoding.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`SecureReader::recv`].
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
                        opener.open_next(&self.cipher, staged, area, &mut self.scratch)
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
                        tracing::debug!(%error, len, "a large message goes to the heap: the shared argument area cannot hold it")
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

/// The plaintext of a received message, for a decoder that keeps parts of it: a small
/// message is borrowed from the reader (parts kept are copied), a large one is handed out
/// as a shared buffer (large parts kept share it; see [`SharedBytes::part_of`]).
pub(crate) enum Plaintext<'a> {
    /// A small message, in the reader's buffer.
    Borrowed(&'a [u8]),
    /// A large message: its buffer, and the message's length in it.
    Shared(Arc<Buffer>, usize),
}

impl Plaintext<'_> {
    /// The message's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Plaintext::Borrowed(bytes) => bytes,
            Plaintext::Shared(buffer, len) => &buffer[..*len],
        }
    }

    /// `part` of [`Plaintext::bytes`], kept beyond the message: shared when possible.
    pub(crate) fn keep(&self, part: &[u8]) -> SharedBytes {
        match self {
            Plaintext::Borrowed(_) => SharedBytes::copied(part),
            Plaintext::Shared(buffer, _) => SharedBytes::part_of(buffer, part),
        }
    }
}

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
    /// Encodes and sends one message, as one frame: one write, unless the frame is large
    /// (it then goes in batches of a few hundred KiB, sealed as they are written).
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

    /// Sends the message made of `parts`, as one frame.
    async fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), NetError> {
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

    /// Sends `Message::Results { results }`. If it is too large (a lone reply above the
    /// limit), the replies too large to travel become `Failed` outcomes and the message
    /// goes again.
    ///
    /// # Errors
    /// As [`SecureWriter::send`].
    pub(crate) async fn send_results(&mut self, results: Vec<JobReply>) -> Result<(), NetError> {
        let budget = u64::from(self.max_message.saturating_sub(MESSAGE_SLACK));
        let message = Message::Results { results };
        match self.send(&message).await {
            Err(NetError::MessageTooLarge { len, limit, .. }) => {
                let Message::Results { mut results } = message else {
                    return Ok(());
                };
                for reply in &mut results {
                    if reply_size(reply) > budget {
                        reply.outcome = Outcome::Failed(format!(
                            "the job's result is too large for one message (the Results \
                             message was {len} bytes, the limit is {limit} bytes)"
                        ));
                    }
                }
                self.send(&Message::Results { results }).await
            }
            other => other,
        }
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
}

/// Longest [`SecureWriter::send_submit_now`] waits for room in the socket's buffer.
const SEND_NOW_LIMIT: Duration = Duration::from_secs(1);

impl SecureWriter<OwnedWriteHalf> {
    /// Sends `Message::Submit { jobs }` at once, from any thread, without the runtime: for
    /// a small message on a connection with room in its socket buffer (a lane with no job
    /// in flight), where it is one system call. Waits for room, giving the CPU away between
    /// tries, at most [`SEND_NOW_LIMIT`].
    ///
    /// # Errors
    /// As [`SecureWriter::send`]; [`NetError::WriteStalled`] when the socket took nothing
    /// for [`SEND_NOW_LIMIT`] (the writer is then broken).
    pub(crate) fn send_submit_now(&mut self, jobs: &[JobRequest]) -> Result<(), NetError> {
        let peer = self.peer;
        let encoding =
            SubmitEncoding::new(jobs).map_err(|source| NetError::Codec { peer, source })?;
        let parts = encoding.parts();
        let mut sealer = self.begin_frame(&parts)?;
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::JobRequest;

    fn submit(job_id: u64, len: usize) -> Message {
        Message::Submit {
            jobs: vec![JobRequest {
                job_id,
                task: "t".into(),
                fingerprint: 0,
                args: (0..len).map(|i| (i % 253) as u8 ^ job_id as u8).collect(),
            }],
        }
    }

    /// The arguments of the one job of a large `Submit`, kept as a node keeps them.
    fn kept_args(plain: &Plaintext<'_>) -> SharedBytes {
        let jobs = crate::message::decode_submit(plain.bytes(), u64::MAX)
            .unwrap()
            .expect("a Submit");
        plain.keep(jobs[0].args)
    }

    #[tokio::test]
    async fn large_messages_land_in_the_shared_area_while_it_is_free_and_on_the_heap_otherwise() {
        let ((_, mut to_node), (mut from_client, _)) = crate::test_channel::connected().await;
        let (area, _worker_fd) = SharedArea::create().unwrap();
        from_client.set_shared_area(area);

        let expected = |message: &Message| match message {
            Message::Submit { jobs } => jobs[0].args.clone(),
            _ => unreachable!(),
        };
        let (first, second, third) = (submit(1, 3 << 20), submit(2, 2 << 20), submit(3, 100));
        let messages = [first.clone(), second.clone(), third, first.clone()];
        // Sent by a task of its own: the socket holds far less than these messages.
        let sending = tokio::spawn(async move {
            for message in &messages {
                to_node.send(message).await.unwrap();
            }
            to_node
        });

        // The first large message goes to the area, and its arguments are there.
        let held = kept_args(&from_client.recv_plaintext().await.unwrap());
        assert!(held.area_range().is_some(), "in the area");
        assert_eq!(&*held, &expected(&first)[..]);
        // The area is still held: the next large message goes to the heap.
        let other = kept_args(&from_client.recv_plaintext().await.unwrap());
        assert_eq!(other.area_range(), None);
        assert_eq!(&*other, &expected(&second)[..]);
        // A small message never uses the area.
        let small = kept_args(&from_client.recv_plaintext().await.unwrap());
        assert_eq!(small.area_range(), None);
        // Once the first one's job is done, the area serves again, with the right bytes.
        drop(held);
        let again = kept_args(&from_client.recv_plaintext().await.unwrap());
        assert!(again.area_range().is_some(), "the area came back");
        assert_eq!(&*again, &expected(&first)[..]);
        assert_eq!(
            &*other,
            &expected(&second)[..],
            "the heap message untouched"
        );
        drop(sending.await.unwrap());
    }
}
