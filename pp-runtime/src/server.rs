//! [`Server`]: PP's job server, in Rust naming.

use crate::error::Error;
use crate::group::Group;
use crate::job::{Callback, Job, JobState};
use crate::limits::JobLimits;
use crate::pool::{available_cores, LocalPool};
use crate::progress::{self, ProgressBar, ProgressWait, QueueCounts, Source};
use crate::queue::JobQueue;
use crate::registry::registry;
use crate::remote::{ClusterSpec, IsolatedSpec, JobFeed, WorkerProcesses, ISOLATED_WORKER_ENV};
use crate::settle::Settle;
use crate::stats::{ExecutorStats, NodeStatus, Stats};
use crate::task::{Task, TaskFn};
use crate::typed_job::TypedJob;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Runs jobs on a pool of local workers it owns.
///
/// Created with [`Server::new`] (one worker per core) or [`Server::builder`]. Jobs are
/// submitted with [`submit`](Server::submit) or [`job`](Server::job) and run in the order
/// they were submitted, at most [`ncpus`](Server::ncpus) at once.
///
/// Dropping the server lets running jobs finish, fails queued ones with
/// [`JobError::Cancelled`](crate::JobError::Cancelled) and joins every worker thread.
///
/// # Examples
/// ```
/// #[pp::parallel]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let server = pp::Server::builder().ncpus(2).build()?;
/// let jobs: Vec<_> = (0..10).map(|x| server.submit(square, (x,))).collect();
/// let squares: Vec<u64> = jobs.into_iter().map(|j| j.result().unwrap()).collect();
/// assert_eq!(squares[9], 81);
/// # Ok::<(), pp::Error>(())
/// ```
pub struct Server {
    /// The queue, which holds the executors: the local pool and, in cluster mode, the
    /// cluster client.
    pub(crate) queue: Arc<JobQueue>,
    pub(crate) pool: Arc<LocalPool>,
    /// The progress bar, when asked for and standard error is a terminal.
    pub(crate) progress: Option<Arc<ProgressBar>>,
    /// The time limit and retries of jobs that set none.
    pub(crate) defaults: JobLimits,
    /// The local worker processes, when isolated ([`ServerBuilder::isolated`]).
    isolated: Option<Arc<dyn WorkerProcesses>>,
}

/// Configures a [`Server`]; see [`Server::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ServerBuilder {
    ncpus: Option<usize>,
    cluster: ClusterSpec,
    progress: Option<bool>,
    /// Set by [`ServerBuilder::forward_output`] or `PP_OUTPUT`; the default when neither.
    forward_output: Option<bool>,
    /// [`ServerBuilder::job_timeout`] and [`ServerBuilder::retries`].
    limits: JobLimits,
    /// Set by [`ServerBuilder::isolated`] or `PP_ISOLATED`; off when neither.
    isolated: Option<bool>,
}

impl ServerBuilder {
    /// Number of local workers (PP's `ncpus`); default: the number of available cores.
    /// More workers than cores is allowed and pays off for jobs that block. Zero is allowed
    /// only with [`ppservers`](ServerBuilder::ppservers): jobs then run on the nodes.
    pub fn ncpus(mut self, ncpus: usize) -> Self {
        self.ncpus = Some(ncpus);
        self
    }

