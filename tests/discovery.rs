//! Discovery on 127.0.0.1, where broadcast does not reach other programs: nodes started
//! with `-a` answer unicast probes (`PP_SERVERS=*@127.0.0.1:PORT`), a node that starts
//! after the client or restarts is found and used, a named node is not added twice, and
//! garbage on the discovery port disturbs nothing. The broadcast form runs between network
//! namespaces in `tests/discovery_netns.rs`.

mod support;

use pp::Server;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use support::{connected, jobs_of, wait_until, Node, SECRET, WAIT};

#[pp::parallel]
fn triple(x: u64) -> u64 {
    3 * x
}

/// `ppserver` arguments for autodiscovery on loopback only: a free discovery port (or
/// `port`), announcements sent to 127.0.0.1 rather than broadcast.
fn discovery_args(port: u16) -> Vec<String> {
    [
        "-a",
        "--discovery-port",
        &port.to_string(),
        "-b",
        "127.0.0.1",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts a node with autodiscovery on 127.0.0.1 (discovery port `port`, 0 for a free one).
fn start_discoverable(workers: usize, job_port: u16, port: u16) -> Node {
    let args = discovery_args(port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start_on(job_port, workers, &args)
}

/// A client with no local worker that discovers nodes by probing `targets`, plus `named`.
fn discovering_client(targets: &[SocketAddr], named: &[&Node]) -> Server {
    let entries = targets
        .iter()
        .map(|t| format!("*@{t}"))
        .chain(named.iter().map(|n| n.name()));
    Server::builder()
        .ppservers(entries)
        .secret(SECRET)
        .ncpus(0)
        .build()
        .expect("the cluster client starts")
}

/// A UDP port that was free a moment ago, for a node started later.
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port");
    socket.local_addr().expect("local address").port()
}

fn run_jobs(server: &Server, n: u64) {
    let jobs: Vec<_> = (0..n).map(|i| server.submit(triple, (i,))).collect();
    for (i, job) in (0..n).zip(jobs) {
        assert_eq!(job.result(), Ok(3 * i));
    }
}

#[test]
fn unicast_discovery_finds_two_nodes_and_runs_jobs_on_both() {
    let (a, b) = (start_discoverable(2, 0, 0), start_discoverable(1, 0, 0));
    let server = discovering_client(
        &[support::discovery_addr(&a), support::discovery_addr(&b)],
        &[],
    );
    wait_until(&server, "both nodes discovered and connected", || {
        connected(&server, &a) && connected(&server, &b)
    });
    let mut nodes = server.active_nodes();
    nodes.sort_by_key(|n| n.workers);
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert_eq!((nodes[0].workers, nodes[1].workers), (1, 2), "{nodes:?}");
    run_jobs(&server, 200);
    server.wait();
    assert!(jobs_of(&server, &a.name()) > 0 && jobs_of(&server, &b.name()) > 0);
    assert_eq!(jobs_of(&server, "local"), 0);
}

#[test]
fn a_node_started_after_the_client_is_found_and_a_restarted_one_rejoins() {
    let port = free_udp_port();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let server = discovering_client(&[target], &[]);
    assert!(server.active_nodes().is_empty(), "nothing to find yet");

    let first = start_discoverable(1, 0, port);
    wait_until(&server, "the late node is discovered", || {
        connected(&server, &first)
    });
    run_jobs(&server, 20);
    let job_port = first.addr.port();
    drop(first); // killed and reaped
    wait_until(&server, "the killed node is seen lost", || {
        !server.active_nodes()[0].connected
    });

    let second = start_discoverable(1, job_port, port);
    wait_until(&server, "the restarted node rejoins", || {
        connected(&server, &second)
    });
    run_jobs(&server, 20);
    let nodes = server.active_nodes();
    assert_eq!(nodes.len(), 1, "one row for one address: {nodes:?}");
    assert_eq!((nodes[0].connections, nodes[0].losses), (2, 1), "{nodes:?}");
    assert_eq!(jobs_of(&server, &second.name()), 40);
}

#[test]
fn a_named_node_that_also_answers_probes_is_not_added_twice() {
    let (named, other) = (start_discoverable(1, 0, 0), start_discoverable(1, 0, 0));
    let server = discovering_client(
        &[
            support::discovery_addr(&named),
            support::discovery_addr(&other),
        ],
        &[&named],
    );
    wait_until(&server, "the discovered node is connected", || {
        connected(&server, &other) && connected(&server, &named)
    });
    // Probes to both go out together, again and again: by now the named node has
    // answered several.
    run_jobs(&server, 50);
    let nodes = server.active_nodes();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
}

#[test]
fn garbage_on_the_discovery_port_does_not_disturb_a_run() {
    let node = start_discoverable(2, 0, 0);
    let port = support::discovery_addr(&node);
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        b"hello".to_vec(),
        b"PPDS".to_vec(),
        b"PPDS\x09\x01\x00\x00".to_vec(), // another version
        b"PPDS\x01\x07\x00\x00".to_vec(), // unknown kind
        b"PPDS\x01\x01\x00\x00trailing".to_vec(),
        b"PPDS\x01\x02\x00\x00\x01".to_vec(), // truncated announcement
        vec![0xff; 1400],
    ];
    let send_all = || {
        for datagram in &garbage {
            sender.send_to(datagram, port).expect("send garbage");
        }
    };
    send_all();
    let server = discovering_client(&[port], &[]);
    wait_until(&server, "the node is discovered despite garbage", || {
        connected(&server, &node)
    });
    let jobs: Vec<_> = (0..100).map(|i| server.submit(triple, (i,))).collect();
    send_all();
    for (i, job) in (0..100).zip(jobs) {
        assert_eq!(job.result(), Ok(3 * i));
    }
    // Every garbage datagram was counted (loopback does not lose them); the node's
    // statistics say so on SIGUSR1.
    let expected = format!("discovery_ignored={}", 2 * garbage.len());
    let deadline = std::time::Instant::now() + WAIT;
    while !node.log.contains(&expected) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {expected} in the statistics; log:\n{}",
            node.log.text()
        );
        node.signal("USR1");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(connected(&server, &node), "{:?}", server.active_nodes());
}
