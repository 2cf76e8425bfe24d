//! A session's lane, as the client sees it (see the `lane` module for the protocol).
//!
//! ```text
//! Idle --LaneRequest sent--> Requested --LaneOffer--> Opening --opened--> Open
//!   ^                                                   | failed            | broke
//!   +---------------------------------------------------+                   v
//!   +-------------------------- LaneEnded (for this lane) ---------------- Ending
//! ```
//! `LaneEnded` for the current lane also ends an `Open` lane whose connection has not
//! failed yet. A lane that fails to open [`MAX_FAILURES`] times in a row is given up for
//! the session. A job on a lane that ends stays in flight until `LaneEnded` says how the
//! worker ended: the session then fails it as a crash, or gives it back (see `session`).

use super::address::NodeAddress;
use super::session::CONNECT_TIMEOUT;
use crate::{ChannelConfig, Message, NetError, SecureReader, SecureWriter};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Lanes that fail to open in a row before the session stops asking for one.
pub(crate) const MAX_FAILURES: u32 = 3;

/// Both halves of a lane's connection (boxed: they are large, and move rarely).
type Halves = Box<(SecureReader, SecureWriter)>;

/// The lane of one session.
pub(crate) struct ClientLane {
    state: State,
    failures: u32,
}

enum State {
    /// No lane; one may be asked for.
    Idle,
    /// Asked for; no offer yet.
    Requested,
    /// Opening lane `lane`.
    Opening {
        lane: u32,
        task: JoinHandle<Result<Halves, String>>,
    },
    /// Lane `lane` is open; `job` is the one it holds.
    Open {
        lane: u32,
        halves: Halves,
        job: Option<u64>,
    },
    /// Lane `lane` broke; its worker's end is awaited to settle `job`.
    Ending { lane: u32, job: Option<u64> },
    /// Lanes are off for this session.
    Off,
}

/// What happened on the lane.
pub(crate) enum Event {
    /// The lane being opened is open, or could not be opened.
    Opened(Result<Halves, String>),
    /// A message, or the error that broke the lane.
    Received(Result<Message, NetError>),
}

impl ClientLane {
    /// A lane that is asked for when `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        ClientLane {
            state: if enabled { State::Idle } else { State::Off },
            failures: 0,
        }
    }

    /// True, once, when a lane should be asked for now (the caller sends `LaneRequest`).
    pub(crate) fn should_request(&mut self) -> bool {
        if matches!(self.state, State::Idle) {
            self.state = State::Requested;
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
        if !matches!(self.state, State::Requested) {
            return;
        }
        let target = (address.host.clone(), address.port);
        let task = tokio::spawn(async move {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
                .await
                .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))?
                .map_err(|e| format!("cannot connect: {e}"))?;
            crate::lane::open(stream, &key, channel)
                .await
                .map(Box::new)
                .map_err(|e| e.to_string())
        });
        self.state = State::Opening { lane, task };
    }

    /// The next event; pending while there is none to wait for. Cancel safe.
    pub(crate) async fn event(&mut self) -> Event {
        match &mut self.state {
            State::Opening { task, .. } => Event::Opened(match task.await {
                Ok(opened) => opened,
                Err(error) => Err(format!("the lane's opening task failed: {error}")),
            }),
            State::Open { halves, .. } => Event::Received(halves.0.recv().await),
            _ => std::future::pending().await,
        }
    }

    /// Takes in the outcome of [`Event::Opened`]; returns why it failed, if it did.
    pub(crate) fn opened(&mut self, opened: Result<Halves, String>) -> Option<String> {
        let State::Opening { lane, .. } = self.state else {
            return None;
        };
        match opened {
            Ok(halves) => {
                self.failures = 0;
                self.state = State::Open {
                    lane,
                    halves,
                    job: None,
                };
                None
            }
            Err(why) => {
                self.failures += 1;
                self.state = if self.failures >= MAX_FAILURES {
                    State::Off
                } else {
                    State::Idle
                };
                Some(why)
            }
        }
    }

    /// The lane's writer, when the lane is open and holds no job.
    pub(crate) fn free(&mut self) -> Option<&mut SecureWriter> {
        match &mut self.state {
            State::Open {
                halves, job: None, ..
            } => Some(&mut halves.1),
            _ => None,
        }
    }

    /// Job `job_id` was sent on the open lane.
    pub(crate) fn sent(&mut self, job_id: u64) {
        if let State::Open { job, .. } = &mut self.state {
            *job = Some(job_id);
        }
    }

    /// A result for `job_id` came on the lane: it holds no job any more.
    pub(crate) fn answered(&mut self, job_id: u64) {
        if let State::Open { job, .. } = &mut self.state {
            if *job == Some(job_id) {
                *job = None;
            }
        }
    }

    /// The open lane broke or misbehaved: it is closed, and its job waits for the node to
    /// say how the worker ended.
    pub(crate) fn broke(&mut self) {
        if let State::Open { lane, job, .. } = self.state {
            self.state = State::Ending { lane, job };
        }
    }

    /// The node says lane `lane`'s worker ended. Returns the job the lane held, if this is
    /// the current lane; the lane is then closed, and another may be asked for.
    pub(crate) fn ended(&mut self, ended: u32) -> Option<u64> {
        let job = match self.state {
            State::Open { lane, job, .. } | State::Ending { lane, job } if lane == ended => job,
            _ => return None,
        };
        self.state = State::Idle;
        job
    }
}
