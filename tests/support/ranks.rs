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
/// jobs, its statistics row called "rank N (host:port)", and the jobs add up to `jobs`.
/// Returns the nodes' row names.
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
    let rows = rows(&ran.stdout);
    let nodes: Vec<&(String, u64)> = rows.iter().filter(|(name, _)| name != "local").collect();
    assert_eq!(
        nodes.len(),
        2,
        "a row per rank 1 and 2: {rows:?}\n{}",
        show()
    );
    for (name, ran_jobs) in &nodes {
        // A rank's row names it: "rank N (host:port)".
        let (rank, addr) = rank_label(name).unwrap_or_else(|| panic!("row {name}: {rows:?}"));
        assert!(addr.starts_with("127.0.0.1:"), "{name}");
        assert!(*ran_jobs > 0, "node {name} ran no job: {rows:?}");
        assert!(
            ran.stderr.contains(&format!("rank {rank} at {addr}")),
            "rank 0 named {name}: {}",
            show()
        );
    }
    assert_eq!(rows.iter().map(|(_, n)| n).sum::<u64>(), jobs, "{rows:?}");
    nodes.into_iter().map(|(name, _)| name.clone()).collect()
}

/// The `row NAME JOBS` lines of [`rank0_role`]'s output (a name may hold spaces).
pub fn rows(stdout: &str) -> Vec<(String, u64)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, jobs) = line.strip_prefix("row ")?.rsplit_once(' ')?;
            Some((name.to_owned(), jobs.parse().ok()?))
        })
        .collect()
}

/// The rank and address of a rank's label, `rank N (host:port)`.
pub fn rank_label(label: &str) -> Option<(u32, &str)> {
    let (rank, rest) = label.strip_prefix("rank ")?.split_once(" (")?;
    Some((rank.parse().ok()?, rest.strip_suffix(')')?))
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
