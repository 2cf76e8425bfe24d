//! Cluster mode end to end, through `pp::Server`: real `ppserver` processes on 127.0.0.1,
//! this test binary shipped to them and run there as workers, and the examples' code run
//! unchanged with no local workers (`ncpus(0)`, PP's `ncpus=0`).

mod checks;
mod support;

use pp::{JobError, Server};
use std::time::Instant;
use support::{jobs_of, Node, SECRET, WAIT};

/// A client of `nodes` with `ncpus` local workers and the given secret.
fn cluster(nodes: &[&Node], secret: &str, ncpus: usize) -> Server {
    Server::builder()
        .ppservers(nodes.iter().map(|n| n.addr.to_string()))
        .secret(secret)
        .ncpus(ncpus)
        // Jobs meant for the nodes must not fall back to local workers because the
        // machine is slow to start them.
        .fallback_wait(WAIT)
        .build()
        .expect("the cluster client starts")
}

fn wait_connected(server: &Server, nodes: &[&Node]) {
    let deadline = Instant::now() + WAIT;
    while !server.active_nodes().iter().all(|n| n.connected) {
        let logs: Vec<String> = nodes.iter().map(|n| n.log.text()).collect();
        assert!(
            Instant::now() < deadline,
            "nodes not connected: {:?}\nnode logs:\n{}",
            server.active_nodes(),
            logs.join("\n---\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[pp::parallel]
fn square(x: u64) -> u64 {
    x * x
}

#[pp::parallel]
fn fail_loudly(message: String) -> u64 {
    panic!("{message}")
}

#[pp::parallel]
fn abort_worker() -> u64 {
    std::process::abort()
}

/// Which process ran the job.
#[pp::parallel]
fn worker_pid() -> u32 {
    std::process::id()
}

/// The pid at the end of a node's log line `lane N of client ... open to worker pid P`.
fn lane_pid(line: &str) -> u32 {
    line.rsplit("pid ")
        .next()
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// The value of `key=` in a node's statistics line.
fn stat(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

#[test]
fn lone_jobs_take_a_lane_to_a_worker_of_their_own_and_a_crash_there_is_a_worker_crash() {
    let node = Node::start(1, &[]);
    let server = cluster(&[&node], SECRET, 0);
    wait_connected(&server, &[&node]);
    let lane = lane_pid(&node.log.wait_for("lane 1 of client"));
    // The node has started the lane's worker; lone jobs take the session until the client
    // has finished opening it.
    let deadline = Instant::now() + WAIT;
    let mut ran = 0;
    loop {
        let pid = server.submit(worker_pid, ()).result().expect("a lone job");
        ran += 1;
        if pid == lane {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no lone job on the lane within {WAIT:?}"
        );
    }
    for _ in 0..20 {
        assert_eq!(
            server.submit(worker_pid, ()).result(),
            Ok(lane),
            "once open, every lone job takes the lane"
        );
    }
    let batch: Vec<_> = (0..30u64).map(|i| server.submit(square, (i,))).collect();
    for (i, job) in batch.into_iter().enumerate() {
        assert_eq!(job.result(), Ok((i * i) as u64));
    }
    // A lone job that kills its worker on the lane fails as on the session's workers.
    match server.submit(abort_worker, ()).result() {
        Err(JobError::WorkerCrashed { task, message }) => {
            assert!(task.ends_with("::abort_worker"), "{task}");
            assert!(message.contains("signal"), "{message}");
            assert!(message.contains("attempt 3"), "{message}");
        }
        other => panic!("expected a worker crash, got {other:?}"),
    }
    node.log
        .wait_for(&format!("lane worker pid {lane} was killed by signal 6"));
    assert_eq!(
        server.submit(square, (7,)).result(),
        Ok(49),
        "the node still serves"
    );
    let stats = node.statistics();
    assert_eq!(
        stat(&stats, "worker_crashes"),
        3,
        "one per attempt: {stats}"
    );
    assert_eq!(
        stat(&stats, "jobs"),
        ran + 20 + 30 + 1,
        "every job that ran counts once, on the lane or not: {stats}"
    );
    assert!(stat(&stats, "lanes") >= 1, "{stats}");
}

#[test]
fn threads_that_each_submit_one_job_at_a_time_get_every_result_once() {
    // Each thread's job is often the only one queued: the lane, taken from the submitting
    // thread or by the session, and the session's workers all serve them, concurrently.
    let node = Node::start(1, &[]);
    let server = cluster(&[&node], SECRET, 0);
    wait_connected(&server, &[&node]);
    node.log.wait_for("lane 1 of client");
    let per_thread = 150u64;
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let server = &server;
            scope.spawn(move || {
                for i in 0..per_thread {
                    let x = t * 1000 + i;
                    assert_eq!(server.submit(square, (x,)).result(), Ok(x * x));
                }
            });
        }
    });
    let total = 4 * per_thread;
    assert_eq!(jobs_of(&server, &node.addr.to_string()), total);
    assert_eq!(server.stats().total_jobs(), total, "each job counted once");
    let stats = node.statistics();
    assert_eq!(stat(&stats, "jobs"), total, "each job ran once: {stats}");
}

#[test]
fn with_lanes_off_lone_jobs_take_the_session() {
    let node = Node::start(1, &[]);
    let server = Server::builder()
        .ppservers([node.addr.to_string()])
        .secret(SECRET)
        .ncpus(0)
        .fallback_wait(WAIT)
        .lanes(false)
        .build()
        .expect("the cluster client starts");
    let pids: Vec<u32> = (0..10)
        .map(|_| server.submit(worker_pid, ()).result().expect("a lone job"))
        .collect();
    assert!(
        pids.windows(2).all(|w| w[0] == w[1]),
        "one worker: {pids:?}"
    );
    let stats = node.statistics();
    assert_eq!(stat(&stats, "lanes"), 0, "{stats}");
    assert_eq!(stat(&stats, "jobs"), 10, "{stats}");
}

/// The bytes reversed, each rotated by 3 bits: a byte vector both ways.
#[pp::parallel]
fn reversed(bytes: Vec<u8>) -> Vec<u8> {
    bytes.into_iter().rev().map(|b| b.rotate_left(3)).collect()
}

#[test]
fn large_byte_vectors_go_to_a_node_and_back_exactly() {
    let node = Node::start(1, &[]);
    let server = cluster(&[&node], SECRET, 0);
    for len in [5 << 20, 0, 3, (2 << 20) + 1] {
        let bytes: Vec<u8> = (0..len).map(|i: usize| (i ^ (i >> 11)) as u8).collect();
        let expected: Vec<u8> = bytes.iter().rev().map(|b| b.rotate_left(3)).collect();
        let back = server
            .submit(reversed, (bytes,))
            .result()
            .expect("remote job");
        assert!(back == expected, "{len} bytes came back different");
    }
    assert_eq!(
        jobs_of(&server, &node.addr.to_string()),
        4,
        "all on the node"
    );
}

#[test]
fn every_example_runs_on_two_nodes_with_exact_results() {
    let (a, b) = (Node::start(2, &[]), Node::start(2, &[]));
    let server = cluster(&[&a, &b], SECRET, 0);
    wait_connected(&server, &[&a, &b]);
    let nodes = server.active_nodes();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n.workers == 2), "{nodes:?}");

    checks::sum_primes(&server);
    checks::reverse_md5(&server);
    checks::dynamic_ncpus(&server);
    checks::callback(&server);
    checks::auto_diff(&server);
    server.wait();

    let (on_a, on_b) = (
        jobs_of(&server, &a.addr.to_string()),
        jobs_of(&server, &b.addr.to_string()),
    );
    assert!(
        on_a > 0 && on_b > 0,
        "both nodes did jobs: {on_a} and {on_b}\n{}",
        server.stats()
    );
    assert_eq!(jobs_of(&server, "local"), 0, "no local worker ran a job");
    assert_eq!(server.ncpus(), 0);
    server.print_stats();
}

#[test]
fn a_node_with_another_secret_is_skipped_and_keeps_serving_good_clients() {
    let node = Node::start(1, &[]);
    let wrong = cluster(&[&node], "not the secret", 1);
    let jobs: Vec<_> = (0..10).map(|i| wrong.submit(square, (i,))).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok((i * i) as u64), "completed locally");
    }
    node.log.wait_for("authentication failed from 127.0.0.1");
    assert!(!wrong.active_nodes()[0].connected);
    assert_eq!(jobs_of(&wrong, &node.addr.to_string()), 0);
    drop(wrong);

    let good = cluster(&[&node], SECRET, 0);
    assert_eq!(good.submit(square, (12,)).result(), Ok(144));
    assert_eq!(jobs_of(&good, &node.addr.to_string()), 1);
}

