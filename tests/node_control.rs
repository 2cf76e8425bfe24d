//! Job control on a node (issue #16, parts 1 and 2), with real `ppserver` processes on
//! 127.0.0.1: a job past its time limit ends `TimedOut` and its worker is killed and
//! replaced, the jobs queued behind it are not lost; a job cancelled while it runs on a
//! node has its worker killed and replaced; cancelling every job, running and queued, leaves
//! the node's count of the client's jobs right. Neither a deadline nor a cancel counts as a
//! worker crash.
//!
//! Every wait is bounded by [`WAIT`]; the times printed are measurements, never asserted.

#[path = "support/deadline.rs"]
mod deadline;
mod support;

use deadline::{bounded, spin, square, HungRounds};
use pp::{Job, JobError, Server};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::counter;
use support::{client, connected, temp_dir, wait_until, Node, WAIT};

/// Writes its process id to the file `mark` (so the test knows the job runs, and where),
/// then never returns.
#[pp::parallel]
fn mark_and_spin(mark: String) -> u64 {
    let pid = std::process::id().to_string();
    let partial = format!("{mark}.partial");
    std::fs::write(&partial, pid).expect("write the mark");
    std::fs::rename(partial, mark).expect("move the mark in place");
    loop {
        std::hint::spin_loop();
    }
}

const LIMIT: Duration = Duration::from_millis(300);

/// A remote-only client of `node` connected to it; lanes as `lanes` says.
fn connected_client(node: &Node, lanes: bool) -> Server {
    let server = client(&[node], |b| b.lanes(lanes));
    wait_until(&server, "the node connected", || connected(&server, node));
    server
}

