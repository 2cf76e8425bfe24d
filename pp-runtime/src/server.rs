//! [`Server`]: PP's job server, in Rust naming.

use crate::error::Error;
use crate::job::{Job, JobState};
use crate::pending::Pending;
use crate::pool::Core;
use crate::registry::registry;
use crate::remote::{Attachment, ClusterSpec, JobFeed, NodeStatus};
use crate::runnable::LocalJob;
use crate::stats::Stats;
use crate::submit::{JobBuilder, Template};
use crate::task::{Task, TaskFn};
use std::io::Write;
use std::sync::Arc;
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
    pub(crate) core: Arc<Core>,
    cluster: Option<Box<dyn Attachment>>,
}

/// Configures a [`Server`]; see [`Server::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ServerBuilder {
    ncpus: Option<usize>,
    cluster: ClusterSpec,
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

    /// The secret shared with the nodes (every node must be started with the same one).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.cluster.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// How often the cluster client sends a heartbeat to each node; default 500 ms
    /// ([`DEFAULT_HEARTBEAT_INTERVAL`](crate::remote::DEFAULT_HEARTBEAT_INTERVAL)).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.cluster.options.heartbeat_interval = interval;
        self
    }

    /// With no local workers (`ncpus(0)`): how long jobs wait while no node is usable
    /// before they run locally after all, with a warning; default 2 s
    /// ([`DEFAULT_FALLBACK_WAIT`](crate::remote::DEFAULT_FALLBACK_WAIT)).
    pub fn fallback_wait(mut self, wait: Duration) -> Self {
        self.cluster.options.fallback_wait = wait;
        self
    }

    /// How long a node may stay silent (no result, no answer to a heartbeat) before it is
    /// declared lost; default 3 s
    /// ([`DEFAULT_LIVENESS_TIMEOUT`](crate::remote::DEFAULT_LIVENESS_TIMEOUT)). A lost
    /// node's connection is closed, the jobs it held are rescheduled at the front of the
    /// queue, and it is retried in the background. It is declared lost between this
    /// and this plus one heartbeat interval after its last message; a node whose
    /// connection breaks is lost at once. Must exceed the heartbeat interval.
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.cluster.options.liveness_timeout = timeout;
        self
    }

    /// Attempts a job gets on nodes (at least 1; default 3,
    /// [`DEFAULT_MAX_ATTEMPTS`](crate::remote::DEFAULT_MAX_ATTEMPTS)). Each node lost and
    /// each worker process that died while the job was in flight counts one attempt; below
    /// the limit the job is rescheduled, at the limit it fails with
    /// [`JobError::NodeLost`](crate::JobError::NodeLost) naming the nodes, or
    /// [`JobError::WorkerCrashed`](crate::JobError::WorkerCrashed) if the last attempt's
    /// worker died.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.cluster.options.max_attempts = attempts;
        self
    }

    /// Whether idle nodes run a second copy of a straggler; default on
    /// ([`DEFAULT_DUPLICATE_STRAGGLERS`](crate::remote::DEFAULT_DUPLICATE_STRAGGLERS)).
    ///
    /// When a node has room for more jobs, the queue is empty, and a job has been in flight
    /// on another node for more than 3 times the average time jobs have taken from sending
    /// to result (and at least 50 ms), the idle node runs a copy of it. The first result
    /// wins; the other copy's result is dropped when it comes (the slower node is not
    /// interrupted). The job still completes once, its callback runs once, `wait` counts it
    /// once, and the statistics count it once, in the row of the node whose result won. A
    /// job has at most two copies at a time; a copy lost with its node while the other
    /// runs is dropped without counting an attempt, and if both fail the job is
    /// rescheduled as usual. `par!` chunks are never copied, and local workers do not run
    /// copies.
    ///
    /// It is on by default because it only uses capacity that would otherwise sit idle at
    /// the end of a run, and a node much slower than the rest (overloaded, swapping,
    /// stopped) then no longer holds the end of the run. Turn it off when jobs have side
    /// effects that must not happen twice, or when long jobs of very unequal lengths make
    /// the average a poor guide (a long job among short ones would be copied). A job
    /// rescheduled after a node loss may run twice whatever this setting.
    pub fn duplicate_stragglers(mut self, on: bool) -> Self {
        self.cluster.options.duplicate_stragglers = on;
        self
    }

    /// Whether lone jobs go to nodes on lanes (see
    /// [`ClusterOptions::lanes`](crate::remote::ClusterOptions::lanes)); on by default.
    pub fn lanes(mut self, on: bool) -> Self {
        self.cluster.options.lanes = on;
        self
    }

    /// Reads the cluster settings from the environment, as [`Server::new`] does:
    /// `PP_SERVERS` (comma-separated nodes; unset or empty: local only), `PP_SECRET` or
    /// `PP_SECRET_FILE` (a file holding the secret), and `PP_NCPUS` (local workers; 0 means
    /// remote only). Values already set on the builder win.
    ///
    /// # Errors
    /// [`Error::Config`] for an unreadable secret file, both secret variables set, or a
    /// `PP_NCPUS` that is not a whole number.
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
        if self.ncpus.is_none() {
            if let Some(n) = var("PP_NCPUS") {
                let n = n.trim().parse::<usize>().map_err(|_| {
                    Error::Config(format!("PP_NCPUS must be a whole number, not `{n}`"))
                })?;
                self.ncpus = Some(n);
            }
        }
        Ok(self)
    }

    /// Starts the server, and the cluster client if nodes were named.
    ///
    /// # Errors
    /// [`Error::InvalidNcpus`] for zero workers and no node; [`Error::Config`] for cluster
    /// options that do not fit together (see
    /// [`ClusterOptions::check`](crate::remote::ClusterOptions::check));
    /// [`Error::ThreadPool`] if threads cannot be started; [`Error::Cluster`] if the cluster
    /// client cannot start (a node that is down is not an error: its jobs run elsewhere).
    pub fn build(self) -> Result<Server, Error> {
        let remote = !self.cluster.nodes.is_empty();
        if remote {
            self.cluster.options.check()?;
        }
        let ncpus = self.ncpus.unwrap_or_else(available_cores);
        let core = Core::start(ncpus, remote)?;
        let mut server = Server {
            core,
            cluster: None,
        };
        if remote {
            let hooks = registry().hooks().ok_or_else(|| {
                Error::Cluster(
                    "this program has no `#[pp::parallel]` task, so it has nothing to run on a node"
                        .into(),
                )
            })?;
            let feed = JobFeed::new(&server.core, self.cluster.options.max_attempts);
            server.cluster = Some((hooks.connect)(self.cluster, feed)?);
        }
        tracing::debug!(ncpus, remote, "pp server started");
        Ok(server)
    }
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

