//! `dns:NAME[:PORT]` entries of the node list: every address NAME resolves to is a node
//! (a Kubernetes headless Service names one address per pod), resolved again every
//! [`dns_refresh`](pp_runtime::ClusterOptions::dns_refresh).
//!
//! Each address is a node named `ip:port`, driven as a named node is (its own task:
//! sessions, backoff, losses). An address that appears in a later resolution is added; one
//! that is gone is dropped: its task is stopped as at shutdown, so the jobs it held go back
//! to the front of the queue without using an attempt, and then it leaves the node list
//! (its row stays in the statistics if it ran jobs, and is used again if the address comes
//! back). An address already known under
//! another entry (named, discovered, another `dns:` entry) is not added twice. A
//! resolution that fails, or finds nothing, changes nothing: it is said once (and its
//! recovery too), so that a DNS outage does not drop every node.

use super::address::NodeAddress;
use super::context::ClientContext;
use super::node_state::NodeState;
use super::nodes::NodeList;
use super::reconnect::keep_node_connected;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The prefix of a DNS entry in `PP_SERVERS`.
pub(crate) const DNS_PREFIX: &str = "dns:";

/// How long one resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a dropped node's task may take to give its jobs back.
const DROP_GRACE: Duration = Duration::from_secs(5);

/// A `dns:NAME[:PORT]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnsEntry {
    /// The name and port to resolve.
    pub(crate) address: NodeAddress,
}

impl DnsEntry {
    /// Parses `text` if it is a DNS entry (`dns:NAME` or `dns:NAME:PORT`, port 60000 when
    /// absent); `Ok(None)` if it is not one.
    pub(crate) fn parse(text: &str) -> Result<Option<DnsEntry>, String> {
        let Some(rest) = text.trim().strip_prefix(DNS_PREFIX) else {
            return Ok(None);
        };
        let address = NodeAddress::parse(rest).map_err(|e| format!("`{text}`: {e}"))?;
        Ok(Some(DnsEntry { address }))
    }

    /// The entry as the user wrote it, with its port.
    fn display(&self) -> String {
        format!("{DNS_PREFIX}{}", self.address.display())
    }
}

/// One address's node and how to stop its task.
struct Resolved {
    node: Arc<NodeState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Resolves `entry` now and every refresh, adding and dropping nodes, until the server
/// shuts down; then stops its nodes' tasks (the server's shutdown reaches them through
/// here) and waits for them.
pub(crate) async fn follow(
    entry: DnsEntry,
    nodes: Arc<NodeList>,
    ctx: Arc<ClientContext>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut known: HashMap<SocketAddr, Resolved> = HashMap::new();
    let mut failing = false;
    let name = entry.display();
    loop {
        let resolution = tokio::select! {
            done = resolve(&entry.address) => done,
            _ = stopped.changed() => break,
        };
        match resolution {
            Ok(addrs) => {
                if std::mem::take(&mut failing) {
                    pp_runtime::warn!("{name} resolves again ({} addresses)", addrs.len());
                }
                reconcile(&name, &addrs, &mut known, &nodes, &ctx).await;
            }
            Err(why) => {
                if !failing {
                    pp_runtime::warn!(
                        "{name}: {why}; its {} nodes are kept, and it is resolved again \
                         every {:?}",
                        known.len(),
                        ctx.options.dns_refresh
                    );
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.options.dns_refresh) => {}
            _ = stopped.changed() => break,
        }
    }
    for (_, resolved) in known {
        let _ = resolved.stop.send(true);
        let _ = tokio::time::timeout(DROP_GRACE, resolved.task).await;
    }
}

/// Every address of `address`'s host, with its port; an error when there is none.
async fn resolve(address: &NodeAddress) -> Result<BTreeSet<SocketAddr>, String> {
    let target = (address.host.as_str(), address.port);
    let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(target))
        .await
        .map_err(|_| format!("no answer from the resolver within {RESOLVE_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot resolve {}: {e}", address.host))?
        .collect::<BTreeSet<_>>();
    if addrs.is_empty() {
        return Err(format!("{} resolves to no address", address.host));
    }
    Ok(addrs)
}

/// Adds a node for each address of `addrs` not known yet, and drops the known ones that
/// are no longer there.
async fn reconcile(
    name: &str,
    addrs: &BTreeSet<SocketAddr>,
    known: &mut HashMap<SocketAddr, Resolved>,
    nodes: &Arc<NodeList>,
    ctx: &Arc<ClientContext>,
) {
    let gone: Vec<SocketAddr> = known
        .keys()
        .filter(|a| !addrs.contains(a))
        .copied()
        .collect();
    for addr in gone {
        let Some(resolved) = known.remove(&addr) else {
            continue;
        };
        let _ = resolved.stop.send(true);
        if tokio::time::timeout(DROP_GRACE, resolved.task)
            .await
            .is_err()
        {
            pp_runtime::warn!(node = %resolved.node.name, "the task of a dropped node did not end within {DROP_GRACE:?}");
        }
        nodes.remove(&resolved.node);
        pp_runtime::info!(
            node = %resolved.node.name,
            "{name} no longer resolves to {addr}: node dropped, its jobs in flight back in the queue"
        );
    }
    for addr in addrs {
        if known.contains_key(addr) || nodes.find(&addr.to_string()).is_some() {
            continue;
        }
        let node = nodes.revive(&addr.to_string()).unwrap_or_else(|| {
            let node = Arc::new(NodeState::new(NodeAddress {
                host: addr.ip().to_string(),
                port: addr.port(),
            }));
            nodes.push(Arc::clone(&node));
            node
        });
        pp_runtime::info!(node = %node.name, "{name} resolves to {addr}: node added");
        let (stop, own_stop) = watch::channel(false);
        let task = tokio::spawn(keep_node_connected(
            Arc::clone(&node),
            Arc::clone(ctx),
            own_stop,
        ));
        known.insert(*addr, Resolved { node, stop, task });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_with_and_without_port() {
        let e = DnsEntry::parse("dns:pp-nodes.default.svc:7000")
            .unwrap()
            .unwrap();
        assert_eq!(e.address.host, "pp-nodes.default.svc");
        assert_eq!(e.address.port, 7000);
        assert_eq!(e.display(), "dns:pp-nodes.default.svc:7000");
        let e = DnsEntry::parse(" dns:nodes ").unwrap().unwrap();
        assert_eq!(e.address.port, 60000);
        assert_eq!(DnsEntry::parse("nodes:7000").unwrap(), None);
        for bad in ["dns:", "dns::7000", "dns:nodes:0"] {
            assert!(DnsEntry::parse(bad).is_err(), "{bad}");
        }
    }
}
