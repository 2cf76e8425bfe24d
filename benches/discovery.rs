//! Discovery benchmark: how long from a client's start, or from a node's start, until that
//! node has run the client's first job.
//!
//! Run with `cargo bench --bench discovery`; it prints Markdown tables for BENCHMARKS.md.
//!
//! * On 127.0.0.1, with unicast probes (`PP_SERVERS=*@127.0.0.1:PORT`, `ppserver -a
//!   --discovery-port PORT -b 127.0.0.1`).
//! * Between network namespaces joined by a bridge, with the defaults (`PP_SERVERS=*`,
//!   `ppserver -a`: broadcast on port 60000), when run as root with iproute2; otherwise
//!   this part says why and is skipped.
//!
//! "Client start" runs from `Server::build` to the first job's result, with the node
//! already running. "Node start" runs from spawning `ppserver` to the result of a job
//! submitted at that moment to a client that was already running with no node: process
//! start, announcement or probe, connection, authentication, the node starting its
//! workers, and the job. On 127.0.0.1 it also includes the wait for the client's next
//! unicast probe (sent every 250 ms); between namespaces the node's own announcement at
//! start is heard at once. Every node shares one program cache, filled before measuring,
//! so that no run pays the program's upload (the first row says what the upload adds).

mod common;
#[path = "../tests/support/netns.rs"]
mod netns;

use common::{median, spawn_ppserver, SECRET};
use netns::Lab;
use pp::Server;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const RUNS: usize = 7;
const WAIT: Duration = Duration::from_secs(30);

#[pp::parallel]
fn add_one(x: u64) -> u64 {
    x + 1
}

/// A `ppserver -a` started by the benchmark; killed on drop.
struct Node {
    child: Child,
    /// Its discovery address, from its log.
    discovery: SocketAddr,
}

impl Node {
    /// Starts `command` (a `ppserver` command line) and waits until it listens.
    fn start(mut command: Command, cache: &Path) -> Node {
        command.args(["-a", "-w", "1"]);
        let mut child = spawn_ppserver(command, cache);
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.split("answering probes on udp ").nth(1) {
                    let addr = rest.split(',').next().and_then(|a| a.parse().ok());
                    let _ = tx.send(addr);
                }
            }
        });
        let discovery = rx
            .recv_timeout(WAIT)
            .ok()
            .flatten()
            .expect("ppserver announces its discovery address");
        Node { child, discovery }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ppserver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ppserver"))
}

/// A `ppserver` on 127.0.0.1 answering unicast probes on `port` (0: a free one).
fn loopback_node(port: u16, cache: &Path) -> Node {
    let mut command = ppserver();
    command.args(["-p", "0", "-i", "127.0.0.1", "-b", "127.0.0.1"]);
    command.args(["--discovery-port", &port.to_string()]);
    Node::start(command, cache)
}

fn client(entry: &str) -> Server {
    Server::builder()
        .ppservers([entry])
        .secret(SECRET)
        .ncpus(0)
        .build()
        .expect("the client starts")
}

/// From the client's start to its first job's result, the node already running.
fn client_start(entry: &str) -> Duration {
    let started = Instant::now();
    let server = client(entry);
    let job = server.submit(add_one, (1,));
    assert_eq!(job.result(), Ok(2));
    started.elapsed()
}

/// From `start()` to the result of a job submitted then to `server`, once `server` has no
/// node connected.
fn node_start(server: &Server, start: impl FnOnce() -> Node) -> (Duration, Node) {
    let deadline = Instant::now() + WAIT;
    while server.active_nodes().iter().any(|n| n.connected) {
        assert!(
            Instant::now() < deadline,
            "the previous node is not seen gone"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let job = server.submit(add_one, (1,));
    let node = start();
    assert_eq!(job.result(), Ok(2));
    (started.elapsed(), node)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn row(what: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let (min, max) = (samples[0], samples[samples.len() - 1]);
    println!(
        "| {what} | {} | {} | {} | {} |",
        samples.len(),
        ms(median(samples)),
        ms(min),
        ms(max)
    );
}

fn cache_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pp-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn loopback() {
    let cache = cache_dir("discovery-lo");
    println!("### 127.0.0.1, unicast probes (`*@127.0.0.1:PORT`)\n");
    println!("| from | runs | median | min | max |");
    println!("|---|---|---|---|---|");
    let node = loopback_node(0, &cache);
    let entry = format!("*@{}", node.discovery);
    let cold = client_start(&entry); // uploads the program into the cache
    row("client start, program not cached (one run)", vec![cold]);
    row(
        "client start, node running",
        (0..RUNS).map(|_| client_start(&entry)).collect(),
    );
    drop(node);

    // A fixed discovery port, free a moment ago, so the client can probe it before the
    // node exists; each node gets a new job port, so each is a new node to the client.
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let server = client(&format!("*@127.0.0.1:{port}"));
    // Unicast probes go out every 250 ms, so a node waits for the next one: each run
    // starts its node at another point of that period (a loop that started each node
    // right after a result would always land just after a probe: the worst case).
    let samples = (0..RUNS)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(40 * i as u64 % 250));
            node_start(&server, || loopback_node(port, &cache)).0
        })
        .collect();
    row("node start, client running", samples);
    assert_eq!(server.ncpus(), 0, "every job ran on a node");
    let _ = std::fs::remove_dir_all(&cache);
    println!();
}

fn namespaces() {
    println!("### Network namespaces, broadcast (`*`, `ppserver -a` defaults)\n");
    if let Some(why) = Lab::unavailable() {
        println!("skipped: {why}\n");
        return;
    }
    let cache = cache_dir("discovery-ns");
    let mut hosts = vec!["client".to_owned(), "n0".to_owned()];
    hosts.extend((1..=RUNS).map(|i| format!("n{i}")));
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let lab = Lab::new("bench", &names);
    println!("| from | runs | median | min | max |");
    println!("|---|---|---|---|---|");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            lab.enter("client");
            let node = Node::start(lab.command("n0", env!("CARGO_BIN_EXE_ppserver")), &cache);
            let cold = client_start("*");
            row("client start, program not cached (one run)", vec![cold]);
            row(
                "client start, node running",
                (0..RUNS).map(|_| client_start("*")).collect(),
            );
            drop(node);

            // Each run starts a node on a host the client has not seen yet.
            let server = client("*");
            let mut previous = None;
            let samples = (1..=RUNS)
                .map(|i| {
                    let host = format!("n{i}");
                    let command = lab.command(&host, env!("CARGO_BIN_EXE_ppserver"));
                    drop(previous.take()); // the previous node leaves
                    let (took, node) = node_start(&server, || Node::start(command, &cache));
                    previous = Some(node);
                    took
                })
                .collect();
            row("node start, client running", samples);
            assert_eq!(server.ncpus(), 0, "every job ran on a node");
        });
    });
    let _ = std::fs::remove_dir_all(&cache);
    println!();
}

fn main() {
    println!("## Discovery: start to first job (1 worker per node)\n");
    loopback();
    namespaces();
}
