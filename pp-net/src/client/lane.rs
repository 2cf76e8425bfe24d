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
//!
//! The session's task reads the lane; its sending side ([`Direct`]) is shared with the
//! threads that submit jobs, so that a lone job goes on the lane from the thread that
//! submitted it, with no wake-up of the network thread on the way out
//! ([`Direct::submit_lone`]).

use super::address::NodeAddress;
use super::flights::{self, SharedFlight};
use super::session::CONNECT_TIMEOUT;
use crate::channel::{ChannelConfig, NetError, SecureReader, SecureWriter};
use crate::lane::LANE_MAX_ARGS;
use crate::protocol::{JobRequest, Message};
use pp_runtime::remote::{JobFeed, RemoteJob};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Lanes that fail to open in a row before the session stops asking for one.
pub(crate) const MAX_FAILURES: u32 = 3;

/// Both halves of a lane's connection (boxed: they are large, and move rarely).
type Halves = Box<(SecureReader, SecureWriter)>;

/// What a session shares with the threads that submit jobs: its jobs in flight, its job
/// ids, and the sending side of its lane.
pub(crate) struct Direct {
    /// The session's jobs in flight.
    pub(crate) in_flight: SharedFlight,
    /// The last job id used on the session (ids are unique per session, lane included).
    next_id: AtomicU64,
    lane: Mutex<LaneSend>,
    /// A hint, checked again under the lock: the lane is open and holds no job. Shared with
    /// the node's state, which submitting threads look at first.
    free: Arc<AtomicBool>,
    /// Set when a send from a submitting thread broke the lane, for the session to close it.
    broke: AtomicBool,
    /// Jobs a submitting thread took from the queue but could not send on the lane, with
    /// their arguments when it encoded them: the session sends them first.
    adopted: Mutex<Vec<Adopted>>,
}

/// A job a submitting thread left to the session, with its encoded arguments if it has
/// them (a large job's are not encoded twice).
pub(crate) type Adopted = (RemoteJob, Option<Vec<u8>>);

/// The lane's writer (while open) and the job it holds.
#[derive(Default)]
struct LaneSend {
    writer: Option<SecureWriter>,
    job: Option<u64>,
}

/// What became of a job offered to the lane.
pub(crate) enum Sent {
    /// It is on the lane.
    Yes,
    /// The lane is not open or holds a job: send it another way.
    NotFree,
    /// Sending broke the lane (now closed): send it another way.
    Broke(NetError),
}

impl Direct {
    /// The shared state of a session whose jobs in flight are `in_flight`; `free` is set
    /// while the lane is open and holds no job.
    pub(crate) fn new(in_flight: SharedFlight, free: Arc<AtomicBool>) -> Self {
        free.store(false, Ordering::Release);
        Direct {
            in_flight,
            next_id: AtomicU64::new(0),
            lane: Mutex::new(LaneSend::default()),
            free,
            broke: AtomicBool::new(false),
            adopted: Mutex::new(Vec::new()),
        }
    }

