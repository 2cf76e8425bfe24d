//! Automatic discovery of nodes over UDP: `ppserver -a` and `PP_SERVERS=*`.
//!
//! A node started with autodiscovery ([`DiscoveryConfig`] in
//! [`NodeConfig::discovery`](crate::node::NodeConfig::discovery)) binds a UDP socket on
//! its interface and the discovery port ([`DEFAULT_DISCOVERY_PORT`], 60000, whatever its
//! job port), announces itself to the broadcast address at start and every
//! [`DiscoveryConfig::interval`] (to `255.255.255.255`, by default, and to the broadcast
//! address of each of its up IPv4 interfaces, so that a subnet with no default route
//! hears it too), and answers each probe with an announcement sent straight
//! back to the prober. An announcement says which TCP port the node takes jobs on, how
//! many workers it runs and a random identifier (see [`wire`] for the bytes); the node's
//! address is the datagram's source address. The answer to a probe leaves out the node's
//! name (for logs only), so it is 23 bytes for the probe's 8, and each source address has
//! its own budget of answers (20 a second; 1,000 a second in all): a sender flooding the
//! port cannot use up the answers of others.
//!
//! A client asked for `*` (see [`Target`]) probes at start, every two seconds after that,
//! and keeps listening for as long as it runs; its broadcast probes go to the entry's
//! address and to the broadcast address of each up interface in the entry's subnet (the
//! interfaces are listed again at each round, so one that comes up later is used). A send
//! that fails is a warning, once per destination and kind of error; a client that found
//! no node by the time it falls back to local workers says where it looked. Each node it hears of for the first time gets the same connection task as a
//! named node (authenticate, ship the program, take jobs); an address already known is not
//! added twice, and a known address announcing a new identifier (a restarted node) is
//! retried at once.
//!
//! Datagrams that are not valid discovery datagrams (another protocol, another version,
//! truncated) are counted and logged at debug level, then ignored. Nothing in a datagram
//! is secret or trusted: a forged announcement can only lead a client to connect to
//! something that must still pass the node's authentication.

mod announce;
mod config;
mod interfaces;
mod listen;
mod reply_budget;
mod round;
mod search_status;
mod socket;
mod target;
pub mod wire;

pub(crate) use announce::Announcer;
pub use config::{
    DiscoveryConfig, DEFAULT_ANNOUNCE_INTERVAL, DEFAULT_BROADCAST, DEFAULT_DISCOVERY_PORT,
};
pub(crate) use listen::{discover, Found};
pub(crate) use search_status::SearchStatus;
pub use target::Target;
pub use wire::{Announcement, Datagram, WireError};
