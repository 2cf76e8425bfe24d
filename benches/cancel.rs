//! Cancel benchmark: cancelling 100,000 queued jobs (one by one, as a group, all at
//! once), and what a time limit costs a tiny job (the deadline timer) beside no limit.
//!
//! Run with `cargo bench --bench cancel`; it prints Markdown tables for BENCHMARKS.md.
//! Each figure is the median of several runs.

mod common;

use common::median;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const QUEUED: usize = 100_000;
const TINY_JOBS: usize = 200_000;
const RUNS: usize = 5;

static RELEASE: AtomicBool = AtomicBool::new(false);

/// Holds the only worker until released, so that every other job stays queued.
#[pp::parallel]
fn hold() {
    while !RELEASE.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[pp::parallel]
fn empty() {}

/// How a batch of queued jobs is cancelled.
#[derive(Clone, Copy)]
enum Cancel {
    EachJob,
    Group,
    All,
}

/// Queues [`QUEUED`] jobs behind a held worker and times their cancellation.
fn cancel_queued(how: Cancel) -> Duration {
    let server = pp::Server::builder().ncpus(1).build().expect("server");
    RELEASE.store(false, Ordering::SeqCst);
    let held = server.submit(hold, ());
    while server.stats().active_jobs == 0 {
        std::thread::yield_now();
    }
    let jobs: Vec<_> = (0..QUEUED)
        .map(|_| server.job(empty, ()).group("batch").submit())
        .collect();
    let start = Instant::now();
    let cancelled = match how {
        Cancel::EachJob => jobs.iter().filter(|job| job.cancel()).count(),
        Cancel::Group => server.cancel_group("batch"),
        Cancel::All => server.cancel_all() - 1,
    };
    let took = start.elapsed();
    assert_eq!(cancelled, QUEUED);
    RELEASE.store(true, Ordering::SeqCst);
    let _ = held.result();
    server.wait();
    took
}

/// Runs [`TINY_JOBS`] empty jobs, each with time limit `limit` if set.
fn tiny_jobs(server: &pp::Server, limit: Option<Duration>) -> Duration {
    let start = Instant::now();
    let jobs: Vec<_> = (0..TINY_JOBS)
        .map(|_| match limit {
            Some(limit) => server.job(empty, ()).timeout(limit).submit(),
            None => server.submit(empty, ()),
        })
        .collect();
    for job in jobs {
        job.result().expect("empty job");
    }
    start.elapsed()
}

fn main() {
    println!("## Cancelling {QUEUED} queued jobs, median of {RUNS} runs\n");
    println!("| how | time | per job |");
    println!("|---|---|---|");
    for (name, how) in [
        ("`Job::cancel` on each", Cancel::EachJob),
        ("`cancel_group`", Cancel::Group),
        ("`cancel_all`", Cancel::All),
    ] {
        let took = median((0..RUNS).map(|_| cancel_queued(how)).collect());
        println!(
            "| {name} | {:.1} ms | {:.0} ns |",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e9 / QUEUED as f64
        );
    }
    println!();

    let server = pp::Server::builder().ncpus(2).build().expect("server");
    let (mut plain, mut limited) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        plain.push(tiny_jobs(&server, None));
        limited.push(tiny_jobs(&server, Some(Duration::from_secs(60))));
    }
    let (plain, limited) = (median(plain), median(limited));
    let rate = |d: Duration| TINY_JOBS as f64 / d.as_secs_f64() / 1e6;
    println!("## {TINY_JOBS} empty jobs, 2 workers, median of {RUNS} runs\n");
    println!("| jobs | time | jobs/s |");
    println!("|---|---|---|");
    println!(
        "| no time limit | {:.3} s | {:.2} M |",
        plain.as_secs_f64(),
        rate(plain)
    );
    println!(
        "| `.timeout(60 s)` each | {:.3} s | {:.2} M |\n",
        limited.as_secs_f64(),
        rate(limited)
    );
}
