//! Nested jobs: jobs that submit jobs to their own server and wait for them (`result()`,
//! `wait()`, `wait_group`, `par!`), three levels deep with 8 times more outer jobs than
//! workers, complete (on 1 and 2 workers); a job on a node that starts its own server runs
//! its sub-jobs there, in the node's worker; a `par!` nested in another runs in cluster mode.

mod support;

use pp::{JobError, Server};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use support::{temp_dir, Node, WAIT};

/// The server of the tests with `ncpus` workers (1 or 2), reachable from the jobs.
fn server_of(ncpus: usize) -> &'static Server {
    static ONE: OnceLock<Server> = OnceLock::new();
    static TWO: OnceLock<Server> = OnceLock::new();
    let slot = if ncpus == 1 { &ONE } else { &TWO };
    slot.get_or_init(|| Server::builder().ncpus(ncpus).build().unwrap())
}

/// Runs `f` on a thread of its own and fails the test if it takes longer than [`WAIT`]:
/// a deadlock fails instead of hanging.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WAIT) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sends before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not done within {WAIT:?} (deadlock?)")
        }
    }
}

const FAN: u64 = 4;

#[pp::parallel]
fn leaf(x: u64) -> u64 {
    x * 2
}

/// Level 2: `FAN` leaves, waited for with `result()`.
#[pp::parallel]
fn middle(ncpus: usize, x: u64) -> u64 {
    let server = server_of(ncpus);
    let jobs: Vec<_> = (0..FAN)
        .map(|i| server.submit(leaf, (x * 10 + i,)))
        .collect();
    jobs.into_iter().map(|job| job.result().unwrap()).sum()
}

/// Level 1: `FAN` middles, waited for in the way `how` says.
#[pp::parallel]
fn outer(ncpus: usize, x: u64, how: String) -> u64 {
    let server = server_of(ncpus);
    match how.as_str() {
        "result" => {
            let jobs: Vec<_> = (0..FAN)
                .map(|i| server.submit(middle, (ncpus, x * 10 + i)))
                .collect();
            jobs.into_iter().map(|job| job.result().unwrap()).sum()
        }
        "wait" | "group" => {
            let total = Arc::new(AtomicU64::new(0));
            let group = format!("outer-{ncpus}-{x}");
            for i in 0..FAN {
                let total = Arc::clone(&total);
                let job = server.job(middle, (ncpus, x * 10 + i)).callback(move |r| {
                    total.fetch_add(*r.as_ref().unwrap(), Ordering::SeqCst);
                });
                let job = if how == "group" {
                    job.group(&group)
                } else {
                    job
                };
                drop(job.submit());
            }
            if how == "group" {
                server.wait_group(&group);
            } else {
                // Inside a job, `wait()` waits for that job's own sub-jobs.
                server.wait();
            }
            total.load(Ordering::SeqCst)
        }
        "par" => {
            pp::par!(server = server, chunks = 4, with (ncpus: usize, x: u64) sum for i: u64 in 0..FAN {
                server_of(*ncpus).submit(middle, (*ncpus, *x * 10 + i)).result().unwrap()
            })
        }
        other => panic!("unknown way {other}"),
    }
}

fn expected(x: u64) -> u64 {
    (0..FAN)
        .flat_map(|i| (0..FAN).map(move |j| ((x * 10 + i) * 10 + j) * 2))
        .sum()
}

/// 8 times more outer jobs than workers, each waiting for middles waiting for leaves.
fn three_levels(ncpus: usize, how: &'static str) {
    let results = within(&format!("{how} on {ncpus} workers"), move || {
        let server = server_of(ncpus);
        let outers = 8 * ncpus as u64;
        let jobs: Vec<_> = (0..outers)
            .map(|x| server.submit(outer, (ncpus, x, how.to_owned())))
            .collect();
        jobs.into_iter()
            .map(|job| job.result().unwrap())
            .collect::<Vec<_>>()
    });
    let want: Vec<u64> = (0..8 * ncpus as u64).map(expected).collect();
    assert_eq!(results, want, "{how} on {ncpus} workers");
}

#[test]
fn three_levels_with_result_on_one_and_two_workers() {
    three_levels(1, "result");
    three_levels(2, "result");
}

#[test]
fn three_levels_with_wait_inside_jobs() {
    three_levels(1, "wait");
    three_levels(2, "wait");
}

#[test]
fn three_levels_with_wait_group_inside_jobs() {
    three_levels(1, "group");
    three_levels(2, "group");
}

#[test]
fn three_levels_with_par_inside_jobs() {
    three_levels(1, "par");
    three_levels(2, "par");
}

/// Each level waits with a deadline: `wait_timeout` inside a job returns once the
/// sub-jobs are done, long before the deadline.
#[pp::parallel]
fn outer_with_deadline(x: u64) -> bool {
    let server = server_of(1);
    let job = server.submit(middle, (1, x));
    job.wait_timeout(WAIT) && server.wait_timeout(WAIT)
}

