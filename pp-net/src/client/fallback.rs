//! The fallback policy, carried out
//! ([`ClusterOptions::fallback_wait`](pp_runtime::ClusterOptions::fallback_wait)): with no
//! local workers, jobs that no usable node takes run locally after a while. Falling back
//! is said once, and a client whose discovery found no node says where it looked.

use super::context::ClientContext;
use super::nodes::NodeList;
use crate::discovery::SearchStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the watch looks at the queue and the nodes.
const FALLBACK_CHECK_EVERY: Duration = Duration::from_millis(50);

/// Watches for jobs stranded with no usable node and no local worker; once that has lasted
/// the options' `fallback_wait`, starts local workers and returns. `search` is the status
/// of discovery, when some entry asks for it.
pub(crate) async fn fall_back_when_stranded(
    nodes: Arc<NodeList>,
    ctx: Arc<ClientContext>,
    search: Option<Arc<SearchStatus>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut waiting_since: Option<Instant> = None;
    loop {
        let stranded = ctx.feed.local_workers() == 0
            && ctx.feed.queued() > 0
            && !nodes.snapshot().iter().any(|n| n.is_connected());
        match (stranded, waiting_since) {
            (false, _) => waiting_since = None,
            (true, None) => waiting_since = Some(Instant::now()),
            (true, Some(since)) if since.elapsed() >= ctx.options.fallback_wait => {
                let cores = pp_runtime::available_cores();
                say_fallback(&nodes, search.as_deref(), ctx.options.fallback_wait, cores);
                if let Err(e) = ctx.feed.set_local_workers(cores) {
                    pp_runtime::error!("cannot start local workers: {e}");
                }
                return;
            }
            (true, Some(_)) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(FALLBACK_CHECK_EVERY) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Says, once, that jobs now run on `cores` local workers, and why: no node named or
/// discovered is usable after `wait`, or discovery found none at all (and where it looked).
fn say_fallback(nodes: &NodeList, search: Option<&SearchStatus>, wait: Duration, cores: usize) {
    let names: Vec<String> = nodes.snapshot().iter().map(|n| n.name.clone()).collect();
    match search {
        Some(search) if !search.heard_any() => {
            // No node answered, so every node listed is a named one.
            let named = if names.is_empty() {
                String::new()
            } else {
                format!(" and no named node is usable ({})", names.join(", "))
            };
            pp_runtime::warn!(
                "discovery ({}) found no node in {wait:?}{named}; probes went to {}: running \
                 jobs on {cores} local workers, and on any node that answers later",
                search.entries(),
                search.where_looked()
            );
        }
        _ => {
            let names = if names.is_empty() {
                "none named or discovered".to_owned()
            } else {
                names.join(", ")
            };
            pp_runtime::warn!(
                "no node is usable ({names}) after {wait:?}: running jobs on {cores} local workers"
            );
        }
    }
}
