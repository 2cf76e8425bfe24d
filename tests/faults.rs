//! Fault tolerance and load balancing across real `ppserver` processes on 127.0.0.1: nodes
//! killed (SIGKILL) or silenced (SIGSTOP, then SIGCONT) in the middle of a run, a job that
//! kills its worker every time, a node busy with long jobs, and nodes of unequal size.
//!
//! Every signal goes to a process this test started, through its [`Node`] guard; every
//! wait is bounded by [`WAIT`]; no assertion depends on how long something took.

mod support;

use pp::{JobError, Server};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{assert_each_once, client, connected, jobs_of, wait_until, Node, SECRET, WAIT};

/// Sleeps `millis` ms, then returns `x`.
#[pp::parallel]
fn echo_after(x: u64, millis: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(millis));
    x
}

#[pp::parallel]
fn abort_worker() -> u64 {
    std::process::abort()
}

/// A remote-only client (`ncpus(0)`) of `nodes`, with `liveness` as its liveness timeout
/// and heartbeats ten times as often.
fn cluster(nodes: &[&Node], liveness: Duration) -> Server {
    client(nodes, |b| {
        b.heartbeat_interval(liveness / 10)
            .liveness_timeout(liveness)
    })
}

fn wait_all_connected(server: &Server) {
    wait_until(server, "every node connected", || {
        server.active_nodes().iter().all(|n| n.connected)
    });
}

/// Submits `n` jobs of `millis` ms each, `fault` after a third of the results came back;
/// checks every result, and that each job completed exactly once (its callback ran once).
fn run_with_fault(server: &Server, n: u64, millis: u64, fault: impl FnOnce()) {
    let completions: Arc<Vec<AtomicU32>> = Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
    let jobs: Vec<_> = (0..n)
        .map(|i| {
            let completions = Arc::clone(&completions);
            server
                .job(echo_after, (i, millis))
                .callback(move |_| {
                    completions[i as usize].fetch_add(1, Ordering::SeqCst);
                })
                .submit()
        })
        .collect();
    let mut fault = Some(fault);
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(job.result().expect("every job succeeds"));
        if results.len() as u64 == n / 3 {
            if let Some(fault) = fault.take() {
                fault();
            }
        }
    }
    assert_eq!(
        results,
        (0..n).collect::<Vec<_>>(),
        "every result, in order"
    );
    assert!(server.wait_timeout(WAIT), "every callback ran");
    assert_each_once(&completions, "each job completed once");
    let stats = server.stats();
    assert_eq!(
        stats.total_jobs(),
        n,
        "the statistics count each job once\n{stats}"
    );
}

/// Sends SIGCONT to a node stopped with SIGSTOP when dropped, so that it runs again before
/// its guard kills it, even if the test fails while it is stopped.
struct Stopped<'a>(&'a Node);