#[test]
fn waits_with_deadlines_inside_jobs_finish() {
    let done = within("wait_timeout inside jobs", || {
        let server = server_of(1);
        let jobs: Vec<_> = (0..8)
            .map(|x| server.submit(outer_with_deadline, (x,)))
            .collect();
        jobs.into_iter()
            .map(|j| j.result().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(done.iter().all(|&d| d), "{done:?}");
}

/// A recursive job: fib(n) as two sub-jobs, far deeper than three levels.
#[pp::parallel]
fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let server = server_of(2);
    let a = server.submit(fib, (n - 1,));
    let b = server.submit(fib, (n - 2,));
    b.result().unwrap() + a.result().unwrap()
}

#[test]
fn recursive_jobs_sixteen_levels_deep() {
    let value = within("fib(16) as nested jobs", || {
        server_of(2).submit(fib, (16,)).result().unwrap()
    });
    assert_eq!(value, 987);
}

/// Dropping a server while a job waits for its sub-jobs cancels the queued ones: the
/// waits end.
#[pp::parallel]
fn wait_for_slow_children(n: u64) -> Vec<bool> {
    let server = SLOW.get().expect("set by the test");
    let jobs: Vec<_> = (0..n).map(|_| server.submit(sleepy, (20,))).collect();
    jobs.into_iter()
        .map(|job| matches!(job.result(), Ok(()) | Err(JobError::Cancelled { .. })))
        .collect()
}

static SLOW: OnceLock<Server> = OnceLock::new();

#[pp::parallel]
fn sleepy(millis: u64) {
    std::thread::sleep(Duration::from_millis(millis));
}

#[test]
fn sub_jobs_of_a_running_job_are_counted_in_the_statistics() {
    let server = SLOW.get_or_init(|| Server::builder().ncpus(1).build().unwrap());
    let outcome = within("sub-jobs with a sleeping job", || {
        SLOW.get()
            .unwrap()
            .submit(wait_for_slow_children, (5,))
            .result()
            .unwrap()
    });
    assert!(outcome.iter().all(|&ok| ok), "{outcome:?}");
    let stats = server.stats();
    assert_eq!(stats.queued_jobs, 0, "{stats}");
    assert_eq!(stats.executors[0].jobs, 6, "{stats}");
}

// ---- on a node ----

/// Inside a node's worker: builds its own server from the environment, runs `n` leaves
/// there and says what it saw: (sum, its ncpus, its nodes, PP_SERVERS still set).
#[pp::parallel]
fn own_server_on_a_node(n: u64) -> (u64, usize, usize, bool) {
    let server = Server::new().expect("a job's own server starts");
    let jobs: Vec<_> = (0..n).map(|x| server.submit(leaf, (x,))).collect();
    let sum: u64 = jobs.into_iter().map(|j| j.result().unwrap()).sum();
    let here = server.submit(middle_here, (3,)).result().unwrap();
    (
        sum + here,
        server.ncpus(),
        server.active_nodes().len(),
        std::env::var_os("PP_SERVERS").is_some(),
    )
}

/// A sub-job that itself nests, on whatever server runs it (a static one per process).
#[pp::parallel]
fn middle_here(x: u64) -> u64 {
    static HERE: OnceLock<Server> = OnceLock::new();
    let server = HERE.get_or_init(|| Server::new().expect("a job's own server starts"));
    let jobs: Vec<_> = (0..FAN).map(|i| server.submit(leaf, (x + i,))).collect();
    jobs.into_iter().map(|j| j.result().unwrap()).sum()
}

#[test]
fn a_job_on_a_node_runs_its_own_server_in_its_worker() {
    // The node's environment names a cluster (itself, and a node that does not exist):
    // its workers must not connect there.
    let node = Node::start_with_env(
        temp_dir("cache"),
        0,
        2,
        &[],
        &[("PP_SERVERS", "127.0.0.1:9,127.0.0.1:1"), ("PP_NCPUS", "0")],
    );
    let client = support::client(&[&node], |b| b);
    let results = within("a job's own server on a node", move || {
        let jobs: Vec<_> = (0..4)
            .map(|_| client.submit(own_server_on_a_node, (10,)))
            .collect();
        let results: Vec<_> = jobs.into_iter().map(|j| j.result().unwrap()).collect();
        assert_eq!(support::jobs_of(&client, "local"), 0, "{}", client.stats());
        results
    });
    let leaves: u64 = (0..10).map(|x| x * 2).sum();
    let here: u64 = (0..FAN).map(|i| (3 + i) * 2).sum();
    for result in results {
        assert_eq!(result, (leaves + here, 1, 0, false));
    }
}

/// The cluster client of [`nested_par_runs_in_cluster_mode`] in the test process; in a
/// node's worker (where it is never set) the default server.
fn cluster_here() -> &'static Server {
    CLUSTER
        .get()
        .unwrap_or_else(pp::__private::par::default_server)
}

static CLUSTER: OnceLock<Server> = OnceLock::new();

/// A `par!` nested in another, in cluster mode: the outer site runs its chunks here (its
/// local copy of the body), and the inner site's chunks go to the node, which knows the
/// inner site by the same id as the local copy names it.
#[test]
fn nested_par_runs_in_cluster_mode() {
    let node = Node::start_with_env(temp_dir("cache"), 0, 2, &[], &[]);
    let client = CLUSTER.get_or_init(|| support::client(&[&node], |b| b));
    support::wait_until(client, "the node connects", || {
        support::connected(client, &node)
    });
    let name = node.name();
    let log = std::sync::Arc::clone(&node.log);
    let total = std::panic::catch_unwind(|| {
        within("nested par! in cluster mode", move || {
            let local = server_of(1);
            pp::par!(server = local, chunks = 2, sum for i: u64 in 1..3 {
                pp::par!(server = cluster_here(), chunks = 4, with (i: u64) sum for j: u64 in 0..4 {
                    // Slow enough that the node takes chunks while this thread runs one.
                    std::thread::sleep(Duration::from_millis(30));
                    j * *i
                })
            })
        })
    })
    .unwrap_or_else(|panic| {
        let message = (panic.downcast_ref::<String>().cloned())
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
        panic!("{message:?}; node log:\n{}", log.text())
    });
    assert_eq!(total, 6 + 12);
    assert!(support::jobs_of(client, &name) > 0, "{}", client.stats());
}
