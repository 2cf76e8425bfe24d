//! A progress bar on long waits: 200 jobs of about 30 ms whose results are read one by one,
//! then a `par!` loop of 100 chunks of about 30 ms, then 100 jobs that `wait()` waits for.
//!
//! Run it with `PP_PROGRESS=1 cargo run --release --example progress [ncpus]`: while the
//! program waits, standard error shows jobs done of the total, the rate, the time left and
//! the jobs done per place (`local`, or a node's address with `PP_SERVERS`), and each bar
//! ends at its total. Without `PP_PROGRESS=1`, or with standard error not a terminal
//! (`2>log`), no bar is drawn. Without `ncpus` the server starts one worker per core.

pub(crate) mod common;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Jobs whose results are read one by one.
pub(crate) const JOBS: u64 = 200;
/// Chunks of the `par!` loop.
pub(crate) const CHUNKS: usize = 100;
/// Jobs that `wait()` waits for.
pub(crate) const WAITED_JOBS: u64 = 100;
/// How long one job or chunk takes.
pub(crate) const JOB_TIME: Duration = Duration::from_millis(30);

/// `x * x`, slowly: stands for a job that computes for a while.
#[pp::parallel]
pub(crate) fn slow_square(x: u64) -> u64 {
    std::thread::sleep(JOB_TIME);
    x * x
}

/// The sums each part of [`run`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sums {
    /// Sum of the squares of `0..JOBS`, read one by one.
    pub(crate) results: u64,
    /// Sum of `0..CHUNKS` by `par!`.
    pub(crate) par: u64,
    /// Sum of the squares of `0..WAITED_JOBS`, added by callbacks before `wait()` returns.
    pub(crate) waited: u64,
}

/// The sums [`run`] must give.
pub(crate) fn expected() -> Sums {
    Sums {
        results: (0..JOBS).map(|x| x * x).sum(),
        par: (0..CHUNKS as u64).sum(),
        waited: (0..WAITED_JOBS).map(|x| x * x).sum(),
    }
}

/// Runs the three waits on `server`, each long enough for a bar.
pub(crate) fn run(server: &pp::Server) -> Result<Sums, pp::JobError> {
    // Results read one by one, as PP's `job()` in a loop.
    let jobs: Vec<_> = (0..JOBS)
        .map(|x| server.submit(slow_square, (x,)))
        .collect();
    let mut results = 0;
    for job in jobs {
        results += job.result()?;
    }

    // A `par!` loop waits for its chunks.
    let par = pp::par!(server = server, chunks = CHUNKS, sum for k: u64 in 0..CHUNKS as u64 {
        std::thread::sleep(JOB_TIME);
        k
    });

    // `wait()` waits for every job submitted; callbacks collect the results.
    let waited = Arc::new(AtomicU64::new(0));
    let squares = {
        let waited = Arc::clone(&waited);
        server.template(slow_square).callback(move |result| {
            if let Ok(square) = result {
                waited.fetch_add(*square, Ordering::Relaxed);
            }
        })
    };
    for x in 0..WAITED_JOBS {
        // The callback collects the result: the handle is not needed.
        drop(squares.submit((x,)));
    }
    server.wait();
    Ok(Sums {
        results,
        par,
        waited: waited.load(Ordering::Relaxed),
    })
}

fn main() -> ExitCode {
    let ncpus = match common::parse_ncpus(std::env::args().skip(1)) {
        Ok(ncpus) => ncpus,
        Err(message) => {
            eprintln!("progress: {message}");
            eprintln!("usage: PP_PROGRESS=1 cargo run --release --example progress [ncpus]");
            return ExitCode::from(2);
        }
    };
    let outcome = (|| -> Result<(), Box<dyn std::error::Error>> {
        let mut builder = pp::Server::builder();
        if let Some(ncpus) = ncpus {
            builder = builder.ncpus(ncpus);
        }
        let server = builder.from_env()?.build()?;
        println!("Starting pp with {} workers", server.ncpus());
        let start = Instant::now();
        let sums = run(&server)?;
        if sums != expected() {
            return Err(format!("wrong sums: {sums:?}, expected {:?}", expected()).into());
        }
        println!(
            "Sum of the squares below {JOBS}, read one by one: {}",
            sums.results
        );
        println!("Sum below {CHUNKS} by par!: {}", sums.par);
        println!(
            "Sum of the squares below {WAITED_JOBS}, after wait(): {}",
            sums.waited
        );
        println!("Time elapsed: {:.3} s", start.elapsed().as_secs_f64());
        server.print_stats();
        Ok(())
    })();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("progress: {error}");
            ExitCode::FAILURE
        }
    }
}
