//! Sum of primes: a port of Parallel Python's `sum_primes.py`, its first example.
//!
//! One job computes the sum of the primes below 100, then eight jobs compute it for
//! n = 100000, 100100, ..., 100700 in parallel. The job function is an ordinary function
//! that calls a plain helper (`is_prime`); `#[pp::parallel]` makes it submittable.
//!
//! Run it with `cargo run --release --example sum_primes [ncpus]`; without `ncpus` the
//! server starts one worker per core.

pub(crate) mod common;

use std::process::ExitCode;
use std::time::Instant;

/// Whether `n` is prime, by trial division. A plain function: the job calls it directly.
pub(crate) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut divisor = 2;
    while divisor * divisor <= n {
        if n % divisor == 0 {
            return false;
        }
        divisor += 1;
    }
    true
}

/// Sum of the primes below `n`.
#[pp::parallel]
pub(crate) fn sum_primes(n: u64) -> u64 {
    (2..n).filter(|&k| is_prime(k)).sum()
}

/// The inputs of the eight parallel jobs.
pub(crate) fn inputs() -> impl Iterator<Item = u64> {
    (0..8).map(|i| 100_000 + 100 * i)
}

/// Runs the example on `server`: first one job for 100, then the eight jobs of
/// [`inputs`]; returns every `(n, sum of primes below n)` in submission order.
pub(crate) fn run(server: &pp::Server) -> Result<Vec<(u64, u64)>, pp::JobError> {
    // One job: submit, then wait for its result.
    let first = server.submit(sum_primes, (100,));
    let mut results = vec![(100, first.result()?)];

    // Eight jobs: submit them all first, so that they run in parallel, then collect.
    let jobs: Vec<_> = inputs()
        .map(|n| (n, server.submit(sum_primes, (n,))))
        .collect();
    for (n, job) in jobs {
        results.push((n, job.result()?));
    }
    Ok(results)
}

fn main() -> ExitCode {
    common::main_with_server("sum_primes", |server| {
        let start = Instant::now();
        for (n, sum) in run(server)? {
            println!("Sum of primes below {n} is {sum}");
        }
        println!("Time elapsed: {:.3} s", start.elapsed().as_secs_f64());
        Ok(())
    })
}
