//! Results as they finish and a task over many inputs: `as_completed` yields in completion
//! order (forced by gates, not by timing), also as a future; `map` returns input order and
//! never has more than its bound of jobs in flight (counted inside the jobs).

use pp::{JobError, MapOptions, Server};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Gates that jobs wait on, opened by the test one at a time.
static GATES: Mutex<[bool; 4]> = Mutex::new([false; 4]);
static OPENED: Condvar = Condvar::new();

fn open(gate: usize) {
    GATES.lock().unwrap()[gate] = true;
    OPENED.notify_all();
}

#[pp::parallel]
fn gated(gate: usize) -> usize {
    let gates = GATES.lock().unwrap();
    let _open = OPENED.wait_while(gates, |g| !g[gate]).unwrap();
    gate * 10
}

#[test]
fn as_completed_yields_in_completion_order() {
    let server = Server::builder().ncpus(4).build().unwrap();
    let jobs: Vec<_> = (0..4).map(|gate| server.submit(gated, (gate,))).collect();
    let mut completed = server.as_completed(jobs);
    assert_eq!(completed.len(), 4);
    for gate in [2, 0, 3, 1] {
        open(gate);
        let (index, result) = completed.next().expect("a job is left");
        assert_eq!((index, result), (gate, Ok(gate * 10)));
    }
    assert!(completed.next().is_none());
}

#[pp::parallel]
fn fails_if_odd(x: u64) -> u64 {
    assert!(x % 2 == 0, "odd input {x}");
    x
}

#[test]
fn as_completed_as_a_future_gives_every_result_once() {
    let server = Server::builder().ncpus(2).build().unwrap();
    let jobs: Vec<_> = (0..50u64)
        .map(|x| server.submit(fails_if_odd, (x,)))
        .collect();
    let mut completed = server.as_completed(jobs);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut seen = [false; 50];
    runtime.block_on(async {
        while let Some((index, result)) = completed.next_async().await {
            assert!(!seen[index], "index {index} twice");
            seen[index] = true;
            match result {
                Ok(x) => assert_eq!(x, index as u64),
                Err(JobError::Panicked { message, .. }) => {
                    assert!(index % 2 == 1 && message.contains("odd input"))
                }
                Err(other) => panic!("{other}"),
            }
        }
    });
    assert!(seen.iter().all(|&s| s));
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

/// Counts how many run at once, the most in `MOST`.
#[pp::parallel]
fn counted(x: u64, millis: u64) -> u64 {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(millis));
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    x * 3
}

#[test]
fn map_holds_its_bound_in_flight_and_returns_input_order() {
    // More workers than the bound: only the bound keeps more from running at once.
    let server = Server::builder().ncpus(8).build().unwrap();
    let inputs = (0..60u64).map(|x| (x, 2));
    let results: Vec<u64> = server
        .map_with(counted, inputs, MapOptions::new().in_flight(3).batch(1))
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, (0..60u64).map(|x| x * 3).collect::<Vec<_>>());
    let most = MOST.load(Ordering::SeqCst);
    assert!((1..=3).contains(&most), "{most} ran at once");
    assert_eq!(server.stats().queued_jobs, 0);
}

#[pp::parallel]
fn triple(x: u64) -> u64 {
    x * 3
}

#[test]
fn map_batches_many_tiny_inputs_in_order_and_reads_inputs_lazily() {
    let server = Server::builder().ncpus(2).build().unwrap();
    let read = AtomicUsize::new(0);
    let inputs = (0..200_000u64).map(|x| {
        read.fetch_add(1, Ordering::Relaxed);
        (x,)
    });
    let mut results = server.map(triple, inputs);
    assert_eq!(results.next(), Some(Ok(0)));
    // One result taken: only the jobs in flight have read their inputs.
    assert!(read.load(Ordering::Relaxed) < 200_000);
    let rest: Vec<u64> = results.map(Result::unwrap).collect();
    assert_eq!(rest.len(), 199_999);
    assert!(rest
        .iter()
        .enumerate()
        .all(|(i, &r)| r == (i as u64 + 1) * 3));
}

#[test]
fn map_gives_each_failing_input_its_error() {
    let server = Server::builder().ncpus(2).build().unwrap();
    let results: Vec<_> = server
        .map(fails_if_odd, (0..1000u64).map(|x| (x,)))
        .collect();
    for (x, result) in results.into_iter().enumerate() {
        match result {
            Ok(value) => assert_eq!(value, x as u64),
            Err(JobError::Panicked { message, .. }) => {
                assert!(
                    x % 2 == 1 && message.contains("odd input"),
                    "{x}: {message}"
                )
            }
            Err(other) => panic!("{x}: {other}"),
        }
    }
}

