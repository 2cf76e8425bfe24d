//! The expected results of the five examples, checked on any server: a local one
//! (tests/examples.rs) or a cluster of `ppserver` nodes (tests/cluster.rs). The values are
//! those of Parallel Python's examples (exact sums of primes, the reversed md5) or within
//! the stated tolerance of the exact value (ln 2, ln x and 1/x).

// Each example file brings its own copy of examples/common, as it does when built alone.
#![allow(clippy::duplicate_mod, dead_code, unreachable_pub)]

#[path = "../../examples/sum_primes.rs"]
pub mod sum_primes;

#[path = "../../examples/reverse_md5.rs"]
pub mod reverse_md5;

#[path = "../../examples/dynamic_ncpus.rs"]
pub mod dynamic_ncpus;

#[path = "../../examples/callback.rs"]
pub mod callback;

#[path = "../../examples/auto_diff.rs"]
pub mod auto_diff;

use std::f64::consts::LN_2;

pub mod expected;

pub use expected::{PARTIAL_SUM_TOLERANCE, TAYLOR_TOLERANCE};

/// sum_primes: the nine sums of PP's example.
pub fn sum_primes(server: &pp::Server) {
    assert_eq!(sum_primes::run(server), Ok(expected::SUM_PRIMES.to_vec()));
}

/// reverse_md5: finds 1829182.
pub fn reverse_md5(server: &pp::Server) {
    let hash = reverse_md5::md5_hex(&reverse_md5::SECRET.to_string());
    let number = expected::REVERSE_MD5;
    assert_eq!(hash, reverse_md5::md5_hex(&number.to_string()));
    assert_eq!(reverse_md5::run(server, &hash), Ok(Some(number)));
}

/// A partial sum of the ln 2 series is within tolerance of ln 2.
pub fn is_ln2(sum: f64, context: &str) {
    assert!(
        (sum - LN_2).abs() < PARTIAL_SUM_TOLERANCE,
        "{context}: partial sum {sum} differs from ln 2 by {}",
        sum - LN_2
    );
}

/// dynamic_ncpus: one run with the server's current workers.
pub fn dynamic_ncpus(server: &pp::Server) {
    let sum = dynamic_ncpus::run(server).expect("every job succeeds");
    is_ln2(sum, &format!("{} local workers", server.ncpus()));
}

/// callback: the callbacks' total is ln 2.
pub fn callback(server: &pp::Server) {
    let sum = callback::run(server).expect("every job succeeds");
    is_ln2(sum, "callback");
}

/// auto_diff: 32 points of ln x and 1/x; returns the largest errors seen.
pub fn auto_diff(server: &pp::Server) -> (f64, f64) {
    let results = auto_diff::run(server).expect("every job succeeds");
    assert_eq!(results.len(), 32);
    let (mut value_error, mut deriv_error) = (0.0f64, 0.0f64);
    for (i, &(x, t)) in results.iter().enumerate() {
        assert_eq!(x, i as f64 / 32.0 + 1.0);
        assert!(
            (t.value - x.ln()).abs() < TAYLOR_TOLERANCE,
            "t_log({x}) = {} but ln({x}) = {}",
            t.value,
            x.ln()
        );
        assert!(
            (t.deriv - 1.0 / x).abs() < TAYLOR_TOLERANCE,
            "t_log'({x}) = {} but 1/{x} = {}",
            t.deriv,
            1.0 / x
        );
        value_error = value_error.max((t.value - x.ln()).abs());
        deriv_error = deriv_error.max((t.deriv - 1.0 / x).abs());
    }
    // The method is still a method, and its job gives the same result.
    let ps = auto_diff::PartialSum::new(auto_diff::TERMS);
    assert_eq!(results[16].1, ps.t_log(auto_diff::Dual::variable(1.5)));
    (value_error, deriv_error)
}
