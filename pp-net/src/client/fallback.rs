//! The fallback policy, carried out
//! ([`ClusterOptions::fallback_wait`](pp_runtime::ClusterOptions::fallback_wait)): with no
//! local workers, jobs that no usable node takes run locally after a while.

use super::context::ClientContext;
use super::nodes::NodeList;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the watch looks at the queue and the nodes.
const FALLBACK_CHECK_EVERY: Duration = Duration::from_millis(50);

/// Watches for jobs stranded with no usable node and no local worker; once that has lasted
/// the options' `fallback_wait`, starts local workers and returns.
pub(crate) async fn fall_back_when_stranded(
    nodes: Arc<NodeList>,
    ctx: Arc<ClientContext>,
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
                let wait = ctx.options.fallback_wait;
                let cores = pp_runtime::available_cores();
                let names: Vec<String> = nodes.snapshot().iter().map(|n| n.name.clone()).collect();
                let names = if names.is_empty() {
                    "none named or discovered".to_owned()
                } else {
                    names.join(", ")
                };
                pp_runtime::warn!(
                    "no node is usable ({names}) after {wait:?}: running jobs on {cores} local workers"
                );
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
