//! [`PortableChunkJob`]: a `par!` chunk in cluster mode, one job per chunk, which a node can
//! run from bytes.
//!
//! A [`PortableChunkJob`] claims its chunk the first time it is touched (run by a local
//! worker, or encoded for a node) and keeps it if a node gives it back, so every chunk runs
//! exactly once. A node runs the `par!` site's registered function on the chunk's encoded
//! bounds and captures; its partial result comes back as bytes and is decoded into the
//! caller's slot. A panic, a dead worker or a node that cannot run the chunk becomes a
//! panic of the `par!` call, as a local panic does; so does a chunk whose nodes were lost
//! as many times as the attempt limit allows (each loss before it reruns the chunk).

use crate::codec::CodecError;
use crate::error::JobError;
use crate::job::Completion;
use crate::outcome::Outcome;
use crate::queued_job::QueuedJob;
use crate::scope::{RemoteSide, Scope};
use crate::stats::{ExecutorCounters, Tally};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A chunk job has one copy (it is never duplicated): each of its completions counts.
const DONE: Completion = Completion::Stored {
    callback_panic: None,
};

const UNCLAIMED: usize = usize::MAX;
const NONE_LEFT: usize = usize::MAX - 1;

/// One chunk of a scoped run, able to travel to a node.
pub(crate) struct PortableChunkJob {
    scope: Arc<Scope>,
    index: AtomicUsize,
    /// Set when the chunk was to be skipped at encoding time: nothing travelled.
    skipped: AtomicBool,
}

impl PortableChunkJob {
    pub(crate) fn new(scope: Arc<Scope>) -> Self {
        PortableChunkJob {
            scope,
            index: AtomicUsize::new(UNCLAIMED),
            skipped: AtomicBool::new(false),
        }
    }

    /// This job's chunk, claimed on first use; `None` if every chunk was already claimed.
    fn index(&self) -> Option<usize> {
        let mut index = self.index.load(Ordering::Acquire);
        if index == UNCLAIMED {
            index = self.scope.claim_index().unwrap_or(NONE_LEFT);
            self.index.store(index, Ordering::Release);
        }
        (index != NONE_LEFT).then_some(index)
    }

    fn side(&self) -> &RemoteSide {
        self.scope
            .remote
            .as_ref()
            .expect("remote chunk jobs exist only in scopes with a remote side")
    }
}

impl QueuedJob for PortableChunkJob {
    fn task_id(&self) -> &'static str {
        self.scope.task
    }

    fn run(self: Box<Self>, counters: &ExecutorCounters) -> Completion {
        if let Some(index) = self.index() {
            self.scope.run_index(index, Some(counters));
        }
        DONE
    }

    /// Cancelled (the server shut down): the run is cancelled. Any other error (the chunk's
    /// nodes were all lost) is a panic of the `par!` call with the error's text.
    fn fail(self: Box<Self>, error: JobError) -> Completion {
        let index = self.index();
        match (error, index) {
            (JobError::Cancelled { .. }, _) => self.scope.cancel(),
            (error, Some(index)) => self.scope.panicked(index, Box::new(error.to_string())),
            (_, None) => {}
        }
        if index.is_some() {
            self.scope.finish_one();
        }
        DONE
    }

    fn fingerprint(&self) -> u64 {
        self.side().fingerprint
    }

    fn encode_args(&self) -> Result<Vec<u8>, CodecError> {
        match self.index() {
            Some(index) if !self.scope.skips(index) => {
                // SAFETY: chunk `index` is claimed and not finished (see `RemoteSide::new`).
                let encode = unsafe { &*self.side().encode };
                encode(index)
            }
            _ => {
                self.skipped.store(true, Ordering::Release);
                Err(CodecError::new("no chunk to run: skipped"))
            }
        }
    }

    fn complete_remote(self: Box<Self>, outcome: Outcome, tally: Tally<'_>) -> Completion {
        // A chunk job is completed once: this completion is kept.
        tally.leave_flight();
        let Some(index) = self.index() else {
            return DONE;
        };
        if self.skipped.load(Ordering::Acquire) {
            self.scope.finish_one();
            return DONE;
        }
        let task = self.scope.task;
        let failure = match outcome {
            Outcome::Ok(bytes) => {
                // SAFETY: chunk `index` is claimed and not finished (see `RemoteSide::new`).
                let store = unsafe { &*self.side().store };
                match store(index, &bytes) {
                    Ok(true) => {
                        self.scope.hit(index);
                        None
                    }
                    Ok(false) => None,
                    Err(e) => Some(format!(
                        "cannot decode the result of a chunk of `{task}` from a node: {e}"
                    )),
                }
            }
            Outcome::Panicked(message) => Some(message),
            Outcome::WorkerCrashed(message) => Some(format!(
                "a chunk of `{task}` lost its worker on a node: {message}"
            )),
            Outcome::Failed(message) => Some(format!(
                "a node could not run a chunk of `{task}`: {message}"
            )),
            Outcome::TimedOut(after) => Some(format!(
                "a chunk of `{task}` ran past its time limit of {after:?} on a node"
            )),
        };
        if let Some(message) = failure {
            self.scope.panicked(index, Box::new(message));
        }
        tally.record();
        self.scope.finish_one();
        DONE
    }
}
