//! The fallback policy, carried out
//! ([`ClusterOptions::fallback_wait`](pp_runtime::ClusterOptions::fallback_wait)): with no
//! local workers, jobs that no usable node takes run locally after a while, and only
//! until a node serves again. Falling back is said once per outage, and its end too; a
//! client whose discovery found no node says where it looked.
//!
//! The watch looks every [`FALLBACK_CHECK_EVERY`]. Jobs queued with no local worker and
//! no node connected for the whole `fallback_wait` start one local worker per core. As
//! soon as any node is connected again, those workers stop as `Server::set_ncpus(0)`
//! stops workers: each finishes the job in hand, queued jobs stay queued (for the nodes),
//! no job is lost. If every node goes again, the same wait starts local workers again.
//! Workers the program set itself (`set_ncpus`) are left alone.

use super::context::ClientContext;
use super::nodes::NodeList;
use crate::discovery::SearchStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How often the watch looks at the queue and the nodes.
const FALLBACK_CHECK_EVERY: Duration = Duration::from_millis(50);

/// Where the fallback stands.
enum Fallback {
    /// Local workers are not the fallback's; `since` is when jobs were first seen
    /// stranded (queued, no local worker, no node connected), while they still are.
    Off { since: Option<Instant> },
    /// The fallback started this many local workers.
    On { workers: usize },
}

/// Watches for jobs stranded with no usable node and no local worker; once that has lasted
/// the options' `fallback_wait`, starts local workers, and stops them once a node is
/// connected again; until the server shuts down. `search` is the status of discovery,
/// when some entry asks for it.
pub(crate) async fn fall_back_when_stranded(
    nodes: Arc<NodeList>,
    ctx: Arc<ClientContext>,
    search: Option<Arc<SearchStatus>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut state = Fallback::Off { since: None };
    loop {
        let serving = nodes.with(|nodes| nodes.iter().find(|n| n.is_connected()).cloned());
        state = match state {
            Fallback::Off { since } => {
                let stranded =
                    serving.is_none() && ctx.feed.local_workers() == 0 && ctx.feed.queued() > 0;
                match (stranded, since) {
                    (false, _) => Fallback::Off { since: None },
                    (true, None) => Fallback::Off {
                        since: Some(Instant::now()),
                    },
                    (true, Some(since)) if since.elapsed() >= ctx.options.fallback_wait => {
                        start_workers(&nodes, &ctx, search.as_deref())
                    }
                    (true, Some(since)) => Fallback::Off { since: Some(since) },
                }
            }
            Fallback::On { workers } => match serving {
                Some(node) => {
                    stop_workers(&ctx, workers, &node.name);
                    Fallback::Off { since: None }
                }
                None => Fallback::On { workers },
            },
        };
        tokio::select! {
            _ = tokio::time::sleep(FALLBACK_CHECK_EVERY) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Starts one local worker per core, and says so.
fn start_workers(nodes: &NodeList, ctx: &ClientContext, search: Option<&SearchStatus>) -> Fallback {
    let cores = pp_runtime::available_cores();
    say_fallback(nodes, search, ctx, cores);
    match ctx.feed.set_local_workers(cores) {
        Ok(()) => Fallback::On { workers: cores },
        Err(e) => {
            pp_runtime::error!("cannot start local workers: {e}");
            Fallback::Off { since: None }
        }
    }
}

/// Stops the `workers` local workers the fallback started, now that node `serving` is
/// connected; leaves them if the program changed the count since.
fn stop_workers(ctx: &ClientContext, workers: usize, serving: &str) {
    if ctx.feed.local_workers() != workers {
        pp_runtime::debug!("the program changed the local worker count: the fallback leaves it");
        return;
    }
    match ctx.feed.set_local_workers(0) {
        Ok(()) => pp_runtime::warn!(
            "node {serving} serves again: the {workers} local fallback workers stop once \
             their jobs in hand finish; jobs run on the nodes"
        ),
        Err(e) => pp_runtime::error!("cannot stop the local fallback workers: {e}"),
    }
}

/// Says, once, that jobs now run on `cores` local workers, and why: no node named or
/// discovered is usable after `wait`, or discovery found none at all (and where it looked).
fn say_fallback(
    nodes: &NodeList,
    search: Option<&SearchStatus>,
    ctx: &ClientContext,
    cores: usize,
) {
    let wait = ctx.options.fallback_wait;
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
                 jobs on {cores} local workers until a node answers",
                search.entries(),
                search.where_looked()
            );
        }
        _ => {
            let names = match (names.is_empty(), ctx.joining) {
                (true, Some(addr)) => format!("none joined on {addr} yet"),
                (true, None) => "none named or discovered".to_owned(),
                (false, _) => names.join(", "),
            };
            pp_runtime::warn!(
                "no node is usable ({names}) after {wait:?}: running jobs on {cores} local \
                 workers until one is"
            );
        }
    }
}
