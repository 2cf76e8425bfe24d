//! pp on Windows (issue 17): the library, `ppserver`, the examples and the local tests
//! build for `x86_64-pc-windows-gnu` with mingw-w64, and under Wine the five PP examples
//! and `par_ln2` print Parallel Python's results (those of tests/checks, and `par_ln2`'s
//! sum bit for bit as on this machine), the local test files `examples` and `par` pass,
//! process isolation and `ppserver` say that they need Unix, the worker hook runs before
//! `main`; and a Windows client runs its jobs on a Linux node on 127.0.0.1, which runs the
//! Linux build of the same program that the client offers it.
//!
//! Skipped, with a line on standard error, without mingw-w64, Wine or the Rust target
//! (`.ci/run` installs them). The build is a debug build in a target directory of its own
//! under this test's `CARGO_TARGET_TMPDIR` (a few minutes the first time, then seconds);
//! so is the Wine prefix (its first start takes tens of seconds).

#[path = "checks/expected.rs"]
mod expected;
mod support;
#[path = "windows/wine.rs"]
mod wine;

use expected::{PARTIAL_SUM_TOLERANCE, REVERSE_MD5, SUM_PRIMES};
use std::f64::consts::LN_2;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

// The same series on this machine, for `par_ln2`'s bits.
#[path = "../examples/par_ln2.rs"]
#[allow(clippy::duplicate_mod, dead_code, unreachable_pub)]
mod par_ln2;

/// The bound on one example under Wine (reverse_md5, the longest, takes about 12 s).
const RUN_WAIT: Duration = Duration::from_secs(180);

/// The local-only test files built for Windows; the first two also run under Wine.
const LOCAL_TESTS: [&str; 7] = [
    "examples",
    "par",
    "map",
    "registry",
    "server",
    "job_control",
    "shutdown",
];

/// The Windows build, made once for both tests: the test executables by name, or why
/// the test is skipped.
fn build() -> Option<&'static Vec<(String, PathBuf)>> {
    static BUILT: OnceLock<Option<Vec<(String, PathBuf)>>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(missing) = wine::missing_tool() {
                eprintln!("skipped: {missing}");
                return None;
            }
            eprintln!(
                "windows: building ppserver and the examples for {}",
                wine::TARGET
            );
            wine::cargo(&["build", "--bins", "--examples"]);
            let mut args = vec!["test", "--no-run"];
            for name in LOCAL_TESTS {
                args.extend(["--test", name]);
            }
            let log = wine::cargo(&args);
            Some(executables(&log))
        })
        .as_ref()
}

/// The test executables cargo named ("Executable tests/par.rs (path)").
fn executables(log: &str) -> Vec<(String, PathBuf)> {
    log.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("Executable tests/")?;
            let (file, path) = rest.split_once(" (")?;
            let name = file.strip_suffix(".rs")?;
            Some((name.to_string(), PathBuf::from(path.strip_suffix(')')?)))
        })
        .collect()
}

/// Runs the Windows build of example `name` with `args`; returns what it printed.
fn example(name: &str, args: &[&str]) -> String {
    let exe = wine::debug_dir()
        .join("examples")
        .join(format!("{name}.exe"));
    let ran = wine::run_exe(&exe, args, &[], RUN_WAIT);
    assert!(
        ran.success,
        "{name} failed under Wine:\n{}\n{}",
        ran.stdout, ran.stderr
    );
    ran.stdout
}

/// The numbers after "Partial sum is " on each line that has them.
fn partial_sums(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|line| line.strip_prefix("Partial sum is "))
        .map(|rest| {
            let number = rest.split_whitespace().next().unwrap_or_default();
            number
                .parse()
                .unwrap_or_else(|_| panic!("a sum in {rest:?}"))
        })
        .collect()
}

fn assert_ln2(out: &str, lines: usize) {
    let sums = partial_sums(out);
    assert_eq!(sums.len(), lines, "{out}");
    for sum in sums {
        assert!(
            (sum - LN_2).abs() < PARTIAL_SUM_TOLERANCE,
            "{sum} is not ln 2:\n{out}"
        );
    }
}

#[test]
fn the_examples_give_pps_results_under_wine() {
    if build().is_none() {
        return;
    }
    let out = example("sum_primes", &["2"]);
    for (below, sum) in SUM_PRIMES {
        let line = format!("Sum of primes below {below} is {sum}");
        assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
    }
    assert!(out.contains("Starting pp with 2 workers"), "{out}");

    let out = example("reverse_md5", &["2"]);
    assert!(
        out.contains(&format!(
            "Reverse md5 for 48ae4d2d384dcc470e471f4169daa96a is {REVERSE_MD5}"
        )),
        "{out}"
    );

    // 1, 2, 4, 8, 16 and 1 workers.
    assert_ln2(&example("dynamic_ncpus", &[]), 6);
    assert_ln2(&example("callback", &["2"]), 1);

    let out = example("auto_diff", &["2"]);
    let points: Vec<&str> = out.lines().filter(|l| l.starts_with("t_log(")).collect();
    assert_eq!(points.len(), 32, "{out}");
    for line in points {
        // t_log(x) = a, ln(x) = b; t_log'(x) = c, 1/x = d: within the tolerance of
        // tests/checks (1e-9), as on this machine.
        let numbers: Vec<f64> = line
            .split(['=', ',', ';'])
            .filter_map(|part| part.trim().parse().ok())
            .collect();
        assert_eq!(numbers.len(), 4, "{line}");
        assert!((numbers[0] - numbers[1]).abs() < 1e-9, "{line}");
        assert!((numbers[2] - numbers[3]).abs() < 1e-9, "{line}");
    }

    let out = example("par_ln2", &["2"]);
    assert_ln2(&out, 1);
    let server = pp::Server::builder()
        .ncpus(2)
        .build()
        .expect("a local server");
    let here = par_ln2::ln2(&server).to_bits();
    let line = format!("Sum bits: {here:016x} (64 chunks)");
    assert!(
        out.lines().any(|l| l == line),
        "no {line:?} (as on this machine) in:\n{out}"
    );
}

