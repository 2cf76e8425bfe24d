//! Ranks 1 and up of a launcher run: each becomes a node serving its own executable, before
//! `main` (which never runs in them), and ends when rank 0 ends.
//!
//! The rank waits (bounded) for rank 0's rendezvous directory, takes the run's secret,
//! puts its own executable into a private program cache (so the client's session finds the
//! program there and uploads nothing), listens on an ephemeral port (two runs on one host
//! never collide), says where in `rank-N`, and serves until rank 0's heartbeat says `done`
//! or the directory goes, or the heartbeat stops for [`RANK0_SILENCE`] (rank 0 was killed),
//! or SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::detect::Launch;
use super::error::LauncherError;
use super::rendezvous::{make_private_dir, Heartbeat, Rendezvous};
use super::secret::{secret_from_env, SecretSource};
use crate::node::{serve_until, NodeConfig};
use crate::Secret;

/// How long a rank waits for rank 0's rendezvous directory.
pub const RENDEZVOUS_WAIT: Duration = Duration::from_secs(60);

/// How long rank 0's heartbeat may stand still before the rank takes rank 0 for gone.
pub const RANK0_SILENCE: Duration = Duration::from_secs(15);

/// How often the rank looks at rank 0's heartbeat.
const WATCH_PERIOD: Duration = Duration::from_millis(200);

/// Serves as rank `launch.rank`'s node until the run ends.
///
/// # Errors
/// When the rendezvous does not happen, the secret is missing, or the node cannot start.
pub(super) fn serve(launch: &Launch, rendezvous: &Rendezvous) -> Result<(), LauncherError> {
    let secret = match secret_from_env()? {
        SecretSource::Env(secret) => {
            rendezvous.wait_created(RENDEZVOUS_WAIT)?;
            secret
        }
        SecretSource::None => {
            rendezvous.wait_created(RENDEZVOUS_WAIT)?;
            rendezvous.read_secret()?.ok_or_else(|| {
                LauncherError::Secret(format!(
                    "neither PP_SECRET nor PP_SECRET_FILE is set here, and rank 0 wrote no \
                     secret in {} (is PP_SECRET set in rank 0 only?)",
                    rendezvous.dir().display()
                ))
            })?
        }
    };
    let secret = Secret::new(secret).map_err(|e| LauncherError::Secret(e.to_string()))?;
    let ip = super::listen::listen_address(launch)?;
    let cache = ProgramCopy::make(launch)?;
    let mut config = NodeConfig::new(secret);
    config.listen = SocketAddr::new(ip, 0);
    config.cache_dir = cache.dir.clone();
    if let Some(cpus) = task_cpus(launch) {
        config.workers = cpus;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LauncherError::Runtime(format!("cannot start its runtime: {e}")))?;
    let served = runtime.block_on(async {
        let (ready, listening) = tokio::sync::oneshot::channel();
        let watch = rendezvous.clone();
        let rank = launch.rank;
        let node = tokio::spawn(serve_until(
            config,
            Some(ready),
            until_run_ends(watch, rank),
        ));
        if let Ok(addr) = listening.await {
            if let Err(error) = rendezvous.publish(rank, &addr.to_string()) {
                // Rank 0 may have ended already (a program that never needed its nodes):
                // then the node is about to stop, and that is no error.
                if matches!(rendezvous.heartbeat(), Heartbeat::Beat(_)) {
                    pp_runtime::error!("launcher: rank {rank}: {error}");
                }
            }
        }
        node.await
    });
    drop(cache);
    match served {
        Ok(Ok(_stats)) => Ok(()),
        Ok(Err(error)) => Err(error.into()),
        Err(join) => Err(LauncherError::Runtime(format!("it stopped: {join}"))),
    }
}

/// Completes when the run is over: rank 0 said `done` or removed the directory, its
/// heartbeat stood still for [`RANK0_SILENCE`], or this process got SIGTERM or SIGINT.
async fn until_run_ends(rendezvous: Rendezvous, rank: u32) {
    let signalled = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                },
                _ => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    };
    let watched = async {
        let mut last = rendezvous.heartbeat();
        let mut changed = Instant::now();
        loop {
            tokio::time::sleep(WATCH_PERIOD).await;
            match rendezvous.heartbeat() {
                Heartbeat::Done | Heartbeat::Gone => return,
                beat if beat != last => {
                    last = beat;
                    changed = Instant::now();
                }
                _ if changed.elapsed() >= RANK0_SILENCE => {
                    pp_runtime::warn!(
                        "launcher: rank {rank}: rank 0's heartbeat stopped {}s ago (killed?): \
                         ending this rank's node, and removing {}",
                        RANK0_SILENCE.as_secs(),
                        rendezvous.dir().display()
                    );
                    rendezvous.remove();
                    return;
                }
                _ => {}
            }
        }
    };
    tokio::select! {
        () = signalled => {}
        () = watched => {}
    }
}

/// The CPUs Slurm gave this task (`srun -c N`), when it says: the node's workers. Otherwise
/// the node has one worker per core it may use (its affinity, its cgroup's quota).
fn task_cpus(launch: &Launch) -> Option<usize> {
    if launch.kind != super::detect::Kind::Slurm {
        return None;
    }
    std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
}

/// A private program cache holding this rank's own executable, removed when dropped.
struct ProgramCopy {
    dir: PathBuf,
}

impl ProgramCopy {
    /// Makes the directory (0700, under the temporary directory: local to the host) and
    /// copies the executable in as `<sha256 hex>`, mode 0700, as an upload would leave it.
    fn make(launch: &Launch) -> Result<Self, LauncherError> {
        let dir = std::env::temp_dir().join(format!(
            "pp-launcher-{}-{}-{}",
            launch.run_id,
            launch.rank,
            std::process::id()
        ));
        let fail = |reason: String| LauncherError::Program {
            dir: dir.clone(),
            reason,
        };
        let program = crate::program::current_program().map_err(fail)?;
        remove_orphans(&std::env::temp_dir());
        make_private_dir(&dir).map_err(|e| fail(e.to_string()))?;
        let copy = ProgramCopy { dir: dir.clone() };
        copy_program(&program.path, &dir.join(program.sha256_hex()))
            .map_err(|e| fail(format!("copying {}: {e}", program.path.display())))?;
        Ok(copy)
    }
}

impl Drop for ProgramCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the copies left by ranks that were killed (`pp-launcher-*-PID` of this user
/// whose process is gone), so that killed runs do not fill the temporary directory.
fn remove_orphans(temp: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(temp) else {
            return;
        };
        let me = crate::node::sys::user_id();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.starts_with("pp-launcher-"))
                .and_then(|n| n.rsplit('-').next())
                .and_then(|pid| pid.parse::<libc::pid_t>().ok())
                .filter(|&pid| pid > 0)
            else {
                continue;
            };
            let ours = entry
                .path()
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir() && m.uid() == me);
            // SAFETY: signal 0 only checks whether the process exists.
            let gone = unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if ours && gone {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    #[cfg(not(unix))]
    let _ = temp;
}

/// Copies the executable (a copy, not a link: the node touches what it runs, and the
/// user's file must not change).
fn copy_program(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
