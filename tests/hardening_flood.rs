//! Issue 20, row 1: a flood of silent connections from one address does not keep a client
//! on a slow link out. When every slot is taken, the node evicts a handshaking connection
//! of the address that holds the most of them (see pp-net's `node::admission` and
//! SECURITY.md), so the flooder churns through its own slots and a client from another
//! address keeps its slot however long its handshake takes.
//!
//! The flood comes from 127.0.0.2, the client from 127.0.0.1: two addresses of the loopback
//! network, so the test needs no other host.
//!
//! And a client that is evicted all the same (its address holds the most handshakes) is
//! told the node was busy, not that its secret is wrong: through `client_handshake`, and
//! through `pp::Server` as a user meets it.

#![cfg(target_os = "linux")]

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pp::NodeFailure;
use pp_net::{client_handshake, ChannelConfig, NetError, Peer, Secret};
use support::raw::block_on;
use support::{Node, SECRET};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Keeps the worker hook in this binary, whatever else the linker drops.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

#[pp::parallel]
fn square(x: u64) -> u64 {
    x * x
}

/// Held by each test for its whole run: the flood test counts on the node's tasks keeping
/// up with the flood, which the other tests' nodes would slow down on a small machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`ONE_AT_A_TIME`] (a test that failed while holding it does not poison the rest).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long the slow client stays silent before its handshake: what a slow link looks
/// like to the node.
const SLOW_LINK: Duration = Duration::from_millis(150);

/// Handshakes the slow client tries during the flood.
const TRIES: usize = 10;

/// Opens silent connections to `addr` from 127.0.0.2 until `stop`, keeping the newest
/// `keep` open; counts them in `opened`.
async fn flood(addr: SocketAddr, keep: usize, stop: Arc<AtomicBool>, opened: Arc<AtomicU64>) {
    let mut held = std::collections::VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().unwrap())
            .expect("bind 127.0.0.2");
        if let Ok(stream) = socket.connect(addr).await {
            opened.fetch_add(1, Ordering::Relaxed);
            held.push_back(stream);
            if held.len() > keep {
                held.pop_front();
            }
        }
        tokio::task::yield_now().await;
    }
}

/// Connects from 127.0.0.1, stays silent for [`SLOW_LINK`], then runs the handshake.
async fn slow_handshake(addr: SocketAddr, secret: &Secret) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tokio::time::sleep(SLOW_LINK).await;
    let (reader, writer) = stream.into_split();
    let config = ChannelConfig::default();
    client_handshake(reader, writer, Peer(Some(addr)), secret, config)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn a_flood_from_one_address_does_not_keep_a_slow_client_from_another_out() {
    let _serial = one_at_a_time();
    let node = Node::start(1, &["--max-connections", "8"]);
    let addr = node.addr;
    let secret = Secret::new(SECRET).expect("secret");
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    // The flood runs on a thread of its own, so that it never waits for the client.
    let flooding = {
        let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
        std::thread::spawn(move || block_on(flood(addr, 64, stop, opened)))
    };
    let results = block_on(async {
        // Let the flood fill every slot first.
        while opened.load(Ordering::Relaxed) < 32 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut results = Vec::new();
        for _ in 0..TRIES {
            let before = opened.load(Ordering::Relaxed);
            let result = slow_handshake(addr, &secret).await;
            let during = opened.load(Ordering::Relaxed) - before;
            results.push((result, during));
        }
        results
    });
    stop.store(true, Ordering::Relaxed);
    flooding.join().expect("the flood thread");
    let through = results.iter().filter(|(r, _)| r.is_ok()).count();
    let flood_during: Vec<u64> = results.iter().map(|(_, d)| *d).collect();
    eprintln!(
        "{through} of {TRIES} slow handshakes through; flood connections during each: \
         {flood_during:?}; node statistics: {}",
        node.statistics()
    );
    // The flood must push far more connections than the node has slots while the slow
    // client waits, or the test proves nothing. (It stalls now and then: the kernel drops
    // SYNs past the listen backlog, and the flooder's retransmits wait a second.)
    let total: u64 = flood_during.iter().sum();
    assert!(
        total >= 8 * TRIES as u64,
        "the flood pushed only {total} connections during the {TRIES} handshakes"
    );
    for (result, _) in &results {
        assert!(
            result.is_ok(),
            "a slow client was kept out by a flood from another address: {result:?}"
        );
    }
}

/// The node's `evicted=` counter.
fn evicted(node: &Node) -> u64 {
    support::counter(&node.statistics(), "evicted")
}

