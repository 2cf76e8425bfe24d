//! Keeps one node connected for as long as the server runs: sessions one after another,
//! with capped exponential backoff (and jitter) between attempts.
//!
//! A node that cannot be reached or refuses the secret is reported once (a warning naming
//! it and the reason, again only when the reason changes) and retried in the background;
//! its jobs run elsewhere meanwhile. A node that announces a restart (the `discovered`
//! module) is retried at once. A lost node is retried the same way (the liveness policy:
//! [`ClusterOptions::liveness_timeout`](pp_runtime::ClusterOptions::liveness_timeout)).

use super::context::ClientContext;
use super::node_state::NodeState;
use super::session::{self, SessionEnd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// First pause between attempts to reach a node.
const RETRY_PAUSE_FIRST: Duration = Duration::from_millis(250);

/// Largest pause between attempts to reach a node; a session that lasted longer than this
/// starts the backoff afresh.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Keeps `node` connected until the server shuts down or its queue closes.
pub(crate) async fn keep_node_connected(
    node: Arc<NodeState>,
    ctx: Arc<ClientContext>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut pause = RETRY_PAUSE_FIRST;
    let mut reported: Option<String> = None;
    loop {
        if *stopped.borrow() || ctx.feed.is_closed() {
            return;
        }
        let started = Instant::now();
        let end = session::run(&node, &ctx, &mut stopped).await;
        // A session that lasted starts the backoff afresh; one that failed or was lost soon
        // after it began (a node that flaps) keeps backing off.
        if started.elapsed() > RETRY_PAUSE_MAX {
            pause = RETRY_PAUSE_FIRST;
        }
        match end {
            SessionEnd::Shutdown => return,
            // Logged by the session; a later failure to reconnect is news again.
            SessionEnd::Lost => reported = None,
            SessionEnd::Failed(why) => {
                if reported.as_deref() != Some(why.as_str()) {
                    pp_runtime::warn!(node = %node.name, "node not usable: {why}; its jobs run elsewhere (retrying in the background)");
                    reported = Some(why);
                } else {
                    pp_runtime::debug!(node = %node.name, "node still not usable: {why}");
                }
            }
        }
        let wait = pause + jitter(pause / 4);
        pause = (pause * 2).min(RETRY_PAUSE_MAX);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = node.retry.notified() => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Up to `max`, from the clock's low bits: enough to keep many clients from retrying in step.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let max = u32::try_from(max.as_nanos()).unwrap_or(u32::MAX).max(1);
    Duration::from_nanos(u64::from(nanos % max))
}