/// Waits until the node's statistics satisfy `pred`; returns the line.
fn stats_until(node: &Node, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = node.statistics();
        if pred(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "not within {WAIT:?}: {what}\n{stats}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the file `mark` exists: its job runs.
fn wait_for_mark(mark: &Path) {
    let deadline = Instant::now() + WAIT;
    while !mark.exists() {
        assert!(
            Instant::now() < deadline,
            "{} not within {WAIT:?}",
            mark.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mark_in(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the marks' directory");
    dir.join(name)
}

fn check_squares(jobs: Vec<Job<u64>>, from: u64) {
    for (x, job) in (from..).zip(jobs) {
        assert_eq!(bounded(job), Ok(x * x), "square of {x}");
    }
}

#[test]
fn a_hung_job_times_out_and_its_node_runs_the_next_jobs() {
    let node = Node::start(1, &[]);
    let server = connected_client(&node, true);
    let started = Instant::now();
    let hung = server.job(spin, ()).timeout(LIMIT).submit();
    // Queued behind it on the node's only worker: it runs on the replacement.
    let next = server.submit(square, (7,));
    match bounded(hung) {
        Err(JobError::TimedOut { after, .. }) => assert_eq!(after, LIMIT),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    let released = started.elapsed();
    assert_eq!(bounded(next), Ok(49));
    let next_done = started.elapsed();
    // Measurements (not asserted): how late past the limit the caller was released, send
    // time included, and how soon after that the replacement answered the next job.
    eprintln!(
        "released {:?} after the limit (send time included); the next job answered {:?} later",
        released.saturating_sub(LIMIT),
        next_done - released
    );
    check_squares((1..=8).map(|x| server.submit(square, (x,))).collect(), 1);
    let stats = node.statistics();
    assert_eq!(counter(&stats, "jobs_timed_out"), 1, "{stats}");
    assert_eq!(counter(&stats, "worker_crashes"), 0, "{stats}");
    let line = node.log.wait_for("ran past its time limit");
    assert!(line.contains("task `"), "{line}");
    assert!(line.contains("starting a new worker"), "{line}");
}

#[test]
fn jobs_queued_behind_a_hung_job_on_its_worker_are_not_lost() {
    let node = Node::start(1, &[]);
    let server = connected_client(&node, false);
    // Tiny jobs first: the node then streams jobs, many ahead on the worker.
    for round in 0..4u64 {
        check_squares(
            (0..200)
                .map(|x| server.submit(square, (round + x,)))
                .collect(),
            round,
        );
    }
    let hung = server.job(spin, ()).timeout(LIMIT).submit();
    let behind: Vec<Job<u64>> = (0..100).map(|x| server.submit(square, (x,))).collect();
    assert!(matches!(bounded(hung), Err(JobError::TimedOut { .. })));
    check_squares(behind, 0);
    let stats = node.statistics();
    assert_eq!(counter(&stats, "jobs_timed_out"), 1, "{stats}");
    assert_eq!(counter(&stats, "worker_crashes"), 0, "{stats}");
}

#[test]
fn a_job_cancelled_while_it_runs_on_a_node_has_its_worker_replaced() {
    let node = Node::start(1, &[]);
    let server = connected_client(&node, false);
    let marks = temp_dir("node-control-cancel");
    let mark = mark_in(&marks, "running");
    let job = server.submit(mark_and_spin, (mark.display().to_string(),));
    wait_for_mark(&mark);
    let cancelled_at = Instant::now();
    assert!(job.cancel(), "the job was not settled yet");
    assert!(matches!(bounded(job), Err(JobError::Cancelled { .. })));
    // The node's only worker is replaced: the next jobs run.
    check_squares((1..=4).map(|x| server.submit(square, (x,))).collect(), 1);
    eprintln!(
        "cancel to the next jobs' results: {:?}",
        cancelled_at.elapsed()
    );
    let stats = stats_until(&node, "the cancel counted", |s| {
        counter(s, "jobs_cancelled") == 1
    });
    assert_eq!(counter(&stats, "worker_crashes"), 0, "{stats}");
    assert_eq!(counter(&stats, "jobs_timed_out"), 0, "{stats}");
    let line = node.log.wait_for("was cancelled by the client");
    assert!(line.contains("starting a new worker"), "{line}");
    let _ = std::fs::remove_dir_all(&marks);
}

#[test]
fn cancelling_every_job_running_and_queued_on_a_node_frees_it() {
    // Room for 4 jobs of the client on the node: a cancelled job that kept its place would
    // stall the client's later jobs.
    let node = Node::start(2, &["--max-jobs-per-client", "4"]);
    let server = connected_client(&node, false);
    let marks = temp_dir("node-control-cancel-all");
    let running: Vec<Job<u64>> = (0..2)
        .map(|i| {
            let mark = mark_in(&marks, &format!("running-{i}"));
            server.submit(mark_and_spin, (mark.display().to_string(),))
        })
        .collect();
    for i in 0..2 {
        wait_for_mark(&marks.join(format!("running-{i}")));
    }
    // Queued on the node (the window holds a few beyond its workers, the node has room
    // for 4) and in the client.
    let queued: Vec<Job<u64>> = (0..6).map(|_| server.submit(spin, ())).collect();
    // 8 jobs, 4 sent (the node's room, and the client's first window): 4 left queued here.
    wait_until(&server, "jobs queued on the node", || {
        server.stats().queued_jobs <= 4
    });
    // Until `Server::cancel_all` lands: every job, one by one.
    for job in running.iter().chain(&queued) {
        job.cancel();
    }
    for job in running.into_iter().chain(queued) {
        assert!(matches!(bounded(job), Err(JobError::Cancelled { .. })));
    }
    // Both workers replaced, the client's places on the node given back: 40 jobs through
    // a node that holds 4 of them at a time.
    check_squares((0..40).map(|x| server.submit(square, (x,))).collect(), 0);
    // At least the two running; more when a replacement took a queued job before that
    // job's own cancel came (the jobs are cancelled one by one). The node counts a cancel
    // before it logs the kill, so the lines are awaited first and the counters read after.
    let kills = node.log.wait_for_count("was cancelled by the client", 2);
    assert!(kills >= 2, "{kills} kills: {}", node.log.text());
    let stats = stats_until(&node, "every kill's cancel counted", |s| {
        counter(s, "jobs_cancelled") >= kills as u64
    });
    eprintln!("{kills} workers killed; {stats}");
    assert_eq!(counter(&stats, "worker_crashes"), 0, "{stats}");
    let _ = std::fs::remove_dir_all(&marks);
}

/// A lane job (a lone job on a lane) cancelled while it runs: the client closes the lane,
/// and its worker ends at once, mid-job, instead of spinning on.
#[cfg(target_os = "linux")]
#[test]
fn a_job_cancelled_while_it_runs_on_a_lane_ends_the_lanes_worker() {
    let node = Node::start(1, &[]);
    let server = connected_client(&node, true);
    // A first lone job makes the client ask for a lane.
    assert_eq!(bounded(server.submit(square, (3,))), Ok(9));
    let line = node.log.wait_for("lane 1 of client");
    let lane: u32 = line
        .rsplit("pid ")
        .next()
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    let marks = temp_dir("node-control-lane");
    // The lane is free for lone jobs once its handshake is done on the client's side too:
    // until a job lands there, cancel it (on the session) and try again.
    let deadline = Instant::now() + WAIT;
    for round in 0.. {
        assert!(
            Instant::now() < deadline,
            "no job ran on the lane (pid {lane})"
        );
        let mark = mark_in(&marks, &format!("running-{round}"));
        let job = server.submit(mark_and_spin, (mark.display().to_string(),));
        wait_for_mark(&mark);
        let ran_on: u32 = std::fs::read_to_string(&mark).unwrap().parse().unwrap();
        assert!(job.cancel());
        assert!(matches!(bounded(job), Err(JobError::Cancelled { .. })));
        if ran_on == lane {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The lane's worker is gone (reaped by the node), not spinning.
    let proc = PathBuf::from(format!("/proc/{lane}"));
    while proc.exists() {
        assert!(Instant::now() < deadline, "lane worker {lane} still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
    node.log.wait_for("lane 1 of client 127.0.0.1");
    check_squares((1..=4).map(|x| server.submit(square, (x,))).collect(), 1);
    let stats = node.statistics();
    assert_eq!(counter(&stats, "worker_crashes"), 0, "{stats}");
    assert!(node.log.contains("closed"), "{}", node.log.text());
    let _ = std::fs::remove_dir_all(&marks);
}

/// Measures (prints, asserts nothing about time) how late past its limit a hung job's
/// caller is released, and how soon after the node's replacement worker answers the job
/// queued behind it, over 20 rounds with a 50 ms limit, for a job that spins (it holds a
/// core until killed) and one that sleeps.
#[test]
fn deadline_latencies_measured() {
    const ROUNDS: usize = 20;
    let limit = Duration::from_millis(50);
    let node = Node::start(1, &[]);
    let server = connected_client(&node, false);
    // The round trip of a tiny job: what a release at the deadline costs beyond it.
    let mut trips = deadline::round_trips(&server, ROUNDS);
    trips.sort_unstable();
    eprintln!("a tiny job's round trip: median {:?}", trips[ROUNDS / 2]);
    for HungRounds {
        what,
        mut late,
        mut next,
    } in deadline::hung_rounds(&server, ROUNDS, limit)
    {
        late.sort_unstable();
        next.sort_unstable();
        eprintln!(
            "{what} job: past the limit to the caller's release (a round trip included): \
             median {:?}, max {:?}; release to the next job's result on the replacement: \
             median {:?}, max {:?}",
            late[ROUNDS / 2],
            late[ROUNDS - 1],
            next[ROUNDS / 2],
            next[ROUNDS - 1]
        );
    }
    let stats = node.statistics();
    assert_eq!(
        counter(&stats, "jobs_timed_out"),
        2 * ROUNDS as u64,
        "{stats}"
    );
    assert_eq!(counter(&stats, "worker_crashes"), 0, "{stats}");
}
