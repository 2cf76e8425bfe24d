//! The table of bad inputs, each against a real `ppserver` process on 127.0.0.1 (see
//! SECURITY.md): after every row a good client completes a job on the same node, and the
//! node's memory (`VmHWM` from `/proc`) stays below [`NODE_PEAK_BOUND_MIB`] through the
//! whole table.
//!
//! The rows run in order on one node, in one test, because the memory bound is about the
//! whole table; each row is its own function, named after what it sends, and the log of a
//! failure names the row. The node starts this test binary as its workers (the worker hook
//! turns those processes into workers before the harness would run).

#![cfg(target_os = "linux")]

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use pp::codec::encode;
use pp_net::{client_handshake, ChannelConfig, Message, NetError, Outcome, Peer, Secret};
use pp_net::{SecureReader, SecureWriter};
use serde::{Deserialize, Serialize, Serializer};
use support::raw::{block_on, expect_refused, job, job_with, program, Client};
use support::{Node, SECRET, WAIT};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

/// Keeps the worker hook in this binary, whatever else the linker drops.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

/// The documented bound on the node's peak resident memory through the table (SECURITY.md).
const NODE_PEAK_BOUND_MIB: u64 = 128;

/// Jobs a client may have on the table's node (`--max-jobs-per-client`).
const JOBS_PER_CLIENT: usize = 8;

/// Bytes of each result of the row where the client stops reading.
const BLOB: usize = 1 << 20;

#[pp::parallel]
fn square(x: u64) -> u64 {
    x * x
}

#[pp::parallel]
fn total(bytes: Vec<u8>) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// A result of `len` bytes.
#[pp::parallel]
fn blob(len: u64) -> Vec<u8> {
    vec![7; len as usize]
}

/// A result that encodes as a byte vector claiming 2^62 bytes, with none behind the length.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct Bomb {
    _bytes: Vec<u8>,
}

impl Serialize for Bomb {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(1 << 62)
    }
}

#[pp::parallel]
fn bomb() -> Bomb {
    Bomb { _bytes: Vec::new() }
}

/// One row of the table: its name, and what it sends to the node.
type Row = (&'static str, fn(&Node));

#[test]
fn the_node_survives_the_table_of_bad_inputs_within_its_memory_bound() {
    raise_open_file_limit(4096);
    // Room for this binary, and not much more.
    let max_upload = (program().size + (1 << 20)).to_string();
    let node = Node::start(
        2,
        &[
            "--handshake-timeout",
            "1",
            "--max-upload",
            &max_upload,
            "--max-jobs-per-client",
            &JOBS_PER_CLIENT.to_string(),
        ],
    );
    // The first good session uploads the program; every later one finds it cached.
    good_client_completes_a_job(&node);
    let rows: &[Row] = &[
        ("garbage bytes", garbage_bytes),
        ("a truncated frame", truncated_frame),
        ("a 4 GiB length prefix", four_gib_length_prefix),
        ("a wrong magic", wrong_magic),
        ("a wrong protocol version", wrong_protocol_version),
        ("a lane that names no offer", lane_without_offer),
        ("a wrong secret", wrong_secret),
        ("a replayed handshake", replayed_handshake),
        ("a frame altered after the handshake", altered_frame),
        ("a connection that sends nothing", silent_connection),
        ("a client that stops reading results", client_stops_reading),
        ("1000 connections at once", thousand_connections),
        ("decode bombs", decode_bombs),
        ("an upload above --max-upload", upload_above_the_limit),
        (
            "an upload that does not match its hash",
            upload_with_a_wrong_hash,
        ),
        ("a program that is not executable", program_not_executable),
    ];
    let mut peaks = Vec::new();
    for (row, run) in rows {
        eprintln!("row: {row}");
        run(&node);
        good_client_completes_a_job(&node);
        let memory = node.memory().expect("the node's /proc/PID/status");
        eprintln!(
            "row: {row}: done; node VmRSS {} KiB, VmHWM {} KiB",
            memory.rss_kib, memory.peak_kib
        );
        peaks.push((row, memory.peak_kib));
        assert!(
            memory.peak_kib < NODE_PEAK_BOUND_MIB << 10,
            "after the row {row:?} the node's peak memory is {} KiB, above the bound of \
             {NODE_PEAK_BOUND_MIB} MiB",
            memory.peak_kib
        );
    }
    let stats = node.statistics();
    eprintln!("{stats}\npeak memory after each row (KiB): {peaks:?}");
    // Every slot is freed once the last good client is gone.
    wait_for_active(&node, 0);
}

/// A good client: connects, sets up (from the cache), runs a job, gets its result.
fn good_client_completes_a_job(node: &Node) {
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET)
            .await
            .expect("a good client authenticates");
        client.start_session().await;
        let outcomes = client.run(vec![job_with(1, square, &(12u64,))]).await;
        assert_eq!(outcomes[&1], Outcome::Ok(encode(&144u64).unwrap()));
    });
}

