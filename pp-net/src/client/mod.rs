//! The client side of cluster mode: a server's remote executors.
//!
//! [`connect`] (reached by `pp::Server::new()` through the program's hooks when `PP_SERVERS`
//! is set) starts one thread running a small tokio runtime (`cluster_loop`) with one task
//! per node (`reconnect`). Each task runs sessions with its node one after another
//! (`session`): connect, authenticate, ship the build of the program for the node's
//! platform if the node lacks it (`crate::program_set`), then take
//! jobs from the server's queue into the node's in-flight window. A node that cannot be
//! used, or is lost, is retried in the background (`reconnect`); its jobs run elsewhere.
//!
//! The policies are explained once, on the fields of
//! [`ClusterOptions`](pp_runtime::ClusterOptions) that configure them, and carried out here:
//! liveness ([`liveness_timeout`](pp_runtime::ClusterOptions::liveness_timeout): the
//! `session` module's `heartbeat`), attempts
//! ([`max_attempts`](pp_runtime::ClusterOptions::max_attempts): the `session` module gives
//! jobs back), straggler copies
//! ([`duplicate_stragglers`](pp_runtime::ClusterOptions::duplicate_stragglers): `flights`
//! and the `session` module's `job_source`), fallback
//! ([`fallback_wait`](pp_runtime::ClusterOptions::fallback_wait): `fallback`) and lanes
//! ([`lanes`](pp_runtime::ClusterOptions::lanes): `lane` and `shared_session`).
//!
//! Entries with a `*` (`*`, `*:PORT`, `192.168.1.*`, `*@HOST:PORT`; see [`Target`]) turn on
//! discovery: the client probes and listens while it runs (the crate's `discovery` module),
//! and each node that answers gets the same task as a named node, once per address (the
//! `discovered` module). `connect` returns at once; a node takes jobs as soon as it has
//! answered and accepted the client.
//!
//! Entries `dns:NAME[:PORT]` stand for every address NAME resolves to, resolved again
//! periodically: addresses come and go as nodes (the `dns` module). With a listening
//! address (`PP_LISTEN`), nodes that cannot be dialed dial the client instead
//! (`ppserver --join`) and run the same session (the `joined` module).
//!
//! # Files
//! - `address`, `dial`: node addresses as users write them, and connecting to one;
//! - `node_state`, `nodes`: one node as the client tracks it, and the list of them;
//! - `put_aside`: a node whose workers keep dying gets no new job for a while;
//! - `classify`, `node_health`: every way a node fails as the user's reason
//!   ([`NodeFailure`](pp_runtime::NodeFailure)), and what the user is told of it (each
//!   reason once per node, and when it comes back);
//! - `context`: what every session shares;
//! - `cluster_loop`, `reconnect`, `fallback`, `discovered`, `dns`, `joined`: the network
//!   thread's tasks (`joined_names`: which row a node that joins serves as);
//! - `session/`: one connection to one node, from setup to its end;
//! - `flights`: every session's jobs in flight, to find stragglers;
//! - `shared_session`, `lane`: a session's state shared with submitting threads (for lone
//!   jobs on the lane), and the lane's states as the session sees them;
//! - `job_output`: printing what jobs on nodes wrote
//!   ([`forward_output`](pp_runtime::ClusterOptions::forward_output)).
//!
//! # Deadlines and cancels
//! A job's time limit ([`RemoteJob::timeout`](pp_runtime::remote::RemoteJob::timeout))
//! travels in its `JobRequest`; the node enforces it and answers `Outcome::TimedOut`. Such
//! jobs never go on a lane (only the session's node keeps the clock). When the runtime
//! settles jobs without the cluster (a cancel), [`Executor::settled_elsewhere`] wakes every
//! session (`flights`), which forgets its settled jobs in flight and sends their node
//! `Cancel`; a settled job on the lane closes the lane, whose worker then ends. A reply
//! that still comes for a forgotten job is dropped, as a losing copy's is. A straggler's
//! losing copy is withdrawn the same way once the other copy's result is taken (the
//! `session` module's `finish`, which also prints a copied job's output once).
//!
//! # The lone-job path
//! [`Executor::notify`], run by the thread that queued a job, sends a lone job (the only
//! one queued) straight on a free lane (`NodeState::submit_lone`); otherwise it wakes
//! every node's task, which takes jobs in its session's job loop.