impl<'a> Stopped<'a> {
    fn stop(node: &'a Node) -> Self {
        node.signal("STOP");
        Stopped(node)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

#[test]
fn a_killed_node_loses_no_job_and_none_completes_twice() {
    let (a, b, c) = (
        Node::start(2, &[]),
        Node::start(2, &[]),
        Node::start(1, &[]),
    );
    let server = cluster(&[&a, &b, &c], Duration::from_secs(3));
    wait_all_connected(&server);
    run_with_fault(&server, 200, 20, || a.signal("KILL"));
    wait_until(&server, "the killed node shows as not connected", || {
        !connected(&server, &a)
    });
    let stats = server.stats();
    eprintln!("{stats}");
    assert!(
        jobs_of(&server, &b.name()) > 0 && jobs_of(&server, &c.name()) > 0,
        "the other nodes ran jobs\n{stats}"
    );
}

#[test]
fn a_silent_node_is_declared_lost_and_used_again_after_sigcont() {
    let liveness = Duration::from_secs(1);
    let (a, b, c) = (
        Node::start(2, &[]),
        Node::start(2, &[]),
        Node::start(1, &[]),
    );
    let server = cluster(&[&a, &b, &c], liveness);
    wait_all_connected(&server);
    let mut stopped = None;
    let mut stopped_at = None;
    run_with_fault(&server, 200, 20, || {
        stopped = Some(Stopped::stop(&a));
        stopped_at = Some(Instant::now());
    });
    wait_until(&server, "the stopped node shows as not connected", || {
        !connected(&server, &a)
    });
    let stopped_at = stopped_at.expect("the node was stopped");
    eprintln!(
        "stopped node seen as lost after {:?} (liveness timeout {liveness:?}, heartbeats every {:?})",
        stopped_at.elapsed(),
        liveness / 10
    );
    eprintln!("{}", server.stats());

    drop(stopped); // SIGCONT
    wait_until(&server, "the resumed node is connected again", || {
        connected(&server, &a)
    });
    let before = jobs_of(&server, &a.name());
    let deadline = Instant::now() + WAIT;
    while jobs_of(&server, &a.name()) == before {
        assert!(
            Instant::now() < deadline,
            "the resumed node got no job within {WAIT:?}\n{}",
            server.stats()
        );
        let jobs: Vec<_> = (0..20)
            .map(|i| server.submit(echo_after, (i, 10)))
            .collect();
        for (i, job) in jobs.into_iter().enumerate() {
            assert_eq!(job.result(), Ok(i as u64));
        }
    }
}

#[test]
fn a_job_that_kills_its_worker_every_time_fails_after_the_attempt_limit() {
    let node = Node::start(2, &[]);
    let server = cluster(&[&node], Duration::from_secs(3));
    let doomed = server.submit(abort_worker, ());
    let others: Vec<_> = (0..30)
        .map(|i| server.submit(echo_after, (i, 10)))
        .collect();
    match doomed.result() {
        Err(JobError::WorkerCrashed { task, message }) => {
            assert!(task.ends_with("::abort_worker"), "{task}");
            assert!(
                message.contains("SIGABRT") || message.contains("signal"),
                "{message}"
            );
            assert!(message.contains("attempt 3"), "{message}");
        }
        other => panic!("expected a worker crash after 3 attempts, got {other:?}"),
    }
    for (i, job) in others.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(i as u64), "the other jobs complete");
    }
    let stats = server.stats();
    assert_eq!(
        stats.rescheduled_jobs, 2,
        "two crashes rescheduled the job, the third failed it\n{stats}"
    );
    assert_eq!(stats.total_jobs(), 31, "each job counted once\n{stats}");
    assert!(
        stats.to_string().contains("2 jobs rescheduled"),
        "the table shows the reschedules\n{stats}"
    );
    node.signal("USR1");
    let line = node.log.wait_for("statistics: ");
    assert!(line.contains("worker_crashes=3"), "{line}");
}

#[test]
fn a_par_chunk_that_kills_its_worker_every_time_panics_the_par_call_after_the_attempt_limit() {
    let node = Node::start(1, &[]);
    let server = cluster(&[&node], Duration::from_secs(3));
    wait_all_connected(&server);
    let here = std::process::id();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pp::par!(server = &server, chunks = 4, with (here: u32) sum for k: u64 in 0..100 {
            // Only in a worker process of the node, never in this test process.
            if k == 60 && std::process::id() != *here {
                std::process::abort()
            }
            k
        })
    }));
    let payload = outcome.expect_err("the dead worker panics the par! call");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("lost its worker"), "{message:?}");
    assert!(message.contains("attempt 3"), "{message:?}");
    assert_eq!(server.stats().rescheduled_jobs, 2, "{}", server.stats());
    let total = pp::par!(server = &server, chunks = 4, sum for k: u64 in 0..100 { k });
    assert_eq!(total, 4950, "the node still serves");
}

#[test]
fn a_node_busy_with_jobs_longer_than_the_liveness_timeout_is_not_lost() {
    let node = Node::start(1, &[]);
    let liveness = Duration::from_secs(1);
    let server = cluster(&[&node], liveness);
    wait_all_connected(&server);
    // Each job keeps the only worker busy for 2.5 liveness timeouts, a second one waits
    // queued on the node: only the heartbeats' answers show that the node is alive.
    let jobs: Vec<_> = (0..2)
        .map(|i| server.submit(echo_after, (i, 2500)))
        .collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(i as u64));
    }
    let stats = server.stats();
    assert_eq!(
        stats.rescheduled_jobs, 0,
        "the node was never lost\n{stats}"
    );
    assert_eq!(jobs_of(&server, &node.name()), 2, "{stats}");
    assert!(connected(&server, &node));
    assert!(
        !node.log.contains("disconnected"),
        "one session throughout:\n{}",
        node.log.text()
    );
}

