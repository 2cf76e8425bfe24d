//! [`Group`]: a group of jobs (`JobBuilder::group`), with the count `wait_group` blocks on
//! and the members `cancel_group` settles; and [`Members`], a list of jobs that can be
//! cancelled together (a group's, or the server's jobs in no group, for `cancel_all`).
//!
//! A member is a weak handle on the job's result slot, so the list holds no job alive.
//! Finished members are dropped from the list when it has doubled since the last sweep:
//! adding a job costs O(1) amortized, and cancelling the list costs O(its jobs).

use crate::pending::Pending;
use crate::settle::Settle;
use std::sync::{Mutex, Weak};

/// The fewest entries a list keeps before it sweeps out finished jobs.
const FIRST_SWEEP: usize = 1024;

/// A group of jobs: its unfinished count and its members.
#[derive(Default)]
pub(crate) struct Group {
    /// Unfinished jobs of the group: what `wait_group` waits for.
    pub(crate) pending: Pending,
    /// The jobs of the group, for `cancel_group`.
    pub(crate) members: Members,
}

/// Jobs that may be cancelled together.
#[derive(Default)]
pub(crate) struct Members(Mutex<List>);

#[derive(Default)]
struct List {
    jobs: Vec<Weak<dyn Settle>>,
    /// The length at which the next sweep happens.
    sweep_at: usize,
}

impl Members {
    /// Adds a job.
    pub(crate) fn add(&self, job: Weak<dyn Settle>) {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if list.jobs.len() >= list.sweep_at.max(FIRST_SWEEP) {
            list.jobs.retain(|job| {
                job.strong_count() > 0 && job.upgrade().is_some_and(|job| !job.is_settled())
            });
            list.sweep_at = list.jobs.len() * 2;
        }
        list.jobs.push(job);
    }

    /// Takes every member out (jobs added meanwhile join a fresh list).
    pub(crate) fn take(&self) -> Vec<Weak<dyn Settle>> {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        list.sweep_at = 0;
        std::mem::take(&mut list.jobs)
    }
}
