//! Launcher mode: `srun -n N ./program` or `mpirun -n N ./program` makes one cluster of the
//! same binary. Rank 0 runs `main` as the client; every other rank becomes a node of the
//! same executable before `main` runs, with no `ppserver` installed and nothing uploaded.
//!
//! The worker hook (`crate::worker::WORKER_HOOK`) calls [`enter_launcher_mode_if_requested`]
//! before `main`, after it has checked that the process is not a worker. What lives here:
//! - `detect`: which launcher, rank and size, read from the environment (Slurm's
//!   `SLURM_PROCID` of an `srun` step, Open MPI's `OMPI_COMM_WORLD_RANK`, PMI's `PMI_RANK`;
//!   no MPI library linked), and `PP_LAUNCHER` (`auto`, the default, `slurm`, `mpi`, `off`);
//! - `rendezvous`: the directory through which the ranks meet (secret, addresses, rank 0's
//!   heartbeat);
//! - `rank0`: the client's side: making the directory before `main`, and the nodes its
//!   `Server::new()` gets (through [`ProgramHooks::launcher`](pp_runtime::remote::ProgramHooks));
//! - `rank_node`: the other ranks, each a node until rank 0 ends, listening where `listen`
//!   says;
//! - `secret`: `PP_SECRET`/`PP_SECRET_FILE` as every rank reads them;
//! - `error`: what can go wrong, said by the rank that meets it.
//!
//! **Why `auto` is the default**: a pp program started by `srun -n 3` or `mpirun -n 3`
//! without it would run `main` three times, each on its own, which is almost never what
//! was meant; with it the three processes are one computation. A program that is an MPI
//! program itself, using pp inside each rank, sets `PP_LAUNCHER=off`. Every rank sets
//! `PP_LAUNCHER=off` for the processes it starts, so a program that runs itself again
//! does not make ranks of its children.

mod detect;
mod error;
mod listen;
mod rank0;
mod rank_node;
mod rendezvous;
mod secret;

pub use detect::{detect, Kind, Launch, Mode, LAUNCHER_ENV, LAUNCHER_ID_ENV};
pub use error::LauncherError;
pub use listen::LAUNCHER_HOST_ENV;
pub use rank0::RANKS_WAIT;
pub use rank_node::{RANK0_SILENCE, RENDEZVOUS_WAIT};
pub use rendezvous::RENDEZVOUS_DIR_ENV;

use pp_runtime::remote::LauncherCluster;
use rendezvous::Rendezvous;

/// Enters launcher mode if this process is a rank of a launcher run of more than one
/// process and the program has `#[pp::parallel]` tasks: rank 0 makes the rendezvous and returns (to run `main`); any other rank serves
/// as a node until the run ends and then exits, so its `main` never runs.
///
/// Runs before `main`, from the worker hook, while the process has one thread (it changes
/// the environment). A problem is said on standard error: in rank 0 the program then runs
/// without the other ranks; another rank exits with status 1.
pub fn enter_launcher_mode_if_requested() {
    let detected = detect(|name| std::env::var(name).ok());
    // A program with no task has nothing to run on nodes (`ppserver` itself, under
    // `srun`, must start as many nodes as it has tasks). Asked only now: outside a
    // launcher the registry is not built before `main`.
    if !matches!(detected, Ok(None)) && pp_runtime::registry::registry().is_empty() {
        return;
    }
    let launch = match detected {
        Ok(Some(launch)) => launch,
        Ok(None) => return,
        Err(error) => {
            pp_runtime::error!("launcher: {error}; each process runs on its own");
            return;
        }
    };
    // Still single-threaded: the processes this one starts are never ranks themselves.
    std::env::set_var(LAUNCHER_ENV, "off");
    let kind = launch.kind.name();
    let rendezvous = match Rendezvous::for_run(&launch, None) {
        Ok(rendezvous) => rendezvous,
        Err(error) => return fail(&launch, &error),
    };
    if launch.rank == 0 {
        if let Err(error) = rank0::start(launch.clone(), rendezvous) {
            fail(&launch, &error);
        }
        return;
    }
    match rank_node::serve(&launch, &rendezvous) {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            fail(&launch, &error);
            pp_runtime::debug!("launcher {kind}: rank {} exits", launch.rank);
            std::process::exit(1)
        }
    }
}

/// Says why launcher mode failed in this rank, and what happens instead.
fn fail(launch: &Launch, error: &LauncherError) {
    let kind = launch.kind.name();
    if launch.rank == 0 {
        pp_runtime::error!(
            "launcher {kind}: rank 0: {error}; running without the other ranks (they stop \
             after {}s)",
            RENDEZVOUS_WAIT.as_secs()
        );
    } else {
        pp_runtime::error!(
            "launcher {kind}: rank {}: {error}; this rank exits",
            launch.rank
        );
    }
}

/// The other ranks as nodes, when this process is rank 0 of a launcher run (see
/// [`ProgramHooks::launcher`](pp_runtime::remote::ProgramHooks)); `None` otherwise.
pub fn cluster() -> Option<LauncherCluster> {
    rank0::cluster()
}
