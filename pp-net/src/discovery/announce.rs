//! The node's side of discovery: announce at start and periodically, answer probes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::DiscoveryConfig;
use super::socket;
use super::wire::{Announcement, Datagram, MAX_DATAGRAM};

/// Answers to probes sent in one [`REPLY_WINDOW`], at most: a flood of probes (perhaps with
/// forged sources) cannot make the node a traffic amplifier.
const MAX_REPLIES_PER_WINDOW: u32 = 200;
const REPLY_WINDOW: Duration = Duration::from_secs(1);

/// Pause after a failed receive, so that a persistent error cannot make the loop spin.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// A node's discovery socket, bound and ready to announce.
pub(crate) struct Announcer {
    socket: UdpSocket,
    target: SocketAddr,
    interval: Duration,
    datagram: Vec<u8>,
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
        Ok(Announcer {
            socket,
            target: SocketAddr::new(config.broadcast, port),
            interval: config.interval,
            datagram: Datagram::Announce(announcement).encode(),
        })
    }

    /// The address the socket is bound to (its port, when 0 was asked for).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Where announcements go.
    pub(crate) fn target(&self) -> SocketAddr {
        self.target
    }

    /// Announces at once and every interval, and answers probes, until `stopping` turns
    /// true. Datagrams that are not discovery datagrams are counted in `ignored`.
    pub(crate) async fn run(self, ignored: Arc<AtomicU64>, mut stopping: watch::Receiver<bool>) {
        let mut next = Instant::now();
        let mut window = (Instant::now(), 0u32);
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    if let Err(e) = self.socket.send_to(&self.datagram, self.target).await {
                        tracing::debug!("cannot announce to {}: {e}", self.target);
                    }
                    next = Instant::now() + self.interval;
                }
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.handle(&buf[..len], from, &ignored, &mut window).await,
                    Err(e) => {
                        // For example the ICMP error of an earlier send: not fatal.
                        tracing::debug!("discovery socket: {e}");
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
        window: &mut (Instant, u32),
    ) {
        match Datagram::decode(bytes) {
            Ok(Datagram::Probe) => {
                if window.0.elapsed() >= REPLY_WINDOW {
                    *window = (Instant::now(), 0);
                }
                if window.1 >= MAX_REPLIES_PER_WINDOW {
                    tracing::debug!(%from, "probe not answered: too many probes this second");
                    return;
                }
                window.1 += 1;
                tracing::debug!(%from, "probe answered");
                if let Err(e) = self.socket.send_to(&self.datagram, from).await {
                    tracing::debug!("cannot answer the probe of {from}: {e}");
                }
            }
            // Ours coming back, or another node's: nothing to do.
            Ok(Datagram::Announce(_)) => {}
            Err(e) => {
                let count = ignored.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(%from, count, "discovery datagram ignored: {e}");
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