#[test]
fn local_tests_pass_and_unix_only_parts_say_so_under_wine() {
    let Some(tests) = build() else { return };
    for name in ["examples", "par"] {
        let (_, exe) = tests
            .iter()
            .find(|(test, _)| test == name)
            .unwrap_or_else(|| panic!("cargo named no executable for tests/{name}.rs: {tests:?}"));
        let ran = wine::run_exe(exe, &["--test-threads=1"], &[], RUN_WAIT);
        assert!(
            ran.success,
            "tests/{name}.rs under Wine:\n{}\n{}",
            ran.stdout, ran.stderr
        );
        assert!(ran.stdout.contains("test result: ok."), "{}", ran.stdout);
    }

    // Process isolation needs Unix: a clear error, not a broken pipe. (With no worker
    // count the example's server reads the environment.)
    let exe = wine::debug_dir().join("examples/sum_primes.exe");
    let ran = wine::run_exe(&exe, &[], &[("PP_ISOLATED", "1")], RUN_WAIT);
    assert!(!ran.success, "{}", ran.stdout);
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(all.contains("process isolation needs Unix"), "{all}");

    // The worker hook runs before `main` on Windows too (`.CRT$XCU`): with PP_WORKER=1
    // the program says its hello on standard output and, its input closed, exits with 0
    // without running `main`.
    let ran = wine::run_exe(&exe, &["2"], &[("PP_WORKER", "1")], RUN_WAIT);
    assert!(ran.success, "{}", ran.stderr);
    assert!(!ran.stdout.is_empty(), "no hello");
    assert!(
        !ran.stdout.contains("Starting pp"),
        "main ran: {}",
        ran.stdout
    );

    // Nodes are Unix-only.
    let ran = wine::run_exe(&wine::debug_dir().join("ppserver.exe"), &[], &[], RUN_WAIT);
    assert!(!ran.success);
    assert!(
        ran.stderr.contains("ppserver: nodes run on Unix only"),
        "{}",
        ran.stderr
    );
}

/// A Windows client uses a Linux node on 127.0.0.1: it offers the Linux build of the same
/// example (`PP_PROGRAMS`, a path Wine maps through its `Z:` drive), which the node runs
/// for it; the encrypted channel and the wire format are the same on both systems, and the
/// client reads the Linux build's tasks from its ELF file to check it is the same program.
#[test]
fn a_windows_client_runs_its_jobs_on_a_linux_node_from_its_linux_build() {
    if build().is_none() {
        return;
    }
    // target/debug/ppserver -> target/debug/examples/sum_primes, which `cargo test` built.
    let linux = std::path::Path::new(env!("CARGO_BIN_EXE_ppserver"))
        .with_file_name("examples")
        .join("sum_primes");
    if !linux.is_file() {
        eprintln!(
            "a_windows_client_runs_its_jobs_on_a_linux_node_from_its_linux_build: skipped: \
             {} is not built (cargo build --example sum_primes; a whole `cargo test` builds it)",
            linux.display()
        );
        return;
    }
    let node = support::Node::start(2, &[]);
    let exe = wine::debug_dir().join("examples/sum_primes.exe");
    let servers = node.name();
    let programs = format!("Z:{}", linux.display().to_string().replace('/', "\\"));
    let env = [
        ("PP_SERVERS", servers.as_str()),
        ("PP_SECRET", support::SECRET),
        ("PP_PROGRAMS", programs.as_str()),
        // Every job on the node: none falls back to the client while the build uploads.
        ("PP_NCPUS", "0"),
        ("PP_FALLBACK_WAIT", "120"),
    ];
    let ran = wine::run_exe(&exe, &[], &env, RUN_WAIT);
    assert!(ran.success, "{}\n{}", ran.stdout, ran.stderr);
    node.log.wait_for("authenticated");
    assert!(
        ran.stdout
            .contains("Sum of primes below 100700 is 460217613"),
        "{}",
        ran.stdout
    );
    // Every job ran on the Linux node: its statistics row counts them all.
    let row = ran
        .stdout
        .lines()
        .find(|l| l.trim_end().ends_with(&format!("| {servers}")))
        .unwrap_or_else(|| panic!("no statistics row for {servers}:\n{}", ran.stdout));
    let jobs: u64 = row
        .split('|')
        .next()
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no job count in {row:?}"));
    assert!(jobs > 0, "no job ran on the Linux node:\n{}", ran.stdout);
}
