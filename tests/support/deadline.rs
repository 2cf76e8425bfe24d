//! A time limit on a node, measured the same way by tests/node_control.rs (which prints
//! the numbers) and benches/node_deadline.rs (which tabulates them): rounds of a hung job
//! with a limit and a tiny job queued behind it on the node's only worker.
//!
//! Included by path (`#[path]`) where needed: the jobs are `#[pp::parallel]` functions,
//! which every binary that includes this file registers.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

/// Waited at most for any one result, so that a lost reply fails instead of hanging.
pub const RESULT_WAIT: Duration = Duration::from_secs(20);

/// The tiny job.
#[pp::parallel]
pub fn square(x: u64) -> u64 {
    x * x
}

/// Never returns, holding a core: a hung job.
#[pp::parallel]
pub fn spin() -> u64 {
    loop {
        std::hint::spin_loop();
    }
}

/// Never returns, asleep: a hung job that leaves the cores alone.
#[pp::parallel]
pub fn sleep_forever() -> u64 {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The result of `job`, waited for at most [`RESULT_WAIT`].
///
/// # Panics
/// When no result comes in time.
pub fn bounded<R>(job: pp::Job<R>) -> Result<R, pp::JobError> {
    assert!(
        job.wait_timeout(RESULT_WAIT),
        "no result within {RESULT_WAIT:?}"
    );
    job.result()
}

/// The times of `rounds` round trips of the tiny job on `server`.
pub fn round_trips(server: &pp::Server, rounds: usize) -> Vec<Duration> {
    (0..rounds)
        .map(|_| {
            let sent = Instant::now();
            assert_eq!(bounded(server.submit(square, (2,))), Ok(4));
            sent.elapsed()
        })
        .collect()
}

/// The rounds of one kind of hung job.
pub struct HungRounds {
    /// `spinning` or `sleeping`.
    pub what: &'static str,
    /// From the submit plus the limit to the caller's release (`TimedOut`), a round.
    pub late: Vec<Duration>,
    /// From that release to the result of the job queued behind, a round.
    pub next: Vec<Duration>,
}

/// `rounds` rounds on `server` of a spinning, then a sleeping, hung job with time limit
/// `limit`, each with a tiny job queued behind it (on a node with one worker, it runs on
/// the replacement worker).
///
/// # Panics
/// When a hung job does not end `TimedOut`, or the job behind it fails.
pub fn hung_rounds(server: &pp::Server, rounds: usize, limit: Duration) -> Vec<HungRounds> {
    [("spinning", spin), ("sleeping", sleep_forever)]
        .into_iter()
        .map(|(what, hung)| {
            let mut late = Vec::new();
            let mut next = Vec::new();
            for _ in 0..rounds {
                let started = Instant::now();
                let hung = server.job(hung, ()).timeout(limit).submit();
                let behind = server.submit(square, (5,));
                let outcome = bounded(hung);
                let released = started.elapsed();
                assert!(
                    matches!(outcome, Err(pp::JobError::TimedOut { .. })),
                    "{outcome:?}"
                );
                assert_eq!(bounded(behind), Ok(25));
                next.push(started.elapsed() - released);
                late.push(released.saturating_sub(limit));
            }
            HungRounds { what, late, next }
        })
        .collect()
}
