//! Automatic discovery of nodes over UDP: `ppserver -a` and `PP_SERVERS=*`.
//!
//! A node started with autodiscovery ([`DiscoveryConfig`] in
//! [`NodeConfig::discovery`](crate::node::NodeConfig::discovery)) binds a UDP socket on
//! its interface and the discovery port ([`DEFAULT_DISCOVERY_PORT`], 60000, whatever its
//! job port), announces itself to the broadcast address at start and every
//! [`DiscoveryConfig::interval`], and answers each probe with an announcement sent straight
//! back to the prober. An announcement says which TCP port the node takes jobs on, how
//! many workers it runs and a random identifier (see [`wire`] for the bytes); the node's
//! address is the datagram's source address.
//!
//! A client asked for `*` (see [`Target`]) probes at start and keeps listening for as long
//! as it runs. Each node it hears of for the first time gets the same connection task as a
//! named node (authenticate, ship the program, take jobs); an address already known is not
//! added twice, and a known address announcing a new identifier (a restarted node) is
//! retried at once.
//!
//! Datagrams that are not valid discovery datagrams (another protocol, another version,
//! truncated) are counted and logged at debug level, then ignored. Nothing in a datagram
//! is secret or trusted: a forged announcement can only lead a client to connect to
//! something that must still pass the node's authentication.

mod announce;
mod listen;
mod socket;
mod target;
pub mod wire;

pub(crate) use announce::Announcer;
pub(crate) use listen::{discover, Found};
pub use target::Target;
pub use wire::{Announcement, Datagram, WireError};

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
