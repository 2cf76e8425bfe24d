//! One node as the client tracks it: its address, its row in the statistics, whether it is
//! connected and why not (its `node_health`), the wake-ups of its task, and the state its
//! running session shares with the threads that submit jobs.

use super::address::NodeAddress;
use super::flights::SharedInFlight;
use super::node_health::NodeHealth;
use super::put_aside::{self, CrashWatch, PROBATION_JOBS};
use super::shared_session::{Adopted, SharedSession};
use pp_runtime::remote::{ExecutorHandle, JobFeed};
use pp_runtime::{NodeConnection, NodeFailure, NodeStatus, Platform};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};
use tokio::sync::Notify;

/// One node as the client tracks it, across its sessions.
pub(crate) struct NodeState {
    /// Where the node is.
    pub(crate) address: NodeAddress,
    /// `host:port`, as logs and statistics show it (but for a rank: see `who`).
    pub(crate) name: String,
    /// What pp's warnings call it: `node host:port`, or `rank N (host:port)` for a rank of
    /// a launcher run (whose statistics row is called so too).
    pub(crate) who: String,
    /// Its rank, if it is a rank of a launcher run (no `ppserver` there: the rank's own
    /// process serves).
    rank: Option<u32>,
    /// The node's row in the statistics.
    pub(crate) executor: ExecutorHandle,
    /// Signalled when jobs are queued.
    pub(crate) notify: Notify,
    /// Signalled when the node announced a restart: retry now, not after the backoff.
    pub(crate) retry: Notify,
    /// Whether the node joined the client (`PP_LISTEN`): the client cannot dial it, so it
    /// has no lane and is not retried (it dials again itself).
    pub(crate) joined: bool,
    workers: AtomicU32,
    connected: AtomicBool,
    /// The session's state shared with submitting threads, while a session runs.
    shared_session: Mutex<Option<Arc<SharedSession>>>,
    /// Set while the session's lane is open and holds no job (see [`SharedSession`]).
    lane_free: Arc<AtomicBool>,
    connections: AtomicU32,
    losses: AtomicU32,
    /// Its state and failures as the user sees them (touched when a session starts or
    /// ends, never per job).
    health: Mutex<NodeHealth>,
    /// Its recent worker crashes: the put-aside policy (the `put_aside` module).
    crashes: Mutex<CrashWatch>,
    /// Set while the node is put aside or on probation: only then does a job that ends
    /// without a crash lock `crashes`.
    watched: AtomicBool,
    /// What the node runs, as its last hello said.
    platform: Mutex<Option<Platform>>,
}

impl NodeState {
    /// A node not yet connected, with its row in the statistics.
    pub(crate) fn new(address: NodeAddress) -> Self {
        let name = address.display();
        NodeState::named(name, address, false, None)
    }

    /// Rank `rank` of a launcher run, a node at `address`.
    pub(crate) fn rank(address: NodeAddress, rank: u32) -> Self {
        let name = address.display();
        NodeState::named(name, address, false, Some(rank))
    }

    /// A node that joined from `address`, called `name` (see the `joined` module).
    pub(crate) fn joined(name: String, address: NodeAddress) -> Self {
        NodeState::named(name, address, true, None)
    }

    fn named(name: String, address: NodeAddress, joined: bool, rank: Option<u32>) -> Self {
        let (who, row) = match rank {
            Some(rank) => {
                let label = format!("rank {rank} ({name})");
                (label.clone(), label)
            }
            None => (format!("node {name}"), name.clone()),
        };
        NodeState {
            joined,
            executor: ExecutorHandle::new(&row),
            name,
            who,
            rank,
            address,
            notify: Notify::new(),
            retry: Notify::new(),
            workers: AtomicU32::new(0),
            connected: AtomicBool::new(false),
            shared_session: Mutex::new(None),
            lane_free: Arc::new(AtomicBool::new(false)),
            connections: AtomicU32::new(0),
            losses: AtomicU32::new(0),
            health: Mutex::new(NodeHealth::default()),
            crashes: Mutex::new(CrashWatch::default()),
            watched: AtomicBool::new(false),
            platform: Mutex::new(None),
        }
    }

    /// A session started with a node of `workers` workers; says so if the node's failure
    /// was said (see the `node_health` module).
    pub(crate) fn set_connected(&self, workers: u32) {
        self.workers.store(workers, Ordering::SeqCst);
        let before = self.connections.fetch_add(1, Ordering::SeqCst);
        self.connected.store(true, Ordering::SeqCst);
        self.health().connected(&self.who, workers, before);
    }

    /// The node's hello said it runs `platform`.
    pub(crate) fn set_platform(&self, platform: Platform) {
        *self.platform.lock().unwrap_or_else(PoisonError::into_inner) = Some(platform);
    }

