//! The node's side of discovery: announce at start and periodically, answer probes.
//!
//! Announcements go to the configured address and, when that is the limited broadcast
//! (the default), to the broadcast address of every interface the socket sends from,
//! listed again at each announcement (see [`Round::of_announcements`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::DiscoveryConfig;
use super::interfaces::broadcast_interfaces;
use super::reply_budget::ReplyBudget;
use super::round::{Round, RoundKind, Sender};
use super::socket;
use super::wire::{Announcement, Datagram, MAX_DATAGRAM};

/// Pause after a failed receive, so that a persistent error cannot make the loop spin.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// A node's discovery socket, bound and ready to announce.
pub(crate) struct Announcer {
    socket: UdpSocket,
    /// The address the socket is bound to: with a specific one, only its interface's
    /// broadcast address is announced to.
    bound: IpAddr,
    target: SocketAddr,
    interval: Duration,
    /// The announcement sent unprompted.
    datagram: Vec<u8>,
    /// The answer to a probe: the announcement without the name, so that it is as small as
    /// it can be without a change of the wire format (23 bytes for the probe's 8; with the
    /// name it was up to 87). The name is for logs only, and comes with the unprompted
    /// announcements.
    answer: Vec<u8>,
}

impl Announcer {
    /// Binds the discovery port on `interface` for a node taking jobs on `job_port`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub(crate) fn bind(
        config: &DiscoveryConfig,
        interface: IpAddr,
        job_port: u16,
        workers: usize,
        name: &str,
    ) -> io::Result<Announcer> {
        let socket = socket::bind(SocketAddr::new(interface, config.port), true)?;
        let port = socket.local_addr()?.port();
        let announcement = Announcement {
            job_port,
            workers: u32::try_from(workers).unwrap_or(u32::MAX),
            node_id: random_id(),
            name: name.to_owned(),
        };
        let answer = Announcement {
            name: String::new(),
            ..announcement.clone()
        };
        Ok(Announcer {
            socket,
            bound: interface,
            target: SocketAddr::new(config.broadcast, port),
            interval: config.interval,
            datagram: Datagram::Announce(announcement).encode(),
            answer: Datagram::Announce(answer).encode(),
        })
    }

    /// The address the socket is bound to (its port, when 0 was asked for).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Where announcements go, for the node's log: the configured address, and the
    /// interfaces' broadcast addresses as they are now.
    pub(crate) fn target(&self) -> String {
        let interfaces = if Round::announcements_need_interfaces(self.target) {
            broadcast_interfaces().unwrap_or_default()
        } else {
            Vec::new()
        };
        let round = Round::of_announcements(self.target, self.bound, &interfaces);
        let all: Vec<String> = round
            .destinations()
            .iter()
            .map(ToString::to_string)
            .collect();
        all.join(", ")
    }

    /// Announces at once and every interval, and answers probes, until `stopping` turns
    /// true. Datagrams that are not discovery datagrams are counted in `ignored`.
    pub(crate) async fn run(self, ignored: Arc<AtomicU64>, mut stopping: watch::Receiver<bool>) {
        let mut next = Instant::now();
        let mut budget = ReplyBudget::default();
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        let mut sender = Sender::new(RoundKind::Announcements);
        let broadcasting = Round::announcements_need_interfaces(self.target);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    let interfaces = if broadcasting { sender.interfaces() } else { Vec::new() };
                    let round = Round::of_announcements(self.target, self.bound, &interfaces);
                    sender.send(&self.socket, &self.datagram, &round).await;
                    next = Instant::now() + self.interval;
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.handle(&buf[..len], from, &ignored, &mut budget).await,
                    Err(e) => {
                        // For example the ICMP error of an earlier send: not fatal.
                        pp_runtime::debug!("discovery socket: {e}");
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                },
                _ = stopping.changed() => return,
            }
        }
    }

    async fn handle(
        &self,
        bytes: &[u8],
        from: SocketAddr,
        ignored: &AtomicU64,
        budget: &mut ReplyBudget,
    ) {
        match Datagram::decode(bytes) {
            Ok(Datagram::Probe) => {
                if let Err(why) = budget.take(from.ip(), std::time::Instant::now()) {
                    tracing::trace!(%from, ?why, "probe not answered: too many probes this second");
                    return;
                }
                pp_runtime::debug!(%from, "probe answered");
                if let Err(e) = self.socket.send_to(&self.answer, from).await {
                    pp_runtime::debug!("cannot answer the probe of {from}: {e}");
                }
            }
            // Ours coming back, or another node's: nothing to do.
            Ok(Datagram::Announce(_)) => {}
            Err(e) => {
                let count = ignored.fetch_add(1, Ordering::Relaxed) + 1;
                pp_runtime::debug!(%from, count, "discovery datagram ignored: {e}");
            }
        }
    }
}

/// A node identifier that differs from one start to the next (not a secret).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // `RandomState` is seeded from the operating system's randomness.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}
