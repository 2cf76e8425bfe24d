//! Behaviour of the local job server: results, ordering across `set_ncpus`, concurrency
//! above the core count, panics, callbacks, groups, templates, async and statistics.
//!
//! No assertion depends on timing: waits that would hang if the server were broken are
//! bounded, and the bound only decides how long a failing test takes to fail.

use pp::{JobError, Server};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Upper bound of every wait in this file.
const BOUND: Duration = Duration::from_secs(20);

fn server(ncpus: usize) -> Server {
    Server::builder()
        .ncpus(ncpus)
        .build()
        .expect("server starts")
}

/// Spins (politely) until `done()` or the bound passes; returns `done()`.
fn wait_for(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > BOUND {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[pp::parallel]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[pp::parallel]
fn boom(message: String) -> u64 {
    panic!("{message}")
}

#[test]
fn results_come_back_for_many_jobs() {
    let server = server(2);
    let jobs: Vec<_> = (0..1000u64).map(|i| server.submit(add, (i, 1))).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(i as u64 + 1));
    }
    assert_eq!(server.stats().total_jobs(), 1000);
}

#[test]
fn the_function_stays_callable() {
    assert_eq!(add(2, 3), 5);
    let as_pointer: fn(u64, u64) -> u64 = *add;
    assert_eq!(as_pointer(4, 4), 8);
    assert!(
        add.id().ends_with("server::add"),
        "id is module path + name: {}",
        add.id()
    );
}

#[test]
fn zero_workers_is_an_error_not_a_hang() {
    assert!(matches!(
        Server::builder().ncpus(0).build(),
        Err(pp::Error::InvalidNcpus(0))
    ));
    let server = server(1);
    assert!(server.set_ncpus(0).is_err());
    assert_eq!(server.ncpus(), 1);
    assert_eq!(server.submit(add, (1, 1)).result(), Ok(2));
}

static GATE_OPEN: AtomicBool = AtomicBool::new(false);
static STARTED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Waits for the gate (bounded), then records that job `i` ran.
#[pp::parallel]
fn gated(i: u64) -> u64 {
    wait_for(|| GATE_OPEN.load(Ordering::SeqCst));
    STARTED.lock().unwrap().push(i);
    i
}

#[test]
fn set_ncpus_loses_and_reorders_nothing() {
    let server = server(1);
    let jobs: Vec<_> = (0..200u64).map(|i| server.submit(gated, (i,))).collect();
    // The first job holds the only worker at the gate; the rest are queued.
    server.set_ncpus(1).unwrap();
    server.set_ncpus(1).unwrap();
    GATE_OPEN.store(true, Ordering::SeqCst);
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(i as u64));
    }
    assert_eq!(*STARTED.lock().unwrap(), (0..200).collect::<Vec<_>>());
    assert_eq!(server.ncpus(), 1);
}

static RENDEZVOUS: AtomicUsize = AtomicUsize::new(0);

/// Arrives, then waits (bounded) until `n` jobs are running at the same time.
#[pp::parallel]
fn rendezvous(n: usize) -> bool {
    RENDEZVOUS.fetch_add(1, Ordering::SeqCst);
    wait_for(|| RENDEZVOUS.load(Ordering::SeqCst) >= n)
}

#[test]
fn set_ncpus_above_the_core_count_runs_that_many_jobs_at_once() {
    let server = server(1);
    let n = 4 * pp::available_cores();
    server.set_ncpus(n).unwrap();
    assert_eq!(server.ncpus(), n);
    let jobs: Vec<_> = (0..n).map(|_| server.submit(rendezvous, (n,))).collect();
    for job in jobs {
        assert_eq!(job.result(), Ok(true), "all {n} jobs must run at once");
    }
}

