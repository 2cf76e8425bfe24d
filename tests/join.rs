//! Nodes that join the client: the client listens (`ServerBuilder::listen`, as
//! `PP_LISTEN`), real `ppserver --join` processes started after it dial in, authenticate
//! as any node does and take jobs at once; a node that leaves is a loss and takes its row
//! back when it joins again; a node started before its clients (two of them) joins each
//! once it listens; idle connections that never authenticate do not keep a node
//! out; and a node in a network namespace that the client cannot reach at all (only the
//! node can connect out) still serves it. (`join_again.rs`: the rough edges.)
//!
//! The time from starting a joining node to its first result is printed (run with
//! `--nocapture`) and asserted only generously.

#[path = "support/joiner.rs"]
mod joiner;
#[path = "support/netns.rs"]
mod netns;
mod support;

use joiner::{
    connected_names, first_job_after_start, forget_slots, free_port, jobs_of, listening_client,
    run_jobs, Joiner, Killed,
};
use netns::OneWay;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{collect_stderr, temp_dir, wait_until, WAIT};

#[pp::parallel]
fn add_one(x: u64) -> u64 {
    x + 1
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
    forget_slots(&addr);
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
    forget_slots(&a);
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
    forget_slots(&addr);
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
    forget_slots(&client_addr.to_string());
}
