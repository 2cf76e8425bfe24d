//! Dynamic worker count: a port of Parallel Python's `dynamic_ncpus.py`.
//!
//! Computes the partial sum 1 - 1/2 + 1/3 - 1/4 + ... over k in 1..20,000,000 (which
//! tends to ln 2) in 64 jobs, six times: with 1, 2, 4, 8, 16 and again 1 workers, changing
//! the worker count of one running server with `set_ncpus` and timing each run. The time
//! falls as the worker count rises up to the number of cores, then stays flat.
//!
//! Run it with `cargo run --release --example dynamic_ncpus`. It sets the worker count
//! itself, so an `ncpus` argument (accepted for symmetry with the other examples) is
//! ignored.

pub(crate) mod common;

use common::{part_sum, split};

use std::f64::consts::LN_2;
use std::process::ExitCode;
use std::time::Instant;

/// First term of the series.
pub(crate) const START: u64 = 1;
/// End of the series (exclusive).
pub(crate) const END: u64 = 20_000_000;
/// Number of jobs per run.
pub(crate) const PARTS: u64 = 64;
/// The worker counts the example runs with, in order.
pub(crate) const WORKER_COUNTS: [usize; 6] = [1, 2, 4, 8, 16, 1];

/// One run: the partial sum over 1..20,000,000 in 64 jobs on `server`, with whatever
/// worker count it has now.
pub(crate) fn run(server: &pp::Server) -> Result<f64, pp::JobError> {
    let jobs: Vec<_> = split(START, END, PARTS)
        .into_iter()
        .map(|(lo, hi)| server.submit(part_sum, (lo, hi)))
        .collect();
    let mut sum = 0.0;
    for job in jobs {
        sum += job.result()?;
    }
    Ok(sum)
}

fn main_with() -> Result<(), Box<dyn std::error::Error>> {
    let server = pp::Server::builder().ncpus(WORKER_COUNTS[0]).build()?;
    for ncpus in WORKER_COUNTS {
        server.set_ncpus(ncpus)?;
        println!("Starting pp with {} workers", server.ncpus());
        let start = Instant::now();
        let sum = run(&server)?;
        println!("Partial sum is {sum:.15} | diff = {:+.3e}", sum - LN_2);
        println!("Time elapsed: {:.3} s", start.elapsed().as_secs_f64());
    }
    server.print_stats();
    Ok(())
}

fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        eprintln!(
            "dynamic_ncpus: ignoring the argument `{arg}`: this example sets the worker count itself"
        );
    }
    match main_with() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dynamic_ncpus: {error}");
            ExitCode::FAILURE
        }
    }
}
