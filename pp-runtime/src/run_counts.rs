//! [`RunCounts`]: the jobs finished, their run time and the jobs running now of one row of
//! the statistics, spread over cache lines by thread.
//!
//! Why: each tiny job updates these three or four times (running, then finished with its
//! time). In one shared line, the local workers finishing jobs at once passed that line
//! back and forth between their cores on every update; per thread, each worker updates a
//! line its core already holds. Readers (the statistics, a waiter deciding how long to
//! poll) add the shards up, which is rare next to the updates.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How many lines the counts are spread over (threads beyond share them).
const SHARDS: usize = 8;

thread_local! {
    /// This thread's shard, chosen on first use (round robin over the threads).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The shard of the calling thread.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|shard| {
        let mut index = shard.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(index);
        }
        index
    })
}

/// One thread's counts, in a line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    jobs: AtomicU64,
    nanos: AtomicU64,
    running: AtomicUsize,
}

/// Finished jobs with their total run time, and jobs running now.
#[derive(Debug, Default)]
pub(crate) struct RunCounts {
    shards: Box<[Shard; SHARDS]>,
}

impl RunCounts {
    fn mine(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    /// Counts a finished job that ran for `time`.
    pub(crate) fn add(&self, time: Duration) {
        let shard = self.mine();
        shard.jobs.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        shard.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Finished jobs.
    pub(crate) fn jobs(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.jobs.load(Ordering::Relaxed))
            .sum()
    }

    fn nanos(&self) -> u64 {
        let nanos = self.shards.iter().map(|s| s.nanos.load(Ordering::Relaxed));
        nanos.fold(0, u64::saturating_add)
    }

    /// Their total run time.
    pub(crate) fn total(&self) -> Duration {
        Duration::from_nanos(self.nanos())
    }

    /// Their average run time (zero before the first).
    pub(crate) fn average(&self) -> Duration {
        match self.jobs() {
            0 => Duration::ZERO,
            jobs => Duration::from_nanos(self.nanos() / jobs),
        }
    }

    /// A job starts running on this thread (call [`stopped`](RunCounts::stopped) on the
    /// same thread after).
    pub(crate) fn started(&self) {
        self.mine().running.fetch_add(1, Ordering::Relaxed);
    }

    /// The job that [`started`](RunCounts::started) on this thread stopped: release
    /// ordering, so that whoever sees what it did next sees it stopped.
    pub(crate) fn stopped(&self) {
        self.mine().running.fetch_sub(1, Ordering::Release);
    }

    /// Jobs running now.
    pub(crate) fn running(&self) -> usize {
        (self.shards.iter())
            .map(|s| s.running.load(Ordering::Acquire))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::RunCounts;
    use std::time::Duration;

    #[test]
    fn counts_add_up_across_threads() {
        let counts = RunCounts::default();
        std::thread::scope(|scope| {
            for _ in 0..12 {
                scope.spawn(|| {
                    counts.started();
                    counts.add(Duration::from_millis(10));
                    counts.stopped();
                });
            }
        });
        assert_eq!(counts.jobs(), 12);
        assert_eq!(counts.total(), Duration::from_millis(120));
        assert_eq!(counts.average(), Duration::from_millis(10));
        assert_eq!(counts.running(), 0);
    }
}
