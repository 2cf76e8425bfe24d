//! `par!` beside rayon's parallel iterators and the serial loop, on the same loops in one run.
//!
//! Run with `cargo bench --bench par`; it prints a Markdown table for BENCHMARKS.md. Each
//! figure is the median of several runs (7; 201 for the empty loop), the systems
//! alternating so that drift hits all alike, with a 5 ms pause before each run so that
//! every pool starts asleep. pp and rayon each get a pool of 2 workers. The loops:
//! - ln 2: the partial sum over 1..20,000,000 (`sum`);
//! - md5: the reverse md5 search over 1..2,000,000 for the hash of "1829182" (`find`: the
//!   number is 91% of the way, so most of the range is scanned);
//! - empty: a loop of 10,000,000 iterations with an empty body, which measures what
//!   splitting, scheduling and joining cost: once with the pools asleep before each run
//!   (waking threads included), once with each system run back to back in blocks (its
//!   threads still awake from the run before).

mod common;

// The md5 search's helpers, as the example has them.
#[path = "../examples/par_md5.rs"]
#[allow(dead_code)]
mod par_md5;

use common::median;

use par_md5::md5_of;
use rayon::prelude::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

const WORKERS: usize = 2;
const RUNS: usize = 7;
const LN2_END: u64 = 20_000_000;
const MD5_END: u64 = 2_000_000;
const SECRET: u64 = 1_829_182;
const EMPTY_END: u64 = 10_000_000;
/// Runs of the empty loop, which takes microseconds.
const EMPTY_RUNS: usize = 201;
/// Pause before each run.
const SETTLE: Duration = Duration::from_millis(5);

/// One term of the series for ln 2.
#[inline]
fn term(k: u64) -> f64 {
    if k % 2 == 1 {
        1.0 / k as f64
    } else {
        -1.0 / k as f64
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let value = black_box(f());
    (start.elapsed(), value)
}

/// A way to run one loop, and the result it must give.
struct Contender<'a, T> {
    name: String,
    run: Box<dyn Fn() -> T + 'a>,
}

fn contender<'a, T>(name: impl Into<String>, run: impl Fn() -> T + 'a) -> Contender<'a, T> {
    Contender {
        name: name.into(),
        run: Box::new(run),
    }
}

