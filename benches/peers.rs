//! Our side of the benchmark against the peers (ppft, Python's process pool, Dask, Ray):
//! one invocation runs one system with one worker count through a list of workloads once,
//! and prints one JSON line per workload. `benches/peers/run.sh` builds this program and
//! alternates its invocations with the Python peers' (benches/peers/agent.py), so that drift
//! hits every system alike; the workloads are the same on both sides.
//!
//! ```text
//! peers --system pp|rayon|serial|pp-remote --workers N [--server HOST:PORT]
//!       [--workloads sum_primes,ln2,md5,tiny,latency] [--tiny-jobs N] [--latency-samples N]
//!       [--warmup 0|1]
//! ```
//!
//! `pp-remote` runs the jobs on the `ppserver` at `--server` (secret from `PP_SECRET`), with
//! no local worker. Each result is checked; a wrong one is reported with `"ok": false`.
//! Not a `cargo test` target: run by hand through run.sh (see BENCHMARKS.md).

// Each example file brings its own copy of examples/common, as it does when built alone.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/sum_primes.rs"]
#[allow(dead_code)]
mod sum_primes;

#[path = "../examples/reverse_md5.rs"]
#[allow(dead_code)]
mod reverse_md5;

#[path = "../examples/callback.rs"]
#[allow(dead_code)]
mod callback;

use rayon::prelude::*;

use std::f64::consts::LN_2;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The tiny job: the argument plus one.
#[pp::parallel]
fn add_one(x: u64) -> u64 {
    x + 1
}

/// The sums of primes below the eight inputs of `sum_primes` (PP's expected values).
const SUM_PRIMES: [u64; 8] = [
    454_396_537,
    454_996_777,
    455_898_156,
    456_700_218,
    457_603_451,
    458_407_033,
    459_412_387,
    460_217_613,
];

/// The ln 2 partial sums end at k = 19,999,999: about 2.5e-8 above ln 2.
const LN2_TOLERANCE: f64 = 3e-8;
/// Jobs of the ln 2 workload.
const LN2_PARTS: u64 = 128;

/// How a system runs jobs.
enum System {
    Serial,
    Rayon(rayon::ThreadPool),
    Pp(pp::Server),
}

/// A task's plain function pointer, hidden from the optimiser, so that serial and rayon run
/// the same machine code as pp's jobs (see benches/local.rs).
fn plain<F: Copy>(task: pp::Task<F>) -> F {
    std::hint::black_box(*task)
}

fn ln2_ranges() -> Vec<(u64, u64)> {
    callback::common::split(callback::START, callback::END, LN2_PARTS)
}

fn md5_ranges() -> Vec<(u64, u64)> {
    reverse_md5::common::split(reverse_md5::START, reverse_md5::END, reverse_md5::PARTS)
}

fn md5_target() -> String {
    reverse_md5::md5_hex(&reverse_md5::SECRET.to_string())
}

/// The eight sums of primes, in input order.
fn sum_primes(system: &System) -> Vec<u64> {
    use sum_primes::{inputs, sum_primes};
    match system {
        System::Serial => inputs().map(|n| plain(sum_primes)(n)).collect(),
        System::Rayon(pool) => pool.install(|| {
            let ns: Vec<u64> = inputs().collect();
            ns.par_iter().map(|&n| plain(sum_primes)(n)).collect()
        }),
        System::Pp(server) => {
            let jobs: Vec<_> = inputs().map(|n| server.submit(sum_primes, (n,))).collect();
            jobs.into_iter().map(|j| j.result().expect("job")).collect()
        }
    }
}