/// Number of cores this process may use (at least 1).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Server {
    /// Starts a server with one worker per available core, and cluster mode if the
    /// environment asks for it (`PP_SERVERS`, `PP_SECRET` or `PP_SECRET_FILE`, `PP_NCPUS`;
    /// see [`ServerBuilder::from_env`]).
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
        self.core.ncpus()
    }

    /// Changes the number of local workers while jobs run (PP's `set_ncpus`). Queued jobs
    /// keep their order; running jobs finish where they are.
    ///
    /// # Errors
    /// [`Error::InvalidNcpus`] for zero; [`Error::ThreadPool`] if threads cannot be started
    /// (the old pool keeps running then).
    pub fn set_ncpus(&self, ncpus: usize) -> Result<(), Error> {
        self.core.set_ncpus(ncpus)
    }

    /// Submits `task` with `args` (a tuple: `(x,)` for one argument) and returns its [`Job`].
    pub fn submit<F: TaskFn>(&self, task: Task<F>, args: F::Args) -> Job<F::Output> {
        self.job(task, args).submit()
    }

    /// Starts a submission that can carry a callback and a group; finish it with
    /// [`JobBuilder::submit`].
    pub fn job<F: TaskFn>(&self, task: Task<F>, args: F::Args) -> JobBuilder<'_, F> {
        JobBuilder::new(self, task, args)
    }

    /// A template for many submissions of `task` with the same callback and group
    /// (PP's `Template`).
    pub fn template<F: TaskFn>(&self, task: Task<F>) -> Template<'_, F> {
        Template::new(self, task)
    }

    /// Blocks until every job submitted so far has finished and its callback has run.
    ///
    /// Calling it from inside a job of this server would wait for that job itself: don't.
    pub fn wait(&self) {
        self.core.pending.wait(None);
    }

    /// As [`wait`](Server::wait), for at most `timeout`; returns whether all jobs finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.core.pending.wait(Some(Instant::now() + timeout))
    }

    /// Blocks until every job of group `group` has finished; returns at once for a group
    /// that never had a job.
    pub fn wait_group(&self, group: &str) {
        if let Some(pending) = self.existing_group(group) {
            pending.wait(None);
        }
    }

    /// As [`wait_group`](Server::wait_group), for at most `timeout`; returns whether the
    /// group's jobs all finished.
    pub fn wait_group_timeout(&self, group: &str, timeout: Duration) -> bool {
        self.existing_group(group)
            .is_none_or(|pending| pending.wait(Some(Instant::now() + timeout)))
    }

    /// Whether jobs may run on remote nodes (cluster mode).
    pub(crate) fn has_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The remote nodes of this server with their state (empty without cluster mode).
    pub fn active_nodes(&self) -> Vec<NodeStatus> {
        self.cluster.as_ref().map_or_else(Vec::new, |c| c.nodes())
    }

    /// A snapshot of the job statistics.
    pub fn stats(&self) -> Stats {
        let core = &self.core;
        Stats {
            executors: core.executor_stats(),
            elapsed: core.created.elapsed(),
            active_jobs: core
                .stats
                .running
                .load(std::sync::atomic::Ordering::Relaxed),
            queued_jobs: core.queued(),
            ncpus: core.ncpus(),
            cores: available_cores(),
            callback_panics: core
                .stats
                .callback_panics
                .load(std::sync::atomic::Ordering::Relaxed),
            cancelled_jobs: core
                .stats
                .cancelled
                .load(std::sync::atomic::Ordering::Relaxed),
            rescheduled_jobs: core
                .stats
                .rescheduled
                .load(std::sync::atomic::Ordering::Relaxed),
            nodes: self.active_nodes(),
        }
    }

    /// Prints the statistics table to standard output, as PP's `print_stats()` did.
    pub fn print_stats(&self) {
        let mut out = std::io::stdout().lock();
        // A closed stdout is not worth a panic in a statistics printout.
        let _ = writeln!(out, "{}", self.stats());
    }

    pub(crate) fn group(&self, name: &str) -> Arc<Pending> {
        let mut groups = self.core.groups.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(groups.entry(name.to_owned()).or_default())
    }

    fn existing_group(&self, name: &str) -> Option<Arc<Pending>> {
        let groups = self.core.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.get(name).cloned()
    }

    pub(crate) fn enqueue<F: TaskFn>(
        &self,
        task: Task<F>,
        args: F::Args,
        callback: Option<crate::job::Callback<F::Output>>,
        group: Option<Arc<Pending>>,
    ) -> Job<F::Output> {
        let state = Arc::new(JobState::with_poll(self.core.waiter_poll()));
        self.core.pending.add();
        if let Some(group) = &group {
            group.add();
        }
        self.core.enqueue(Box::new(LocalJob::new(
            task,
            args,
            Arc::clone(&state),
            callback,
            group,
        )));
        let backlog = Arc::downgrade(&self.core) as std::sync::Weak<dyn crate::backlog::Backlog>;
        Job::on_backlog(state, task.id(), backlog)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.shutdown();
        }
        self.core.shutdown();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("ncpus", &self.ncpus())
            .field("pending", &self.core.pending.count())
            .finish()
    }
}