#[test]
fn a_panicking_job_is_an_error_and_the_server_goes_on() {
    let server = server(2);
    let job = server.submit(boom, ("kaboom".to_owned(),));
    match job.result() {
        Err(JobError::Panicked { task, message }) => {
            assert!(task.ends_with("::boom"));
            assert_eq!(message, "kaboom");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(server.submit(add, (20, 22)).result(), Ok(42));
}

#[test]
fn callbacks_see_every_result_before_wait_returns() {
    let server = server(2);
    let sum = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    for i in 0..100 {
        let (sum, errors) = (Arc::clone(&sum), Arc::clone(&errors));
        let _job = server
            .job(add, (i, 0))
            .callback(move |result| match result {
                Ok(v) => {
                    sum.fetch_add(*v, Ordering::SeqCst);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
            })
            .submit();
    }
    let errors2 = Arc::clone(&errors);
    let _failing = server
        .job(boom, ("in callback test".to_owned(),))
        .callback(move |result| {
            assert!(matches!(result, Err(JobError::Panicked { .. })));
            errors2.fetch_add(1, Ordering::SeqCst);
        })
        .submit();
    server.wait();
    assert_eq!(sum.load(Ordering::SeqCst), (0..100).sum::<u64>());
    assert_eq!(
        errors.load(Ordering::SeqCst),
        1,
        "the panic reached its callback"
    );
}

#[test]
fn a_panicking_callback_is_reported_and_wait_returns() {
    let server = server(2);
    let job = server
        .job(add, (1, 2))
        .callback(|_| panic!("callback fails"))
        .submit();
    server.wait();
    assert_eq!(job.result(), Ok(3), "the job's own result is intact");
    assert_eq!(server.stats().callback_panics, 1);
    assert_eq!(server.submit(add, (2, 2)).result(), Ok(4));
}

static SLOW_GATE: AtomicBool = AtomicBool::new(false);

static CALLER_SAW_FIRST: AtomicBool = AtomicBool::new(false);

/// The first job of the batch: takes a moment, so that the caller is already waiting.
#[pp::parallel]
fn first_of_batch() -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    1
}

/// Waits (bounded) until the caller has taken the first job's result.
#[pp::parallel]
fn needs_the_caller() -> bool {
    wait_for(|| CALLER_SAW_FIRST.load(Ordering::SeqCst))
}

#[test]
fn a_queued_job_that_waits_on_the_caller_does_not_deadlock_a_waiter_on_a_backlog() {
    // One worker: while the caller waits for `first`, the queue holds a backlog, so the
    // caller sleeps on it instead of being woken by `first`'s result. The next job needs
    // the caller to act on that result while the backlog stays: the sleep must end anyway.
    let server = server(1);
    let first = server.submit(first_of_batch, ());
    let waiting = server.submit(needs_the_caller, ());
    let backlog: Vec<_> = (0..8u64).map(|i| server.submit(add, (i, 1))).collect();
    assert_eq!(first.result(), Ok(1));
    CALLER_SAW_FIRST.store(true, Ordering::SeqCst);
    assert_eq!(waiting.result(), Ok(true), "the job saw the caller in time");
    for (i, job) in backlog.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(i as u64 + 1));
    }
}

#[pp::parallel]
fn held(i: u64) -> u64 {
    wait_for(|| SLOW_GATE.load(Ordering::SeqCst));
    i
}

#[test]
fn groups_are_waited_for_separately() {
    let server = server(2);
    let held_jobs: Vec<_> = (0..2)
        .map(|i| server.job(held, (i,)).group("held").submit())
        .collect();
    let quick: Vec<_> = (0..10)
        .map(|i| server.job(add, (i, i)).group("quick").submit())
        .collect();
    // Both workers are held, so "quick" can only finish once "held" is released.
    assert!(!server.wait_group_timeout("quick", Duration::from_millis(10)));
    SLOW_GATE.store(true, Ordering::SeqCst);
    server.wait_group("quick");
    assert!(quick.iter().all(|j| j.is_finished()));
    server.wait_group("held");
    assert!(held_jobs.iter().all(|j| j.is_finished()));
    server.wait_group("no such group");
    assert!(server.wait_group_timeout("no such group", Duration::ZERO));
}

#[test]
fn a_template_fixes_callback_and_group() {
    let server = server(2);
    let count = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&count);
    let template = server
        .template(add)
        .callback(move |r| {
            counter.fetch_add(*r.as_ref().unwrap(), Ordering::SeqCst);
        })
        .group("template");
    let jobs: Vec<_> = (0..50).map(|i| template.submit((i, 1))).collect();
    server.wait_group("template");
    assert_eq!(count.load(Ordering::SeqCst), (1..=50).sum::<u64>());
    assert!(jobs.iter().all(|j| j.is_finished()));
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `future` on this thread, parking between polls.
fn block_on<F: std::future::Future + Unpin>(mut future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let start = Instant::now();
    loop {
        if let Poll::Ready(out) = std::pin::Pin::new(&mut future).poll(&mut cx) {
            return out;
        }
        assert!(start.elapsed() < BOUND, "future never completed");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn a_job_is_a_future() {
    let server = server(2);
    let jobs: Vec<_> = (0..20).map(|i| server.submit(add, (i, 100))).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(block_on(job), Ok(i as u64 + 100));
    }
}

#[test]
fn is_finished_and_wait_timeout() {
    let server = server(1);
    let job = server.submit(add, (1, 1));
    assert!(job.wait_timeout(BOUND));
    assert!(job.is_finished());
    assert_eq!(job.result(), Ok(2));
}

#[test]
fn statistics_count_jobs_and_print_as_a_table() {
    let server = server(2);
    let jobs: Vec<_> = (0..10).map(|i| server.submit(add, (i, 1))).collect();
    jobs.into_iter().for_each(|j| drop(j.result()));
    server.wait();
    let stats = server.stats();
    assert_eq!(stats.total_jobs(), 10);
    assert_eq!(stats.executors[0].name, "local");
    assert_eq!(stats.ncpus, 2);
    assert_eq!(stats.active_jobs, 0);
    let table = stats.to_string();
    for column in [
        "job count",
        "% of all jobs",
        "job time sum",
        "time per job",
        "job server",
    ] {
        assert!(table.contains(column), "missing {column:?} in\n{table}");
    }
    assert!(
        table.contains("100.00"),
        "one executor has all jobs:\n{table}"
    );
    assert!(table.contains("Time elapsed since server creation"));
    assert!(table.contains("0 active jobs") && table.contains("2 workers on"));
}
