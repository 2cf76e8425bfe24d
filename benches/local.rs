//! Local benchmark: pp's job server beside rayon (and the serial program) in one run.
//!
//! Run with `cargo bench --bench local`; it prints Markdown tables for BENCHMARKS.md.
//! Each figure is the median of several runs, the systems alternating so that drift hits
//! all alike; rayon runs on its own pool of the same size as pp's. The example workloads
//! are the examples' own job functions (the example files are included as modules).

// Each example file brings its own copy of examples/common, as it does when built alone.
#![allow(clippy::duplicate_mod)]

mod common;

use common::{median, percentile};

#[path = "../examples/sum_primes.rs"]
#[allow(dead_code)]
mod sum_primes;

#[path = "../examples/reverse_md5.rs"]
#[allow(dead_code)]
mod reverse_md5;

#[path = "../examples/callback.rs"]
#[allow(dead_code)]
mod callback;

#[path = "../examples/auto_diff.rs"]
#[allow(dead_code)]
mod auto_diff;

use rayon::prelude::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[pp::parallel]
fn empty() {}

const TINY_JOBS: usize = 1_000_000;
const RUNS: usize = 5;
const LATENCY_SAMPLES: usize = 20_000;

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

/// One example workload, run three ways on the same inputs.
struct Workload {
    name: &'static str,
    serial: fn() -> f64,
    pp: fn(&pp::Server) -> f64,
    rayon: fn() -> f64,
}

/// The ln 2 partial sum over 1..20,000,000 in `parts` jobs.
fn ln2_ranges(parts: u64) -> Vec<(u64, u64)> {
    callback::common::split(callback::START, callback::END, parts)
}

fn md5_ranges() -> Vec<(u64, u64)> {
    reverse_md5::common::split(reverse_md5::START, reverse_md5::END, reverse_md5::PARTS)
}

fn md5_target() -> String {
    reverse_md5::md5_hex(&reverse_md5::SECRET.to_string())
}

/// A task's plain function pointer, hidden from the optimiser, so that serial and rayon run
/// the same machine code as pp's jobs: inlined into a caller that knows its arguments, LLVM
/// may compile a job's loop differently (twice as fast for `t_log` with a constant `n`),
/// which is not a scheduling effect.
fn plain<F: Copy>(task: pp::Task<F>) -> F {
    std::hint::black_box(*task)
}

/// `t_log` as a plain function pointer (see [`plain`]).
fn t_log() -> fn(auto_diff::PartialSum, auto_diff::Dual) -> auto_diff::Dual {
    plain(auto_diff::PartialSum::T_LOG)
}

/// Uses value and derivative alike, so no system can skip computing either.
fn both(d: auto_diff::Dual) -> f64 {
    d.value + d.deriv
}

