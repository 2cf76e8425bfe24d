//! Stopping a job while it runs: the job a slot's worker is running, with its deadline
//! ([`Running`]), and the watchdog thread that kills the worker of a job past its deadline
//! (`RemoteJob::timeout`) or settled elsewhere (cancelled: `RemoteJob::is_settled`).
//!
//! The slot's thread blocks reading its worker's pipe; a kill ends that read, and the slot
//! then completes the job with why it was stopped ([`Stop`]) and starts a fresh worker. A
//! worker is killed only under the lock of its slot's [`Running`], which the slot empties
//! before it reaps the worker: a pid is never killed once it may belong to another process.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use pp_runtime::remote::RemoteJob;

use super::child;

/// Why a running job's worker was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The job ran past its time limit (this one).
    TimedOut(Duration),
    /// The job was settled elsewhere (cancelled) while it ran.
    Settled,
}

/// The job a slot's worker runs now.
#[derive(Debug)]
pub(super) struct Running {
    /// The job; back to the slot when it ends.
    pub(super) job: RemoteJob,
    /// The worker running it: still unreaped while it is here.
    pub(super) pid: u32,
    /// When it started on the worker.
    pub(super) started: Instant,
    /// When its time is up, if it has a limit.
    pub(super) deadline: Option<Instant>,
    /// Set once the watchdog killed the worker.
    pub(super) stopped: Option<Stop>,
}

/// One slot's running job, as the slot and the watchdog share it.
pub(super) type RunningCell = Mutex<Option<Running>>;

/// Locks a slot's running job.
pub(super) fn lock(cell: &RunningCell) -> MutexGuard<'_, Option<Running>> {
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The watchdog of one isolated executor: its thread sleeps until the nearest deadline or
/// until poked (a new deadline, a cancel, shutdown).
#[derive(Debug, Default)]
pub(super) struct Watchdog {
    state: Mutex<WatchState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct WatchState {
    /// Every slot's running job (slots that ended are dropped from here).
    cells: Vec<Weak<RunningCell>>,
    /// Something changed since the watchdog last looked.
    poked: bool,
    /// Look for settled jobs at the next round.
    look_for_settled: bool,
    stopping: bool,
}

impl Watchdog {
    fn state(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches `cell`, a new slot's running job.
    pub(super) fn watch(&self, cell: &Arc<RunningCell>) {
        self.state().cells.push(Arc::downgrade(cell));
    }

    /// A job with a deadline started: the watchdog looks at the deadlines again.
    pub(super) fn poke(&self) {
        self.state().poked = true;
        self.wake.notify_one();
    }

    /// Jobs were settled elsewhere (cancelled): the watchdog stops those that run.
    pub(super) fn look_for_settled(&self) {
        let mut state = self.state();
        state.poked = true;
        state.look_for_settled = true;
        self.wake.notify_one();
    }

    /// Ends the watchdog's thread.
    pub(super) fn stop(&self) {
        self.state().stopping = true;
        self.wake.notify_one();
    }

    /// The watchdog thread's body: until stopped, kill the workers of jobs past their
    /// deadline (or settled, when asked to look), and sleep until the nearest deadline.
    pub(super) fn run(&self) {
        let mut state = self.state();
        loop {
            if state.stopping {
                return;
            }
            let settled = std::mem::take(&mut state.look_for_settled);
            state.poked = false;
            state.cells.retain(|cell| cell.strong_count() > 0);
            let cells: Vec<Arc<RunningCell>> =
                state.cells.iter().filter_map(Weak::upgrade).collect();
            drop(state);
            let now = Instant::now();
            let nearest = cells
                .iter()
                .filter_map(|cell| check(cell, now, settled))
                .min();
            state = self.state();
            while !state.poked && !state.stopping {
                let wait = match nearest {
                    Some(at) => match at.checked_duration_since(Instant::now()) {
                        Some(wait) if !wait.is_zero() => wait,
                        _ => break,
                    },
                    None => Duration::from_secs(3600),
                };
                let (next, timeout) = self
                    .wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner);
                state = next;
                if timeout.timed_out() {
                    break;
                }
            }
        }
    }
}

/// Stops `cell`'s job if its deadline passed (or, with `settled`, if it was settled
/// elsewhere); returns its deadline if it still runs.
fn check(cell: &RunningCell, now: Instant, settled: bool) -> Option<Instant> {
    let mut running = lock(cell);
    let running = running.as_mut().filter(|r| r.stopped.is_none())?;
    let stop = match running.deadline {
        Some(deadline) if deadline <= now => Some(Stop::TimedOut(
            running
                .job
                .timeout()
                .unwrap_or_else(|| now - running.started),
        )),
        _ if settled && running.job.is_settled() => Some(Stop::Settled),
        _ => None,
    };
    match stop {
        Some(stop) => {
            // Unreaped: the slot reaps its worker only after emptying this cell.
            child::kill(running.pid);
            running.stopped = Some(stop);
            pp_runtime::debug!(
                task = running.job.task_id(),
                pid = running.pid,
                ?stop,
                "an isolated worker is killed"
            );
            None
        }
        None => running.deadline,
    }
}
