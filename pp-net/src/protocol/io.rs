//! Messages on the secure channel: `send` and `recv` of a [`Message`], and the two messages
//! that take a shorter way than a `Message` value (a `Submit` sealed from its jobs'
//! arguments where they are, `Results` that fall back to failures when too large).
//!
//! These are methods of the channel's [`SecureReader`] and [`SecureWriter`], added here, one
//! layer up: the channel moves bytes and knows no message; this file is where bytes become
//! messages. The hot path stays copy-free: a message is encoded (a `Submit` into parts),
//! then sealed from those bytes as it is written.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::OwnedWriteHalf;

use super::job::{reply_size, JobReply, JobRequest, MESSAGE_SLACK};
use super::message::Message;
use super::outcome::Outcome;
use super::submit::SubmitEncoding;
use crate::channel::{NetError, SecureReader, SecureWriter};

impl<R: AsyncRead + Unpin> SecureReader<R> {
    /// Receives the next message.
    ///
    /// # Errors
    /// As [`SecureReader::recv_bytes`]; [`NetError::Codec`] when an authentic frame is not
    /// a valid [`Message`]. After an error the reader only returns [`NetError::Broken`].
    ///
    /// # Cancel safety
    /// Cancel safe, as [`SecureReader::recv_bytes`].
    pub async fn recv(&mut self) -> Result<Message, NetError> {
        let limit = self.max_message();
        self.recv_limited(limit).await?;
        let decoded = pp_runtime::codec::decode_with_limit(self.last_plaintext(), u64::from(limit));
        decoded.map_err(|source| {
            // An authentic frame that is not a message: the peer runs other code than we
            // think, so nothing after it can be trusted to make sense either.
            self.mark_broken();
            NetError::Codec {
                peer: self.peer(),
                source,
            }
        })
    }
}

impl<W: AsyncWrite + Unpin> SecureWriter<W> {
    /// Encodes and sends one message, as one frame (see [`SecureWriter::send_bytes`]).
    ///
    /// Many small jobs should share a message (for example one [`Message::Submit`] with
    /// every queued job): each message costs a frame and its authentication.
    ///
    /// # Errors
    /// As [`SecureWriter::send_bytes`] (a message whose encoding exceeds the limit is
    /// [`NetError::MessageTooLarge`], nothing sent); [`NetError::Codec`] when the message
    /// cannot be encoded.
    ///
    /// # Cancel safety
    /// Not cancel safe: a send dropped half-way leaves a torn frame on the stream, and
    /// every later call returns [`NetError::Broken`].
    pub async fn send(&mut self, message: &Message) -> Result<(), NetError> {
        let bytes = pp_runtime::codec::encode(message).map_err(|source| NetError::Codec {
            peer: self.peer(),
            source,
        })?;
        self.send_bytes(&bytes).await
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
            peer: self.peer(),
            source,
        })?;
        self.send_parts(&encoding.parts()).await
    }

    /// Sends `Message::Results { results }`. If it is too large (a lone reply above the
    /// limit), the replies too large to travel become `Failed` outcomes and the message
    /// goes again.
    ///
    /// # Errors
    /// As [`SecureWriter::send`].
    pub(crate) async fn send_results(&mut self, results: Vec<JobReply>) -> Result<(), NetError> {
        let budget = u64::from(self.max_message().saturating_sub(MESSAGE_SLACK));
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
}

impl SecureWriter<OwnedWriteHalf> {
    /// Sends `Message::Submit { jobs }` at once, from any thread, without the runtime (see
    /// [`SecureWriter::send_parts_now`]): for a lane with no job in flight.
    ///
    /// # Errors
    /// As [`SecureWriter::send_parts_now`].
    pub(crate) fn send_submit_now(&mut self, jobs: &[JobRequest]) -> Result<(), NetError> {
        let peer = self.peer();
        let encoding =
            SubmitEncoding::new(jobs).map_err(|source| NetError::Codec { peer, source })?;
        self.send_parts_now(&encoding.parts())
    }
}
