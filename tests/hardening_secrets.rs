//! The cluster's secret on a real `ppserver` (SECURITY.md, "The secret on a node"):
//!
//! - a weak secret (too short, whitespace, one byte repeated) is refused unless
//!   `--allow-weak-secret` forces it, and then with a warning; a secret file says what is
//!   wrong with it (empty, only a line break) and is warned about when other users can
//!   read it;
//! - once the node runs, the secret is in none of `/proc/PID/environ` (the node's or its
//!   workers'), nor anywhere in the node's memory, and the node does not dump core.
//!
//! The node starts this test binary as its workers (the worker hook turns those processes
//! into workers before the harness would run).

#![cfg(unix)]

mod support;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
#[cfg(target_os = "linux")]
use std::path::Path;
#[cfg(target_os = "linux")]
use std::process::{Child, Command};
use std::time::Instant;

use support::{collect_stderr, ppserver_command, temp_dir, wait_bounded, WAIT};

/// Keeps the worker hook in this binary, whatever else the linker drops.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

/// How a `ppserver` started with some secret ended.
#[derive(Debug)]
enum Fate {
    /// It exited with status 2; its standard error.
    Refused(String),
    /// It listened (and was then killed); its standard error up to then.
    Listening(String),
}

impl Fate {
    fn refused(self) -> String {
        match self {
            Fate::Refused(log) => log,
            Fate::Listening(log) => panic!("the node started, it should have refused:\n{log}"),
        }
    }

    fn listening(self) -> String {
        match self {
            Fate::Listening(log) => log,
            Fate::Refused(log) => panic!("the node refused to start:\n{log}"),
        }
    }
}

