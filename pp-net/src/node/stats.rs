//! The node's counters, and the snapshot of them that `serve` returns and SIGUSR1 logs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::area::SharedCounter;

/// What a node has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Connections accepted (authenticated or not).
    pub connections: u64,
    /// Connections open now.
    pub active_connections: u64,
    /// Handshakes (of sessions and lanes) that failed authentication: the peer's handshake
    /// did not decrypt with the secret (or the lane's key), or its confirmation did not (a
    /// replayed or forged handshake).
    pub auth_failures: u64,
    /// Handshakes (of sessions and lanes) that ended before authentication was decided: the
    /// peer went away (a client killed mid-handshake, say) or stalled past the handshake
    /// timeout, or spoke another protocol or version. Not failed authentications, and not
    /// connections closed before their first byte (TCP probes: health checks, port scans).
    pub incomplete_handshakes: u64,
    /// Authenticated clients refused (other target, bad upload, registry mismatch...).
    pub refused: u64,
    /// Jobs that ran to a reply (success, panic or failure), crashes excluded.
    pub jobs_run: u64,
    /// Jobs whose arguments reached their worker through its shared argument area, not
    /// the pipe (large arguments, on Linux).
    pub shared_args: u64,
    /// Programs received by upload and cached.
    pub uploads: u64,
    /// Clients whose program was already cached.
    pub cache_hits: u64,
    /// Worker processes that died (killed, crashed, or stopped answering), idle or holding
    /// a job, lane workers included. A lane whose client went away or did not complete its
    /// handshake is not a crash: its worker ends as it should.
    pub worker_crashes: u64,
    /// Datagrams on the discovery port that were not discovery datagrams (ignored).
    pub discovery_ignored: u64,
    /// Connections closed in their handshake to make room for newer ones, at the
    /// connection limit.
    pub evicted: u64,
    /// Connections closed at once because authenticated sessions held every slot.
    pub rejected: u64,
    /// Lanes opened: a client's direct connection to a worker started for it, for lone
    /// jobs (their jobs count in `jobs_run` too).
    pub lanes: u64,
    /// Jobs that ran past their time limit: their worker was killed and replaced (not a
    /// crash: counted here, not in `worker_crashes`).
    pub jobs_timed_out: u64,
    /// Jobs the client withdrew (`Cancel`) before their reply: dropped while queued, or
    /// their worker killed and replaced while they ran (not a crash either).
    pub jobs_cancelled: u64,
}

impl fmt::Display for NodeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections={} active={} auth_failures={} incomplete_handshakes={} refused={} \
             jobs={} shared_args={} uploads={} cache_hits={} worker_crashes={} \
             discovery_ignored={} evicted={} rejected={} lanes={} jobs_timed_out={} \
             jobs_cancelled={}",
            self.connections,
            self.active_connections,
            self.auth_failures,
            self.incomplete_handshakes,
            self.refused,
            self.jobs_run,
            self.shared_args,
            self.uploads,
            self.cache_hits,
            self.worker_crashes,
            self.discovery_ignored,
            self.evicted,
            self.rejected,
            self.lanes,
            self.jobs_timed_out,
            self.jobs_cancelled
        )
    }
}

/// The live counters, shared by every session.
#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    pub(crate) connections: AtomicU64,
    pub(crate) active_connections: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) incomplete_handshakes: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) jobs_run: AtomicU64,
    pub(crate) shared_args: AtomicU64,
    pub(crate) uploads: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) worker_crashes: AtomicU64,
    /// Shared with the discovery task.
    pub(crate) discovery_ignored: std::sync::Arc<AtomicU64>,
    pub(crate) evicted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) lanes: AtomicU64,
    pub(crate) jobs_timed_out: AtomicU64,
    pub(crate) jobs_cancelled: AtomicU64,
    /// The job counts of the lanes open now; a lane's jobs join `jobs_run` when it closes.
    open_lanes: Mutex<Vec<Arc<SharedCounter>>>,
}

impl NodeCounters {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the jobs of a lane that opened, as they are answered.
    pub(crate) fn lane_opened(&self, count: &Arc<SharedCounter>) {
        self.open_lanes().push(Arc::clone(count));
    }

    /// The lane with `count` closed: its jobs join `jobs_run` for good.
    pub(crate) fn lane_closed(&self, count: &Arc<SharedCounter>) {
        let mut open = self.open_lanes();
        open.retain(|c| !Arc::ptr_eq(c, count));
        // Under the lock, so that a snapshot counts the lane's jobs once.
        self.jobs_run.fetch_add(count.get(), Ordering::Relaxed);
    }

    fn open_lanes(&self) -> std::sync::MutexGuard<'_, Vec<Arc<SharedCounter>>> {
        self.open_lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self) -> NodeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let jobs_run = {
            let open = self.open_lanes();
            get(&self.jobs_run) + open.iter().map(|c| c.get()).sum::<u64>()
        };
        NodeStats {
            connections: get(&self.connections),
            active_connections: get(&self.active_connections),
            auth_failures: get(&self.auth_failures),
            incomplete_handshakes: get(&self.incomplete_handshakes),
            refused: get(&self.refused),
            jobs_run,
            shared_args: get(&self.shared_args),
            uploads: get(&self.uploads),
            cache_hits: get(&self.cache_hits),
            worker_crashes: get(&self.worker_crashes),
            discovery_ignored: get(&self.discovery_ignored),
            evicted: get(&self.evicted),
            rejected: get(&self.rejected),
            lanes: get(&self.lanes),
            jobs_timed_out: get(&self.jobs_timed_out),
            jobs_cancelled: get(&self.jobs_cancelled),
        }
    }
}
