//! Launcher mode under Open MPI (issue 18, part 1): `mpirun --oversubscribe -n 3` of one
//! binary is one cluster, rank 0 the client and ranks 1 and 2 its nodes (no MPI library
//! linked: the ranks meet in a shared directory), and two runs at once on one host do not
//! collide. Skips, saying so, when `mpirun` is absent (Debian: openmpi-bin; `.ci/run`
//! installs it as root). The program is this test binary in the role
//! `rank0_runs_the_examples`.

mod checks;
mod support;

use std::process::Command;

use support::ranks::{check_run, rank0_role, start, ROLE};
use support::role::as_role;
use support::slurm::{find, is_root};

/// Jobs of the role: sum_primes' 9 and 40 naps.
const JOBS: u64 = 9 + NAPS;

/// Short jobs that leave the cores free, so that both nodes take some whatever the load.
const NAPS: u64 = 40;

/// Sleeps 50 ms, then gives `x` back.
#[pp::parallel]
fn nap(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(50));
    x
}

#[test]
#[ignore = "a role: run as rank 0 of mpirun by the tests below"]
fn rank0_runs_the_examples() {
    let server = pp::Server::new().expect("rank 0's server");
    rank0_role(&server, |server| {
        checks::sum_primes(server);
        let naps: Vec<_> = (0..NAPS).map(|x| server.submit(nap, (x,))).collect();
        let back: Vec<u64> = naps.into_iter().map(|j| j.result().unwrap()).collect();
        assert_eq!(back, (0..NAPS).collect::<Vec<_>>());
    });
}

/// `mpirun -n 3` of this binary in the role, its rendezvous in `base`.
fn mpirun(mpirun: &std::path::Path, base: &std::path::Path) -> Command {
    let mut command = Command::new(mpirun);
    if is_root() {
        command.arg("--allow-run-as-root");
    }
    command.args(["--oversubscribe", "-n", "3"]);
    // Passed on to the ranks on every host (here: inherited anyway).
    for var in ["PP_NCPUS", "PP_LAUNCHER_HOST", "PP_RENDEZVOUS_DIR"] {
        command.args(["-x", var]);
    }
    command.arg(std::env::current_exe().expect("this test"));
    as_role(&mut command, ROLE);
    command
        .env("PP_NCPUS", "0")
        .env("PP_LAUNCHER_HOST", "127.0.0.1")
        .env("PP_RENDEZVOUS_DIR", base)
        .env_remove("PP_LAUNCHER");
    command
}

#[test]
fn mpirun_makes_one_cluster_of_the_ranks_and_two_runs_do_not_collide() {
    let Some(program) = find("mpirun") else {
        eprintln!(
            "skipping mpirun_makes_one_cluster_of_the_ranks: mpirun not installed (Debian: \
             openmpi-bin; .ci/run installs it as root)"
        );
        return;
    };
    let base = support::temp_dir("rendezvous-mpi");
    std::fs::create_dir_all(&base).unwrap();
    let first = start(&mut mpirun(&program, &base));
    let second = start(&mut mpirun(&program, &base));
    let (first, second) = (first(), second());
    let nodes_1 = check_run(&first, "mpi", JOBS);
    let nodes_2 = check_run(&second, "mpi", JOBS);
    for node in &nodes_1 {
        assert!(!nodes_2.contains(node), "both runs used {node}");
    }
    let left: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(base);
}
