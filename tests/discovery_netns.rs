//! Discovery by broadcast, as on a real network: hosts in network namespaces joined by a
//! bridge (see `support/netns.rs`), `ppserver -a` with its defaults on some, a client with
//! `PP_SERVERS=*` on another. The client finds the nodes, runs jobs on them, finds a node
//! started after it, shrugs off garbage broadcast to the discovery port, and the subnet
//! form finds the same nodes. On a subnet with no default route (`255.255.255.255`
//! unreachable) discovery still works, through the interfaces' broadcast addresses; a
//! client that finds no node says so, and where it looked, on its standard error (a child
//! process: this test binary run again in a namespace, in the role of
//! `lonely_client_role`).
//!
//! Needs root and `ip` (iproute2); without them the test says why and is skipped.

#[path = "support/netns.rs"]
mod netns;
mod support;

use netns::Lab;
use pp::Server;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::{as_ppserver, jobs_of, temp_dir, wait_until, Node, SECRET};

#[pp::parallel]
fn add_one(x: u64) -> u64 {
    x + 1
}

/// A `ppserver -a` in a lab host, with every default (job and discovery port 60000,
/// broadcast to 255.255.255.255): a [`Node`] named by its lab address.
fn lab_node(lab: &Lab, host: &str, workers: usize) -> Node {
    let cache_dir = temp_dir("netns-cache");
    let mut command = lab.command(host, env!("CARGO_BIN_EXE_ppserver"));
    as_ppserver(&mut command)
        .args(["-a", "-w", &workers.to_string(), "--cache-dir"])
        .arg(&cache_dir)
        .env("PP_SECRET", SECRET);
    let node = Node::spawn_at(&mut command, (lab.ip(host), 60000).into(), cache_dir);
    node.log.wait_for("answering probes on udp 0.0.0.0:60000");
    node
}

fn connected(server: &Server, name: &str) -> bool {
    server
        .active_nodes()
        .iter()
        .any(|n| n.address == name && n.connected)
}

fn run_jobs(server: &Server, n: u64) {
    let jobs: Vec<_> = (0..n).map(|i| server.submit(add_one, (i,))).collect();
    for (i, job) in (0..n).zip(jobs) {
        assert_eq!(job.result(), Ok(i + 1));
    }
}

fn discovering_client(entry: &str) -> Server {
    let started = Instant::now();
    let server = Server::builder()
        .ppservers([entry])
        .secret(SECRET)
        .ncpus(0)
        .build()
        .expect("the cluster client starts");
    // Not a timing assertion: discovery must not make `build` wait for anything.
    assert!(started.elapsed() < support::WAIT);
    server
}

#[test]
fn broadcast_discovery_between_namespaces_finds_nodes_started_before_and_after_the_client() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}; the broadcast discovery test needs root and iproute2");
        return;
    }
    let lab = Lab::new("bcast", &["client", "n1", "n2", "n3"]);
    let n1 = lab_node(&lab, "n1", 2);
    let n2 = lab_node(&lab, "n2", 1);

    // The client lives on a thread of its own inside the client's namespace.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lab.enter("client");
                let server = discovering_client("*");
                wait_until(&server, "the two running nodes are discovered", || {
                    connected(&server, &n1.name()) && connected(&server, &n2.name())
                });
                run_jobs(&server, 200);
                assert!(jobs_of(&server, &n1.name()) > 0, "{}", server.stats());
                assert!(jobs_of(&server, &n2.name()) > 0, "{}", server.stats());

                // Garbage broadcast to the discovery port reaches every node and the
                // client's listener: ignored.
                let noise = UdpSocket::bind((lab.ip("client"), 0)).expect("bind");
                noise.set_broadcast(true).expect("broadcast");
                let to = SocketAddr::from((lab.broadcast(), 60000));
                for garbage in [
                    &b"PPDS"[..],
                    b"PPDS\x07\x02\x00\x00",
                    b"not pp",
                    &[0u8; 700],
                ] {
                    noise.send_to(garbage, to).expect("send garbage");
                }
                run_jobs(&server, 50);

                // A node started now announces itself at start and is used.
                let n3 = lab_node(&lab, "n3", 1);
                wait_until(&server, "the late node is discovered", || {
                    connected(&server, &n3.name())
                });
                let before = jobs_of(&server, &n3.name());
                let deadline = Instant::now() + support::WAIT;
                while jobs_of(&server, &n3.name()) == before {
                    assert!(
                        Instant::now() < deadline,
                        "n3 ran no job\n{}",
                        server.stats()
                    );
                    run_jobs(&server, 50);
                }
                let mut names: Vec<String> = server
                    .active_nodes()
                    .into_iter()
                    .map(|n| n.address)
                    .collect();
                names.sort();
                assert_eq!(names, [n1.name().as_str(), &n2.name(), &n3.name()]);
                assert_eq!(jobs_of(&server, "local"), 0);
                drop(server);

                // The subnet form finds the same three.
                let server = discovering_client("10.77.0.*");
                wait_until(&server, "the subnet form finds all three", || {
                    [&n1, &n2, &n3]
                        .iter()
                        .all(|n| connected(&server, &n.name()))
                });
                run_jobs(&server, 30);
                drop(server);
                drop(n3);
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
    // Each node counted the four garbage datagrams (a private bridge loses none).
    for node in [&n1, &n2] {
        let deadline = Instant::now() + support::WAIT;
        while !node.log.contains("discovery_ignored=4") {
            assert!(
                Instant::now() < deadline,
                "no discovery_ignored=4 in the statistics; log:\n{}",
                node.log.text()
            );
            let status = std::process::Command::new("kill")
                .args(["-USR1", &node.pid().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn broadcast_discovery_works_on_a_subnet_without_a_default_route() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}; the broadcast discovery test needs root and iproute2");
        return;
    }
    // 255.255.255.255 has no route here: only the hosts' subnet, 10.77.0.0/24, is.
    let lab = Lab::without_default_route("noroute", &["client", "n1"]);
    let n1 = lab_node(&lab, "n1", 2);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lab.enter("client");
                let started = Instant::now();
                let server = discovering_client("*");
                wait_until(
                    &server,
                    "the node is discovered with no default route",
                    || connected(&server, &n1.name()),
                );
                eprintln!("discovered and connected in {:?}", started.elapsed());
                run_jobs(&server, 100);
                assert_eq!(jobs_of(&server, &n1.name()), 100, "{}", server.stats());
                assert_eq!(jobs_of(&server, "local"), 0, "{}", server.stats());
                eprintln!("{}", server.stats());
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
    // The node announces to its subnet too, and its failing limited broadcast is no news.
    let announcing = n1.log.wait_for("announcing to ");
    assert!(
        announcing.contains("10.77.0.255:60000 (eth0)"),
        "{announcing}"
    );
    assert!(!n1.log.contains("cannot announce"), "{}", n1.log.text());
    eprintln!("the node said: {announcing}");
}

/// Set (to a number of milliseconds) in the environment of `lonely_client_role`'s process:
/// how long it lives from its start.
const LONELY_CLIENT_LIFE: &str = "PP_TEST_LONELY_CLIENT_MS";

/// The jobs the lonely client runs.
const LONELY_JOBS: u64 = 10;

/// Not a test of its own: the client process of the tests below, run in a namespace where
/// no node answers. It looks for nodes with `*`, runs jobs (locally, once it falls back)
/// and stays alive for the time asked, so that its discovery probes several rounds.
#[test]
#[ignore = "a role of the tests below, run in a child process"]
fn lonely_client_role() {
    let Ok(life) = std::env::var(LONELY_CLIENT_LIFE) else {
        return;
    };
    let life = Duration::from_millis(life.parse().expect("milliseconds"));
    let started = Instant::now();
    let server = Server::builder()
        .ppservers(["*"])
        .secret(SECRET)
        .ncpus(0)
        .build()
        .expect("the cluster client starts");
    run_jobs(&server, LONELY_JOBS);
    std::thread::sleep(life.saturating_sub(started.elapsed()));
    println!(
        "lonely client: {} jobs run locally",
        jobs_of(&server, "local")
    );
}

/// Runs `lonely_client_role` through `command` (`ip netns exec NS`), living `life`; returns
/// its standard output and standard error.
fn run_lonely_client(mut command: std::process::Command, life: Duration) -> (String, String) {
    support::role::as_role(&mut command, "lonely_client_role")
        .env(LONELY_CLIENT_LIFE, life.as_millis().to_string());
    let ran = support::role::run(&mut command);
    assert!(
        ran.status.success(),
        "{}\n{}\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    (ran.stdout, ran.stderr)
}

/// The lines of `text` that start with `pp: `: pp's own messages.
fn pp_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("pp: ")).collect()
}

