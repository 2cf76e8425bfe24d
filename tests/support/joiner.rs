//! `ppserver --join` nodes for the join tests (`join.rs`, `join_again.rs`): the process
//! guard, the listening client, and what the tests ask of it. Each client's nodes take
//! their join slots (their names) in a temporary directory of their own (`TMPDIR`), so
//! that nodes of other tests do not shift their names.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use crate::add_one;
use crate::support::{collect_stderr, Log, SECRET, WAIT};
use pp::Server;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `ppserver --join` process; killed and reaped on drop.
pub struct Joiner {
    pub child: Child,
    pub log: Arc<Log>,
    pub started: Instant,
}

impl Joiner {
    /// `ppserver --join client -w workers` with the test secret and `cache` as its cache.
    pub fn start(client: &str, workers: usize, cache: &Path) -> Joiner {
        Joiner::spawn(
            Command::new(env!("CARGO_BIN_EXE_ppserver")),
            client,
            workers,
            cache,
            &[],
        )
    }

    pub fn spawn(
        mut command: Command,
        client: &str,
        workers: usize,
        cache: &Path,
        extra: &[&str],
    ) -> Joiner {
        let started = Instant::now();
        // Unless the caller chose a temporary directory: the nodes of one client share one.
        if !command.get_envs().any(|(name, _)| name == "TMPDIR") {
            command.env("TMPDIR", slots_of(client));
        }
        let mut child = command
            .args(["--join", client, "-w", &workers.to_string(), "--cache-dir"])
            .arg(cache)
            .args(extra)
            .env("PP_SECRET", SECRET)
            .env_remove("PP_SECRET_FILE")
            .env_remove("PP_WORKER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ppserver --join");
        let log = collect_stderr(&mut child);
        Joiner {
            child,
            log,
            started,
        }
    }
}

/// The temporary directory of the nodes joining `client`, where they take their join
/// slots: one per client, shared by its nodes.
pub fn slots_of(client: &str) -> PathBuf {
    let dir = slots_dir(client);
    std::fs::create_dir_all(&dir).expect("create the nodes' temporary directory");
    dir
}

/// Removes the temporary directory of the nodes joining `client`, once they are gone.
pub fn forget_slots(client: &str) {
    let _ = std::fs::remove_dir_all(slots_dir(client));
}

fn slots_dir(client: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "pp-test-{}-join-slots-{}",
        std::process::id(),
        client.replace([':', '.'], "-")
    ))
}

impl Drop for Joiner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port of 127.0.0.1 (free a moment ago).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A client listening at `listen` for nodes, with no local worker and no fallback for
/// [`WAIT`].
pub fn listening_client(listen: &str) -> Server {
    Server::builder()
        .listen(listen)
        .secret(SECRET)
        .ncpus(0)
        .fallback_wait(WAIT)
        .build()
        .expect("the client starts listening")
}

/// The names of the nodes connected now.
pub fn connected_names(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = server
        .active_nodes()
        .into_iter()
        .filter(|n| n.connected)
        .map(|n| n.address)
        .collect();
    names.sort();
    names
}

/// The jobs of row `name`, 0 if it has none.
pub fn jobs_of(server: &Server, name: &str) -> u64 {
    server
        .stats()
        .executors
        .iter()
        .find(|e| e.name == name)
        .map_or(0, |e| e.jobs)
}

/// Submits `n` jobs, checks every result, returns the time to the first one.
pub fn run_jobs(server: &Server, n: u64) -> Duration {
    let started = Instant::now();
    let jobs: Vec<_> = (0..n).map(|i| server.submit(add_one, (i,))).collect();
    let mut first = None;
    for (i, job) in (0..n).zip(jobs) {
        assert_eq!(job.result(), Ok(i + 1));
        first.get_or_insert_with(|| started.elapsed());
    }
    first.unwrap_or_default()
}

/// The time from starting `node` to the first result of jobs queued before it started
/// (the client has no other worker).
pub fn first_job_after_start(server: &Server, node: &Joiner) -> Duration {
    let job = server.submit(add_one, (41,));
    assert_eq!(job.result(), Ok(42));
    node.started.elapsed()
}

/// A child process killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The row of `name` among the nodes.
pub fn row_of(server: &Server, name: &str) -> pp::NodeStatus {
    server
        .active_nodes()
        .into_iter()
        .find(|n| n.address == name)
        .unwrap_or_else(|| panic!("no row {name} in {:?}", server.active_nodes()))
}