/// Reads until the node closes the connection; returns what it sent. Bounded by [`WAIT`].
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the node did not close the connection within {WAIT:?}"),
        }
    }
}

/// Opens a raw connection, sends `bytes`, and returns what the node answered before closing.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The node may hang up before all is written: that is fine.
    let _ = stream.write_all(bytes).await;
    read_to_close(&mut stream).await
}

fn garbage_bytes(node: &Node) {
    // A fixed pseudo-random sequence (xorshift), not starting with the magic.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let answer = block_on(send_raw(node.addr, &garbage));
    assert_eq!(answer, pp_net::preamble::ours(), "only the node's preamble");
    node.log.wait_for("is not speaking the pp protocol");
}

fn wrong_magic(node: &Node) {
    let before = node.log.count("is not speaking the pp protocol");
    let answer = block_on(send_raw(node.addr, b"GET / HTTP/1.1\r\n\r\n"));
    assert_eq!(answer, pp_net::preamble::ours());
    wait_for_count(node, "is not speaking the pp protocol", before + 1);
}

fn wrong_protocol_version(node: &Node) {
    let ours = pp_net::PROTOCOL_VERSION;
    let other = ours + 1;
    let answer = block_on(send_raw(node.addr, &pp_net::preamble::encode(other)));
    // The node answers with its own version before hanging up, so that the client can name
    // both versions in its error; this is the error a client of the other version reports.
    let answer: [u8; 8] = answer.try_into().expect("the node's 8-byte preamble");
    assert_eq!(
        answer,
        pp_net::preamble::ours(),
        "the node names its version"
    );
    let line = node.log.wait_for(&format!(
        "speaks pp protocol version {other}, this build speaks version {ours}"
    ));
    assert!(line.contains("handshake with 127.0.0.1:"), "{line}");
}

fn lane_without_offer(node: &Node) {
    // A lane's opening (preamble `PPLN`, the protocol version, then a lane id) naming a lane
    // the node never offered, as a replayed or guessed id would.
    let mut opening = pp_net::preamble::ours().to_vec();
    opening[..4].copy_from_slice(b"PPLN");
    opening.extend_from_slice(&[0x5A; 16]);
    let answer = block_on(send_raw(node.addr, &opening));
    assert!(answer.is_empty(), "no answer at all: {answer:?}");
    node.log.wait_for("names no open lane offer");
}

fn wrong_secret(node: &Node) {
    let before = node.log.count("authentication failed from");
    let error = block_on(Client::connect(node.addr, "not the secret"))
        .err()
        .expect("a wrong secret must not authenticate");
    assert!(
        matches!(error, NetError::AuthenticationFailed { .. }),
        "{error}"
    );
    wait_for_count(node, "authentication failed from", before + 1);
}

fn replayed_handshake(node: &Node) {
    // Record everything a genuine client sends through its handshake...
    let recorded = block_on(async {
        let (_reader, _writer, tap) = tapped(node.addr).await.expect("a genuine handshake");
        let bytes = tap.lock().unwrap().written.clone();
        bytes
    });
    // ...and send it again on a new connection: the node's fresh ephemeral key makes the
    // recorded confirmation worthless.
    let answer = block_on(send_raw(node.addr, &recorded));
    assert!(
        answer.len() < 200,
        "only the preamble and a handshake message"
    );
    node.log.wait_for("a replayed or forged handshake");
}

fn truncated_frame(node: &Node) {
    block_on(async {
        let (mut reader, mut writer, tap) = tapped(node.addr).await.expect("handshake");
        // Only the first 10 bytes of the hello's frame leave, then the client hangs up.
        tap.lock().unwrap().next = Some(Box::new(|frame: Vec<u8>| frame[..10].to_vec()));
        writer.send(&Client::hello()).await.expect("send");
        writer.shutdown().await.expect("close");
        assert!(reader.recv().await.is_err(), "the node sends nothing more");
    });
    node.log
        .wait_for("closed the connection in the middle of a frame");
}