mod address;
mod classify;
mod cluster_loop;
mod context;
mod dial;
mod discovered;
mod dns;
mod fallback;
mod flights;
pub(crate) mod job_output;
mod joined;
mod joined_names;
mod lane;
mod node_health;
mod node_state;
mod nodes;
mod put_aside;
mod reconnect;
mod session;
mod shared_session;

use crate::channel::{ChannelConfig, Secret};
use crate::discovery::Target;
use crate::program_set::ProgramSet;
use address::NodeAddress;
use cluster_loop::{run_cluster, Sources};
use context::ClientContext;
use dns::DnsEntry;
use flights::Flights;
use node_state::NodeState;
use nodes::NodeList;
use pp_runtime::remote::{ClusterSpec, Executor, JobFeed, QueueView};
use pp_runtime::{Error, ExecutorStats, NodeStatus};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

/// How long a dropped server waits for the client's network thread to stop.
const CLIENT_STOP_GRACE: Duration = Duration::from_secs(5);

/// The running cluster client of one server: an executor of its queue.
struct Cluster {
    nodes: Arc<NodeList>,
    /// The queue, for lone jobs sent from the thread that queued them.
    feed: JobFeed,
    /// What the sessions share, for [`Executor::settled_elsewhere`].
    ctx: Arc<ClientContext>,
    stop: watch::Sender<bool>,
    thread: Mutex<Option<(JoinHandle<()>, mpsc::Receiver<()>)>>,
}

/// Starts the cluster client for `spec`, feeding on `feed`.
///
/// # Errors
/// [`Error::Config`] without a secret, with an invalid node address, discovery or `dns:`
/// entry, a listening address that cannot be bound, or an offered build of the program
/// that cannot be used (see [`ProgramSet::gather`]); [`Error::Cluster`] if the program
/// cannot be read or the client thread cannot start.
pub fn connect(spec: ClusterSpec, feed: JobFeed) -> Result<Box<dyn Executor>, Error> {
    let secret = spec.secret.as_deref().ok_or_else(|| {
        Error::Config(
            "cluster mode needs the nodes' secret: set PP_SECRET or PP_SECRET_FILE, or call `.secret(..)`"
                .into(),
        )
    })?;
    let secret = Secret::new(secret).map_err(|e| Error::Config(e.to_string()))?;
    // Bound before the program is hashed (a second on a debug build): a node that joins
    // meanwhile waits in the listen backlog instead of being refused.
    let listener = spec.listen.as_deref().map(listen).transpose()?;
    let joining = listener.as_ref().and_then(|l| l.local_addr().ok());
    let programs = ProgramSet::gather(&spec.programs).map_err(|e| match e {
        crate::program_set::BuildError::ThisProgram(why) => Error::Cluster(why),
        other => Error::Config(other.to_string()),
    })?;
    pp_runtime::debug!(
        "this program is hashed ({} bytes)",
        programs.running().program.size
    );
    let mut named = Vec::new();
    let mut targets = Vec::new();
    let mut dns_entries = Vec::new();
    for text in &spec.nodes {
        if let Some(entry) = DnsEntry::parse(text).map_err(Error::Config)? {
            dns_entries.push(entry);
            continue;
        }
        match Target::parse(text).map_err(Error::Config)? {
            Some(target) => targets.push(target),
            None => {
                let address = NodeAddress::parse(text).map_err(Error::Config)?;
                let rank = spec.ranks.iter().find(|(node, _)| node == text);
                named.push((address, rank.map(|&(_, rank)| rank)));
            }
        }
    }
    let nodes = Arc::new(NodeList::new(
        named
            .into_iter()
            .map(|(address, rank)| {
                Arc::new(match rank {
                    Some(rank) => NodeState::rank(address, rank),
                    None => NodeState::new(address),
                })
            })
            .collect(),
    ));
    let lone_feed = feed.clone();
    let ctx = Arc::new(ClientContext {
        feed,
        secret,
        channel: ChannelConfig::default(),
        programs,
        registry_fingerprint: pp_runtime::registry().fingerprint(),
        options: spec.options,
        flights: Flights::default(),
        nodes: Arc::clone(&nodes),
        joining,
    });
    let (stop, stopped) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Cluster(format!("cannot start the network runtime: {e}")))?;
    let task_nodes = Arc::clone(&nodes);
    let shared_ctx = Arc::clone(&ctx);
    let thread = std::thread::Builder::new()
        .name("pp-cluster".into())
        .spawn(move || {
            let sources = Sources {
                targets,
                dns: dns_entries,
                listener,
            };
            runtime.block_on(run_cluster(task_nodes, sources, ctx, stopped));
            let _ = done_tx.send(());
        })
        .map_err(|e| Error::Cluster(format!("cannot start the cluster thread: {e}")))?;
    Ok(Box::new(Cluster {
        nodes,
        feed: lone_feed,
        ctx: shared_ctx,
        stop,
        thread: Mutex::new(Some((thread, done_rx))),
    }))
}

