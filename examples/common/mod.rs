//! What the examples share: PP's `[ncpus]` argument and server start-up, splitting a range
//! into jobs, and the ln 2 partial-sum job of `dynamic_ncpus` and `callback`.

// Each example uses a part of this module.
#![allow(dead_code)]

use std::process::ExitCode;

/// Reads the optional `ncpus` argument; `Ok(None)` means "one worker per core".
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

/// The body of an example's `main`: reads `[ncpus]`, starts the server, runs `body` on it,
/// prints the statistics. A bad argument exits with code 2 and a usage line; an error in
/// `body` is printed and exits with code 1.
pub(crate) fn main_with_server(
    example: &str,
    body: impl FnOnce(&pp::Server) -> Result<(), Box<dyn std::error::Error>>,
) -> ExitCode {
    let ncpus = match parse_ncpus(std::env::args().skip(1)) {
        Ok(ncpus) => ncpus,
        Err(message) => {
            eprintln!("{example}: {message}");
            eprintln!("usage: cargo run --release --example {example} [ncpus]");
            return ExitCode::from(2);
        }
    };
    let server = match ncpus {
        Some(ncpus) => pp::Server::builder().ncpus(ncpus).build(),
        None => pp::Server::new(),
    };
    let outcome = (|| -> Result<(), Box<dyn std::error::Error>> {
        let server = server?;
        println!("Starting pp with {} workers", server.ncpus());
        body(&server)?;
        server.print_stats();
        Ok(())
    })();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{example}: {error}");
            ExitCode::FAILURE
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

/// Sum of (-1)^(k+1) / k for k in `start..end`: a slice of the series that tends to ln 2.
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
