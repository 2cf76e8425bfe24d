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

pub(crate) mod common;

use common::{part_sum, split};

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

fn main() -> ExitCode {
    common::main_with_server("callback", |server| {
        let start = Instant::now();
        let sum = run(server)?;
        println!("Partial sum is {sum:.15} | diff = {:+.3e}", sum - LN_2);
        println!("Time elapsed: {:.3} s", start.elapsed().as_secs_f64());
        Ok(())
    })
}
