//! Statistics shared by the benchmark programs.

#![allow(dead_code)] // each benchmark uses a part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The secret of the benchmarks' nodes.
pub(crate) const SECRET: &str = "benchmark secret, long and random enough for a loopback run";

/// The median of `xs` (the upper one for an even count).
pub(crate) fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

/// The `p`-quantile of `xs` (0.5: the median, 0.99: the 99th percentile); sorts `xs`.
pub(crate) fn percentile(xs: &mut [Duration], p: f64) -> Duration {
    xs.sort_unstable();
    xs[((xs.len() as f64 * p) as usize).min(xs.len() - 1)]
}

/// The `ppserver` this benchmark started; killed on drop.
pub(crate) struct Node {
    child: Child,
    /// `host:port` it listens on.
    pub(crate) addr: String,
}

/// Starts a `ppserver` command line with the benchmarks' secret, `cache` as its cache
/// directory and its standard error piped (where it says it listens).
pub(crate) fn spawn_ppserver(mut command: Command, cache: &std::path::Path) -> Child {
    command
        .arg("--cache-dir")
        .arg(cache)
        .env("PP_SECRET", SECRET)
        .env_remove("PP_WORKER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ppserver")
}

impl Node {
    /// Starts `ppserver` on a free port of 127.0.0.1 with `workers` workers.
    pub(crate) fn start(workers: usize) -> Node {
        let cache = std::env::temp_dir().join(format!("pp-bench-cache-{}", std::process::id()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_ppserver"));
        command.args([
            "--port",
            "0",
            "--interface",
            "127.0.0.1",
            "-w",
            &workers.to_string(),
        ]);
        let mut child = spawn_ppserver(command, &cache);
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().expect("ppserver exited").expect("read stderr");
            if let Some(rest) = line.split("ppserver listening on ").nth(1) {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Node { child, addr }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// The process id, to signal it.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `name` (`KILL`, `STOP`, `CONT`) to this node.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

/// A pp server and a rayon pool with the same number of workers.
pub(crate) fn pp_and_rayon(workers: usize) -> (pp::Server, rayon::ThreadPool) {
    let server = pp::Server::builder()
        .ncpus(workers)
        .build()
        .expect("server");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .expect("rayon pool");
    (server, pool)
}
