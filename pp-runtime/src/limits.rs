//! [`JobLimits`]: what bounds one job, its time limit per attempt and its retries by policy,
//! as a submission sets them (job, template, then the server's defaults).

use std::time::Duration;

/// A job's time limit per attempt and its retries; `None`: not set at this level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JobLimits {
    /// The time limit of each attempt, counted from when the attempt starts running.
    pub(crate) timeout: Option<Duration>,
    /// Retries after a `TimedOut` or `WorkerCrashed` attempt (see
    /// [`JobFeed::complete`](crate::remote::JobFeed::complete)); `None`: the defaults.
    pub(crate) retries: Option<u32>,
}

impl JobLimits {
    /// These limits, with what is unset taken from `defaults`.
    pub(crate) fn or(self, defaults: JobLimits) -> JobLimits {
        JobLimits {
            timeout: self.timeout.or(defaults.timeout),
            retries: self.retries.or(defaults.retries),
        }
    }
}