    /// The node could not be used or was lost, for `failure`: recorded for its row of the
    /// statistics and said once per kind, with the `consequence` for the user's jobs.
    pub(crate) fn failed(&self, failure: NodeFailure, consequence: &str) {
        let hint = self.hint(&failure);
        self.health().failed(&self.who, failure, hint, consequence);
    }

    /// What the user can check for `failure` of this node: a rank has no `ppserver`.
    fn hint(&self, failure: &NodeFailure) -> Option<&'static str> {
        match (self.rank, failure) {
            (Some(_), NodeFailure::ConnectionRefused) => Some(
                "nothing listens there any more: the rank's process ended; the launcher's \
                 output says how",
            ),
            _ => failure.hint(),
        }
    }

    /// The node served long enough to count as well again: any failure is news again.
    pub(crate) fn served_steadily(&self) {
        self.health().served_steadily();
    }

    /// A job of the node ended: its result came back, or its worker died (`crashed`).
    /// Counted by the put-aside policy, which may put the node aside (and say so) or end
    /// its probation.
    pub(crate) fn job_ended(&self, crashed: bool) {
        if !crashed && !self.watched.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let mut watch = self.crash_watch();
        if crashed {
            if let Some(aside) = watch.crashed(now) {
                put_aside::say(&self.who, aside);
            }
        } else if watch.served(now) {
            pp_runtime::info!(
                "{}: ran {PROBATION_JOBS} jobs without a worker crash: off probation",
                self.who
            );
        }
        self.watched.store(watch.watching(), Ordering::Release);
    }

    /// Until when the node is put aside, if it is now (and the crashes that did it).
    pub(crate) fn put_aside(&self) -> Option<(Instant, u32)> {
        if !self.watched.load(Ordering::Acquire) {
            return None;
        }
        self.crash_watch().aside_until(Instant::now())
    }

    fn crash_watch(&self) -> MutexGuard<'_, CrashWatch> {
        self.crashes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a session runs with the node and it is not put aside: it takes jobs.
    pub(crate) fn takes_jobs(&self) -> bool {
        self.is_connected() && self.put_aside().is_none()
    }

    fn health(&self) -> MutexGuard<'_, NodeHealth> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a session runs with the node now.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// The shared state of a session starting now, which submitting threads reach.
    pub(crate) fn open_shared_session(&self, in_flight: &SharedInFlight) -> Arc<SharedSession> {
        let shared = Arc::new(SharedSession::new(
            Arc::clone(in_flight),
            Arc::clone(&self.lane_free),
        ));
        *self.shared_session() = Some(Arc::clone(&shared));
        shared
    }

    /// The session ended: submitting threads no longer reach it. Returns the jobs they
    /// took from the queue and left to it.
    pub(crate) fn close_shared_session(&self) -> Vec<Adopted> {
        match self.shared_session().take() {
            Some(shared) => shared.end(),
            None => Vec::new(),
        }
    }

    fn shared_session(&self) -> MutexGuard<'_, Option<Arc<SharedSession>>> {
        self.shared_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// From a thread that just queued a job: sends it on this node's lane if it is a lone
    /// job and the lane is free (see [`SharedSession::submit_lone`]).
    pub(crate) fn submit_lone(&self, feed: &JobFeed) -> bool {
        if !self.lane_free.load(Ordering::Acquire) || self.put_aside().is_some() {
            return false;
        }
        let shared = self.shared_session().clone();
        shared.is_some_and(|shared| shared.submit_lone(feed, &self.executor))
    }

    /// The session ended; `lost` unless the client itself is shutting down.
    pub(crate) fn set_disconnected(&self, lost: bool) {
        self.connected.store(false, Ordering::SeqCst);
        self.workers.store(0, Ordering::SeqCst);
        self.health().disconnected();
        if lost {
            self.losses.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The node's status, as `Server::active_nodes` and the statistics list it.
    pub(crate) fn status(&self) -> NodeStatus {
        let aside = self.put_aside();
        let health = self.health();
        let connection = match (health.connection(), aside) {
            (NodeConnection::Connected, Some((until, crashes))) => NodeConnection::PutAside {
                crashes,
                until: SystemTime::now() + until.saturating_duration_since(Instant::now()),
            },
            (connection, _) => connection,
        };
        let status = NodeStatus::new(
            self.name.clone(),
            self.workers.load(Ordering::SeqCst),
            self.connected.load(Ordering::SeqCst),
        )
        .with_history(
            self.connections.load(Ordering::SeqCst),
            self.losses.load(Ordering::SeqCst),
        )
        .with_connection(connection);
        let platform = self
            .platform
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let status = match platform {
            Some(platform) => status.with_platform(platform),
            None => status,
        };
        let status = match self.rank {
            Some(rank) => status.with_rank(rank),
            None => status,
        };
        match health.last_failure() {
            Some((failure, at)) => status.with_last_failure(failure.clone(), *at),
            None => status,
        }
    }
}
