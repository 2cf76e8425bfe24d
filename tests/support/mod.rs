//! Helpers for tests that run real `ppserver` processes on 127.0.0.1: a guard that kills
//! and reaps the process it started, its log as it comes, bounded waits, and the count of
//! its child processes.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

pub mod ranks;
pub mod raw;
pub mod role;
pub mod slurm;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The bound on every wait: generous for a slow machine, it only turns a hang into a
/// failure.
pub const WAIT: Duration = Duration::from_secs(20);

/// The secret the tests' nodes use.
pub const SECRET: &str = "a test secret that is long enough to mean something";

/// The lines a process wrote to standard error so far, and a signal when more come.
#[derive(Default)]
pub struct Log {
    lines: Mutex<Vec<String>>,
    more: Condvar,
    closed: Mutex<bool>,
}

impl Log {
    /// Waits (at most [`WAIT`]) for a line containing `text`; returns it.
    ///
    /// # Panics
    /// When no such line comes in time, showing the log so far.
    pub fn wait_for(&self, text: &str) -> String {
        self.wait_for_line(|line| line.contains(text))
            .unwrap_or_else(|| {
                panic!(
                    "no log line with {text:?} within {WAIT:?}; log:\n{}",
                    self.text()
                )
            })
    }

    /// Waits (at most [`WAIT`]) for a line that satisfies `pred`.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        let mut lines = self.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| pred(l)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self.more.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Waits (at most [`WAIT`]) until `n` lines contain `text`; returns how many do then
    /// (fewer than `n` when they did not come in time).
    pub fn wait_for_count(&self, text: &str, n: usize) -> usize {
        let deadline = Instant::now() + WAIT;
        let mut lines = self.lines.lock().unwrap();
        loop {
            let count = lines.iter().filter(|l| l.contains(text)).count();
            let now = Instant::now();
            if count >= n || now >= deadline {
                return count;
            }
            lines = self.more.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Whether some line so far contains `text`.
    pub fn contains(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// How many lines so far contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.matching(text).len()
    }

    /// The lines so far that contain `text`.
    pub fn matching(&self, text: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.more.notify_all();
    }
}

/// A `ppserver` process started by this test; killed and reaped on drop.
pub struct Node {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its standard error.
    pub log: Arc<Log>,
    /// Its private program cache.
    pub cache_dir: PathBuf,
}

/// A client of `nodes` with the tests' secret and no local worker, set up further by
/// `configure` (liveness, straggler copies, ...). Jobs wait up to [`WAIT`] for a node
/// before they fall back to local workers, so a slow start on a busy machine does not run
/// them locally.
pub fn client(
    nodes: &[&Node],
    configure: impl FnOnce(pp::ServerBuilder) -> pp::ServerBuilder,
) -> pp::Server {
    let builder = pp::Server::builder()
        .ppservers(nodes.iter().map(|n| n.name()))
        .secret(SECRET)
        .ncpus(0)
        .fallback_wait(WAIT);
    configure(builder)
        .build()
        .expect("the cluster client starts")
}

/// Waits (at most [`WAIT`]) until `pred` holds, or panics with `what` and the statistics.
pub fn wait_until(server: &pp::Server, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "not within {WAIT:?}: {what}\nnodes: {:?}\n{}",
            server.active_nodes(),
            server.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `server` is connected to `node` now.
pub fn connected(server: &pp::Server, node: &Node) -> bool {
    let name = node.name();
    server
        .active_nodes()
        .iter()
        .any(|n| n.address == name && n.connected)
}

/// The jobs done by the statistics row `row` (`local`, or a node's [`Node::name`]).
pub fn jobs_of(server: &pp::Server, row: &str) -> u64 {
    let stats = server.stats();
    stats
        .executors
        .iter()
        .find(|e| e.name == row)
        .unwrap_or_else(|| panic!("no row {row} in\n{stats}"))
        .jobs
}

/// A fresh directory under the system's temporary directory, unique to this process.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pp-test-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `ppserver` with no secret in its environment and stderr piped to a [`Log`].
pub fn ppserver_command(args: &[&str]) -> Command {
    ppserver_command_of(std::path::Path::new(env!("CARGO_BIN_EXE_ppserver")), args)
}

/// As [`ppserver_command`], of the `ppserver` executable at `exe` (a build for another
/// target, in tests/cross_arch.rs).
pub fn ppserver_command_of(exe: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(exe);
    as_ppserver(&mut command).args(args);
    command
}

/// Makes `command` (`ppserver`, or a launcher of it such as `ip netns exec NS ppserver`)
/// start without the secret or worker role of the test's environment, its standard error
/// piped (for [`collect_stderr`]) and its other streams closed.
pub fn as_ppserver(command: &mut Command) -> &mut Command {
    command
        .env_remove("PP_SECRET")
        .env_remove("PP_SECRET_FILE")
        .env_remove("PP_WORKER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
}

/// Starts collecting a child's standard error into a [`Log`].
pub fn collect_stderr(child: &mut Child) -> Arc<Log> {
    let log = Arc::new(Log::default());
    let stderr = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            match line {
                Ok(line) => sink.push(line),
                Err(_) => break,
            }
        }
        *sink.closed.lock().unwrap() = true;
        sink.more.notify_all();
    });
    log
}

impl Node {
    /// Starts `ppserver` on a free port of 127.0.0.1 with `workers` workers, the test
    /// secret, a private cache and `extra` arguments; waits for its listening line.
    pub fn start(workers: usize, extra: &[&str]) -> Node {
        Node::start_on(0, workers, extra)
    }

