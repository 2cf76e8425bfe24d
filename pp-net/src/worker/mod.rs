//! Worker mode: any program that links pp can run jobs for a `ppserver` node. The worker
//! host lives here, beside the node that starts its processes (`crate::node::process`).
//!
//! A node runs a client's jobs in processes of the client's own executable, started with
//! the environment variable [`WORKER_ENV`] (`PP_WORKER=1`) and its standard input and
//! output as pipes. [`WORKER_HOOK`], placed in the platform's table of initialisers, runs
//! before `main`: when the variable is set it turns the process into a worker that serves
//! jobs until its input closes, then exits, so `main` never runs. Examples, user binaries
//! and `cargo test` harnesses all work this way with no code from the user.
//!
//! The node talks to its workers over their pipes with the pipe protocol (the protocol
//! layer's `pipe` module, whose items are re-exported here).
//!
//! Inside a worker, standard input reads nothing, and what a job writes to standard output
//! goes to standard error (the pipe belongs to the protocol), which is the node's log;
//! unless the node asks for the job's output ([`OUTPUT_ENV`]): then `capture` catches both
//! streams, and each job's output goes to the node just before its reply.
//!
//! The same hook then enters launcher mode when the process is a rank of `srun` or
//! `mpirun` (see `crate::launcher`): ranks other than 0 become nodes there.
//!
//! A node may also start a *lane worker* ([`LANE_ENV`]): it says hello the same way, then
//! serves one client's direct connection instead of the pipe (see the `lane` module).
//!
//! What lives here: `env` (the variables a node starts a worker with), `serve` (the loop of a pipe worker), `lane` (a lane worker, with `blocking`), `area_view` (a
//! worker's read-only view of the node's argument areas), `stdio` (taking the standard
//! streams for the protocol), `capture` (catching what jobs print).

#[cfg(unix)]
mod area_view;
#[cfg(unix)]
mod blocking;
#[cfg(unix)]
mod capture;
mod env;
#[cfg(unix)]
mod lane;
mod serve;
mod stdio;
#[cfg(test)]
mod tests;

pub use crate::protocol::pipe::*;
pub use env::*;
pub use serve::{run_job, run_worker};
use serve::{serve, AreaView, Capture};

/// The initialiser that makes a process a worker before `main` runs (see the module docs).
///
/// The loader calls every function of this table before `main`; this one returns at once
/// unless [`WORKER_ENV`] is set. It must be linked into the program to work: code that
/// `#[pp::parallel]` generates refers to it. Not public API.
#[doc(hidden)]
#[used]
#[cfg_attr(
    any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
        target_os = "illumos",
        target_os = "solaris"
    ),
    unsafe(link_section = ".init_array")
)]
#[cfg_attr(
    target_vendor = "apple",
    unsafe(link_section = "__DATA,__mod_init_func")
)]
#[cfg_attr(windows, unsafe(link_section = ".CRT$XCU"))]
pub static WORKER_HOOK: extern "C" fn() = worker_hook;

// On ELF the loader passes (argc, argv, envp); a function that takes no arguments ignores
// them, as C constructors do.
extern "C" fn worker_hook() {
    enter_worker_mode_if_requested();
    // Not a worker: maybe a rank of `srun`/`mpirun` (a rank other than 0 never returns).
    #[cfg(unix)]
    crate::launcher::enter_launcher_mode_if_requested();
}

/// Becomes a worker if [`WORKER_ENV`] is set, and then never returns.
///
/// Without the variable this returns at once (it runs in every pp program). With it, the
/// variable is removed (so jobs that start programs do not make more workers), the worker
/// loop serves jobs on standard input and output, and the process exits: with status 0
/// when the node closes the input, 1 after a protocol error (reported on standard error).
///
/// [`WORKER_HOOK`] calls it before `main`, while the process has one thread; a program
/// that calls it itself must do so before it starts any thread (it changes the
/// environment).
pub fn enter_worker_mode_if_requested() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    // Still single-threaded here (before `main`), so changing the environment is sound.
    std::env::remove_var(WORKER_ENV);
    // A job's own `Server::new()` runs its jobs in this process, on one thread beside the
    // job's (the node gives each of its cores a worker of its own): never as a client of
    // nodes that the node's environment may name, which could be this very node.
    for var in ["PP_SERVERS", "PP_SECRET", "PP_SECRET_FILE"] {
        std::env::remove_var(var);
    }
    std::env::set_var(NESTED_NCPUS_ENV, "1");
    let limit = frame_limit_from_env();
    let capture = std::env::var_os(OUTPUT_ENV).is_some();
    std::env::remove_var(OUTPUT_ENV);
    #[cfg(unix)]
    if let Some(socket) = lane::from_env() {
        let served = stdio::take()
            .map_err(lane::LaneFailure::from)
            .and_then(|(input, output)| {
                let capture = capture.then(|| catch_output(limit)).flatten();
                lane::serve(socket, input, output, limit, capture)
            });
        // The status tells the node why the lane ended (`LaneExit`).
        let status = match served {
            Ok(()) => 0,
            Err(failure) => {
                eprintln!("pp lane worker {}: {}", std::process::id(), failure.error);
                failure.exit.status()
            }
        };
        std::process::exit(status);
    }
    #[cfg(unix)]
    let mut areas = [
        AreaView::from_env(SHARED_ARGS_ENV),
        AreaView::from_env(SESSION_ARGS_ENV),
    ];
    #[cfg(not(unix))]
    let mut areas: [Option<AreaView>; 2] = [None, None];
    let result = stdio::take().and_then(|(input, output)| {
        let capture = capture.then(|| catch_output(limit)).flatten();
        // Dropped before the error below is written: it goes to the node's log.
        serve(input, output, limit, &mut areas, capture.as_ref())
    });
    let status = match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("pp worker {}: {error}", std::process::id());
            1
        }
    };
    std::process::exit(status);
}

/// Starts catching what jobs print, within the bound that fits the frame `limit`; `None`
/// (and jobs print to the node's log) where it cannot.
fn catch_output(limit: u32) -> Option<Capture> {
    #[cfg(unix)]
    {
        let bound = crate::protocol::output_bound(limit);
        let ends = crate::kept_output::WorkerEnds::from_env();
        match capture::Capture::start(bound, ends) {
            Ok(capture) => Some(capture),
            Err(error) => {
                eprintln!(
                    "pp worker {}: cannot catch what jobs print ({error}); it goes to the \
                     node's log",
                    std::process::id()
                );
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = limit;
        None
    }
}