    /// Remote `ppserver` nodes to run jobs on besides the local workers (PP's `ppservers`):
    /// `"host:port"`, or `"host"` for port 60000.
    pub fn ppservers<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cluster.nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// Listens at `addr` (`"ADDR:PORT"`, as `PP_LISTEN`) for nodes that join this client
    /// (`ppserver --join ADDR:PORT`): each node that connects and authenticates is used as
    /// a named node is, from its first job, and listed under the name it gives itself.
    /// Turns cluster mode on even with no [`ppservers`](ServerBuilder::ppservers): with
    /// [`ncpus(0)`](ServerBuilder::ncpus), jobs wait the
    /// [`fallback_wait`](ServerBuilder::fallback_wait) for a node to join, then run
    /// locally until one does. Joined nodes get no lane (the client may not reach them).
    /// The address is bound by [`build`](ServerBuilder::build), which fails with
    /// [`Error::Config`] if it cannot be; with port 0 the system picks one, said on
    /// standard error and returned by [`Server::listen_address`].
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.cluster.listen = Some(addr.into());
        self
    }

    /// How often `dns:NAME[:PORT]` entries are resolved again; default 5 s, or
    /// `PP_DNS_REFRESH` with [`from_env`](ServerBuilder::from_env) (see
    /// [`ClusterOptions::dns_refresh`](crate::ClusterOptions::dns_refresh)).
    pub fn dns_refresh(mut self, every: Duration) -> Self {
        self.cluster.options.dns_refresh = every;
        self
    }

    /// The secret shared with the nodes (every node must be started with the same one).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.cluster.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// How often the cluster client sends a heartbeat to each node; default 500 ms (see
    /// [`ClusterOptions::heartbeat_interval`](crate::ClusterOptions::heartbeat_interval)).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.cluster.options.heartbeat_interval = interval;
        self
    }

    /// With no local workers (`ncpus(0)`): how long jobs wait while no node is usable
    /// before they run locally after all; default 2 s (the fallback policy:
    /// [`ClusterOptions::fallback_wait`](crate::ClusterOptions::fallback_wait)).
    pub fn fallback_wait(mut self, wait: Duration) -> Self {
        self.cluster.options.fallback_wait = wait;
        self
    }

    /// How long a node may stay silent before it is declared lost and its jobs are
    /// rescheduled; default 3 s, more than the heartbeat interval (the liveness policy:
    /// [`ClusterOptions::liveness_timeout`](crate::ClusterOptions::liveness_timeout)).
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.cluster.options.liveness_timeout = timeout;
        self
    }

    /// Attempts a job gets on nodes before it fails; at least 1, default 3 (see
    /// [`ClusterOptions::max_attempts`](crate::ClusterOptions::max_attempts)).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.cluster.options.max_attempts = attempts;
        self
    }

    /// The time limit of every job that sets none ([`JobBuilder::timeout`](crate::JobBuilder::timeout),
    /// [`Template::timeout`](crate::Template::timeout)); default: none.
    ///
    /// A limit counts from when an attempt of the job starts running, not from submission.
    /// At the deadline the job ends with [`JobError::TimedOut`](crate::JobError::TimedOut):
    /// its result, future and callback are released then. On a node the worker running it
    /// is stopped. On a local worker thread, which cannot be stopped, the job runs on until
    /// it returns (its result is dropped, it is not retried);
    /// [`should_stop`](crate::should_stop) lets it notice and return early.
    pub fn job_timeout(mut self, limit: Duration) -> Self {
        self.limits.timeout = Some(limit);
        self
    }

    /// Retries of every job that sets none ([`JobBuilder::retries`](crate::JobBuilder::retries)):
    /// how many times a job whose attempt ended `TimedOut` or `WorkerCrashed` (on a node or
    /// an isolated local worker) runs again before it fails with that error, which then
    /// names its attempts. Without it, a job that timed out is not retried (a deadline
    /// releases the caller at the deadline) and one whose worker died is retried up to
    /// [`max_attempts`](ServerBuilder::max_attempts) attempts in all. A lost node is
    /// always governed by `max_attempts`.
    pub fn retries(mut self, retries: u32) -> Self {
        self.limits.retries = Some(retries);
        self
    }

    /// Whether idle nodes run a second copy of a straggler; default on (the straggler
    /// policy, and when to turn it off: [`ClusterOptions::duplicate_stragglers`](crate::ClusterOptions::duplicate_stragglers)).
    pub fn duplicate_stragglers(mut self, on: bool) -> Self {
        self.cluster.options.duplicate_stragglers = on;
        self
    }

    /// Whether lone jobs go to nodes on lanes; default on (see
    /// [`ClusterOptions::lanes`](crate::ClusterOptions::lanes)).
    pub fn lanes(mut self, on: bool) -> Self {
        self.cluster.options.lanes = on;
        self
    }

    /// Whether long waits show a progress bar on standard error (jobs done of the total,
    /// rate, time left, jobs per node); default off, or `PP_PROGRESS` with
    /// [`from_env`](ServerBuilder::from_env). Drawn only when standard error is a terminal.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = Some(on);
        self
    }

    /// Whether what jobs on nodes print comes back to this program's standard output and
    /// error, each line prefixed with its node; default on (what comes and what does not:
    /// [`ClusterOptions::forward_output`](crate::ClusterOptions::forward_output)). Off, it
    /// goes to the nodes' logs. `PP_OUTPUT=off` turns it off too.
    pub fn forward_output(mut self, on: bool) -> Self {
        self.forward_output = Some(on);
        self
    }

    /// Whether local jobs run in worker processes of this program instead of threads;
    /// default off, or `PP_ISOLATED=1` with [`from_env`](ServerBuilder::from_env).
    ///
    /// Each of the `ncpus` local workers is then a process of this very executable in
    /// pp's worker mode (as on a node), so that a job that aborts or crashes the process
    /// ends [`JobError::WorkerCrashed`](crate::JobError::WorkerCrashed) and a fresh worker
    /// replaces it, instead of taking the program down; and a job past its deadline or
    /// cancelled while it runs is stopped by killing its worker. Jobs cross a pipe both
    /// ways, encoded, as they would to a node, so a tiny job costs more than on a thread.
    /// What a job prints reaches this program's standard output and error. A server built
    /// inside such a worker (a job's own `Server`) is never isolated and never a cluster
    /// client.
    pub fn isolated(mut self, on: bool) -> Self {
        self.isolated = Some(on);
        self
    }

    /// Builds of this program for other targets (other architectures or systems), for
    /// nodes that cannot run the running one: each node gets the build for its target,
    /// read from each file's header. Builds cargo puts next to the running one
    /// (`target/<triple>/release/<name>` beside `target/release/<name>`, the same for
    /// `debug` and `examples/`) are found without this. A build whose tasks differ from
    /// this program's (another source) is refused when the cluster client starts, naming
    /// the task. Also set by `PP_PROGRAMS` (comma-separated paths).
    pub fn programs<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<std::path::PathBuf>,
    {
        self.cluster.programs = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Reads the cluster settings from the environment, as [`Server::new`] does:
    /// `PP_SERVERS` (comma-separated nodes; unset or empty: local only), `PP_LISTEN`
    /// (`ADDR:PORT` where nodes join: see [`listen`](ServerBuilder::listen)), `PP_SECRET` or
    /// `PP_SECRET_FILE` (a file holding the secret), `PP_NCPUS` (local workers; 0 means
    /// remote only), `PP_PROGRESS` (`1` shows a progress bar on long waits, see
    /// [`progress`](ServerBuilder::progress)) and `PP_OUTPUT` (`off` keeps what jobs on
    /// nodes print in the nodes' logs; `on`, the default, brings it back: see
    /// [`forward_output`](ServerBuilder::forward_output); another value is reported once
    /// and means `on`), and `PP_ISOLATED` (`1` runs local jobs in worker processes: see
    /// [`isolated`](ServerBuilder::isolated); another value is reported once and means
    /// off), `PP_PROGRAMS` (builds for other targets: see
    /// [`programs`](ServerBuilder::programs)), `PP_FALLBACK_WAIT` (seconds: see
    /// [`fallback_wait`](ServerBuilder::fallback_wait)) and `PP_DNS_REFRESH` (seconds above
    /// zero: see [`dns_refresh`](ServerBuilder::dns_refresh)). Values already set on the builder
    /// win. In rank 0 of a launcher run (`srun -n N` or `mpirun -n N` of this program, see
    /// `PP_LAUNCHER`) the other ranks are added as nodes, with the run's generated secret
    /// when none is set.
    ///
    /// # Errors
    /// [`Error::Config`] for an unreadable secret file, both secret variables set, a
    /// `PP_NCPUS` that is not a whole number, a `PP_FALLBACK_WAIT` that is not seconds, or
    /// a `PP_DNS_REFRESH` that is not seconds above zero.
    pub fn from_env(mut self) -> Result<Self, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if self.cluster.nodes.is_empty() {
            if let Some(nodes) = var("PP_SERVERS") {
                self.cluster.nodes = nodes
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
        }
        if self.cluster.listen.is_none() {
            self.cluster.listen = var("PP_LISTEN").map(|addr| addr.trim().to_owned());
        }
        if self.cluster.secret.is_none() {
            self.cluster.secret = match (var("PP_SECRET"), var("PP_SECRET_FILE")) {
                (Some(_), Some(_)) => {
                    return Err(Error::Config(
                        "both PP_SECRET and PP_SECRET_FILE are set: set only one".into(),
                    ))
                }
                (Some(secret), None) => Some(secret.into_bytes()),
                (None, Some(path)) => Some(read_secret_file(&path)?),
                (None, None) => None,
            };
        }
        // Rank 0 of `srun`/`mpirun`: the other ranks are nodes (pp-net's `launcher`).
        if let Some(launched) = registry().hooks().and_then(|hooks| (hooks.launcher)()) {
            let ranks = launched.nodes.iter().cloned().zip(launched.ranks);
            self.cluster.ranks.extend(ranks);
            self.cluster.nodes.extend(launched.nodes);
            if self.cluster.secret.is_none() {
                self.cluster.secret = launched.secret;
            }
        }
        let default_wait = crate::remote::DEFAULT_FALLBACK_WAIT;
        if self.cluster.options.fallback_wait == default_wait {
            if let Some(secs) = var("PP_FALLBACK_WAIT") {
                let wait = secs.trim().parse::<f64>().ok();
                let wait = wait.and_then(|s| Duration::try_from_secs_f64(s).ok());
                self.cluster.options.fallback_wait = wait.ok_or_else(|| {
                    Error::Config(format!("PP_FALLBACK_WAIT must be seconds, not `{secs}`"))
                })?;
            }
        }
        if self.cluster.options.dns_refresh == crate::remote::DEFAULT_DNS_REFRESH {
            if let Some(secs) = var("PP_DNS_REFRESH") {
                self.cluster.options.dns_refresh = positive_seconds("PP_DNS_REFRESH", &secs)?;
            }
        }
        if self.cluster.programs.is_empty() {
            if let Some(paths) = var("PP_PROGRAMS") {
                self.cluster.programs = (paths.split(',').map(str::trim))
                    .filter(|p| !p.is_empty())
                    .map(Into::into)
                    .collect();
            }
        }
        if self.ncpus.is_none() {
            if let Some(n) = var("PP_NCPUS") {
                let n = n.trim().parse::<usize>().map_err(|_| {
                    Error::Config(format!("PP_NCPUS must be a whole number, not `{n}`"))
                })?;
                self.ncpus = Some(n);
            }
        }
        if self.progress.is_none() {
            self.progress = progress::setting_from_env();
        }
        if self.forward_output.is_none() {
            self.forward_output = var(OUTPUT_ENV).map(|value| forward_output_from(&value));
        }
        if self.isolated.is_none() {
            self.isolated = var(ISOLATED_ENV).map(|value| isolated_from(&value));
        }
        Ok(self)
    }

    /// Starts the server, and the cluster client if nodes were named.
    ///
    /// # Errors
    /// [`Error::InvalidNcpus`] for zero workers and no node; [`Error::Config`] for cluster
    /// options that do not fit together (see [`ClusterOptions::check`](crate::ClusterOptions::check));
    /// [`Error::ThreadPool`] if threads cannot be started; [`Error::Cluster`] if the cluster
    /// client cannot start (a node that is down is not an error: its jobs run elsewhere).
    pub fn build(mut self) -> Result<Server, Error> {
        if let Some(on) = self.forward_output {
            self.cluster.options.forward_output = on;
        }
        let remote = !self.cluster.nodes.is_empty() || self.cluster.listen.is_some();
        if remote {
            self.cluster.options.check()?;
        }
        let ncpus = self.ncpus.unwrap_or_else(available_cores);
        // A worker's own server runs on threads: workers never start workers.
        let isolated = self.isolated == Some(true) && ncpus > 0 && !in_isolated_worker();
        let queue = JobQueue::new();
        let threads = if isolated { 0 } else { ncpus };
        let pool = LocalPool::start(&queue, threads, remote || isolated)?;
        let progress = (self.progress == Some(true) && progress::drawable())
            .then(|| ProgressBar::new(Arc::downgrade(&queue) as Weak<dyn QueueCounts>));
        let mut server = Server {
            queue,
            pool,
            progress,
            defaults: self.limits,
            isolated: None,
        };
        if isolated {
            let hooks = registry().hooks().ok_or_else(|| {
                Error::Config(
                    "isolation runs `#[pp::parallel]` tasks in worker processes, and this \
                     program has none"
                        .into(),
                )
            })?;
            let spec = IsolatedSpec {
                workers: ncpus,
                forward_output: self.cluster.options.forward_output,
            };
            let max_attempts = self.cluster.options.max_attempts.max(1);
            let feed = JobFeed::new(&server.queue, &server.pool, max_attempts);
            let started = (hooks.isolate)(spec, feed)?;
            server.queue.attach_remote(started.executor);
            server.isolated = Some(started.processes);
        }
        if remote {
            let hooks = registry().hooks().ok_or_else(|| {
                Error::Cluster(format!(
                    "this program has no `#[pp::parallel]` task, so it has nothing to run on a \
                     node{}",
                    NO_TASKS_HINT
                ))
            })?;
            let max_attempts = self.cluster.options.max_attempts;
            let feed = JobFeed::new(&server.queue, &server.pool, max_attempts);
            let cluster = (hooks.connect)(self.cluster, feed)?;
            server.queue.attach_remote(Arc::from(cluster));
        }
        crate::debug!(ncpus, remote, isolated, "pp server started");
        Ok(server)
    }
}

