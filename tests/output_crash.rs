//! What a job printed before its worker died (or was killed past its time limit) reaches
//! the client, before the job's error: on a node (a real `ppserver`, through the node's
//! workers and through a lane) and in an isolated local worker. This test binary is re-run
//! as the client (a child process, so that its standard streams can be read).
//!
//! Each `*_role` test is the client's side of one case: ignored in a normal run, it does
//! its work only when the parent sets [`ROLE_CASE`].

mod support;

use std::time::Duration;
use support::role::{role_command, Ran};
use support::{Node, SECRET, WAIT};

/// The node's address, for a role run by a parent test.
const ROLE_NODE: &str = "PP_CRASH_TEST_NODE";

/// Which case a role runs.
const ROLE_CASE: &str = "PP_CRASH_TEST_CASE";

/// A file the parent makes once the node's lane is open (the lane case).
const ROLE_GO: &str = "PP_CRASH_TEST_GO";

/// Lines each job prints on each stream before it dies.
const LINES: u32 = 3;

/// Prints [`LINES`] lines tagged `tag` on standard output and error, then aborts.
#[pp::parallel]
fn print_then_abort(tag: String) -> u32 {
    for i in 0..LINES {
        println!("{tag} out {i}");
        eprintln!("{tag} err {i}");
    }
    std::process::abort()
}

/// Prints [`LINES`] lines tagged `tag` on standard output and error, then kills its own
/// process with SIGKILL, which nothing in the process can catch (as the OOM killer does).
#[pp::parallel]
fn print_then_sigkill(tag: String) -> u32 {
    for i in 0..LINES {
        println!("{tag} out {i}");
        eprintln!("{tag} err {i}");
    }
    // SAFETY: kill has no memory preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    0
}

/// `x + 1`: a job that warms the session up.
#[pp::parallel]
fn plus_one(x: u32) -> u32 {
    x + 1
}

