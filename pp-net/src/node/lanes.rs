//! The node's side of lanes (see the `lane` module): offers made to sessions, and the lane
//! workers started for the connections that take them up.
//!
//! An offer is made when a session asks for a lane ([`SessionLanes::offer`]) and is used at
//! most once: the first connection that names its id takes it, so a lane id seen on the
//! wire and replayed finds nothing. A session has at most one offer open; a new one
//! replaces it, and the session's end withdraws it. The lane worker lives as long as the
//! client keeps the lane open, and no longer than its session: when the session ends or
//! the node stops, it is killed. When it ends, the session's client gets
//! [`Message::LaneEnded`], so that a job it held fails as a crash would on the session's
//! workers. The node counts its crash, and its jobs from a count the worker keeps in
//! shared memory (`SharedCounter`): no wake-up of the node per job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::outgoing::Outgoing;
use super::process::{WorkerProcess, WorkerSpec};
use super::stats::NodeCounters;
use crate::area::SharedCounter;
use crate::lane::{new_key, LaneId};
use crate::Message;

/// Every open lane offer of the node, by lane id.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    offers: Mutex<HashMap<LaneId, Offer>>,
}

#[derive(Debug)]
struct Offer {
    key: [u8; 32],
    lane: u32,
    session: Arc<SessionLink>,
}

/// How a lane reaches the session it belongs to.
#[derive(Debug)]
struct SessionLink {
    spec: WorkerSpec,
    counters: Arc<NodeCounters>,
    /// The session's outgoing messages, for `LaneOffer` and `LaneEnded`.
    notes: mpsc::UnboundedSender<Outgoing>,
    /// Becomes true when the session ends.
    stop: watch::Receiver<bool>,
}

impl Lanes {
    fn offers(&self) -> std::sync::MutexGuard<'_, HashMap<LaneId, Offer>> {
        self.offers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the offer with `id`, if one is open.
    fn take(&self, id: &LaneId) -> Option<Offer> {
        self.offers().remove(id)
    }
}

/// One session's handle on the node's lanes.
#[derive(Debug)]
pub(crate) struct SessionLanes {
    lanes: Arc<Lanes>,
    link: Arc<SessionLink>,
    next: AtomicU32,
    open: Mutex<Option<LaneId>>,
}

impl SessionLanes {
    /// The lanes of a session that starts workers by `spec` and sends messages to its
    /// client through `notes`; `stop` becomes true when it ends.
    pub(crate) fn new(
        lanes: Arc<Lanes>,
        spec: WorkerSpec,
        counters: Arc<NodeCounters>,
        notes: mpsc::UnboundedSender<Outgoing>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        SessionLanes {
            lanes,
            link: Arc::new(SessionLink {
                spec,
                counters,
                notes,
                stop,
            }),
            next: AtomicU32::new(0),
            open: Mutex::new(None),
        }
    }

    /// Opens a new offer (withdrawing the session's previous one) and returns the
    /// `LaneOffer` for the client.
    pub(crate) fn offer(&self) -> Result<Message, String> {
        let key = new_key()?;
        let lane = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = crate::lane::lane_id(&key);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut offers = self.lanes.offers();
        if let Some(old) = open.replace(id) {
            offers.remove(&old);
        }
        offers.insert(
            id,
            Offer {
                key,
                lane,
                session: Arc::clone(&self.link),
            },
        );
        Ok(Message::LaneOffer { lane, key })
    }
}

impl Drop for SessionLanes {
    /// The session ended: its open offer goes.
    fn drop(&mut self) {
        if let Some(id) = self
            .open
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            self.lanes.offers().remove(&id);
        }
    }
}

/// Serves a lane connection from `addr` that named `id`: starts its worker, gives it the
/// connection and the key, counts the jobs it answers (in shared memory), and tells the
/// session when it ends. Never fails: everything is logged.
pub(crate) async fn serve_lane(
    stream: TcpStream,
    addr: SocketAddr,
    id: LaneId,
    lanes: &Lanes,
    mut node_stop: watch::Receiver<bool>,
) {
    let Some(offer) = lanes.take(&id) else {
        tracing::warn!("lane connection from {addr} names no open lane offer: closed");
        return;
    };
    let link = &offer.session;
    let mut session_stop = link.stop.clone();
    let lane = offer.lane;
    let socket = match stream.into_std() {
        Ok(socket) => std::os::fd::OwnedFd::from(socket),
        Err(error) => {
            tracing::warn!("lane {lane} from {addr}: cannot take its connection: {error}");
            return;
        }
    };
    let (count, count_fd) = match SharedCounter::create() {
        Ok((count, fd)) => (Arc::new(count), fd),
        Err(error) => {
            tracing::warn!("lane {lane} from {addr}: no memory file for its job count: {error}");
            link.ended(
                lane,
                false,
                format!("the node has no memory file for the lane: {error}"),
            );
            return;
        }
    };
    let started = tokio::select! {
        started = WorkerProcess::start_lane(&link.spec, &socket, &count_fd) => started,
        _ = session_stop.wait_for(|&stop| stop) => return,
        _ = node_stop.wait_for(|&stop| stop) => return,
    };
    // The worker holds the connection now; the node lets go of it.
    drop(socket);
    drop(count_fd);
    let mut worker = match started {
        Ok(worker) => worker,
        Err(reason) => {
            tracing::warn!("lane {lane} from {addr}: {reason}");
            link.ended(lane, false, reason);
            return;
        }
    };
    if let Err(error) = worker.send_lane_key(&offer.key).await {
        tracing::warn!("lane {lane} from {addr}: cannot give the worker its key: {error}");
        worker.stop().await;
        link.ended(
            lane,
            false,
            format!("the lane worker did not take its key: {error}"),
        );
        return;
    }
    NodeCounters::bump(&link.counters.lanes);
    link.counters.lane_opened(&count);
    let pid = worker.pid();
    tracing::info!("lane {lane} of client {addr} open to worker pid {pid}");
    // The worker writes nothing more: its output closes when it exits.
    let stopping = {
        let (_, mut output) = worker.pipes();
        tokio::select! {
            _ = output.read() => false,
            _ = session_stop.wait_for(|&stop| stop) => true,
            _ = node_stop.wait_for(|&stop| stop) => true,
        }
    };
    if stopping {
        worker.stop().await;
        link.counters.lane_closed(&count);
        return;
    }
    let (clean, how) = worker.ended().await;
    link.counters.lane_closed(&count);
    let reason = format!("lane worker pid {pid} {how}");
    if clean {
        tracing::info!("lane {lane} of client {addr} closed");
    } else {
        NodeCounters::bump(&link.counters.worker_crashes);
        tracing::warn!("lane {lane} of client {addr}: {reason}");
    }
    link.ended(lane, !clean, reason);
}

impl SessionLink {
    /// Tells the client that its lane `lane` ended; nothing if the session is gone.
    fn ended(&self, lane: u32, crashed: bool, reason: String) {
        let _ = self.notes.send(Outgoing::Note(Message::LaneEnded {
            lane,
            crashed,
            reason,
        }));
    }
}