/// The environment variable that turns the forwarding of jobs' output off (`off`).
const OUTPUT_ENV: &str = "PP_OUTPUT";

/// `PP_OUTPUT`'s value as whether to forward jobs' output; an unknown value is said once
/// and means the default (on).
fn forward_output_from(value: &str) -> bool {
    match value.trim().to_ascii_lowercase().as_str() {
        "off" | "0" | "false" | "no" => false,
        "on" | "1" | "true" | "yes" => true,
        _ => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                crate::warn!(
                    "{OUTPUT_ENV}={value:?} is neither on nor off; what jobs on nodes print \
                     comes back (on)"
                )
            });
            crate::remote::DEFAULT_FORWARD_OUTPUT
        }
    }
}

/// The environment variable that runs local jobs in worker processes (`1`).
const ISOLATED_ENV: &str = "PP_ISOLATED";

/// Why a program with tasks may find none: with mingw-w64, GNU ld's `--gc-sections` drops
/// the registry's entries unless the program is linked without it (README, "Other
/// operating systems").
const NO_TASKS_HINT: &str = if cfg!(all(windows, target_env = "gnu")) {
    " (or it was linked by GNU ld with --gc-sections, which drops them: build it with \
     `-C link-arg=-Wl,--no-gc-sections` for x86_64-pc-windows-gnu)"
} else {
    ""
};

