//! The put-aside policy: a node whose worker processes keep dying is given no new job for a
//! while, as long as another place can take jobs ([`CrashWatch`]).
//!
//! [`PUT_ASIDE_CRASHES`] worker crashes within [`PUT_ASIDE_WINDOW`] put a node aside for
//! [`PUT_ASIDE_FOR`]; its jobs in flight run on, its session and heartbeats go on. Then
//! it is on probation: a crash before it has run [`PROBATION_JOBS`] jobs puts it aside
//! again, for twice as long as the last time (at most [`PUT_ASIDE_MAX`]); that many jobs
//! without a crash make it healthy again. Each put-aside is said once, on standard error.
//! A node put aside still takes jobs when no other node (and no local worker) can: the
//! policy steers jobs away from a bad node, it never leaves them waiting. A crash is a
//! crash of the node's worker, whoever's fault it was: a task that aborts everywhere puts
//! every node aside in turn, which then all take jobs again (none has another place).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Worker crashes within [`PUT_ASIDE_WINDOW`] that put a healthy node aside.
pub(crate) const PUT_ASIDE_CRASHES: usize = 3;

/// The window in which [`PUT_ASIDE_CRASHES`] crashes put a healthy node aside.
pub(crate) const PUT_ASIDE_WINDOW: Duration = Duration::from_secs(10);

/// How long a node is first put aside.
pub(crate) const PUT_ASIDE_FOR: Duration = Duration::from_secs(10);

/// The longest a node is put aside, however often it fails its probation.
pub(crate) const PUT_ASIDE_MAX: Duration = Duration::from_secs(80);

/// Jobs a node on probation runs without a crash to be healthy again.
pub(crate) const PROBATION_JOBS: u32 = 10;

/// A node just put aside, for the warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PutAside {
    /// The crashes that put it aside: within the window, or one on probation.
    pub(crate) crashes: u32,
    /// For how long.
    pub(crate) period: Duration,
    /// Whether it crashed on probation (it was put aside before).
    pub(crate) on_probation: bool,
}

/// One node's recent worker crashes and where it stands: healthy, put aside, on probation.
#[derive(Debug)]
pub(crate) struct CrashWatch {
    /// Crashes of a healthy node within the window, oldest first.
    recent: VecDeque<Instant>,
    /// Until when the node is put aside, and the crashes that put it there (more counted
    /// while it is aside).
    aside: Option<(Instant, u32)>,
    /// Jobs run since the put-aside ended, while on probation.
    probation: Option<u32>,
    /// How long the last put-aside lasted.
    period: Duration,
}

impl Default for CrashWatch {
    fn default() -> Self {
        CrashWatch {
            recent: VecDeque::new(),
            aside: None,
            probation: None,
            period: PUT_ASIDE_FOR,
        }
    }
}

impl CrashWatch {
    /// A worker of the node died at `now`; returns the put-aside it caused, if any.
    pub(crate) fn crashed(&mut self, now: Instant) -> Option<PutAside> {
        if let Some((until, crashes)) = &mut self.aside {
            if now < *until {
                *crashes += 1;
                return None;
            }
        }
        if self.probation.is_some() {
            self.period = (self.period * 2).min(PUT_ASIDE_MAX);
            return Some(self.put_aside(now, 1, true));
        }
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|&at| now.duration_since(at) > PUT_ASIDE_WINDOW)
        {
            self.recent.pop_front();
        }
        if self.recent.len() < PUT_ASIDE_CRASHES {
            return None;
        }
        let crashes = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        self.recent.clear();
        self.period = PUT_ASIDE_FOR;
        Some(self.put_aside(now, crashes, false))
    }

    fn put_aside(&mut self, now: Instant, crashes: u32, on_probation: bool) -> PutAside {
        self.aside = Some((now + self.period, crashes));
        self.probation = Some(0);
        PutAside {
            crashes,
            period: self.period,
            on_probation,
        }
    }

    /// A job of the node ended without a crash at `now`; returns whether that ended its
    /// probation.
    pub(crate) fn served(&mut self, now: Instant) -> bool {
        if self.aside_until(now).is_some() {
            // A job sent before the put-aside: not a test of the node.
            return false;
        }
        match &mut self.probation {
            Some(jobs) if *jobs + 1 >= PROBATION_JOBS => {
                self.probation = None;
                self.aside = None;
                self.period = PUT_ASIDE_FOR;
                true
            }
            Some(jobs) => {
                *jobs += 1;
                false
            }
            None => false,
        }
    }

    /// Until when the node is put aside, and the crashes that did it, if it is at `now`.
    pub(crate) fn aside_until(&self, now: Instant) -> Option<(Instant, u32)> {
        self.aside.filter(|&(until, _)| now < until)
    }

    /// Whether the node is put aside or on probation: its jobs' ends must be counted.
    pub(crate) fn watching(&self) -> bool {
        self.aside.is_some() || self.probation.is_some()
    }
}

