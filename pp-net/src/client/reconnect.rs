//! Keeps one node connected for as long as the server runs: sessions one after another,
//! with capped exponential backoff (and jitter) between attempts.
//!
//! A node that cannot be used, or is lost (the liveness policy:
//! [`ClusterOptions::liveness_timeout`](pp_runtime::ClusterOptions::liveness_timeout)), is
//! recorded as failed with the reason, which is said once per kind of failure (the
//! `node_health` module), and retried in the background; its jobs run elsewhere meanwhile.
//! A node that announces a restart (the `discovered` module) is retried at once.

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
            node.served_steadily();
        }
        match end {
            SessionEnd::Shutdown => return,
            SessionEnd::Lost { failure, held } => {
                let consequence = if held == 0 {
                    consequence(&ctx)
                } else {
                    format!(
                        "the {held} jobs it held go back to the queue (each up to its \
                         attempt limit) and {}",
                        consequence(&ctx)
                    )
                };
                node.failed(failure, &consequence);
            }
            SessionEnd::Failed(failure) => node.failed(failure, &consequence(&ctx)),
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

/// What a node's failure means for the user's jobs, as its warning says it.
fn consequence(ctx: &ClientContext) -> String {
    if ctx.feed.local_workers() > 0 {
        "its jobs run elsewhere; retrying it in the background".to_owned()
    } else {
        format!(
            "its jobs run on other nodes, or locally if no node is usable for {:?}; retrying \
             it in the background",
            ctx.options.fallback_wait
        )
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
