//! The library, `ppserver` and the examples build for systems this machine cannot link
//! for: macOS (both architectures) and FreeBSD. Neither a Darwin nor a FreeBSD C toolchain
//! exists here, so these are `cargo check` runs (type-checked, every `cfg` gate of those
//! systems taken), one after the other in one target directory under `CARGO_TARGET_TMPDIR`
//! (the outer `cargo test` holds its own), so that the proc macros and build scripts, built
//! for this machine, are built once for the three. On macOS pp uses RustCrypto instead of ring, whose
//! build needs a C compiler for the target. A missing rustup target (`rustup target add
//! ...`, which `.ci/run` runs) is said on stderr and the test passes. Windows is built and
//! run under Wine by tests/windows.rs; aarch64 Linux under qemu by tests/cross_arch.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long one check may take (the dependencies the first time: minutes), not counting
/// the wait for the others.
const CHECK_BOUND: Duration = Duration::from_secs(1200);

/// Taken by each check for its run: they share the target directory, so they would take
/// turns anyway, at cargo's lock, whose wait would count against [`CHECK_BOUND`].
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `cargo check --target <target> --lib --bins --examples` of the workspace; `Err` says
/// why it could not run (a missing target), a failed check panics with cargo's errors.
fn check(target: &str) -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("no rustup to tell the installed targets: {e}"))?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == target)
    {
        return Err(format!(
            "the rust target is not installed (rustup target add {target})"
        ));
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check-other-systems");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let log_path = dir.join(format!("cargo-log-{target}"));
    // A check that failed in another test leaves the lock poisoned, and the directory fit.
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut child = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "--target", target, "--lib", "--bins", "--examples"])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let deadline = Instant::now() + CHECK_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cargo") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cargo check --target {target} ran past {CHECK_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "cargo check --target {target} failed:\n{text}"
    );
    // The check of pp's own crates is quiet: a warning there is a finding.
    let ours = text
        .lines()
        .filter(|l| l.starts_with("warning") && !l.contains("generated"))
        .count();
    assert_eq!(ours, 0, "warnings for {target}:\n{text}");
    Ok(())
}

fn check_or_skip(test: &str, target: &str) {
    if let Err(why) = check(target) {
        eprintln!("{test}: skipped: {why}");
    }
}

#[test]
fn the_library_ppserver_and_the_examples_check_for_macos_on_arm() {
    check_or_skip(
        "the_library_ppserver_and_the_examples_check_for_macos_on_arm",
        "aarch64-apple-darwin",
    );
}

#[test]
fn the_library_ppserver_and_the_examples_check_for_macos_on_x86_64() {
    check_or_skip(
        "the_library_ppserver_and_the_examples_check_for_macos_on_x86_64",
        "x86_64-apple-darwin",
    );
}

#[test]
fn the_library_ppserver_and_the_examples_check_for_freebsd() {
    check_or_skip(
        "the_library_ppserver_and_the_examples_check_for_freebsd",
        "x86_64-unknown-freebsd",
    );
}
