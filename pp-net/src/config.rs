//! Limits of one secure channel, set by whoever opens it (the node daemon or the client).

use std::time::Duration;

/// Default for [`ChannelConfig::max_message`]: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: u32 = 64 << 20;

/// Default for [`ChannelConfig::handshake_timeout`]: 5 seconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Limits of one secure channel.
///
/// Both are explicit so that a hostile or broken peer costs a bounded amount of memory and
/// time: a frame that announces more than `max_message` is refused before any memory is
/// reserved for it, and a peer that stalls the handshake is dropped after
/// `handshake_timeout`.
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
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            max_message: DEFAULT_MAX_MESSAGE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}
