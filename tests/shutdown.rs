//! Dropping a server: running jobs finish, queued jobs are cancelled, no thread stays.
//!
//! In its own test binary so that counting threads sees no other test's workers.

use pp::{JobError, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static RELEASE: AtomicBool = AtomicBool::new(false);
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Runs until released (bounded, so a broken server fails the test instead of hanging it).
#[pp::parallel]
fn blocker() -> String {
    RUNNING.store(true, Ordering::SeqCst);
    let start = Instant::now();
    while !RELEASE.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(1));
    }
    "finished".to_owned()
}

#[pp::parallel]
fn queued(i: u32) -> u32 {
    i
}

fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with("pp-worker"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn drop_finishes_running_jobs_cancels_queued_ones_and_joins_threads() {
    let server = Server::builder().ncpus(1).build().unwrap();
    server.set_ncpus(2).unwrap();
    server.set_ncpus(1).unwrap();
    let running = server.submit(blocker, ());
    while !RUNNING.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // Each queued job's callback runs when Drop cancels it; the last one releases the
    // running job, which Drop then waits for.
    let queued_jobs: Vec<_> = (0..10)
        .map(|i| {
            server
                .job(queued, (i,))
                .callback(move |result| {
                    assert!(matches!(result, Err(JobError::Cancelled { .. })));
                    if i == 9 {
                        RELEASE.store(true, Ordering::SeqCst);
                    }
                })
                .submit()
        })
        .collect();
    drop(server);
    assert_eq!(
        running.result(),
        Ok("finished".to_owned()),
        "a running job finishes"
    );
    for job in queued_jobs {
        match job.result() {
            Err(JobError::Cancelled { task }) => assert!(task.ends_with("::queued")),
            other => panic!("a queued job must be cancelled, got {other:?}"),
        }
    }
    if std::path::Path::new("/proc/self/task").exists() {
        assert_eq!(worker_threads(), 0, "no worker thread outlives its server");
    }
}
