//! One program, several builds, run for real: an aarch64 `ppserver` under qemu-user serves
//! an x86-64 client, an x86-64 node serves an aarch64 client, and one client uses a node of
//! each architecture at once; results are the local ones. Each client finds the build for
//! the other architecture where cargo put it (`target/aarch64-unknown-linux-gnu/debug/...`
//! beside `target/debug/...`) without configuration.
//!
//! Needs an x86-64 Linux host with qemu-user registered in binfmt_misc (Debian
//! `qemu-user-static binfmt-support`; `.ci/run` installs them and registers qemu) and
//! the aarch64 builds. When cargo's target directory has no aarch64 builds (`cargo build
//! --target aarch64-unknown-linux-gnu --bin ppserver --example sum_primes --example
//! reverse_md5`), the test makes them itself with Debian's `gcc-aarch64-linux-gnu` and
//! the rustup target, in a target directory of its own under `CARGO_TARGET_TMPDIR` (the
//! outer `cargo test` holds its own), beside copies of the host examples, so that
//! cargo's layout is the same. Without the tools each test says why on stderr and passes.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{temp_dir, Node, SECRET};

const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// The bound on one example run (qemu on a busy machine is slow; this only turns a hang
/// into a failure).
const RUN_BOUND: Duration = Duration::from_secs(120);

/// The builds the tests run.
struct Builds {
    arm_ppserver: PathBuf,
    arm_sum_primes: PathBuf,
    host_sum_primes: PathBuf,
    host_reverse_md5: PathBuf,
}

/// The builds, or `None` after saying on stderr what is missing.
fn builds(test: &str) -> Option<Builds> {
    let skip = |why: String| {
        eprintln!("{test}: skipped: {why}");
        None
    };
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return skip("needs an x86-64 Linux host".into());
    }
    let binfmt = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    if !binfmt.is_ok_and(|text| text.starts_with("enabled")) {
        return skip(
            "qemu-aarch64 is not registered in binfmt_misc (install qemu-user-static and \
             binfmt-support; as root: mount -t binfmt_misc binfmt_misc \
             /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64)"
                .into(),
        );
    }
    // target/debug/ppserver -> target
    let outer = Path::new(env!("CARGO_BIN_EXE_ppserver"))
        .parent()
        .and_then(Path::parent)
        .expect("ppserver sits in target/<profile>/");
    if let Some(found) = complete(outer) {
        return Some(found);
    }
    static MADE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match MADE.get_or_init(|| make_builds(outer)) {
        Ok(target) => complete(target).or_else(|| skip("the builds made are incomplete".into())),
        Err(why) => skip(why.clone()),
    }
}

/// The builds under the target directory `target`, if every one is there.
fn complete(target: &Path) -> Option<Builds> {
    let arm = target.join(AARCH64).join(PROFILE);
    let host = target.join(PROFILE);
    let found = Builds {
        arm_ppserver: arm.join("ppserver"),
        arm_sum_primes: arm.join("examples/sum_primes"),
        host_sum_primes: host.join("examples/sum_primes"),
        host_reverse_md5: host.join("examples/reverse_md5"),
    };
    let arm_reverse_md5 = arm.join("examples/reverse_md5");
    [
        &found.arm_ppserver,
        &found.arm_sum_primes,
        &arm_reverse_md5,
        &found.host_sum_primes,
        &found.host_reverse_md5,
    ]
    .iter()
    .all(|path| path.is_file())
    .then_some(found)
}

/// The profile directory of this test's own build (`debug` under `cargo test`).
const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// How long making the aarch64 builds may take (the dependencies the first time).
const BUILD_BOUND: Duration = Duration::from_secs(1200);