/// A read half that takes in what the node sends but hands none of it on until `open`: a
/// client that stalls once its preamble is answered (the node then waits for message 1),
/// as on a slow link. `received` counts the bytes taken in.
struct Stalled<R> {
    inner: R,
    held: Vec<u8>,
    ended: bool,
    received: Arc<AtomicU64>,
    open: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Stalled<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.open.load(Ordering::SeqCst) {
            let mut chunk = [0u8; 64];
            let mut taken = ReadBuf::new(&mut chunk);
            if !this.ended {
                if let Poll::Ready(Ok(())) = Pin::new(&mut this.inner).poll_read(cx, &mut taken) {
                    this.ended = taken.filled().is_empty();
                    this.held.extend_from_slice(taken.filled());
                    this.received
                        .store(this.held.len() as u64, Ordering::SeqCst);
                }
            }
            // Looked at again shortly: the gate has no waker of its own.
            let waker = cx.waker().clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                waker.wake();
            });
            return Poll::Pending;
        }
        if !this.held.is_empty() {
            let n = buf.remaining().min(this.held.len());
            buf.put_slice(&this.held[..n]);
            this.held.drain(..n);
            return Poll::Ready(Ok(()));
        }
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// One client evicted in its handshake (see the test below), stalled once its preamble is
/// answered when `stalled`, else before it sends anything: what its handshake reports, and
/// how many bytes the node sent it (counted when `stalled`).
async fn evicted_client(node: &Node, round: u64, stalled: bool) -> (NetError, u64) {
    let addr = node.addr;
    let secret = Secret::new(SECRET).expect("secret");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (reader, writer) = client.into_split();
    let received = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicBool::new(!stalled));
    let reader = Stalled {
        inner: reader,
        held: Vec::new(),
        ended: false,
        received: Arc::clone(&received),
        open: Arc::clone(&open),
    };
    let handshake = async {
        let config = ChannelConfig::default();
        client_handshake(reader, writer, Peer(Some(addr)), &secret, config).await
    };
    let evict = async {
        if stalled {
            // The node answered the preamble: it waits for message 1.
            while received.load(Ordering::SeqCst) < 8 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut dialers = Vec::new();
        for _ in 0..4 {
            dialers.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // The client's connection is the oldest of 127.0.0.1: the fifth takes its slot.
        while evicted(node) < round {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if stalled {
            // Everything the node sent the client has come (it closed the connection).
            while received.load(Ordering::SeqCst) < 10 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        open.store(true, Ordering::SeqCst);
        dialers
    };
    let (shaken, dialers) = if stalled {
        tokio::join!(handshake, evict)
    } else {
        let dialers = evict.await;
        (handshake.await, dialers)
    };
    drop(dialers);
    let failed = shaken.map(drop).expect_err("an evicted handshake fails");
    (failed, received.load(Ordering::SeqCst))
}

/// A client evicted by the node's flood control in its handshake is told that the node was
/// busy, not that its secret is wrong. The node has 4 slots; a client connects from
/// 127.0.0.1, then four more connections come from the same address: the fifth takes the
/// slot of the oldest handshake of the address that holds the most, the client's. The
/// client is evicted at either point of its handshake: before it sent anything, and once
/// the node answered its preamble (the node waits for message 1: a client there used to
/// read the node's hanging up as a wrong secret): there it reports "busy"; before, a node
/// that closed with its connections taken. Neither blames the secret; three times each.
/// And a client that comes once the dialers are gone gets through.
#[test]
fn a_client_evicted_in_its_handshake_is_told_the_node_was_busy_not_a_wrong_secret() {
    let _serial = one_at_a_time();
    const ROUNDS: u64 = 6;
    let node = Node::start(1, &["--max-connections", "4", "--handshake-timeout", "20"]);
    let addr = node.addr;
    for round in 1..=ROUNDS {
        // The last round's connections are gone: the client's is the oldest.
        let deadline = std::time::Instant::now() + support::WAIT;
        while support::counter(&node.statistics(), "active") > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "connections left open"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let stalled = round % 2 == 0;
        let (failed, sent) = block_on(evicted_client(&node, round, stalled));
        let said = failed.to_string();
        assert!(!said.contains("secret"), "stalled {stalled}: {said}");
        if stalled {
            assert!(matches!(failed, NetError::Busy { .. }), "{said}");
            assert!(said.contains("busy with other handshakes"), "{said}");
            // The node's preamble, then an empty message 2: 10 bytes.
            assert_eq!(sent, 10, "what the node sent");
        } else {
            // Closed before the node answered: a node with its connections taken.
            assert!(
                matches!(failed, NetError::Truncated { .. } | NetError::Io { .. }),
                "{said}"
            );
        }
    }
    // The dialers are gone: a client's handshake goes through.
    block_on(async {
        let secret = Secret::new(SECRET).expect("secret");
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (reader, writer) = stream.into_split();
        client_handshake(
            reader,
            writer,
            Peer(Some(addr)),
            &secret,
            ChannelConfig::default(),
        )
        .await
        .expect("a handshake after the flood");
    });
}

/// A proxy on 127.0.0.1 to `node`, in a thread of its own until `stop`. Its first
/// connection takes in what the node sends (counted in `from_node`) but passes it on only
/// once `open`, and then only when the node has closed: a client on a link that delivers
/// late. Later connections pass straight through.
fn start_proxy(
    node: SocketAddr,
    open: Arc<AtomicBool>,
    from_node: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let addr = listener.local_addr().expect("the proxy's address");
    listener.set_nonblocking(true).expect("non-blocking");
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("the proxy's listener");
            let mut first = true;
            while !stop.load(Ordering::SeqCst) {
                let accepted =
                    tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
                let Ok(Ok((client, _))) = accepted else {
                    continue;
                };
                let Ok(upstream) = TcpStream::connect(node).await else {
                    continue;
                };
                let late = std::mem::replace(&mut first, false);
                let (open, from_node) = (Arc::clone(&open), Arc::clone(&from_node));
                tokio::spawn(relay(client, upstream, late, open, from_node));
            }
        });
    });
    (addr, thread)
}

