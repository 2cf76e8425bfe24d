//! Nodes that join the client: the client listens (`ServerBuilder::listen`, as
//! `PP_LISTEN`), real `ppserver --join` processes started after it dial in, authenticate
//! as any node does and take jobs at once; a node that leaves is a loss and takes its row
//! back when it joins again; a node started before its clients (two of them) joins each
//! once it listens; idle connections that never authenticate do not keep a node
//! out; and a node in a network namespace that the client cannot reach at all (only the
//! node can connect out) still serves it.
//!
//! A node killed while its connection stays open (a relay keeps the client's side of it,
//! as when a host is gone) and started again takes its old row at once, and the jobs the
//! old session held complete; joined nodes' platforms are recorded. A client told to
//! listen on any port (`PP_LISTEN=127.0.0.1:0`) says the port, and a node that joins at
//! once, while the client is still starting, is never refused and runs every job.
//!
//! Two running nodes that give one name from one address are listed apart once one has
//! replaced the other.
//!
//! Each client's joining nodes take their join slots (their names) in a directory of
//! their own (`TMPDIR`), so that nodes of other tests do not shift their names.
//!
//! The time from starting a joining node to its first result is printed (run with
//! `--nocapture`) and asserted only generously.

#[path = "support/netns.rs"]
mod netns;
mod support;

use netns::OneWay;
use pp::{Platform, Server};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::role::{read_in_background, role_command};
use support::{collect_stderr, temp_dir, wait_bounded, wait_until, Log, SECRET, WAIT};

#[pp::parallel]
fn add_one(x: u64) -> u64 {
    x + 1
}

#[pp::parallel]
fn slow_add_one(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    x + 1
}

/// A `ppserver --join` process; killed and reaped on drop.
struct Joiner {
    child: Child,
    log: Arc<Log>,
    started: Instant,
}

impl Joiner {
    /// `ppserver --join client -w workers` with the test secret and `cache` as its cache.
    fn start(client: &str, workers: usize, cache: &Path) -> Joiner {
        Joiner::spawn(
            Command::new(env!("CARGO_BIN_EXE_ppserver")),
            client,
            workers,
            cache,
            &[],
        )
    }

    fn spawn(
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
fn slots_of(client: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pp-test-{}-join-slots-{}",
        std::process::id(),
        client.replace([':', '.'], "-")
    ));
    std::fs::create_dir_all(&dir).expect("create the nodes' temporary directory");
    dir
}

impl Drop for Joiner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port of 127.0.0.1 (free a moment ago).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A client listening at `listen` for nodes, with no local worker and no fallback for
/// [`WAIT`].
fn listening_client(listen: &str) -> Server {
    Server::builder()
        .listen(listen)
        .secret(SECRET)
        .ncpus(0)
        .fallback_wait(WAIT)
        .build()
        .expect("the client starts listening")
}

