//! What a node is told at start: where to listen, how many workers, which secret, limits.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::discovery::DiscoveryConfig;
use crate::{ChannelConfig, Secret};

/// The port `ppserver` listens on by default, as Parallel Python's did: the one a client
/// assumes for a node named without a port.
pub use pp_runtime::remote::DEFAULT_PORT;

/// Default for [`NodeConfig::max_upload`]: 512 MiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 512 << 20;

/// Default for [`NodeConfig::max_cache_bytes`]: 4 GiB.
pub const DEFAULT_MAX_CACHE_BYTES: u64 = 4 << 30;

/// Default for [`NodeConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Default for [`NodeConfig::worker_start_timeout`]: 10 seconds.
pub const DEFAULT_WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Default for [`NodeConfig::setup_timeout`]: 30 seconds.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for the node's `channel.write_timeout` (see [`NodeConfig::new`]): 60 seconds.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default for [`NodeConfig::max_queued_jobs`]: 4096, above the most a pp client keeps in
/// flight on a node (its workers plus 1024).
pub const DEFAULT_MAX_QUEUED_JOBS: usize = 4096;

/// Everything a node needs to serve. Build it with [`NodeConfig::new`] and change fields.
///
/// # Examples
/// ```
/// use pp_net::{node::NodeConfig, Secret};
/// let mut config = NodeConfig::new(Secret::new("a long random secret")?);
/// config.listen = "127.0.0.1:0".parse().unwrap();
/// config.workers = 2;
/// assert_eq!(config.max_upload, 512 << 20);
/// # Ok::<(), pp_net::NetError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Address and port to listen on. Default `0.0.0.0:60000` ([`DEFAULT_PORT`]); port 0
    /// picks a free port (see `serve`'s `ready` channel).
    pub listen: SocketAddr,
    /// Worker processes started for each client. Default: the number of cores.
    pub workers: usize,
    /// The cluster's shared secret. There is no default.
    pub secret: Secret,
    /// Exit after this long with no client connected. Default `None`: serve forever.
    pub idle_timeout: Option<Duration>,
    /// Where uploaded programs are cached, private to this user. Default
    /// [`default_cache_dir`].
    pub cache_dir: PathBuf,
    /// Largest program a client may upload, in bytes. Default [`DEFAULT_MAX_UPLOAD`].
    pub max_upload: u64,
    /// Bytes the cache may hold; the least recently used programs not in use are removed
    /// beyond it. An upload reserves its announced size against it before the node accepts
    /// it, and is refused when it cannot fit even after that eviction, so uploads in
    /// progress count too. Default [`DEFAULT_MAX_CACHE_BYTES`].
    pub max_cache_bytes: u64,
    /// Limits of each client's channel: message size, handshake time, and how long a write
    /// to the client may make no progress (default [`DEFAULT_WRITE_TIMEOUT`] on a node: a
    /// client that stops reading its results is disconnected after it, which frees its
    /// slot and its workers).
    pub channel: ChannelConfig,
    /// Connections served at once, handshakes included. Past it, a new connection takes
    /// the slot of the oldest one still in its handshake, or is closed at once when every
    /// slot holds an authenticated session. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Time a new worker process has to say hello. Default
    /// [`DEFAULT_WORKER_START_TIMEOUT`].
    pub worker_start_timeout: Duration,
    /// Time allowed for each message before the node is ready (hello, each upload chunk).
    /// Default [`DEFAULT_SETUP_TIMEOUT`].
    pub setup_timeout: Duration,
    /// Jobs a client may have on the node at once: queued, running, or with a result not
    /// yet written to its connection. Past it the node stops reading from that client
    /// until a result has been sent, and meanwhile repeats its last heartbeat answer every
    /// 250 ms so that the client does not take it for lost. This bounds what a client that
    /// stops reading its results can make the node hold. Default
    /// [`DEFAULT_MAX_QUEUED_JOBS`], above what a pp client keeps in flight.
    pub max_queued_jobs: usize,
    /// Autodiscovery (`ppserver -a`): announce the node by UDP and answer clients' probes
    /// (see [`crate::discovery`]). Default `None`: clients must name the node.
    pub discovery: Option<DiscoveryConfig>,
    /// Address space (virtual memory) each worker process may use, in bytes, set as
    /// `RLIMIT_AS` where the platform has it: a job that allocates without end then fails
    /// in its worker (which dies, giving `WorkerCrashed`) instead of starving the machine.
    /// Default `None`: no limit beyond the node's own.
    pub worker_memory: Option<u64>,
    /// Clients to join (`ppserver --join HOST:PORT`): the node dials each, and serves it on
    /// that connection as on one it accepted (same handshake, same session), redialing
    /// with capped backoff while it runs; for clients that listen (`PP_LISTEN`) where the
    /// node cannot be reached. Default: none.
    pub join: Vec<String>,
    /// Whether the node listens for clients at [`listen`](NodeConfig::listen). Default on;
    /// off only with [`join`](NodeConfig::join) (a node behind NAT then opens no port).
    pub listening: bool,
}

impl NodeConfig {
    /// A configuration with every default and the given secret.
    pub fn new(secret: Secret) -> Self {
        NodeConfig {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            secret,
            idle_timeout: None,
            cache_dir: default_cache_dir(),
            max_upload: DEFAULT_MAX_UPLOAD,
            max_cache_bytes: DEFAULT_MAX_CACHE_BYTES,
            channel: ChannelConfig {
                write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
                ..ChannelConfig::default()
            },
            max_connections: DEFAULT_MAX_CONNECTIONS,
            worker_start_timeout: DEFAULT_WORKER_START_TIMEOUT,
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
            max_queued_jobs: DEFAULT_MAX_QUEUED_JOBS,
            discovery: None,
            worker_memory: None,
            join: Vec::new(),
            listening: true,
        }
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/pp`, else `$HOME/.cache/pp`, else
/// `pp-cache-<uid>` under the system's temporary directory.
///
/// Whichever it is, the node creates it with mode 0700, refuses one that another user
/// owns, and makes one open to other users private (with a warning).
pub fn default_cache_dir() -> PathBuf {
    let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("pp");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home).join(".cache").join("pp");
    }
    std::env::temp_dir().join(format!("pp-cache-{}", super::sys::user_id()))
}
