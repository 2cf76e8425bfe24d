//! The client side of cluster mode: a server's remote executors.
//!
//! [`connect`] (reached by `pp::Server::new()` through the program's hooks when `PP_SERVERS`
//! is set) starts one thread running a small tokio runtime with one task per node. Each task
//! connects, authenticates, ships the program if the node lacks it, and then takes jobs from
//! the server's queue into the node's in-flight window (the `session` module). A node that
//! cannot be reached or refuses the secret is reported once (a warning naming it and the
//! reason) and retried in the background with capped exponential backoff; its jobs run
//! elsewhere.
//!
//! A node is lost by the liveness policy
//! ([`ClusterOptions::liveness_timeout`](pp_runtime::ClusterOptions::liveness_timeout),
//! carried out in the `session` module) and retried the same way; an idle node may run a
//! second copy of a straggler (the straggler policy:
//! [`ClusterOptions::duplicate_stragglers`](pp_runtime::ClusterOptions::duplicate_stragglers)).
//!
//! Entries with a `*` (`*`, `*:PORT`, `192.168.1.*`, `*@HOST:PORT`; see
//! [`Target`]) turn on discovery: the client probes and listens
//! while it runs (the `discovery` module), and each node that answers gets the same task
//! as a named node, once per address (the `discovered` module). `connect` returns at
//! once; a node takes jobs as soon as it has answered and accepted the client.
//!
//! With no local workers, jobs that no usable node takes run locally after a while (the
//! fallback policy: [`ClusterOptions::fallback_wait`](pp_runtime::ClusterOptions::fallback_wait)).

mod address;
mod discovered;
mod flights;
mod lane;
mod nodes;
mod session;

use crate::channel::{ChannelConfig, Secret};
use crate::discovery::{self, Target};
use crate::program::current_program;
use address::NodeAddress;
use flights::SharedFlight;
use lane::Direct;
use nodes::NodeList;
use pp_runtime::remote::{ClusterSpec, Executor, ExecutorHandle, JobFeed};
use pp_runtime::{Error, ExecutorStats, NodeStatus};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// First and largest pause between attempts to reach a node.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How long a dropped server waits for the client thread to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One node as the client tracks it.
pub(crate) struct NodeState {
    pub(crate) address: NodeAddress,
    pub(crate) name: String,
    pub(crate) executor: ExecutorHandle,
    /// Signalled when jobs are queued.
    pub(crate) notify: Notify,
    /// Signalled when the node announced a restart: retry now, not after the backoff.
    pub(crate) retry: Notify,
    workers: AtomicU32,
    connected: AtomicBool,
    /// The session's state shared with submitting threads, while a session runs.
    direct: Mutex<Option<Arc<Direct>>>,
    /// Set while the session's lane is open and holds no job (see [`Direct`]).
    lane_free: Arc<AtomicBool>,
    connections: AtomicU32,
    losses: AtomicU32,
}

impl NodeState {
    /// A node not yet connected, with its row in the statistics.
    pub(crate) fn new(address: NodeAddress) -> Self {
        let name = address.display();
        NodeState {
            executor: ExecutorHandle::new(&name),
            name,
            address,
            notify: Notify::new(),
            retry: Notify::new(),
            workers: AtomicU32::new(0),
            connected: AtomicBool::new(false),
            direct: Mutex::new(None),
            lane_free: Arc::new(AtomicBool::new(false)),
            connections: AtomicU32::new(0),
            losses: AtomicU32::new(0),
        }
    }

    pub(crate) fn set_connected(&self, workers: u32) {
        self.workers.store(workers, Ordering::SeqCst);
        self.connections.fetch_add(1, Ordering::SeqCst);
        self.connected.store(true, Ordering::SeqCst);
    }

    /// The shared state of a session starting now, which submitting threads reach.
    pub(crate) fn start_direct(&self, in_flight: &SharedFlight) -> Arc<Direct> {
        let direct = Arc::new(Direct::new(
            Arc::clone(in_flight),
            Arc::clone(&self.lane_free),
        ));
        *self.direct() = Some(Arc::clone(&direct));
        direct
    }

    /// The session ended: submitting threads no longer reach it. Returns the jobs they
    /// took from the queue and left to it.
    pub(crate) fn end_direct(&self) -> Vec<lane::Adopted> {
        match self.direct().take() {
            Some(direct) => direct.end(),
            None => Vec::new(),
        }
    }