/// The 128 partial sums of the ln 2 series, added in job order.
fn ln2(system: &System) -> f64 {
    use callback::common::part_sum;
    let parts: Vec<f64> = match system {
        System::Serial => ln2_ranges()
            .into_iter()
            .map(|(lo, hi)| plain(part_sum)(lo, hi))
            .collect(),
        System::Rayon(pool) => pool.install(|| {
            ln2_ranges()
                .into_par_iter()
                .map(|(lo, hi)| plain(part_sum)(lo, hi))
                .collect()
        }),
        System::Pp(server) => {
            let jobs: Vec<_> = ln2_ranges()
                .into_iter()
                .map(|(lo, hi)| server.submit(part_sum, (lo, hi)))
                .collect();
            jobs.into_iter().map(|j| j.result().expect("job")).collect()
        }
    };
    parts.into_iter().sum()
}

/// Every hit of the md5 search: 128 jobs scan 1..2,000,000 in full.
fn md5(system: &System) -> Vec<u64> {
    use reverse_md5::md5_test;
    let hash = md5_target();
    match system {
        System::Serial => md5_ranges()
            .into_iter()
            .filter_map(|(lo, hi)| plain(md5_test)(hash.clone(), lo, hi))
            .collect(),
        System::Rayon(pool) => pool.install(|| {
            md5_ranges()
                .into_par_iter()
                .filter_map(|(lo, hi)| plain(md5_test)(hash.clone(), lo, hi))
                .collect()
        }),
        System::Pp(server) => {
            let jobs: Vec<_> = md5_ranges()
                .into_iter()
                .map(|(lo, hi)| server.submit(md5_test, (hash.clone(), lo, hi)))
                .collect();
            jobs.into_iter()
                .filter_map(|j| j.result().expect("job"))
                .collect()
        }
    }
}

/// `jobs` tiny jobs submitted at once; returns their results in submission order.
fn tiny(system: &System, jobs: u64) -> Vec<u64> {
    match system {
        System::Serial => (0..jobs).map(|i| plain(add_one)(i)).collect(),
        System::Rayon(pool) => {
            // One rayon job per tiny job, each writing its own result slot.
            let mut out = vec![0; jobs as usize];
            pool.scope(|s| {
                for (i, slot) in out.iter_mut().enumerate() {
                    s.spawn(move |_| *slot = plain(add_one)(i as u64));
                }
            });
            out
        }
        System::Pp(server) => {
            let handles: Vec<_> = (0..jobs).map(|i| server.submit(add_one, (i,))).collect();
            handles
                .into_iter()
                .map(|j| j.result().expect("job"))
                .collect()
        }
    }
}

