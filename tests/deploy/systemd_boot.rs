//! The unit really started by systemd, whole sandbox included (DynamicUser, the
//! credential, ProtectSystem=strict, PrivateUsers, the system call filter,
//! MemoryDenyWriteExecute...), and jobs run by its workers.
//!
//! systemd is rarely PID 1 where tests run (a container, a CI job), so the test boots its
//! own: `unshare` makes a PID, mount and cgroup namespace, in a cgroup of the test's own,
//! and systemd starts there as PID 1 with only the unit as its goal (a drop-in removes the
//! default dependencies, listens on 127.0.0.1 port 0, points the credential at the test's
//! secret and the cache at a name of its own). `/run` and `/tmp` are private to that
//! namespace; what systemd leaves elsewhere (the cache under /var/cache, the cgroup) is
//! removed at the end. Needs root, `unshare`, systemd and a writable cgroup2 hierarchy:
//! skips with a line on stderr otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::node::{repo_file, serves_jobs, warnings, write_secret};
use crate::support::{children_of, temp_dir, WAIT};

/// Where systemd is installed (Debian and others).
const SYSTEMD: [&str; 2] = ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"];

/// The namespace's private directory for what the unit reads (copied in before systemd
/// starts: `/tmp`, where the test's files are, is hidden from it).
const INSIDE: &str = "/run/pp-deploy-test";

/// The booted systemd, its cgroup and its cache: all removed on drop.
struct Boot {
    /// `unshare`, whose child is systemd.
    unshare: Child,
    cgroup: PathBuf,
    unit: String,
    dir: PathBuf,
}

impl Boot {
    /// The namespace's systemd, PID 1 inside (its pid outside).
    fn systemd(&self) -> Option<u32> {
        children_of(self.unshare.id()).first().copied()
    }

    /// The text of a file of the namespace (seen through unshare's own mount namespace).
    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/root{path}", self.unshare.id()))
            .unwrap_or_default()
    }

    /// `systemctl ARGS` inside the namespace.
    fn systemctl(&self, args: &[&str]) -> String {
        let pid = self.systemd().expect("systemd runs").to_string();
        let output = Command::new("nsenter")
            .args(["-t", &pid, "-m", "-p", "systemctl", "--no-pager"])
            .args(args)
            .output()
            .expect("run nsenter");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits (at most [`WAIT`]) for a line with `text` in the unit's log.
    fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.read(&format!("{INSIDE}/ppserver.log"));
            if let Some(line) = log.lines().find(|l| l.contains(text)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} from the unit within {WAIT:?}.\nlog:\n{log}\nsystemd:\n{}\nstatus:\n{}",
                std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default(),
                self.systemctl(&["status", &self.unit]),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        // Everything in the cgroup, systemd first: the namespace ends with its PID 1.
        if let Some(systemd) = self.systemd() {
            // SAFETY: kill takes integers; the pid is the systemd this test started.
            unsafe { libc::kill(systemd as libc::pid_t, libc::SIGKILL) };
        }
        let _ = std::fs::write(self.cgroup.join("cgroup.kill"), "1");
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        let deadline = Instant::now() + WAIT;
        while remove_cgroup(&self.cgroup).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/cache/private").join(self.unit_name()));
        let _ = std::fs::remove_file(Path::new("/var/cache").join(self.unit_name()));
        let _ = std::fs::remove_dir(Path::new("/var/cache/private"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Boot {
    fn unit_name(&self) -> String {
        self.unit.trim_end_matches(".service").to_owned()
    }
}

/// Removes a cgroup and the ones systemd made in it, deepest first.
fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

/// Why the test cannot boot systemd here, if it cannot.
fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("it needs root".into());
    }
    if !SYSTEMD.iter().any(|p| Path::new(p).exists()) {
        return Some("systemd is not installed (.ci/run installs it)".into());
    }
    for tool in ["unshare", "nsenter"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("`{tool}` cannot run (util-linux)"));
        }
    }
    if cgroup2().is_none() {
        return Some("no writable cgroup2 hierarchy".into());
    }
    // New PID and mount namespaces need CAP_SYS_ADMIN, which a container's root may lack.
    let probe = Command::new("unshare")
        .args(["--fork", "--pid", "--mount", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status();
    (!probe.is_ok_and(|s| s.success())).then(|| "`unshare` may not make namespaces".into())
}

/// Where the cgroup2 hierarchy is mounted, if writable.
fn cgroup2() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let writable = fields.get(5)?.split(',').any(|o| o == "rw");
        let at = PathBuf::from(fields.get(4)?);
        (after.starts_with("cgroup2 ") && writable).then_some(at)
    })
}

