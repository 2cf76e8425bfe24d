//! A session's lane, as the client sees it (see the `lane` module for the protocol).
//!
//! ```text
//! Idle --LaneRequest sent--> Requested --LaneOffer--> Opening --opened--> Open
//!   ^                                                   | failed            | broke
//!   +---------------------------------------------------+                   v
//!   +-------------------------- LaneEnded (for this lane) ---------------- Ending
//! ```
//! `LaneEnded` for the current lane also ends an `Open` lane whose connection has not
//! failed yet. A lane that fails to open [`MAX_LANE_OPEN_FAILURES`] times in a row is given
//! up for the session. A job on a lane that ends stays in flight until `LaneEnded` says how
//! the worker ended: the session then fails it as a crash, or gives it back (see
//! `session`).
//!
//! The session's task reads the lane through [`ClientLane`]; its sending side is in
//! [`SharedSession`], shared with the threads that submit jobs (lone jobs go on the lane
//! from there).

use super::address::NodeAddress;
use super::dial::dial;
use super::shared_session::SharedSession;
use crate::channel::{ChannelConfig, NetError, SecureReader, SecureWriter};
use crate::protocol::Message;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Lanes that fail to open in a row before the session stops asking for one.
pub(crate) const MAX_LANE_OPEN_FAILURES: u32 = 3;

/// How long a session that ends waits for its lane to finish opening (see
/// [`ClientLane::close`]).
const LANE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Both halves of a lane's connection (boxed: they are large, and move rarely).
pub(crate) type LaneHalves = Box<(SecureReader, SecureWriter)>;

/// The lane of one session.
pub(crate) struct ClientLane {
    state: LaneState,
    failures: u32,
}

enum LaneState {
    /// No lane; one may be asked for.
    Idle,
    /// Asked for; no offer yet.
    Requested,
    /// Opening lane `lane`.
    Opening {
        lane: u32,
        task: JoinHandle<Result<LaneHalves, String>>,
    },
    /// Lane `lane` is open; its sending side is in [`SharedSession`].
    Open {
        lane: u32,
        reader: Box<SecureReader>,
    },
    /// Lane `lane` broke; its worker's end is awaited to settle `job`.
    Ending { lane: u32, job: Option<u64> },
    /// Lanes are off for this session.
    Off,
}

/// What happened on the lane.
pub(crate) enum LaneEvent {
    /// The lane being opened is open, or could not be opened.
    Opened(Result<LaneHalves, String>),
    /// A message, or the error that broke the lane.
    Received(Result<Message, NetError>),
}

impl ClientLane {
    /// A lane that is asked for when `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        ClientLane {
            state: if enabled {
                LaneState::Idle
            } else {
                LaneState::Off
            },
            failures: 0,
        }
    }

    /// True, once, when a lane should be asked for now (the caller sends `LaneRequest`).
    pub(crate) fn should_request(&mut self) -> bool {
        if matches!(self.state, LaneState::Idle) {
            self.state = LaneState::Requested;
            return true;
        }
        false
    }

    /// The node offered lane `lane` with `key`: opens it in the background.
    pub(crate) fn offered(
        &mut self,
        lane: u32,
        key: [u8; 32],
        address: &NodeAddress,
        channel: ChannelConfig,
    ) {
        if !matches!(self.state, LaneState::Requested) {
            return;
        }
        let address = address.clone();
        let task = tokio::spawn(async move {
            let stream = dial(&address).await?;
            crate::lane::open(stream, &key, channel)
                .await
                .map(Box::new)
                .map_err(|e| e.to_string())
        });
        self.state = LaneState::Opening { lane, task };
    }

    /// The next event; pending while there is none to wait for. Cancel safe.
    pub(crate) async fn event(&mut self) -> LaneEvent {
        match &mut self.state {
            LaneState::Opening { task, .. } => LaneEvent::Opened(match task.await {
                Ok(opened) => opened,
                Err(error) => Err(format!("the lane's opening task failed: {error}")),
            }),
            LaneState::Open { reader, .. } => LaneEvent::Received(reader.recv().await),
            _ => std::future::pending().await,
        }
    }

    /// Takes in the outcome of [`LaneEvent::Opened`]; returns why it failed, if it did.
    pub(crate) fn opened(
        &mut self,
        opened: Result<LaneHalves, String>,
        shared: &SharedSession,
    ) -> Option<String> {
        let LaneState::Opening { lane, .. } = self.state else {
            return None;
        };
        match opened {
            Ok(halves) => {
                let (reader, writer) = *halves;
                self.failures = 0;
                shared.lane_opened(writer);
                self.state = LaneState::Open {
                    lane,
                    reader: Box::new(reader),
                };
                None
            }
            Err(why) => {
                self.failures += 1;
                self.state = if self.failures >= MAX_LANE_OPEN_FAILURES {
                    LaneState::Off
                } else {
                    LaneState::Idle
                };
                Some(why)
            }
        }
    }

    /// The session ends: a lane still opening is let finish (at most [`LANE_CLOSE_WAIT`])
    /// and then closed, as an open one is. Cut off in its handshake, it would end the
    /// node's lane worker as a handshake the client did not complete, which the node warns
    /// about: that warning is for a client that failed or stalled, not one that exits.
    pub(crate) async fn close(self) {
        let LaneState::Opening { lane, mut task } = self.state else {
            return;
        };
        match tokio::time::timeout(LANE_CLOSE_WAIT, &mut task).await {
            // Opened or failed: dropping what it opened closes the lane cleanly.
            Ok(_) => {}
            Err(_) => {
                pp_runtime::debug!("lane {lane} still opening after {LANE_CLOSE_WAIT:?}: cut off");
                task.abort();
            }
        }
    }

    /// The open lane broke or misbehaved: it is closed, and its job waits for the node to
    /// say how the worker ended.
    pub(crate) fn broke(&mut self, shared: &SharedSession) {
        if let LaneState::Open { lane, .. } = self.state {
            let job = shared.close_lane();
            self.state = LaneState::Ending { lane, job };
        }
    }

    /// The job the lane holds, or held when it broke, until the node says the lane ended.
    pub(crate) fn held_job(&self, shared: &SharedSession) -> Option<u64> {
        match self.state {
            LaneState::Open { .. } => shared.lane_job(),
            LaneState::Ending { job, .. } => job,
            _ => None,
        }
    }

    /// The node says lane `lane`'s worker ended. Returns the job the lane held, if this is
    /// the current lane; the lane is then closed, and another may be asked for.
    pub(crate) fn ended(&mut self, ended: u32, shared: &SharedSession) -> Option<u64> {
        let job = match self.state {
            LaneState::Open { lane, .. } if lane == ended => shared.close_lane(),
            LaneState::Ending { lane, job } if lane == ended => job,
            _ => return None,
        };
        self.state = LaneState::Idle;
        job
    }
}