/// `PP_ISOLATED`'s value as whether to isolate local jobs; an unknown value is said once
/// and means the default (off).
fn isolated_from(value: &str) -> bool {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "true" | "yes" => true,
        "off" | "0" | "false" | "no" => false,
        _ => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                crate::warn!(
                    "{ISOLATED_ENV}={value:?} is neither on nor off; local jobs run on \
                     threads (off)"
                )
            });
            false
        }
    }
}

/// Whether this process is a worker process of an isolated server.
fn in_isolated_worker() -> bool {
    std::env::var_os(ISOLATED_WORKER_ENV).is_some()
}

/// `text`, the value of the variable `name`, as a time above zero in seconds.
fn positive_seconds(name: &str, text: &str) -> Result<Duration, Error> {
    let secs = text.trim().parse::<f64>().ok();
    let every = secs.and_then(|s| Duration::try_from_secs_f64(s).ok());
    every.filter(|d| !d.is_zero()).ok_or_else(|| {
        Error::Config(format!(
            "{name} must be seconds above zero (`5`, `0.5`), not `{text}`"
        ))
    })
}

fn read_secret_file(path: &str) -> Result<Vec<u8>, Error> {
    let text = std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read PP_SECRET_FILE `{path}`: {e}")))?;
    let trimmed = text.trim_ascii_end();
    if trimmed.is_empty() {
        return Err(Error::Config(format!("PP_SECRET_FILE `{path}` is empty")));
    }
    Ok(trimmed.to_vec())
}

