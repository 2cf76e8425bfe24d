//! The results of Parallel Python's examples, as numbers: checked on a server by
//! tests/checks (the functions' results) and under Wine by tests/windows.rs (the lines the
//! examples print).

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

/// sum_primes: `(n, the sum of the primes below n)`, the nine sums of PP's example.
pub const SUM_PRIMES: [(u64, u64); 9] = [
    (100, 1060),
    (100_000, 454_396_537),
    (100_100, 454_996_777),
    (100_200, 455_898_156),
    (100_300, 456_700_218),
    (100_400, 457_603_451),
    (100_500, 458_407_033),
    (100_600, 459_412_387),
    (100_700, 460_217_613),
];

/// reverse_md5: the number whose md5 the example searches for.
pub const REVERSE_MD5: u64 = 1_829_182;

/// The partial sums end at k = 19,999,999, so they exceed ln 2 by about 1/(2·20,000,000)
/// = 2.5e-8; rounding adds far less.
pub const PARTIAL_SUM_TOLERANCE: f64 = 3e-8;

/// Tolerance of the Taylor series against ln x and 1/x.
pub const TAYLOR_TOLERANCE: f64 = 1e-9;
