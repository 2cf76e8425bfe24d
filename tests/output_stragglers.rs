//! A straggler's job prints once, and its losing copy is withdrawn from its node: two real
//! `ppserver` processes on 127.0.0.1, one made slow deterministically (the jobs it takes
//! wait on it while a "hold" file exists, as in `tests/stragglers.rs`), and this test
//! binary re-run as the client (a child process, so that its standard output can be read).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::role::role_command;
use support::{Node, WAIT};

/// The nodes' addresses, slow one first, for the role.
const ROLE_NODES: &str = "PP_STRAGGLER_TEST_NODES";

/// The slow node's pid and the hold file, for the role.
const ROLE_SLOW_PID: &str = "PP_STRAGGLER_TEST_SLOW_PID";
const ROLE_HOLD: &str = "PP_STRAGGLER_TEST_HOLD";

/// On the node whose pid is `held_on`, first says so (the file `hold` + `.taken`) and
/// waits (at most a minute) while `hold` exists; then sleeps `millis` ms, prints one line
/// naming `x` and returns `x`.
#[pp::parallel]
fn held_print(x: u64, millis: u64, held_on: u32, hold: String) -> u64 {
    if std::os::unix::process::parent_id() == held_on {
        let _ = std::fs::write(format!("{hold}.taken"), b"taken");
        let start = Instant::now();
        while Path::new(&hold).exists() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(millis));
    println!("the distinctive line of job {x}");
    x
}

/// The client: learns the jobs' latency, then submits jobs one at a time until the slow
/// node holds one (and a little more), and prints each result.
#[test]
#[ignore = "the client's side of a_stragglers_line_appears_once_and_its_losing_copy_is_withdrawn"]
fn straggler_role() {
    let Ok(nodes) = std::env::var(ROLE_NODES) else {
        return;
    };
    println!();
    let slow: u32 = std::env::var(ROLE_SLOW_PID).unwrap().parse().unwrap();
    let hold = std::env::var(ROLE_HOLD).unwrap();
    let server = pp::Server::builder()
        .ppservers(nodes.split(','))
        .secret(support::SECRET)
        .ncpus(0)
        .fallback_wait(WAIT)
        .duplicate_stragglers(true)
        // Every job on the sessions' connections, where a copy is withdrawn with `Cancel`
        // (a lane's job is withdrawn by closing the lane).
        .lanes(false)
        .build()
        .expect("the client starts");
    support::wait_until(&server, "both nodes connected", || {
        let nodes = server.active_nodes();
        nodes.len() == 2 && nodes.iter().all(|n| n.connected)
    });
    // Held on no node: the latency the stragglers' threshold comes from.
    for x in 0..6 {
        assert_eq!(
            server.submit(held_print, (x, 5, 0, hold.clone())).result(),
            Ok(x)
        );
        println!("result {x}");
    }
    let taken = format!("{hold}.taken");
    let deadline = Instant::now() + WAIT;
    let mut jobs = Vec::new();
    let mut x = 100;
    while !Path::new(&taken).exists() {
        assert!(Instant::now() < deadline, "the slow node took no job");
        jobs.push((x, server.submit(held_print, (x, 20, slow, hold.clone()))));
        x += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    for (x, job) in jobs {
        assert!(job.wait_timeout(WAIT), "job {x} finished");
        assert_eq!(job.result(), Ok(x));
        println!("result {x}");
    }
    // The copies the slow node held were withdrawn as their other copies won: the node
    // has room again and runs the next jobs too.
    std::fs::remove_file(&hold).expect("release the hold");
    let more: Vec<_> = (200..206)
        .map(|x| (x, server.submit(held_print, (x, 20, 0, hold.clone()))))
        .collect();
    for (x, job) in more {
        assert_eq!(job.result(), Ok(x));
        println!("result {x}");
    }
    eprintln!("{}", server.stats());
}

#[test]
fn a_stragglers_line_appears_once_and_its_losing_copy_is_withdrawn() {
    let (slow, fast) = (Node::start(1, &[]), Node::start(1, &[]));
    let dir = support::temp_dir("straggler-hold");
    std::fs::create_dir_all(&dir).expect("make the hold's directory");
    let hold = dir.join("hold");
    std::fs::write(&hold, b"held").expect("make the hold file");
    let mut command = role_command("straggler_role");
    command
        .env(ROLE_NODES, format!("{},{}", slow.name(), fast.name()))
        .env(ROLE_SLOW_PID, slow.pid().to_string())
        .env(ROLE_HOLD, &hold);
    let ran = support::role::run(&mut command);
    let _ = std::fs::remove_dir_all(&dir);
    let both = format!(
        "stdout:\n{}\nstderr:\n{}\nslow node:\n{}",
        ran.stdout,
        ran.stderr,
        slow.log.text()
    );
    assert!(ran.status.success(), "{both}");
    let results: Vec<u64> = ran
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("result "))
        .map(|x| x.parse().expect("a job number"))
        .collect();
    assert!(results.len() > 12, "{both}");
    for &x in &results {
        let line = format!("] the distinctive line of job {x}");
        let printed = ran.stdout.lines().filter(|l| l.ends_with(&line)).count();
        assert_eq!(printed, 1, "job {x}: {both}");
        assert_eq!(results.iter().filter(|&&r| r == x).count(), 1, "{both}");
    }
    // The job the slow node held ran on the fast one, and was withdrawn from the slow one.
    let withdrawn = slow.log.wait_for("was cancelled by the client");
    let stats = slow.statistics();
    assert!(support::counter(&stats, "jobs_cancelled") >= 1, "{stats}");
    let sample: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.contains("job 100"))
        .collect();
    eprintln!("client: {sample:?}\nslow node: {withdrawn}\n{stats}");
}