impl Server {
    /// Starts a server with one worker per available core, and cluster mode if the
    /// environment asks for it (`PP_SERVERS`, `PP_LISTEN`, `PP_SECRET` or `PP_SECRET_FILE`, `PP_NCPUS`,
    /// `PP_OUTPUT`; see [`ServerBuilder::from_env`]).
    ///
    /// # Errors
    /// As [`ServerBuilder::from_env`] and [`ServerBuilder::build`].
    pub fn new() -> Result<Server, Error> {
        Server::builder().from_env()?.build()
    }

    /// A builder to choose the worker count and, later, other settings.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The number of local workers (PP's `get_ncpus()`).
    pub fn ncpus(&self) -> usize {
        match &self.isolated {
            Some(processes) => processes.workers(),
            None => self.pool.ncpus(),
        }
    }

    /// Changes the number of local workers while jobs run (PP's `set_ncpus`). Queued jobs
    /// keep their order; running jobs finish where they are.
    ///
    /// In cluster mode zero is allowed: the local workers finish the job in hand and stop,
    /// and jobs run on the nodes only (or locally again after the fallback wait, if no
    /// node is usable).
    ///
    /// # Errors
    /// [`Error::InvalidNcpus`] for zero without nodes; [`Error::ThreadPool`] if threads
    /// cannot be started (the old pool keeps running then).
    pub fn set_ncpus(&self, ncpus: usize) -> Result<(), Error> {
        match &self.isolated {
            Some(processes) => processes.set_workers(ncpus),
            None => self.pool.set_ncpus(ncpus),
        }
    }

