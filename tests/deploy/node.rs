//! What the deployment files are checked against: the flags `ppserver --help` lists, the
//! `PP_*` variables the code reads, and a node started from a deployment's command line
//! that must serve jobs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, OnceLock};

use crate::support::{
    as_ppserver, collect_stderr, jobs_of, ppserver_command, wait_bounded, Log, SECRET, WAIT,
};

/// The repository's root.
pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The text of a file of the repository.
pub(crate) fn repo_file(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The flags `ppserver --help` lists, long and short (`--port`, `-p`).
pub(crate) fn help_flags() -> &'static BTreeSet<String> {
    static FLAGS: OnceLock<BTreeSet<String>> = OnceLock::new();
    FLAGS.get_or_init(|| {
        let output = Command::new(env!("CARGO_BIN_EXE_ppserver"))
            .arg("--help")
            .output()
            .expect("run ppserver --help");
        assert!(output.status.success(), "ppserver --help failed");
        let help = String::from_utf8_lossy(&output.stdout).into_owned();
        let flags: BTreeSet<String> = help
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|word| word.starts_with('-'))
            .map(|word| word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
            .filter(|word| word.len() > 1 && word != &"--")
            .map(str::to_owned)
            .collect();
        assert!(
            flags.contains("--port"),
            "no --port in ppserver --help:\n{help}"
        );
        flags
    })
}

/// The `PP_*` variable names the code reads or sets: every `"PP_..."` string literal in
/// the sources of the facade, pp-runtime and pp-net.
pub(crate) fn code_variables() -> &'static BTreeSet<String> {
    static NAMES: OnceLock<BTreeSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = BTreeSet::new();
        for dir in ["src", "pp-runtime/src", "pp-net/src"] {
            for file in rust_files(&repo().join(dir)) {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                for piece in text.split("\"PP_").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if piece[name.len()..].starts_with('"') {
                        names.insert(format!("PP_{name}"));
                    }
                }
            }
        }
        assert!(
            names.contains("PP_SECRET_FILE"),
            "no PP_SECRET_FILE in the code: {names:?}"
        );
        names
    })
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// Runs the linter `tool` on `args` (paths relative to the repository) and asserts it
/// finds nothing; skips with a line on stderr when it is not installed (`how` says how to
/// install it).
pub(crate) fn lint(tool: &str, args: &[&str], how: &str) {
    match Command::new(tool).args(args).current_dir(repo()).output() {
        Ok(output) => assert!(
            output.status.success(),
            "{tool} {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => eprintln!("skipped: {tool} cannot run ({e}); {how}"),
    }
}

/// Asserts that every flag in `args` is one `ppserver --help` lists.
pub(crate) fn check_flags(args: &[String], origin: &str) {
    for arg in args.iter().filter(|arg| arg.starts_with('-')) {
        let name = arg.split('=').next().unwrap_or(arg);
        assert!(
            help_flags().contains(name),
            "{origin} passes {name} to ppserver, which `ppserver --help` does not list \
             (it lists {:?})",
            help_flags()
        );
    }
}

/// Asserts that `name`, set by `origin`, is a variable the code reads.
pub(crate) fn check_variable(name: &str, origin: &str) {
    if name.starts_with("PP_") {
        assert!(
            code_variables().contains(name),
            "{origin} sets {name}, which no pp code reads (it reads {:?})",
            code_variables()
        );
    }
}

/// The value of `flag` in `args` (`--flag VALUE` or `--flag=VALUE`).
pub(crate) fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            arg.strip_prefix(flag)?.strip_prefix('=')
        }
    })
}

/// `args` with the paths under each `(from, to)` prefix moved under `to`.
pub(crate) fn relocate(args: &[String], moves: &[(String, PathBuf)]) -> Vec<String> {
    args.iter().map(|arg| relocate_path(arg, moves)).collect()
}

/// One path (or `--flag=path`) moved as [`relocate`] does.
pub(crate) fn relocate_path(arg: &str, moves: &[(String, PathBuf)]) -> String {
    for (from, to) in moves {
        if let Some(at) = arg.find(from.as_str()) {
            let rest = &arg[at + from.len()..];
            if rest.is_empty() || rest.starts_with('/') {
                return format!("{}{}{rest}", &arg[..at], to.display());
            }
        }
    }
    arg.to_owned()
}

