//! Job control on the local pool: time limits (a job's, a template's, the server's
//! default), cancellation (one job, queued or running, a group, everything), `should_stop`,
//! a panicking `par!` chunk that stops the chunks not yet started, and jobs with no time
//! limit that never start the deadline timer.
//!
//! Remote and isolated runs are tested with pp-net's executors (tests/faults.rs and the
//! isolation tests). Bounds are generous: nothing here depends on the machine's speed.

use pp::{JobError, Server};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a cooperative job runs at most if nothing stops it: far past every bound below,
/// so a job that was not stopped shows, yet no test hangs.
const AT_MOST: Duration = Duration::from_secs(15);

/// What a test's cooperative job records; each test has its own (tests run in parallel).
struct Flags {
    running: AtomicBool,
    saw_stop: AtomicBool,
    returned: AtomicBool,
}

impl Flags {
    const fn new() -> Self {
        Flags {
            running: AtomicBool::new(false),
            saw_stop: AtomicBool::new(false),
            returned: AtomicBool::new(false),
        }
    }
}

static TIMED: Flags = Flags::new();
static CANCELLED: Flags = Flags::new();
static ALL: Flags = Flags::new();
static DEFAULT_LIMIT: Flags = Flags::new();

fn flags(which: u8) -> &'static Flags {
    match which {
        0 => &TIMED,
        1 => &CANCELLED,
        2 => &ALL,
        _ => &DEFAULT_LIMIT,
    }
}

