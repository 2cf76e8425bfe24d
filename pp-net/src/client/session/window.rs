//! The in-flight window: how many jobs a session keeps on its node, from the service time
//! of the node's jobs.

use std::time::Duration;

/// Jobs in flight on a node beyond its worker count, at least: enough to hide the round
/// trip for jobs that take longer than it.
const MIN_EXTRA_IN_FLIGHT: usize = 2;

/// Jobs in flight on a node beyond its worker count, at most.
const MAX_EXTRA_IN_FLIGHT: usize = 1024;

/// How much work, per worker, the window keeps queued on a node beyond what its workers
/// run: short jobs get a deep window (so tiny jobs stream), long ones a shallow one (so a
/// node never hoards work that others could do).
const QUEUED_WORK_PER_WORKER: Duration = Duration::from_millis(2);

/// The number of jobs to keep in flight on one node, from the service time of its jobs.
pub(crate) struct InFlightWindow {
    workers: usize,
    /// Moving average of the time a job takes on the node, in seconds.
    service: Option<f64>,
}

impl InFlightWindow {
    /// The window of a node with `workers` workers, before any result.
    pub(crate) fn new(workers: u32) -> Self {
        InFlightWindow {
            workers: workers as usize,
            service: None,
        }
    }

    /// Takes in a result that came `latency` after its job was sent with `depth` jobs in
    /// flight (itself included). Those ahead of it were shared by the node's workers, so
    /// the job's own time is about the latency over `depth / workers` (at least one):
    /// the window measures work, not the queueing it causes itself. With no queue the
    /// round trip counts as service, which errs on the side of a shallower window.
    pub(crate) fn observe(&mut self, latency: Duration, depth: usize) {
        let rounds = (depth as f64 / self.workers.max(1) as f64).max(1.0);
        let sample = latency.as_secs_f64() / rounds;
        self.service = Some(match self.service {
            None => sample,
            Some(avg) => 0.9 * avg + 0.1 * sample,
        });
    }

    /// Jobs to keep in flight now: the workers, plus enough queued to keep them busy.
    pub(crate) fn size(&self) -> usize {
        let extra = match self.service {
            None => MIN_EXTRA_IN_FLIGHT,
            Some(service) => {
                let budget = QUEUED_WORK_PER_WORKER.as_secs_f64() * self.workers as f64;
                let extra = (budget / service.max(1e-9)).ceil();
                (extra.min(MAX_EXTRA_IN_FLIGHT as f64) as usize).max(MIN_EXTRA_IN_FLIGHT)
            }
        };
        self.workers + extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_deep_for_tiny_jobs_and_shallow_for_long_ones() {
        let mut window = InFlightWindow::new(2);
        assert_eq!(window.size(), 2 + MIN_EXTRA_IN_FLIGHT, "before any result");
        for _ in 0..100 {
            window.observe(Duration::from_micros(20), 1);
        }
        assert_eq!(window.size(), 2 + 200, "4 ms of 20 µs jobs");
        for _ in 0..200 {
            window.observe(Duration::from_millis(50), 2);
        }
        assert_eq!(window.size(), 2 + MIN_EXTRA_IN_FLIGHT);
        for _ in 0..200 {
            window.observe(Duration::from_nanos(10), 1);
        }
        assert_eq!(window.size(), 2 + MAX_EXTRA_IN_FLIGHT);
    }

    #[test]
    fn queueing_behind_the_window_does_not_shrink_it() {
        // 10 µs jobs on 2 workers, 400 in flight: each waits 200 rounds, 2 ms in all.
        let mut window = InFlightWindow::new(2);
        for _ in 0..200 {
            window.observe(Duration::from_millis(2), 400);
        }
        assert_eq!(
            window.size(),
            2 + 400,
            "4 ms of 10 µs jobs, as without a queue"
        );
    }
}