    /// As [`Node::start`], on `port` of 127.0.0.1 (0: a free one), e.g. to restart a node
    /// where it was.
    pub fn start_on(port: u16, workers: usize, extra: &[&str]) -> Node {
        Node::start_in(temp_dir("cache"), port, workers, extra)
    }

    /// As [`Node::start_on`], with `cache_dir` as its program cache (prepared by the test;
    /// removed on drop).
    pub fn start_in(cache_dir: PathBuf, port: u16, workers: usize, extra: &[&str]) -> Node {
        Node::start_with_env(cache_dir, port, workers, extra, &[])
    }

    /// As [`Node::start_in`], with `env` set in the node's environment.
    pub fn start_with_env(
        cache_dir: PathBuf,
        port: u16,
        workers: usize,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_ppserver"));
        Node::start_exe(exe, cache_dir, port, workers, extra, env)
    }

    /// As [`Node::start_with_env`], running the `ppserver` executable at `exe`.
    pub fn start_exe(
        exe: &std::path::Path,
        cache_dir: PathBuf,
        port: u16,
        workers: usize,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        let workers = workers.to_string();
        let port = port.to_string();
        let cache = cache_dir.to_str().expect("utf-8 temp dir").to_owned();
        let mut args = vec!["--port", &port, "--interface", "127.0.0.1", "-w", &workers];
        args.extend(["--cache-dir", &cache]);
        args.extend_from_slice(extra);
        let mut child = ppserver_command_of(exe, &args)
            .env("PP_SECRET", SECRET)
            .envs(env.iter().copied())
            .spawn()
            .expect("start ppserver");
        let log = collect_stderr(&mut child);
        let mut node = Node {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            cache_dir,
        };
        let line = node.log.wait_for("ppserver listening on ");
        node.addr = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        node
    }

    /// Starts `command` (a `ppserver` command line prepared by [`as_ppserver`]) as a node
    /// that clients reach at `addr` (in a network namespace, say), with `dir` removed on
    /// drop; waits for its line saying that it listens on `addr`'s port.
    pub fn spawn_at(command: &mut Command, addr: SocketAddr, dir: PathBuf) -> Node {
        let mut child = command.spawn().expect("start ppserver");
        let log = collect_stderr(&mut child);
        let node = Node {
            child,
            addr,
            log,
            cache_dir: dir,
        };
        let line = node.log.wait_for("ppserver listening on ");
        let port = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .map(|a| a.port());
        assert_eq!(port, Some(addr.port()), "not the port of {addr}: {line:?}");
        node
    }

    /// `host:port`, as clients name the node and as its statistics row is called.
    pub fn name(&self) -> String {
        self.addr.to_string()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `USR1`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (at most [`WAIT`]) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_bounded(&mut self.child)
    }

    /// Waits (at most [`WAIT`]) until the node has exactly `n` child processes, and
    /// returns their pids.
    pub fn wait_children(&self, n: usize) -> Vec<u32> {
        let deadline = Instant::now() + WAIT;
        loop {
            let children = children_of(self.pid());
            if children.len() == n {
                return children;
            }
            assert!(
                Instant::now() < deadline,
                "ppserver has children {children:?}, expected {n}; log:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What `/proc/PID/status` says of a process's memory, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss_kib: u64,
    /// The highest resident set size so far (`VmHWM`).
    pub peak_kib: u64,
}

/// The memory of process `pid` (Linux `/proc`), or `None` where there is no such file.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

impl Node {
    /// The node process's memory now and at its peak (Linux only).
    pub fn memory(&self) -> Option<Memory> {
        memory_of(self.pid())
    }

    /// Asks for the statistics (SIGUSR1) and waits for the line they come in.
    pub fn statistics(&self) -> String {
        let before = self.log.count("statistics: ");
        self.signal("USR1");
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.log.matching("statistics: ");
            if lines.len() > before {
                return lines[lines.len() - 1].clone();
            }
            assert!(Instant::now() < deadline, "no statistics within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.cache_dir);
    }
}

/// The UDP address the node answers probes on, from its log.
pub fn discovery_addr(node: &Node) -> SocketAddr {
    let line = node.log.wait_for("answering probes on udp ");
    line.split("answering probes on udp ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|addr| addr.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Waits for `child` to exit, at most [`WAIT`]; kills it and panics past that.
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {WAIT:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids of the processes (zombies included) whose parent is `parent`, from `/proc`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold anything, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children.sort_unstable();
    children
}

/// Asserts that each of `counts` (a job's completions, one a job) is 1: `what` says what
/// ran once.
pub fn assert_each_once(counts: &[AtomicU32], what: &str) {
    let counts: Vec<u32> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert!(counts.iter().all(|&c| c == 1), "{what}: {counts:?}");
}

/// The value of counter `name` (`name=N`) in a node's statistics line.
///
/// # Panics
/// When the line has no such counter.
pub fn counter(stats: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    stats
        .split_whitespace()
        .find_map(|field| field.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}
