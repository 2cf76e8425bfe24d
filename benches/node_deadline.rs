//! A time limit on a node (issue 16): how late past a hung job's limit its caller is
//! released, and how soon after that the node's replacement worker answers the job queued
//! behind it.
//!
//! Run with `cargo bench --bench node_deadline`; it prints a Markdown table for
//! BENCHMARKS.md. One `ppserver` with one worker on 127.0.0.1, a client with no local
//! worker and no lane. Each round submits a hung job with a time limit and a tiny job
//! behind it on the same worker; "late" runs from the submit plus the limit to the hung
//! job's `TimedOut` (the node counts the limit from when its worker starts the job, so one
//! transfer to the node is included), "next" from that release to the tiny job's result,
//! which the node's replacement worker runs. `NODE_DEADLINE_ROUNDS` sets the rounds per
//! kind of hung job (default 60), `NODE_DEADLINE_LIMIT_MS` the limit (default 50).

mod common;
#[path = "../tests/support/deadline.rs"]
mod deadline;

use common::{percentile, Node, SECRET};
use deadline::{bounded, square};
use std::time::Duration;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median, 90th percentile and maximum of `xs`, in milliseconds.
fn spread(xs: &mut [Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = percentile(xs, 0.5);
    let p90 = percentile(xs, 0.9);
    let max = percentile(xs, 1.0);
    format!("{:.2} | {:.2} | {:.2}", ms(median), ms(p90), ms(max))
}

fn main() {
    let rounds = env_or("NODE_DEADLINE_ROUNDS", 60) as usize;
    let limit = Duration::from_millis(env_or("NODE_DEADLINE_LIMIT_MS", 50));
    let node = Node::start(1);
    let server = pp::Server::builder()
        .ppservers([node.addr.as_str()])
        .secret(SECRET)
        .ncpus(0)
        // Timed jobs never take a lane; the tiny job behind the hung one must not either.
        .lanes(false)
        .build()
        .expect("cluster client");
    // The first job waits for the connection and the upload; it is not measured.
    assert_eq!(bounded(server.submit(square, (2,))), Ok(4));
    let mut trips = deadline::round_trips(&server, rounds);
    println!(
        "## A time limit of {limit:?} on a node (1 worker, 127.0.0.1), {rounds} rounds each\n"
    );
    println!("| hung job | measure | median ms | p90 ms | max ms |");
    println!("|---|---|---:|---:|---:|");
    println!(
        "| (none) | a tiny job's round trip | {} |",
        spread(&mut trips)
    );
    for mut hung in deadline::hung_rounds(&server, rounds, limit) {
        let what = hung.what;
        println!(
            "| {what} | limit to caller released | {} |",
            spread(&mut hung.late)
        );
        println!(
            "| {what} | release to the next job's result | {} |",
            spread(&mut hung.next)
        );
    }
}
