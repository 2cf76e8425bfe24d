//! ln 2 with `par!`: the partial sum 1 - 1/2 + 1/3 - 1/4 + ... over k in 1..20,000,000,
//! written as the serial loop it is and run as chunked jobs on a server.
//!
//! `callback` and `dynamic_ncpus` compute the same sum by splitting the range into jobs by
//! hand; here `par!` does the splitting, runs the chunks on the server's workers and adds
//! their sums in chunk order. With `chunks = 64` fixed, the result is the same to the last
//! bit whatever the number of workers: try `par_ln2 1` and `par_ln2 4`.
//!
//! Run it with `cargo run --release --example par_ln2 [ncpus]`; without `ncpus` the server
//! starts one worker per core.

pub(crate) mod common;

use std::f64::consts::LN_2;
use std::process::ExitCode;
use std::time::Instant;

/// First term of the series.
pub(crate) const START: u64 = 1;
/// End of the series (exclusive).
pub(crate) const END: u64 = 20_000_000;
/// Number of chunks: fixed, so that the sum does not depend on the worker count.
pub(crate) const CHUNKS: usize = 64;

/// Sum of (-1)^(k+1) / k for k in `START..END`, as chunked jobs on `server`.
pub(crate) fn ln2(server: &pp::Server) -> f64 {
    pp::par!(server = server, chunks = CHUNKS, sum for k: u64 in START..END {
        if k % 2 == 1 { 1.0 / k as f64 } else { -1.0 / k as f64 }
    })
}

fn main() -> ExitCode {
    common::main_with_server("par_ln2", |server| {
        let start = Instant::now();
        let sum = ln2(server);
        let elapsed = start.elapsed();
        println!("Partial sum is {sum} | diff = {:e}", sum - LN_2);
        println!("Sum bits: {:016x} ({CHUNKS} chunks)", sum.to_bits());
        println!("Time elapsed: {:.3} s", elapsed.as_secs_f64());
        Ok(())
    })
}