fn workloads() -> Vec<Workload> {
    use auto_diff::{points, Dual, PartialSum, TERMS};
    use callback::common::part_sum;
    use reverse_md5::md5_test;
    use sum_primes::{inputs, sum_primes};
    vec![
        Workload {
            name: "sum_primes (8 jobs)",
            serial: || inputs().map(|n| plain(sum_primes)(n) as f64).sum(),
            pp: |s| {
                let jobs: Vec<_> = inputs().map(|n| s.submit(sum_primes, (n,))).collect();
                jobs.into_iter().map(|j| j.result().unwrap() as f64).sum()
            },
            rayon: || {
                let ns: Vec<u64> = inputs().collect();
                ns.par_iter().map(|&n| plain(sum_primes)(n) as f64).sum()
            },
        },
        Workload {
            name: "reverse_md5, full scan (128 jobs)",
            serial: || {
                let hash = md5_target();
                md5_ranges()
                    .into_iter()
                    .filter_map(|(lo, hi)| plain(md5_test)(hash.clone(), lo, hi))
                    .sum::<u64>() as f64
            },
            pp: |s| {
                let hash = md5_target();
                let jobs: Vec<_> = md5_ranges()
                    .into_iter()
                    .map(|(lo, hi)| s.submit(md5_test, (hash.clone(), lo, hi)))
                    .collect();
                jobs.into_iter()
                    .filter_map(|j| j.result().unwrap())
                    .sum::<u64>() as f64
            },
            rayon: || {
                let hash = md5_target();
                md5_ranges()
                    .into_par_iter()
                    .filter_map(|(lo, hi)| plain(md5_test)(hash.clone(), lo, hi))
                    .sum::<u64>() as f64
            },
        },
        Workload {
            name: "dynamic_ncpus: ln 2 (64 jobs)",
            serial: || {
                ln2_ranges(64)
                    .into_iter()
                    .map(|(lo, hi)| plain(part_sum)(lo, hi))
                    .sum()
            },
            pp: |s| {
                let jobs: Vec<_> = ln2_ranges(64)
                    .into_iter()
                    .map(|(lo, hi)| s.submit(part_sum, (lo, hi)))
                    .collect();
                jobs.into_iter().map(|j| j.result().unwrap()).sum()
            },
            rayon: || {
                ln2_ranges(64)
                    .into_par_iter()
                    .map(|(lo, hi)| plain(part_sum)(lo, hi))
                    .sum()
            },
        },
        Workload {
            name: "callback: ln 2 (128 jobs, callback sum)",
            serial: || {
                ln2_ranges(128)
                    .into_iter()
                    .map(|(lo, hi)| plain(part_sum)(lo, hi))
                    .sum()
            },
            pp: |s| {
                let total = callback::Sum::default();
                let total = std::sync::Arc::new(total);
                let adder = std::sync::Arc::clone(&total);
                let template = s.template(part_sum).callback(move |r| adder.add(r));
                for (lo, hi) in ln2_ranges(128) {
                    let _job = template.submit((lo, hi));
                }
                s.wait();
                total.value().unwrap()
            },
            rayon: || {
                let total = std::sync::Mutex::new(0.0);
                ln2_ranges(128).into_par_iter().for_each(|(lo, hi)| {
                    let v = plain(part_sum)(lo, hi);
                    *total.lock().unwrap() += v;
                });
                total.into_inner().unwrap()
            },
        },
        Workload {
            name: "auto_diff (32 jobs)",
            serial: || {
                let ps = PartialSum::new(TERMS);
                points()
                    .map(|x| both(t_log()(ps.clone(), Dual::variable(x))))
                    .sum()
            },
            pp: |s| {
                let ps = PartialSum::new(TERMS);
                let jobs: Vec<_> = points()
                    .map(|x| s.submit(PartialSum::T_LOG, (ps.clone(), Dual::variable(x))))
                    .collect();
                jobs.into_iter().map(|j| both(j.result().unwrap())).sum()
            },
            rayon: || {
                let ps = PartialSum::new(TERMS);
                let xs: Vec<f64> = points().collect();
                xs.par_iter()
                    .map(|&x| both(t_log()(ps.clone(), Dual::variable(x))))
                    .sum()
            },
        },
    ]
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed()
}

fn example_workloads() {
    println!("## The examples' workloads: serial, pp and rayon, median of {RUNS} runs\n");
    println!("| workload | workers | serial | pp | rayon | pp speedup | rayon speedup | pp / rayon speedup |");
    println!("|---|---|---|---|---|---|---|---|");
    for workload in workloads() {
        for workers in [1, 2] {
            let (server, pool) = common::pp_and_rayon(workers);
            let (mut serial, mut with_pp, mut with_rayon) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..RUNS {
                serial.push(time(workload.serial));
                with_pp.push(time(|| (workload.pp)(&server)));
                with_rayon.push(time(|| pool.install(workload.rayon)));
            }
            let (serial, with_pp, with_rayon) =
                (median(serial), median(with_pp), median(with_rayon));
            let pp_speedup = serial.as_secs_f64() / with_pp.as_secs_f64();
            let rayon_speedup = serial.as_secs_f64() / with_rayon.as_secs_f64();
            println!(
                "| {} | {workers} | {:.1} ms | {:.1} ms | {:.1} ms | {pp_speedup:.2} | {rayon_speedup:.2} | {:.3} |",
                workload.name,
                serial.as_secs_f64() * 1e3,
                with_pp.as_secs_f64() * 1e3,
                with_rayon.as_secs_f64() * 1e3,
                pp_speedup / rayon_speedup
            );
        }
    }
    println!();
}

fn main() {
    example_workloads();
    let workers = 2;
    let (server, pool) = common::pp_and_rayon(workers);

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
