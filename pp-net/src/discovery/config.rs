//! How a node announces itself, and the discovery defaults shared by nodes and clients.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// The UDP port of discovery, for nodes and clients alike: 60000, the number of the default
/// job port (UDP and TCP ports are separate).
pub const DEFAULT_DISCOVERY_PORT: u16 = 60000;

/// Where nodes send their announcements by default: the limited broadcast address.
pub const DEFAULT_BROADCAST: IpAddr = IpAddr::V4(Ipv4Addr::BROADCAST);

/// How often a node announces itself unprompted, by default.
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);

/// How a node announces itself (`ppserver -a`).
///
/// # Examples
/// ```
/// use pp_net::discovery::{DiscoveryConfig, DEFAULT_DISCOVERY_PORT};
/// let mut discovery = DiscoveryConfig::default();
/// discovery.broadcast = "10.0.0.255".parse().unwrap();
/// assert_eq!(discovery.port, DEFAULT_DISCOVERY_PORT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryConfig {
    /// The UDP port to answer probes on and to announce to. Default
    /// [`DEFAULT_DISCOVERY_PORT`]; 0 picks a free port (useful for unicast probes only,
    /// since clients listen for broadcasts on a known port).
    pub port: u16,
    /// Where announcements go. Default [`DEFAULT_BROADCAST`]; a subnet's broadcast address
    /// (`192.168.1.255`) or a unicast address also work.
    pub broadcast: IpAddr,
    /// Time between unprompted announcements. Default [`DEFAULT_ANNOUNCE_INTERVAL`].
    pub interval: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            port: DEFAULT_DISCOVERY_PORT,
            broadcast: DEFAULT_BROADCAST,
            interval: DEFAULT_ANNOUNCE_INTERVAL,
        }
    }
}
