//! Job statistics: the counters executors update as jobs finish, and PP's `print_stats()`
//! table ([`Stats`]) with its rows ([`ExecutorStats`], [`NodeStatus`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Jobs and job time of one place jobs run (the local pool or a node), updated as jobs
/// finish: one row of the statistics.
#[derive(Debug)]
pub(crate) struct ExecutorCounters {
    name: String,
    jobs: AtomicU64,
    nanos: AtomicU64,
}

impl ExecutorCounters {
    pub(crate) fn new(name: &str) -> Self {
        ExecutorCounters {
            name: name.to_owned(),
            jobs: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn record(&self, elapsed: Duration) {
        self.jobs.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Average run time of the jobs counted so far (zero before the first).
    pub(crate) fn average(&self) -> Duration {
        let jobs = self.jobs.load(Ordering::Relaxed);
        if jobs == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed) / jobs)
    }

    pub(crate) fn snapshot(&self) -> ExecutorStats {
        ExecutorStats {
            name: self.name.clone(),
            jobs: self.jobs.load(Ordering::Relaxed),
            job_time: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        }
    }
}

/// A row of the statistics for one remote executor (a node), which the cluster client
/// keeps per node and passes to [`JobFeed::complete`](crate::remote::JobFeed::complete).
#[derive(Clone)]
pub struct ExecutorHandle {
    counters: Arc<ExecutorCounters>,
}

impl ExecutorHandle {
    /// A row named `name` (a node's `host:port`), with no job yet.
    pub fn new(name: &str) -> Self {
        ExecutorHandle {
            counters: Arc::new(ExecutorCounters::new(name)),
        }
    }

    /// The executor's name (a node's `host:port`).
    pub fn name(&self) -> &str {
        self.counters.name()
    }

    /// The row as [`Server::stats`](crate::Server::stats) shows it.
    pub fn stats(&self) -> ExecutorStats {
        self.counters.snapshot()
    }

    /// Average time of the jobs counted so far, from sending to result (zero before the
    /// first).
    pub fn average(&self) -> Duration {
        self.counters.average()
    }

    pub(crate) fn counters(&self) -> &ExecutorCounters {
        &self.counters
    }
}

impl fmt::Debug for ExecutorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorHandle")
            .field("name", &self.counters.name())
            .finish()
    }
}

/// Server-wide counters, beside the per-executor rows.
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    pub(crate) running: AtomicUsize,
    pub(crate) callback_panics: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) rescheduled: AtomicU64,
}

/// Jobs done by one executor (the local pool or a remote node).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutorStats {
    /// `local`, or a node's `host:port`.
    pub name: String,
    /// Jobs finished there.
    pub jobs: u64,
    /// Sum of the jobs' run times there.
    pub job_time: Duration,
}

/// A snapshot of a server's statistics, as [`Server::stats`](crate::Server::stats) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// One row per executor.
    pub executors: Vec<ExecutorStats>,
    /// Time since the server was created.
    pub elapsed: Duration,
    /// Jobs running now.
    pub active_jobs: usize,
    /// Jobs waiting in the queue now.
    pub queued_jobs: usize,
    /// The local worker count.
    pub ncpus: usize,
    /// Cores available to this process.
    pub cores: usize,
    /// Callbacks that panicked (their jobs still count as finished).
    pub callback_panics: u64,
    /// Jobs cancelled because the server shut down before they ran.
    pub cancelled_jobs: u64,
    /// Times a job was given back to the queue to run again because its node was lost or
    /// its worker process died (a job rescheduled twice counts twice). Only the attempt
    /// that gave the result counts in [`executors`](Stats::executors), so the job counts
    /// there add up to the jobs finished, each once.
    pub rescheduled_jobs: u64,
    /// The remote nodes with their state and history (empty without cluster mode).
    pub nodes: Vec<NodeStatus>,
}

/// A node as [`Server::active_nodes`](crate::Server::active_nodes) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// `host:port` as configured.
    pub address: String,
    /// Worker processes the node runs for this client (0 while not connected).
    pub workers: u32,
    /// Whether the node is connected and taking jobs.
    pub connected: bool,
    /// How many times a connection to the node was established (more than once: it
    /// rejoined after a loss).
    pub connections: u32,
    /// How many times the node was lost (silent past the liveness timeout, or its
    /// connection broke) while connected.
    pub losses: u32,
}

impl NodeStatus {
    /// Builds a status row of a node that was never lost.
    pub fn new(address: String, workers: u32, connected: bool) -> Self {
        NodeStatus {
            address,
            workers,
            connected,
            connections: u32::from(connected),
            losses: 0,
        }
    }

    /// The same row with its history: connections established and losses.
    pub fn with_history(mut self, connections: u32, losses: u32) -> Self {
        self.connections = connections;
        self.losses = losses;
        self
    }
}

impl Stats {
    /// Jobs finished, all executors together.
    pub fn total_jobs(&self) -> u64 {
        self.executors.iter().map(|e| e.jobs).sum()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total_jobs();
        writeln!(f, "Job execution statistics:")?;
        writeln!(
            f,
            " {:>9} | {:>13} | {:>12} | {:>12} | job server",
            "job count", "% of all jobs", "job time sum", "time per job"
        )?;
        for row in &self.executors {
            let share = if total == 0 {
                0.0
            } else {
                100.0 * row.jobs as f64 / total as f64
            };
            let sum = row.job_time.as_secs_f64();
            let per_job = if row.jobs == 0 {
                0.0
            } else {
                sum / row.jobs as f64
            };
            writeln!(
                f,
                " {:>9} | {:>13.2} | {:>12.4} | {:>12.6} | {}",
                row.jobs, share, sum, per_job, row.name
            )?;
        }
        writeln!(
            f,
            "Time elapsed since server creation: {:.4} s",
            self.elapsed.as_secs_f64()
        )?;
        write!(
            f,
            "{} active jobs, {} queued, {} workers on {} cores",
            self.active_jobs, self.queued_jobs, self.ncpus, self.cores
        )?;
        if self.callback_panics > 0 {
            write!(f, "\n{} callbacks panicked", self.callback_panics)?;
        }
        if self.cancelled_jobs > 0 {
            write!(f, "\n{} jobs cancelled at shutdown", self.cancelled_jobs)?;
        }
        if self.rescheduled_jobs > 0 {
            write!(
                f,
                "\n{} jobs rescheduled after a lost node or a dead worker",
                self.rescheduled_jobs
            )?;
        }
        for node in self.nodes.iter().filter(|n| n.losses > 0 || !n.connected) {
            write!(
                f,
                "\nnode {}: {}, lost {} times, connected {} times",
                node.address,
                if node.connected {
                    "connected"
                } else {
                    "not connected"
                },
                node.losses,
                node.connections
            )?;
        }
        Ok(())
    }
}
