//! The node's side of lanes (see the `lane` module): offers made to sessions, and the lane
//! workers started for the connections that take them up.
//!
//! An offer is made when a session asks for a lane ([`SessionLanes::offer`]) and is used at
//! most once: the first connection that names its id takes it, so a lane id seen on the
//! wire and replayed finds nothing. A session holds one lane at a time: at most one offer
//! open (a new request replaces it; the session's end withdraws it) or one lane taken up
//! (from the connection that takes the offer to its worker's end), never both. A request
//! while the session's lane is taken up is held back, not refused: it is answered with a
//! fresh offer once that lane has ended (after its [`Message::LaneEnded`]), which is when a
//! client asks again anyway. So a client has at most one lane worker besides its session's
//! workers, and one connection slot for it, however often it asks.
//!
//! The lane worker lives as long as the client keeps the lane open, and no longer than its
//! session: when the session ends or the node stops, it is killed. When it ends, the
//! session's client gets [`Message::LaneEnded`], so that a job it held fails as a crash
//! would on the session's workers. The node counts its jobs from a count the worker keeps
//! in shared memory (`SharedCounter`): no wake-up of the node per job. How it ended, its
//! exit status says ([`LaneExit`]): the node counts a crash only when the worker failed
//! or died, an authentication failure only when the lane's handshake did not authenticate,
//! and a handshake its client did not complete as an incomplete handshake.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::failure_log::FailureLog;
use super::outgoing::Outgoing;
use super::process::{WorkerProcess, WorkerSpec};
use super::stats::NodeCounters;
use crate::area::SharedCounter;
use crate::lane::{lane_id, new_key, LaneId};
use crate::protocol::pipe::LaneExit;
use crate::protocol::JobOutput;
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
    /// The session's one lane.
    slot: Mutex<LaneSlot>,
}

/// What a session's lane is doing. Locked before the node's offers when both are.
#[derive(Debug, Default)]
struct LaneSlot {
    /// The id of the session's open offer.
    offered: Option<LaneId>,
    /// A connection took up the session's lane, and its worker has not ended yet.
    taken: bool,
    /// The client asked for a lane while `taken`: it gets an offer when that lane ends.
    asked: bool,
    /// The session ended: nothing more is offered.
    closed: bool,
    /// The number of the last lane offered.
    last: u32,
}

impl Lanes {
    fn offers(&self) -> MutexGuard<'_, HashMap<LaneId, Offer>> {
        self.offers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes up the offer with `id`, if one is open: from now on its session's lane is
    /// taken until the returned hold is dropped.
    fn take(&self, id: &LaneId) -> Option<(Offer, LaneHold<'_>)> {
        let offer = self.offers().remove(id)?;
        let mut slot = offer.session.slot();
        // The session replaced or withdrew the offer between the two locks.
        if slot.offered != Some(*id) {
            return None;
        }
        slot.offered = None;
        slot.taken = true;
        drop(slot);
        let hold = LaneHold {
            lanes: self,
            session: Arc::clone(&offer.session),
            lane: offer.lane,
        };
        Some((offer, hold))
    }
}

impl SessionLink {
    fn slot(&self) -> MutexGuard<'_, LaneSlot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a new offer for the session whose `slot` is locked, withdrawing its previous
    /// one, and returns the `LaneOffer` for the client.
    fn offer(self: &Arc<Self>, slot: &mut LaneSlot, lanes: &Lanes) -> Result<Message, String> {
        let key = new_key()?;
        slot.last += 1;
        let lane = slot.last;
        let id = lane_id(&key);
        let mut offers = lanes.offers();
        if let Some(old) = slot.offered.replace(id) {
            offers.remove(&old);
        }
        offers.insert(
            id,
            Offer {
                key,
                lane,
                session: Arc::clone(self),
            },
        );
        Ok(Message::LaneOffer { lane, key })
    }
}

/// One session's handle on the node's lanes.
#[derive(Debug)]
pub(crate) struct SessionLanes {
    lanes: Arc<Lanes>,
    link: Arc<SessionLink>,
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
                slot: Mutex::default(),
            }),
        }
    }

    /// The client asks for a lane. Returns the `LaneOffer` for it (a new offer, which
    /// withdraws the session's previous one), or `None` while the session's lane is taken
    /// up: the request is then answered when that lane ends.
    pub(crate) fn offer(&self) -> Result<Option<Message>, String> {
        let mut slot = self.link.slot();
        if slot.taken {
            slot.asked = true;
            return Ok(None);
        }
        self.link.offer(&mut slot, &self.lanes).map(Some)
    }
}

impl Drop for SessionLanes {
    /// The session ended: its open offer goes, and no other comes.
    fn drop(&mut self) {
        let mut slot = self.link.slot();
        slot.closed = true;
        if let Some(id) = slot.offered.take() {
            self.lanes.offers().remove(&id);
        }
    }
}

/// A session's lane, taken up by a connection: released when dropped, which answers a
/// request the session made meanwhile.
struct LaneHold<'a> {
    lanes: &'a Lanes,
    session: Arc<SessionLink>,
    lane: u32,
}