/// Runs until `should_stop()` (or [`AT_MOST`]), recording what it saw in `flags(which)`.
#[pp::parallel]
fn cooperative(which: u8) -> u64 {
    let flags = flags(which);
    flags.running.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < AT_MOST {
        if pp::should_stop() {
            flags.saw_stop.store(true, Ordering::SeqCst);
            break;
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    flags.returned.store(true, Ordering::SeqCst);
    rounds
}

static RELEASE_QUEUED: AtomicBool = AtomicBool::new(false);
static RELEASE_GROUPS: AtomicBool = AtomicBool::new(false);

/// Holds the only worker until `release(which)` is set (bounded by [`AT_MOST`]).
#[pp::parallel]
fn blocker(which: u8) -> u8 {
    let release = if which == 0 {
        &RELEASE_QUEUED
    } else {
        &RELEASE_GROUPS
    };
    let start = Instant::now();
    while !release.load(Ordering::SeqCst) && start.elapsed() < AT_MOST {
        std::thread::sleep(Duration::from_millis(1));
    }
    which
}

#[pp::parallel]
fn tiny(x: u64) -> u64 {
    x + 1
}

fn one_worker() -> Server {
    Server::builder().ncpus(1).build().expect("server starts")
}

/// Waits until `done` holds, at most [`AT_MOST`]; returns whether it did.
fn eventually(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < AT_MOST {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    done()
}

#[test]
fn a_local_job_past_its_time_limit_is_released_at_the_deadline_and_told_to_stop() {
    let server = one_worker();
    let limit = Duration::from_millis(100);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let start = Instant::now();
    let job = server
        .job(cooperative, (0,))
        .timeout(limit)
        .callback(move |result| record.lock().unwrap().push(result.clone()))
        .submit();
    let result = job.result();
    let waited = start.elapsed();
    assert_eq!(
        result,
        Err(JobError::TimedOut {
            task: cooperative.id().to_owned(),
            after: limit,
            attempts: 1
        })
    );
    assert!(waited >= limit, "released before its deadline: {waited:?}");
    assert!(
        waited < limit + Duration::from_secs(5),
        "released at the deadline, not when the job returns: {waited:?}"
    );
    assert!(
        eventually(|| TIMED.returned.load(Ordering::SeqCst)),
        "the job returns"
    );
    assert!(
        TIMED.saw_stop.load(Ordering::SeqCst),
        "should_stop() was true in the job"
    );
    server.wait();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the callback ran once: {seen:?}");
    assert!(
        matches!(seen[0], Err(JobError::TimedOut { .. })),
        "{seen:?}"
    );
    let stats = server.stats();
    assert_eq!(stats.timed_out_jobs, 1, "{stats}");
    assert_eq!(
        stats.executors[0].jobs, 0,
        "its result was dropped, not counted\n{stats}"
    );
    assert!(stats.to_string().contains("1 jobs timed out"), "{stats}");
    assert_eq!(
        server.submit(tiny, (1,)).result(),
        Ok(2),
        "the server goes on"
    );
}

#[test]
fn jobs_that_finish_within_their_time_limits_are_not_touched() {
    let server = Server::builder().ncpus(2).build().unwrap();
    let template = server.template(tiny).timeout(Duration::from_secs(30));
    let jobs: Vec<_> = (0..2_000).map(|x| template.submit((x,))).collect();
    for (x, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(x as u64 + 1));
    }
    let stats = server.stats();
    assert_eq!(stats.timed_out_jobs, 0, "{stats}");
    assert_eq!(stats.executors[0].jobs, 2_000, "{stats}");
}

#[test]
fn the_servers_default_time_limit_applies_unless_a_job_sets_its_own() {
    let server = Server::builder()
        .ncpus(2)
        .job_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let limited = server.submit(cooperative, (3,));
    let own = server
        .job(tiny, (41,))
        .timeout(Duration::from_secs(60))
        .submit();
    assert!(
        matches!(limited.result(), Err(JobError::TimedOut { after, .. }) if after == Duration::from_millis(50))
    );
    assert_eq!(own.result(), Ok(42));
    assert!(eventually(|| DEFAULT_LIMIT.saw_stop.load(Ordering::SeqCst)));
}

#[test]
fn cancelling_100k_queued_jobs_settles_them_all_at_once() {
    const JOBS: usize = 100_000;
    let server = one_worker();
    let calls = Arc::new(AtomicUsize::new(0));
    let hold = server.submit(blocker, (0,));
    assert!(
        eventually(|| server.stats().active_jobs == 1),
        "the blocker runs"
    );
    let template = server.template(tiny).callback({
        let calls = Arc::clone(&calls);
        move |result| {
            assert!(matches!(result, Err(JobError::Cancelled { .. })));
            calls.fetch_add(1, Ordering::Relaxed);
        }
    });
    let jobs: Vec<_> = (0..JOBS as u64).map(|x| template.submit((x,))).collect();
    let start = Instant::now();
    let cancelled = jobs.iter().filter(|job| job.cancel()).count();
    let took = start.elapsed();
    eprintln!("cancelled {JOBS} queued jobs one by one in {took:?}");
    assert_eq!(cancelled, JOBS);
    assert_eq!(calls.load(Ordering::Relaxed), JOBS, "every callback ran");
    assert!(jobs.iter().all(|job| job.is_finished()));
    assert!(!jobs[0].cancel(), "a second cancel does nothing");
    let stats = server.stats();
    assert_eq!(
        stats.queued_jobs, 0,
        "cancelled jobs are not queued\n{stats}"
    );
    assert_eq!(stats.cancelled_jobs, JOBS as u64, "{stats}");
    RELEASE_QUEUED.store(true, Ordering::SeqCst);
    assert!(
        server.wait_timeout(AT_MOST),
        "wait() returns: the cancelled jobs are finished"
    );
    assert_eq!(hold.result(), Ok(0));
    for job in jobs {
        assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    }
    let stats = server.stats();
    assert_eq!(stats.executors[0].jobs, 1, "none of them ran\n{stats}");
    assert_eq!(stats.queued_jobs, 0, "{stats}");
    assert_eq!(stats.active_jobs, 0, "{stats}");
    assert_eq!(server.submit(tiny, (1,)).result(), Ok(2));
}

#[test]
fn cancelling_a_running_job_releases_it_and_tells_it_to_stop() {
    let server = one_worker();
    let job = server.submit(cooperative, (1,));
    assert!(eventually(|| CANCELLED.running.load(Ordering::SeqCst)));
    assert!(job.cancel(), "the running job was settled by this call");
    assert!(!job.cancel());
    assert!(job.is_finished());
    assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    assert!(eventually(|| CANCELLED.saw_stop.load(Ordering::SeqCst)));
    server.wait();
    let stats = server.stats();
    assert_eq!(stats.cancelled_jobs, 1, "{stats}");
    assert_eq!(stats.executors[0].jobs, 0, "{stats}");
}

#[test]
fn cancel_group_cancels_that_group_only() {
    let server = one_worker();
    let hold = server.submit(blocker, (1,));
    assert!(
        eventually(|| server.stats().active_jobs == 1),
        "the blocker runs"
    );
    let doomed: Vec<_> = (0..50)
        .map(|x| server.job(tiny, (x,)).group("doomed").submit())
        .collect();
    let kept: Vec<_> = (0..10)
        .map(|x| server.job(tiny, (x,)).group("kept").submit())
        .collect();
    let loose: Vec<_> = (0..10).map(|x| server.submit(tiny, (x,))).collect();
    assert_eq!(server.cancel_group("doomed"), 50);
    assert_eq!(server.cancel_group("doomed"), 0, "nothing left to cancel");
    assert_eq!(server.cancel_group("no such group"), 0);
    assert!(
        server.wait_group_timeout("doomed", Duration::ZERO),
        "the group is finished at once"
    );
    assert!(!server.wait_group_timeout("kept", Duration::ZERO));
    assert_eq!(server.stats().queued_jobs, 20, "{}", server.stats());
    RELEASE_GROUPS.store(true, Ordering::SeqCst);
    assert_eq!(hold.result(), Ok(1));
    for job in doomed {
        assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    }
    for (x, job) in kept.into_iter().chain(loose).enumerate() {
        assert_eq!(job.result(), Ok(x as u64 % 10 + 1));
    }
    server.wait();
    assert_eq!(server.stats().cancelled_jobs, 50);
}

#[test]
fn cancel_all_cancels_running_and_queued_jobs_in_groups_or_not() {
    let server = one_worker();
    let running = server.submit(cooperative, (2,));
    assert!(eventually(|| ALL.running.load(Ordering::SeqCst)));
    let grouped: Vec<_> = (0..20)
        .map(|x| server.job(tiny, (x,)).group("g").submit())
        .collect();
    let loose: Vec<_> = (0..20).map(|x| server.submit(tiny, (x,))).collect();
    let cancelled = server.cancel_all();
    assert_eq!(cancelled, 41, "{}", server.stats());
    assert!(server.wait_timeout(AT_MOST), "wait() returns");
    assert!(matches!(running.result(), Err(JobError::Cancelled { .. })));
    for job in grouped.into_iter().chain(loose) {
        assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    }
    assert!(eventually(|| ALL.saw_stop.load(Ordering::SeqCst)));
    assert_eq!(server.cancel_all(), 0);
    assert_eq!(server.submit(tiny, (1,)).result(), Ok(2), "later jobs run");
    let stats = server.stats();
    assert_eq!(stats.cancelled_jobs, 41, "{stats}");
}

#[test]
fn cancelling_a_finished_job_does_nothing() {
    let server = one_worker();
    let job = server.submit(tiny, (1,));
    assert!(job.wait_timeout(AT_MOST));
    assert!(!job.cancel());
    assert_eq!(job.result(), Ok(2));
    assert_eq!(server.stats().cancelled_jobs, 0);
}

#[test]
fn should_stop_is_false_outside_jobs_and_in_jobs_that_go_on() {
    assert!(!pp::should_stop());
    let server = one_worker();
    assert_eq!(server.submit(stop_seen, ()).result(), Ok(false));
}

#[pp::parallel]
fn stop_seen() -> bool {
    pp::should_stop()
}

static CHUNKS_RUN: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_panicking_first_chunk_stops_the_chunks_not_yet_started() {
    const CHUNKS: usize = 64;
    let server = Server::builder().ncpus(2).build().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pp::par!(server = &server, chunks = CHUNKS, sum for k: u64 in 0..CHUNKS as u64 {
            if k == 0 {
                panic!("the first chunk fails");
            }
            CHUNKS_RUN.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            k
        })
    }));
    assert!(caught.is_err(), "the panic reaches the caller");
    let ran = CHUNKS_RUN.load(Ordering::SeqCst);
    assert!(
        ran < CHUNKS - 1,
        "{ran} of the other {} chunks ran",
        CHUNKS - 1
    );
    assert_eq!(
        pp::par!(server = &server, sum for k: u64 in 0..100 { k }),
        4950
    );
}

