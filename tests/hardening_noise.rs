//! Issue #20, rows 7 and 9 (see SECURITY.md): what someone without the secret gets out of
//! a node by making noise.
//!
//! - Failed connections do not amplify into the log: 2,000 connections with a wrong magic
//!   from one address leave a handful of lines, and one line that counts the rest.
//! - A prober flooding the discovery port from one address does not starve a real client
//!   probing from another, and an answer to a probe carries no name (at most 3 times the
//!   probe's size).
//!
//! Each test starts its own real `ppserver` on 127.0.0.1. The flooding prober sends from
//! 127.0.0.2 (Linux answers for all of 127.0.0.0/8 on the loopback interface).

#![cfg(target_os = "linux")]

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pp_net::discovery::Datagram;
use support::{Node, WAIT};

/// Failing connections the log test opens, one after the other.
const FAILED_CONNECTIONS: usize = 2000;

/// What the log test's connections send: not the pp protocol.
const NOT_PP: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

/// The words of the line each failed connection of the log test causes.
const FAILURE_LINE: &str = "is not speaking the pp protocol";

/// Lines in full that the log may hold for one address's failures: the promise is "a
/// few, then a count" (SECURITY.md), not this exact figure.
const FULL_LINES_BOUND: usize = 20;

/// Bytes the whole run may add to the log; before the limit it was about 300 KB.
const LOG_BYTES_BOUND: usize = 16 * 1024;

