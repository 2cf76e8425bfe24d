//! Job control (issue 16): tiny jobs through `submit` beside rayon's `spawn`, and
//! `Server::map` over many tiny inputs beside rayon's `par_iter().map().collect()`, in one
//! run on pools of the same size.
//!
//! Run with `cargo bench --bench job_control`; it prints a Markdown table for
//! BENCHMARKS.md. Each figure is the median of several runs, the systems alternating so
//! that drift hits both alike. `JOB_CONTROL_WORKERS` sets the pool size (default 2);
//! `JOB_CONTROL_ONLY=submit` runs the tiny jobs only, `JOB_CONTROL_ONLY=map` the maps only
//! (more runs; for a profiler).

mod common;

use common::median;
use rayon::prelude::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

#[pp::parallel]
fn add_one(x: u64) -> u64 {
    x + 1
}

const TINY_JOBS: u64 = 1_000;
const TINY_RUNS: usize = 201;
const MAP_INPUTS: u64 = 1_000_000;
const MAP_RUNS: usize = 11;

fn pp_tiny(server: &pp::Server) -> Duration {
    let start = Instant::now();
    let jobs: Vec<_> = (0..TINY_JOBS)
        .map(|i| server.submit(add_one, (i,)))
        .collect();
    let out: Vec<u64> = jobs.into_iter().map(|j| j.result().expect("job")).collect();
    let took = start.elapsed();
    assert_eq!(out[999], 1000);
    took
}

fn rayon_tiny(pool: &rayon::ThreadPool) -> Duration {
    let start = Instant::now();
    let mut out = vec![0; TINY_JOBS as usize];
    pool.scope(|s| {
        for (i, slot) in out.iter_mut().enumerate() {
            s.spawn(move |_| *slot = black_box(*add_one)(i as u64));
        }
    });
    let took = start.elapsed();
    assert_eq!(out[999], 1000);
    took
}

fn pp_map(server: &pp::Server, inputs: &[u64]) -> Duration {
    let start = Instant::now();
    let mut options = pp::MapOptions::new();
    if let Some(b) = std::env::var("JCB").ok().and_then(|v| v.parse().ok()) {
        options = options.batch(b);
    }
    if let Some(b) = std::env::var("JCF").ok().and_then(|v| v.parse().ok()) {
        options = options.in_flight(b);
    }
    let out: Vec<u64> = server
        .map_with(add_one, inputs.iter().map(|&x| (x,)), options)
        .map(|r| r.expect("input"))
        .collect();
    let took = start.elapsed();
    assert_eq!(out[inputs.len() - 1], MAP_INPUTS);
    took
}

fn rayon_map(pool: &rayon::ThreadPool, inputs: &[u64]) -> Duration {
    let start = Instant::now();
    let out: Vec<u64> =
        pool.install(|| inputs.par_iter().map(|&x| black_box(*add_one)(x)).collect());
    let took = start.elapsed();
    assert_eq!(out[inputs.len() - 1], MAP_INPUTS);
    took
}

/// Runs `a` and `b` alternately `runs` times (after one warm-up each); their medians.
fn pair(
    runs: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    a();
    b();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        xs.push(a());
        ys.push(b());
    }
    (median(xs), median(ys))
}

fn main() {
    let workers: usize = std::env::var("JOB_CONTROL_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let (server, pool) = common::pp_and_rayon(workers);
    let server = match std::env::var("JCW").ok().and_then(|v| v.parse().ok()) {
        Some(n) => pp::Server::builder().ncpus(n).build().unwrap(),
        None => server,
    };
    let inputs: Vec<u64> = (0..MAP_INPUTS).collect();
    let only = std::env::var("JOB_CONTROL_ONLY").unwrap_or_default();
    if only == "map" {
        let (pp_m, rayon_m) = pair(
            MAP_RUNS * 20,
            || pp_map(&server, &inputs),
            || rayon_map(&pool, &inputs),
        );
        println!("| {MAP_INPUTS} tiny inputs | {pp_m:?} | {rayon_m:?} |");
        return;
    }
    let (pp_t, rayon_t) = pair(TINY_RUNS, || pp_tiny(&server), || rayon_tiny(&pool));
    if only == "submit" {
        println!("| {TINY_JOBS} tiny jobs | {pp_t:?} | {rayon_t:?} |");
        return;
    }
    let (pp_m, rayon_m) = pair(
        MAP_RUNS,
        || pp_map(&server, &inputs),
        || rayon_map(&pool, &inputs),
    );
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!("| {workers} workers | pp | rayon | pp / rayon (rate) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {TINY_JOBS} tiny jobs: `submit` / `spawn` (median of {TINY_RUNS}) | {:.0} µs ({:.2} M jobs/s) | {:.0} µs ({:.2} M jobs/s) | {:.2} |",
        pp_t.as_secs_f64() * 1e6,
        rate(TINY_JOBS, pp_t) / 1e6,
        rayon_t.as_secs_f64() * 1e6,
        rate(TINY_JOBS, rayon_t) / 1e6,
        rayon_t.as_secs_f64() / pp_t.as_secs_f64()
    );
    println!(
        "| `map` / `par_iter().map().collect()` over {MAP_INPUTS} tiny inputs (median of {MAP_RUNS}) | {:.2} ms ({:.0} M/s) | {:.2} ms ({:.0} M/s) | {:.2} |",
        pp_m.as_secs_f64() * 1e3,
        rate(MAP_INPUTS, pp_m) / 1e6,
        rayon_m.as_secs_f64() * 1e3,
        rate(MAP_INPUTS, rayon_m) / 1e6,
        rayon_m.as_secs_f64() / pp_m.as_secs_f64()
    );
}