/// Boots systemd with the unit (as `name.service`) and the drop-in `dropin`.
fn boot(name: &str, unit: &str, dropin: &str) -> Boot {
    let dir = temp_dir("systemd-boot");
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let cgroup = cgroup2().expect("cgroup2").join(name);
    std::fs::create_dir(&cgroup).expect("a cgroup of the test's own");
    let service = format!("{name}.service");
    std::fs::write(dir.join(&service), unit).expect("write the unit");
    std::fs::write(dir.join("test.conf"), dropin).expect("write the drop-in");
    write_secret(&dir.join("secret"), 0o600);
    let systemd = SYSTEMD
        .iter()
        .find(|p| Path::new(p).exists())
        .expect("systemd");
    let d = dir.display();
    let script = format!(
        "set -e\n\
         mount -t tmpfs tmpfs /run\n\
         mkdir -p {INSIDE} /run/systemd/system/{service}.d\n\
         cp {d}/secret {INSIDE}/secret\n\
         cp {ppserver} {INSIDE}/ppserver\n\
         cp {d}/{service} /run/systemd/system/\n\
         cp {d}/test.conf /run/systemd/system/{service}.d/\n\
         mount -t tmpfs tmpfs /tmp\n\
         mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
         mount --make-rshared /\n\
         export container=unshare\n\
         exec {systemd} --system --unit={service} --log-target=console\n",
        ppserver = env!("CARGO_BIN_EXE_ppserver"),
    );
    std::fs::write(dir.join("inner.sh"), script).expect("write the script");
    let console = std::fs::File::create(dir.join("console.log")).expect("console log");
    let unshare = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec unshare --fork --pid --mount --uts --ipc --cgroup \
             --propagation private --mount-proc sh {d}/inner.sh",
            cgroup.display()
        ))
        .stdin(Stdio::null())
        .stdout(console.try_clone().expect("console"))
        .stderr(console)
        .spawn()
        .expect("start unshare");
    Boot {
        unshare,
        cgroup,
        unit: service,
        dir,
    }
}

#[test]
fn systemd_starts_the_unit_in_its_sandbox_and_its_workers_run_jobs() {
    if let Some(why) = missing() {
        eprintln!("skipped: systemd cannot be booted in a namespace here: {why}");
        return;
    }
    let name = format!("pp-deploy-test-{}", std::process::id());
    let text = repo_file("deploy/systemd/ppserver.service");
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    // The unit's own command line, with the port, the address, the program and the cache
    // made the test's.
    let mut args: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    args[0] = format!("{INSIDE}/ppserver");
    let port = args.iter().position(|a| a == "--port").expect("--port");
    args[port + 1] = "0".into();
    args.extend(["--interface".into(), "127.0.0.1".into()]);
    let args = args
        .join(" ")
        .replace("%C/ppserver/", &format!("%C/{name}/"));
    let dropin = format!(
        "[Unit]\nDefaultDependencies=no\n\
         [Service]\n\
         LoadCredential=\nLoadCredential=secret:{INSIDE}/secret\n\
         ExecStart=\nExecStart={args}\n\
         CacheDirectory=\nCacheDirectory={name}\n\
         StandardOutput=append:{INSIDE}/ppserver.log\nStandardError=append:{INSIDE}/ppserver.log\n"
    );
    let boot = boot(&name, &text, &dropin);
    let line = boot.wait_for_log("ppserver listening on ");
    let addr = line
        .split_whitespace()
        .nth(3)
        .expect("an address")
        .to_owned();
    serves_jobs(&addr);

    // The node as systemd runs it: its own user, no new privileges, filtered system calls.
    let procs = std::fs::read_to_string(
        boot.cgroup
            .join("system.slice")
            .join(&boot.unit)
            .join("cgroup.procs"),
    )
    .expect("the unit's cgroup");
    let pid = procs.lines().next().expect("the unit's main process");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
    };
    assert_ne!(
        field("Uid:").as_deref(),
        Some("0"),
        "the node runs as root:\n{status}"
    );
    assert_eq!(field("NoNewPrivs:").as_deref(), Some("1"));
    assert_eq!(
        field("Seccomp:").as_deref(),
        Some("2"),
        "no system call filter"
    );

    boot.systemctl(&["stop", &boot.unit]);
    boot.wait_for_log("stopped; statistics");
    let log = boot.read(&format!("{INSIDE}/ppserver.log"));
    assert!(warnings(&log).is_empty(), "the unit's node warned:\n{log}");
    assert!(
        log.contains(&format!("/var/cache/{name}/programs")),
        "the cache is elsewhere:\n{log}"
    );
    eprintln!("systemd (PID 1 of a namespace) started the unit, its workers ran 8 jobs:\n{line}");
}
