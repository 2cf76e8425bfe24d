//! Faults inside jobs: a job that panics while holding a user lock, a callback that panics,
//! a result whose `Serialize` fails, a job that allocates until allocation fails. Each gives
//! a clear error, and the server runs the next job as if nothing happened.
//!
//! Locally a job's result is handed over without encoding, so a failing `Serialize` only
//! matters on a node, and running out of memory aborts the whole process in Rust (there is
//! no error to catch); those two rows therefore also run on a real `ppserver`, where the
//! failure stays in one worker process: `--worker-memory` bounds each worker's address
//! space, so a job that allocates without end kills its worker (`WorkerCrashed`) and the
//! node replaces it. Locally, what can be caught is caught: an allocation whose size cannot
//! even be computed panics ("capacity overflow"), and that panic is the job's error.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pp::JobError;
use serde::{Deserialize, Serialize, Serializer};
use support::{client, Node, WAIT};

/// Keeps the worker hook in this binary, whatever else the linker drops.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

/// The user's lock that [`panic_holding_the_lock`] poisons.
static LEDGER: Mutex<u64> = Mutex::new(0);

/// Adds `x` to the ledger; panics halfway when `x` is 13, with the lock held.
#[pp::parallel]
fn panic_holding_the_lock(x: u64) -> u64 {
    let mut ledger = LEDGER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if x == 13 {
        panic!("unlucky {x}, with the ledger locked");
    }
    *ledger += x;
    *ledger
}

/// Reads the ledger without forgiving a poisoned lock, as much user code does.
#[pp::parallel]
fn read_ledger_strictly() -> u64 {
    *LEDGER.lock().unwrap()
}

#[pp::parallel]
fn double(x: u64) -> u64 {
    2 * x
}

/// A value whose `Serialize` always fails.
#[derive(Debug, PartialEq, Deserialize)]
struct Unencodable(u64);

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

#[pp::parallel]
fn unencodable(x: u64) -> Unencodable {
    Unencodable(x)
}

/// Allocates `len` bytes at once: `u64::MAX` cannot even be laid out, so this panics.
#[pp::parallel]
fn allocate(len: u64) -> u64 {
    let block: Vec<u8> = Vec::with_capacity(len as usize);
    block.capacity() as u64
}

/// Allocates 64 MiB blocks (never touched, so they cost address space, not memory) until
/// allocation fails. Never returns.
#[pp::parallel]
fn allocate_forever() -> u64 {
    let mut blocks = Vec::new();
    loop {
        blocks.push(std::hint::black_box(Vec::<u8>::with_capacity(64 << 20)));
    }
}

fn local() -> pp::Server {
    pp::Server::builder()
        .ncpus(2)
        .build()
        .expect("a local server")
}

/// The server still runs jobs: a few, with their results.
fn still_serves(server: &pp::Server) {
    let jobs: Vec<_> = (0..8).map(|x| server.submit(double, (x,))).collect();
    for (x, job) in jobs.into_iter().enumerate() {
        assert!(job.wait_timeout(WAIT), "job {x} finishes");
        assert_eq!(job.result(), Ok(2 * x as u64));
    }
}

#[test]
fn a_job_that_panics_holding_a_user_lock_fails_alone() {
    let server = local();
    let job = server.submit(panic_holding_the_lock, (13,));
    match job.result() {
        Err(JobError::Panicked { task, message }) => {
            assert!(task.ends_with("::panic_holding_the_lock"), "{task}");
            assert_eq!(message, "unlucky 13, with the ledger locked");
        }
        other => panic!("expected the panic as the job's error, got {other:?}"),
    }
    // The lock is poisoned: code that forgives it goes on, code that does not gets a clear
    // error of its own, and neither harms the server.
    let strict = server.submit(read_ledger_strictly, ());
    match strict.result() {
        Err(JobError::Panicked { message, .. }) => {
            assert!(message.contains("PoisonError"), "{message}")
        }
        other => panic!("expected the poisoned lock to fail the strict job, got {other:?}"),
    }
    assert_eq!(server.submit(panic_holding_the_lock, (5,)).result(), Ok(5));
    still_serves(&server);
    assert_eq!(server.stats().total_jobs(), 11, "{}", server.stats());
}

#[test]
fn a_callback_that_panics_leaves_the_result_and_the_server_intact() {
    let server = local();
    let ran = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&ran);
    let job = server
        .job(double, (21,))
        .callback(move |result| {
            seen.fetch_add(1, Ordering::SeqCst);
            panic!("the callback saw {result:?} and gave up");
        })
        .submit();
    assert_eq!(job.result(), Ok(42), "the result is kept");
    assert!(server.wait_timeout(WAIT), "the job counts as finished");
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the callback ran once");
    assert_eq!(server.stats().callback_panics, 1, "{}", server.stats());
    still_serves(&server);
}

#[test]
fn a_result_that_cannot_be_encoded_is_only_a_problem_where_it_is_encoded() {
    // Locally nothing is encoded: the value comes back as it is.
    let server = local();
    assert_eq!(
        server.submit(unencodable, (3,)).result(),
        Ok(Unencodable(3))
    );
    still_serves(&server);
}

#[test]
fn an_allocation_that_cannot_be_made_fails_the_job_locally() {
    let server = local();
    match server.submit(allocate, (u64::MAX,)).result() {
        Err(JobError::Panicked { message, .. }) => {
            assert!(message.contains("capacity overflow"), "{message}")
        }
        other => panic!("expected a capacity overflow, got {other:?}"),
    }
    assert_eq!(server.submit(allocate, (1024,)).result(), Ok(1024));
    still_serves(&server);
}

/// A remote-only client of `node` that gives up a job after one worker crash.
fn remote(node: &Node) -> pp::Server {
    client(&[node], |b| {
        b.max_attempts(1)
            .heartbeat_interval(Duration::from_millis(300))
            .liveness_timeout(Duration::from_secs(3))
    })
}

#[cfg(target_os = "linux")]
#[test]
fn on_a_node_a_result_that_cannot_be_encoded_is_a_clear_job_error() {
    let node = Node::start(1, &[]);
    let server = remote(&node);
    let job = server.submit(unencodable, (3,));
    assert!(job.wait_timeout(WAIT), "the job finishes");
    match job.result() {
        Err(JobError::Remote { task, message }) => {
            assert!(task.ends_with("::unencodable"), "{task}");
            assert!(message.contains("cannot encode the result"), "{message}");
            assert!(
                message.contains("this value refuses to be encoded"),
                "{message}"
            );
        }
        other => panic!("expected a remote encoding error, got {other:?}"),
    }
    still_serves(&server);
}

#[cfg(target_os = "linux")]
#[test]
fn on_a_node_a_job_that_allocates_until_it_fails_kills_only_its_worker() {
    let node = Node::start(1, &["--worker-memory", "1G"]);
    let server = remote(&node);
    let job = server.submit(allocate_forever, ());
    assert!(job.wait_timeout(WAIT), "the job finishes");
    match job.result() {
        Err(JobError::WorkerCrashed { task, message }) => {
            assert!(task.ends_with("::allocate_forever"), "{task}");
            assert!(message.contains("SIGABRT"), "{message}");
        }
        other => panic!("expected the worker to die, got {other:?}"),
    }
    node.log.wait_for("starting a new worker");
    still_serves(&server);
    assert!(
        node.statistics().contains("worker_crashes=1"),
        "{}",
        node.log.text()
    );
}