    fn lane(&self) -> MutexGuard<'_, LaneSend> {
        self.lane.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new job id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A job a submitting thread took and left to the session, if any.
    pub(crate) fn adopted(&self) -> Option<Adopted> {
        self.adopted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn adopt(&self, job: RemoteJob, args: Option<Vec<u8>>) {
        self.adopted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((job, args));
    }

    /// Whether a submitting thread broke the lane since the last call.
    pub(crate) fn take_broke(&self) -> bool {
        self.broke.swap(false, Ordering::AcqRel)
    }

    /// Sends `request` on the lane if it is open and holds no job. The job must be in
    /// flight already.
    pub(crate) fn send(&self, request: &JobRequest) -> Sent {
        let mut lane = self.lane();
        Self::send_locked(&mut lane, request, &self.free)
    }

    fn send_locked(lane: &mut LaneSend, request: &JobRequest, free: &AtomicBool) -> Sent {
        let Some(writer) = lane.writer.as_mut().filter(|_| lane.job.is_none()) else {
            return Sent::NotFree;
        };
        match writer.send_submit_now(std::slice::from_ref(request)) {
            Ok(()) => {
                lane.job = Some(request.job_id);
                free.store(false, Ordering::Release);
                Sent::Yes
            }
            Err(error) => {
                lane.writer = None;
                free.store(false, Ordering::Release);
                Sent::Broke(error)
            }
        }
    }

    /// From the thread that just queued a job: if the lane is free, nothing is in flight
    /// on the session and that job is the only one queued, takes it and sends it on the
    /// lane. Returns whether it did; if not, the session must be woken as usual (a job this
    /// took and could not send waits for it in [`Direct::adopted`]).
    pub(crate) fn submit_lone(&self, feed: &JobFeed) -> bool {
        if !self.free.load(Ordering::Acquire) {
            return false;
        }
        let mut lane = self.lane();
        if lane.writer.is_none()
            || lane.job.is_some()
            || !flights::lock(&self.in_flight).is_empty()
            || feed.queued() != 1
        {
            return false;
        }
        let Some(job) = feed.take() else {
            return false;
        };
        let args = match job.encode_args_within(LANE_MAX_ARGS as u64) {
            Ok(Some(args)) => args,
            // Too large for a lane (found out after at most its limit's worth of encoding),
            // or failing to encode: the session deals with it.
            Ok(None) | Err(_) => {
                self.adopt(job, None);
                return false;
            }
        };
        let request = JobRequest {
            job_id: self.next_id(),
            task: job.task_id().to_owned(),
            fingerprint: job.fingerprint(),
            args,
        };
        flights::lock(&self.in_flight).insert(request.job_id, (job, Instant::now()));
        match Self::send_locked(&mut lane, &request, &self.free) {
            Sent::Yes => true,
            Sent::NotFree | Sent::Broke(_) => {
                self.broke.store(true, Ordering::Release);
                let entry = flights::lock(&self.in_flight).remove(&request.job_id);
                if let Some((job, _)) = entry {
                    self.adopt(job, Some(request.args));
                }
                false
            }
        }
    }

    /// The lane answered `job_id`: it holds no job any more.
    pub(crate) fn answered(&self, job_id: u64) {
        let mut lane = self.lane();
        if lane.job == Some(job_id) {
            lane.job = None;
            if lane.writer.is_some() {
                self.free.store(true, Ordering::Release);
            }
        }
    }

    /// The lane is open with `writer`.
    fn open(&self, writer: SecureWriter) {
        let mut lane = self.lane();
        *lane = LaneSend {
            writer: Some(writer),
            job: None,
        };
        self.free.store(true, Ordering::Release);
    }

    /// The session ends: closes the lane, after which no submitting thread takes a job;
    /// returns the jobs they took and left to the session.
    pub(crate) fn end(&self) -> Vec<Adopted> {
        // Submitting threads take and adopt jobs under the lane's lock, and only while it
        // has a writer: once closed, none does.
        self.close();
        std::mem::take(&mut *self.adopted.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The lane closed: returns the job it held.
    fn close(&self) -> Option<u64> {
        let mut lane = self.lane();
        self.free.store(false, Ordering::Release);
        lane.writer = None;
        lane.job.take()
    }
}

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
    /// Lane `lane` is open; its sending side is in [`Direct`].
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
            State::Open { reader, .. } => Event::Received(reader.recv().await),
            _ => std::future::pending().await,
        }
    }

    /// Takes in the outcome of [`Event::Opened`]; returns why it failed, if it did.
    pub(crate) fn opened(
        &mut self,
        opened: Result<Halves, String>,
        direct: &Direct,
    ) -> Option<String> {
        let State::Opening { lane, .. } = self.state else {
            return None;
        };
        match opened {
            Ok(halves) => {
                let (reader, writer) = *halves;
                self.failures = 0;
                direct.open(writer);
                self.state = State::Open {
                    lane,
                    reader: Box::new(reader),
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

    /// The open lane broke or misbehaved: it is closed, and its job waits for the node to
    /// say how the worker ended.
    pub(crate) fn broke(&mut self, direct: &Direct) {
        if let State::Open { lane, .. } = self.state {
            let job = direct.close();
            self.state = State::Ending { lane, job };
        }
    }

    /// The node says lane `lane`'s worker ended. Returns the job the lane held, if this is
    /// the current lane; the lane is then closed, and another may be asked for.
    pub(crate) fn ended(&mut self, ended: u32, direct: &Direct) -> Option<u64> {
        let job = match self.state {
            State::Open { lane, .. } if lane == ended => direct.close(),
            State::Ending { lane, job } if lane == ended => job,
            _ => return None,
        };
        self.state = State::Idle;
        job
    }
}
