//! [`Scope`]: the state a scoped chunk run shares with its queued jobs (the caller's
//! closure with its lifetime erased, the next chunk to claim, the lowest hit or panic), and
//! [`ChunkJob`], the local-only job that claims and runs chunks until none is left.
//!
//! The run itself (queuing the jobs, waiting, the results) is in [`crate::run_chunks`]; in
//! cluster mode a chunk travels to a node as a [`PortableChunkJob`](crate::portable_chunk::PortableChunkJob).

use crate::codec::CodecError;
use crate::error::JobError;
use crate::job::Completion;
use crate::progress::ChunkCounts;
use crate::queued_job::QueuedJob;
use crate::stats::ExecutorCounters;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, Thread};

/// One chunk, type-erased: runs chunk `i` and says whether it "hit" (found what a search
/// looks for), after which chunks above `i` that have not started are skipped.
pub(crate) type Body<'a> = dyn Fn(usize) -> bool + Sync + 'a;

/// The state a scoped run shares with its queued jobs.
pub(crate) struct Scope {
    /// The caller's closure, its lifetime erased: see the SAFETY notes in `claim` and
    /// `run_chunks::run`.
    body: *const Body<'static>,
    /// How chunks travel to nodes, in cluster mode (see [`crate::portable_chunk`]).
    pub(crate) remote: Option<RemoteSide>,
    chunks: usize,
    /// The next chunk to claim; claims past `chunks` find nothing to do.
    next: AtomicUsize,
    /// Claimed chunks that are over (run, skipped or cancelled).
    finished: AtomicUsize,
    /// Chunks above this index are skipped: the lowest chunk that hit or panicked.
    stop_after: AtomicUsize,
    /// Set when no further chunk may run: the server shut down or the caller unwinds.
    cancelled: AtomicBool,
    /// The panic of the lowest chunk that panicked.
    panic: Mutex<Option<(usize, Box<dyn Any + Send>)>>,
    caller: Thread,
    pub(crate) task: &'static str,
}

// SAFETY: `body` points to a `Sync` closure, which any thread may call through a shared
// reference; `claim` dereferences it only while the closure is alive. Every other field is
// `Send` and `Sync`.
unsafe impl Send for Scope {}
// SAFETY: as above.
unsafe impl Sync for Scope {}

impl Scope {
    /// A run of `chunks` chunks of `body` for the calling thread, which must not return
    /// before every chunk is over (see [`WaitGuard`]).
    ///
    /// # Safety
    /// `body` must stay alive until every chunk is finished: it is dereferenced only for a
    /// claimed, unfinished chunk.
    pub(crate) unsafe fn new(
        task: &'static str,
        chunks: usize,
        body: &Body<'_>,
        remote: Option<RemoteSide>,
    ) -> Scope {
        // SAFETY: only the lifetime changes; the caller keeps `body` alive (see above).
        let body = unsafe { std::mem::transmute::<*const Body<'_>, *const Body<'static>>(body) };
        Scope {
            body,
            remote,
            chunks,
            next: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            stop_after: AtomicUsize::new(usize::MAX),
            cancelled: AtomicBool::new(false),
            panic: Mutex::new(None),
            caller: thread::current(),
            task,
        }
    }

    /// Claims the next chunk and runs it, or skips it after a hit, a panic or a
    /// cancellation; returns false when every chunk was already claimed.
    pub(crate) fn claim(&self, stats: Option<&ExecutorCounters>) -> bool {
        match self.claim_index() {
            Some(index) => {
                self.run_index(index, stats);
                true
            }
            None => false,
        }
    }