    fn direct(&self) -> std::sync::MutexGuard<'_, Option<Arc<Direct>>> {
        self.direct.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From a thread that just queued a job: sends it on this node's lane if it is a lone
    /// job and the lane is free (see [`Direct::submit_lone`]).
    fn submit_lone(&self, feed: &JobFeed) -> bool {
        if !self.lane_free.load(Ordering::Acquire) {
            return false;
        }
        let direct = self.direct().clone();
        direct.is_some_and(|direct| direct.submit_lone(feed))
    }

    /// The session ended; `lost` unless the client itself is shutting down.
    pub(crate) fn set_disconnected(&self, lost: bool) {
        self.connected.store(false, Ordering::SeqCst);
        self.workers.store(0, Ordering::SeqCst);
        if lost {
            self.losses.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn status(&self) -> NodeStatus {
        NodeStatus::new(
            self.name.clone(),
            self.workers.load(Ordering::SeqCst),
            self.connected.load(Ordering::SeqCst),
        )
        .with_history(
            self.connections.load(Ordering::SeqCst),
            self.losses.load(Ordering::SeqCst),
        )
    }
}

/// The running cluster client of one server: an executor of its queue.
struct Cluster {
    nodes: Arc<NodeList>,
    /// The queue, for lone jobs sent from the thread that queued them.
    feed: JobFeed,
    stop: watch::Sender<bool>,
    thread: Mutex<Option<(JoinHandle<()>, mpsc::Receiver<()>)>>,
}

/// Starts the cluster client for `spec`, feeding on `feed`.
///
/// # Errors
/// [`Error::Config`] without a secret or with an invalid node address or discovery entry;
/// [`Error::Cluster`] if the program cannot be read or the client thread cannot start.
pub fn connect(spec: ClusterSpec, feed: JobFeed) -> Result<Box<dyn Executor>, Error> {
    let secret = spec.secret.as_deref().ok_or_else(|| {
        Error::Config(
            "cluster mode needs the nodes' secret: set PP_SECRET or PP_SECRET_FILE, or call `.secret(..)`"
                .into(),
        )
    })?;
    let secret = Secret::new(secret).map_err(|e| Error::Config(e.to_string()))?;
    let program = current_program().map_err(Error::Cluster)?;
    let mut named = Vec::new();
    let mut targets = Vec::new();
    for text in &spec.nodes {
        match Target::parse(text).map_err(Error::Config)? {
            Some(target) => targets.push(target),
            None => named.push(NodeAddress::parse(text).map_err(Error::Config)?),
        }
    }
    let nodes = Arc::new(NodeList::new(
        named
            .into_iter()
            .map(|address| Arc::new(NodeState::new(address)))
            .collect(),
    ));
    let lone_feed = feed.clone();
    let ctx = Arc::new(session::Context {
        feed,
        secret,
        channel: ChannelConfig::default(),
        program,
        registry_fingerprint: pp_runtime::registry().fingerprint(),
        options: spec.options,
        flights: flights::Flights::default(),
    });
    let (stop, stopped) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Cluster(format!("cannot start the network runtime: {e}")))?;
    let task_nodes = Arc::clone(&nodes);
    let thread = std::thread::Builder::new()
        .name("pp-cluster".into())
        .spawn(move || {
            runtime.block_on(run_cluster(task_nodes, targets, ctx, stopped));
            let _ = done_tx.send(());
        })
        .map_err(|e| Error::Cluster(format!("cannot start the cluster thread: {e}")))?;
    Ok(Box::new(Cluster {
        nodes,
        feed: lone_feed,
        stop,
        thread: Mutex::new(Some((thread, done_rx))),
    }))
}

/// How many announcements may wait for the cluster loop; more are dropped (nodes repeat
/// them).
const FOUND_BACKLOG: usize = 256;

async fn run_cluster(
    nodes: Arc<NodeList>,
    targets: Vec<Target>,
    ctx: Arc<session::Context>,
    stopped: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for node in nodes.snapshot() {
        tasks.spawn(drive_node(node, Arc::clone(&ctx), stopped.clone()));
    }
    tasks.spawn(fallback(
        Arc::clone(&nodes),
        Arc::clone(&ctx),
        stopped.clone(),
    ));
    let (found_tx, mut found) = tokio::sync::mpsc::channel(FOUND_BACKLOG);
    let ignored = Arc::new(AtomicU64::new(0));
    let discovering = !targets.is_empty();
    if discovering {
        let mut stop = stopped.clone();
        let search = discovery::discover(targets, found_tx, Arc::clone(&ignored));
        tasks.spawn(async move {
            tokio::select! {
                _ = search => {}
                _ = stop.changed() => {}
            }
        });
    } else {
        drop(found_tx);
    }
    let mut admission = if discovering {
        Some(discovered::Admission::new(&nodes).await)
    } else {
        None
    };
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            Some(found) = found.recv() => {
                if *stopped.borrow() {
                    continue;
                }
                let Some(admission) = admission.as_mut() else { continue };
                if let Some(node) = admission.admit(found, &nodes) {
                    tasks.spawn(drive_node(node, Arc::clone(&ctx), stopped.clone()));
                }
            }
        }
    }
    if discovering {
        tracing::debug!(
            ignored = ignored.load(Ordering::Relaxed),
            "discovery stopped; datagrams ignored"
        );
    }
}

