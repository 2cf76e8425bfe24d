//! Runtime of [pp](https://docs.rs/pp): the task registry, the job server with its queue
//! and local pool, jobs, templates, statistics, and the seam remote executors plug into.
//!
//! Users depend on the `pp` facade crate, which re-exports what is public here; this crate
//! is split out so that the network half (`pp-net`) can build on it. pp-runtime has no
//! network code.
//!
//! # Design note
//!
//! What lives where:
//! - `task`: [`Task`], [`TaskFn`], [`Portable`]: what `#[pp::parallel]` makes of a function.
//! - `registry` (hidden): every task of the program, gathered at link time; runs a task from
//!   bytes (`invoke`), as a node's worker does.
//! - `codec`: the one encoding of arguments and results.
//! - `server`, `submit`: [`Server`] and [`ServerBuilder`]; [`JobBuilder`], [`Template`];
//!   `limits`: a job's time limit and retries as a submission sets them.
//! - `typed_job`: a submitted job with its types (`TypedJob`); `queued_job`: the same with
//!   its types erased (`QueuedJob`), as the queue and the executors see it.
//! - `queue`: the server's one queue (`JobQueue`: shared, local-only and retry parts),
//!   pending counts, groups, server-wide counters; it notifies the executors.
//! - `executor`: the [`Executor`](remote::Executor) trait the local pool and the cluster
//!   client implement (notify, statistics rows, nodes, shutdown).
//! - `pool`: the local pool (`LocalPool`): drainers on a rayon pool the server owns.
//! - `job`: a job's result slot (with the job's callback and group, so that whoever ends the
//!   job does the same) and the [`Job`] handle (the waiting policy is explained there);
//!   `backlog`: sleeping while the local workers have a backlog; `pending`: counts that
//!   `wait` blocks on; `group`: a group's count and members.
//! - `settle`: a result slot with its types erased, as a cancel and the deadline timer end a
//!   job; `cancel`: [`Job::cancel`], [`Server::cancel_group`], [`Server::cancel_all`];
//!   `deadline`: the deadline timer of local jobs (one thread per server, started by the
//!   first job with a time limit); `stop`: [`should_stop`]; `running`: the jobs on each
//!   local worker thread's stack, which `cancel_all` settles on a local server without a
//!   list of every job (the hot path pays no lock for it).
//! - `polling`, `clock`, `run_counts`: what keeps a tiny job cheap: how a waiter polls
//!   (8 bytes in each result slot), one clock read per job on a worker running jobs back
//!   to back, and statistics counts per thread (no cache line passed between workers).
//! - `helping`: nested jobs. A job may submit jobs to its own server and wait for them:
//!   a local worker that waits runs the server's *sub-jobs* (jobs submitted by jobs,
//!   kept in the pool's own deque, newest first) until its result is ready, rather than
//!   the pool adding a compensating thread per blocked job (which would mean a thread per
//!   job waiting at once: with FIFO order, every outer job starts and blocks before any
//!   sub-job runs). Helpers run only sub-jobs, which start after the job they help under,
//!   so no job ends up beneath one that waits for it; depth first, a stack holds about one
//!   job per level of nesting, bounded by `MAX_HELP_DEPTH`. The argument is in the module.
//! - `as_completed`: [`AsCompleted`], results in the order jobs finish, woken by the jobs'
//!   result slots; `map`: [`Server::map`], a task over many inputs in input order with a
//!   bound on jobs in flight, in batches locally.
//! - `outcome`: [`Outcome`], what became of a job run in another process.
//! - `platform`: [`Platform`], what a build runs on (a node says its own in its hello);
//!   `task_record` (hidden): each task's id and fingerprint in a section of the executable,
//!   so that a client can check a build for another target without running it.
//! - `remote` (hidden): the seam for remote executors: cluster options (the cluster
//!   policies are explained on [`ClusterOptions`]), the queue's remote view (`JobFeed`), a
//!   job in a remote executor's hands (`RemoteJob`), the hooks `pp-net` provides.
//! - `run_chunks`, `scope`, `portable_chunk`, `chunks`: what `par!` runs: scoped chunk runs
//!   on the local pool, chunks that travel to nodes in cluster mode, and the helpers
//!   generated code calls.
//! - `progress`: the progress bar on standard error while a thread waits for jobs
//!   (`PP_PROGRESS`, [`ServerBuilder::progress`]): a drawing thread per server, reading the
//!   queue's pending count and the executors' rows; nothing at all when off.
//! - `say` (hidden): pp's logging macros; pp's warnings reach standard error when the
//!   program has no `tracing` subscriber (`PP_LOG` sets the level).
//! - `stats`: the counters executors update and the [`Stats`] table; `error`: [`Error`],
//!   [`JobError`].
//!
//! The path of one job, locally: [`Server::submit`] wraps the task and its arguments in a
//! `TypedJob` with a fresh result slot, counts it pending and pushes it on the queue, which
//! notifies the local pool: if a slot is free, a drainer starts on the rayon pool. A drainer
//! pops the job, calls the function directly, counts it in the `local` row, stores the
//! result (running the callback) and counts it finished; [`Job::result`] then returns it.
//!
//! Remotely: the queue also notifies the cluster client (an `Executor` from `pp-net`),
//! whose node tasks take jobs through their `JobFeed` (retried jobs first), encode the
//! arguments and send them to a node. The node's [`Outcome`] comes back to
//! `JobFeed::complete`, which decodes it into the same result slot, counted in the node's
//! row. A job whose node is lost or whose worker dies or times out goes to the retry queue
//! with the node's name, until its attempts (node loss) or retries (the others) are used up;
//! the slot takes one completion, so a job copied or retried is still delivered once.
//!
//! Ending a job early: a cancel, or the deadline of a job running on a local thread, settles
//! the slot with an error at once (the callback runs, `wait` and the group count the job
//! finished) without touching the queue. The slot's state word records whether the job was
//! taken, and by whom: a job settled while queued is dropped unrun by whoever pops it (and
//! meanwhile not counted as queued); one settled on a local thread runs on with
//! [`should_stop`] true, its result dropped (a thread cannot be killed); one settled in a
//! remote executor's hands leaves the in-flight count and the executors are told
//! (`Executor::settled_elsewhere`) so that they stop its worker. Jobs with no time limit
//! never reach the timer: no thread, no heap, no cost. Jobs a remote executor runs have
//! their limit enforced there (`RemoteJob::timeout`, `Outcome::TimedOut`).

