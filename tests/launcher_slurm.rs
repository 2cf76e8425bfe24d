//! Launcher mode under a real Slurm (issue 18, part 1): `srun -n 3` of one binary is one
//! cluster, rank 0 the client and ranks 1 and 2 its nodes, and two such runs at once on one
//! host do not collide. The test starts munged, slurmctld and slurmd for this machine
//! (tests/support/slurm.rs; as root, else it says so and skips). The program is this test
//! binary in the role `rank0_runs_the_examples` (sum_primes and 40 short jobs on
//! `Server::new()`), so that what runs is what this build compiled. Also: the deploy/slurm
//! scripts under `sbatch` (a program across an allocation; `ppserver --join` nodes that
//! join a client already running), a rank that dies, rank 0 killed, `PP_LAUNCHER=off`.

mod checks;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::ranks::{check_run, rank0_role, start, ROLE};
use support::role::{as_role, read_in_background, Ran};
use support::slurm::Slurm;

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

/// `srun -n TASKS --overcommit --oversubscribe` of this test binary in the role `role`.
fn srun_role(slurm: &Slurm, tasks: &str, role: &str) -> std::process::Command {
    let mut command = slurm.command("srun");
    command.args(["-n", tasks, "--overcommit", "--oversubscribe"]);
    command.arg(std::env::current_exe().expect("this test"));
    as_role(&mut command, role);
    command
}

/// A fresh directory for the runs' rendezvous directories.
fn rendezvous_base(name: &str) -> std::path::PathBuf {
    let base = support::temp_dir(name);
    std::fs::create_dir_all(&base).unwrap();
    base
}

#[test]
#[ignore = "a role: run as rank 0 of srun by the tests below"]
fn rank0_runs_the_examples() {
    let server = pp::Server::new().expect("rank 0's server");
    rank0_role(&server, |server| {
        checks::sum_primes(server);
        let naps: Vec<_> = (0..NAPS).map(|x| server.submit(nap, (x,))).collect();
        let back: Vec<u64> = naps.into_iter().map(|j| j.result().unwrap()).collect();
        assert_eq!(back, (0..NAPS).collect::<Vec<_>>());
    });
}