/// The role of [`no_timer_thread_without_time_limits`] in a process of its own, so that no
/// other test's timer is counted.
const ALONE: &str = "PP_TEST_JOB_CONTROL_ALONE";

fn timer_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.trim() == "pp-deadlines")
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn no_timer_thread_without_time_limits() {
    if std::env::var_os(ALONE).is_none() {
        let output = Command::new(std::env::current_exe().expect("this test"))
            .args([
                "--exact",
                "no_timer_thread_without_time_limits",
                "--nocapture",
            ])
            .env(ALONE, "1")
            .output()
            .expect("the test binary runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    if !std::path::Path::new("/proc/self/task").exists() {
        return;
    }
    let server = Server::builder().ncpus(2).build().unwrap();
    let jobs: Vec<_> = (0..1_000).map(|x| server.submit(tiny, (x,))).collect();
    for job in jobs {
        job.result().unwrap();
    }
    assert_eq!(timer_threads(), 0, "no deadline, no timer");
    let limited = server
        .job(tiny, (1,))
        .timeout(Duration::from_secs(60))
        .submit();
    assert_eq!(limited.result(), Ok(2));
    // A new thread takes its name as it starts: look until it did.
    assert!(
        eventually(|| timer_threads() == 1),
        "the first time limit starts the timer"
    );
    drop(server);
    assert!(
        eventually(|| timer_threads() == 0),
        "the server stops its timer"
    );
}

/// The server of [`parent_of_patient_children`], one worker: its jobs submit to it.
fn nesting_server() -> &'static Server {
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(one_worker)
}

