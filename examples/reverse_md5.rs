//! Reverse md5: a port of Parallel Python's `reverse_md5.py`.
//!
//! Computes the md5 hash of the string "1829182", then finds the number whose decimal
//! text has that hash by brute force: 128 jobs each scan an equal slice of 1..2,000,000
//! and return the number if they find it (`Some`) or `None`. The results are read in
//! submission order and the search stops at the first hit; jobs still running then
//! finish on their own.
//!
//! Run it with `cargo run --release --example reverse_md5 [ncpus]`; without `ncpus` the
//! server starts one worker per core.

pub(crate) mod common;

use common::split;

use md5::{Digest, Md5};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

/// The number whose hash the example reverses.
pub(crate) const SECRET: u64 = 1_829_182;
/// First number scanned.
pub(crate) const START: u64 = 1;
/// End of the scan (exclusive).
pub(crate) const END: u64 = 2_000_000;
/// Number of jobs.
pub(crate) const PARTS: u64 = 128;

/// Lowercase hex md5 of `text`, as Python's `md5(text).hexdigest()`.
pub(crate) fn md5_hex(text: &str) -> String {
    let mut hex = String::with_capacity(32);
    for byte in Md5::digest(text.as_bytes()) {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The 16 bytes of a 32-digit hex digest, or `None` if `hex` is not one.
fn parse_digest(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut digest = [0; 16];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// The first number in `start..end` whose decimal text has md5 `hash` (hex), if any.
#[pp::parallel]
pub(crate) fn md5_test(hash: String, start: u64, end: u64) -> Option<u64> {
    let target = parse_digest(&hash)?;
    let mut text = String::with_capacity(20);
    (start..end).find(|x| {
        text.clear();
        let _ = write!(text, "{x}");
        Md5::digest(text.as_bytes())[..] == target[..]
    })
}

/// Runs the example on `server`: 128 jobs search 1..2,000,000 for the number whose md5 is
/// `hash`; returns it, or `None` if no job found it.
pub(crate) fn run(server: &pp::Server, hash: &str) -> Result<Option<u64>, pp::JobError> {
    let jobs: Vec<_> = split(START, END, PARTS)
        .into_iter()
        .map(|(lo, hi)| server.submit(md5_test, (hash.to_owned(), lo, hi)))
        .collect();
    for job in jobs {
        if let Some(found) = job.result()? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn main() -> ExitCode {
    common::main_with_server("reverse_md5", |server| {
        let hash = md5_hex(&SECRET.to_string());
        println!("hash = {hash}");
        let start = Instant::now();
        match run(server, &hash)? {
            Some(found) => println!("Reverse md5 for {hash} is {found}"),
            None => println!("No number in {START}..{END} has md5 {hash}"),
        }
        println!("Time elapsed: {:.3} s", start.elapsed().as_secs_f64());
        Ok(())
    })
}
