//! [`Polling`]: how a thread blocked on a job's result polls before it parks, decided when
//! the job is submitted (the first stage of the waiting policy: see [`crate::job`]).

use std::time::Duration;

/// How long a waiter spins before it parks: long enough to catch a short job without a
/// thread wake-up round trip, short enough not to steal a core from the workers.
pub(crate) const SPIN: Duration = Duration::from_micros(20);

/// The longest a waiter keeps polling (yielding the CPU between polls) when the server said
/// a core is idle: past it, it parks.
pub(crate) const MAX_IDLE_CORE_WAIT: Duration = Duration::from_millis(2);

/// How a blocking waiter polls for its result before it parks (decided at submission).
/// Eight bytes: it is in every job's result slot, whose size decides how fast the
/// allocator serves it (the hot path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Polling {
    /// How long it polls, in microseconds (at most [`MAX_IDLE_CORE_WAIT`]).
    micros: u32,
    /// Whether it gives the CPU away between polls from the start, rather than spinning
    /// for [`SPIN`] first: when the result comes through other threads and processes that
    /// may need this very CPU (a remote job's chain of hops), a spin would hold them up.
    yielding: bool,
}

impl Polling {
    /// Polls for `time` (whole microseconds), yielding between polls from the start if
    /// `yielding`.
    pub(crate) fn new(time: Duration, yielding: bool) -> Self {
        Polling {
            micros: u32::try_from(time.as_micros()).unwrap_or(u32::MAX),
            yielding,
        }
    }

    /// Polls for `time`, spinning for the first [`SPIN`] of it.
    pub(crate) fn spinning(time: Duration) -> Self {
        Polling::new(time, false)
    }

    /// How long it polls.
    pub(crate) fn time(&self) -> Duration {
        Duration::from_micros(u64::from(self.micros))
    }

    /// Whether it gives the CPU away between polls from the start.
    pub(crate) fn yielding(&self) -> bool {
        self.yielding
    }
}