/// Makes the aarch64 builds in a target directory of this test's own, with the host
/// examples beside them (copies of those the outer `cargo test` built from the same
/// source, or built there too when absent); returns that target directory, or why it
/// could not.
fn make_builds(outer: &Path) -> Result<PathBuf, String> {
    let linker = "aarch64-linux-gnu-gcc";
    if Command::new(linker).arg("--version").output().is_err() {
        return Err(format!(
            "no aarch64 builds and no {linker} to make them (Debian gcc-aarch64-linux-gnu \
             libc6-dev-arm64-cross; rustup target add {AARCH64})"
        ));
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cross-arch");
    std::fs::create_dir_all(&target)
        .map_err(|e| format!("cannot prepare {}: {e}", target.display()))?;
    eprintln!(
        "cross_arch: making the aarch64 builds in {} (minutes the first time)",
        target.display()
    );
    let aarch64 = [
        ("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", linker),
        ("CC_aarch64_unknown_linux_gnu", linker),
        // A node under qemu receives a build without debug information much faster.
        ("CARGO_PROFILE_DEV_STRIP", "debuginfo"),
    ];
    cargo_build(
        &target,
        &["--target", AARCH64, "--bin", "ppserver"],
        &aarch64,
    )?;
    let examples = target.join(PROFILE).join("examples");
    let names = ["sum_primes", "reverse_md5"];
    if names
        .iter()
        .all(|n| outer.join(PROFILE).join("examples").join(n).is_file())
    {
        std::fs::create_dir_all(&examples).map_err(|e| e.to_string())?;
        for name in names {
            let from = outer.join(PROFILE).join("examples").join(name);
            std::fs::copy(&from, examples.join(name))
                .map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
        }
    } else {
        cargo_build(&target, &[], &[])?;
    }
    Ok(target)
}

/// `cargo build <args> --example sum_primes --example reverse_md5` of this workspace into
/// `target`, bounded in time; a missing rustup target is reported as a missing tool.
fn cargo_build(target: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let log_path = target.join("cargo-log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut child = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("build")
        .args(args)
        .args(["--example", "sum_primes", "--example", "reverse_md5"])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let deadline = Instant::now() + BUILD_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cargo build {args:?} ran past {BUILD_BOUND:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if text.contains("target may not be installed") {
        return Err(format!(
            "the rust target is missing (rustup target add {AARCH64})"
        ));
    }
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!("cargo build {args:?} failed:\n{}", tail.join("\n"));
}

/// Where qemu-user finds the aarch64 C library (Debian `libc6-dev-arm64-cross`), for
/// aarch64 processes and their children: the host has no `/lib/ld-linux-aarch64.so.1`.
const QEMU_LD_PREFIX: (&str, &str) = ("QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu");

/// An aarch64 `ppserver` under qemu-user on 127.0.0.1, with `workers` workers.
fn arm_node(builds: &Builds, workers: usize) -> Node {
    let dir = temp_dir("arm-cache");
    Node::start_exe(
        &builds.arm_ppserver,
        dir,
        0,
        workers,
        &[],
        &[QEMU_LD_PREFIX],
    )
}

/// Runs `exe` (through binfmt_misc when it is an aarch64 build) with `env`, bounded in
/// time; returns its output.
fn run(exe: &Path, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(exe)
        .env_remove("PP_SERVERS")
        .env_remove("PP_SECRET")
        .env_remove("PP_SECRET_FILE")
        .env_remove("PP_NCPUS")
        .env_remove("PP_PROGRAMS")
        .env_remove("PP_FALLBACK_WAIT")
        .env_remove("PP_WORKER")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let deadline = Instant::now() + RUN_BOUND;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("reap");
            panic!(
                "{} ran past {RUN_BOUND:?}; stderr:\n{}",
                exe.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// `exe` as a cluster client of `nodes`, jobs on the nodes only.
fn run_on(exe: &Path, nodes: &[&Node], extra: &[(&str, &str)]) -> (String, String) {
    let servers: Vec<String> = nodes.iter().map(|n| n.name()).collect();
    let servers = servers.join(",");
    let mut env = vec![
        ("PP_SERVERS", servers.as_str()),
        ("PP_SECRET", SECRET),
        ("PP_NCPUS", "0"),
        // A node under qemu takes seconds to receive a build and start its workers: jobs
        // wait for it rather than fall back to local workers.
        ("PP_FALLBACK_WAIT", "60"),
        QEMU_LD_PREFIX,
    ];
    env.extend_from_slice(extra);
    let output = run(exe, &env);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        exe.display(),
        output.status
    );
    (stdout, stderr)
}

/// The lines that carry results (not times or statistics).
fn results(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("Sum of primes below") || l.starts_with("Reverse md5"))
        .collect()
}

/// The job count of `node`'s row in the printed statistics.
fn jobs_of(stdout: &str, node: &Node) -> u64 {
    let name = node.name();
    stdout
        .lines()
        .find(|l| l.trim_end().ends_with(&format!("| {name}")))
        .and_then(|l| l.split('|').next())
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no statistics row for {name} in:\n{stdout}"))
}

/// What the host build prints run locally.
fn local_results(exe: &Path) -> Vec<String> {
    let output = run(exe, &[("PP_NCPUS", "2")]);
    assert!(output.status.success(), "{} failed locally", exe.display());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<String> = results(&stdout).into_iter().map(str::to_owned).collect();
    assert!(!lines.is_empty(), "no results in:\n{stdout}");
    lines
}

#[test]
fn an_aarch64_node_serves_an_x86_64_client() {
    let Some(builds) = builds("an_aarch64_node_serves_an_x86_64_client") else {
        return;
    };
    let node = arm_node(&builds, 2);
    let (stdout, _) = run_on(&builds.host_sum_primes, &[&node], &[]);
    assert_eq!(results(&stdout), local_results(&builds.host_sum_primes));
    assert_eq!(jobs_of(&stdout, &node), 9, "{stdout}");
    // The statistics say what the node runs; the node says which build it took.
    let runs = format!(
        "node {} runs {AARCH64} (little-endian, 64-bit)",
        node.name()
    );
    assert!(stdout.contains(&runs), "{stdout}");
    node.log
        .wait_for("runs its build 1 for aarch64-unknown-linux-gnu");
}

#[test]
fn an_x86_64_node_serves_an_aarch64_client() {
    let Some(builds) = builds("an_x86_64_node_serves_an_aarch64_client") else {
        return;
    };
    let node = Node::start(2, &[]);
    let (stdout, _) = run_on(&builds.arm_sum_primes, &[&node], &[]);
    assert_eq!(results(&stdout), local_results(&builds.host_sum_primes));
    assert_eq!(jobs_of(&stdout, &node), 9, "{stdout}");
    let runs = format!("node {} runs x86_64-unknown-linux-gnu", node.name());
    assert!(stdout.contains(&runs), "{stdout}");
}

#[test]
fn one_client_uses_a_node_of_each_architecture() {
    let Some(builds) = builds("one_client_uses_a_node_of_each_architecture") else {
        return;
    };
    let arm = arm_node(&builds, 2);
    let x86 = Node::start(1, &[]);
    let (stdout, _) = run_on(&builds.host_reverse_md5, &[&arm, &x86], &[]);
    assert_eq!(results(&stdout), local_results(&builds.host_reverse_md5));
    assert!(
        jobs_of(&stdout, &arm) > 0,
        "the aarch64 node ran nothing:\n{stdout}"
    );
    assert!(
        jobs_of(&stdout, &x86) > 0,
        "the x86-64 node ran nothing:\n{stdout}"
    );
}

#[test]
fn a_node_without_a_build_is_reported_once_with_the_command() {
    let Some(builds) = builds("a_node_without_a_build_is_reported_once_with_the_command") else {
        return;
    };
    let node = arm_node(&builds, 1);
    // Outside cargo's layout the client finds no aarch64 build; its jobs run locally.
    let dir = temp_dir("lone-build");
    std::fs::create_dir_all(&dir).unwrap();
    let lone = dir.join("sum_primes");
    std::fs::copy(&builds.host_sum_primes, &lone).unwrap();
    // No local worker until the fallback wait has passed: the client is still running
    // when the node under qemu answers its hello (a generous bound, not a race with
    // local workers that finish every job first, as a loaded CI machine showed).
    let (stdout, stderr) = run_on(
        &lone,
        &[&node],
        &[("PP_NCPUS", "0"), ("PP_FALLBACK_WAIT", "15")],
    );
    assert_eq!(results(&stdout), local_results(&builds.host_sum_primes));
    let said = format!(
        "no build of this program for the node's target {AARCH64} (little-endian, 64-bit): \
         make one with `cargo build --release --target {AARCH64}`"
    );
    assert_eq!(stderr.matches(&said).count(), 1, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_build_of_other_source_is_refused_naming_the_task() {
    let Some(builds) = builds("a_build_of_other_source_is_refused_naming_the_task") else {
        return;
    };
    // reverse_md5's aarch64 build offered to sum_primes: other tasks.
    let other = builds
        .arm_sum_primes
        .with_file_name("reverse_md5")
        .to_string_lossy()
        .into_owned();
    let output = run(
        &builds.host_sum_primes,
        &[
            ("PP_SERVERS", "127.0.0.1:1"),
            ("PP_SECRET", SECRET),
            ("PP_PROGRAMS", &other),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("the build {other}")), "{stderr}");
    assert!(stderr.contains("is not this program: "), "{stderr}");
    assert!(
        stderr.contains("reverse_md5::"),
        "a task is named: {stderr}"
    );
}
