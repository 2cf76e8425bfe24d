//! Process isolation for local jobs (`ServerBuilder::isolated(true)`, `PP_ISOLATED=1`):
//! local workers are processes of this test binary in pp's worker mode. Results are right;
//! a job that aborts or segfaults is `WorkerCrashed` and the program lives, with a fresh
//! worker for the next job; a job past its deadline is `TimedOut` and a cancelled running
//! job stops, each killing its worker; what jobs print reaches the program's standard
//! output and error unprefixed; a job's own `Server` inside a worker is local.
//!
//! The environment and output cases run the client in a child process (this test binary
//! again, running one of the ignored `*_role` tests), so that its environment is its own and
//! its standard streams can be read. Every wait is bounded by [`WAIT`]; nothing depends on
//! how long something took.

mod support;

use std::time::{Duration, Instant};

use pp::{JobError, Server};
use support::{role, WAIT};

/// Keeps the worker hook in this binary, whatever else the linker drops.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

/// The statistics row of isolated workers.
const ISOLATED_ROW: &str = "local (isolated)";

#[pp::parallel]
fn square(x: u64) -> u64 {
    x * x
}

/// The process the job ran in.
#[pp::parallel]
fn pid_of_worker() -> u32 {
    std::process::id()
}

#[pp::parallel]
fn abort_now() -> u64 {
    std::process::abort()
}

#[pp::parallel]
fn segfault() -> u64 {
    // SAFETY: raise has no memory preconditions; the signal ends this worker process.
    unsafe {
        libc::raise(libc::SIGSEGV);
    }
    0
}

/// Sleeps `millis`, then returns them: a job that runs long (hung, for the tests' bounds).
#[pp::parallel]
fn sleep_for(millis: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(millis));
    millis
}

/// Prints a line on each standard stream.
#[pp::parallel]
fn chatty(x: u64) -> u64 {
    println!("isolated job {x} says hello");
    eprintln!("isolated job {x} warns");
    x
}

/// What a job sees of its own `Server` and environment inside an isolated worker: the
/// rows of a server built from the environment, of one built with `isolated(true)`, and
/// whether `PP_SERVERS` / `PP_ISOLATED` are set.
#[pp::parallel]
fn nested_view(x: u64) -> (Vec<String>, Vec<String>, bool, u64) {
    let from_env = Server::new().expect("a job's own server");
    let rows = |server: &Server| -> Vec<String> {
        server
            .stats()
            .executors
            .into_iter()
            .map(|row| row.name)
            .collect()
    };
    let asked = Server::builder()
        .isolated(true)
        .ncpus(1)
        .build()
        .expect("a job's own isolated server");
    let inner = from_env
        .submit(square, (x,))
        .result()
        .expect("a nested job");
    let env_set =
        std::env::var_os("PP_SERVERS").is_some() || std::env::var_os("PP_ISOLATED").is_some();
    (rows(&from_env), rows(&asked), env_set, inner)
}

fn isolated(ncpus: usize) -> Server {
    Server::builder()
        .isolated(true)
        .ncpus(ncpus)
        .build()
        .expect("an isolated server")
}

fn jobs_of(server: &Server, row: &str) -> u64 {
    let stats = server.stats();
    stats
        .executors
        .iter()
        .find(|r| r.name == row)
        .unwrap_or_else(|| panic!("no row {row:?} in {stats}"))
        .jobs
}

#[test]
fn results_are_right_with_isolation() {
    let server = isolated(2);
    assert_eq!(server.ncpus(), 2);
    let jobs: Vec<_> = (0..300u64).map(|x| server.submit(square, (x,))).collect();
    for (x, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok((x as u64) * (x as u64)));
    }
    let pid = server.submit(pid_of_worker, ()).result().unwrap();
    assert_ne!(pid, std::process::id(), "the job ran in a worker process");
    assert_eq!(jobs_of(&server, ISOLATED_ROW), 301);
    assert_eq!(jobs_of(&server, "local"), 0, "no job ran on a thread");
    server.set_ncpus(3).unwrap();
    assert_eq!(server.ncpus(), 3);
    let jobs: Vec<_> = (0..30u64).map(|x| server.submit(square, (x,))).collect();
    let sum: u64 = jobs.into_iter().map(|j| j.result().unwrap()).sum();
    assert_eq!(sum, (0..30u64).map(|x| x * x).sum::<u64>());
}