fn four_gib_length_prefix(node: &Node) {
    block_on(async {
        let (mut reader, mut writer, tap) = tapped(node.addr).await.expect("handshake");
        tap.lock().unwrap().next = Some(Box::new(|mut frame: Vec<u8>| {
            frame[..4].copy_from_slice(&u32::MAX.to_le_bytes());
            frame
        }));
        writer.send(&Client::hello()).await.expect("send");
        // The node refuses the length at once: it hangs up without waiting for 4 GiB.
        assert!(reader.recv().await.is_err());
    });
    let line = node.log.wait_for("announced a frame of 4294967295 bytes");
    assert!(line.contains("above the limit"), "{line}");
}

fn altered_frame(node: &Node) {
    block_on(async {
        let (mut reader, mut writer, tap) = tapped(node.addr).await.expect("handshake");
        tap.lock().unwrap().next = Some(Box::new(|mut frame: Vec<u8>| {
            // A bit of the ciphertext, past the frame and segment headers.
            frame[12] ^= 0x20;
            frame
        }));
        writer.send(&Client::hello()).await.expect("send");
        assert!(reader.recv().await.is_err(), "the node hangs up");
    });
    node.log
        .wait_for("authentication failed: the frame was altered");
}

fn silent_connection(node: &Node) {
    let before = node.log.count("did not finish within");
    block_on(async {
        let mut stream = TcpStream::connect(node.addr).await.expect("connect");
        // The node closes it after its handshake timeout (1 s here).
        let answer = read_to_close(&mut stream).await;
        assert!(answer.is_empty(), "nothing sent: {answer:?}");
    });
    wait_for_count(node, "did not finish within", before + 1);
    wait_for_active(node, 0);
}

/// A new client that has submitted `jobs` jobs with 1 MiB results each (and read none).
async fn submit_large_results(node: &Node, jobs: u64) -> Client {
    let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
    client.start_session().await;
    let batch = (0..jobs)
        .map(|i| job_with(i, blob, &(BLOB as u64,)))
        .collect();
    client.send(&Message::Submit { jobs: batch }).await;
    client
}

fn client_stops_reading(node: &Node) {
    let jobs = 64u64;
    let before = node.memory().expect("memory").rss_kib;
    let jobs_before = jobs_run(node);
    block_on(async {
        // 64 MiB of results if the node took every job at once; it takes 8 at a time and
        // stops reading until their results are written, which they cannot be while this
        // client reads nothing and the socket buffers are full.
        let mut client = submit_large_results(node, jobs).await;
        // Wait until the node stops running this client's jobs (its count stays the same
        // for a second) or has run them all (what a node without the limit does).
        let (mut last, mut still) = (jobs_run(node), 0);
        let deadline = std::time::Instant::now() + WAIT / 2;
        while still < 4 && last < jobs_before + jobs && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = jobs_run(node);
            still = if now == last { still + 1 } else { 0 };
            last = now;
        }
        let now = node.memory().expect("memory").rss_kib;
        eprintln!(
            "  not reading: the node ran {} of {jobs} jobs; VmRSS {before} -> {now} KiB",
            last - jobs_before
        );
        // Each held result may exist a few times over (reply, encoded message, frame).
        assert!(
            now < before + ((JOBS_PER_CLIENT as u64 * 4 * BLOB as u64) >> 10),
            "the node holds more than its jobs-per-client limit of results: VmRSS went from \
             {before} KiB to {now} KiB"
        );
        // Reading again, the client gets every result.
        let mut done = 0;
        while done < jobs {
            match client.recv().await {
                Message::Results { results } => {
                    for reply in results {
                        match reply.outcome {
                            Outcome::Ok(bytes) => assert_eq!(bytes.len(), BLOB + 8),
                            other => panic!("{other:?}"),
                        }
                        done += 1;
                    }
                }
                Message::HeartbeatAck { .. } => {}
                other => panic!("expected Results, got {other:?}"),
            }
        }
    });
}