/// Starts `ppserver` on a free port of 127.0.0.1 with `args` and `env`, and sees whether
/// it refuses (exits 2) or listens (then kills it).
fn start(args: &[&str], env: &[(&str, &OsStr)]) -> Fate {
    let cache = temp_dir("cache");
    let mut command = ppserver_command(&["--port", "0", "--interface", "127.0.0.1", "-w", "1"]);
    command.arg("--cache-dir").arg(&cache).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start ppserver");
    let log = collect_stderr(&mut child);
    let deadline = Instant::now() + WAIT;
    let fate = loop {
        if log.contains("ppserver listening on ") {
            let _ = child.kill();
            let _ = child.wait();
            break Fate::Listening(log.text());
        }
        if let Some(status) = child.try_wait().expect("wait for ppserver") {
            log.wait_for("ppserver: ");
            assert_eq!(status.code(), Some(2), "{}", log.text());
            break Fate::Refused(log.text());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ppserver neither listened nor exited:\n{}", log.text());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let _ = std::fs::remove_dir_all(&cache);
    fate
}

/// Writes `content` to a fresh file of mode `mode`, in a fresh directory.
fn secret_file(name: &str, content: &[u8], mode: u32) -> std::path::PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn assert_has(log: &str, text: &str) {
    assert!(log.contains(text), "no {text:?} in:\n{log}");
}

#[test]
fn weak_secrets_are_refused_unless_forced_and_secret_files_say_what_is_wrong() {
    // Too short, whatever its source; the message names the source, the rule and the way out.
    let log = start(&["-s", "a"], &[]).refused();
    assert_has(
        &log,
        "ppserver: the secret from --secret is too weak: 1 byte long",
    );
    assert_has(&log, "at least 16");
    assert_has(&log, "--allow-weak-secret");
    let log = start(&[], &[("PP_SECRET", OsStr::new("hunter2"))]).refused();
    assert_has(&log, "the secret from PP_SECRET is too weak: 7 bytes long");

    // Whitespace, and one byte repeated, however long.
    let log = start(&["-s", " "], &[]).refused();
    assert_has(
        &log,
        "the secret from --secret is too weak: it is only whitespace",
    );
    let log = start(&["-s", &" \t".repeat(20)], &[]).refused();
    assert_has(&log, "it is only whitespace");
    let log = start(&["-s", &"a".repeat(40)], &[]).refused();
    assert_has(&log, "it is one byte repeated");
    let log = start(&["-s", &"ab".repeat(20)], &[]).refused();
    assert_has(&log, "only 2 different bytes");

    // A secret file says what is wrong with it rather than "no secret given".
    let newline = secret_file("newline", b"\n", 0o600);
    let path = newline.display().to_string();
    let log = start(&["--secret-file", &path], &[]).refused();
    assert_has(
        &log,
        &format!("ppserver: the secret file {path} holds only a line break"),
    );
    assert!(!log.contains("no secret given"), "{log}");
    let empty = secret_file("empty", b"", 0o600);
    let log = start(&[], &[("PP_SECRET_FILE", empty.as_os_str())]).refused();
    assert_has(
        &log,
        &format!("ppserver: the secret file {} is empty", empty.display()),
    );
    let short = secret_file("short", b"pass\n", 0o600);
    let log = start(&[], &[("PP_SECRET_FILE", short.as_os_str())]).refused();
    assert_has(
        &log,
        &format!(
            "the secret from the secret file {} is too weak: 4 bytes long",
            short.display()
        ),
    );

    // Forced: it starts, and says so.
    let log = start(&["-s", "a", "--allow-weak-secret"], &[]).listening();
    assert_has(&log, "WARN");
    assert_has(&log, "runs with a weak secret");

    // A good secret in a file other users can read starts, with a warning that says how to
    // fix it; the same file with mode 0600 starts without one.
    let open = secret_file("open", b"a secret file that others can read\n", 0o644);
    let path = open.display().to_string();
    let log = start(&["--secret-file", &path], &[]).listening();
    assert_has(
        &log,
        &format!("the secret file {path} can be read by other users (mode 0644)"),
    );
    assert_has(&log, &format!("chmod 600 {path}"));
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log = start(&["--secret-file", &path], &[]).listening();
    assert!(!log.contains("WARN"), "{log}");

    // The README's secret and the tests' secret pass without a word.
    for secret in ["a long random secret", support::SECRET] {
        let log = start(&[], &[("PP_SECRET", OsStr::new(secret))]).listening();
        assert!(!log.contains("WARN"), "{log}");
    }

    for file in [newline, empty, short, open] {
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
    }
}

/// The bytes of `/proc/PID/FILE`, or `None` when this user may not read it (a
/// non-dumpable process's files belong to root).
#[cfg(target_os = "linux")]
fn proc_file(pid: u32, file: &str) -> Option<Vec<u8>> {
    match std::fs::read(format!("/proc/{pid}/{file}")) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => None,
        Err(e) => panic!("cannot read /proc/{pid}/{file}: {e}"),
    }
}

#[cfg(target_os = "linux")]
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether the secret is in the environment of `pid` as `/proc` shows it to this user.
#[cfg(target_os = "linux")]
fn environment_shows(pid: u32, text: &str) -> bool {
    proc_file(pid, "environ").is_some_and(|env| contains(&env, text.as_bytes()))
}

/// Where in the memory of `pid` (every readable mapping, through `/proc/PID/mem`) `needle`
/// is, as `(mapping, offset)`; `None` when this user may not read that memory.
#[cfg(target_os = "linux")]
fn find_in_memory(pid: u32, needle: &[u8]) -> Option<Vec<(String, u64)>> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = String::from_utf8(proc_file(pid, "maps")?).unwrap();
    let mut mem = match std::fs::File::open(format!("/proc/{pid}/mem")) {
        Ok(mem) => mem,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
        Err(e) => panic!("cannot open /proc/{pid}/mem: {e}"),
    };
    let mut found = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.contains("[vvar") || line.contains("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut bytes = vec![0; (end - start) as usize];
        // A mapping may vanish or shrink between the two reads: what cannot be read is skipped.
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut bytes).is_err() {
            continue;
        }
        for (offset, window) in bytes.windows(needle.len()).enumerate() {
            if window == needle {
                found.push((line.to_owned(), offset as u64));
            }
        }
    }
    Some(found)
}