/// The names of the nodes connected now.
fn connected_names(server: &Server) -> Vec<String> {
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
fn jobs_of(server: &Server, name: &str) -> u64 {
    server
        .stats()
        .executors
        .iter()
        .find(|e| e.name == name)
        .map_or(0, |e| e.jobs)
}

/// Submits `n` jobs, checks every result, returns the time to the first one.
fn run_jobs(server: &Server, n: u64) -> Duration {
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
fn first_job_after_start(server: &Server, node: &Joiner) -> Duration {
    let job = server.submit(add_one, (41,));
    assert_eq!(job.result(), Ok(42));
    node.started.elapsed()
}

#[test]
fn nodes_started_after_the_client_join_and_run_jobs_from_the_first() {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = listening_client(&addr);
    let cache = temp_dir("join-cache");

    // First join: the node has no copy of the program, so it is uploaded.
    let first = Joiner::start(&addr, 2, &cache);
    let cold = first_job_after_start(&server, &first);
    first.log.wait_for("ppserver joining");
    let names = connected_names(&server);
    assert_eq!(names.len(), 1, "{names:?}");
    let host = names[0].clone();
    run_jobs(&server, 200);
    assert_eq!(jobs_of(&server, &host), 201, "{}", server.stats());

    // A second node of the same host joins beside it, as `host#2`, and shares the work.
    let second_cache = temp_dir("join-cache-2");
    let second = Joiner::start(&addr, 1, &second_cache);
    wait_until(&server, "the second node joins", || {
        connected_names(&server).len() == 2
    });
    let second_name = format!("{host}#2");
    assert!(connected_names(&server).contains(&second_name));
    for _ in 0..50 {
        run_jobs(&server, 40);
        if jobs_of(&server, &second_name) > 0 {
            break;
        }
    }
    assert!(jobs_of(&server, &second_name) > 0, "{}", server.stats());

    // The first node leaves: a loss, its row stays, not connected.
    drop(first);
    wait_until(&server, "the first node is lost", || {
        connected_names(&server) == [second_name.clone()]
    });
    run_jobs(&server, 20);
    let row = server
        .active_nodes()
        .into_iter()
        .find(|n| n.address == host)
        .expect("the first node's row");
    assert!(!row.connected && row.losses == 1, "{row:?}");

    // A node joins again with the program cached: it takes the free row back, and its
    // first job comes quickly.
    drop(second);
    let again = Joiner::start(&addr, 2, &cache);
    let warm = first_job_after_start(&server, &again);
    let row = server
        .active_nodes()
        .into_iter()
        .find(|n| n.address == host)
        .expect("the row");
    assert!(row.connected && row.connections == 2, "{row:?}");
    eprintln!(
        "join: first job {cold:?} after starting a node that uploads the program, {warm:?} \
         after starting one that has it cached"
    );
    assert!(warm < WAIT, "{warm:?}");
    drop(again);
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::remove_dir_all(&second_cache);
}

#[test]
fn a_node_started_before_its_clients_joins_each_once_it_listens() {
    let (a, b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let cache = temp_dir("join-early");
    let node = Joiner::spawn(
        Command::new(env!("CARGO_BIN_EXE_ppserver")),
        &a,
        1,
        &cache,
        &["--join", &b],
    );
    // Nobody listens yet: the node says so once per client and keeps dialing.
    node.log
        .wait_for(&format!("cannot join client {a}: connection refused"));
    node.log
        .wait_for(&format!("cannot join client {b}: connection refused"));
    let first = listening_client(&a);
    run_jobs(&first, 20);
    let second = listening_client(&b);
    run_jobs(&second, 20);
    assert_eq!(connected_names(&first).len(), 1);
    assert_eq!(connected_names(&second).len(), 1);
    node.log.wait_for(&format!("client {a} reached again"));
    drop(node);
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn idle_connections_and_wrong_secrets_do_not_keep_a_node_out() {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = listening_client(&addr);
    // 200 connections that never answer the handshake, from the node's own address: the
    // client holds at most 64 in their handshake and the newest take the oldest's place.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let cache = temp_dir("join-flood");
    // A node with another secret is refused; it keeps trying, harmlessly.
    let wrong = Command::new(env!("CARGO_BIN_EXE_ppserver"))
        .args(["--join", &addr, "-w", "1", "--cache-dir"])
        .arg(&cache)
        .env("PP_SECRET", "another secret, long and varied enough")
        .env_remove("PP_WORKER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ppserver");
    let mut wrong = Killed(wrong);
    let wrong_log = collect_stderr(&mut wrong.0);
    let node = Joiner::start(&addr, 1, &cache);
    run_jobs(&server, 50);
    assert_eq!(
        connected_names(&server).len(),
        1,
        "{:?}",
        server.active_nodes()
    );
    wrong_log.wait_for("authentication failed");
    drop(idle);
    drop(node);
    let _ = std::fs::remove_dir_all(&cache);
}

/// A relay in front of the client, for nodes to join through. When a node's side closes,
/// the relay keeps the client's side open and silent, as when the node's host is gone:
/// the client sees no end of that connection.
struct Relay {
    addr: String,
    /// The client's side of every connection, kept open to the end of the test.
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(client: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("address").to_string();
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (client, keep) = (client.to_owned(), Arc::clone(&held));
        std::thread::spawn(move || {
            for node_side in listener.incoming() {
                let Ok(node_side) = node_side else { return };
                let Ok(client_side) = TcpStream::connect(&client) else {
                    continue;
                };
                keep.lock()
                    .unwrap()
                    .push(client_side.try_clone().expect("clone"));
                let (mut from, mut to) = (node_side.try_clone().expect("clone"), client_side);
                let mut back = to.try_clone().expect("clone");
                // Each copy ends with its reading side or a failed write; the client's side
                // stays open through its clone in `held`.
                std::thread::spawn(move || std::io::copy(&mut from, &mut to));
                let mut node_side = node_side;
                std::thread::spawn(move || std::io::copy(&mut back, &mut node_side));
            }
        });
        Relay { addr, _held: held }
    }
}

/// The row of `name` among the nodes.
fn row_of(server: &Server, name: &str) -> pp::NodeStatus {
    server
        .active_nodes()
        .into_iter()
        .find(|n| n.address == name)
        .unwrap_or_else(|| panic!("no row {name} in {:?}", server.active_nodes()))
}

#[test]
fn a_node_started_again_while_its_old_connection_looks_open_takes_its_place() {
    let addr = format!("127.0.0.1:{}", free_port());
    // A silent node is lost only after a minute, and jobs run nowhere else meanwhile: the
    // old session must end because the node joined again, not by silence.
    let server = Server::builder()
        .listen(&addr)
        .secret(SECRET)
        .ncpus(0)
        .fallback_wait(Duration::from_secs(60))
        .liveness_timeout(Duration::from_secs(60))
        .build()
        .expect("the client starts listening");
    let relay = Relay::start(&addr);
    let cache = temp_dir("join-again");
    let first = Joiner::start(&relay.addr, 2, &cache);
    run_jobs(&server, 20);
    let names = connected_names(&server);
    assert_eq!(names.len(), 1, "{names:?}");
    let host = names[0].clone();
    // Its hello said what it runs.
    assert_eq!(row_of(&server, &host).platform, Some(Platform::this()));

    // Slow jobs, some of them on the node when it is killed; its connection stays open.
    let jobs: Vec<_> = (0..8).map(|i| server.submit(slow_add_one, (i,))).collect();
    wait_until(&server, "jobs on the node", || {
        server.stats().active_jobs > 0
    });
    drop(first);
    let again = Joiner::start(&relay.addr, 2, &cache);
    for (i, job) in (0..8).zip(jobs) {
        assert_eq!(job.result(), Ok(i + 1), "{}", server.stats());
    }
    again.log.wait_for("joined client");
    let nodes = server.active_nodes();
    assert_eq!(nodes.len(), 1, "one row, its name kept: {nodes:?}");
    let row = row_of(&server, &host);
    assert!(
        row.connected && row.connections == 2 && row.losses == 1,
        "{row:?}"
    );
    let why = row.last_failure.map(|f| f.to_string()).unwrap_or_default();
    assert!(why.contains("joined again"), "{why}");
    run_jobs(&server, 20);
    drop(again);
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn two_running_nodes_giving_one_name_are_listed_apart() {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = listening_client(&addr);
    // Two temporary directories: each node takes the first join slot of its own, so both
    // call themselves by the host name, from one address (two hosts of one name behind
    // one NAT address). The second replaces the first, which joins again at once and is
    // then listed apart.
    let (cache_a, cache_b) = (temp_dir("join-twin-a"), temp_dir("join-twin-b"));
    let (tmp_a, tmp_b) = (temp_dir("join-twin-tmp-a"), temp_dir("join-twin-tmp-b"));
    let twin = |cache: &Path, tmp: &Path| {
        std::fs::create_dir_all(tmp).expect("create a temporary directory");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ppserver"));
        command.env("TMPDIR", tmp);
        Joiner::spawn(command, &addr, 1, cache, &[])
    };
    let a = twin(&cache_a, &tmp_a);
    run_jobs(&server, 10);
    let b = twin(&cache_b, &tmp_b);
    wait_until(&server, "both nodes listed apart and connected", || {
        connected_names(&server).len() == 2
    });
    let names = connected_names(&server);
    assert_eq!(names[1], format!("{}#2", names[0]), "{names:?}");
    run_jobs(&server, 50);
    // Listed apart, they stay so: no more losses.
    let losses: u32 = server.active_nodes().iter().map(|n| n.losses).sum();
    assert_eq!(losses, 1, "{:?}", server.active_nodes());
    drop((a, b));
    for dir in [cache_a, cache_b, tmp_a, tmp_b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_client_on_any_port_says_it_and_a_node_joining_at_once_runs_its_jobs() {
    let mut child = role_command("any_port_client_role")
        .env("PP_LISTEN", "127.0.0.1:0")
        .env("PP_SECRET", SECRET)
        .env("PP_NCPUS", "0")
        .env("PP_FALLBACK_WAIT", "60")
        .spawn()
        .expect("start the client");
    let stdout = read_in_background(child.stdout.take().map(|s| Box::new(s) as _));
    let log = collect_stderr(&mut child);
    let child = Killed(child);
    // Said as soon as the port is bound, before the client has hashed its program.
    let line = log.wait_for("listening for nodes that join on 127.0.0.1:");
    let port: u16 = line
        .split("on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    assert!(
        line.contains(&format!("ppserver --join 127.0.0.1:{port}")),
        "{line}"
    );
    let cache = temp_dir("join-any-port");
    let node = Joiner::start(&format!("127.0.0.1:{port}"), 1, &cache);
    let mut child = child;
    let status = wait_bounded(&mut child.0);
    let out = stdout.join().expect("the client's output");
    assert!(
        status.success() && out.contains("ROLE OK"),
        "{status}\nstdout:\n{out}\nstderr:\n{}",
        log.text()
    );
    assert!(
        out.contains(&format!("listen address 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(
        !node.log.contains("cannot join client"),
        "the node was refused: {}",
        node.log.text()
    );
    eprintln!("{}", line.trim());
    drop(node);
    let _ = std::fs::remove_dir_all(&cache);
}

/// The client of `a_client_on_any_port_says_it_and_a_node_joining_at_once_runs_its_jobs`,
/// from its environment (`PP_LISTEN=127.0.0.1:0`, `PP_NCPUS=0`): every job runs on the
/// node that joins.
#[test]
#[ignore = "a role, run by a_client_on_any_port_says_it_and_a_node_joining_at_once_runs_its_jobs"]
fn any_port_client_role() {
    if std::env::var_os("PP_LISTEN").is_none() {
        eprintln!("not run as a role: nothing to do");
        return;
    }
    let server = Server::new().expect("the client starts");
    let addr = server.listen_address().expect("the client listens");
    println!("listen address {addr}");
    let jobs: Vec<_> = (0..50).map(|i| server.submit(add_one, (i,))).collect();
    for (i, job) in (0..50).zip(jobs) {
        assert_eq!(job.result(), Ok(i + 1));
    }
    assert_eq!(jobs_of(&server, "local"), 0, "{}", server.stats());
    println!("ROLE OK");
}

/// A child process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_node_the_client_cannot_reach_joins_it_from_its_namespace() {
    if let Some(why) = netns::Lab::unavailable() {
        eprintln!("skipped: {why}; the one-way join test needs root and iproute2");
        return;
    }
    let net = OneWay::new("join");
    let client_addr = SocketAddr::from((net.client_ip(), OneWay::CLIENT_PORT));
    let node_addr = SocketAddr::from((net.node_ip(), 60000));
    let cache: PathBuf = temp_dir("join-netns");
    // The node listens too (-p), so that there is something the client could dial.
    let node = Joiner::spawn(
        net.node_command(env!("CARGO_BIN_EXE_ppserver")),
        &client_addr.to_string(),
        2,
        &cache,
        &["-p", "60000"],
    );
    node.log.wait_for("ppserver listening on 0.0.0.0:60000");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                net.enter_client();
                // The client cannot open a connection to the node: no route.
                let dialed = TcpStream::connect_timeout(&node_addr, Duration::from_secs(2));
                assert!(
                    dialed.is_err(),
                    "the node must be unreachable from the client"
                );
                let server = listening_client(&client_addr.to_string());
                let first = run_jobs(&server, 100);
                let names = connected_names(&server);
                assert_eq!(names.len(), 1, "{names:?}");
                assert_eq!(jobs_of(&server, &names[0]), 100, "{}", server.stats());
                eprintln!("join through a one-way network: first result after {first:?}");
            })
            .join()
            .expect("the client's thread");
    });
    drop(node);
    let _ = std::fs::remove_dir_all(&cache);
}
