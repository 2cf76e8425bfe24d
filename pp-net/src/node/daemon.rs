//! The node's main loop: accept connections, run a session for each, handle signals and
//! the idle timeout, and stop cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::admission::{Admission, Admit};
use super::cache::ProgramCache;
use super::config::NodeConfig;
use super::error::NodeError;
use super::failure_log::{FailureLog, FLUSH_PERIOD};
use super::join::join_client;
use super::session::{serve_connection, NodeContext};
use super::stats::{NodeCounters, NodeStats};
use crate::discovery::{Announcer, DiscoveryConfig};

/// Time sessions get to stop their workers when the node shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed `accept` (for example too many open files), so the loop does not
/// spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs a node until SIGTERM or Ctrl-C (SIGINT), or its idle timeout; logs its statistics
/// on SIGUSR1. Returns the final statistics.
///
/// `ready` receives the address actually listened on (useful with port 0) once the node
/// accepts connections; for a node that does not listen ([`NodeConfig::listening`] off), the
/// configured `listen` address, once it starts joining its clients
/// ([`NodeConfig::join`]).
///
/// # Errors
/// When the node cannot start: the address cannot be bound, the cache directory is
/// unusable, signal handlers cannot be installed, or the configuration is invalid. Errors
/// of one client are logged and never end the node.
pub async fn serve(
    config: NodeConfig,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> Result<NodeStats, NodeError> {
    let signals = Signals::install()?;
    run(config, ready, signals).await
}

/// Runs a node until `shutdown` completes (or its idle timeout), without touching signal
/// handlers: for embedding a node in another program or a test.
///
/// # Errors
/// As [`serve`].
pub async fn serve_until(
    config: NodeConfig,
    ready: Option<oneshot::Sender<SocketAddr>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<NodeStats, NodeError> {
    run(config, ready, Signals::Future(Box::pin(shutdown))).await
}

async fn run(
    config: NodeConfig,
    ready: Option<oneshot::Sender<SocketAddr>>,
    mut signals: Signals,
) -> Result<NodeStats, NodeError> {
    if config.workers == 0 {
        return Err(NodeError::Config("a node needs at least one worker".into()));
    }
    if config.max_connections == 0 {
        return Err(NodeError::Config(
            "max_connections must be at least 1".into(),
        ));
    }
    if !config.listening && config.join.is_empty() {
        return Err(NodeError::Config(
            "a node that does not listen must join a client (--join HOST:PORT)".into(),
        ));
    }
    if !config.listening && config.discovery.is_some() {
        return Err(NodeError::Config(
            "autodiscovery announces the port a node listens on: a node that only joins \
             clients has none"
                .into(),
        ));
    }
    let listener = if config.listening {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Some(listener)
    } else {
        None
    };
    let addr = match &listener {
        Some(listener) => listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?,
        None => config.listen,
    };
    let cache = ProgramCache::open(&config.cache_dir, config.max_cache_bytes)?;
    let host = super::sys::host_name().unwrap_or_else(|| addr.ip().to_string());
    // The name is the node's identity for clients it joins (see `join_name`): `host:port`
    // is its own while it listens; a node that only joins holds a slot of its host.
    let (node_name, _join_slot) = if listener.is_some() {
        (format!("{host}:{}", addr.port()), None)
    } else {
        let claimed = super::join_name::claim(&host);
        (claimed.name.clone(), Some(claimed))
    };
    let ctx = Arc::new(NodeContext {
        node_name,
        cache,
        counters: Arc::new(NodeCounters::default()),
        lanes: Arc::default(),
        failures: FailureLog::default(),
        config,
    });
    let admission = Arc::new(Admission::new(ctx.config.max_connections));
    let (stop, stopping) = watch::channel(false);
    let announcer = match &ctx.config.discovery {
        Some(discovery) => Some(start_discovery(discovery, addr, &host, &ctx, &stopping)?),
        None => None,
    };
    let mut sessions = JoinSet::new();
    let mut joiners = JoinSet::new();
    for target in &ctx.config.join {
        joiners.spawn(join_client(
            target.clone(),
            Arc::clone(&ctx),
            Arc::clone(&admission),
            stopping.clone(),
        ));
    }
    let mut last_activity = Instant::now();
    let mut failure_summaries = tokio::time::interval(FLUSH_PERIOD);
    failure_summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if listener.is_some() {
        pp_runtime::info!(
            "listening on {addr} with {} workers per client; program cache {}",
            ctx.config.workers,
            ctx.cache.dir().display()
        );
    }
    if !ctx.config.join.is_empty() {
        pp_runtime::info!(
            "joining {} as {} with {} workers per client; program cache {}",
            ctx.config.join.join(", "),
            ctx.node_name,
            ctx.config.workers,
            ctx.cache.dir().display()
        );
    }
    // Lanes and shared argument areas need Linux's memory files (see `area`).
    if cfg!(not(target_os = "linux")) {
        pp_runtime::info!(
            "no lanes or shared argument areas on this system (they need Linux): every job \
             goes through its session and its worker's pipe"
        );
    }
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }

    loop {
        // Joined sessions count as activity too (they live in `joiners`, not `sessions`).
        let joined =
            ctx.counters.active_connections.load(Ordering::Relaxed) > sessions.len() as u64;
        if joined {
            last_activity = Instant::now();
        }
        let idle_deadline = match ctx.config.idle_timeout {
            Some(timeout) if sessions.is_empty() && !joined => Some(last_activity + timeout),
            _ => None,
        };
        tokio::select! {
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    last_activity = Instant::now();
                    NodeCounters::bump(&ctx.counters.connections);
                    let ticket = match admission.admit(peer.ip()) {
                        Admit::Yes { ticket, evicted_another } => {
                            if evicted_another {
                                NodeCounters::bump(&ctx.counters.evicted);
                                pp_runtime::debug!(
                                    "connection limit reached: a connection still in its \
                                     handshake, from the address with the most of them, makes \
                                     room for {peer}"
                                );
                            }
                            ticket
                        }
                        Admit::Full => {
                            NodeCounters::bump(&ctx.counters.rejected);
                            pp_runtime::debug!(
                                "connection limit ({}) reached by authenticated sessions: \
                                 closing {peer}",
                                ctx.config.max_connections
                            );
                            continue;
                        }
                    };
                    let ctx = Arc::clone(&ctx);
                    let stopping = stopping.clone();
                    sessions.spawn(async move {
                        ctx.counters.active_connections.fetch_add(1, Ordering::Relaxed);
                        serve_connection(stream, peer, ticket, Arc::clone(&ctx), stopping).await;
                        ctx.counters.active_connections.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(error) => {
                    pp_runtime::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {
                last_activity = Instant::now();
            }
            _ = failure_summaries.tick() => ctx.failures.flush(),
            Some(_) = joiners.join_next(), if !joiners.is_empty() => {}
            _ = sleep_until(idle_deadline) => {
                pp_runtime::info!(
                    "no client for {:?}: exiting (idle timeout)",
                    ctx.config.idle_timeout.unwrap_or_default()
                );
                break;
            }
            event = signals.next() => match event {
                Event::Stop(why) => {
                    pp_runtime::info!("{why}: stopping");
                    break;
                }
                Event::Statistics => {
                    pp_runtime::info!("statistics: {}", ctx.counters.snapshot());
                }
            },
        }
    }

    drop(listener);
    let _ = stop.send(true);
    if let Some(announcer) = announcer {
        announcer.abort();
    }
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sessions.join_next().await.is_some() {}
        while joiners.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        sessions.shutdown().await;
        joiners.shutdown().await;
    }
    ctx.failures.flush_all();
    let stats = ctx.counters.snapshot();
    pp_runtime::info!("stopped; statistics: {stats}");
    Ok(stats)
}

/// Binds the discovery port and starts announcing the node listening on `addr`.
fn start_discovery(
    discovery: &DiscoveryConfig,
    addr: SocketAddr,
    host: &str,
    ctx: &NodeContext,
    stopping: &watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, NodeError> {
    let asked = SocketAddr::new(addr.ip(), discovery.port);
    let announcer = Announcer::bind(discovery, addr.ip(), addr.port(), ctx.config.workers, host)
        .map_err(|source| NodeError::Discovery {
            addr: asked,
            source,
        })?;
    let local = announcer.local_addr().unwrap_or(asked);
    pp_runtime::info!(
        "autodiscovery: answering probes on udp {local}, announcing to {} every {:?}",
        announcer.target(),
        discovery.interval
    );
    let ignored = Arc::clone(&ctx.counters.discovery_ignored);
    Ok(tokio::spawn(announcer.run(ignored, stopping.clone())))
}

/// The next connection on `listener`; never, for a node that does not listen.
async fn accept(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a signal asks for.
enum Event {
    Stop(&'static str),
    // SIGUSR1, on Unix only.
    #[cfg_attr(not(unix), allow(dead_code))]
    Statistics,
}

/// Where stop and statistics requests come from.
enum Signals {
    #[cfg(unix)]
    Unix {
        term: tokio::signal::unix::Signal,
        int: tokio::signal::unix::Signal,
        usr1: tokio::signal::unix::Signal,
    },
    #[cfg(not(unix))]
    CtrlC,
    Future(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>),
    Done,
}

impl Signals {
    fn install() -> Result<Self, NodeError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let install = |kind| signal(kind).map_err(NodeError::Signal);
            Ok(Signals::Unix {
                term: install(SignalKind::terminate())?,
                int: install(SignalKind::interrupt())?,
                usr1: install(SignalKind::user_defined1())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals::CtrlC)
        }
    }

    async fn next(&mut self) -> Event {
        match self {
            #[cfg(unix)]
            Signals::Unix { term, int, usr1 } => tokio::select! {
                _ = term.recv() => Event::Stop("SIGTERM received"),
                _ = int.recv() => Event::Stop("interrupted (SIGINT)"),
                _ = usr1.recv() => Event::Statistics,
            },
            #[cfg(not(unix))]
            Signals::CtrlC => {
                let _ = tokio::signal::ctrl_c().await;
                Event::Stop("interrupted (Ctrl-C)")
            }
            Signals::Future(future) => {
                future.as_mut().await;
                *self = Signals::Done;
                Event::Stop("shutdown requested")
            }
            Signals::Done => Event::Stop("shutdown requested"),
        }
    }
}