#[test]
fn jobs_are_shared_in_proportion_to_the_workers_of_each_node() {
    let (one, two) = (Node::start(1, &[]), Node::start(2, &[]));
    let server = cluster(&[&one, &two], Duration::from_secs(3));
    wait_all_connected(&server);
    let jobs: Vec<_> = (0..300)
        .map(|i| server.submit(echo_after, (i, 10)))
        .collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(i as u64));
    }
    let (on_one, on_two) = (jobs_of(&server, &one.name()), jobs_of(&server, &two.name()));
    let stats = server.stats();
    eprintln!("{stats}");
    assert_eq!(on_one + on_two, 300, "{stats}");
    let ratio = on_two as f64 / on_one.max(1) as f64;
    assert!(
        (1.4..=2.8).contains(&ratio),
        "the 2-worker node did {on_two} jobs, the 1-worker node {on_one} (ratio {ratio:.2}, \
         expected near 2)\n{stats}"
    );
}

#[test]
fn liveness_options_that_do_not_fit_together_are_refused() {
    let built = Server::builder()
        .ppservers(["127.0.0.1:1"])
        .secret(SECRET)
        .heartbeat_interval(Duration::from_secs(2))
        .liveness_timeout(Duration::from_secs(1))
        .build();
    match built {
        Err(pp::Error::Config(message)) => assert!(message.contains("liveness"), "{message}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    let built = Server::builder()
        .ppservers(["127.0.0.1:1"])
        .secret(SECRET)
        .max_attempts(0)
        .build();
    assert!(matches!(built, Err(pp::Error::Config(_))));
}

#[test]
fn a_node_restarted_on_the_same_port_is_used_again() {
    let first = Node::start(1, &[]);
    let port = first.addr.port();
    let server = cluster(&[&first], Duration::from_secs(1));
    let jobs: Vec<_> = (0..5).map(|i| server.submit(echo_after, (i, 1))).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(i as u64));
    }
    let before = jobs_of(&server, &first.name());
    assert_eq!(before, 5);
    drop(first); // kills and reaps the node
    wait_until(&server, "the killed node is seen lost", || {
        !server.active_nodes()[0].connected
    });

    let second = Node::start_on(port, 1, &[]);
    wait_until(&server, "the restarted node is used again", || {
        connected(&server, &second)
    });
    let jobs: Vec<_> = (0..5).map(|i| server.submit(echo_after, (i, 1))).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(i as u64));
    }
    assert_eq!(
        jobs_of(&server, &second.name()),
        before + 5,
        "the same row, on the new process"
    );
    let node = &server.active_nodes()[0];
    assert_eq!((node.losses, node.connections), (1, 2), "{node:?}");
    let table = server.stats().to_string();
    let line = format!(
        "node {}: connected (last failure: connection lost: ",
        second.addr
    );
    assert!(table.contains(&line), "{table}");
    assert!(
        table.contains("), lost 1 times, connected 2 times"),
        "{table}"
    );
}

/// The environment variable that makes [`killed_client_role`] act: the node to use.
const CLIENT_ROLE_NODE: &str = "PP_TEST_KILLED_CLIENT_NODE";

/// Not a test on its own: run by `a_killed_client_leaves_no_worker_processes` as a separate
/// process, which submits long jobs to the node and waits until it is killed.
#[test]
#[ignore = "a role played by a child process of another test"]
fn killed_client_role() {
    let Ok(node) = std::env::var(CLIENT_ROLE_NODE) else {
        return;
    };
    let server = Server::builder()
        .ppservers([node])
        .secret(SECRET)
        .ncpus(0)
        .build()
        .expect("the cluster client starts");
    let jobs: Vec<_> = (0..4)
        .map(|i| server.submit(echo_after, (i, 60_000)))
        .collect();
    for job in jobs {
        let _ = job.result();
    }
}

#[test]
fn a_killed_client_leaves_no_worker_processes() {
    let node = Node::start(2, &[]);
    let mut client = support::role::role_command("killed_client_role")
        .env(CLIENT_ROLE_NODE, node.addr.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the client process");
    // The client's two workers run its 60 s jobs, and the worker of its lane (opened at
    // once, used by no job here) waits for one.
    node.log.wait_for("lane 1 of client");
    let workers = node.wait_children(3);
    assert_eq!(workers.len(), 3);
    client.kill().expect("SIGKILL the client");
    let _ = client.wait();
    let left = node.wait_children(0);
    assert!(
        left.is_empty(),
        "the node stopped the dead client's workers, its lane's too"
    );
}
