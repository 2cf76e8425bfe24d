//! How many probes a node answers: a budget per source address, so that one sender
//! flooding the discovery port cannot use up the answers a real client needs, and a
//! bound for all sources together, so that a flood with many (perhaps forged) source
//! addresses cannot make the node a traffic generator.
//!
//! Before, one budget of 200 answers a second served every sender: one sender at 1,600
//! probes a second took it all and a real client got 4 answers to 49 probes.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::source_windows::SourceWindows;

/// The period the budgets count over.
pub(crate) const REPLY_WINDOW: Duration = Duration::from_secs(1);

/// Answers one source address gets per [`REPLY_WINDOW`], at most: five clients on one
/// host, each probing every 250 ms, are all answered.
pub(crate) const REPLIES_PER_SOURCE: u32 = 20;

/// Answers per [`REPLY_WINDOW`], all sources together: 50 flooding addresses are needed
/// to use them up, and the node sends at most about 23 KB/s of answers.
pub(crate) const REPLIES_PER_WINDOW: u32 = 1000;

/// Source addresses counted at once: more than can be answered in a window, so that a
/// source is forgotten (and its budget starts afresh) only in a flood from many addresses,
/// which the common bound still holds.
const SOURCES: usize = 2 * REPLIES_PER_WINDOW as usize;

/// Why a probe is not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// Its source used its budget for this window.
    SourceBudget,
    /// All sources together used the common budget for this window.
    CommonBudget,
}

/// The answers left to give, per source and in all.
#[derive(Debug)]
pub(crate) struct ReplyBudget {
    sources: SourceWindows<u32>,
    /// When the common window opened, and the answers given in it.
    common: (Instant, u32),
}

impl Default for ReplyBudget {
    fn default() -> Self {
        ReplyBudget {
            sources: SourceWindows::new(REPLY_WINDOW, SOURCES),
            common: (Instant::now(), 0),
        }
    }
}

impl ReplyBudget {
    /// Takes one answer for a probe from `source` at `now` (which must not go back from
    /// one call to the next), or says why there is none.
    pub(crate) fn take(&mut self, source: IpAddr, now: Instant) -> Result<(), Unanswered> {
        if now.saturating_duration_since(self.common.0) >= REPLY_WINDOW {
            self.common = (now, 0);
        }
        let opened = self.sources.window(source, now, || Some(0), &mut |_| {});
        let Some(given) = opened.filter(|given| **given < REPLIES_PER_SOURCE) else {
            return Err(Unanswered::SourceBudget);
        };
        if self.common.1 >= REPLIES_PER_WINDOW {
            return Err(Unanswered::CommonBudget);
        }
        *given += 1;
        self.common.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_source_does_not_use_up_the_budget_of_another() {
        let mut budget = ReplyBudget::default();
        let start = Instant::now();
        let (flood, real) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let answered = (0..1600)
            .filter(|_| budget.take(flood, start).is_ok())
            .count();
        assert_eq!(answered, REPLIES_PER_SOURCE as usize);
        assert_eq!(budget.take(flood, start), Err(Unanswered::SourceBudget));
        assert_eq!(budget.take(real, start), Ok(()));
        // The next window: the flood gets its budget again.
        assert_eq!(budget.take(flood, start + REPLY_WINDOW), Ok(()));
    }

    #[test]
    fn many_sources_share_a_common_bound() {
        let mut budget = ReplyBudget::default();
        let start = Instant::now();
        let answered = (0..100_000u32)
            .filter(|&i| budget.take(IpAddr::from(i.to_be_bytes()), start).is_ok())
            .count();
        assert_eq!(answered, REPLIES_PER_WINDOW as usize);
    }
}
