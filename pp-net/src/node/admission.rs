//! Which connections a node takes on: at most `max_connections` at once, and never one
//! that has not authenticated at the expense of one that has.
//!
//! Every connection is accepted at once (none waits in the kernel's backlog behind stale
//! ones) and gets a [`Ticket`] while it holds a slot. When every slot is taken:
//! - if some connections are still in their handshake, one of them is evicted (its session
//!   tells its client that the node is busy, see `busy`, and closes it) and the new
//!   connection takes its place: the oldest of those from
//!   the source address that has the most connections in their handshake, the new one
//!   included. A flood of connections from one address without the secret therefore
//!   churns through its own handshakes, and a client from another address keeps its slot
//!   however long its handshake takes (a slow link), as long as it holds fewer
//!   handshaking connections than the flooder. Among sources with equal counts the oldest
//!   handshake goes. Authenticated sessions are never touched;
//! - if every slot holds an authenticated session, the new connection is closed at once.
//!
//! Evicted connections release their slots a moment later, when their session task sees
//! the eviction, so the count may briefly exceed the limit by the evictions in progress.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The slots of one node.
#[derive(Debug)]
pub(crate) struct Admission {
    max: usize,
    held: Arc<AtomicUsize>,
    /// One sender per connection still in its handshake, with its source address, oldest
    /// first. Dropping a sender evicts its connection; a sender whose receiver is gone
    /// belongs to a connection that finished its handshake (or ended), and is pruned.
    handshaking: Mutex<VecDeque<(IpAddr, oneshot::Sender<()>)>>,
}

/// A connection's slot; released on drop.
#[derive(Debug)]
pub(crate) struct Ticket {
    held: Arc<AtomicUsize>,
    /// Completes (with an error: the sender is dropped) when the connection is evicted;
    /// `None` once authenticated.
    evicted: Option<oneshot::Receiver<()>>,
}

impl Ticket {
    /// Completes when the connection is evicted; never once it is authenticated.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn evicted(&mut self) {
        match &mut self.evicted {
            Some(evicted) => {
                let _ = evicted.await;
            }
            None => std::future::pending().await,
        }
    }

    /// The handshake succeeded: from now on the connection cannot be evicted.
    pub(crate) fn authenticated(&mut self) {
        self.evicted = None;
    }

    #[cfg(test)]
    fn was_evicted(&mut self) -> bool {
        self.evicted
            .as_mut()
            .is_some_and(|e| e.try_recv() == Err(oneshot::error::TryRecvError::Closed))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What became of a new connection.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Serve it.
    Yes {
        /// Its slot.
        ticket: Ticket,
        /// Whether an older connection still in its handshake was evicted for it.
        evicted_another: bool,
    },
    /// Every slot holds an authenticated session: close it.
    Full,
}

impl Admission {
    /// Slots for `max` connections (at least 1).
    pub(crate) fn new(max: usize) -> Self {
        Admission {
            max: max.max(1),
            held: Arc::new(AtomicUsize::new(0)),
            handshaking: Mutex::new(VecDeque::new()),
        }
    }

    /// Decides on a connection just accepted from `source`.
    pub(crate) fn admit(&self, source: IpAddr) -> Admit {
        let mut handshaking = self
            .handshaking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        handshaking.retain(|(_, sender)| !sender.is_closed());
        let mut evicted_another = false;
        if self.held.load(Ordering::Relaxed) >= self.max {
            let Some(victim) = victim(&handshaking, source) else {
                return Admit::Full;
            };
            // Dropping the sender wakes that session, which closes its connection.
            handshaking.remove(victim);
            evicted_another = true;
        }
        let (sender, evicted) = oneshot::channel();
        handshaking.push_back((source, sender));
        self.held.fetch_add(1, Ordering::Relaxed);
        Admit::Yes {
            ticket: Ticket {
                held: Arc::clone(&self.held),
                evicted: Some(evicted),
            },
            evicted_another,
        }
    }
}

/// The index in `handshaking` of the connection to evict for a new one from `source`: the
/// oldest of the source with the most handshaking connections (the new one counted), the
/// oldest of all among equals; `None` when no connection is in its handshake.
fn victim(handshaking: &VecDeque<(IpAddr, oneshot::Sender<()>)>, source: IpAddr) -> Option<usize> {
    let mut counts: HashMap<IpAddr, usize> = HashMap::new();
    for (address, _) in handshaking {
        *counts.entry(*address).or_default() += 1;
    }
    let with_new = |address: &IpAddr| counts[address] + usize::from(*address == source);
    let most = counts.keys().map(with_new).max()?;
    // The first (oldest) connection whose source has that many.
    handshaking
        .iter()
        .position(|(address, _)| with_new(address) == most)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(admit: Admit) -> Ticket {
        match admit {
            Admit::Yes { ticket, .. } => ticket,
            Admit::Full => panic!("expected a slot"),
        }
    }

    const ONE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const TWO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn the_oldest_handshake_makes_room_and_sessions_are_never_evicted() {
        let admission = Admission::new(2);
        let mut first = ticket(admission.admit(ONE));
        let mut second = ticket(admission.admit(ONE));
        // Full: the oldest handshake (first) is evicted for the third.
        let mut third = ticket(admission.admit(ONE));
        assert!(first.was_evicted());
        assert!(!second.was_evicted());
        drop(first);
        // Second and third authenticate: nothing left to evict, so a fourth is refused.
        second.authenticated();
        third.authenticated();
        assert!(matches!(admission.admit(ONE), Admit::Full));
        drop(third);
        assert!(matches!(
            admission.admit(ONE),
            Admit::Yes {
                evicted_another: false,
                ..
            }
        ));
    }

    #[test]
    fn a_flooding_source_evicts_its_own_handshakes_not_another_sources() {
        let admission = Admission::new(4);
        // A slow client's handshake, first and so the oldest.
        let mut slow = ticket(admission.admit(ONE));
        let mut flood: Vec<Ticket> = (0..3).map(|_| ticket(admission.admit(TWO))).collect();
        for _ in 0..100 {
            flood.push(ticket(admission.admit(TWO)));
            assert!(!slow.was_evicted(), "the other source keeps its slot");
        }
        let evicted = flood
            .iter_mut()
            .map(Ticket::was_evicted)
            .filter(|&e| e)
            .count();
        assert_eq!(evicted, 100, "the flood churned through its own handshakes");
        // Between equals, the oldest goes.
        let admission = Admission::new(2);
        let mut one = ticket(admission.admit(ONE));
        let mut two = ticket(admission.admit(TWO));
        let _three = ticket(admission.admit(TWO));
        assert!(!one.was_evicted(), "TWO has the most with the new one");
        assert!(two.was_evicted());
    }
}