/// Relays one connection of the proxy (see [`start_proxy`]).
async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    late: bool,
    open: Arc<AtomicBool>,
    from_node: Arc<AtomicU64>,
) {
    let (mut client_in, mut client_out) = client.into_split();
    let (mut node_in, mut node_out) = upstream.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_in, &mut node_out).await;
    });
    if late {
        let mut held = Vec::new();
        let mut chunk = [0u8; 256];
        while let Ok(n @ 1..) = node_in.read(&mut chunk).await {
            held.extend_from_slice(&chunk[..n]);
            from_node.store(held.len() as u64, Ordering::SeqCst);
        }
        while !open.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = client_out.write_all(&held).await;
        let _ = client_out.shutdown().await;
    } else {
        let _ = tokio::io::copy(&mut node_in, &mut client_out).await;
    }
    let _ = up.await;
}

/// The same through `pp::Server`, as a user meets it: its connection to the node (through
/// a proxy that delivers the node's bytes late) is evicted once the node answered its
/// preamble. The node's last failure, which pp's warning and `print_stats()` show, is
/// "busy", with a hint that says it is not the secret; and once the dialers are gone, the
/// client's retry gets through and runs a job.
#[test]
fn a_server_evicted_in_its_handshake_says_the_node_was_busy_and_then_gets_through() {
    let _serial = one_at_a_time();
    let node = Node::start(1, &["--max-connections", "4", "--handshake-timeout", "20"]);
    let (open, from_node) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (proxy, proxying) = start_proxy(
        node.addr,
        Arc::clone(&open),
        Arc::clone(&from_node),
        Arc::clone(&stop),
    );
    let server = pp::Server::builder()
        .ppservers([proxy.to_string()])
        .secret(SECRET)
        .ncpus(0)
        .fallback_wait(support::WAIT)
        .build()
        .expect("the client starts");
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + support::WAIT;
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "not within bound: {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // The node answered the client's preamble: it waits for message 1.
    wait_for("the node's preamble", &|| {
        from_node.load(Ordering::SeqCst) >= 8
    });
    let dialers: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(node.addr).expect("connect"))
        .collect();
    wait_for("the eviction", &|| evicted(&node) >= 1);
    // The node's preamble, then an empty message 2, then the end.
    wait_for("the notice", &|| from_node.load(Ordering::SeqCst) >= 10);
    open.store(true, Ordering::SeqCst);
    let last_failure = || {
        server
            .active_nodes()
            .first()
            .and_then(|n| n.last_failure.clone())
    };
    wait_for("the client's failure", &|| last_failure().is_some());
    let failure = last_failure().expect("a failure");
    assert_eq!(failure, NodeFailure::Busy, "{failure}");
    let said = format!("{failure} ({})", failure.hint().unwrap_or_default());
    eprintln!("the client says: {said}");
    assert!(said.contains("busy"), "{said}");
    assert!(said.contains("not a wrong secret"), "{said}");
    drop(dialers);
    assert_eq!(server.submit(square, (7,)).result(), Ok(49));
    drop(server);
    stop.store(true, Ordering::SeqCst);
    proxying.join().expect("the proxy");
}
