//! Reverse md5 with `par!`: finds the number in 1..2,000,000 whose decimal text has the md5
//! hash of "1829182", with a `find` loop over the range.
//!
//! `reverse_md5` does the same search by submitting 128 jobs by hand and reading their
//! results in order. Here the serial search is one `par!` loop: the target digest is named
//! in `with (...)`, the chunks run on the server's workers, and once a chunk finds the
//! number, the chunks after it that have not started are skipped. The result is the first
//! match in iteration order, as the serial loop's.
//!
//! Run it with `cargo run --release --example par_md5 [ncpus]`; without `ncpus` the server
//! starts one worker per core.

pub(crate) mod common;

use md5::{Digest, Md5};
use std::process::ExitCode;
use std::time::Instant;

/// The number whose hash the example reverses.
pub(crate) const SECRET: u64 = 1_829_182;
/// First number scanned.
pub(crate) const START: u64 = 1;
/// End of the scan (exclusive).
pub(crate) const END: u64 = 2_000_000;

/// The md5 digest of `n`'s decimal text, formatted without allocating.
pub(crate) fn md5_of(n: u64) -> [u8; 16] {
    let mut text = [0u8; 20];
    let mut at = text.len();
    let mut rest = n;
    loop {
        at -= 1;
        text[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    Md5::digest(&text[at..]).into()
}

/// Lowercase hex of a digest, as Python's `hexdigest()`.
pub(crate) fn hex(digest: &[u8; 16]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first number in `START..END` whose md5 digest is `target`, as chunked jobs on
/// `server`.
pub(crate) fn search(server: &pp::Server, target: [u8; 16]) -> Option<u64> {
    pp::par!(server = server, with (target: [u8; 16]) find for k: u64 in START..END {
        (md5_of(k) == *target).then_some(k)
    })
}

fn main() -> ExitCode {
    common::main_with_server("par_md5", |server| {
        let target = md5_of(SECRET);
        println!("hash = {}", hex(&target));
        let start = Instant::now();
        match search(server, target) {
            Some(found) => println!("Reverse md5 for {} is {found}", hex(&target)),
            None => println!("No number in {START}..{END} has md5 {}", hex(&target)),
        }
        println!("Time elapsed: {:.3} s", start.elapsed().as_secs_f64());
        Ok(())
    })
}