#[test]
fn remote_panics_and_crashes_are_job_errors_and_the_node_keeps_serving() {
    let node = Node::start(1, &[]);
    let server = cluster(&[&node], SECRET, 0);
    match server
        .submit(fail_loudly, ("remote boom".to_owned(),))
        .result()
    {
        Err(JobError::Panicked { task, message }) => {
            assert!(task.ends_with("::fail_loudly"), "{task}");
            assert_eq!(message, "remote boom");
        }
        other => panic!("expected a remote panic, got {other:?}"),
    }
    match server.submit(abort_worker, ()).result() {
        Err(JobError::WorkerCrashed { task, message }) => {
            assert!(task.ends_with("::abort_worker"), "{task}");
            assert!(
                message.contains("SIGABRT") || message.contains("signal"),
                "{message}"
            );
        }
        other => panic!("expected a worker crash, got {other:?}"),
    }
    assert_eq!(
        server.submit(square, (7,)).result(),
        Ok(49),
        "the node still serves"
    );
    assert_eq!(jobs_of(&server, &node.addr.to_string()), 3);
}

#[test]
fn a_second_run_of_the_same_program_uploads_nothing() {
    let node = Node::start(1, &[]);
    for run in 0..2 {
        let server = cluster(&[&node], SECRET, 0);
        assert_eq!(
            server.submit(square, (run + 3,)).result(),
            Ok((run + 3) * (run + 3))
        );
    }
    node.signal("USR1");
    let line = node.log.wait_for("statistics: ");
    assert!(
        line.contains("uploads=1"),
        "one upload for two runs: {line}"
    );
    assert!(
        line.contains("cache_hits=1"),
        "the second run hit the cache: {line}"
    );
}