impl LaneHold<'_> {
    /// Tells the client that the lane ended (`LaneEnded`), then releases it: a request
    /// held back meanwhile is answered after that message.
    fn ended(self, crashed: bool, reason: String) {
        let _ = self.session.notes.send(Outgoing::Note(Message::LaneEnded {
            lane: self.lane,
            crashed,
            reason,
        }));
    }
}

impl Drop for LaneHold<'_> {
    fn drop(&mut self) {
        let mut slot = self.session.slot();
        slot.taken = false;
        if !std::mem::take(&mut slot.asked) || slot.closed {
            return;
        }
        match self.session.offer(&mut slot, self.lanes) {
            Ok(offer) => {
                let _ = self.session.notes.send(Outgoing::Note(offer));
            }
            // The client goes on without a lane.
            Err(reason) => pp_runtime::warn!("no lane for the client: {reason}"),
        }
    }
}

/// Serves a lane connection from `addr` that named `id`: starts its worker, gives it the
/// connection and the key, counts the jobs it answers (in shared memory), and tells the
/// session when it ends. Never fails: everything is logged (an opening that names no offer
/// through `failures`, as a failed handshake).
pub(crate) async fn serve_lane(
    stream: TcpStream,
    addr: SocketAddr,
    id: LaneId,
    lanes: &Lanes,
    failures: &FailureLog,
    mut node_stop: watch::Receiver<bool>,
) {
    let Some((offer, hold)) = lanes.take(&id) else {
        failures.failed(
            addr.ip(),
            format_args!("lane connection from {addr} names no open lane offer: closed"),
        );
        return;
    };
    let link = &offer.session;
    let mut session_stop = link.stop.clone();
    let lane = offer.lane;
    let socket = match stream.into_std().and_then(crate::area::socket_descriptor) {
        Ok(socket) => socket,
        Err(error) => {
            pp_runtime::warn!("lane {lane} from {addr}: cannot take its connection: {error}");
            return;
        }
    };
    let (count, count_fd) = match SharedCounter::create() {
        Ok((count, fd)) => (Arc::new(count), fd),
        Err(error) => {
            pp_runtime::warn!("lane {lane} from {addr}: no memory file for its job count: {error}");
            hold.ended(
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
            pp_runtime::warn!("lane {lane} from {addr}: {reason}");
            hold.ended(false, reason);
            return;
        }
    };
    if let Err(error) = worker.send_lane_key(&offer.key).await {
        pp_runtime::warn!("lane {lane} from {addr}: cannot give the worker its key: {error}");
        worker.stop().await;
        hold.ended(
            false,
            format!("the lane worker did not take its key: {error}"),
        );
        return;
    }
    NodeCounters::bump(&link.counters.lanes);
    link.counters.lane_opened(&count);
    let pid = worker.pid();
    pp_runtime::info!("lane {lane} of client {addr} open to worker pid {pid}");
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
    let (status, how) = worker.ended().await;
    link.counters.lane_closed(&count);
    // Killed by a signal, or not waited for: a failure.
    let exit = status.map_or(LaneExit::Failed, LaneExit::from_status);
    let reason = lane_end_reason(exit, pid, &how);
    let counters = &link.counters;
    match exit {
        LaneExit::Closed => pp_runtime::info!("lane {lane} of client {addr} closed"),
        LaneExit::ClientGone => pp_runtime::info!("lane {lane} of client {addr}: {reason}"),
        LaneExit::HandshakeIncomplete => {
            NodeCounters::bump(&counters.incomplete_handshakes);
            failures.failed(
                addr.ip(),
                format_args!("lane {lane} of client {addr}: {reason}"),
            );
        }
        LaneExit::WrongKey => {
            NodeCounters::bump(&counters.auth_failures);
            failures.failed(
                addr.ip(),
                format_args!("authentication failed on lane {lane} from {addr}: {reason}"),
            );
        }
        LaneExit::Failed => {
            NodeCounters::bump(&counters.worker_crashes);
            pp_runtime::warn!("lane {lane} of client {addr}: {reason}");
            // What its job printed goes before the news of the crash (see `output_queue`).
            for piece in worker
                .recover_output(None)
                .map(JobOutput::into_pieces)
                .unwrap_or_default()
            {
                let _ = hold
                    .session
                    .notes
                    .send(Outgoing::Note(Message::Output(piece)));
            }
        }
    }
    hold.ended(exit == LaneExit::Failed, reason);
}

/// What the client and the log are told when lane worker `pid` ended with `exit`; `how` is
/// how the process ended ("exited with status 1", "was killed by signal 9 (SIGKILL)").
fn lane_end_reason(exit: LaneExit, pid: u32, how: &str) -> String {
    match exit {
        LaneExit::Closed | LaneExit::Failed => format!("lane worker pid {pid} {how}"),
        LaneExit::HandshakeIncomplete => format!(
            "the client did not complete the lane's handshake (it went away or stalled); lane \
             worker pid {pid} ended"
        ),
        LaneExit::WrongKey => format!(
            "the client's lane handshake did not authenticate with the lane's key; lane worker \
             pid {pid} ended"
        ),
        LaneExit::ClientGone => format!(
            "the client went away or broke the lane's protocol; lane worker pid {pid} ended"
        ),
    }
}
