//! The five examples, run as tests on a local server: each example's `run` function must
//! give Parallel Python's results (see tests/checks). No assertion depends on timing.

mod checks;

use checks::{dynamic_ncpus, reverse_md5, sum_primes};

// The progress bar's example; tests/progress.rs checks its bar in a terminal.
#[path = "../examples/progress.rs"]
#[allow(clippy::duplicate_mod, dead_code, unreachable_pub)]
mod progress_example;

fn server() -> pp::Server {
    pp::Server::builder()
        .ncpus(2)
        .build()
        .expect("a 2-worker server starts")
}

#[test]
fn sum_primes_gives_pps_results() {
    let server = server();
    checks::sum_primes(&server);
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
    checks::reverse_md5(&server());
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
        checks::dynamic_ncpus(&server);
    }
    assert_eq!(server.stats().total_jobs(), 3 * dynamic_ncpus::PARTS);
}

#[test]
fn callback_sums_to_ln2() {
    let server = server();
    checks::callback(&server);
    assert_eq!(server.stats().total_jobs(), checks::callback::PARTS);
}

#[test]
fn auto_diff_matches_ln_and_its_derivative() {
    let (value_error, deriv_error) = checks::auto_diff(&server());
    // Shown with `--nocapture`.
    println!("auto_diff: max |t_log(x) - ln x| = {value_error:e}, max |t_log'(x) - 1/x| = {deriv_error:e}");
}

#[test]
fn progress_gives_its_sums() {
    let server = server();
    assert_eq!(
        progress_example::run(&server),
        Ok(progress_example::expected())
    );
}
