//! What a running session shares with the threads that submit jobs: its jobs in flight, its
//! job ids, and the sending side of its lane ([`SharedSession`]).
//!
//! A lone job goes on the lane from the thread that submitted it, with no wake-up of the
//! network thread on the way out ([`SharedSession::submit_lone`]); when the lone job
//! cannot go, the job is left to the session ([`Adopted`]). The session's task reads the
//! lane and drives its states (the `lane` module); this module only sends on it.

use super::flights::{self, Flight, SharedInFlight};
use crate::channel::{NetError, SecureWriter};
use crate::lane::LANE_MAX_ARGS;
use crate::protocol::JobRequest;
use pp_runtime::remote::{ExecutorHandle, JobFeed, RemoteJob};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What a session shares with the threads that submit jobs: its jobs in flight, its job
/// ids, and the sending side of its lane.
pub(crate) struct SharedSession {
    /// The session's jobs in flight.
    pub(crate) in_flight: SharedInFlight,
    /// The last job id used on the session (ids are unique per session, lane included).
    next_id: AtomicU64,
    lane: Mutex<LaneWriterSlot>,
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
struct LaneWriterSlot {
    writer: Option<SecureWriter>,
    job: Option<u64>,
}

/// What became of a job offered to the lane.
pub(crate) enum LaneSent {
    /// It is on the lane.
    Yes,
    /// The lane is not open or holds a job: send it another way.
    NotFree,
    /// Sending broke the lane (now closed): send it another way.
    Broke(NetError),
}

impl SharedSession {
    /// The shared state of a session whose jobs in flight are `in_flight`; `free` is set
    /// while the lane is open and holds no job.
    pub(crate) fn new(in_flight: SharedInFlight, free: Arc<AtomicBool>) -> Self {
        free.store(false, Ordering::Release);
        SharedSession {
            in_flight,
            next_id: AtomicU64::new(0),
            lane: Mutex::new(LaneWriterSlot::default()),
            free,
            broke: AtomicBool::new(false),
            adopted: Mutex::new(Vec::new()),
        }
    }

    fn lane(&self) -> MutexGuard<'_, LaneWriterSlot> {
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
    pub(crate) fn send(&self, request: &JobRequest) -> LaneSent {
        let mut lane = self.lane();
        Self::send_locked(&mut lane, request, &self.free)
    }

    fn send_locked(lane: &mut LaneWriterSlot, request: &JobRequest, free: &AtomicBool) -> LaneSent {
        let Some(writer) = lane.writer.as_mut().filter(|_| lane.job.is_none()) else {
            return LaneSent::NotFree;
        };
        match writer.send_submit_now(std::slice::from_ref(request)) {
            Ok(()) => {
                lane.job = Some(request.job_id);
                free.store(false, Ordering::Release);
                LaneSent::Yes
            }
            Err(error) => {
                lane.writer = None;
                free.store(false, Ordering::Release);
                LaneSent::Broke(error)
            }
        }
    }

    /// From the thread that just queued a job: if the lane is free, nothing is in flight
    /// on the session and that job is the only one queued, takes it and sends it on the
    /// lane. Returns whether it did; if not, the session must be woken as usual (a job this
    /// took and could not send waits for it in [`SharedSession::adopted`]).
    pub(crate) fn submit_lone(&self, feed: &JobFeed, node: &ExecutorHandle) -> bool {
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
        // A retried job that failed on this node is left to the session, which knows
        // whether another node can take it.
        let Some(job) = feed.take_for(node, || true).job() else {
            return false;
        };
        // A job with a time limit goes on the session, whose node enforces it: a lane's
        // worker runs its job on the lane's own thread, with no node watching its clock.
        if job.timeout().is_some() {
            self.adopt(job, None);
            return false;
        }
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
            timeout: None,
            args,
        };
        flights::lock(&self.in_flight).insert(request.job_id, Flight::new(job, None));
        match Self::send_locked(&mut lane, &request, &self.free) {
            LaneSent::Yes => true,
            LaneSent::NotFree | LaneSent::Broke(_) => {
                self.broke.store(true, Ordering::Release);
                let entry = flights::lock(&self.in_flight).remove(&request.job_id);
                if let Some(entry) = entry {
                    self.adopt(entry.job, Some(request.args));
                }
                false
            }
        }
    }

    /// The job the lane holds, if any.
    pub(crate) fn lane_job(&self) -> Option<u64> {
        self.lane().job
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

    /// The lane is open with `writer`: lone jobs may go on it.
    pub(crate) fn lane_opened(&self, writer: SecureWriter) {
        let mut lane = self.lane();
        *lane = LaneWriterSlot {
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
        self.close_lane();
        std::mem::take(&mut *self.adopted.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The lane closed: returns the job it held.
    pub(crate) fn close_lane(&self) -> Option<u64> {
        let mut lane = self.lane();
        self.free.store(false, Ordering::Release);
        lane.writer = None;
        lane.job.take()
    }
}
