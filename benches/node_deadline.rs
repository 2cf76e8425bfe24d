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

use common::{percentile, Node, SECRET};
use std::time::{Duration, Instant};

/// Waited at most for any one result, so that a lost reply fails instead of hanging.
const WAIT: Duration = Duration::from_secs(20);

#[pp::parallel]
fn square(x: u64) -> u64 {
    x * x
}

/// Never returns, holding a core.
#[pp::parallel]
fn spin() -> u64 {
    loop {
        std::hint::spin_loop();
    }
}

/// Never returns, asleep.
#[pp::parallel]
fn sleep_forever() -> u64 {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn result<R>(job: pp::Job<R>) -> Result<R, pp::JobError> {
    assert!(job.wait_timeout(WAIT), "no result within {WAIT:?}");
    job.result()
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
    assert_eq!(result(server.submit(square, (2,))), Ok(4));
    let mut trips: Vec<Duration> = (0..rounds)
        .map(|_| {
            let sent = Instant::now();
            assert_eq!(result(server.submit(square, (2,))), Ok(4));
            sent.elapsed()
        })
        .collect();
    println!(
        "## A time limit of {limit:?} on a node (1 worker, 127.0.0.1), {rounds} rounds each\n"
    );
    println!("| hung job | measure | median ms | p90 ms | max ms |");
    println!("|---|---|---:|---:|---:|");
    println!(
        "| (none) | a tiny job's round trip | {} |",
        spread(&mut trips)
    );
    for (what, hung) in [("spinning", spin), ("sleeping", sleep_forever)] {
        let mut late = Vec::new();
        let mut next = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            let hung = server.job(hung, ()).timeout(limit).submit();
            let behind = server.submit(square, (5,));
            let outcome = result(hung);
            let released = started.elapsed();
            assert!(
                matches!(outcome, Err(pp::JobError::TimedOut { .. })),
                "{outcome:?}"
            );
            assert_eq!(result(behind), Ok(25));
            next.push(started.elapsed() - released);
            late.push(released.saturating_sub(limit));
        }
        println!(
            "| {what} | limit to caller released | {} |",
            spread(&mut late)
        );
        println!(
            "| {what} | release to the next job's result | {} |",
            spread(&mut next)
        );
    }
}
