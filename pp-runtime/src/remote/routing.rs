//! Where a retried job goes: away from the nodes it failed on, while another place can take
//! it ([`Take`], [`RETRY_ELSEWHERE_WAIT`]).
//!
//! A job given back (its node lost, its worker dead) waits in the retry queue, which every
//! taker empties first. Without a rule the node that just failed it, which has the free
//! slot, takes it back at once: a node whose workers keep dying then burns all of a job's
//! attempts. So a node leaves alone a retried job that failed on it while the cluster
//! client says another place (a connected node that is not put aside, or a local worker)
//! can take jobs, and takes it only once [`RETRY_ELSEWHERE_WAIT`] has passed since the job
//! was given back (the others were full all that time) or when no other place is usable.
//! So a job is never held back for more than that wait, and never at all on a lone node.
//! Local workers take any retried job: no job ever failed on them.

use super::remote_job::RemoteJob;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a retried job waits for a place other than the nodes it failed on, while some
/// other place is usable; after that any node takes it. Long enough for a busy node's
/// window to make room (results of short jobs come back in milliseconds), short enough
/// that a job is not held back much when the other nodes run long jobs.
pub const RETRY_ELSEWHERE_WAIT: Duration = Duration::from_secs(2);

/// How many retried jobs a node looks at, from the front, for one it may take: a node
/// that failed many of them does not scan the whole retry queue on each take.
const RETRY_SCAN: usize = 64;

/// What a node got from [`JobFeed::take_for`](super::JobFeed::take_for).
#[derive(Debug)]
pub enum Take {
    /// A job to run.
    Job(RemoteJob),
    /// Nothing now: only retried jobs that failed on this node are queued, left for other
    /// places; the first of them is this node's at this time, if still queued.
    NotBefore(Instant),
    /// Nothing queued (or the server is shutting down).
    Empty,
}

impl Take {
    /// The job, if one was taken.
    pub fn job(self) -> Option<RemoteJob> {
        match self {
            Take::Job(job) => Some(job),
            Take::NotBefore(_) | Take::Empty => None,
        }
    }
}

/// The index of the first retried job (among the first [`RETRY_SCAN`]) that node `taker`
/// may take at `now`; or, if none, when the first job it left alone becomes its. `elsewhere`
/// says whether another place can take jobs.
pub(crate) fn pick(
    retry: &VecDeque<RemoteJob>,
    taker: &str,
    elsewhere: bool,
    now: Instant,
) -> Result<usize, Option<Instant>> {
    if !elsewhere {
        return if retry.is_empty() { Err(None) } else { Ok(0) };
    }
    let mut later: Option<Instant> = None;
    for (index, job) in retry.iter().take(RETRY_SCAN).enumerate() {
        if !job.failed_on.iter().any(|node| node == taker) {
            return Ok(index);
        }
        let due = job.given_back.map_or(now, |at| at + RETRY_ELSEWHERE_WAIT);
        if due <= now {
            return Ok(index);
        }
        later = Some(later.map_or(due, |l| l.min(due)));
    }
    Err(later)
}