#[test]
fn an_aborting_job_is_worker_crashed_and_the_program_lives() {
    let server = isolated(2);
    match server.submit(abort_now, ()).result() {
        Err(JobError::WorkerCrashed { message, .. }) => {
            assert!(message.contains("SIGABRT"), "{message}");
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    let jobs: Vec<_> = (0..20u64).map(|x| server.submit(square, (x,))).collect();
    for (x, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok((x as u64) * (x as u64)));
    }
}

#[test]
fn a_segfaulting_job_is_worker_crashed_and_the_program_lives() {
    let server = Server::builder()
        .isolated(true)
        .ncpus(1)
        .max_attempts(1)
        .build()
        .unwrap();
    match server.submit(segfault, ()).result() {
        Err(JobError::WorkerCrashed { message, .. }) => {
            assert!(message.contains("SIGSEGV"), "{message}");
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    assert_eq!(server.submit(square, (7,)).result(), Ok(49));
}

#[test]
fn a_hung_job_past_its_deadline_is_timed_out_and_the_next_job_runs() {
    let server = isolated(1);
    let start = Instant::now();
    let hung = server
        .job(sleep_for, (600_000,))
        .timeout(Duration::from_millis(300))
        .submit();
    let next = server.submit(square, (9,));
    match hung.result() {
        Err(JobError::TimedOut { after, .. }) => {
            assert_eq!(after, Duration::from_millis(300));
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "not before the deadline"
    );
    // One worker: the next job runs only because the hung one's worker was replaced.
    assert!(next.wait_timeout(WAIT), "the next job did not run");
    assert_eq!(next.result(), Ok(81));
}

#[test]
fn a_cancelled_running_job_stops_its_worker() {
    let server = isolated(1);
    let running = server.submit(sleep_for, (600_000,));
    // Until it runs: the job is in the worker's hands once nothing is queued.
    let deadline = Instant::now() + WAIT;
    while server.stats().queued_jobs > 0 || server.stats().active_jobs == 0 {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    running.cancel();
    assert!(matches!(running.result(), Err(JobError::Cancelled { .. })));
    let next = server.submit(square, (5,));
    assert!(
        next.wait_timeout(WAIT),
        "the next job did not run: the cancelled job's worker still holds the only slot"
    );
    assert_eq!(next.result(), Ok(25));
}

/// Runs the role test `role` of this binary as a child process with `env`; returns its
/// standard output and error once it has exited, and asserts it succeeded.
fn run_role(role: &str, env: &[(&str, &str)]) -> (String, String) {
    let mut command = role::role_command(role);
    command
        .env("PP_TEST_ISOLATED_ROLE", "1")
        .envs(env.iter().copied());
    let ran = role::run(&mut command);
    assert!(
        ran.status.success(),
        "the role failed ({}); stdout:\n{}\nstderr:\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    (ran.stdout, ran.stderr)
}

fn is_role() -> bool {
    std::env::var_os("PP_TEST_ISOLATED_ROLE").is_some()
}

#[test]
fn pp_isolated_from_the_environment_isolates_and_a_job_s_own_server_is_local() {
    let (stdout, _) = run_role(
        "environment_role",
        &[
            ("PP_ISOLATED", "1"),
            ("PP_NCPUS", "2"),
            // A node nobody serves: the workers must not see it.
            ("PP_SERVERS", "127.0.0.1:9"),
            ("PP_SECRET", support::SECRET),
        ],
    );
    assert!(stdout.contains("role: isolated ok"), "{stdout}");
}

/// Not a test on its own: a client built from the environment of
/// [`pp_isolated_from_the_environment_isolates_and_a_job_s_own_server_is_local`].
#[test]
#[ignore = "a role played by a child process of another test"]
fn environment_role() {
    if !is_role() {
        return;
    }
    let server = Server::new().unwrap();
    assert_eq!(server.ncpus(), 2);
    let pid = server.submit(pid_of_worker, ()).result().unwrap();
    assert_ne!(pid, std::process::id());
    let (from_env, asked, env_set, inner) = server.submit(nested_view, (6,)).result().unwrap();
    assert_eq!(from_env, ["local"], "a job's own server is local");
    assert_eq!(asked, ["local"], "a worker never starts workers");
    assert!(!env_set, "PP_SERVERS and PP_ISOLATED stay out of workers");
    assert_eq!(inner, 36);
    assert!(jobs_of(&server, ISOLATED_ROW) >= 2);
    println!("role: isolated ok");
}

#[test]
fn what_an_isolated_job_prints_reaches_the_program_unprefixed() {
    let (stdout, stderr) = run_role("printing_role", &[]);
    for x in 0..3 {
        let out = format!("isolated job {x} says hello");
        let err = format!("isolated job {x} warns");
        // The test harness may have written its own words on the line before.
        for (text, stream) in [(&out, &stdout), (&err, &stderr)] {
            let line = stream.lines().find(|l| l.ends_with(text.as_str()));
            let line = line.unwrap_or_else(|| panic!("{text:?} in:\n{stream}"));
            assert!(!line.contains('['), "no prefix: {line:?}");
        }
    }
}

/// Not a test on its own: prints through isolated jobs, for
/// [`what_an_isolated_job_prints_reaches_the_program_unprefixed`].
#[test]
#[ignore = "a role played by a child process of another test"]
fn printing_role() {
    if !is_role() {
        return;
    }
    let server = isolated(2);
    let jobs: Vec<_> = (0..3u64).map(|x| server.submit(chatty, (x,))).collect();
    for (x, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(x as u64));
    }
    // Each job's lines come before its result; dropping the server waits for the rest.
    drop(server);
}