/// Outside the table, with a node of its own: its short `--write-timeout` would cut the
/// table's row that pauses reading.
#[test]
fn a_client_that_never_reads_again_is_disconnected_after_the_write_timeout() {
    let node = Node::start(
        1,
        &[
            "--write-timeout",
            "1",
            "--max-jobs-per-client",
            &JOBS_PER_CLIENT.to_string(),
        ],
    );
    let jobs = 64u64;
    block_on(async {
        // Far more results than the socket buffers hold: the node's writes stall.
        let mut client = submit_large_results(&node, jobs).await;
        node.log
            .wait_for("read nothing of what was sent to it for 1s");
        // The node has let the client go: reading now gives what was in the socket buffers,
        // then the end of the connection, not every result.
        let mut results = 0;
        let end = loop {
            match client.reader.recv().await {
                Ok(Message::Results { results: batch }) => results += batch.len() as u64,
                Ok(Message::HeartbeatAck { .. }) => {}
                Ok(other) => panic!("expected Results, got {other:?}"),
                Err(error) => break error,
            }
        };
        assert!(
            results < jobs,
            "all {jobs} results came: the client was not let go"
        );
        // Between frames, or in the middle of the one the node was stuck writing.
        assert!(
            matches!(
                end,
                NetError::Disconnected { .. } | NetError::Truncated { .. } | NetError::Io { .. }
            ),
            "{end}"
        );
    });
    // Its slot and workers are free: a good client is served.
    good_client_completes_a_job(&node);
}

fn thousand_connections(node: &Node) {
    let evicted = |stats: &str| -> u64 {
        stats
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("evicted="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = evicted(&node.statistics());
    block_on(async {
        let mut flood = Vec::with_capacity(1000);
        for _ in 0..1000 {
            flood.push(TcpStream::connect(node.addr).await.expect("connect"));
        }
        // A good client behind the flood: it takes the slot of an old silent connection.
        let mut client = Client::connect(node.addr, SECRET)
            .await
            .expect("a good client gets through the flood");
        client.start_session().await;
        let outcomes = client.run(vec![job_with(7, square, &(3u64,))]).await;
        assert_eq!(outcomes[&7], Outcome::Ok(encode(&9u64).unwrap()));
        // Every flood connection is closed by the node: evicted, or timed out.
        for stream in &mut flood {
            read_to_close(stream).await;
        }
    });
    // How many were evicted rather than timed out depends on the machine's speed; that
    // the limit was reached and handshakes made room does not.
    let stats = node.statistics();
    assert!(
        evicted(&stats) > before,
        "the flood went through the handshake slots: {stats}"
    );
    eprintln!("  {} flood connections evicted", evicted(&stats) - before);
    wait_for_active(node, 0);
}

fn decode_bombs(node: &Node) {
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
        client.start_session().await;
        // An argument `Vec<u8>` that claims 2^62 bytes: the worker refuses to decode it.
        let mut args = (1u64 << 62).to_le_bytes().to_vec();
        args.extend_from_slice(&[1, 2, 3]);
        let outcomes = client.run(vec![job(1, total, args)]).await;
        match &outcomes[&1] {
            Outcome::Failed(reason) => {
                assert!(reason.contains("cannot decode the arguments"), "{reason}")
            }
            other => panic!("expected a decoding failure, got {other:?}"),
        }
        // A `Submit` whose job list claims 2^60 jobs: the node ends the session.
        let mut message = 5u32.to_le_bytes().to_vec();
        message.extend_from_slice(&(1u64 << 60).to_le_bytes());
        message.extend_from_slice(&[0; 16]);
        client.writer.send_bytes(&message).await.expect("send");
        loop {
            match client.reader.recv().await {
                Ok(Message::HeartbeatAck { .. }) => {}
                Ok(other) => panic!("expected the node to hang up, got {other:?}"),
                Err(_) => break,
            }
        }
    });
    node.log.wait_for("bad message for or from");

    // A result that claims 2^62 bytes, from a real worker to a real pp client.
    let server = support::client(&[node], |b| b);
    let job = server.submit(bomb, ());
    assert!(job.wait_timeout(WAIT), "the job completes");
    match job.result() {
        Err(pp::JobError::Remote { message, .. }) => {
            assert!(message.contains("cannot decode the result"), "{message}")
        }
        other => panic!("expected a decoding error, got {other:?}"),
    }
    let job = server.submit(total, (vec![1u8, 2, 3],));
    assert!(job.wait_timeout(WAIT), "the job completes");
    assert_eq!(job.result(), Ok(6), "the same client goes on");
}

fn upload_above_the_limit(node: &Node) {
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
        client
            .send(&Client::hello_for([9; 32], program().size + (2 << 20)))
            .await;
        let reason = expect_refused(client.recv().await);
        assert!(reason.contains("--max-upload"), "{reason}");

        // Announcing a small program, then sending more than announced.
        let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
        client.send(&Client::hello_for([8; 32], 4)).await;
        assert!(matches!(client.recv().await, Message::ServerHello { .. }));
        client
            .send(&Message::UploadChunk {
                offset: 0,
                bytes: b"more than four bytes".to_vec(),
            })
            .await;
        let reason = expect_refused(client.recv().await);
        assert!(
            reason.contains("past the announced program size"),
            "{reason}"
        );
    });
    assert_cache_holds_only_programs(node);
}