    /// Blocks until every job submitted so far has finished and its callback has run.
    ///
    /// Inside a job of this server (on one of its local workers) it waits for the jobs
    /// that job submitted, its sub-jobs, running queued sub-jobs meanwhile: waiting for
    /// every job would wait for the job itself.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// As [`wait`](Server::wait), for at most `timeout`; returns whether all jobs finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// [`wait`](Server::wait) until `deadline`: for the caller's sub-jobs inside a job.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.pool.is_own_drainer() {
            return crate::helping::existing_children()
                .is_none_or(|children| children.wait_helping(self.queue_ptr(), deadline));
        }
        let _shown = self.progress_wait();
        self.queue.pending.wait(deadline)
    }

    /// Blocks until every job of group `group` has finished; returns at once for a group
    /// that never had a job.
    ///
    /// Inside a job of this server, the calling worker runs queued sub-jobs while it
    /// waits. Wait there only for a group of jobs submitted after the job started (its
    /// own sub-jobs): a group holding the job itself, or a job the worker runs it on top of,
    /// can never finish first.
    pub fn wait_group(&self, group: &str) {
        if let Some(group) = self.existing_group(group) {
            let _shown = self.progress_wait();
            group.pending.wait_helping(self.queue_ptr(), None);
        }
    }

    /// As [`wait_group`](Server::wait_group), for at most `timeout`; returns whether the
    /// group's jobs all finished.
    pub fn wait_group_timeout(&self, group: &str, timeout: Duration) -> bool {
        self.existing_group(group).is_none_or(|group| {
            let _shown = self.progress_wait();
            group
                .pending
                .wait_helping(self.queue_ptr(), Some(Instant::now() + timeout))
        })
    }

    /// The queue's address, which tells a waiting worker whether it is one of ours.
    pub(crate) fn queue_ptr(&self) -> *const () {
        Arc::as_ptr(&self.queue).cast()
    }

    /// Counts the calling thread in the progress bar while it waits for the server's jobs.
    fn progress_wait(&self) -> Option<ProgressWait<'_>> {
        (self.progress.as_ref()).map(|bar| bar.wait(Source::Queue, false))
    }

    /// Whether jobs may run on remote nodes (cluster mode).
    pub(crate) fn has_cluster(&self) -> bool {
        self.queue.has_remote()
    }

    /// The remote nodes of this server with their state (empty without cluster mode).
    pub fn active_nodes(&self) -> Vec<NodeStatus> {
        self.queue.nodes()
    }

    /// The address nodes join this client on (`PP_LISTEN`, [`ServerBuilder::listen`]) as
    /// bound: with port 0 asked for, the port the system chose, for `ppserver --join`.
    /// `None` when the client does not listen.
    pub fn listen_address(&self) -> Option<std::net::SocketAddr> {
        self.queue.listen_address()
    }

    /// A snapshot of the job statistics.
    pub fn stats(&self) -> Stats {
        let (queue, counters) = (&self.queue, &self.queue.counters);
        Stats {
            executors: queue.executor_stats(),
            elapsed: queue.created.elapsed(),
            active_jobs: queue.active(self.pool.counters()),
            queued_jobs: queue.queued() + self.pool.nested_queued(),
            ncpus: self.ncpus(),
            cores: available_cores(),
            callback_panics: counters.callback_panics.load(Ordering::Relaxed),
            cancelled_jobs: counters.cancelled.load(Ordering::Relaxed),
            timed_out_jobs: counters.timed_out.load(Ordering::Relaxed),
            rescheduled_jobs: counters.rescheduled.load(Ordering::Relaxed),
            nodes: self.active_nodes(),
        }
    }

    /// Prints the statistics table to standard output, as PP's `print_stats()` did.
    pub fn print_stats(&self) {
        let mut out = std::io::stdout().lock();
        // A closed stdout is not worth a panic in a statistics printout.
        let _ = writeln!(out, "{}", self.stats());
    }

    pub(crate) fn group(&self, name: &str) -> Arc<Group> {
        let mut groups = self.queue.groups.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(groups.entry(name.to_owned()).or_default())
    }

    pub(crate) fn existing_group(&self, name: &str) -> Option<Arc<Group>> {
        let groups = self.queue.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.get(name).cloned()
    }

    /// Queues a typed job, counted in `wait` and its group, and returns its handle.
    /// `limits` are the submission's, completed by the server's defaults.
    ///
    /// The hot path of a tiny job: one look at whether the caller is one of the pool's
    /// workers, no lock and no list for a job in no group on a local server (`cancel_all`
    /// finds those in the queues and on the threads: see [`crate::running`]).
    pub(crate) fn enqueue<F: TaskFn>(
        &self,
        task: Task<F>,
        args: F::Args,
        callback: Option<Callback<F::Output>>,
        group: Option<Arc<Group>>,
        limits: JobLimits,
    ) -> Job<F::Output> {
        let own = self.pool.is_own_drainer();
        let callback = if own {
            crate::helping::count_child(callback)
        } else {
            callback
        };
        let poll = self.pool.waiter_poll(&self.queue);
        let state = Arc::new(JobState::new_job(poll, task.id(), callback, group.clone()));
        self.queue.pending.add();
        match &group {
            Some(group) => {
                group.pending.add();
                group
                    .members
                    .add(Arc::downgrade(&state) as Weak<dyn Settle>);
            }
            None if self.queue.has_remote() => {
                (self.queue.ungrouped).add(Arc::downgrade(&state) as Weak<dyn Settle>);
            }
            None => {}
        }
        let (limits, epoch) = (limits.or(self.defaults), self.pool.running().epoch());
        let job = TypedJob::submitted(task, args, Arc::clone(&state), limits, epoch);
        self.pool.submit_from(&self.queue, Box::new(job), own);
        Job::on_queue(state, task.id(), Arc::downgrade(&self.queue))
            .with_progress(self.progress.clone())
    }
}