/// Prints one line tagged `tag` on each stream, then sleeps far past any time limit.
#[pp::parallel]
fn print_then_hang(tag: String) -> u32 {
    println!("{tag} out 0");
    eprintln!("{tag} err 0");
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// The client side: runs the case named by [`ROLE_CASE`], printing `outcome: ...` after
/// each job's result.
#[test]
#[ignore = "the client's side of the tests of this file"]
fn crash_role() {
    let Ok(case) = std::env::var(ROLE_CASE) else {
        return;
    };
    // The harness wrote "test <name> ... " with no newline: end it.
    println!();
    let builder = pp::Server::builder().secret(SECRET).fallback_wait(WAIT);
    let builder = match std::env::var(ROLE_NODE) {
        Ok(node) => builder.ppservers([node]).ncpus(0),
        Err(_) => builder.isolated(true).ncpus(1),
    };
    let builder = match case.as_str() {
        "lane" => builder.max_attempts(1),
        "pipe" => builder.max_attempts(2).lanes(false),
        _ => builder.max_attempts(1).lanes(false),
    };
    let server = builder.build().expect("the client starts");
    if let Ok(go) = std::env::var(ROLE_GO) {
        // A first job opens the session, whose lane then opens: the parent says when (a
        // lone job goes on the lane once it is open).
        assert_eq!(server.submit(plus_one, (1,)).result().unwrap(), 2);
        let deadline = std::time::Instant::now() + WAIT;
        while !std::path::Path::new(&go).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no word from the parent"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let outcome = if case == "timeout" {
        server
            .job(print_then_hang, ("hung".to_owned(),))
            .timeout(Duration::from_millis(300))
            .submit()
            .result()
    } else if case == "killed" {
        server.submit(print_then_sigkill, (case.clone(),)).result()
    } else {
        server.submit(print_then_abort, (case.clone(),)).result()
    };
    match outcome {
        Err(error) => println!("outcome: {error}"),
        Ok(value) => println!("outcome: unexpected {value}"),
    }
}

/// Runs [`crash_role`] for `case`, on `node` (else isolated); returns what it wrote.
fn run_case(case: &str, node: Option<&Node>) -> Ran {
    let mut command = role_command("crash_role");
    command.env(ROLE_CASE, case);
    if let Some(node) = node {
        command.env(ROLE_NODE, node.name());
    }
    let ran = match node.filter(|_| case == "lane") {
        Some(_) => run_on_lane(&mut command),
        None => support::role::run(&mut command),
    };
    let log = node.map(|node| node.log.text()).unwrap_or_default();
    assert!(
        ran.status.success(),
        "the client failed ({}); stdout:\n{}\nstderr:\n{}\nnode log:\n{log}",
        ran.status,
        ran.stdout,
        ran.stderr,
    );
    ran
}

/// Runs `command` (the lane case) to its end, telling it when its lane to the node is
/// open: the client says so on its standard error at debug level.
fn run_on_lane(command: &mut std::process::Command) -> Ran {
    use std::io::BufRead;
    let dir = support::temp_dir("crash-go");
    std::fs::create_dir_all(&dir).expect("make the go file's directory");
    let go = dir.join("go");
    command.env(ROLE_GO, &go).env("PP_LOG", "debug");
    let mut child = command.spawn().expect("start the role's process");
    let stdout = support::role::read_in_background(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = child.stderr.take().expect("the role's stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("lane open") && !go.exists() {
                std::fs::write(&go, b"go").expect("write the go file");
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let status = support::wait_bounded(&mut child);
    let ran = Ran {
        status,
        stdout: stdout.join().expect("the stdout reader"),
        stderr: stderr.join().expect("the stderr reader"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    ran
}

/// The lines of `text` that contain `tag`, with the prefix `prefix` (`[node] `, or
/// nothing) taken off; lines without the prefix are left out.
fn tagged<'a>(text: &'a str, prefix: &str, tag: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter(|line| line.starts_with(tag))
        .collect()
}

/// What `tag`'s job prints on `stream` ("out" or "err"), `times` times over.
fn expected(tag: &str, stream: &str, lines: u32, times: usize) -> Vec<String> {
    (0..times)
        .flat_map(|_| (0..lines).map(|i| format!("{tag} {stream} {i}")))
        .collect()
}

/// Checks that the job's lines came `times` times on both streams, prefixed with
/// `prefix`, and before its outcome line, which says `says`.
fn check(ran: &Ran, prefix: &str, tag: &str, lines: u32, times: usize, says: &str) {
    let both = format!("stdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        tagged(&ran.stdout, prefix, tag),
        expected(tag, "out", lines, times),
        "{both}"
    );
    assert_eq!(
        tagged(&ran.stderr, prefix, tag),
        expected(tag, "err", lines, times),
        "{both}"
    );
    let stdout: Vec<&str> = ran.stdout.lines().collect();
    let outcome = stdout
        .iter()
        .position(|line| line.starts_with("outcome: "))
        .unwrap_or_else(|| panic!("no outcome: {both}"));
    assert!(stdout[outcome].contains(says), "{both}");
    let last_line = format!("{prefix}{tag} out {}", lines - 1);
    let last = stdout.iter().rposition(|line| *line == last_line);
    assert!(last.is_some_and(|last| last < outcome), "{both}");
    eprintln!(
        "client's lines:\n{}\n{}",
        ran.stdout.trim(),
        ran.stderr.trim()
    );
}

#[test]
fn a_job_that_aborts_on_a_node_prints_its_lines_before_its_error() {
    let node = Node::start(1, &[]);
    let prefix = format!("[{}] ", node.name());
    // A lone job, once the lane is open (Linux nodes), runs on the lane's worker.
    let lanes = cfg!(target_os = "linux");
    if lanes {
        lane_case(&node, &prefix);
    }
    // Through the node's own workers, twice: the crash is said between the attempts.
    let ran = run_case("pipe", Some(&node));
    check(&ran, &prefix, "pipe", LINES, 2, "worker");
    assert_eq!(
        ran.stderr.matches("the job is rescheduled").count(),
        1,
        "{}",
        ran.stderr
    );
    let stats = node.statistics();
    let crashes = if lanes { 3 } else { 2 };
    assert_eq!(
        support::counter(&stats, "worker_crashes"),
        crashes,
        "{stats}"
    );
}

/// The lane case of the test above.
fn lane_case(node: &Node, prefix: &str) {
    let ran = run_case("lane", Some(node));
    check(&ran, prefix, "lane", LINES, 1, "worker");
    node.log.wait_for("lane worker pid");
    assert!(
        node.log.contains("lane worker pid") && node.log.contains("SIGABRT"),
        "{}",
        node.log.text()
    );
}

#[test]
fn a_job_killed_by_sigkill_on_a_node_prints_its_lines_before_its_error() {
    let node = Node::start(1, &[]);
    let prefix = format!("[{}] ", node.name());
    let ran = run_case("killed", Some(&node));
    check(&ran, &prefix, "killed", LINES, 1, "SIGKILL");
}

#[test]
fn a_job_killed_past_its_time_limit_on_a_node_prints_its_lines_first() {
    let node = Node::start(1, &[]);
    let prefix = format!("[{}] ", node.name());
    let ran = run_case("timeout", Some(&node));
    check(&ran, &prefix, "hung", 1, 1, "its limit");
}

#[test]
fn a_job_that_aborts_in_an_isolated_worker_prints_its_lines_before_its_error() {
    let ran = run_case("isolated", None);
    check(&ran, "", "isolated", LINES, 1, "worker");
}

#[test]
fn a_job_killed_past_its_time_limit_in_an_isolated_worker_prints_its_lines_first() {
    let ran = run_case("timeout", None);
    check(&ran, "", "hung", 1, 1, "its limit");
}
