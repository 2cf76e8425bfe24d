//! Fault tolerance and load balancing, measured: nodes of unequal size against the ideal
//! time, and the cost of losing one node of three during a run (SIGKILL: the connection
//! breaks; SIGSTOP: the node goes silent and is found out by the liveness timeout), each
//! beside the fault-free run of the same jobs in the same run.
//!
//! Run with `cargo bench --bench faults`. Jobs sleep for a fixed time, so the ideal is exact:
//! total work divided by total workers.

mod common;

use common::{median, Node, SECRET};
use std::time::{Duration, Instant};

const RUNS: usize = 3;

/// Sleeps `millis` ms, then returns `x`.
#[pp::parallel]
fn echo_after(x: u64, millis: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(millis));
    x
}

fn client(nodes: &[&Node], liveness: Duration) -> pp::Server {
    let server = pp::Server::builder()
        .ppservers(nodes.iter().map(|n| n.addr.clone()))
        .secret(SECRET)
        .ncpus(0)
        .heartbeat_interval(liveness / 10)
        .liveness_timeout(liveness)
        .build()
        .expect("cluster client");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.active_nodes().iter().all(|n| n.connected) {
        assert!(Instant::now() < deadline, "nodes did not connect");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Warm up: the first jobs pay the upload and the workers' start.
    let warm: Vec<_> = (0..8).map(|i| server.submit(echo_after, (i, 1))).collect();
    warm.into_iter().for_each(|j| drop(j.result()));
    server
}

/// What one run measured.
struct Run {
    total: Duration,
    /// When the fault was injected, from the start.
    fault_at: Duration,
    /// Jobs whose results were in when the fault was injected.
    done_at_fault: u64,
}

/// Runs `jobs` jobs of `millis` ms; `fault` is called once a third of the results are in.
fn run(server: &pp::Server, jobs: u64, millis: u64, fault: impl FnOnce()) -> Run {
    let start = Instant::now();
    let handles: Vec<_> = (0..jobs)
        .map(|i| server.submit(echo_after, (i, millis)))
        .collect();
    let mut fault = Some(fault);
    let (mut fault_at, mut done_at_fault) = (Duration::ZERO, 0);
    for (i, job) in handles.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(i as u64));
        if i as u64 == jobs / 3 {
            if let Some(fault) = fault.take() {
                fault_at = start.elapsed();
                done_at_fault = i as u64 + 1;
                fault();
            }
        }
    }
    Run {
        total: start.elapsed(),
        fault_at,
        done_at_fault,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let (jobs, millis) = (300u64, 10u64);
    let ideal = Duration::from_millis(jobs * millis / 3);
    let (small, large) = (Node::start(1), Node::start(2));
    let server = client(&[&small, &large], Duration::from_secs(1));
    let times: Vec<Duration> = (0..RUNS)
        .map(|_| run(&server, jobs, millis, || {}).total)
        .collect();
    let t = median(times);
    let stats = server.stats();
    let row = |addr: &str| {
        stats
            .executors
            .iter()
            .find(|e| e.name == addr)
            .map_or(0, |e| e.jobs)
    };
    println!("## Unequal nodes: 1 and 2 workers, {jobs} jobs of {millis} ms, median of {RUNS}\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| ideal (work / 3 workers) | {} |", ms(ideal));
    println!(
        "| measured | {} ({:+.1}% of ideal) |",
        ms(t),
        (t.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "| jobs on the 1-worker / 2-worker node (all runs) | {} / {} |\n",
        row(&small.addr),
        row(&large.addr)
    );
    drop(server);
    drop((small, large));

    let (jobs, millis) = (300u64, 20u64);
    let liveness = Duration::from_secs(1);
    println!("## Losing one node of three (1 worker each), {jobs} jobs of {millis} ms, liveness timeout {liveness:?}\n");
    println!("Expected with the loss: the time of the fault plus the work left then, on the two");
    println!(
        "workers left. Overhead: measured minus expected. Bound: the lost node's jobs in flight"
    );
    println!("(rescheduled, re-run) plus the time to find the loss out (none for SIGKILL: the");
    println!("connection breaks; the liveness timeout for SIGSTOP).\n");
    println!("| run | time | expected with the loss | overhead | jobs rescheduled | bound |");
    println!("|---|---|---|---|---|---|");
    let nodes = [Node::start(1), Node::start(1), Node::start(1)];
    let server = client(&[&nodes[0], &nodes[1], &nodes[2]], liveness);
    let free = run(&server, jobs, millis, || {});
    let ideal = Duration::from_millis(jobs * millis / 3);
    println!(
        "| fault-free | {} | {} (ideal) | | 0 | |",
        ms(free.total),
        ms(ideal)
    );
    drop(server);
    drop(nodes);
    for (label, signal, detection) in [
        ("SIGKILL after a third", "KILL", Duration::ZERO),
        ("SIGSTOP after a third", "STOP", liveness),
    ] {
        let nodes = [Node::start(1), Node::start(1), Node::start(1)];
        let server = client(&[&nodes[0], &nodes[1], &nodes[2]], liveness);
        let before = server.stats().rescheduled_jobs;
        let r = run(&server, jobs, millis, || nodes[2].signal(signal));
        let rescheduled = server.stats().rescheduled_jobs - before;
        let expected = r.fault_at + Duration::from_millis((jobs - r.done_at_fault) * millis / 2);
        let overhead = r.total.saturating_sub(expected);
        let bound = Duration::from_millis(rescheduled * millis) + detection;
        println!(
            "| {label} | {} | {} | {} | {rescheduled} | {} |",
            ms(r.total),
            ms(expected),
            ms(overhead),
            ms(bound)
        );
        if signal == "STOP" {
            nodes[2].signal("CONT");
        }
    }
    println!();
}
