//! Which connections a node takes on: at most `max_connections` at once, and never one
//! that has not authenticated at the expense of one that has.
//!
//! Every connection is accepted at once (none waits in the kernel's backlog behind stale
//! ones) and gets a [`Ticket`] while it holds a slot. When every slot is taken:
//! - if some connections are still in their handshake, the oldest of them is evicted (its
//!   session ends and closes it) and the new connection takes its place. A flood of
//!   connections from someone without the secret therefore churns through the handshake
//!   slots, but a client that knows the secret completes its handshake (milliseconds) long
//!   before the flood pushes it out, and authenticated sessions are never touched;
//! - if every slot holds an authenticated session, the new connection is closed at once.
//!
//! Evicted connections release their slots a moment later, when their session task sees
//! the eviction, so the count may briefly exceed the limit by the evictions in progress.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The slots of one node.
#[derive(Debug)]
pub(crate) struct Admission {
    max: usize,
    held: Arc<AtomicUsize>,
    /// One sender per connection still in its handshake, oldest first. Dropping a sender
    /// evicts its connection; a sender whose receiver is gone belongs to a connection that
    /// finished its handshake (or ended), and is pruned.
    handshaking: Mutex<VecDeque<oneshot::Sender<()>>>,
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

    /// Decides on a connection just accepted.
    pub(crate) fn admit(&self) -> Admit {
        let mut handshaking = self
            .handshaking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        handshaking.retain(|sender| !sender.is_closed());
        let mut evicted_another = false;
        if self.held.load(Ordering::Relaxed) >= self.max {
            // Dropping the sender wakes that session, which closes its connection.
            if handshaking.pop_front().is_none() {
                return Admit::Full;
            }
            evicted_another = true;
        }
        let (sender, evicted) = oneshot::channel();
        handshaking.push_back(sender);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(admit: Admit) -> Ticket {
        match admit {
            Admit::Yes { ticket, .. } => ticket,
            Admit::Full => panic!("expected a slot"),
        }
    }

    #[test]
    fn the_oldest_handshake_makes_room_and_sessions_are_never_evicted() {
        let admission = Admission::new(2);
        let mut first = ticket(admission.admit());
        let mut second = ticket(admission.admit());
        // Full: the oldest handshake (first) is evicted for the third.
        let mut third = ticket(admission.admit());
        assert!(first.was_evicted());
        assert!(!second.was_evicted());
        drop(first);
        // Second and third authenticate: nothing left to evict, so a fourth is refused.
        second.authenticated();
        third.authenticated();
        assert!(matches!(admission.admit(), Admit::Full));
        drop(third);
        assert!(matches!(
            admission.admit(),
            Admit::Yes {
                evicted_another: false,
                ..
            }
        ));
    }
}