    /// Claims the next chunk without running it; `None` when every chunk was claimed.
    pub(crate) fn claim_index(&self) -> Option<usize> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < self.chunks).then_some(index)
    }

    /// Whether claimed chunk `index` is to be skipped: a lower chunk hit or panicked, or the
    /// run is cancelled.
    pub(crate) fn skips(&self, index: usize) -> bool {
        self.cancelled.load(Ordering::Acquire) || index > self.stop_after.load(Ordering::Acquire)
    }

    /// Records that chunk `index` hit: chunks above it are skipped from now on.
    pub(crate) fn hit(&self, index: usize) {
        self.stop_after.fetch_min(index, Ordering::AcqRel);
    }

    /// Records that chunk `index` panicked (here or on a node), keeping the lowest.
    pub(crate) fn panicked(&self, index: usize, payload: Box<dyn Any + Send>) {
        self.hit(index);
        let mut panic = self.panic.lock().unwrap_or_else(PoisonError::into_inner);
        if panic.as_ref().is_none_or(|(first, _)| index < *first) {
            *panic = Some((index, payload));
        }
    }

    /// Marks the run cancelled: chunks not yet run are skipped.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// Runs claimed chunk `index` here (or skips it), then counts it finished.
    pub(crate) fn run_index(&self, index: usize, stats: Option<&ExecutorCounters>) {
        if !self.skips(index) {
            // SAFETY: chunk `index` is claimed and not yet counted in `finished`, so the
            // caller of `Scope::new`, which owns the closure on its stack, has not returned:
            // it waits (even when unwinding) until `finished == chunks`.
            let body = unsafe { &*self.body };
            let run = || catch_unwind(AssertUnwindSafe(|| body(index)));
            // Counted as running while it runs, and done before `finish_one` below.
            let ran = match stats {
                Some(stats) => {
                    let (ran, run_time) = stats.timed(run);
                    stats.record(run_time);
                    ran
                }
                None => run(),
            };
            match ran {
                Ok(false) => {}
                Ok(true) => self.hit(index),
                Err(payload) => self.panicked(index, payload),
            }
        }
        self.finish_one();
    }

    /// Counts one claimed chunk over. Past this point the chunk's closures are not touched:
    /// `run` may return at once.
    pub(crate) fn finish_one(&self) {
        if self.finished.fetch_add(1, Ordering::AcqRel) + 1 == self.chunks {
            self.caller.unpark();
        }
    }

    fn all_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire) == self.chunks
    }

    /// Blocks the caller until every chunk is over. Only the caller's thread calls it.
    ///
    /// It parks at once rather than spinning first: the workers that run the chunks may
    /// need the core (measured on 2 cores, spinning 20 µs made an empty `par!` loop take
    /// twice as long).
    fn wait(&self) {
        while !self.all_finished() {
            thread::park();
        }
    }
}

/// Waits for the scope's chunks when dropped, on the normal path and when unwinding, so no
/// job can call the closure after the run has returned.
pub(crate) struct WaitGuard<'a>(pub(crate) &'a Scope);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            // Unwinding before the chunks were all claimed (not expected: enqueueing does not
            // panic): skip the rest and claim them here, then wait for those running.
            self.0.cancelled.store(true, Ordering::Release);
            while self.0.claim(None) {}
        }
        self.0.wait();
    }
}

/// A queued job of a scope: claims and runs chunks until none is left.
pub(crate) struct ChunkJob(pub(crate) Arc<Scope>);

impl QueuedJob for ChunkJob {
    fn task_id(&self) -> &'static str {
        self.0.task
    }

    fn run(self: Box<Self>, stats: &ExecutorCounters) -> Completion {
        while self.0.claim(Some(stats)) {}
        Completion::Stored {
            callback_panic: None,
        }
    }

    fn local_only(&self) -> bool {
        true
    }

    fn fail(self: Box<Self>, _error: JobError) -> Completion {
        self.0.cancelled.store(true, Ordering::Release);
        while self.0.claim(None) {}
        Completion::Stored {
            callback_panic: None,
        }
    }
}

impl Scope {
    /// Takes the panic of the lowest chunk that panicked, once every chunk is over.
    pub(crate) fn take_panic(&self) -> Option<Box<dyn Any + Send>> {
        let panic = self
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        panic.map(|(_, payload)| payload)
    }

    /// Whether the run was cancelled (the server shut down before every chunk ran).
    pub(crate) fn was_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

/// What the progress bar shows of a run: its chunks over of all.
impl ChunkCounts for Scope {
    fn chunks_over(&self) -> (usize, usize) {
        (self.finished.load(Ordering::Relaxed), self.chunks)
    }
}

/// Encodes chunk `i`'s arguments as the site's registered function takes them.
pub(crate) type Encode<'a> = dyn Fn(usize) -> Result<Vec<u8>, CodecError> + Sync + 'a;

/// Decodes chunk `i`'s partial from a node, stores it; returns whether it hit.
pub(crate) type Store<'a> = dyn Fn(usize, &[u8]) -> Result<bool, String> + Sync + 'a;

/// What a caller gives to let its chunks run on nodes.
pub(crate) struct Remote<'a> {
    pub(crate) fingerprint: u64,
    pub(crate) encode: &'a Encode<'a>,
    pub(crate) store: &'a Store<'a>,
}

/// [`Remote`] with its lifetimes erased, kept in the scope.
pub(crate) struct RemoteSide {
    pub(crate) fingerprint: u64,
    pub(crate) encode: *const Encode<'static>,
    pub(crate) store: *const Store<'static>,
}

impl RemoteSide {
    pub(crate) fn new(remote: Remote<'_>) -> Self {
        // SAFETY: only the lifetimes change. As for the scope's body, the pointers are
        // dereferenced only for a claimed chunk that is not yet finished, and the caller
        // that owns the closures does not return before every chunk is finished.
        unsafe {
            RemoteSide {
                fingerprint: remote.fingerprint,
                encode: std::mem::transmute::<*const Encode<'_>, *const Encode<'static>>(
                    remote.encode,
                ),
                store: std::mem::transmute::<*const Store<'_>, *const Store<'static>>(remote.store),
            }
        }
    }
}
