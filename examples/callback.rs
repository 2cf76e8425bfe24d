//! Callbacks: a port of Parallel Python's `callback.py`.
//!
//! Computes the partial sum 1 - 1/2 + 1/3 - 1/4 + ... over k in 1..20,000,000 (which
//! tends to ln 2) in 128 jobs. Nobody reads the jobs' results: each job's callback adds
//! its result to a shared [`Sum`] under a lock, on the worker, as soon as the job ends.
//! The jobs are submitted through a template that fixes the callback and a group; the
//! program then waits for all jobs with `wait()` and prints the sum.
//!
//! Run it with `cargo run --release --example callback [ncpus]`; without `ncpus` the
//! server starts one worker per core.

use std::f64::consts::LN_2;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// First term of the series.
pub(crate) const START: u64 = 1;
/// End of the series (exclusive).
pub(crate) const END: u64 = 20_000_000;
/// Number of jobs.
pub(crate) const PARTS: u64 = 128;
/// The group the jobs join.
pub(crate) const GROUP: &str = "part_sum";

/// Sum of (-1)^(k+1) / k for k in `start..end`.
#[pp::parallel]
pub(crate) fn part_sum(start: u64, end: u64) -> f64 {
    let mut sum = 0.0;
    for k in start..end {
        let term = 1.0 / k as f64;
        if k % 2 == 0 {
            sum -= term;
        } else {
            sum += term;
        }
    }
    sum
}

/// A running total that callbacks add to, under a lock (PP's `Sum` class).
#[derive(Debug, Default)]
pub(crate) struct Sum {
    state: Mutex<SumState>,
}

#[derive(Debug, Default)]
struct SumState {
    value: f64,
    /// The first job error seen, if any.
    error: Option<pp::JobError>,
}

impl Sum {
    /// The callback: adds one job's result, or keeps its error.
    pub(crate) fn add(&self, result: &Result<f64, pp::JobError>) {
        // A poisoned lock only means another callback panicked; the total is still valid.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(value) => state.value += value,
            Err(error) => {
                state.error.get_or_insert_with(|| error.clone());
            }
        }
    }

    /// The total so far, or the first job error.
    pub(crate) fn value(&self) -> Result<f64, pp::JobError> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &state.error {
            Some(error) => Err(error.clone()),
            None => Ok(state.value),
        }
    }
}

/// Splits `start..end` into `parts` consecutive ranges of equal length (the last one may
/// be shorter), as PP's examples did.
pub(crate) fn split(start: u64, end: u64, parts: u64) -> Vec<(u64, u64)> {
    let step = (end.saturating_sub(start)).div_ceil(parts.max(1)).max(1);
    (0..parts)
        .map(|i| {
            let lo = (start + i * step).min(end);
            (lo, (lo + step).min(end))
        })
        .collect()
}

/// Runs the example on `server`: 128 jobs whose callbacks add their results into one
/// [`Sum`]; waits for every job of the server with `wait()` and returns the total.
pub(crate) fn run(server: &pp::Server) -> Result<f64, pp::JobError> {
    let sum = Arc::new(Sum::default());
    let template = {
        let sum = Arc::clone(&sum);
        server
            .template(part_sum)
            .callback(move |result| sum.add(result))
            .group(GROUP)
    };
    for (lo, hi) in split(START, END, PARTS) {
        // The result goes to the callback; the job handle is not needed.
        drop(template.submit((lo, hi)));
    }
    // Waits for every job of the server and its callback; `server.wait_group(GROUP)`
    // would wait for this group only.
    server.wait();
    sum.value()
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
    let sum = run(&server)?;
    println!("Partial sum is {sum:.15} | diff = {:+.3e}", sum - LN_2);
    println!("Time elapsed: {:.3} s", start.elapsed().as_secs_f64());
    server.print_stats();
    Ok(())
}

fn main() -> ExitCode {
    let ncpus = match parse_ncpus(std::env::args().skip(1)) {
        Ok(ncpus) => ncpus,
        Err(message) => {
            eprintln!("callback: {message}");
            eprintln!("usage: cargo run --release --example callback [ncpus]");
            return ExitCode::from(2);
        }
    };
    match main_with(ncpus) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("callback: {error}");
            ExitCode::FAILURE
        }
    }
}
