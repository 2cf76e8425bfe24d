//! Limits of one secure channel, set by whoever opens it (the node daemon or the client).

use std::time::Duration;

/// Default for [`ChannelConfig::max_message`]: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: u32 = 64 << 20;

/// Default for [`ChannelConfig::handshake_timeout`]: 5 seconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Limits of one secure channel.
///
/// They are explicit so that a hostile or broken peer costs a bounded amount of memory and
/// time: a frame that announces more than `max_message` is refused before any memory is
/// reserved for it, a peer that stalls the handshake is dropped after `handshake_timeout`,
/// and, when `write_timeout` is set, a peer that stops reading is dropped once a write to
/// it has made no progress for that long.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let mut config = pp_net::ChannelConfig::default();
/// config.handshake_timeout = Duration::from_millis(500);
/// assert_eq!(config.max_message, 64 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// Largest application message, in bytes of its encoding, that this side sends or
    /// accepts. Default [`DEFAULT_MAX_MESSAGE`] (64 MiB). It also bounds the decoding of a
    /// received [`crate::Message`], so a length inside a message cannot claim more.
    pub max_message: u32,
    /// Time allowed for the whole handshake (preambles, key exchange and confirmation).
    /// Default [`DEFAULT_HANDSHAKE_TIMEOUT`] (5 s). The tokio runtime must have its timer
    /// enabled.
    pub handshake_timeout: Duration,
    /// Longest a write to the peer may make no progress: each piece of a frame (at most
    /// about 1 MiB) must be taken by the peer's side within it, else the send fails with
    /// [`crate::NetError::WriteStalled`] and the channel is broken. Default `None` (no
    /// limit); a node sets it (see `NodeConfig::new`), so that a client that stops reading
    /// its results cannot hold its slot and workers forever.
    pub write_timeout: Option<Duration>,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            max_message: DEFAULT_MAX_MESSAGE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            write_timeout: None,
        }
    }
}