/// What the progress bar reads from the queue.
impl QueueCounts for JobQueue {
    fn unfinished(&self) -> usize {
        self.pending.count()
    }

    fn queued(&self) -> usize {
        JobQueue::queued(self)
    }

    fn rows(&self) -> Vec<ExecutorStats> {
        self.executor_stats()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(progress) = &self.progress {
            progress.stop();
        }
        self.queue.shutdown();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("ncpus", &self.ncpus())
            .field("pending", &self.queue.pending.count())
            .finish()
    }
}

#[cfg(test)]
mod output_env_tests {
    use super::forward_output_from;

    #[test]
    fn pp_isolated_values() {
        for on in ["1", "on", " TRUE ", "yes"] {
            assert!(super::isolated_from(on), "{on:?}");
        }
        for off in ["0", "off", "false", "no", "maybe"] {
            assert!(!super::isolated_from(off), "{off:?}");
        }
    }

    #[test]
    fn pp_dns_refresh_values() {
        let secs = |text| super::positive_seconds("PP_DNS_REFRESH", text);
        assert_eq!(
            secs(" 0.5 ").unwrap(),
            std::time::Duration::from_millis(500)
        );
        assert_eq!(secs("5").unwrap(), std::time::Duration::from_secs(5));
        for bad in ["0", "-1", "soon", "inf", "NaN"] {
            let error = secs(bad).unwrap_err().to_string();
            assert!(
                error.contains("PP_DNS_REFRESH") && error.contains(bad),
                "{error}"
            );
        }
    }

    #[test]
    fn pp_output_values() {
        for off in ["off", " OFF ", "0", "false", "no"] {
            assert!(!forward_output_from(off), "{off:?}");
        }
        for on in ["on", "1", "true", "yes", "loud"] {
            assert!(forward_output_from(on), "{on:?}");
        }
    }
}