/// Keeps one node connected for as long as the server runs.
async fn drive_node(
    node: Arc<NodeState>,
    ctx: Arc<session::Context>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut pause = RETRY_FIRST;
    let mut reported: Option<String> = None;
    loop {
        if *stopped.borrow() || ctx.feed.is_closed() {
            return;
        }
        let started = Instant::now();
        let end = session::run(&node, &ctx, &mut stopped).await;
        // A session that lasted starts the backoff afresh; one that failed or was lost soon
        // after it began (a node that flaps) keeps backing off.
        if started.elapsed() > RETRY_MAX {
            pause = RETRY_FIRST;
        }
        match end {
            session::End::Shutdown => return,
            // Logged by the session; a later failure to reconnect is news again.
            session::End::Lost => reported = None,
            session::End::Failed(why) => {
                if reported.as_deref() != Some(why.as_str()) {
                    tracing::warn!(node = %node.name, "node not usable: {why}; its jobs run elsewhere (retrying in the background)");
                    reported = Some(why);
                } else {
                    tracing::debug!(node = %node.name, "node still not usable: {why}");
                }
            }
        }
        let wait = pause + jitter(pause / 4);
        pause = (pause * 2).min(RETRY_MAX);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = node.retry.notified() => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Up to `max`, from the clock's low bits: enough to keep many clients from retrying in step.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let max = u32::try_from(max.as_nanos()).unwrap_or(u32::MAX).max(1);
    Duration::from_nanos(u64::from(nanos % max))
}

/// With no local workers, runs jobs locally once no node has been usable for the
/// options' `fallback_wait` while jobs wait.
async fn fallback(
    nodes: Arc<NodeList>,
    ctx: Arc<session::Context>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut waiting_since: Option<Instant> = None;
    loop {
        let stranded = ctx.feed.local_workers() == 0
            && ctx.feed.queued() > 0
            && !nodes
                .snapshot()
                .iter()
                .any(|n| n.connected.load(Ordering::SeqCst));
        match (stranded, waiting_since) {
            (false, _) => waiting_since = None,
            (true, None) => waiting_since = Some(Instant::now()),
            (true, Some(since)) if since.elapsed() >= ctx.options.fallback_wait => {
                let wait = ctx.options.fallback_wait;
                let cores = pp_runtime::available_cores();
                let names: Vec<String> = nodes.snapshot().iter().map(|n| n.name.clone()).collect();
                let names = if names.is_empty() {
                    "none named or discovered".to_owned()
                } else {
                    names.join(", ")
                };
                tracing::warn!(
                    "no node is usable ({names}) after {wait:?}: running jobs on {cores} local workers"
                );
                if let Err(e) = ctx.feed.set_local_workers(cores) {
                    tracing::error!("cannot start local workers: {e}");
                }
                return;
            }
            (true, Some(_)) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stopped.changed() => return,
        }
    }
}

impl Executor for Cluster {
    /// Runs on the thread that queued a job: a lone job (the only one queued) may go on a
    /// free lane from here; otherwise every node task is woken to take jobs.
    fn notify(&self) {
        let queued = self.feed.queued();
        self.nodes.with(|nodes| {
            let sent = queued == 1 && nodes.iter().any(|n| n.submit_lone(&self.feed));
            if !sent {
                nodes.iter().for_each(|n| n.notify.notify_one());
            }
        })
    }

    fn stats_rows(&self, rows: &mut Vec<ExecutorStats>) {
        self.nodes
            .with(|nodes| rows.extend(nodes.iter().map(|n| n.executor.stats())));
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        self.nodes.snapshot().iter().map(|n| n.status()).collect()
    }

    fn fastest_average(&self) -> Option<Duration> {
        self.nodes.with(|nodes| {
            nodes
                .iter()
                .map(|n| n.executor.average())
                .filter(|d| !d.is_zero())
                .min()
        })
    }

    fn shutdown(&self) {
        let _ = self.stop.send(true);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((thread, done)) = thread {
            if done.recv_timeout(STOP_GRACE).is_ok() {
                let _ = thread.join();
            } else {
                tracing::warn!("the cluster thread did not stop within {STOP_GRACE:?}");
            }
        }
    }
}
