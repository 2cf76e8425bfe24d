//! One round of probes or announcements: where it goes (each address once) and sending it,
//! with every failure said once per destination and kind of error, never once per round.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::interfaces::{broadcast_interfaces, sends_from, InterfaceBroadcast};
use super::target::Target;

/// Most failures remembered as said; past it they are said at debug level only, so a
/// client probing ever-changing addresses cannot grow the set without limit.
const MAX_REMEMBERED: usize = 256;

/// What a round sends, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoundKind {
    /// A client's probes.
    Probes,
    /// A node's unprompted announcements.
    Announcements,
}

/// One place a round sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    /// Where the datagram goes.
    pub(crate) addr: SocketAddr,
    /// The interface whose broadcast address this is; `None` for an address that was
    /// configured or resolved.
    pub(crate) interface: Option<String>,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.interface {
            Some(name) => write!(f, "{} ({name})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// The destinations of one round, in order, each address once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Round {
    destinations: Vec<Destination>,
}

impl Round {
    /// A client's round: each broadcast target's address, then the broadcast address of
    /// every interface in the target's subnet, then the resolved unicast addresses.
    pub(crate) fn of_probes(
        targets: &[Target],
        interfaces: &[InterfaceBroadcast],
        unicast: &[SocketAddr],
    ) -> Round {
        let mut round = Round::default();
        for target in targets {
            let Some((broadcast, port)) = target.broadcast_address() else {
                continue;
            };
            round.add(SocketAddr::from((broadcast, port)), None);
            for interface in interfaces {
                if target.holds(IpAddr::V4(interface.ip)) {
                    let addr = SocketAddr::from((interface.broadcast, port));
                    round.add(addr, Some(&interface.name));
                }
            }
        }
        for addr in unicast {
            round.add(*addr, None);
        }
        round
    }

    /// A node's round: `target`, and when that is the limited broadcast address (the
    /// default), also the broadcast address of every interface a socket bound to `bound`
    /// sends from. Any other target (a subnet's broadcast, a unicast address such as
    /// 127.0.0.1) is what was asked for, and is used alone.
    pub(crate) fn of_announcements(
        target: SocketAddr,
        bound: IpAddr,
        interfaces: &[InterfaceBroadcast],
    ) -> Round {
        let mut round = Round::default();
        round.add(target, None);
        if is_limited_broadcast(target) {
            for interface in interfaces.iter().filter(|i| sends_from(bound, i)) {
                let addr = SocketAddr::from((interface.broadcast, target.port()));
                round.add(addr, Some(&interface.name));
            }
        }
        round
    }

    /// Whether a node's round to `target` needs the host's interfaces.
    pub(crate) fn announcements_need_interfaces(target: SocketAddr) -> bool {
        is_limited_broadcast(target)
    }

    fn add(&mut self, addr: SocketAddr, interface: Option<&str>) {
        if self.destinations.iter().all(|d| d.addr != addr) {
            self.destinations.push(Destination {
                addr,
                interface: interface.map(str::to_owned),
            });
        }
    }

    /// The destinations, in sending order.
    pub(crate) fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    /// Whether a round of this kind needs the host's interfaces: only rounds that
    /// broadcast do, so loopback-only discovery never looks at them.
    pub(crate) fn needs_interfaces(targets: &[Target]) -> bool {
        targets.iter().any(|t| t.broadcast_address().is_some())
    }
}

/// How one destination of a round fared.
#[derive(Debug)]
pub(crate) struct Sent {
    /// Where the datagram went.
    pub(crate) destination: Destination,
    /// Why it did not, if it did not.
    pub(crate) error: Option<io::Error>,
}

/// Sends rounds of one kind and says each failure once (per destination and kind of
/// error), and a failure to list the interfaces once.
pub(crate) struct Sender {
    kind: RoundKind,
    said: HashSet<(SocketAddr, io::ErrorKind)>,
    listing_failed: bool,
}

impl Sender {
    /// A sender of `kind` rounds that has said nothing yet.
    pub(crate) fn new(kind: RoundKind) -> Sender {
        Sender {
            kind,
            said: HashSet::new(),
            listing_failed: false,
        }
    }

    /// The host's broadcast-capable interfaces now; none (said once) if they cannot be
    /// listed.
    pub(crate) fn interfaces(&mut self) -> Vec<InterfaceBroadcast> {
        match broadcast_interfaces() {
            Ok(found) => found,
            Err(e) => {
                if !self.listing_failed {
                    self.listing_failed = true;
                    pp_runtime::warn!(
                        "discovery: cannot list the network interfaces: {e}; {} go to the \
                         configured addresses only",
                        self.noun()
                    );
                }
                Vec::new()
            }
        }
    }

    /// Sends `datagram` to every destination of `round`, and says what failed.
    pub(crate) async fn send(
        &mut self,
        socket: &UdpSocket,
        datagram: &[u8],
        round: &Round,
    ) -> Vec<Sent> {
        let mut sent = Vec::with_capacity(round.destinations().len());
        for destination in round.destinations() {
            let error = socket.send_to(datagram, destination.addr).await.err();
            sent.push(Sent {
                destination: destination.clone(),
                error,
            });
        }
        // The interfaces' broadcasts reach every network the limited broadcast would
        // (and more): when one went out, the limited broadcast failing (no default route)
        // loses nothing worth a warning.
        let interface_reached = sent
            .iter()
            .any(|s| s.destination.interface.is_some() && s.error.is_none());
        for failed in &sent {
            if let Some(e) = &failed.error {
                self.say(&failed.destination, e, interface_reached);
            }
        }
        sent
    }

    fn say(&mut self, destination: &Destination, e: &io::Error, interface_reached: bool) {
        let limited = is_limited_broadcast(destination.addr);
        let to = destination.addr;
        if limited && interface_reached {
            pp_runtime::debug!(
                "discovery: cannot send {} to {to}: {e}; the interfaces' broadcast addresses \
                 were reached",
                self.noun()
            );
            return;
        }
        let key = (to, e.kind());
        if self.said.contains(&key) || self.said.len() >= MAX_REMEMBERED {
            pp_runtime::debug!("discovery: cannot send {} to {to}: {e}", self.noun());
            return;
        }
        self.said.insert(key);
        let why = if limited && e.kind() == io::ErrorKind::NetworkUnreachable {
            ": no default route, and no broadcast-capable IPv4 interface is up"
        } else {
            ""
        };
        match self.kind {
            RoundKind::Probes => pp_runtime::warn!(
                "discovery: cannot send probes to {destination}: {e}{why}; nodes only it \
                 reaches are not found"
            ),
            RoundKind::Announcements => pp_runtime::warn!(
                "autodiscovery: cannot announce this node to {destination}: {e}{why}; \
                 clients there find it only if their probes reach it"
            ),
        }
    }

    fn noun(&self) -> &'static str {
        match self.kind {
            RoundKind::Probes => "probes",
            RoundKind::Announcements => "announcements",
        }
    }
}

