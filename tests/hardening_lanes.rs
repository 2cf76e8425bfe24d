//! Lanes against a hostile client (issue 20, rows 2 and 5; see SECURITY.md): a lane whose
//! peer trickles its handshake is closed within `--handshake-timeout`, and a session holds
//! one lane at a time however many it asks for. And against a well-behaved one: a client
//! that exits normally leaves no lane warning on the node. Each test runs its own `ppserver` on
//! 127.0.0.1, which starts this test binary as its workers (the worker hook turns those
//! processes into workers before the harness would run).

#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

use pp::codec::encode;
use pp_net::{Message, Outcome};
use support::raw::{block_on, expect_lane_ended, job_with, lane_opening, Client};
use support::{children_of, counter, Node, SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Keeps the worker hook in this binary, whatever else the linker drops.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

#[pp::parallel]
fn square(x: u64) -> u64 {
    x * x
}

/// Opens the lane offered with `key` and sends its opening: the node takes the offer and
/// starts the lane's worker, which waits for a handshake.
async fn take_offer(node: &Node, key: &[u8; 32]) -> TcpStream {
    let mut lane = TcpStream::connect(node.addr).await.expect("connect");
    lane.write_all(&lane_opening(key)).await.expect("send");
    lane
}

/// Asks for a lane and returns its offer (number and key).
async fn request_lane(client: &mut Client) -> (u32, [u8; 32]) {
    client.send(&Message::LaneRequest).await;
    match client.recv().await {
        Message::LaneOffer { lane, key } => (lane, key),
        other => panic!("expected a lane offer, got {other:?}"),
    }
}

/// A session with a lane offered to the test (standing in for the client's end of it),
/// read up to the node worker's preamble, which is checked.
async fn lane_at_preamble(node: &Node) -> (Client, u32, TcpStream) {
    let mut client = Client::connect(node.addr, SECRET).await.unwrap();
    client.start_session().await;
    let (lane, key) = request_lane(&mut client).await;
    let mut stream = take_offer(node, &key).await;
    let mut preamble = [0u8; 8];
    stream
        .read_exact(&mut preamble)
        .await
        .expect("the worker's preamble");
    assert_eq!(preamble, pp_net::preamble::ours());
    (client, lane, stream)
}

/// Row 2: a lane's handshake is bounded as a whole, not per read. The peer sends a 2-byte
/// length announcing a 1000-byte Noise message, then one byte every 300 ms, well within
/// any single read's timeout: the lane worker must still give up once
/// `--handshake-timeout` (1 s) has passed, and the session is told.
#[test]
fn a_lane_whose_peer_trickles_its_handshake_ends_within_the_handshake_timeout() {
    let timeout = Duration::from_secs(1);
    // Ten times the configured timeout: generous for a loaded machine, and far below
    // where a trickle (3,000 handshake bytes' worth of time) would end by itself.
    let bound = 10 * timeout;
    let node = Node::start(1, &["--handshake-timeout", "1"]);
    block_on(async {
        let (mut client, lane, stream) = lane_at_preamble(&node).await;
        let started = Instant::now();
        // Length 1000 (little-endian), then filler, one byte at a time.
        let mut trickle = [0xE8u8, 0x03].into_iter().chain(std::iter::repeat(0x5A));
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        let (mut from_worker, mut to_worker) = stream.into_split();
        let mut sink = [0u8; 64];
        let closed_after = loop {
            tokio::select! {
                read = from_worker.read(&mut sink) => match read {
                    Ok(0) | Err(_) => break started.elapsed(),
                    Ok(n) => panic!("the worker answered a trickled handshake with {n} bytes"),
                },
                _ = tick.tick() => {
                    // The node may have closed the lane already: the read above sees that.
                    let _ = to_worker.write_all(&[trickle.next().unwrap()]).await;
                    assert!(
                        started.elapsed() < bound,
                        "the lane worker still waits for its handshake after {:?} \
                         (--handshake-timeout 1): a trickle keeps it alive; log:\n{}",
                        started.elapsed(),
                        node.log.text()
                    );
                }
            }
        };
        eprintln!("the trickled lane was closed {closed_after:?} after the worker's preamble");
        let (crashed, reason) = expect_lane_ended(&mut client, lane).await;
        assert!(
            !crashed,
            "a handshake its client did not finish is no worker crash: {reason}"
        );
        let line = node.log.wait_for("lane handshake");
        assert!(line.contains("within 1s"), "{line}");
        // The session goes on.
        let outcomes = client.run(vec![job_with(1, square, &(6u64,))]).await;
        assert_eq!(outcomes[&1], Outcome::Ok(encode(&36u64).unwrap()));
    });
}

/// Row 5: 30 lane requests from one session, each offer taken at once by a connection
/// that stays open (its worker waits for a handshake within `--handshake-timeout`, 10 s
/// here). The session holds one lane at a time: a request while its lane lives is answered
/// only once that lane has ended (`LaneEnded` comes first), so no offer ever comes while
/// an earlier lane lives, and the node never has more than its workers and one lane worker
/// for the client. The requests the node holds back do not harm the session: when the
/// lane ends the client gets its next offer, and its jobs still run.
#[test]
fn a_session_asking_for_30_lanes_holds_one_at_a_time_and_goes_on() {
    const WORKERS: usize = 2;
    const REQUESTS: u64 = 30;
    let node = Node::start(WORKERS, &["--handshake-timeout", "10"]);
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        client.start_session().await;
        let _ = node.wait_children(WORKERS);
        let mut held = Vec::new();
        let mut ended = 0usize;
        // For each offer: how many lanes of the session were still live when it came.
        let mut live_at_offer = Vec::new();
        let mut most_children = WORKERS;
        for request in 1..=REQUESTS {
            client.send(&Message::LaneRequest).await;
            // The node reads in order, but its writer sends heartbeat answers before the
            // other messages ready with them: once the answer to a heartbeat sent after the
            // request has come, a second heartbeat's answer comes after anything the node
            // said to the request.
            for seq in [2 * request - 1, 2 * request] {
                client.send(&Message::Heartbeat { seq }).await;
                loop {
                    match client.recv().await {
                        Message::LaneOffer { lane, key } => {
                            live_at_offer.push(held.len() - ended);
                            held.push(take_offer(&node, &key).await);
                            // The node took the offer and started the lane's worker.
                            node.log.wait_for(&format!("lane {lane} of client"));
                        }
                        Message::LaneEnded { .. } => ended += 1,
                        Message::HeartbeatAck { seq: acked } if acked == seq => break,
                        Message::HeartbeatAck { .. } => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            most_children = most_children.max(children_of(node.pid()).len());
        }
        eprintln!(
            "{REQUESTS} requests: {} offers taken, lanes live at each offer {live_at_offer:?}, \
             at most {most_children} worker processes",
            held.len()
        );
        assert!(
            live_at_offer.iter().all(|&live| live == 0),
            "an offer came while an earlier lane of the session lived: {} lanes taken, live \
             at each offer: {live_at_offer:?}",
            held.len()
        );
        assert!(
            most_children <= WORKERS + 1,
            "the node ran {most_children} worker processes for one client of {WORKERS} \
             workers"
        );
        // The client lets its lane go: the node says so, then answers the requests it held
        // back with one offer.
        let taken = held.len();
        held.clear();
        let (lane, key) = loop {
            match client.recv().await {
                Message::LaneEnded { .. } => ended += 1,
                Message::LaneOffer { lane, key } => break (lane, key),
                Message::HeartbeatAck { .. } => {}
                other => panic!("expected LaneEnded then LaneOffer, got {other:?}"),
            }
        };
        assert_eq!(ended, taken, "every lane ended before the next offer");
        let second = take_offer(&node, &key).await;
        node.log.wait_for(&format!("lane {lane} of client"));
        drop(second);
        match client.recv().await {
            Message::LaneEnded { lane: ended, .. } => assert_eq!(ended, lane),
            other => panic!("expected LaneEnded, got {other:?}"),
        }
        // The session itself was never disturbed.
        let outcomes = client.run(vec![job_with(1, square, &(7u64,))]).await;
        assert_eq!(outcomes[&1], Outcome::Ok(encode(&49u64).unwrap()));
    });
}

/// Waits (at most `support::WAIT`) until the node has no child process left: every
/// session's workers and every lane worker ended and was reaped.
fn wait_no_workers(node: &Node) {
    let deadline = Instant::now() + support::WAIT;
    while !children_of(node.pid()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the node still has workers {:?}",
            children_of(node.pid())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client that exits normally leaves no warning on the node. Sixty clients in turn each
/// run one job and exit at once, while their lane (asked for when the session starts) is
/// often still in its handshake: the client lets it finish before it closes it, so the
/// node counts no incomplete lane handshake and logs no warning. A lane handshake that a
/// client really cuts off (its worker's preamble read, then the connection dropped) still
/// warns, and is counted.
#[test]
fn clients_that_exit_normally_leave_no_lane_warning_but_a_cut_handshake_warns() {
    const CLIENTS: u64 = 60;
    let node = Node::start(1, &[]);
    for x in 0..CLIENTS {
        let server = support::client(&[&node], |builder| builder);
        assert_eq!(server.submit(square, (x,)).result(), Ok(x * x));
        drop(server);
    }
    wait_no_workers(&node);
    let stats = node.statistics();
    assert!(
        counter(&stats, "lanes") > 0,
        "no client used a lane: {stats}"
    );
    assert_eq!(counter(&stats, "incomplete_handshakes"), 0, "{stats}");
    let warnings = node.log.matching("WARN");
    assert!(
        warnings.is_empty(),
        "{CLIENTS} clients that exited normally left warnings:\n{}",
        warnings.join("\n")
    );

    block_on(async {
        let (mut client, lane, stream) = lane_at_preamble(&node).await;
        drop(stream);
        let (crashed, reason) = expect_lane_ended(&mut client, lane).await;
        assert!(!crashed, "{reason}");
    });
    let line = node.log.wait_for("did not complete the lane's handshake");
    assert!(line.contains("WARN"), "{line}");
    let stats = node.statistics();
    assert_eq!(counter(&stats, "incomplete_handshakes"), 1, "{stats}");
}
