//! Rank 0 of a launcher run: the client. Before `main` it makes the rendezvous directory
//! (with a generated secret when the environment gives none), starts its heartbeat and
//! arranges to end the run when the process exits; its first `Server::new()` then waits
//! (bounded) for the other ranks and uses them as nodes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use pp_runtime::remote::LauncherCluster;

use super::detect::Launch;
use super::error::LauncherError;
use super::rendezvous::{Heartbeat, Rendezvous};
use super::secret::{secret_from_env, SecretSource};

/// How long rank 0 waits for the other ranks to say where they listen.
pub const RANKS_WAIT: Duration = Duration::from_secs(30);

/// How often rank 0 rewrites its heartbeat.
pub(super) const BEAT_PERIOD: Duration = Duration::from_secs(1);

/// This process as rank 0, set before `main`.
struct Rank0 {
    launch: Launch,
    rendezvous: Rendezvous,
    /// The generated secret, when the environment gives none.
    secret: Option<Vec<u8>>,
}

static RANK0: OnceLock<Rank0> = OnceLock::new();

/// The answer of the first [`cluster`] call, kept for the later ones.
static CLUSTER: OnceLock<LauncherCluster> = OnceLock::new();

/// Set once the process is ending: the heartbeat stops.
static ENDING: AtomicBool = AtomicBool::new(false);

/// Makes the rendezvous directory, starts the heartbeat and registers the end of the run
/// at exit. Called before `main`, while the process has one thread.
///
/// # Errors
/// When the secret cannot be read or generated, or the directory cannot be made.
pub(super) fn start(launch: Launch, rendezvous: Rendezvous) -> Result<(), LauncherError> {
    let secret = match secret_from_env()? {
        SecretSource::Env(_) => None,
        SecretSource::None => Some(generate_secret()?),
    };
    rendezvous.create(secret.as_deref())?;
    let beating = rendezvous.clone();
    if RANK0
        .set(Rank0 {
            launch,
            rendezvous,
            secret,
        })
        .is_err()
    {
        return Ok(());
    }
    // SAFETY: `end_of_run` takes no argument and never unwinds (its file operations
    // ignore their errors), as a function run by `exit` must.
    #[cfg(unix)]
    if unsafe { libc::atexit(end_of_run) } != 0 {
        pp_runtime::warn!(
            "launcher: cannot register rank 0's end of run; the other ranks will end {}s \
             after this process",
            super::RANK0_SILENCE.as_secs()
        );
    }
    let spawned = std::thread::Builder::new()
        .name("pp-launcher-heartbeat".into())
        .spawn(move || {
            let mut beat = 0u64;
            while !ENDING.load(Ordering::Relaxed) {
                std::thread::sleep(BEAT_PERIOD);
                beat += 1;
                if !ENDING.load(Ordering::Relaxed) {
                    beating.beat(&Heartbeat::Beat(beat.to_string()));
                }
            }
        });
    if let Err(error) = spawned {
        pp_runtime::warn!(
            "launcher: cannot start rank 0's heartbeat ({error}); the other ranks will take \
             rank 0 for gone after {}s",
            super::RANK0_SILENCE.as_secs()
        );
    }
    Ok(())
}

/// At exit: tells the other ranks that the run is over (their nodes stop), and removes
/// the rendezvous directory with the secret in it.
extern "C" fn end_of_run() {
    ENDING.store(true, Ordering::Relaxed);
    if let Some(rank0) = RANK0.get() {
        rank0.rendezvous.beat(&Heartbeat::Done);
        rank0.rendezvous.remove();
    }
}

/// The other ranks as nodes, if this process is rank 0 of a launcher run: the first call
/// waits until they all said where they listen, at most [`RANKS_WAIT`], and says what it
/// found once on standard error.
pub(super) fn cluster() -> Option<LauncherCluster> {
    let rank0 = RANK0.get()?;
    Some(CLUSTER.get_or_init(|| gather(rank0)).clone())
}

fn gather(rank0: &Rank0) -> LauncherCluster {
    let launch = &rank0.launch;
    let kind = launch.kind.name();
    let (came, missing) = rank0.rendezvous.collect(launch.size, RANKS_WAIT);
    let hosts = match launch.hosts {
        Some(1) => " on 1 host".to_owned(),
        Some(n) => format!(" on {n} hosts"),
        None => String::new(),
    };
    let list: Vec<String> = came
        .iter()
        .map(|(rank, addr)| format!("rank {rank} at {addr}"))
        .collect();
    // Said at warn level, so that it shows by default: a run that became a cluster
    // without being asked must say so.
    pp_runtime::warn!(
        "launcher {kind}: rank 0 of {}, {} nodes{hosts}: {}",
        launch.size,
        came.len(),
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    );
    if !missing.is_empty() {
        let ranks: Vec<String> = missing.iter().map(u32::to_string).collect();
        pp_runtime::warn!(
            "launcher {kind}: rank {} did not say where it listens within {}s ({}): running \
             without it (its standard error says why)",
            ranks.join(", rank "),
            RANKS_WAIT.as_secs(),
            rank0.rendezvous.dir().display()
        );
    }
    LauncherCluster::new(came, rank0.secret.clone())
}

/// A new secret for the run: 32 random bytes as hex (so that it is text, as a secret from
/// `PP_SECRET` is).
fn generate_secret() -> Result<Vec<u8>, LauncherError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| LauncherError::Secret(format!("no random bytes for the run's secret: {e}")))?;
    Ok(crate::program::hex(&bytes).into_bytes())
}
