//! A bounded table of what each source address did in its current time window: the
//! ground for per-source limits that a flood from one address cannot get past and a
//! flood from many cannot turn into unbounded memory.
//!
//! Each address gets a window of fixed length that opens at its first event and, once
//! ended, is closed (handed to the caller, so that it can report what it counted) at the
//! next use of the table. Addresses are kept in the order their windows opened, so ending
//! windows and forgetting the oldest address when the table is full cost O(1) each.
//! Used by the node's log of failed handshakes and by discovery's answers to probes.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A window that ended or was forgotten to make room, with what it held.
#[derive(Debug)]
pub(crate) struct ClosedWindow<V> {
    /// The source address.
    pub(crate) source: IpAddr,
    /// How long the window was open.
    pub(crate) lasted: Duration,
    /// What the caller counted in it.
    pub(crate) value: V,
}

/// Per-source windows of length `window`, for at most `capacity` addresses at once.
#[derive(Debug)]
pub(crate) struct SourceWindows<V> {
    window: Duration,
    capacity: usize,
    open: HashMap<IpAddr, (Instant, V)>,
    /// The open windows' addresses and opening times, oldest first: exactly the entries of
    /// `open`, since a window is removed from both at once.
    order: VecDeque<(IpAddr, Instant)>,
}

impl<V> SourceWindows<V> {
    /// An empty table of windows of length `window` for at most `capacity` (at least 1)
    /// addresses.
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        SourceWindows {
            window,
            capacity: capacity.max(1),
            open: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The value of `source`'s window open at `now`. Without one, `open_with` may open one
    /// with a value (`None`: no window is opened); when the table is full, the oldest
    /// window is forgotten to make room. Windows that ended by `now`, and the one
    /// forgotten, go to `closed` first.
    ///
    /// `now` must not go back from one call to the next.
    pub(crate) fn window(
        &mut self,
        source: IpAddr,
        now: Instant,
        open_with: impl FnOnce() -> Option<V>,
        closed: &mut impl FnMut(ClosedWindow<V>),
    ) -> Option<&mut V> {
        self.close_ended(now, closed);
        if !self.open.contains_key(&source) {
            let value = open_with()?;
            if self.open.len() >= self.capacity {
                self.close_oldest(now, closed);
            }
            self.open.insert(source, (now, value));
            self.order.push_back((source, now));
        }
        self.open.get_mut(&source).map(|(_, value)| value)
    }

    /// Closes the windows that ended by `now`, giving each to `closed`.
    pub(crate) fn close_ended(&mut self, now: Instant, closed: &mut impl FnMut(ClosedWindow<V>)) {
        while let Some(&(_, opened)) = self.order.front() {
            if now.saturating_duration_since(opened) < self.window {
                break;
            }
            self.close_oldest(now, closed);
        }
    }

    /// Closes every window, ended or not, giving each to `closed`.
    pub(crate) fn close_all(&mut self, now: Instant, closed: &mut impl FnMut(ClosedWindow<V>)) {
        while !self.order.is_empty() {
            self.close_oldest(now, closed);
        }
    }

    /// Open windows.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    fn close_oldest(&mut self, now: Instant, closed: &mut impl FnMut(ClosedWindow<V>)) {
        let Some((source, opened)) = self.order.pop_front() else {
            return;
        };
        if let Some((_, value)) = self.open.remove(&source) {
            closed(ClosedWindow {
                source,
                lasted: now.saturating_duration_since(opened),
                value,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_window_counts_until_it_ends_and_is_then_reported() {
        let start = Instant::now();
        let mut table = SourceWindows::new(Duration::from_secs(1), 4);
        let mut closed = Vec::new();
        let mut push = |c: ClosedWindow<u32>| closed.push((c.source, c.value));
        for _ in 0..3 {
            *table.window(ip(1), start, || Some(0), &mut push).unwrap() += 1;
        }
        let later = start + Duration::from_millis(999);
        assert_eq!(
            *table.window(ip(1), later, || Some(0), &mut push).unwrap(),
            3
        );
        let ended = start + Duration::from_secs(1);
        assert_eq!(
            *table.window(ip(1), ended, || Some(0), &mut push).unwrap(),
            0
        );
        assert_eq!(closed, vec![(ip(1), 3)]);
    }

    #[test]
    fn the_oldest_source_is_forgotten_when_the_table_is_full() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut table = SourceWindows::new(Duration::from_secs(60), 2);
        let mut closed = Vec::new();
        for (ms, last) in [(0, 1), (1, 2), (2, 3)] {
            table.window(ip(last), at(ms), || Some(last), &mut |c| {
                closed.push(c.source)
            });
        }
        assert_eq!(table.len(), 2);
        assert_eq!(closed, vec![ip(1)]);
        // Declining to open a window leaves the table alone.
        let declined = table.window(ip(4), at(5), || None, &mut |c| closed.push(c.source));
        assert!(declined.is_none());
        assert_eq!(table.len(), 2);
        table.close_all(at(6), &mut |c| closed.push(c.source));
        assert_eq!(closed, vec![ip(1), ip(2), ip(3)]);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_flood_of_sources_stays_within_the_capacity() {
        let start = Instant::now();
        let mut table = SourceWindows::new(Duration::from_secs(60), 100);
        let mut forgotten = 0;
        for i in 0..10_000u32 {
            let source = IpAddr::from(i.to_be_bytes());
            table.window(source, start, || Some(()), &mut |_| forgotten += 1);
        }
        assert_eq!(table.len(), 100);
        assert_eq!(forgotten, 9_900);
    }
}
