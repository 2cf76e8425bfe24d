//! A Slurm cluster of this one machine, for the launcher tests: `munged`, `slurmctld` and
//! `slurmd` started in the foreground by the test (as root), with their key, configuration,
//! state and logs in a temporary directory, on free ports of 127.0.0.1; stopped and removed
//! when dropped. [`Slurm::start`] says why and gives `None` when it cannot run here (not
//! root, or Slurm not installed: `.ci/run` installs `slurm-wlm` and `munge` as root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the daemons get to come up.
const READY_WAIT: Duration = Duration::from_secs(30);

/// A running one-machine Slurm.
pub struct Slurm {
    dir: PathBuf,
    conf: PathBuf,
    /// munged, slurmctld, slurmd: the processes this test started.
    daemons: Vec<Child>,
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `program` is on the `PATH` (or in an sbin directory, where Debian puts daemons).
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A free TCP port of 127.0.0.1 (free when asked: good enough for daemons started next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Slurm {
    /// Starts munged, slurmctld and slurmd for this machine and waits until its node is
    /// idle; `None`, after a line on standard error, when that cannot be done here.
    pub fn start(test: &str) -> Option<Slurm> {
        if !is_root() {
            eprintln!(
                "skipping {test}: the Slurm daemons need root (run as root, as .ci/run does)"
            );
            return None;
        }
        let tools = ["munged", "slurmctld", "slurmd", "srun", "sinfo", "sbatch"];
        let absent: Vec<&str> = tools
            .iter()
            .copied()
            .filter(|t| find(t).is_none())
            .collect();
        if !absent.is_empty() {
            eprintln!(
                "skipping {test}: {} not installed (Debian: slurm-wlm munge; .ci/run installs \
                 them as root)",
                absent.join(", ")
            );
            return None;
        }
        // A port picked free can be taken by another test's daemon or client before
        // slurmctld binds it: then the whole cluster starts again on other ports.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::bring_up() {
                Ok(slurm) => return Some(slurm),
                Err(why) if attempt < ATTEMPTS && why.contains("Address already in use") => {
                    eprintln!("{test}: a Slurm port was taken meanwhile: starting again on others");
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts munged, slurmctld and slurmd in a fresh directory on fresh ports and waits
    /// until the node is idle; `Err` holds what failed with the daemons' logs (the
    /// daemons are stopped and the directory removed then).
    fn bring_up() -> Result<Slurm, String> {
        let dir = super::temp_dir("slurm");
        for sub in ["", "munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("the slurm directories");
        }
        set_mode(&dir.join("munge"), 0o700);
        let key = dir.join("munge/key");
        let mut bytes = vec![0u8; 1024];
        getrandom_fill(&mut bytes);
        std::fs::write(&key, &bytes).expect("the munge key");
        set_mode(&key, 0o600);
        let socket = dir.join("munge/socket");
        let conf = dir.join("slurm.conf");
        std::fs::write(&conf, config(&dir, &socket)).expect("slurm.conf");
        let mut slurm = Slurm {
            dir: dir.clone(),
            conf: conf.clone(),
            daemons: Vec::new(),
        };
        let munge = |name: &str| dir.join("munge").join(name);
        slurm.spawn(
            Command::new(find("munged").unwrap())
                .arg("--foreground")
                .arg("--force")
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--pid-file={}", munge("pid").display()))
                .arg(format!("--log-file={}", munge("log").display()))
                .arg(format!("--seed-file={}", munge("seed").display())),
        );
        wait_for(|| socket.exists(), "munged's socket", &dir)?;
        slurm.spawn(
            Command::new(find("slurmctld").unwrap())
                .args(["-D", "-i", "-f"])
                .arg(&conf),
        );
        slurm.spawn(
            Command::new(find("slurmd").unwrap())
                .args(["-D", "-f"])
                .arg(&conf),
        );
        let idle = || {
            slurm
                .command("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("idle"))
        };
        wait_for(idle, "an idle Slurm node (sinfo)", &dir)?;
        Ok(slurm)
    }

    fn spawn(&mut self, command: &mut Command) {
        let child = command
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        self.daemons.push(child);
    }

    /// A Slurm client command (`srun`, `sbatch`, `squeue`, ...) for this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(find(program).unwrap_or_else(|| program.into()));
        command.env("SLURM_CONF", &self.conf);
        command
    }

    /// The cluster's temporary directory (configuration, state, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemons' logs, to show when a test fails.
    pub fn logs(&self) -> String {
        ["log/slurmctld.log", "log/slurmd.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {name}\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // slurmd, slurmctld, munged: the reverse of their start.
        for child in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// slurm.conf for this machine: one node, one partition whose CPUs can be shared, every
/// path in `dir`, the daemons on free ports of 127.0.0.1 only (`NoInAddrAny`), munge on its
/// own socket.
fn config(dir: &Path, munge_socket: &Path) -> String {
    let host = hostname();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let d = dir.display();
    format!(
        "ClusterName=pptest\n\
         SlurmctldHost={host}(127.0.0.1)\n\
         SlurmctldPort={ctld}\n\
         SlurmdPort={slurmd}\n\
         SlurmUser=root\n\
         SlurmdUser=root\n\
         AuthType=auth/munge\n\
         AuthInfo=socket={socket}\n\
         CredType=cred/munge\n\
         MpiDefault=none\n\
         ProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\n\
         SelectType=select/cons_tres\n\
         SelectTypeParameters=CR_CPU\n\
         ReturnToService=2\n\
         SlurmdParameters=config_overrides\n\
         CommunicationParameters=NoInAddrAny\n\
         StateSaveLocation={d}/state\n\
         SlurmdSpoolDir={d}/spool\n\
         SlurmctldPidFile={d}/slurmctld.pid\n\
         SlurmdPidFile={d}/slurmd.pid\n\
         SlurmctldLogFile={d}/log/slurmctld.log\n\
         SlurmdLogFile={d}/log/slurmd.log\n\
         NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
         PartitionName=pp Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES\n",
        ctld = free_port(),
        slurmd = free_port(),
        socket = munge_socket.display(),
    )
}

/// This machine's short host name, as slurmd names its node.
fn hostname() -> String {
    let out = Command::new("hostname")
        .arg("-s")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Random bytes from the kernel (a munge key).
fn getrandom_fill(bytes: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(bytes))
        .expect("/dev/urandom");
}

/// Waits (at most [`READY_WAIT`]) until `ready`; else `Err` with the daemons' logs.
fn wait_for(mut ready: impl FnMut() -> bool, what: &str, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_WAIT;
    while !ready() {
        if Instant::now() >= deadline {
            let logs = ["munge/log", "log/slurmctld.log", "log/slurmd.log"]
                .iter()
                .map(|n| std::fs::read_to_string(dir.join(n)).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n---\n");
            return Err(format!("no {what} within {READY_WAIT:?}; logs:\n{logs}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
