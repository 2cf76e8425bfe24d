//! The five examples, run as tests: each example file is included as a module and its
//! `run` function is called on a 2-worker server; the results must be exactly those of
//! Parallel Python's examples (the sums of primes, the reversed md5), or within the stated
//! tolerance of the exact value (ln 2 for the partial sums, ln x and 1/x for the Taylor
//! series). No assertion depends on timing.

// Each example file brings its own copy of examples/common, as it does when built alone.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/sum_primes.rs"]
#[allow(dead_code)]
mod sum_primes;

#[path = "../examples/reverse_md5.rs"]
#[allow(dead_code)]
mod reverse_md5;

#[path = "../examples/dynamic_ncpus.rs"]
#[allow(dead_code)]
mod dynamic_ncpus;

#[path = "../examples/callback.rs"]
#[allow(dead_code)]
mod callback;

#[path = "../examples/auto_diff.rs"]
#[allow(dead_code)]
mod auto_diff;

use std::f64::consts::LN_2;

/// The partial sums end at k = 19,999,999, so they exceed ln 2 by about 1/(2·20,000,000)
/// = 2.5e-8; rounding adds far less.
const PARTIAL_SUM_TOLERANCE: f64 = 3e-8;

/// Tolerance of the Taylor series against ln x and 1/x.
const TAYLOR_TOLERANCE: f64 = 1e-9;

fn server() -> pp::Server {
    pp::Server::builder()
        .ncpus(2)
        .build()
        .expect("a 2-worker server starts")
}

#[test]
fn sum_primes_gives_pps_results() {
    let expected = [
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
    let server = server();
    assert_eq!(sum_primes::run(&server), Ok(expected.to_vec()));
    // The job function is still a plain function.
    assert_eq!(sum_primes::sum_primes(100), 1060);
    assert_eq!(server.stats().total_jobs(), 9);
}

#[test]
fn the_examples_parse_ncpus_like_pp() {
    let parse = |args: &[&str]| sum_primes::common::parse_ncpus(args.iter().map(|a| a.to_string()));
    assert_eq!(parse(&[]), Ok(None));
    assert_eq!(parse(&["3"]), Ok(Some(3)));
    assert!(parse(&["0"]).is_err());
    assert!(parse(&["many"]).is_err());
    assert!(parse(&["-1"]).is_err());
    assert!(parse(&["2", "3"]).is_err());
}

#[test]
fn reverse_md5_finds_the_number() {
    let hash = reverse_md5::md5_hex(&reverse_md5::SECRET.to_string());
    assert_eq!(hash, reverse_md5::md5_hex("1829182"));
    assert_eq!(hash.len(), 32);
    let server = server();
    assert_eq!(reverse_md5::run(&server, &hash), Ok(Some(1_829_182)));
}

#[test]
fn reverse_md5_splits_the_range_into_128_equal_jobs() {
    let parts =
        reverse_md5::common::split(reverse_md5::START, reverse_md5::END, reverse_md5::PARTS);
    assert_eq!(parts.len(), 128);
    assert_eq!(parts[0].0, 1);
    assert_eq!(parts[127].1, 2_000_000);
    assert!(
        parts.windows(2).all(|w| w[0].1 == w[1].0),
        "contiguous: {parts:?}"
    );
    assert!(parts
        .iter()
        .all(|&(lo, hi)| hi - lo == 15_625 || hi == 2_000_000));
}

#[test]
fn dynamic_ncpus_sums_to_ln2_with_any_worker_count() {
    let server = pp::Server::builder()
        .ncpus(1)
        .build()
        .expect("a 1-worker server starts");
    for ncpus in [1, 3, 2] {
        server.set_ncpus(ncpus).expect("set_ncpus");
        assert_eq!(server.ncpus(), ncpus);
        let sum = dynamic_ncpus::run(&server).expect("every job succeeds");
        assert!(
            (sum - LN_2).abs() < PARTIAL_SUM_TOLERANCE,
            "{ncpus} workers: partial sum {sum} differs from ln 2 by {}",
            sum - LN_2
        );
    }
    assert_eq!(server.stats().total_jobs(), 3 * dynamic_ncpus::PARTS);
}

#[test]
fn callback_sums_to_ln2() {
    let server = server();
    let sum = callback::run(&server).expect("every job succeeds");
    assert!(
        (sum - LN_2).abs() < PARTIAL_SUM_TOLERANCE,
        "partial sum {sum} differs from ln 2 by {}",
        sum - LN_2
    );
    assert_eq!(server.stats().total_jobs(), callback::PARTS);
}

#[test]
fn auto_diff_matches_ln_and_its_derivative() {
    let server = server();
    let results = auto_diff::run(&server).expect("every job succeeds");
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
    // Shown with `--nocapture`.
    println!("auto_diff: max |t_log(x) - ln x| = {value_error:e}, max |t_log'(x) - 1/x| = {deriv_error:e}");
    // The method is still a method, and its job gives the same result.
    let ps = auto_diff::PartialSum::new(auto_diff::TERMS);
    let x = auto_diff::Dual::variable(1.5);
    assert_eq!(results[16].1, ps.t_log(x));
}
