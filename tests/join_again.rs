//! Nodes that join the client, the rough edges: a node killed while its connection stays
//! open (a relay keeps the client's side of it, as when a host is gone) and started again
//! takes its old row at once, and the jobs the old session held complete; joined nodes'
//! platforms are recorded; two running nodes that give one name from one address are
//! listed apart once one has replaced the other; a client told to listen on any port
//! (`PP_LISTEN=127.0.0.1:0`) says the port, and a node that joins at once, while the
//! client is still starting (the port is bound before the program is hashed), is never
//! refused and runs every job.

#[path = "support/joiner.rs"]
mod joiner;
mod support;

use joiner::{
    connected_names, forget_slots, free_port, jobs_of, listening_client, row_of, run_jobs, Joiner,
    Killed,
};
use pp::{Platform, Server};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::role::{read_in_background, role_command};
use support::{collect_stderr, temp_dir, wait_bounded, wait_until, SECRET};

#[pp::parallel]
fn add_one(x: u64) -> u64 {
    x + 1
}

#[pp::parallel]
fn slow_add_one(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    x + 1
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
    forget_slots(&relay.addr);
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
        .env("PP_LOG", "debug")
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
    // Bound before the program is hashed (which takes a while): a node may join at once.
    let hashed = log.wait_for("this program is hashed");
    let text = log.text();
    let (bound_at, hashed_at) = (text.find(&line), text.find(&hashed));
    assert!(bound_at < hashed_at, "bound after hashing:\n{text}");
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
    forget_slots(&format!("127.0.0.1:{port}"));
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