fn upload_with_a_wrong_hash(node: &Node) {
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
        client.send(&Client::hello_for([7; 32], 4)).await;
        assert!(matches!(client.recv().await, Message::ServerHello { .. }));
        client.upload(b"evil").await;
        let reason = expect_refused(client.recv().await);
        assert!(reason.contains("SHA-256"), "{reason}");
    });
    assert_cache_holds_only_programs(node);
}

fn program_not_executable(node: &Node) {
    let text = b"this is not a program\n".to_vec();
    let sha256 = {
        let dir = support::temp_dir("not-a-program");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file");
        std::fs::write(&path, &text).unwrap();
        let (sha256, _) = pp_net::program::hash_file(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        sha256
    };
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
        client
            .send(&Client::hello_for(sha256, text.len() as u64))
            .await;
        assert!(matches!(client.recv().await, Message::ServerHello { .. }));
        client.upload(&text).await;
        let reason = expect_refused(client.recv().await);
        assert!(reason.contains("cannot run the program"), "{reason}");
    });
    node.wait_children(0);
}

/// Only complete, verified programs in the cache: no temporary upload left behind.
fn assert_cache_holds_only_programs(node: &Node) {
    for entry in std::fs::read_dir(&node.cache_dir).expect("the cache directory") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            "unexpected file {name} in the cache"
        );
    }
}

/// The jobs the node has run, from its statistics.
fn jobs_run(node: &Node) -> u64 {
    let stats = node.statistics();
    stats
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("jobs="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no job count in {stats}"))
}

/// Waits (at most [`WAIT`]) until `text` occurs `n` times in the node's log.
fn wait_for_count(node: &Node, text: &str, n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while node.log.count(text) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{text:?} not logged {n} times within {WAIT:?}; log:\n{}",
            node.log.text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (at most [`WAIT`]) until the node's statistics show `n` open connections.
fn wait_for_active(node: &Node, n: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    let want = format!("active={n} ");
    loop {
        let stats = node.statistics();
        if stats.contains(&want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not {want:?} within {WAIT:?}: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Raises this process's soft limit of open files to `want` (within the hard limit), for
/// the flood of connections; the node started after inherits it.
fn raise_open_file_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A change to the bytes of one write.
type Change = Box<dyn FnOnce(Vec<u8>) -> Vec<u8> + Send>;

/// What a [`Tap`] recorded, and the change to make to the next write.
#[derive(Default)]
struct TapState {
    /// Every byte that went to the socket.
    written: Vec<u8>,
    /// Applied to the bytes of the next write (a whole frame: the channel writes each
    /// frame at once).
    next: Option<Change>,
    /// The changed write, still being written, and the length to report for it.
    out: Vec<u8>,
    out_for: Option<usize>,
}

/// The client's sending half, recorded and changed on demand: a man in the middle.
struct Tap {
    inner: OwnedWriteHalf,
    state: Arc<Mutex<TapState>>,
}

impl AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let mut state = this.state.lock().unwrap();
        if state.out_for.is_none() {
            let bytes = match state.next.take() {
                Some(change) => change(buf.to_vec()),
                None => buf.to_vec(),
            };
            state.written.extend_from_slice(&bytes);
            state.out = bytes;
            state.out_for = Some(buf.len());
        }
        while !state.out.is_empty() {
            match Pin::new(&mut this.inner).poll_write(cx, &state.out) {
                Poll::Ready(Ok(n)) => {
                    state.out.drain(..n);
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(state.out_for.take().unwrap_or(0)))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A genuine client handshake whose sending half goes through a [`Tap`].
async fn tapped(
    addr: SocketAddr,
) -> Result<(SecureReader, SecureWriter<Tap>, Arc<Mutex<TapState>>), NetError> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (reader, writer) = stream.into_split();
    let state = Arc::new(Mutex::new(TapState::default()));
    let tap = Tap {
        inner: writer,
        state: Arc::clone(&state),
    };
    let secret = Secret::new(SECRET)?;
    let (reader, writer) = client_handshake(
        reader,
        tap,
        Peer(Some(addr)),
        &secret,
        ChannelConfig::default(),
    )
    .await?;
    Ok((reader, writer, state))
}
