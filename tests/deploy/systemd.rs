//! deploy/systemd/ppserver.service: `systemd-analyze verify` accepts it, its exposure is
//! low, its secret comes from a credential, and its command line, with systemd's
//! specifiers filled in as systemd would, serves jobs.

use std::process::Command;

use crate::node::{
    check_flags, check_variable, dir_mode, flag_value, relocate, relocate_path, repo_file,
};
use crate::node::{write_secret, Deployed};
use crate::support::temp_dir;

const UNIT: &str = "deploy/systemd/ppserver.service";

/// The highest exposure `systemd-analyze security` may give the unit (0 to 10; systemd
/// calls up to 2.0 "OK").
const MAX_EXPOSURE: f64 = 2.0;

/// Every `Key=value` of the unit's section `[section]`, in order.
fn settings(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
        } else if inside && !line.is_empty() && !line.starts_with('#') {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not Key=value: {line}"));
            out.push((key.to_owned(), value.to_owned()));
        }
    }
    out
}

/// The one value of `key` (panics when absent).
fn one<'a>(settings: &'a [(String, String)], key: &str) -> &'a str {
    settings
        .iter()
        .rev()
        .find_map(|(k, v)| (k == key).then_some(v.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in {UNIT}"))
}

/// Runs `systemd-analyze` with `args`; `None` (and a line on stderr) when it is absent.
fn systemd_analyze(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(output) => Some(output),
        Err(e) => {
            eprintln!("skipped: systemd-analyze cannot run ({e}); .ci/run installs systemd");
            None
        }
    }
}

#[test]
fn the_unit_reads_its_secret_from_a_credential_and_its_command_line_serves_jobs() {
    let text = repo_file(UNIT);
    let service = settings(&text, "Service");
    let exec: Vec<String> = one(&service, "ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        !exec.iter().any(|part| part.contains(['"', '\''])),
        "quoting the test does not follow"
    );
    assert!(
        exec[0].starts_with('/') && exec[0].ends_with("/ppserver"),
        "ExecStart runs {}",
        exec[0]
    );
    let args = &exec[1..];
    check_flags(args, "the unit's ExecStart");

    // The secret: a credential, named by PP_SECRET_FILE in the credentials directory.
    let (credential, source) = one(&service, "LoadCredential")
        .split_once(':')
        .expect("NAME:PATH");
    assert!(
        source.starts_with('/'),
        "the credential's source is an absolute path"
    );
    let environment: Vec<(String, String)> = service
        .iter()
        .filter(|(k, _)| k == "Environment")
        .map(|(_, v)| v.split_once('=').expect("Environment=NAME=VALUE"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (name, _) in &environment {
        check_variable(name, "the unit");
    }
    let secret_file = environment
        .iter()
        .find(|(k, _)| k == "PP_SECRET_FILE")
        .expect("PP_SECRET_FILE");
    assert_eq!(
        secret_file.1,
        format!("%d/{credential}"),
        "PP_SECRET_FILE is the credential"
    );

    // The cache: in CacheDirectory, one level down (with DynamicUser the directory itself
    // is a symbolic link, which ppserver refuses).
    let cache = flag_value(args, "--cache-dir").expect("--cache-dir");
    let below = format!("%C/{}/", one(&service, "CacheDirectory"));
    assert!(
        cache.starts_with(&below) && cache.len() > below.len(),
        "--cache-dir {cache}: not below {below}"
    );
    assert_eq!(one(&service, "Restart"), "on-failure");
    // ppserver's status for a mistake in its flags or secret, which a restart cannot fix.
    let status = crate::support::ppserver_command(&["--no-such-flag"])
        .status()
        .expect("run ppserver");
    assert_eq!(
        status.code().map(|c| c.to_string()).as_deref(),
        Some(one(&service, "RestartPreventExitStatus"))
    );

    let root = temp_dir("systemd");
    if let Some(output) = verify(&text, &root) {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && said.trim().is_empty(),
            "systemd-analyze verify:\n{said}"
        );
        let unit = root.join("ppserver.service");
        let unit = unit.to_str().expect("utf-8");
        if let Some(output) = systemd_analyze(&["security", "--offline=yes", unit]) {
            let said = String::from_utf8_lossy(&output.stdout);
            let level: f64 = said
                .lines()
                .find_map(|l| {
                    l.split("Overall exposure level for ppserver.service: ")
                        .nth(1)
                })
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no exposure level in:\n{said}"));
            eprintln!("systemd-analyze security: exposure {level} of 10");
            assert!(
                level <= MAX_EXPOSURE,
                "exposure {level} > {MAX_EXPOSURE}:\n{said}"
            );
        }
    }
    // %C is the cache root, %d the credentials directory, also in $CREDENTIALS_DIRECTORY.
    // Its files have mode 0440 from systemd 254 on (and an ACL): no warning for that.
    let moves = [
        ("%C".to_owned(), root.join("cache")),
        ("%d".to_owned(), root.join("credentials")),
    ];
    let secret_path = relocate_path(&secret_file.1, &moves);
    write_secret(secret_path.as_ref(), 0o440);
    let env = [
        ("PP_SECRET_FILE".to_owned(), secret_path),
        (
            "CREDENTIALS_DIRECTORY".to_owned(),
            root.join("credentials").display().to_string(),
        ),
    ];
    let node = Deployed::start(&relocate(args, &moves), &env);
    node.serves_jobs();
    let cache = relocate_path(cache, &moves);
    assert_eq!(dir_mode(cache.as_ref()), 0o700, "the cache is private");
    node.stop_cleanly();
    let _ = std::fs::remove_dir_all(&root);
}

/// `systemd-analyze verify` of the unit copied into `dir`, its ExecStart running the
/// ppserver just built (verify wants the program to exist); `None` if it cannot run.
fn verify(text: &str, dir: &std::path::Path) -> Option<std::process::Output> {
    std::fs::create_dir_all(dir).expect("a temporary directory");
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .and_then(|l| l.split_whitespace().next())
        .expect("an ExecStart");
    let unit = dir.join("ppserver.service");
    std::fs::write(&unit, text.replace(exec, env!("CARGO_BIN_EXE_ppserver")))
        .expect("write the unit");
    systemd_analyze(&["verify", unit.to_str().expect("utf-8")])
}