/// `map` and `as_completed` inside a job of the same server, on one worker.
#[pp::parallel]
fn map_inside(n: u64) -> u64 {
    let server = ONE.get().unwrap();
    let mapped: u64 = server
        .map(triple, (0..n).map(|x| (x,)))
        .map(Result::unwrap)
        .sum();
    let jobs: Vec<_> = (0..n).map(|x| server.submit(triple, (x,))).collect();
    let completed: u64 = server.as_completed(jobs).map(|(_, r)| r.unwrap()).sum();
    mapped + completed
}

static ONE: std::sync::OnceLock<Server> = std::sync::OnceLock::new();

#[test]
fn map_and_as_completed_inside_jobs_do_not_deadlock() {
    let server = ONE.get_or_init(|| Server::builder().ncpus(1).build().unwrap());
    let jobs: Vec<_> = (0..8).map(|_| server.submit(map_inside, (100,))).collect();
    let want: u64 = 2 * (0..100u64).map(|x| x * 3).sum::<u64>();
    for job in jobs {
        // Bounded, so that a deadlock fails instead of hanging.
        assert!(job.wait_timeout(Duration::from_secs(20)), "deadlock?");
        assert_eq!(job.result().unwrap(), want);
    }
}

static HOLD: AtomicUsize = AtomicUsize::new(0);

/// Holds its worker while `HOLD` is 1 (set to 1 by the job, 2 by the test to let go).
#[pp::parallel]
fn hold() -> u64 {
    HOLD.store(1, Ordering::SeqCst);
    while HOLD.load(Ordering::SeqCst) == 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    7
}

/// A number for the calling thread (the same on each call on one thread).
#[pp::parallel]
fn thread_token(x: u64) -> u64 {
    thread_local!(static TOKEN: u64 = {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        NEXT.fetch_add(1, Ordering::SeqCst) as u64
    });
    TOKEN.with(|t| *t) * 1_000_000 + x
}

#[test]
fn map_runs_batches_on_the_calling_thread_while_every_worker_is_busy() {
    let server = Server::builder().ncpus(1).build().unwrap();
    let held = server.submit(hold, ());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while HOLD.load(Ordering::SeqCst) != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // The only worker is held: the caller runs every batch itself, in order.
    let mine = (*thread_token)(0);
    let results: Vec<u64> = server
        .map(thread_token, (0..5_000u64).map(|x| (x,)))
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, (0..5_000u64).map(|x| mine + x).collect::<Vec<_>>());
    assert!(!held.is_finished());
    HOLD.store(2, Ordering::SeqCst);
    assert!(held.wait_timeout(Duration::from_secs(20)));
    assert_eq!(held.result(), Ok(7));
    // The batches the caller ran are neither queued nor pending: `wait` returns.
    server.wait();
    assert_eq!(server.stats().queued_jobs, 0);
}

#[test]
fn map_knows_how_many_results_are_left() {
    let server = Server::builder().ncpus(2).build().unwrap();
    let mut results = server.map(triple, (0..1000u64).map(|x| (x,)));
    assert_eq!(results.size_hint(), (1000, Some(1000)));
    assert_eq!(results.next(), Some(Ok(0)));
    assert_eq!(results.size_hint(), (999, Some(999)));
    let rest: Vec<u64> = results.map(Result::unwrap).collect();
    assert_eq!(rest.len(), 999);
}

/// Fails runs of inputs: 7, 8 and 9 of every ten.
#[pp::parallel]
fn fails_in_runs(x: u64) -> u64 {
    assert!(x % 10 < 7, "input {x} fails");
    x
}

#[test]
fn map_resumes_a_batch_after_each_failing_input() {
    let server = Server::builder().ncpus(2).build().unwrap();
    for options in [
        MapOptions::new().batch(1),
        MapOptions::new().batch(7),
        MapOptions::new().batch(10),
        MapOptions::new(),
    ] {
        let results: Vec<_> = server
            .map_with(fails_in_runs, (0..300u64).map(|x| (x,)), options)
            .collect();
        assert_eq!(results.len(), 300);
        for (x, result) in results.into_iter().enumerate() {
            let x = x as u64;
            match result {
                Ok(value) => assert!(x % 10 < 7 && value == x, "{x}: {value}"),
                Err(JobError::Panicked { message, .. }) => {
                    assert!(x % 10 >= 7, "{x}: {message}");
                    assert!(message.contains(&format!("input {x} fails")), "{message}");
                }
                Err(other) => panic!("{x}: {other}"),
            }
        }
    }
}
