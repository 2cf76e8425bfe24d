//! What every session of one cluster client shares: the queue, the secret, the program it
//! ships, the options, every session's jobs in flight and the nodes.

use super::flights::Flights;
use super::nodes::NodeList;
use crate::channel::{ChannelConfig, Secret};
use crate::program_set::ProgramSet;
use pp_runtime::remote::{ClusterOptions, JobFeed};
use std::sync::Arc;

/// What every session of a client shares, built once by `connect`.
pub(crate) struct ClientContext {
    /// The server's queue, as remote executors see it.
    pub(crate) feed: JobFeed,
    /// The cluster's secret, for each session's handshake.
    pub(crate) secret: Secret,
    /// Limits of every connection.
    pub(crate) channel: ChannelConfig,
    /// The builds of the program (the running one first), each shipped to the nodes of
    /// its platform that lack it.
    pub(crate) programs: ProgramSet,
    /// The fingerprint of the task registry, sent in the hello.
    pub(crate) registry_fingerprint: u64,
    /// Heartbeats, liveness, attempts, straggler copies, fallback, lanes.
    pub(crate) options: ClusterOptions,
    /// Every session's jobs in flight, to find stragglers.
    pub(crate) flights: Flights,
    /// The client's nodes: where a job one node should avoid can go instead.
    pub(crate) nodes: Arc<NodeList>,
    /// Where nodes join the client (`PP_LISTEN`), if they do.
    pub(crate) joining: Option<std::net::SocketAddr>,
}
