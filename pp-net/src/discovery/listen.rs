//! The client's side of discovery: probe, listen, report the nodes that answer.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::round::{Round, RoundKind, Sender};
use super::search_status::SearchStatus;
use super::socket;
use super::target::Target;
use super::wire::{Announcement, Datagram, MAX_DATAGRAM};

/// Time between probes to unicast targets: a node started later is found within it.
pub(crate) const UNICAST_PROBE_PERIOD: Duration = Duration::from_millis(250);

/// Time between broadcast probes. Nodes also announce themselves at start and every few
/// seconds, so these only make up for lost datagrams.
pub(crate) const BROADCAST_PROBE_PERIOD: Duration = Duration::from_secs(2);

/// Pause after a failed receive, so that a persistent error cannot make a loop spin.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// A node that announced itself.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Where it takes jobs: the datagram's source address and the announced job port.
    pub(crate) addr: SocketAddr,
    /// What it said.
    pub(crate) announcement: Announcement,
}

/// Which sources a client accepts announcements from.
struct Filter {
    targets: Vec<Target>,
    /// The unicast targets' addresses, as last resolved.
    unicast: Mutex<HashSet<IpAddr>>,
}

impl Filter {
    fn accepts(&self, ip: IpAddr, on_probe_socket: bool) -> bool {
        self.targets.iter().any(|t| t.holds(ip))
            || (on_probe_socket
                && self
                    .unicast
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&ip))
    }
}

/// Probes `targets` and listens for announcements until the returned future is dropped,
/// sending each node heard of (again and again: the receiver removes duplicates) to
/// `found`. Datagrams that are not discovery datagrams are counted in `ignored`; where
/// the probes went, and whether a node answered, in `status`.
pub(crate) async fn discover(
    targets: Vec<Target>,
    found: mpsc::Sender<Found>,
    ignored: Arc<AtomicU64>,
    status: Arc<SearchStatus>,
) {
    let loopback_only = targets.iter().all(Target::is_loopback);
    let local = if loopback_only {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let probes = match socket::bind(SocketAddr::from((local, 0)), false) {
        Ok(socket) => Arc::new(socket),
        Err(e) => {
            pp_runtime::warn!("discovery is off: cannot open a UDP socket: {e}");
            return;
        }
    };
    let filter = Arc::new(Filter {
        targets,
        unicast: Mutex::new(HashSet::new()),
    });
    let mut tasks = JoinSet::new();
    let receiver = Receiver {
        filter: Arc::clone(&filter),
        found,
        ignored,
        status: Arc::clone(&status),
    };
    tasks.spawn(receiver.clone().receive(Arc::clone(&probes), true));
    let mut ports: Vec<u16> = filter
        .targets
        .iter()
        .filter_map(|t| t.broadcast_address().map(|(_, port)| port))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    for port in ports {
        match socket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), true) {
            Ok(listener) => {
                pp_runtime::debug!("listening for node announcements on udp port {port}");
                tasks.spawn(receiver.clone().receive(Arc::new(listener), false));
            }
            Err(e) => pp_runtime::warn!(
                "cannot listen for node announcements on udp port {port}: {e}; nodes are \
                 found by probing every {BROADCAST_PROBE_PERIOD:?} instead"
            ),
        }
    }
    probe(&probes, &filter, &status).await;
}

/// Sends probes for as long as it runs: every round to the unicast targets, every
/// [`BROADCAST_PROBE_PERIOD`] also to the broadcast targets and the broadcast address of
/// each interface in their subnets (listed again then, so an interface that comes up later
/// is used).
async fn probe(socket: &UdpSocket, filter: &Filter, status: &SearchStatus) {
    let unicast: Vec<(&str, u16)> = filter
        .targets
        .iter()
        .filter_map(|t| match t {
            Target::Unicast { host, port } => Some((host.as_str(), *port)),
            Target::Broadcast { .. } => None,
        })
        .collect();
    let broadcasting = Round::needs_interfaces(&filter.targets);
    let (period, broadcast_every) = if unicast.is_empty() {
        (BROADCAST_PROBE_PERIOD, 1)
    } else {
        let every = BROADCAST_PROBE_PERIOD.as_millis() / UNICAST_PROBE_PERIOD.as_millis();
        (UNICAST_PROBE_PERIOD, u64::try_from(every).unwrap_or(1))
    };
    let probe = Datagram::Probe.encode();
    let mut sender = Sender::new(RoundKind::Probes);
    let mut unicast_round = Round::default();
    let mut ticks = tokio::time::interval(period);
    for round in 0u64.. {
        ticks.tick().await;
        if round % broadcast_every != 0 {
            sender.send(socket, &probe, &unicast_round).await;
            continue;
        }
        // Names are looked up again now and then, in case they move.
        let (resolved, unresolved) = resolve(&unicast).await;
        let ips = resolved.iter().map(SocketAddr::ip).collect();
        *filter.unicast.lock().unwrap_or_else(|e| e.into_inner()) = ips;
        let interfaces = if broadcasting {
            sender.interfaces()
        } else {
            Vec::new()
        };
        let full = Round::of_probes(&filter.targets, &interfaces, &resolved);
        let sent = sender.send(socket, &probe, &full).await;
        status.record(&sent, &unresolved);
        unicast_round = Round::of_probes(&[], &[], &resolved);
    }
}

/// The IPv4 addresses of the unicast targets, and the hosts that did not resolve.
async fn resolve<'a>(targets: &[(&'a str, u16)]) -> (Vec<SocketAddr>, Vec<&'a str>) {
    let mut addrs = Vec::new();
    let mut unresolved = Vec::new();
    for &(host, port) in targets {
        match tokio::net::lookup_host((host, port)).await {
            Ok(found) => addrs.extend(found.filter(SocketAddr::is_ipv4)),
            Err(e) => {
                pp_runtime::debug!("cannot resolve the discovery host {host}: {e}");
                unresolved.push(host);
            }
        }
    }
    (addrs, unresolved)
}

/// What every socket's reading task shares.
#[derive(Clone)]
struct Receiver {
    filter: Arc<Filter>,
    found: mpsc::Sender<Found>,
    ignored: Arc<AtomicU64>,
    status: Arc<SearchStatus>,
}

impl Receiver {
    /// Reads datagrams from `socket`, reporting the announcements the filter accepts.
    async fn receive(self, socket: Arc<UdpSocket>, probe_socket: bool) {
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        loop {
            let (len, from) = match socket.recv_from(&mut buf).await {
                Ok(received) => received,
                Err(e) => {
                    // For example the ICMP error of a probe sent to a closed port.
                    tracing::trace!("discovery socket: {e}");
                    tokio::time::sleep(ERROR_PAUSE).await;
                    continue;
                }
            };
            match Datagram::decode(&buf[..len]) {
                Ok(Datagram::Announce(announcement)) => {
                    if !self.filter.accepts(from.ip(), probe_socket) {
                        pp_runtime::debug!(%from, "announcement from outside the discovery targets ignored");
                        continue;
                    }
                    self.status.heard();
                    let addr = SocketAddr::new(from.ip(), announcement.job_port);
                    // Full: the client is busy; the node announces again soon.
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        self.found.try_send(Found { addr, announcement })
                    {
                        return;
                    }
                }
                // Another client's probe.
                Ok(Datagram::Probe) => {}
                Err(e) => {
                    let count = self.ignored.fetch_add(1, Ordering::Relaxed) + 1;
                    pp_runtime::debug!(%from, count, "discovery datagram ignored: {e}");
                }
            }
        }
    }
}
