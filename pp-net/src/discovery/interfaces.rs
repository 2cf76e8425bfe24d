//! The host's broadcast-capable IPv4 interfaces, listed afresh at each round of probes or
//! announcements.
//!
//! `255.255.255.255` leaves the host through the route that holds it, usually the default
//! route; on a network with no default route (common on private cluster networks) a send
//! to it fails with "network unreachable". A subnet's own broadcast address (`10.0.0.255`)
//! always has a route while its interface is up, so discovery also sends there. Listing
//! is one `getifaddrs` call, cheap enough for every round, so an interface that comes up
//! after the program starts is used from the next round on.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// One up, broadcast-capable IPv4 address of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceBroadcast {
    /// The interface's name (`eth0`), for messages.
    pub(crate) name: String,
    /// The host's address on it.
    pub(crate) ip: Ipv4Addr,
    /// The subnet's broadcast address.
    pub(crate) broadcast: Ipv4Addr,
}

/// The up, broadcast-capable IPv4 addresses of this host, loopback and point-to-point
/// links left out (they have no broadcast address).
///
/// # Errors
/// When the operating system cannot list the interfaces.
pub(crate) fn broadcast_interfaces() -> io::Result<Vec<InterfaceBroadcast>> {
    Ok(if_addrs::get_if_addrs()?
        .iter()
        .filter_map(usable)
        .collect())
}

/// `interface` as a place to broadcast to, if it is one.
fn usable(interface: &if_addrs::Interface) -> Option<InterfaceBroadcast> {
    let if_addrs::IfAddr::V4(v4) = &interface.addr else {
        return None;
    };
    if interface.is_loopback() || interface.is_p2p() || !interface.is_oper_up() {
        return None;
    }
    let broadcast = v4.broadcast.filter(|b| !b.is_unspecified())?;
    Some(InterfaceBroadcast {
        name: interface.name.clone(),
        ip: v4.ip,
        broadcast,
    })
}

/// Whether a socket bound to `bound` sends from `interface`'s address: any interface for
/// an unspecified address, else only the one that has it.
pub(crate) fn sends_from(bound: IpAddr, interface: &InterfaceBroadcast) -> bool {
    bound.is_unspecified() || bound == IpAddr::V4(interface.ip)
}

#[cfg(all(test, not(windows)))]
mod tests {
    use super::*;
    use if_addrs::{IfAddr, IfOperStatus, Ifv4Addr, Interface};

    fn interface(ip: [u8; 4], broadcast: Option<[u8; 4]>, up: bool, p2p: bool) -> Interface {
        Interface {
            name: "eth0".into(),
            addr: IfAddr::V4(Ifv4Addr {
                ip: ip.into(),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                prefixlen: 24,
                broadcast: broadcast.map(Ipv4Addr::from),
            }),
            index: Some(2),
            oper_status: if up {
                IfOperStatus::Up
            } else {
                IfOperStatus::Unknown
            },
            is_p2p: p2p,
        }
    }

    #[test]
    fn only_up_broadcast_capable_ipv4_interfaces_are_used() {
        let subnet = interface([10, 0, 0, 5], Some([10, 0, 0, 255]), true, false);
        assert_eq!(
            usable(&subnet),
            Some(InterfaceBroadcast {
                name: "eth0".into(),
                ip: Ipv4Addr::new(10, 0, 0, 5),
                broadcast: Ipv4Addr::new(10, 0, 0, 255),
            })
        );
        for unusable in [
            interface([10, 0, 0, 5], Some([10, 0, 0, 255]), false, false),
            interface([10, 0, 0, 5], None, true, false),
            interface([10, 0, 0, 5], Some([10, 0, 0, 255]), true, true),
            interface([127, 0, 0, 1], Some([127, 255, 255, 255]), true, false),
            interface([10, 0, 0, 5], Some([0, 0, 0, 0]), true, false),
        ] {
            assert_eq!(usable(&unusable), None, "{unusable:?}");
        }
    }

    #[test]
    fn a_socket_bound_to_one_address_sends_from_that_interface_only() {
        let eth0 = InterfaceBroadcast {
            name: "eth0".into(),
            ip: Ipv4Addr::new(10, 0, 0, 5),
            broadcast: Ipv4Addr::new(10, 0, 0, 255),
        };
        assert!(sends_from(Ipv4Addr::UNSPECIFIED.into(), &eth0));
        assert!(sends_from(Ipv4Addr::new(10, 0, 0, 5).into(), &eth0));
        assert!(!sends_from(Ipv4Addr::LOCALHOST.into(), &eth0));
    }

    #[test]
    fn listing_the_host_interfaces_works() {
        // Whatever this host has: the call succeeds and loopback is never among them.
        let found = broadcast_interfaces().expect("getifaddrs");
        assert!(found.iter().all(|i| !i.ip.is_loopback()), "{found:?}");
    }
}
