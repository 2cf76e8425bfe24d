//! What the launcher tests share: the role rank 0 plays (the examples on `Server::new()`,
//! then one `row NAME JOBS` line per statistics row), and the checks of one run's output.

use super::role::{read_in_background, Ran};
use std::process::Command;

/// The name of the role test every launcher test binary defines with [`rank0_role`].
pub const ROLE: &str = "rank0_runs_the_examples";

/// Rank 0's part on `Server::new()` (which finds the other ranks): the test's `examples`
/// (sum_primes checked against PP's results, and more), then the statistics rows on
/// standard output.
pub fn rank0_role(server: &pp::Server, examples: impl FnOnce(&pp::Server)) {
    examples(server);
    // After the harness's "test NAME ... ", which ends no line.
    println!();
    for row in server.stats().executors {
        println!("row {} {}", row.name, row.jobs);
    }
}

/// Checks one launcher run of 3 ranks that ran [`rank0_role`]: it succeeded, rank 0 said
/// it is one ("pp: launcher KIND: rank 0 of 3, 2 nodes"), each other rank's node ran
/// jobs, and the jobs add up to `jobs`. Returns the nodes' addresses.
pub fn check_run(ran: &Ran, kind: &str, jobs: u64) -> Vec<String> {
    let show = || format!("stdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.status.success(),
        "the run failed: {}\n{}",
        ran.status,
        show()
    );
    let said = format!("pp: launcher {kind}: rank 0 of 3, 2 nodes");
    assert_eq!(
        ran.stderr.matches(&said).count(),
        1,
        "said once: {said}\n{}",
        show()
    );
    let rows: Vec<(String, u64)> = ran
        .stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("row ")?.split(' ');
            Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
        })
        .collect();
    let nodes: Vec<&(String, u64)> = rows.iter().filter(|(name, _)| name != "local").collect();
    assert_eq!(
        nodes.len(),
        2,
        "a row per rank 1 and 2: {rows:?}\n{}",
        show()
    );
    for (name, ran_jobs) in &nodes {
        assert!(name.starts_with("127.0.0.1:"), "{name}");
        assert!(*ran_jobs > 0, "node {name} ran no job: {rows:?}");
        assert!(
            ran.stderr.contains(&format!(" at {name}")),
            "rank 0 named {name}: {}",
            show()
        );
    }
    assert_eq!(rows.iter().map(|(_, n)| n).sum::<u64>(), jobs, "{rows:?}");
    nodes.into_iter().map(|(name, _)| name.clone()).collect()
}

/// Starts a launcher's `command` (`srun`, `mpirun`); returns a function that waits for it
/// (bounded) and gives its output, so that two runs can overlap.
pub fn start(command: &mut Command) -> impl FnOnce() -> Ran {
    let mut child = command.spawn().expect("start the launcher");
    let stdout = read_in_background(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = read_in_background(child.stderr.take().map(|s| Box::new(s) as _));
    move || {
        let status = super::wait_bounded(&mut child);
        Ran {
            status,
            stdout: stdout.join().expect("stdout"),
            stderr: stderr.join().expect("stderr"),
        }
    }
}