mod as_completed;
mod backlog;
mod cancel;
mod chunks;
mod clock;
mod deadline;
mod error;
mod executor;
mod group;
mod helping;
mod job;
mod limits;
mod map;
mod map_batch;
mod node_failure;
mod outcome;
mod pending;
mod platform;
mod polling;
mod pool;
mod portable_chunk;
mod progress;
mod queue;
mod queued_job;
mod run_chunks;
mod run_counts;
mod running;
mod scope;
mod server;
mod settle;
mod stats;
mod stop;
mod submit;
mod task;
#[doc(hidden)]
pub mod task_record;
mod typed_job;

pub mod codec;
#[doc(hidden)]
pub mod registry;
#[doc(hidden)]
pub mod remote;
#[doc(hidden)]
pub mod say;

/// `tracing`, for pp's logging macros (see the `say` module).
#[doc(hidden)]
pub use tracing as __tracing;

pub use as_completed::AsCompleted;
pub use error::{Error, JobError};
pub use job::{Callback, Job};
pub use map::{Map, MapOptions};
pub use node_failure::{NodeConnection, NodeFailure};
pub use outcome::Outcome;
pub use platform::Platform;
pub use pool::available_cores;
/// For pp's own lines on the terminal (pp-net's forwarded job output): erases a progress bar
/// first.
#[doc(hidden)]
pub use progress::erase_progress_line;
#[doc(hidden)]
pub use registry::{registry, InvokeError, Registry, TaskEntry};
pub use remote::ClusterOptions;
pub use server::{Server, ServerBuilder};
pub use stats::{ExecutorStats, NodeStatus, Stats};
pub use stop::should_stop;
pub use submit::{JobBuilder, Template};
pub use task::{Portable, Task, TaskFn};

/// What code generated by `pp-macros` needs. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{invoke_typed, InvokeError, TaskEntry, TASKS};
    pub use crate::remote::ProgramHooks;
    pub use crate::task::{fnv1a64, Portable, Task, TaskFn};
    pub use crate::task_record::{task_record, task_record_len};
    pub use linkme;

    /// Fails to compile, at the caller's span, unless `T` can be a job argument or result.
    pub const fn assert_portable<T: Portable>() {}

    /// What `par!` expands to: chunked runs, ranges, reductions, the default server.
    pub mod par {
        pub use crate::chunks::*;
    }
}
