//! The log of failed handshakes (and of lane openings that name no offer), limited so
//! that connections cost an attacker more than they cost the node's disk.
//!
//! Anyone who can reach the port can make a connection fail, and every failure used to be
//! one WARN line: 2,000 connections in 0.3 s wrote about 400 KB. Now, per source address
//! (IP, whatever the port) and per [`FAILURE_WINDOW`]:
//! - the first [`FULL_LINES_PER_SOURCE`] failures are logged in full (a misconfigured
//!   client shows its errors);
//! - later ones are logged at debug level only and counted, and when the window ends one
//!   line says "N more failed handshakes from ADDR in the last 60s";
//! - across all addresses at most [`FULL_LINES_PER_WINDOW`] failures a window are logged
//!   in full: failures from further addresses (a flood from many, say an IPv6 prefix) are
//!   only counted, in one line a window.
//!
//! So however many addresses a flood comes from, a minute adds at most
//! [`FULL_LINES_PER_WINDOW`] lines in full, one summary for each address that had one, and
//! one line for the rest; the table of addresses holds at most [`SOURCES`] entries. The
//! windows still open when the node stops are summarised then.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::source_windows::{ClosedWindow, SourceWindows};

/// The period over which failures from one address are counted.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Failures from one address logged in full per window.
pub(crate) const FULL_LINES_PER_SOURCE: u32 = 10;

/// Failures logged in full per window, all addresses together.
pub(crate) const FULL_LINES_PER_WINDOW: u32 = 60;

/// Addresses counted at once, at most: twice what can open a window in one, so that in
/// practice none is forgotten before its window ends.
const SOURCES: usize = 2 * FULL_LINES_PER_WINDOW as usize;

/// How often the daemon should call [`FailureLog::flush`].
pub(crate) const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// What one address did in its window.
#[derive(Debug, Default)]
struct Tally {
    /// Failures logged in full.
    logged: u32,
    /// Failures only counted.
    counted: u64,
}

/// The current window of all addresses together.
#[derive(Debug)]
struct Unlisted {
    since: Instant,
    /// Failures logged in full, all addresses together.
    full_lines: u32,
    /// Failures of addresses that had no window of their own and found the full lines
    /// used up: counted only.
    failures: u64,
}

/// The limited log of one node's failed handshakes.
#[derive(Debug)]
pub(crate) struct FailureLog {
    state: Mutex<(SourceWindows<Tally>, Unlisted)>,
}

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog {
            state: Mutex::new((
                SourceWindows::new(FAILURE_WINDOW, SOURCES),
                Unlisted {
                    since: Instant::now(),
                    full_lines: 0,
                    failures: 0,
                },
            )),
        }
    }
}

impl FailureLog {
    /// Logs a failed handshake from `source`: `line` (which names the address and the
    /// reason) at WARN level if the limits allow, else at debug level, counted.
    pub(crate) fn failed(&self, source: IpAddr, line: std::fmt::Arguments<'_>) {
        if self.in_full(source, Instant::now()) {
            pp_runtime::warn!("{line}");
        } else {
            pp_runtime::debug!("{line}");
        }
    }

    /// Counts a failure from `source` at `now`: whether to log it in full.
    fn in_full(&self, source: IpAddr, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (sources, unlisted) = &mut *state;
        roll(unlisted, now);
        let budget_left = unlisted.full_lines < FULL_LINES_PER_WINDOW;
        let open_with = || budget_left.then(Tally::default);
        let full = match sources.window(source, now, open_with, &mut summarise) {
            Some(tally) if tally.logged < FULL_LINES_PER_SOURCE && budget_left => {
                tally.logged += 1;
                true
            }
            Some(tally) => {
                tally.counted += 1;
                false
            }
            None => {
                unlisted.failures += 1;
                false
            }
        };
        unlisted.full_lines += u32::from(full);
        full
    }

    /// Writes the summaries of the windows that have ended.
    pub(crate) fn flush(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (sources, unlisted) = &mut *state;
        let now = Instant::now();
        sources.close_ended(now, &mut summarise);
        roll(unlisted, now);
    }

    /// Writes the summaries of every window, ended or not: the node is stopping.
    pub(crate) fn flush_all(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (sources, unlisted) = &mut *state;
        let now = Instant::now();
        sources.close_all(now, &mut summarise);
        report_unlisted(unlisted, now);
    }
}

/// Writes the line of an address's window that counted failures without logging them.
fn summarise(closed: ClosedWindow<Tally>) {
    let ClosedWindow {
        source,
        lasted,
        value: Tally { logged, counted },
    } = closed;
    if counted > 0 {
        pp_runtime::warn!(
            "{counted} more failed handshakes from {source} in the last {}s, not logged one \
             by one (the first {logged} were)",
            lasted.as_secs().max(1)
        );
    }
}

/// Starts a new window for the unlisted failures if the current one ended, reporting it.
fn roll(unlisted: &mut Unlisted, now: Instant) {
    if now.saturating_duration_since(unlisted.since) >= FAILURE_WINDOW {
        report_unlisted(unlisted, now);
    }
}

fn report_unlisted(unlisted: &mut Unlisted, now: Instant) {
    if unlisted.failures > 0 {
        pp_runtime::warn!(
            "{} more failed handshakes in the last {}s from addresses not logged one by one \
             (at most {FULL_LINES_PER_WINDOW} failures a minute are logged in full)",
            unlisted.failures,
            now.saturating_duration_since(unlisted.since)
                .as_secs()
                .max(1)
        );
    }
    *unlisted = Unlisted {
        since: now,
        full_lines: 0,
        failures: 0,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_its_first_failures_in_full_then_a_count() {
        let log = FailureLog::default();
        let source = IpAddr::from([10, 0, 0, 1]);
        let start = Instant::now();
        let full = (0..2000).filter(|_| log.in_full(source, start)).count();
        assert_eq!(full, FULL_LINES_PER_SOURCE as usize);
        // A new window: in full again.
        assert!(log.in_full(source, start + FAILURE_WINDOW));
    }

    #[test]
    fn many_addresses_share_a_bound_on_full_lines() {
        let log = FailureLog::default();
        let start = Instant::now();
        let full = (0..10_000u32)
            .filter(|&i| log.in_full(IpAddr::from(i.to_be_bytes()), start))
            .count();
        assert_eq!(full, FULL_LINES_PER_WINDOW as usize);
        let state = log.state.lock().unwrap();
        assert_eq!(state.1.failures, 10_000 - u64::from(FULL_LINES_PER_WINDOW));
    }
}
