//! Process isolation for local jobs
//! ([`ServerBuilder::isolated`](pp_runtime::ServerBuilder::isolated), `PP_ISOLATED=1`): the
//! server's local workers are processes of this very program in pp's worker mode, the
//! mode a node starts its workers in (see `crate::worker`), spoken to over pipes with the
//! pipe protocol.
//!
//! The executor has one slot per local worker (`slot`): a thread that takes a job from the
//! server's queue, sends it to its worker process (`child`) and waits for the reply,
//! printing what the job wrote on this program's standard output and error, unprefixed.
//! A worker that dies (abort, segfault) fails its job with `Outcome::WorkerCrashed`, which
//! the queue's attempt policy retries or reports, and the slot starts a fresh worker for
//! its next job: the program lives. A watchdog thread (`watch`) kills the worker of a job
//! past its deadline (`RemoteJob::timeout`, `Outcome::TimedOut`) or settled elsewhere while
//! it runs (a cancel: [`Executor::settled_elsewhere`]).
//!
//! Why not a private node on 127.0.0.1: a node would bring the handshake, encryption, the
//! program cache, heartbeats and the client's fallback for nothing, cost a TCP round trip
//! per job batch, and name its row and its output after an address. The pipe to a child
//! is what a node's worker already speaks; only the node's relay is left out.

mod child;
mod slot;
mod watch;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use pp_runtime::remote::{
    Executor, ExecutorHandle, Isolated, IsolatedSpec, JobFeed, QueueView, RemoteJob,
    WorkerProcesses,
};
use pp_runtime::{Error, ExecutorStats};

use slot::Slot;
use watch::Watchdog;

/// The name of the isolated workers' row in the statistics.
pub const ISOLATED_ROW: &str = "local (isolated)";

/// The longest an idle slot sleeps before it looks at the queue again, whatever it was
/// told: a safety net under the wake-ups, never the way jobs are found.
const IDLE_NAP: Duration = Duration::from_millis(50);

/// Starts the worker processes of an isolated server: `spec.workers` slots (each starts
/// its process with its first job), feeding on `feed`.
///
/// # Errors
/// [`Error::InvalidNcpus`] for zero workers; [`Error::Config`] if a thread cannot start,
/// or elsewhere than Unix.
pub fn start(spec: IsolatedSpec, feed: JobFeed) -> Result<Isolated, Error> {
    if spec.workers == 0 {
        return Err(Error::InvalidNcpus(0));
    }
    // A worker's standard output is its pipe to this program: only Unix lets the worker
    // move it aside (`worker::stdio`), so that what a job prints cannot corrupt the pipe,
    // and kill a worker past its time limit by its pid.
    if cfg!(not(unix)) {
        return Err(Error::Config(
            "process isolation needs Unix (Linux, macOS, the BSDs): on this system run \
             without isolated(true) / PP_ISOLATED"
                .into(),
        ));
    }
    let shared = Arc::new(Shared {
        feed,
        handle: ExecutorHandle::new(ISOLATED_ROW),
        forward_output: spec.forward_output,
        watchdog: Watchdog::default(),
        slots: Mutex::new(Slots::default()),
        idle: Mutex::new(()),
        wake: Condvar::new(),
        sleepers: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
    });
    let watchdog = {
        let shared = Arc::clone(&shared);
        spawn_thread("pp-isolated-watch", move || shared.watchdog.run())?
    };
    let workers = Arc::new(Workers {
        shared,
        watchdog: Mutex::new(Some(watchdog)),
    });
    workers.set_workers(spec.workers)?;
    Ok(Isolated {
        executor: Arc::clone(&workers) as Arc<dyn Executor>,
        processes: workers,
    })
}

