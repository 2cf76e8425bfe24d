//! The jobs every session has in flight, shared so that a session with nothing left to
//! take can find a straggler on another node and run a second copy of it (see
//! [`ClusterOptions::duplicate_stragglers`](pp_runtime::ClusterOptions::duplicate_stragglers)).
//!
//! When the runtime settles jobs without the cluster (a cancel), [`Flights::settled_elsewhere`]
//! tells every session, which then forgets its settled jobs in flight and asks their node
//! to drop them (`Message::Cancel`).
//!
//! A job that runs as two copies shares a [`Copies`] between its two entries: its output is
//! held until a copy's reply says whether that copy's result is the one used (see the
//! `session` module's `finish`), and a job whose output has begun to be printed is not
//! copied.
//!
//! All sessions run on the client's one network thread, and no lock here is held across
//! an `.await`: the locks only guard against misuse, they are never contended. Lock order:
//! the registry, then one session's map.

use crate::protocol::JobOutput;
use pp_runtime::remote::{JobFeed, RemoteJob};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A job in flight longer than this many times the average job latency is a straggler...
pub(crate) const STRAGGLER_FACTOR: u32 = 3;

/// ... and in flight for at least this long.
pub(crate) const STRAGGLER_MIN: Duration = Duration::from_millis(50);

/// One session's jobs in flight, by the session's job id.
pub(crate) type InFlight = HashMap<u64, Flight>;

/// A job in flight on a session.
pub(crate) struct Flight {
    pub(crate) job: RemoteJob,
    /// When it was sent.
    pub(crate) sent: Instant,
    /// What its two copies share, once it runs as two.
    pub(crate) copies: Option<Arc<Copies>>,
    /// What this copy printed, held until its reply (a job with two copies only).
    pub(crate) held: Vec<JobOutput>,
    /// Some of its output was printed as it came: the job is not copied from then on.
    pub(crate) printed: bool,
}

impl Flight {
    /// `job`, sent now; `copies` if it is a second copy.
    pub(crate) fn new(job: RemoteJob, copies: Option<Arc<Copies>>) -> Self {
        Flight {
            job,
            sent: Instant::now(),
            copies,
            held: Vec::new(),
            printed: false,
        }
    }

    /// Takes the entry out of the running: the other copy, if any, is the job's last.
    pub(crate) fn leaves(&self) {
        if let Some(copies) = &self.copies {
            copies.leaves();
        }
    }
}

/// What the two copies of a straggler share.
#[derive(Debug)]
pub(crate) struct Copies {
    /// A copy's reply was taken as the job's: its output printed, the other's dropped.
    used: AtomicBool,
    /// Copies still in flight.
    live: AtomicU8,
}

impl Copies {
    fn new() -> Arc<Copies> {
        Arc::new(Copies {
            used: AtomicBool::new(false),
            live: AtomicU8::new(2),
        })
    }

    /// Whether a copy's reply was taken as the job's already.
    pub(crate) fn used(&self) -> bool {
        self.used.load(Ordering::Acquire)
    }

    /// Takes this copy's reply as the job's, unless the other's was: returns whether it
    /// did.
    pub(crate) fn use_this(&self) -> bool {
        !self.used.swap(true, Ordering::AcqRel)
    }

    /// A copy left without a reply taken (failed, withdrawn, lost with its node); returns
    /// whether the other is still in flight.
    pub(crate) fn leaves(&self) -> bool {
        self.live.fetch_sub(1, Ordering::AcqRel) > 1
    }
}

/// One session's in-flight map, shared with the registry.
pub(crate) type SharedInFlight = Arc<Mutex<InFlight>>;

/// Locks a session's map.
pub(crate) fn lock(flight: &SharedInFlight) -> MutexGuard<'_, InFlight> {
    flight.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What [`Flights::straggler`] found.
pub(crate) enum Straggler {
    /// A second copy of a straggler, to send, and what the two copies share.
    Found(RemoteJob, Arc<Copies>),
    /// No straggler now; the first job in flight elsewhere becomes one at this time.
    Later(Instant),
    /// Nothing in flight elsewhere could become one (or no latency is known yet).
    None,
}

/// Every session's in-flight map, and the average latency of jobs across nodes.
pub(crate) struct Flights {
    inner: Mutex<FlightRegistry>,
    /// Bumped when the runtime settled jobs elsewhere: each session looks for its own.
    settled: Arc<watch::Sender<u64>>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            inner: Mutex::default(),
            settled: Arc::new(watch::Sender::new(0)),
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

    /// What wakes every session for [`Flights::settled_elsewhere`], for a completion that
    /// runs later on another thread (after its job's lines are printed).
    pub(crate) fn settled_sender(&self) -> Arc<watch::Sender<u64>> {
        Arc::clone(&self.settled)
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
            for (&job_id, flight) in lock(flight).iter() {
                // A job whose lines were printed as they came keeps them: no copy.
                if flight.job.is_completed() || flight.printed {
                    continue;
                }
                let at = flight.sent + threshold;
                if at <= now {
                    due.push((flight.sent, id, job_id));
                } else {
                    later = Some(later.map_or(at, |l| l.min(at)));
                }
            }
        }
        due.sort_unstable();
        for (_, id, job_id) in due {
            let copy = registry.sessions.get(&id).and_then(|flight| {
                let mut flight = lock(flight);
                let original = flight.get_mut(&job_id)?;
                let copy = original.job.duplicate()?;
                let copies = Copies::new();
                original.copies = Some(Arc::clone(&copies));
                Some((copy, copies))
            });
            if let Some((copy, copies)) = copy {
                return Straggler::Found(copy, copies);
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
            .filter(|(_, entry)| entry.job.is_settled())
            .map(|(&id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| {
                let entry = flight.remove(&id)?;
                entry.leaves();
                Some((id, entry.job))
            })
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
    fn one_copys_reply_is_taken_and_a_failed_copy_yields_while_the_other_runs() {
        // The first reply is taken; the other's is not.
        let copies = Copies::new();
        assert!(copies.use_this());
        assert!(copies.used());
        assert!(!copies.use_this());
        // A copy that failed while the other runs yields; the other's failure is then the
        // job's.
        let copies = Copies::new();
        assert!(copies.leaves());
        assert!(!copies.leaves());
        assert!(copies.use_this());
    }

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
