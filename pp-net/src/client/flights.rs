//! The jobs every session has in flight, shared so that a session with nothing left to
//! take can find a straggler on another node and run a second copy of it (see
//! [`ClusterOptions::duplicate_stragglers`](pp_runtime::ClusterOptions::duplicate_stragglers)).
//!
//! When the runtime settles jobs without the cluster (a cancel), [`Flights::settled_elsewhere`]
//! tells every session, which then forgets its settled jobs in flight and asks their node
//! to drop them (`Message::Cancel`).
//!
//! All sessions run on the client's one network thread, and no lock here is held across
//! an `.await`: the locks only guard against misuse, they are never contended. Lock order:
//! the registry, then one session's map.

use pp_runtime::remote::{JobFeed, RemoteJob};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A job in flight longer than this many times the average job latency is a straggler...
pub(crate) const STRAGGLER_FACTOR: u32 = 3;

/// ... and in flight for at least this long.
pub(crate) const STRAGGLER_MIN: Duration = Duration::from_millis(50);

/// One session's jobs in flight: the job, and when it was sent.
pub(crate) type InFlight = HashMap<u64, (RemoteJob, Instant)>;

/// One session's in-flight map, shared with the registry.
pub(crate) type SharedInFlight = Arc<Mutex<InFlight>>;

/// Locks a session's map.
pub(crate) fn lock(flight: &SharedInFlight) -> MutexGuard<'_, InFlight> {
    flight.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What [`Flights::straggler`] found.
pub(crate) enum Straggler {
    /// A second copy of a straggler, to send.
    Found(RemoteJob),
    /// No straggler now; the first job in flight elsewhere becomes one at this time.
    Later(Instant),
    /// Nothing in flight elsewhere could become one (or no latency is known yet).
    None,
}

/// Every session's in-flight map, and the average latency of jobs across nodes.
pub(crate) struct Flights {
    inner: Mutex<FlightRegistry>,
    /// Bumped when the runtime settled jobs elsewhere: each session looks for its own.
    settled: watch::Sender<u64>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            inner: Mutex::default(),
            settled: watch::Sender::new(0),
        }
    }
}

/// The sessions' in-flight maps by session id, and the latency average, under one lock.
#[derive(Default)]
struct FlightRegistry {
    next_id: u64,
    sessions: HashMap<u64, SharedInFlight>,
    /// Moving average of the time from sending a job to its result, over all nodes, in
    /// seconds.
    latency: Option<f64>,
}

impl Flights {
    fn registry(&self) -> MutexGuard<'_, FlightRegistry> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new session; returns its id and its (empty) map.
    pub(crate) fn register(&self) -> (u64, SharedInFlight) {
        let mut registry = self.registry();
        registry.next_id += 1;
        let id = registry.next_id;
        let flight = SharedInFlight::default();
        registry.sessions.insert(id, Arc::clone(&flight));
        (id, flight)
    }

    /// The runtime settled jobs without the cluster (cancelled them): every session looks
    /// for its settled jobs in flight. Cheap, never blocks: callable from any thread.
    pub(crate) fn settled_elsewhere(&self) {
        self.settled.send_modify(|generation| *generation += 1);
    }

    /// Changes after each [`Flights::settled_elsewhere`].
    pub(crate) fn subscribe_settled(&self) -> watch::Receiver<u64> {
        self.settled.subscribe()
    }

    /// Forgets a session that ended: its jobs can no longer be copied from it.
    pub(crate) fn unregister(&self, id: u64) {
        self.registry().sessions.remove(&id);
    }

    /// Counts one job's latency (sent to result) in the average.
    pub(crate) fn observe(&self, latency: Duration) {
        let sample = latency.as_secs_f64();
        let mut registry = self.registry();
        registry.latency = Some(match registry.latency {
            None => sample,
            Some(avg) => 0.9 * avg + 0.1 * sample,
        });
    }

    /// How long a job must have been in flight to be a straggler; `None` before any
    /// result came back.
    fn threshold(registry: &FlightRegistry) -> Option<Duration> {
        let average = Duration::try_from_secs_f64(registry.latency?).ok()?;
        Some(average.saturating_mul(STRAGGLER_FACTOR).max(STRAGGLER_MIN))
    }

    /// A second copy of the oldest straggler in flight on a session other than
    /// `session_id` that has no copy yet, or when to look again.
    pub(crate) fn straggler(&self, session_id: u64, now: Instant) -> Straggler {
        let registry = self.registry();
        let Some(threshold) = Self::threshold(&registry) else {
            return Straggler::None;
        };
        let mut due = Vec::new();
        let mut later: Option<Instant> = None;
        for (&id, flight) in &registry.sessions {
            if id == session_id {
                continue;
            }
            for (&job_id, (job, sent)) in lock(flight).iter() {
                if job.is_completed() {
                    continue;
                }
                let at = *sent + threshold;
                if at <= now {
                    due.push((*sent, id, job_id));
                } else {
                    later = Some(later.map_or(at, |l| l.min(at)));
                }
            }
        }
        due.sort_unstable();
        for (_, id, job_id) in due {
            let copy = registry.sessions.get(&id).and_then(|flight| {
                lock(flight)
                    .get_mut(&job_id)
                    .and_then(|(job, _)| job.duplicate())
            });
            if let Some(copy) = copy {
                return Straggler::Found(copy);
            }
        }
        later.map_or(Straggler::None, Straggler::Later)
    }
}

/// Takes the settled jobs out of `flight` (cancelled, or finished by a copy elsewhere)
/// and returns their ids, for their node to drop them. Each is given back to `feed`,
/// which drops a settled job: nothing more is done for it, and its node's reply, if one
/// comes, is dropped as a job no longer in flight.
pub(crate) fn forget_settled(flight: &SharedInFlight, feed: &JobFeed) -> Vec<u64> {
    let settled: Vec<(u64, RemoteJob)> = {
        let mut flight = lock(flight);
        let ids: Vec<u64> = flight
            .iter()
            .filter(|(_, (job, _))| job.is_settled())
            .map(|(&id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| flight.remove(&id).map(|(job, _)| (id, job)))
            .collect()
    };
    // Outside the lock: giving a job back may log.
    settled
        .into_iter()
        .map(|(id, job)| {
            feed.requeue(job);
            id
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_three_average_latencies_and_at_least_the_minimum() {
        let flights = Flights::default();
        assert_eq!(Flights::threshold(&flights.registry()), None);
        flights.observe(Duration::from_millis(100));
        assert_eq!(
            Flights::threshold(&flights.registry()),
            Some(Duration::from_millis(300))
        );
        for _ in 0..200 {
            flights.observe(Duration::from_millis(1));
        }
        assert_eq!(Flights::threshold(&flights.registry()), Some(STRAGGLER_MIN));
    }
}