/// What the slots share.
pub(crate) struct Shared {
    feed: JobFeed,
    /// The row of the statistics.
    handle: ExecutorHandle,
    forward_output: bool,
    watchdog: Watchdog,
    slots: Mutex<Slots>,
    /// Idle slots sleep on `wake` (with this lock) until a job is queued.
    idle: Mutex<()>,
    wake: Condvar,
    /// Slots asleep or about to be: a notify with none costs one load.
    sleepers: AtomicUsize,
    stopping: AtomicBool,
}

/// The slots' threads, by index, and how many may run jobs.
#[derive(Default)]
struct Slots {
    target: usize,
    threads: Vec<Option<JoinHandle<()>>>,
}

impl Shared {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next job for slot `index`, waiting while the queue is empty; `None` once the
    /// executor stops or has fewer slots than `index + 1`.
    fn next_job(&self, index: usize) -> Option<RemoteJob> {
        loop {
            if self.stopping.load(Ordering::SeqCst) || index >= self.slots().target {
                return None;
            }
            if let Some(job) = self.feed.take() {
                return Some(job);
            }
            if self.feed.is_closed() {
                return None;
            }
            let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            // Looked at again once counted: a job queued before this look is taken here,
            // one queued after it finds the count and wakes a sleeper.
            if let Some(job) = self.feed.take() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return Some(job);
            }
            let woken = self.wake.wait_timeout(idle, IDLE_NAP);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(woken);
        }
    }

    /// Wakes one idle slot, if any sleeps.
    fn wake_one(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake.notify_one();
        }
    }

    fn wake_all(&self) {
        let _idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.notify_all();
    }
}

/// The isolated executor of one server, and the handle that resizes it.
struct Workers {
    shared: Arc<Shared>,
    watchdog: Mutex<Option<JoinHandle<()>>>,
}

impl WorkerProcesses for Workers {
    fn workers(&self) -> usize {
        self.shared.slots().target
    }

    fn set_workers(&self, workers: usize) -> Result<(), Error> {
        if workers == 0 {
            return Err(Error::InvalidNcpus(0));
        }
        let mut slots = self.shared.slots();
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        slots.target = workers;
        if slots.threads.len() < workers {
            slots.threads.resize_with(workers, || None);
        }
        for index in 0..workers {
            let running = slots.threads[index]
                .as_ref()
                .is_some_and(|thread| !thread.is_finished());
            if !running {
                let slot = Slot::new(Arc::clone(&self.shared), index);
                let name = format!("pp-isolated-{index}");
                slots.threads[index] = Some(spawn_thread(&name, move || slot.run())?);
            }
        }
        drop(slots);
        // Slots above the new count end once idle or after their job.
        self.shared.wake_all();
        pp_runtime::debug!(workers, "isolated workers set");
        Ok(())
    }
}

impl Executor for Workers {
    fn notify(&self, _queue: QueueView<'_>) {
        self.shared.wake_one();
    }

    fn stats_rows(&self, rows: &mut Vec<ExecutorStats>) {
        rows.push(self.shared.handle.stats());
    }

    fn fastest_average(&self) -> Option<Duration> {
        Some(self.shared.handle.round_trip_average()).filter(|d| !d.is_zero())
    }

    fn settled_elsewhere(&self) {
        self.shared.watchdog.look_for_settled();
    }

    /// Lets running jobs finish (as the local pool does), ends every worker process and
    /// joins the threads.
    fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake_all();
        let threads = std::mem::take(&mut self.shared.slots().threads);
        let me = std::thread::current().id();
        for thread in threads.into_iter().flatten() {
            // A callback (run by a slot's thread) may drop the server: not itself.
            if thread.thread().id() != me && thread.join().is_err() {
                pp_runtime::warn!("an isolated worker's thread panicked");
            }
        }
        self.shared.watchdog.stop();
        let watchdog = self
            .watchdog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(watchdog) = watchdog {
            let _ = watchdog.join();
        }
        crate::client::job_output::flush(Duration::from_secs(5));
    }
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|e| Error::Config(format!("cannot start a thread for isolated workers: {e}")))
}