/// Sub-jobs started (each runs until `should_stop`, bounded by [`AT_MOST`]).
static CHILDREN_STARTED: AtomicUsize = AtomicUsize::new(0);

#[pp::parallel]
fn patient_child() -> u64 {
    CHILDREN_STARTED.fetch_add(1, Ordering::SeqCst);
    let start = Instant::now();
    while start.elapsed() < AT_MOST && !pp::should_stop() {
        std::thread::sleep(Duration::from_millis(1));
    }
    1
}

/// Submits `children` sub-jobs and waits for them: the first runs nested on this worker's
/// stack while this job waits, the others stay in the pool's queue of sub-jobs.
#[pp::parallel]
fn parent_of_patient_children(children: u64) -> u64 {
    let server = nesting_server();
    let jobs: Vec<_> = (0..children)
        .map(|_| server.submit(patient_child, ()))
        .collect();
    jobs.into_iter().map(|job| job.result().unwrap_or(0)).sum()
}

#[test]
fn cancel_all_cancels_sub_jobs_queued_and_running_nested() {
    let server = nesting_server();
    let parent = server.submit(parent_of_patient_children, (5,));
    assert!(eventually(|| CHILDREN_STARTED.load(Ordering::SeqCst) >= 1));
    let queued: Vec<_> = (0..10).map(|x| server.submit(tiny, (x,))).collect();
    // The parent and the child it runs, 4 queued children, 10 queued jobs.
    assert_eq!(server.cancel_all(), 16, "{}", server.stats());
    assert!(matches!(parent.result(), Err(JobError::Cancelled { .. })));
    for job in queued {
        assert!(matches!(job.result(), Err(JobError::Cancelled { .. })));
    }
    assert!(server.wait_timeout(AT_MOST), "wait() returns");
    assert_eq!(
        CHILDREN_STARTED.load(Ordering::SeqCst),
        1,
        "queued children never ran"
    );
    assert_eq!(server.submit(tiny, (1,)).result(), Ok(2), "later jobs run");
}

#[test]
fn cancel_all_racing_busy_workers_leaves_every_job_settled_once() {
    let server = Server::builder().ncpus(2).build().expect("server starts");
    let mut all_cancelled = 0;
    for round in 0..20 {
        let jobs: Vec<_> = (0..2_000).map(|x| server.submit(tiny, (x,))).collect();
        let returned = server.cancel_all();
        assert!(
            server.wait_timeout(AT_MOST),
            "wait() returns (round {round})"
        );
        let mut cancelled = 0;
        for (x, job) in jobs.into_iter().enumerate() {
            match job.result() {
                Ok(value) => assert_eq!(value, x as u64 + 1),
                Err(JobError::Cancelled { .. }) => cancelled += 1,
                Err(other) => panic!("job {x}: {other}"),
            }
        }
        // A job a worker had just taken may cancel itself for this `cancel_all`, uncounted
        // in what it returned.
        assert!(
            returned <= cancelled,
            "round {round}: {returned} > {cancelled}"
        );
        assert_eq!(server.stats().queued_jobs, 0, "{}", server.stats());
        all_cancelled += cancelled;
    }
    // A job cancelled while it ran may still be returning.
    assert!(
        eventually(|| server.stats().active_jobs == 0),
        "{}",
        server.stats()
    );
    let stats = server.stats();
    assert_eq!(
        stats.cancelled_jobs, all_cancelled as u64,
        "each counted once: {stats}"
    );
}
