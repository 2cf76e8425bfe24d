//! The clock of job run times: one clock read per job on a local worker running jobs back to
//! back, where two were paid.
//!
//! Why: for tiny jobs the two reads of a job's start and end were the largest single cost
//! of a worker (about 11% of a worker's samples in `clock_gettime` under `perf`, running
//! 1,000 tiny jobs on this machine's virtual CPUs). A drainer running jobs back to back now
//! takes the end of one job's function as the start of the next, so a job's run time also
//! holds the pool's bookkeeping between the two (taking the job from the queue, storing the
//! previous result: a fraction of a microsecond). The chain is broken, and the next job
//! reads the clock at its start, whenever the thread does something else between two jobs:
//! it finds the queue empty, runs a callback or wakes a waiting thread. A job run inside
//! another's function (a sub-job run by a waiting job) reads the clock twice and leaves the
//! chain alone, and so does every job on a thread that is no drainer.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    /// Whether this thread is a drainer at its top level (jobs may chain).
    static CHAINING: Cell<bool> = const { Cell::new(false) };
    /// When the last job's function ended, if nothing else ran since.
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether a timed function runs on this thread now.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Lets the jobs run on this thread chain their clock reads until dropped (a drainer).
pub(crate) struct Chained(bool);

/// Starts chaining on this thread (see the module's doc) until the guard drops.
pub(crate) fn chain() -> Chained {
    LAST.set(None);
    Chained(CHAINING.replace(true))
}

impl Drop for Chained {
    fn drop(&mut self) {
        CHAINING.set(self.0);
        LAST.set(None);
    }
}

/// Something other than jobs ran on this thread: the next job reads the clock at its start.
pub(crate) fn break_chain() {
    LAST.set(None);
}

/// Runs `run` (a job's function, which must not unwind: callers catch panics inside it) and
/// returns its output and run time.
pub(crate) fn timed<T>(run: impl FnOnce() -> T) -> (T, Duration) {
    if INSIDE.get() {
        let start = Instant::now();
        let output = run();
        return (output, start.elapsed());
    }
    let start = LAST.take().unwrap_or_else(Instant::now);
    INSIDE.set(true);
    let output = run();
    INSIDE.set(false);
    let end = Instant::now();
    if CHAINING.get() {
        LAST.set(Some(end));
    }
    (output, end.saturating_duration_since(start))
}

#[cfg(test)]
mod tests {
    use super::{break_chain, chain, timed};
    use std::time::Duration;

    #[test]
    fn a_job_after_a_break_or_off_a_drainer_is_timed_alone() {
        let pause = Duration::from_millis(30);
        let nap = || std::thread::sleep(Duration::from_millis(1));
        // No drainer: the pause between jobs is not counted.
        timed(nap);
        std::thread::sleep(pause);
        assert!(timed(nap).1 < pause);
        let _chained = chain();
        timed(nap);
        break_chain();
        std::thread::sleep(pause);
        assert!(timed(nap).1 < pause, "a broken chain");
        // Back to back: the next job starts where the last one ended.
        let (_, first) = timed(nap);
        let (_, second) = timed(nap);
        assert!(first >= Duration::from_millis(1) && second >= Duration::from_millis(1));
    }

    #[test]
    fn a_job_inside_another_is_timed_alone_and_keeps_the_chain() {
        let _chained = chain();
        let (inner, outer) = timed(|| {
            std::thread::sleep(Duration::from_millis(5));
            timed(|| std::thread::sleep(Duration::from_millis(1))).1
        });
        assert!(inner < Duration::from_millis(5), "{inner:?}");
        assert!(outer >= Duration::from_millis(6), "{outer:?}");
    }
}
