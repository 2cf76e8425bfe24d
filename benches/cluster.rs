//! Cluster benchmark: one `ppserver` node on 127.0.0.1 with 2 workers, beside the loopback
//! floor (a plain TCP echo) measured in the same run.
//!
//! Run with `cargo bench --bench cluster`; it prints Markdown tables for BENCHMARKS.md. The
//! client runs no local worker, so every job crosses the network, encrypted.
//!
//! `PP_BENCH_ONLY=tiny`, `latency` or `big` runs one part alone (for profiling); `blob` runs
//! only the block-encoded 16 MiB argument.

mod common;

use common::{median, percentile, Node, SECRET};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const TINY_JOBS: usize = 200_000;
const LATENCY_SAMPLES: usize = 2_000;
const BIG_ARG: usize = 16 << 20;
const RUNS: usize = 5;
/// Runs of each 16 MiB measure: one job each, so more of them for a steady median.
const BIG_RUNS: usize = 15;

#[pp::parallel]
fn empty() {}

#[pp::parallel]
fn length(bytes: Vec<u8>) -> u64 {
    bytes.len() as u64
}

/// Bytes that serde moves as one block (see `pp::codec::bytes`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Blob {
    #[serde(with = "pp::codec::bytes")]
    data: Vec<u8>,
}

#[pp::parallel]
fn blob_length(blob: Blob) -> u64 {
    blob.data.len() as u64
}

/// A TCP echo server on loopback: the floor any remote job pays.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One round trip of a 32-byte message through the echo.
fn echo_round_trip(stream: &mut TcpStream) -> Duration {
    let mut message = [0u8; 32];
    let start = Instant::now();
    stream.write_all(&message).expect("write");
    stream.read_exact(&mut message).expect("read");
    start.elapsed()
}

/// Small messages per second through the echo, pipelined by a writer thread.
fn echo_messages_per_second(addr: &str) -> f64 {
    const MESSAGES: usize = 1_000_000;
    const SIZE: usize = 32;
    let stream = TcpStream::connect(addr).expect("connect echo");
    stream.set_nodelay(true).expect("nodelay");
    let mut writer = stream.try_clone().expect("clone");
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let batch = vec![7u8; SIZE * 1000];
        for _ in 0..MESSAGES / 1000 {
            writer.write_all(&batch).expect("write");
        }
    });
    let mut reader = stream;
    let mut left = MESSAGES * SIZE;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = reader.read(&mut buf).expect("read");
        assert!(n > 0, "echo closed");
        left -= n.min(left);
    }
    sender.join().expect("writer");
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let node = Node::start(2);
    let server = pp::Server::builder()
        .ppservers([node.addr.as_str()])
        .secret(SECRET)
        .ncpus(0)
        .build()
        .expect("cluster client");
    // The first job waits for the connection and the upload; it is not measured.
    server.submit(empty, ()).result().expect("warm-up job");
    let echo = echo_server();

    let only = std::env::var("PP_BENCH_ONLY").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only == name;

    println!("## One node on 127.0.0.1 (2 workers), client with no local worker, median of {RUNS} runs\n");
    println!("| measure | pp through ppserver | loopback floor (TCP echo) | ratio |");
    println!("|---|---|---|---|");
    if part("tiny") {
        tiny_jobs(&server, &echo);
    }
    if part("latency") {
        // A second client of the same node, whose lone jobs take the session's workers.
        let no_lanes = pp::Server::builder()
            .ppservers([node.addr.as_str()])
            .secret(SECRET)
            .ncpus(0)
            .lanes(false)
            .build()
            .expect("cluster client without lanes");
        no_lanes.submit(empty, ()).result().expect("warm-up job");
        one_job_alone(&server, &no_lanes, &echo);
    }
    if part("big") || only == "blob" {
        big_argument(&server, only != "blob");
    }
    println!();
    server.print_stats();
}

fn tiny_jobs(server: &pp::Server, echo: &str) {
    let mut rates = Vec::new();
    let mut echo_rates = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let jobs: Vec<_> = (0..TINY_JOBS).map(|_| server.submit(empty, ())).collect();
        for job in jobs {
            job.result().expect("tiny job");
        }
        rates.push(TINY_JOBS as f64 / start.elapsed().as_secs_f64());
        echo_rates.push(echo_messages_per_second(echo));
    }
    rates.sort_by(f64::total_cmp);
    echo_rates.sort_by(f64::total_cmp);
    let (rate, floor) = (rates[RUNS / 2], echo_rates[RUNS / 2]);
    println!(
        "| tiny jobs pipelined ({TINY_JOBS} per run) | {:.0} jobs/s | {:.0} messages/s | {:.3} |",
        rate,
        floor,
        rate / floor
    );
}

fn one_job_alone(server: &pp::Server, no_lanes: &pp::Server, echo: &str) {
    // Alternate a job on each client and one echo round trip, so all see the same machine
    // state.
    let mut echo_stream = TcpStream::connect(echo).expect("connect echo");
    echo_stream.set_nodelay(true).expect("nodelay");
    let mut lane_lat: Vec<Duration> = Vec::new();
    let mut session_lat: Vec<Duration> = Vec::new();
    let mut echo_lat: Vec<Duration> = Vec::new();
    let time = |server: &pp::Server| {
        let start = Instant::now();
        server.submit(empty, ()).result().expect("job");
        start.elapsed()
    };
    for _ in 0..RUNS * LATENCY_SAMPLES {
        lane_lat.push(time(server));
        session_lat.push(time(no_lanes));
        echo_lat.push(echo_round_trip(&mut echo_stream));
    }
    let echo_med = percentile(&mut echo_lat, 0.5);
    let echo_99 = percentile(&mut echo_lat, 0.99);
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    for (what, lat) in [
        ("on a lane (the default)", &mut lane_lat),
        ("lanes off", &mut session_lat),
    ] {
        let (med, p99) = (percentile(lat, 0.5), percentile(lat, 0.99));
        println!(
            "| one job alone, {what}, median (p99) | {:.1} µs ({:.1} µs) | {:.1} µs ({:.1} µs) round trip | {:.2} |",
            micros(med),
            micros(p99),
            micros(echo_med),
            micros(echo_99),
            med.as_secs_f64() / echo_med.as_secs_f64()
        );
    }
}

/// Both encodings of a 16 MiB argument; only the block one without `with_plain`.
fn big_argument(server: &pp::Server, with_plain: bool) {
    let big = vec![7u8; BIG_ARG];
    if with_plain {
        big_row(
            "one 16 MiB argument (`Vec<u8>`), end to end",
            || big.clone(),
            |arg| server.submit(length, (arg,)).result(),
        );
    }
    big_row(
        "one 16 MiB argument (`#[serde(with = \"pp::codec::bytes\")]`), end to end",
        || Blob { data: big.clone() },
        |arg| server.submit(blob_length, (arg,)).result(),
    );
}

/// Prints the median of [`BIG_RUNS`] jobs, each timed from submit to result; the argument
/// is made (copied) before the clock starts.
fn big_row<A>(what: &str, make: impl Fn() -> A, run: impl Fn(A) -> Result<u64, pp::JobError>) {
    let times: Vec<Duration> = (0..BIG_RUNS)
        .map(|_| {
            let arg = make();
            let start = Instant::now();
            let n = run(arg).expect("big job");
            assert_eq!(n, BIG_ARG as u64);
            start.elapsed()
        })
        .collect();
    let t = median(times);
    println!(
        "| {what} | {:.2} GB/s ({:.1} ms) | | |",
        BIG_ARG as f64 / t.as_secs_f64() / 1e9,
        t.as_secs_f64() * 1e3
    );
}