/// `command` with an unlimited core size, started in `dir`.
#[cfg(target_os = "linux")]
fn spawn_with_cores(mut command: Command, dir: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    command.current_dir(dir);
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().expect("start the process")
}

/// Whether `child`, killed by SIGABRT, dumps core.
#[cfg(target_os = "linux")]
fn dumps_core(mut child: Child) -> bool {
    use std::os::unix::process::ExitStatusExt;
    // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGABRT) };
    let status = wait_bounded(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    status.core_dumped()
}

#[cfg(target_os = "linux")]
#[test]
fn the_secret_leaves_the_nodes_environment_and_memory_and_the_node_dumps_no_core() {
    use support::raw::{block_on, Client};
    use support::{Node, SECRET};

    // A node from PP_SECRET, with a session and its two workers; the session still works
    // with the key the node kept once the checks are done.
    let node = Node::start(2, &[]);
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
        client.start_session().await;
        let workers = node.wait_children(2);
        assert!(
            !environment_shows(node.pid(), SECRET),
            "PP_SECRET is still in the node's environment (/proc/{}/environ)",
            node.pid()
        );
        assert!(!environment_shows(node.pid(), "PP_SECRET="));
        for worker in &workers {
            assert!(!environment_shows(*worker, SECRET), "worker {worker}");
        }
        // Its last 32 bytes: a freed copy has its first bytes overwritten by the allocator.
        let tail = &SECRET.as_bytes()[SECRET.len() - 32..];
        match find_in_memory(node.pid(), tail) {
            Some(found) => assert!(
                found.is_empty(),
                "the plain secret is in the node's memory at {found:#?}"
            ),
            // Only the node's user can be refused: the node is not dumpable.
            // SAFETY: geteuid has no preconditions.
            None => assert_ne!(unsafe { libc::geteuid() }, 0),
        }
        let outcomes = client
            .run(vec![support::raw::job_with(1, total, &(vec![1u8; 10],))])
            .await;
        assert_eq!(
            outcomes[&1],
            pp_net::Outcome::Ok(pp::codec::encode(&10u64).unwrap())
        );
    });
    drop(node);

    // A node from PP_SECRET_FILE: the variable goes too, and the node dumps no core where a
    // plain process does (when the system dumps cores at all for a non-dumpable process's
    // user: `fs.suid_dumpable` 0).
    let dir = temp_dir("core");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut sleep = Command::new("sleep");
    sleep.arg("60");
    let sleep = spawn_with_cores(sleep, &dir);
    let deadline = Instant::now() + WAIT;
    // Killed only once it is `sleep`, not the fork of this test before its exec.
    while !std::fs::read_to_string(format!("/proc/{}/comm", sleep.id()))
        .is_ok_and(|comm| comm.trim() == "sleep")
    {
        assert!(Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let plain_dumps = dumps_core(sleep);
    let mut command = ppserver_command(&["--port", "0", "--interface", "127.0.0.1", "-w", "1"]);
    command
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .env("PP_SECRET_FILE", &file);
    let mut node = spawn_with_cores(command, &dir);
    let log = collect_stderr(&mut node);
    log.wait_for("ppserver listening on ");
    assert!(
        !environment_shows(node.id(), "PP_SECRET_FILE="),
        "PP_SECRET_FILE is still in the node's environment"
    );
    let node_dumps = dumps_core(node);
    let strict =
        std::fs::read_to_string("/proc/sys/fs/suid_dumpable").is_ok_and(|s| s.trim() == "0");
    if plain_dumps && strict {
        assert!(!node_dumps, "the node dumped core: it is still dumpable");
    } else {
        eprintln!("this system dumps no core here (plain process: {plain_dumps}, suid_dumpable 0: {strict}): the core check is skipped");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sums bytes (a job for the session that checks the node still works).
#[pp::parallel]
fn total(bytes: Vec<u8>) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}
