//! Why a node could not start or keep serving (errors of one client never end the node).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A failure of the node itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The discovery port (`ppserver -a`) could not be opened.
    #[error("cannot open the discovery port udp {addr}: {source}")]
    Discovery {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The program cache directory is unusable.
    #[error("cannot use the cache directory {}: {reason}", path.display())]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install the signal handlers: {0}")]
    Signal(#[source] io::Error),
    /// The configuration cannot work.
    #[error("invalid node configuration: {0}")]
    Config(String),
}