/// Writes the tests' secret to `path` with `mode`, as the deployment would place it.
pub(crate) fn write_secret(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("secret's directory");
    std::fs::write(path, format!("{SECRET}\n")).expect("write the secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A `ppserver` started from a deployment's arguments; killed and reaped on drop.
pub(crate) struct Deployed {
    child: Child,
    /// Its standard error.
    pub(crate) log: Arc<Log>,
    /// `host:port` where it listens.
    pub(crate) name: String,
}

impl Deployed {
    /// Starts `ppserver` with `args` (their `--port` replaced by 0, on 127.0.0.1) and
    /// `env`, and waits for its listening line.
    pub(crate) fn start(args: &[String], env: &[(String, String)]) -> Deployed {
        Deployed::start_as(args, env, None)
    }

    /// As [`Deployed::start`], as `user` when given (see [`RunAs::new`]).
    pub(crate) fn start_as(
        args: &[String],
        env: &[(String, String)],
        user: Option<&RunAs>,
    ) -> Deployed {
        let mut args: Vec<String> = args.to_vec();
        let port = args
            .iter()
            .position(|a| a == "--port")
            .expect("a --port flag");
        args[port + 1] = "0".into();
        assert!(
            flag_value(&args, "--interface").is_none(),
            "already an --interface"
        );
        args.extend(["--interface".into(), "127.0.0.1".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut command = match user {
            None => ppserver_command(&args),
            Some(user) => user.command(&args),
        };
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().expect("start ppserver");
        let log = collect_stderr(&mut child);
        let mut node = Deployed {
            child,
            log,
            name: String::new(),
        };
        let line = node.log.wait_for("ppserver listening on ");
        node.name = line
            .split_whitespace()
            .nth(3)
            .expect("an address")
            .to_owned();
        node
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The user the node runs as (its real uid, from `/proc`).
    pub(crate) fn uid(&self) -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the node's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next()?.parse().ok())
            .expect("a Uid line")
    }

    /// Gives the node eight jobs: see [`serves_jobs`].
    pub(crate) fn serves_jobs(&self) {
        serves_jobs(&self.name);
    }

    /// Stops the node with SIGTERM and waits for its exit; asserts it exited cleanly
    /// and logged no warning on the way.
    pub(crate) fn stop_cleanly(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        assert!(status.expect("run kill").success(), "kill -TERM failed");
        let status = wait_bounded(&mut self.child);
        assert!(
            status.success(),
            "ppserver exited with {status}:\n{}",
            self.log.text()
        );
        let warnings = warnings(&self.log.text());
        assert!(
            warnings.is_empty(),
            "the deployed node warned:\n{}",
            warnings.join("\n")
        );
    }
}

/// The unprivileged user a deployment runs the node as, when the test can become it.
pub(crate) struct RunAs {
    /// Its user id.
    pub(crate) uid: u32,
    /// Its group id.
    pub(crate) gid: u32,
    /// A copy of ppserver it can run (the build's directory may be closed to it).
    program: PathBuf,
}

impl RunAs {
    /// `uid`:`gid` when the test runs as root (with a copy of ppserver in `dir`); else
    /// `None`, with a line on stderr: the node then runs as the test's user.
    pub(crate) fn new(uid: u32, gid: u32, dir: &Path) -> Option<RunAs> {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: the node runs as this test's user, not as {uid}:{gid}");
            return None;
        }
        std::fs::create_dir_all(dir).expect("a directory for ppserver");
        let program = dir.join("ppserver");
        std::fs::copy(env!("CARGO_BIN_EXE_ppserver"), &program).expect("copy ppserver");
        for path in [dir, program.as_path()] {
            let mode = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(path, mode).expect("chmod");
        }
        Some(RunAs { uid, gid, program })
    }

    /// Gives `path` to this user.
    pub(crate) fn own(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).expect("chown");
    }

    /// `ppserver` as [`ppserver_command`] makes it, run as this user.
    fn command(&self, args: &[&str]) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(&self.program);
        as_ppserver(&mut command)
            .args(args)
            .uid(self.uid)
            .gid(self.gid);
        command
    }
}

/// The warnings in a node's log. (A client that exits lets its lane finish opening before
/// it closes it: no "did not complete the lane's handshake" from a clean exit.)
pub(crate) fn warnings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("WARN"))
        .map(str::to_owned)
        .collect()
}

/// Gives the node at `name` (`host:port`) eight jobs from a client with no local worker;
/// asserts on their results and that the node ran them all.
pub(crate) fn serves_jobs(name: &str) {
    let server = pp::Server::builder()
        .ppservers([name.to_owned()])
        .secret(SECRET)
        .ncpus(0)
        .fallback_wait(WAIT)
        .build()
        .expect("the cluster client starts");
    let jobs: Vec<_> = (0..8u64)
        .map(|x| server.submit(crate::square, (x,)))
        .collect();
    let results: Vec<u64> = jobs
        .into_iter()
        .map(|job| job.result().expect("a result"))
        .collect();
    assert_eq!(results, (0..8u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(jobs_of(&server, name), 8, "the node ran every job");
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mode bits of `path`, asserting it is a directory.
pub(crate) fn dir_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(meta.is_dir(), "{} is not a directory", path.display());
    meta.permissions().mode() & 0o7777
}