#[test]
fn failed_handshakes_from_one_address_are_counted_not_logged_one_by_one() {
    let mut node = Node::start(1, &[]);
    let before = node.log.text().len();
    for i in 0..FAILED_CONNECTIONS {
        let mut stream = TcpStream::connect(node.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        // The node may hang up before all is written: that is fine.
        let _ = stream.write_all(NOT_PP);
        let mut answer = Vec::new();
        if let Err(error) = stream.read_to_end(&mut answer) {
            // A reset is the node closing too; only a timeout is a failure.
            assert!(
                !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "connection {i}: the node did not close it within {WAIT:?}"
            );
        }
    }
    // Stopping the node writes what it still counts, after every session has ended.
    node.signal("TERM");
    node.wait_exit();
    node.log.wait_for("stopped; statistics");
    let log = node.log.text();
    let added = log.len() - before;
    let full = node.log.count(FAILURE_LINE);
    eprintln!(
        "{FAILED_CONNECTIONS} failed connections: {full} lines in full, {added} bytes of log"
    );
    assert!(
        full <= FULL_LINES_BOUND,
        "{full} lines in full for {FAILED_CONNECTIONS} failed connections from one address \
         ({added} bytes of log)"
    );
    assert!(full >= 1, "the first failure is logged in full:\n{log}");
    let summary = node
        .log
        .matching("failed handshakes from 127.0.0.1")
        .pop()
        .unwrap_or_else(|| panic!("no line counts the failures not logged:\n{log}"));
    eprintln!("{summary}");
    let counted: usize = summary
        .split_whitespace()
        .zip(summary.split_whitespace().skip(1))
        .find(|(_, next)| *next == "more")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {summary:?}"));
    assert_eq!(
        full + counted,
        FAILED_CONNECTIONS,
        "every failure is logged or counted: {summary:?}"
    );
    assert!(
        added <= LOG_BYTES_BOUND,
        "{added} bytes of log for {FAILED_CONNECTIONS} failed connections:\n{log}"
    );
}

/// Probes the real client sends, one every [`REAL_PROBE_PERIOD`].
const REAL_PROBES: u32 = 40;
const REAL_PROBE_PERIOD: Duration = Duration::from_millis(100);

/// The flood: [`FLOOD_BURST`] probes every [`FLOOD_PAUSE`], about 2,000 a second (the
/// issue measured 1,600), paced so that the node's socket buffer is not what drops them.
const FLOOD_BURST: u64 = 20;
const FLOOD_PAUSE: Duration = Duration::from_millis(10);

/// Answers a node gives one source address per second, at most (SECURITY.md).
const ANSWERS_PER_SOURCE_PER_SECOND: u64 = 20;

#[test]
fn a_flooding_prober_does_not_starve_a_real_one_and_answers_are_small() {
    let node = Node::start(1, &["-a", "--discovery-port", "0", "-b", "127.0.0.1"]);
    let target = support::discovery_addr(&node);
    let probe = Datagram::Probe.encode();
    let stop = Arc::new(AtomicBool::new(false));

    let flooder = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2 (loopback)");
    let flood_answers = Arc::new(AtomicU64::new(0));
    let flood_reader = {
        let socket = flooder.try_clone().expect("clone the socket");
        let (answers, stop) = (Arc::clone(&flood_answers), Arc::clone(&stop));
        std::thread::spawn(move || {
            count_answers(&socket, &stop, |_| {
                answers.fetch_add(1, Ordering::Relaxed);
            })
        })
    };
    let flood_started = Instant::now();
    let flood = {
        let (stop, probe) = (Arc::clone(&stop), probe.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..FLOOD_BURST {
                    if flooder.send_to(&probe, target).is_ok() {
                        sent += 1;
                    }
                }
                std::thread::sleep(FLOOD_PAUSE);
            }
            sent
        })
    };
    // Let the flood use up whatever a shared budget would hold before the real client
    // starts.
    std::thread::sleep(Duration::from_millis(300));

    let real = UdpSocket::bind("127.0.0.1:0").expect("bind the real prober");
    let real_answers = Arc::new(Mutex::new(Vec::new()));
    let real_reader = {
        let socket = real.try_clone().expect("clone the socket");
        let (answers, stop) = (Arc::clone(&real_answers), Arc::clone(&stop));
        std::thread::spawn(move || {
            count_answers(&socket, &stop, |bytes| {
                answers.lock().unwrap().push(bytes.to_vec());
            })
        })
    };
    for _ in 0..REAL_PROBES {
        real.send_to(&probe, target).expect("probe");
        std::thread::sleep(REAL_PROBE_PERIOD);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let flood_sent = flood.join().expect("the flood thread");
    let flood_seconds = flood_started.elapsed().as_secs();
    flood_reader.join().expect("the flood's reader");
    real_reader.join().expect("the real prober's reader");

    let real_answers = real_answers.lock().unwrap().clone();
    let flood_answers = flood_answers.load(Ordering::Relaxed);
    eprintln!(
        "flood: {flood_sent} probes in about {flood_seconds}s, {flood_answers} answers; \
         real client: {} answers to {REAL_PROBES} probes",
        real_answers.len()
    );
    assert!(
        real_answers.len() as u32 >= REAL_PROBES * 3 / 4,
        "the real client got {} answers to {REAL_PROBES} probes beside a flood of \
         {flood_sent} probes ({flood_answers} answered)",
        real_answers.len()
    );
    let flood_bound = ANSWERS_PER_SOURCE_PER_SECOND * (flood_seconds + 2);
    assert!(
        flood_answers <= flood_bound,
        "the flooding address got {flood_answers} answers in about {flood_seconds}s (at \
         most {flood_bound})"
    );
    for answer in &real_answers {
        let Ok(Datagram::Announce(announcement)) = Datagram::decode(answer) else {
            panic!("not an announcement: {answer:?}");
        };
        assert!(
            announcement.name.is_empty() && answer.len() <= 3 * probe.len(),
            "an answer of {} bytes to a probe of {} ({announcement})",
            answer.len(),
            probe.len()
        );
    }
}

/// Reads datagrams from `socket` until `stop`, giving each to `answer`.
fn count_answers(socket: &UdpSocket, stop: &AtomicBool, mut answer: impl FnMut(&[u8])) {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            answer(&buf[..len]);
        }
    }
}