/// Whether `addr` is the limited broadcast address, `255.255.255.255`.
fn is_limited_broadcast(addr: SocketAddr) -> bool {
    addr.ip() == IpAddr::V4(Ipv4Addr::BROADCAST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(name: &str, ip: [u8; 4], broadcast: [u8; 4]) -> InterfaceBroadcast {
        InterfaceBroadcast {
            name: name.into(),
            ip: ip.into(),
            broadcast: broadcast.into(),
        }
    }

    fn addrs(round: &Round) -> Vec<String> {
        round
            .destinations()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn target(text: &str) -> Target {
        Target::parse(text).unwrap().unwrap()
    }

    #[test]
    fn probes_go_to_the_targets_and_the_interfaces_in_their_subnets_once() {
        let interfaces = [
            eth("eth0", [10, 77, 0, 1], [10, 77, 0, 255]),
            eth("eth1", [192, 168, 1, 5], [192, 168, 1, 255]),
            // Two addresses of one subnet: one broadcast address.
            eth("eth2", [10, 77, 0, 2], [10, 77, 0, 255]),
        ];
        let round = Round::of_probes(
            &[target("*"), target("10.77.0.*:6000"), target("*@h")],
            &interfaces,
            &["127.0.0.1:7".parse().unwrap()],
        );
        assert_eq!(
            addrs(&round),
            [
                "255.255.255.255:60000",
                "10.77.0.255:60000 (eth0)",
                "192.168.1.255:60000 (eth1)",
                "10.77.0.255:6000",
                "127.0.0.1:7",
            ]
        );
        assert!(Round::needs_interfaces(&[target("*@h"), target("*")]));
        assert!(!Round::needs_interfaces(&[target("*@127.0.0.1")]));
        let unicast_only = Round::of_probes(&[target("*@h")], &interfaces, &[]);
        assert_eq!(unicast_only, Round::default());
    }

    #[test]
    fn announcements_add_the_interfaces_only_to_the_limited_broadcast() {
        let interfaces = [
            eth("eth0", [10, 77, 0, 1], [10, 77, 0, 255]),
            eth("eth1", [192, 168, 1, 5], [192, 168, 1, 255]),
        ];
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let limited = SocketAddr::from((Ipv4Addr::BROADCAST, 60000));
        assert_eq!(
            addrs(&Round::of_announcements(limited, any, &interfaces)),
            [
                "255.255.255.255:60000",
                "10.77.0.255:60000 (eth0)",
                "192.168.1.255:60000 (eth1)"
            ]
        );
        let bound = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5));
        assert_eq!(
            addrs(&Round::of_announcements(limited, bound, &interfaces)),
            ["255.255.255.255:60000", "192.168.1.255:60000 (eth1)"]
        );
        for asked in ["127.0.0.1:6000", "10.77.0.255:60000"] {
            let asked: SocketAddr = asked.parse().unwrap();
            assert_eq!(
                addrs(&Round::of_announcements(asked, any, &interfaces)),
                [asked.to_string()]
            );
        }
    }

    #[tokio::test]
    async fn a_failing_destination_is_said_once() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut sender = Sender::new(RoundKind::Probes);
        // From a socket bound to loopback, a datagram to another network cannot go.
        let round = Round::of_probes(&[], &[], &["192.0.2.1:9".parse().unwrap()]);
        for _ in 0..3 {
            let sent = sender.send(&socket, b"x", &round).await;
            assert!(sent[0].error.is_some(), "{sent:?}");
        }
        assert_eq!(sender.said.len(), 1);
    }
}
