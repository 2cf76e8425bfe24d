//! The tools a Windows build needs here (mingw-w64, Rust's `x86_64-pc-windows-gnu`
//! target, Wine), the cross build in a target directory of its own, and programs run under
//! Wine with a bounded wait.

// Each item is used by tests/windows.rs, the only crate that includes this file.
#![allow(unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Windows target the library is built for.
pub const TARGET: &str = "x86_64-pc-windows-gnu";

/// The bound on one cross build (a debug build of the examples and the local tests from
/// nothing: a few minutes on a busy machine).
const BUILD_WAIT: Duration = Duration::from_secs(1500);

/// The bound on the first start of a Wine prefix, which creates it (slow: tens of seconds).
const PREFIX_WAIT: Duration = Duration::from_secs(300);

/// What a bounded run gave.
pub struct Ran {
    /// Whether the process exited with status 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Why the test cannot run here (a missing tool), if it cannot.
pub fn missing_tool() -> Option<String> {
    for (tool, package) in [
        ("x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64"),
        ("wine", "wine wine64"),
        ("wineboot", "wine"),
    ] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("no `{tool}` (Debian: {package})"));
        }
    }
    // The standard library for the target is there once `rustup target add` ran.
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let has_std = libdir
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .is_some_and(|mut entries| {
            entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd")))
        });
    (!has_std)
        .then(|| format!("no Rust standard library for {TARGET} (rustup target add {TARGET})"))
}

/// Runs `command` to its end, at most `bound`; kills it past that. Its output goes to
/// files (no pipe to fill up), read back at the end.
pub fn run_bounded(command: &mut Command, bound: Duration, scratch: &Path) -> Ran {
    std::fs::create_dir_all(scratch).expect("a scratch directory");
    let (out_path, err_path) = (scratch.join("stdout"), scratch.join("stderr"));
    let out = std::fs::File::create(&out_path).expect("a stdout file");
    let err = std::fs::File::create(&err_path).expect("a stderr file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    };
    let ran = Ran {
        success: status.is_some_and(|s| s.success()),
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    assert!(
        status.is_some(),
        "{command:?} did not end within {bound:?}; stdout:\n{}\nstderr:\n{}",
        ran.stdout,
        ran.stderr
    );
    ran
}

/// Where the Windows build and the Wine prefix live: beside this test's own build, in a
/// target directory of their own (the outer `cargo test` may still hold its own).
pub fn work_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("windows")
}

/// Runs `cargo <args> --target x86_64-pc-windows-gnu` on this workspace, in the Windows
/// target directory; panics with cargo's output if it fails. Returns cargo's standard error.
pub fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut command = Command::new(cargo);
    // From the workspace, so that its `.cargo/config.toml` applies.
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .args(["--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", work_dir().join("target"))
        .env("CARGO_TERM_COLOR", "never");
    let ran = run_bounded(&mut command, BUILD_WAIT, &work_dir().join("cargo-log"));
    assert!(
        ran.success,
        "cargo {args:?} for {TARGET} failed:\n{}",
        ran.stderr
    );
    ran.stderr
}

/// The Windows debug build's directory.
pub fn debug_dir() -> PathBuf {
    work_dir().join("target").join(TARGET).join("debug")
}

/// The test's Wine prefix: made on first use (bounded), with `bcryptprimitives.dll`.
pub fn prefix() -> PathBuf {
    // Once per test binary: the tests run at the same time.
    static PREFIX: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PREFIX.get_or_init(make_prefix).clone()
}

fn make_prefix() -> PathBuf {
    let prefix = work_dir().join("wine-prefix");
    let system32 = prefix.join("drive_c/windows/system32");
    if !system32.join("kernel32.dll").exists() {
        eprintln!(
            "windows: creating the Wine prefix {} (slow the first time)",
            prefix.display()
        );
        let mut boot = wine_command("wineboot", &prefix);
        boot.arg("--init");
        let ran = run_bounded(&mut boot, PREFIX_WAIT, &work_dir().join("wineboot-log"));
        assert!(ran.success, "wineboot --init failed:\n{}", ran.stderr);
    }
    let dll = system32.join("bcryptprimitives.dll");
    if !dll.exists() {
        // Wine 8 has no ProcessPrng, which every Rust program for Windows needs to start:
        // see bcryptprimitives.c.
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/windows/bcryptprimitives.c");
        let mut gcc = Command::new("x86_64-w64-mingw32-gcc");
        gcc.args(["-shared", "-O2", "-o"])
            .arg(&dll)
            .arg(&source)
            .arg("-ladvapi32");
        let ran = run_bounded(
            &mut gcc,
            Duration::from_secs(120),
            &work_dir().join("gcc-log"),
        );
        assert!(
            ran.success,
            "cannot build bcryptprimitives.dll:\n{}",
            ran.stderr
        );
    }
    prefix
}

/// `program` (wine, wineboot) with the prefix and quiet Wine: no debug channels, no
/// offer to install Mono or Gecko.
pub fn wine_command(program: &str, prefix: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
    command
}

/// Runs the Windows program `exe` with `args` under Wine, at most `bound`.
pub fn run_exe(exe: &Path, args: &[&str], env: &[(&str, &str)], bound: Duration) -> Ran {
    let prefix = prefix();
    let mut command = wine_command("wine", &prefix);
    command.arg(exe).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let name = exe
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    run_bounded(&mut command, bound, &work_dir().join("runs").join(name))
}
