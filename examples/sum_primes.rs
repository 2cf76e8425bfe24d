//! Sum of primes: a port of Parallel Python's `sum_primes.py`, its first example.
//!
//! One job computes the sum of the primes below 100, then eight jobs compute it for
//! n = 100000, 100100, ..., 100700 in parallel. The job function is an ordinary function
//! that calls a plain helper (`is_prime`); `#[pp::parallel]` makes it submittable.
//!
//! Run it with `cargo run --release --example sum_primes [ncpus]`; without `ncpus` the
//! server starts one worker per core.

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

/// Reads the optional `ncpus` argument; `Ok(None)` means "autodetect".
pub(crate) fn parse_ncpus(mut args: impl Iterator<Item = String>) -> Result<Option<usize>, String> {
    let Some(arg) = args.next() else {
        return Ok(None);
    };
    if let Some(extra) = args.next() {
        return Err(format!("unexpected argument `{extra}`"));
    }
    match arg.parse::<usize>() {
        Ok(0) => Err("ncpus must be at least 1".to_owned()),
        Ok(ncpus) => Ok(Some(ncpus)),
        Err(_) => Err(format!(
            "invalid ncpus `{arg}`: expected a positive whole number"
        )),
    }
}

fn start_server(ncpus: Option<usize>) -> Result<pp::Server, pp::Error> {
    match ncpus {
        Some(ncpus) => pp::Server::builder().ncpus(ncpus).build(),
        None => pp::Server::new(),
    }
}

fn main_with(ncpus: Option<usize>) -> Result<(), Box<dyn std::error::Error>> {
    let server = start_server(ncpus)?;
    println!("Starting pp with {} workers", server.ncpus());

    let start = Instant::now();
    for (n, sum) in run(&server)? {
        println!("Sum of primes below {n} is {sum}");
    }
    println!("Time elapsed: {:.3} s", start.elapsed().as_secs_f64());
    server.print_stats();
    Ok(())
}

fn main() -> ExitCode {
    let ncpus = match parse_ncpus(std::env::args().skip(1)) {
        Ok(ncpus) => ncpus,
        Err(message) => {
            eprintln!("sum_primes: {message}");
            eprintln!("usage: cargo run --release --example sum_primes [ncpus]");
            return ExitCode::from(2);
        }
    };
    match main_with(ncpus) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sum_primes: {error}");
            ExitCode::FAILURE
        }
    }
}
