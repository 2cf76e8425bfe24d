//! The watch over the job a worker runs: its time limit and its cancel.
//!
//! A worker loop runs this beside its writer and its reader (see `worker_loop`); it ends
//! only when the worker must be killed. It sleeps until the running job's deadline (when
//! the job has a time limit), and wakes early when the running job changes to one worth
//! watching or when the client withdraws jobs. With no time limit and no cancel it never
//! wakes: jobs without a limit cost nothing here.
//!
//! tokio's timer fires on the millisecond tick after a deadline, and later when its driver
//! is busy: the watch sleeps with it until [`PRECISE_LAST`] before the deadline and the
//! rest on a blocking thread, whose sleep ends within tens of microseconds of the
//! deadline, so that the client hears of a time limit when it passes (issue 16: the caller
//! released within 5 ms of it). Only a job that runs that close to its limit pays this.

use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::cancels::Cancels;

/// How long before a deadline the watch leaves tokio's timer for a precise sleep: more
/// than the timer's granularity (1 ms).
const PRECISE_LAST: Duration = Duration::from_millis(2);

/// The job a worker runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Running {
    /// The client's id for it.
    pub(crate) job_id: u64,
    /// Its time limit.
    pub(crate) timeout: Option<Duration>,
    /// When the worker started it.
    pub(crate) started: Instant,
}

/// Why the worker must be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Its running job passed its time limit, `after`.
    TimedOut {
        /// The job's time limit.
        after: Duration,
    },
    /// The client withdrew its running job.
    Cancelled,
}

/// Returns when the worker must be killed: the job `running()` names passed its time
/// limit, or the client withdrew it (that cancel is then taken from `cancels`).
/// `running_changed` is signalled when the running job changes to one with a time limit,
/// or to any while cancels are pending; a change it was not told of is seen at the next
/// wake-up.
pub(crate) async fn watch_running(
    running: impl Fn() -> Option<Running>,
    running_changed: &Notify,
    cancels: &Cancels,
) -> Kill {
    let mut cancelled = cancels.subscribe();
    loop {
        let now = running();
        if let Some(job) = now {
            if cancels.take(job.job_id) {
                return Kill::Cancelled;
            }
        }
        let deadline = now.and_then(|job| Some((job, job.timeout?)));
        tokio::select! {
            () = sleep_until(deadline.map(|(job, after)| job.started + after)) => {
                if let Some((job, after)) = deadline {
                    // Still the same job (no reply came meanwhile): its time is up.
                    if running().is_some_and(|again| again.job_id == job.job_id) {
                        return Kill::TimedOut { after };
                    }
                }
            }
            () = running_changed.notified() => {}
            () = changed(&mut cancelled) => {}
        }
    }
}

/// Sleeps until `at`, the last [`PRECISE_LAST`] of it on a blocking thread; never returns
/// for `None`.
async fn sleep_until(at: Option<Instant>) {
    let Some(at) = at else {
        return std::future::pending().await;
    };
    if let Some(early) = at.checked_sub(PRECISE_LAST) {
        tokio::time::sleep_until(early.into()).await;
    }
    let left = at.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return;
    }
    // A blocking thread left sleeping when the watch moves on (the job answered) ends
    // within `PRECISE_LAST`.
    if tokio::task::spawn_blocking(move || std::thread::sleep(left))
        .await
        .is_err()
    {
        // No blocking thread (the runtime shuts down): the timer's precision will do.
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Waits for the next cancel; never returns once the cancels are gone (the session ends).
async fn changed(cancelled: &mut tokio::sync::watch::Receiver<u64>) {
    if cancelled.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const WAIT: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_job_past_its_limit_is_killed_and_one_answered_in_time_is_not() {
        let cancels = Cancels::default();
        let changed = Notify::new();
        let job = |job_id, millis| Running {
            job_id,
            timeout: Some(Duration::from_millis(millis)),
            started: Instant::now(),
        };
        let current = Mutex::new(Some(job(1, 10_000)));
        let watch = watch_running(|| *current.lock().unwrap(), &changed, &cancels);
        tokio::pin!(watch);
        // Job 1 answered in time; job 2 runs with 50 ms.
        tokio::select! {
            _ = &mut watch => panic!("killed early"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        *current.lock().unwrap() = Some(job(2, 50));
        changed.notify_one();
        let start = Instant::now();
        let kill = tokio::time::timeout(WAIT, &mut watch).await.unwrap();
        assert_eq!(
            kill,
            Kill::TimedOut {
                after: Duration::from_millis(50)
            }
        );
        assert!(
            start.elapsed() >= Duration::from_millis(40),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_cancel_of_the_running_job_kills_and_of_another_does_not() {
        let cancels = Cancels::default();
        let changed = Notify::new();
        let running = Running {
            job_id: 7,
            timeout: None,
            started: Instant::now(),
        };
        let watch = watch_running(|| Some(running), &changed, &cancels);
        tokio::pin!(watch);
        cancels.cancel(&[8], false);
        tokio::select! {
            _ = &mut watch => panic!("killed for another job's cancel"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        cancels.cancel(&[7], false);
        let kill = tokio::time::timeout(WAIT, &mut watch).await.unwrap();
        assert_eq!(kill, Kill::Cancelled);
        assert!(!cancels.contains(7), "the cancel is taken");
        assert!(cancels.contains(8));
    }
}