/// The first `k` in `lo..hi` with `k * k % m == r`, searched serially.
fn first_square_residue(lo: u64, hi: u64, m: u64, r: u64) -> Option<u64> {
    (lo..hi).find(|k| k * k % m == r)
}

#[test]
fn par_chunks_run_on_the_nodes_with_the_serial_result() {
    let node = Node::start(2, &[]);
    let server = cluster(&[&node], SECRET, 0);
    wait_connected(&server, &[&node]);
    let local = Server::builder().ncpus(2).build().unwrap();
    let ln2 = |server: &Server| {
        pp::par!(server = server, chunks = 16, sum for k: u64 in 1..2_000_000 {
            if k % 2 == 1 { 1.0 / k as f64 } else { -1.0 / k as f64 }
        })
    };
    let remote_sum = ln2(&server);
    assert_eq!(
        remote_sum.to_bits(),
        ln2(&local).to_bits(),
        "same chunks, same bits"
    );
    assert!((remote_sum - std::f64::consts::LN_2).abs() < 1e-6);

    let (m, r) = (1_000_003u64, 4u64);
    let found = pp::par!(server = &server, chunks = 32, with (m: u64, r: u64) find for k: u64 in 3..1_000_000 {
        (k * k % *m == *r).then_some(k)
    });
    assert_eq!(found, first_square_residue(3, 1_000_000, m, r));

    let data: Vec<u32> = (0..10_000).collect();
    let divisor = 7u32;
    let multiples = pp::par!(server = &server, chunks = 8, with (divisor: u32) count for x: &u32 in &data {
        *x % *divisor == 0
    });
    assert_eq!(multiples, data.iter().filter(|x| *x % 7 == 0).count());
    let squares =
        pp::par!(server = &server, chunks = 5, collect for x: &u32 in &data[..20] { x * x });
    assert_eq!(squares, (0..20u32).map(|x| x * x).collect::<Vec<_>>());

    let on_node = jobs_of(&server, &node.addr.to_string());
    assert!(
        on_node >= 16 + 8 + 5,
        "the chunks ran on the node: {on_node}\n{}",
        server.stats()
    );
    assert_eq!(jobs_of(&server, "local"), 0);
}

#[test]
fn a_par_chunk_that_panics_on_a_node_panics_the_par_call() {
    let node = Node::start(1, &[]);
    let server = cluster(&[&node], SECRET, 0);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pp::par!(server = &server, chunks = 4, sum for k: u64 in 0..100 {
            if k == 60 { panic!("chunk failure at {k}") }
            k
        })
    }));
    let payload = outcome.expect_err("the panic reaches the caller");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("chunk failure at 60"), "{message:?}");
    // The server and the node still work.
    let total = pp::par!(server = &server, chunks = 4, sum for k: u64 in 0..100 { k });
    assert_eq!(total, 4950);
}