/// Says, once per put-aside, that the node `who` (`node host:port`, `rank N (host:port)`)
/// is put aside, why and for how long.
pub(crate) fn say(who: &str, aside: PutAside) {
    let why = if aside.on_probation {
        "a worker crashed again while on probation".to_owned()
    } else {
        format!(
            "{} worker crashes within {PUT_ASIDE_WINDOW:?}",
            aside.crashes
        )
    };
    pp_runtime::warn!(
        "{who}: {why}: put aside for {:?} (no new jobs while another node or a local \
         worker can take them), then on probation",
        aside.period
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_crashes_within_the_window_put_a_node_aside() {
        let mut watch = CrashWatch::default();
        let t0 = Instant::now();
        assert_eq!(watch.crashed(t0), None);
        // The first crash falls out of the window.
        let t1 = t0 + PUT_ASIDE_WINDOW + Duration::from_secs(1);
        assert_eq!(watch.crashed(t1), None);
        assert_eq!(watch.crashed(t1), None);
        assert!(!watch.watching());
        let aside = watch.crashed(t1 + Duration::from_secs(1));
        assert_eq!(
            aside,
            Some(PutAside {
                crashes: 3,
                period: PUT_ASIDE_FOR,
                on_probation: false
            })
        );
        let until = t1 + Duration::from_secs(1) + PUT_ASIDE_FOR;
        assert_eq!(
            watch.aside_until(t1 + Duration::from_secs(2)),
            Some((until, 3))
        );
        assert_eq!(watch.crashed(t1 + Duration::from_secs(2)), None, "counted");
        assert_eq!(
            watch
                .aside_until(until - Duration::from_millis(1))
                .map(|a| a.1),
            Some(4)
        );
        assert_eq!(watch.aside_until(until), None, "over at its time");
    }

    #[test]
    fn a_crash_on_probation_puts_it_aside_for_twice_as_long_and_clean_jobs_end_it() {
        let mut watch = CrashWatch::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            watch.crashed(t0);
        }
        let after = t0 + PUT_ASIDE_FOR;
        assert!(!watch.served(t0), "a job of before does not count");
        for _ in 0..PROBATION_JOBS - 1 {
            assert!(!watch.served(after));
        }
        let again = watch.crashed(after).expect("one crash on probation");
        assert_eq!((again.crashes, again.on_probation), (1, true));
        assert_eq!(again.period, PUT_ASIDE_FOR * 2);
        let mut at = after;
        let mut period = again.period;
        for _ in 0..5 {
            at += period;
            period = watch.crashed(at).expect("on probation again").period;
        }
        assert_eq!(period, PUT_ASIDE_MAX, "capped");
        at += period;
        for _ in 0..PROBATION_JOBS - 1 {
            assert!(!watch.served(at));
        }
        assert!(watch.served(at), "probation ends");
        assert!(!watch.watching());
        assert_eq!(watch.crashed(at), None, "healthy: one crash is not enough");
    }
}