#[test]
fn a_client_that_finds_no_node_says_where_it_looked() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}; the broadcast discovery test needs root and iproute2");
        return;
    }
    let lab = Lab::without_default_route("lonely", &["client"]);
    let exe = std::env::current_exe().expect("this test binary");
    let exe = exe.to_str().expect("a UTF-8 path");
    let (stdout, stderr) = run_lonely_client(lab.command("client", exe), Duration::ZERO);
    let expected = format!("lonely client: {LONELY_JOBS} jobs run locally");
    assert!(stdout.contains(&expected), "{stdout}");
    let said = pp_lines(&stderr);
    assert_eq!(said.len(), 1, "one line, and no false alarm: {said:#?}");
    // The limited broadcast is unreachable here, but the interface's broadcast address
    // went out: that failure is no news.
    let (to_all, to_subnet) = (
        "255.255.255.255:60000 (failed: network unreachable)",
        "10.77.0.255:60000 (eth0)",
    );
    assert!(
        said[0].starts_with("pp: discovery (`*`) found no node in 2s")
            && said[0].contains(&format!("probes went to {to_all}, {to_subnet}"))
            && said[0].contains("local workers"),
        "{}",
        said[0]
    );
    eprintln!("the client said:\n{stderr}");
}

#[test]
fn a_send_that_fails_is_said_once_however_many_rounds() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}; the broadcast discovery test needs root and iproute2");
        return;
    }
    // A namespace with loopback alone: no route for 255.255.255.255, no interface to
    // broadcast on instead.
    let lab = Lab::without_default_route("isolated", &[]);
    let exe = std::env::current_exe().expect("this test binary");
    let exe = exe.to_str().expect("a UTF-8 path");
    // Broadcast probes go out every 2 s: by 4.5 s, three rounds have failed.
    let (stdout, stderr) =
        run_lonely_client(lab.isolated_command(exe), Duration::from_millis(4500));
    assert!(stdout.contains("jobs run locally"), "{stdout}");
    let said = pp_lines(&stderr);
    let failures: Vec<&&str> = said
        .iter()
        .filter(|l| l.contains("cannot send probes to 255.255.255.255:60000"))
        .collect();
    assert_eq!(failures.len(), 1, "said once: {said:#?}");
    assert!(
        failures[0].contains(": no default route, and no broadcast-capable IPv4 interface is up"),
        "{}",
        failures[0]
    );
    assert!(
        said.iter().any(|l| l.contains(
            "found no node in 2s; probes went to \
             255.255.255.255:60000 (failed: network unreachable):"
        )),
        "{said:#?}"
    );
    assert_eq!(said.len(), 2, "{said:#?}");
    eprintln!("the client said:\n{stderr}");
}