/// Binds `PP_LISTEN`'s `ADDR:PORT` for nodes that join (see the `joined` module).
fn listen(addr: &str) -> Result<std::net::TcpListener, Error> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::Config(format!(
            "PP_LISTEN: cannot listen for nodes on `{addr}` (give ADDR:PORT): {e}"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Cluster(format!("cannot configure the listener on {addr}: {e}")))?;
    if let Ok(bound) = listener.local_addr() {
        say_bound(addr, bound);
    }
    Ok(listener)
}

/// Says where nodes join. A user who asked for any port (`:0`) cannot know which one was
/// chosen otherwise, and needs it for `--join`: a warning, so that it shows by default.
fn say_bound(asked: &str, bound: std::net::SocketAddr) {
    let any_port = asked
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.trim().parse() == Ok(0u16));
    if !any_port {
        pp_runtime::debug!("listening for nodes that join on {bound}");
        return;
    }
    // A wildcard address is no address to dial: name the host instead.
    let target = if bound.ip().is_unspecified() {
        let host = crate::node::sys::host_name().unwrap_or_else(|| "HOST".to_owned());
        format!("{host}:{}", bound.port())
    } else {
        bound.to_string()
    };
    pp_runtime::warn!(
        "PP_LISTEN={asked}: listening for nodes that join on {bound}; start them with \
         `ppserver --join {target}`"
    );
}

impl Executor for Cluster {
    /// Runs on the thread that queued a job: a lone job (the only one queued) may go on a
    /// free lane from here; otherwise every node task is woken to take jobs.
    fn notify(&self, queue: QueueView<'_>) {
        let queued = queue.queued();
        self.nodes.with(|nodes| {
            let sent = queued == 1 && nodes.iter().any(|n| n.submit_lone(&self.feed));
            if !sent {
                nodes.iter().for_each(|n| n.notify.notify_one());
            }
        })
    }

    /// Runs on the thread that cancelled jobs: wakes every session, which withdraws its
    /// settled jobs from its node (see the `session` module's `job_loop`).
    fn settled_elsewhere(&self) {
        self.ctx.flights.settled_elsewhere();
    }

    fn stats_rows(&self, rows: &mut Vec<ExecutorStats>) {
        self.nodes.stats_rows(rows);
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        self.nodes.snapshot().iter().map(|n| n.status()).collect()
    }

    fn listen_address(&self) -> Option<std::net::SocketAddr> {
        self.ctx.joining
    }

    fn fastest_average(&self) -> Option<Duration> {
        self.nodes.with(|nodes| {
            nodes
                .iter()
                .map(|n| n.executor.round_trip_average())
                .filter(|d| !d.is_zero())
                .min()
        })
    }

    fn shutdown(&self) {
        let _ = self.stop.send(true);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((thread, done)) = thread {
            if done.recv_timeout(CLIENT_STOP_GRACE).is_ok() {
                let _ = thread.join();
            } else {
                pp_runtime::warn!("the cluster thread did not stop within {CLIENT_STOP_GRACE:?}");
            }
        }
        // What jobs printed is printed before the server is gone (and the program, often).
        job_output::flush(CLIENT_STOP_GRACE);
    }
}