/// `srun -n 3` of this binary in the role, its rendezvous in `base`.
fn srun(slurm: &Slurm, base: &std::path::Path) -> Command {
    let mut command = slurm.command("srun");
    command.args([
        "-n",
        "3",
        "--overcommit",
        "--oversubscribe",
        "--kill-on-bad-exit=1",
    ]);
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
fn srun_makes_one_cluster_of_the_ranks_and_two_runs_do_not_collide() {
    let Some(slurm) = Slurm::start("srun_makes_one_cluster_of_the_ranks") else {
        return;
    };
    let base = rendezvous_base("rendezvous");
    // Two runs at the same time on this one host.
    let first = start(&mut srun(&slurm, &base));
    let second = start(&mut srun(&slurm, &base));
    let (first, second) = (first(), second());
    if !first.status.success() || !second.status.success() {
        eprintln!("slurm's logs:\n{}", slurm.logs());
    }
    let nodes_1 = check_run(&first, "slurm", JOBS);
    let nodes_2 = check_run(&second, "slurm", JOBS);
    for node in &nodes_1 {
        assert!(!nodes_2.contains(node), "both runs used {node}");
    }
    // Each rank 0 removed its rendezvous directory, secret included.
    let left: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn with_the_launcher_off_every_rank_runs_main() {
    let Some(slurm) = Slurm::start("with_the_launcher_off_every_rank_runs_main") else {
        return;
    };
    let base = rendezvous_base("rendezvous-off");
    let mut command = srun_role(&slurm, "2", "each_rank_says_hello");
    command
        .env("PP_LAUNCHER", "off")
        .env("PP_RENDEZVOUS_DIR", &base);
    let ran = support::role::run(&mut command);
    assert!(ran.status.success(), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        ran.stdout.matches("hello from main").count(),
        2,
        "{}",
        ran.stdout
    );
    assert!(!ran.stderr.contains("launcher"), "{}", ran.stderr);
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(base);
}

#[test]
#[ignore = "a role: run by srun in every rank"]
fn each_rank_says_hello() {
    println!("hello from main");
}

#[test]
#[ignore = "a role: rank 0 of srun that dies without ending the run"]
fn rank0_dies_without_a_word() {
    let server = pp::Server::new().expect("rank 0's server");
    assert_eq!(server.submit(nap, (7,)).result(), Ok(7));
    // No exit handlers: as if killed, the rendezvous directory is left and says nothing.
    // SAFETY: _exit ends the process at once; nothing of this process is used after it.
    unsafe { libc::_exit(3) }
}

#[test]
fn the_ranks_end_when_rank_0_dies() {
    let Some(slurm) = Slurm::start("the_ranks_end_when_rank_0_dies") else {
        return;
    };
    let base = rendezvous_base("rendezvous-dies");
    let mut command = srun_role(&slurm, "3", "rank0_dies_without_a_word");
    command
        .env("PP_LAUNCHER_HOST", "127.0.0.1")
        .env("PP_RENDEZVOUS_DIR", &base);
    let mut child = command.spawn().expect("start srun");
    let stderr = read_in_background(child.stderr.take().map(|s| Box::new(s) as _));
    // Rank 0's heartbeat stops: the ranks wait pp_net's RANK0_SILENCE (15 s), then end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the ranks still run 60 s after rank 0 died:\n{}",
                slurm.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = stderr.join().unwrap();
    assert!(!status.success(), "rank 0 exited with 3");
    assert!(stderr.contains("rank 0's heartbeat stopped"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().collect();
    assert!(
        left.is_empty(),
        "the ranks remove what rank 0 left: {left:?}"
    );
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn the_sbatch_script_runs_a_program_across_the_allocation() {
    let Some(slurm) = Slurm::start("the_sbatch_script_runs_a_program_across_the_allocation") else {
        return;
    };
    let base = rendezvous_base("rendezvous-sbatch");
    let (out, err) = (base.join("job.out"), base.join("job.err"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/slurm/pp-run.sbatch");
    let mut command = slurm.command("sbatch");
    command
        .args(["--wait", "--ntasks=3", "--overcommit", "--oversubscribe"])
        .arg(format!("--output={}", out.display()))
        .arg(format!("--error={}", err.display()))
        .arg(script)
        .arg(std::env::current_exe().expect("this test"));
    as_role(&mut command, ROLE);
    command
        .env("PP_NCPUS", "0")
        .env("PP_LAUNCHER_HOST", "127.0.0.1")
        .env("PP_RENDEZVOUS_DIR", &base);
    let submitted = support::role::run(&mut command);
    let ran = Ran {
        status: submitted.status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    };
    if !ran.status.success() {
        eprintln!(
            "sbatch: {}\n{}\n{}",
            submitted.stdout,
            submitted.stderr,
            slurm.logs()
        );
    }
    check_run(&ran, "slurm", JOBS);
    let left: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pp-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn ppserver_under_srun_is_one_node_per_task() {
    let Some(slurm) = Slurm::start("ppserver_under_srun_is_one_node_per_task") else {
        return;
    };
    // A program without tasks never enters launcher mode: every task runs its main.
    let mut command = slurm.command("srun");
    command
        .args(["-n", "2", "--overcommit", "--oversubscribe"])
        .arg(env!("CARGO_BIN_EXE_ppserver"))
        .arg("--version")
        .env_remove("PP_LAUNCHER")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let ran = support::role::run(&mut command);
    assert!(ran.status.success(), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(ran.stdout.matches("ppserver ").count(), 2, "{}", ran.stdout);
}

/// Kills the node that runs it (its worker's parent: the rank), the first time only (the
/// file `marker` remembers): true if it did.
#[pp::parallel]
fn kill_my_node_once(marker: String) -> bool {
    let first = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
        .is_ok();
    if first {
        // SAFETY: kill and getppid have no preconditions.
        unsafe { libc::kill(libc::getppid(), libc::SIGKILL) };
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    first
}

#[test]
#[ignore = "a role: rank 0 of srun that sees a rank die"]
fn rank0_loses_a_rank() {
    let server = pp::Server::new().expect("rank 0's server");
    let check_naps = |server: &pp::Server| {
        let naps: Vec<_> = (0..NAPS).map(|x| server.submit(nap, (x,))).collect();
        let back: Vec<u64> = naps.into_iter().map(|j| j.result().unwrap()).collect();
        assert_eq!(back, (0..NAPS).collect::<Vec<_>>());
    };
    check_naps(&server);
    let marker = std::env::var("PP_TEST_MARKER").expect("PP_TEST_MARKER");
    // Killed with its node on the first try, it runs again on the other rank.
    assert_eq!(
        server.submit(kill_my_node_once, (marker,)).result(),
        Ok(false)
    );
    check_naps(&server);
    // After the harness's "test NAME ... ", which ends no line.
    println!();
    for node in server.active_nodes() {
        println!(
            "node {} losses {} connected {}",
            node.address, node.losses, node.connected
        );
    }
    for row in server.stats().executors {
        println!("row {} {}", row.name, row.jobs);
    }
    server.print_stats();
    println!();
    println!("rank 0 done");
}

#[test]
fn a_rank_that_dies_is_a_lost_node() {
    let Some(slurm) = Slurm::start("a_rank_that_dies_is_a_lost_node") else {
        return;
    };
    let base = rendezvous_base("rendezvous-lost");
    let mut command = srun_role(&slurm, "3", "rank0_loses_a_rank");
    command
        .env("PP_NCPUS", "0")
        .env("PP_LAUNCHER_HOST", "127.0.0.1")
        .env("PP_RENDEZVOUS_DIR", &base)
        .env("PP_TEST_MARKER", base.join("killed"));
    let ran = support::role::run(&mut command);
    let show = format!("stdout:\n{}\nstderr:\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("rank 0 done"), "{show}");
    // srun says the killed task failed; rank 0 finished its work all the same.
    assert!(!ran.status.success(), "{show}");
    let nodes: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("node "))
        .collect();
    assert_eq!(nodes.len(), 2, "{show}");
    let lost: Vec<&&str> = nodes
        .iter()
        .filter(|l| l.ends_with("connected false") && !l.contains("losses 0"))
        .collect();
    assert_eq!(lost.len(), 1, "one rank lost: {show}");
    assert!(ran.stderr.contains("lost"), "rank 0 said so: {show}");
    // Rank 0 names the lost rank as a rank, in its warnings and in print_stats(): no
    // ppserver is involved.
    let addr = lost[0].split(' ').nth(1).expect("node ADDR ...");
    let rank = (1..=2)
        .find(|rank| {
            let at = format!("rank {rank} at {addr}");
            ran.stderr.contains(&format!("{at},")) || ran.stderr.contains(&format!("{at}\n"))
        })
        .unwrap_or_else(|| panic!("rank 0 named no rank at {addr}: {show}"));
    let label = format!("rank {rank} ({addr})");
    assert!(
        ran.stderr.contains(&format!("{label}: ")),
        "rank 0 warned about {label}: {show}"
    );
    assert!(
        !ran.stderr.contains("is ppserver running"),
        "a rank's loss does not point at ppserver: {show}"
    );
    assert!(
        ran.stdout.contains(&format!("{label}: not connected")),
        "print_stats() names {label}: {show}"
    );
    let rows = support::ranks::rows(&ran.stdout);
    assert!(
        rows.iter().any(|(name, _)| *name == label),
        "a statistics row {label}: {rows:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pp-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(base);
    // The killed rank could not remove its copy of the program; the next rank on this host
    // would: do it now (any `pp-launcher-*-PID` whose process is gone).
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("pp-launcher-")
            .and_then(|n| n.rsplit('-').next());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[test]
fn sbatch_starts_nodes_that_join_a_running_client() {
    let Some(slurm) = Slurm::start("sbatch_starts_nodes_that_join_a_running_client") else {
        return;
    };
    let dir = support::temp_dir("join-sbatch");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, support::SECRET).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // The client runs first, here, and listens for nodes (PP_LISTEN in a program).
    let listen = format!("127.0.0.1:{}", free_port());
    let server = pp::Server::builder()
        .listen(listen.as_str())
        .secret(support::SECRET)
        .ncpus(0)
        .fallback_wait(support::WAIT)
        .build()
        .expect("the client listens");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/slurm/pp-join-nodes.sbatch"
    );
    let submitted = slurm
        .command("sbatch")
        .args([
            "--parsable",
            "--ntasks=2",
            "--overcommit",
            "--oversubscribe",
        ])
        .arg(format!("--output={}", dir.join("nodes.out").display()))
        .arg(script)
        .env("PP_JOIN", &listen)
        .env("PP_SECRET_FILE", &secret)
        .env("PPSERVER", env!("CARGO_BIN_EXE_ppserver"))
        .env_remove("PP_SECRET")
        .output()
        .expect("sbatch");
    let job = String::from_utf8_lossy(&submitted.stdout).trim().to_owned();
    assert!(submitted.status.success(), "sbatch: {submitted:?}");
    // Whatever happens next, the job is cancelled and waited for (its nodes redial).
    struct Cancel<'s>(&'s Slurm, String);
    impl Drop for Cancel<'_> {
        fn drop(&mut self) {
            let _ = self.0.command("scancel").arg(&self.1).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let queued = self
                    .0
                    .command("squeue")
                    .args(["-h", "-j", &self.1])
                    .output();
                if queued.is_ok_and(|o| o.stdout.is_empty()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let _cancel = Cancel(&slurm, job);
    let deadline = Instant::now() + Duration::from_secs(30);
    let connected =
        |server: &pp::Server| server.active_nodes().iter().filter(|n| n.connected).count();
    while connected(&server) < 2 {
        assert!(
            Instant::now() < deadline,
            "the job's 2 nodes did not join within 30 s: {:?}\n{}\n{}",
            server.active_nodes(),
            std::fs::read_to_string(dir.join("nodes.out")).unwrap_or_default(),
            slurm.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let naps: Vec<_> = (0..NAPS).map(|x| server.submit(nap, (x,))).collect();
    let back: Vec<u64> = naps.into_iter().map(|j| j.result().unwrap()).collect();
    assert_eq!(back, (0..NAPS).collect::<Vec<_>>());
    let stats = server.stats();
    let nodes: Vec<_> = stats
        .executors
        .iter()
        .filter(|e| e.name != "local")
        .collect();
    assert_eq!(nodes.len(), 2, "{stats}");
    assert!(
        nodes.iter().all(|e| e.jobs > 0),
        "both joined nodes ran jobs: {stats}"
    );
    drop(server);
    drop(_cancel);
    let _ = std::fs::remove_dir_all(dir);
}

/// A free TCP port of 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