/// One tiny job submitted and awaited alone.
fn one(system: &System, x: u64) -> u64 {
    match system {
        System::Serial => plain(add_one)(x),
        System::Rayon(pool) => pool.install(|| plain(add_one)(x)),
        System::Pp(server) => server.submit(add_one, (x,)).result().expect("job"),
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// Runs `workload` once; returns its JSON fields (after `"workload"`), or what was wrong.
/// `scale` divides the tiny jobs and the single-job samples (10 for the warm-up).
fn run(system: &System, workload: &str, opts: &Options, scale: u64) -> Result<String, String> {
    let start = Instant::now();
    match workload {
        "sum_primes" => {
            let sums = sum_primes(system);
            let seconds = start.elapsed().as_secs_f64();
            check(sums == SUM_PRIMES, || format!("sum_primes gave {sums:?}"))?;
            Ok(format!(r#""seconds":{seconds:e}"#))
        }
        "ln2" => {
            let sum = ln2(system);
            let seconds = start.elapsed().as_secs_f64();
            check((sum - LN_2).abs() < LN2_TOLERANCE, || {
                format!("ln2 gave {sum}, off by {}", sum - LN_2)
            })?;
            Ok(format!(r#""seconds":{seconds:e}"#))
        }
        "md5" => {
            let hits = md5(system);
            let seconds = start.elapsed().as_secs_f64();
            check(hits == [reverse_md5::SECRET], || {
                format!("md5 found {hits:?}")
            })?;
            Ok(format!(r#""seconds":{seconds:e}"#))
        }
        "tiny" => {
            let n = (opts.tiny_jobs / scale).max(1);
            let out = tiny(system, n);
            let seconds = start.elapsed().as_secs_f64();
            check(out.iter().copied().eq(1..=n), || {
                "tiny jobs: a result is not its argument plus one".to_owned()
            })?;
            Ok(format!(r#""jobs":{n},"seconds":{seconds:e}"#))
        }
        "latency" => {
            let count = (opts.latency_samples as u64 / scale).max(1);
            let mut samples: Vec<Duration> = Vec::with_capacity(count as usize);
            for i in 0..count {
                let start = Instant::now();
                let r = one(system, i);
                samples.push(start.elapsed());
                check(r == i + 1, || format!("one job: add_one({i}) gave {r}"))?;
            }
            samples.sort_unstable();
            let at = |p: f64| {
                let i = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
                samples[i].as_secs_f64()
            };
            Ok(format!(
                r#""samples":{},"median_s":{:e},"p99_s":{:e}"#,
                samples.len(),
                at(0.5),
                at(0.99)
            ))
        }
        other => Err(format!("unknown workload {other}")),
    }
}

struct Options {
    system: String,
    workers: usize,
    server: Option<String>,
    workloads: Vec<String>,
    tiny_jobs: u64,
    latency_samples: usize,
    warmup: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        system: String::new(),
        workers: 2,
        server: None,
        workloads: ["sum_primes", "ln2", "md5", "tiny", "latency"]
            .map(str::to_owned)
            .to_vec(),
        tiny_jobs: 10_000,
        latency_samples: 1_000,
        warmup: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        // `cargo bench` passes `--bench`; nothing else is a bare flag.
        if flag == "--bench" {
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--system" => opts.system = value,
            "--workers" => opts.workers = number(&value)? as usize,
            "--server" => opts.server = Some(value),
            "--workloads" => opts.workloads = value.split(',').map(str::to_owned).collect(),
            "--tiny-jobs" => opts.tiny_jobs = number(&value)?,
            "--latency-samples" => opts.latency_samples = number(&value)?.max(1) as usize,
            "--warmup" => opts.warmup = number(&value)? != 0,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(opts)
}

fn build(opts: &Options) -> Result<System, String> {
    let workers = opts.workers.max(1);
    Ok(match opts.system.as_str() {
        "serial" => System::Serial,
        "rayon" => System::Rayon(
            rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "pp" => System::Pp(
            pp::Server::builder()
                .ncpus(workers)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "pp-remote" => {
            let server = opts.server.as_deref().ok_or("pp-remote needs --server")?;
            let secret = std::env::var("PP_SECRET").map_err(|_| "pp-remote needs PP_SECRET")?;
            System::Pp(
                pp::Server::builder()
                    .ppservers([server])
                    .secret(secret)
                    .ncpus(0)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        }
        other => return Err(format!("unknown system {other}")),
    })
}

fn json_str(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("peers: {e}");
            return ExitCode::from(2);
        }
    };
    let system = match build(&opts) {
        Ok(system) => system,
        Err(e) => {
            eprintln!("peers: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Warm-up, not measured: wakes the workers (for pp-remote: the connection and the
    // upload of this program to the node).
    for i in 0..4 * opts.workers as u64 {
        if one(&system, i) != i + 1 {
            eprintln!("peers: warm-up job gave a wrong result");
            return ExitCode::FAILURE;
        }
    }
    if opts.warmup {
        // Every workload once, tiny jobs and single jobs at a tenth, not measured (as the
        // Python agent does).
        for workload in &opts.workloads {
            if let Err(e) = run(&system, workload, &opts, 10) {
                eprintln!("peers: warm-up of {workload}: {e}");
            }
        }
    }
    let mut failed = false;
    for workload in &opts.workloads {
        let head = format!(
            r#"{{"system":{},"workers":{},"workload":{}"#,
            json_str(&opts.system),
            opts.workers,
            json_str(workload)
        );
        match run(&system, workload, &opts, 1) {
            Ok(fields) => println!(r#"{head},"ok":true,{fields}}}"#),
            Err(e) => {
                failed = true;
                println!(r#"{head},"ok":false,"error":{}}}"#, json_str(&e));
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
