//! Local benchmark: pp's job server beside rayon (and the serial program) in one run.
//!
//! Run with `cargo bench --bench local`; it prints Markdown tables for BENCHMARKS.md.
//! Each figure is the median of several runs; rayon runs on its own 2-thread pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[pp::parallel]
fn empty() {}

const TINY_JOBS: usize = 1_000_000;
const RUNS: usize = 5;
const LATENCY_SAMPLES: usize = 20_000;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

fn percentile(xs: &mut [Duration], p: f64) -> Duration {
    xs.sort_unstable();
    xs[((xs.len() as f64 * p) as usize).min(xs.len() - 1)]
}

fn pp_tiny_jobs(server: &pp::Server) -> Duration {
    let start = Instant::now();
    let jobs: Vec<_> = (0..TINY_JOBS).map(|_| server.submit(empty, ())).collect();
    for job in jobs {
        job.result().expect("empty job");
    }
    start.elapsed()
}

fn rayon_tiny_jobs(pool: &rayon::ThreadPool) -> Duration {
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    for _ in 0..TINY_JOBS {
        let done = Arc::clone(&done);
        pool.spawn(move || {
            done.fetch_add(1, Ordering::Release);
        });
    }
    while done.load(Ordering::Acquire) < TINY_JOBS {
        std::thread::yield_now();
    }
    start.elapsed()
}

fn pp_latency(server: &pp::Server) -> Vec<Duration> {
    (0..LATENCY_SAMPLES)
        .map(|_| {
            let start = Instant::now();
            server.submit(empty, ()).result().expect("empty job");
            start.elapsed()
        })
        .collect()
}

fn rayon_latency(pool: &rayon::ThreadPool) -> Vec<Duration> {
    (0..LATENCY_SAMPLES)
        .map(|_| {
            let start = Instant::now();
            pool.install(|| std::hint::black_box(()));
            start.elapsed()
        })
        .collect()
}

fn rate(d: Duration) -> f64 {
    TINY_JOBS as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let workers = 2;
    let server = pp::Server::builder()
        .ncpus(workers)
        .build()
        .expect("server");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .expect("rayon pool");

    let mut pp_runs = Vec::new();
    let mut rayon_runs = Vec::new();
    for _ in 0..RUNS {
        pp_runs.push(pp_tiny_jobs(&server));
        rayon_runs.push(rayon_tiny_jobs(&pool));
    }
    let (pp_t, rayon_t) = (median(pp_runs), median(rayon_runs));
    println!("## Tiny jobs: {TINY_JOBS} empty jobs, {workers} workers, median of {RUNS} runs\n");
    println!("| system | time | jobs/s | ratio to rayon |");
    println!("|---|---|---|---|");
    println!(
        "| pp submit + result | {:.3} s | {:.2} M | {:.2} |",
        pp_t.as_secs_f64(),
        rate(pp_t),
        rate(pp_t) / rate(rayon_t)
    );
    println!(
        "| rayon `spawn` | {:.3} s | {:.2} M | 1.00 |\n",
        rayon_t.as_secs_f64(),
        rate(rayon_t)
    );

    let (mut pp_lat, mut rayon_lat) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        pp_lat.extend(pp_latency(&server));
        rayon_lat.extend(rayon_latency(&pool));
    }
    println!(
        "## One job submitted and awaited alone ({} samples)\n",
        RUNS * LATENCY_SAMPLES
    );
    println!("| system | median | p99 |");
    println!("|---|---|---|");
    for (name, lat) in [
        ("pp submit + result", &mut pp_lat),
        ("rayon `install`", &mut rayon_lat),
    ] {
        let med = percentile(lat, 0.5);
        let p99 = percentile(lat, 0.99);
        println!(
            "| {name} | {:.2} µs | {:.2} µs |",
            med.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    println!();
}