/// Runs every contender `runs` times, alternating, checks each result with `check`, and
/// returns the medians. Before each run the other pools get time to fall asleep, so that
/// no system runs while another's idle threads still spin on the same cores.
fn measure<T>(
    contenders: &[Contender<'_, T>],
    runs: usize,
    check: impl Fn(&T) -> bool,
) -> Vec<Duration> {
    let mut times = vec![Vec::new(); contenders.len()];
    for _ in 0..runs {
        for (contender, times) in contenders.iter().zip(&mut times) {
            std::thread::sleep(SETTLE);
            let (elapsed, value) = time(&contender.run);
            assert!(check(&value), "{} gave a wrong result", contender.name);
            times.push(elapsed);
        }
    }
    times.into_iter().map(median).collect()
}

/// Runs each contender in blocks of `runs` runs back to back (its own pool's threads stay
/// awake, the others' fall asleep before the block), the contenders taking turns for
/// `rounds` rounds; returns the medians.
fn measure_warm<T>(contenders: &[Contender<'_, T>], rounds: usize, runs: usize) -> Vec<Duration> {
    let mut times = vec![Vec::new(); contenders.len()];
    for _ in 0..rounds {
        for (contender, times) in contenders.iter().zip(&mut times) {
            std::thread::sleep(SETTLE);
            black_box((contender.run)());
            for _ in 0..runs {
                times.push(time(&contender.run).0);
            }
        }
    }
    times.into_iter().map(median).collect()
}

fn print_rows<T>(
    loop_name: &str,
    contenders: &[Contender<'_, T>],
    medians: &[Duration],
    rayon: usize,
) {
    for (contender, time) in contenders.iter().zip(medians) {
        println!(
            "| {loop_name} | {} | {:.2} ms | {:.2} |",
            contender.name,
            time.as_secs_f64() * 1e3,
            time.as_secs_f64() / medians[rayon].as_secs_f64()
        );
    }
}

fn main() {
    // `cargo bench --bench par -- empty` runs only the loops whose name contains `empty`.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let wanted = |name: &str| name.contains(filter.as_str());
    let server = pp::Server::builder()
        .ncpus(WORKERS)
        .build()
        .expect("pp server");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .expect("rayon pool");
    let srv = &server;
    let default_chunks = 16 * WORKERS;

    println!("## `par!` and rayon, {WORKERS} workers, median of {RUNS} runs\n");
    println!("| loop | system | time | ratio to rayon `par_iter` |");
    println!("|---|---|---|---|");

    let ln2 = [
        contender("serial `for`", || {
            let mut sum = 0.0;
            for k in 1..black_box(LN2_END) {
                sum += term(k);
            }
            sum
        }),
        contender(
            format!("`par!` (default: {default_chunks} chunks)"),
            || pp::par!(server = srv, sum for k: u64 in 1..black_box(LN2_END) { term(k) }),
        ),
        contender(
            "`par!`, `chunks = 8`",
            || pp::par!(server = srv, chunks = 8, sum for k: u64 in 1..black_box(LN2_END) { term(k) }),
        ),
        contender(
            "`par!`, `chunks = 128`",
            || pp::par!(server = srv, chunks = 128, sum for k: u64 in 1..black_box(LN2_END) { term(k) }),
        ),
        contender("rayon `into_par_iter().map().sum()`", || {
            pool.install(|| {
                (1..black_box(LN2_END))
                    .into_par_iter()
                    .map(term)
                    .sum::<f64>()
            })
        }),
    ];
    if wanted("ln2") {
        let medians = measure(&ln2, RUNS, |sum| {
            (sum - std::f64::consts::LN_2).abs() < 3e-8
        });
        print_rows("ln 2, 1..20,000,000", &ln2, &medians, 4);
    }

    let target = md5_of(SECRET);
    let target = &target;
    let md5 = [
        contender("serial `find`", || {
            (1..black_box(MD5_END)).find(|&k| md5_of(k) == *target)
        }),
        contender(
            format!("`par!` `find` (default: {default_chunks} chunks)"),
            || {
                let target = *target;
                pp::par!(server = srv, with (target: [u8; 16]) find for k: u64 in 1..black_box(MD5_END) {
                    (md5_of(k) == *target).then_some(k)
                })
            },
        ),
        contender("`par!` `find`, `chunks = 8`", || {
            let target = *target;
            pp::par!(server = srv, chunks = 8, with (target: [u8; 16]) find for k: u64 in 1..black_box(MD5_END) {
                (md5_of(k) == *target).then_some(k)
            })
        }),
        contender("rayon `find_first`", || {
            pool.install(|| {
                (1..black_box(MD5_END))
                    .into_par_iter()
                    .find_first(|&k| md5_of(k) == *target)
            })
        }),
        contender("rayon `find_any`", || {
            pool.install(|| {
                (1..black_box(MD5_END))
                    .into_par_iter()
                    .find_any(|&k| md5_of(k) == *target)
            })
        }),
    ];
    if wanted("md5") {
        let medians = measure(&md5, RUNS, |found| *found == Some(SECRET));
        print_rows("md5 search, 1..2,000,000", &md5, &medians, 3);
    }

    let empty = [
        contender(
            format!("`par!` (default: {default_chunks} chunks)"),
            || pp::par!(server = srv, reduce((), |(), ()| ()) for _k: u64 in 0..black_box(EMPTY_END) {}),
        ),
        contender(
            "`par!`, `chunks = 8`",
            || pp::par!(server = srv, chunks = 8, reduce((), |(), ()| ()) for _k: u64 in 0..black_box(EMPTY_END) {}),
        ),
        contender("rayon `into_par_iter().for_each()`", || {
            pool.install(|| (0..black_box(EMPTY_END)).into_par_iter().for_each(|_| {}))
        }),
    ];
    if !wanted("empty") {
        println!();
        server.print_stats();
        return;
    }
    let asleep = measure(&empty, EMPTY_RUNS, |()| true);
    let warm = measure_warm(&empty, 5, EMPTY_RUNS);
    for (medians, how) in [(asleep, "pools asleep"), (warm, "back to back")] {
        for (contender, time) in empty.iter().zip(&medians) {
            println!(
                "| empty body, 0..10,000,000, {how} | {} | {:.1} µs | {:.2} |",
                contender.name,
                time.as_secs_f64() * 1e6,
                time.as_secs_f64() / medians[2].as_secs_f64()
            );
        }
    }
    println!();
    server.print_stats();
}
