//! Job statistics: the counters executors update as jobs finish, and PP's `print_stats()`
//! table ([`Stats`]) with its rows ([`ExecutorStats`], [`NodeStatus`]). A node's row says
//! why it is not usable ([`NodeFailure`], in `node_failure`).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::node_failure::{NodeConnection, NodeFailure};
use crate::run_counts::RunCounts;

/// A count of jobs and the sum of their times.
#[derive(Debug, Default)]
struct TimeSum {
    jobs: AtomicU64,
    nanos: AtomicU64,
}

impl TimeSum {
    fn add(&self, time: Duration) {
        self.jobs.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn jobs(&self) -> u64 {
        self.jobs.load(Ordering::Relaxed)
    }

    /// The average time (zero before the first job).
    fn average(&self) -> Duration {
        match self.jobs() {
            0 => Duration::ZERO,
            jobs => Duration::from_nanos(self.nanos.load(Ordering::Relaxed) / jobs),
        }
    }
}

/// Jobs and job time of one place jobs run (the local pool or a node), updated as jobs
/// finish: one row of the statistics. The job time is the time each job ran (its function
/// call, here or in a node's worker), not the time it waited in a queue or travelled.
#[derive(Debug)]
pub(crate) struct ExecutorCounters {
    name: String,
    /// Finished jobs, their time, and the jobs running here now (the local pool only: see
    /// [`ExecutorCounters::timed`]); per thread, see [`crate::run_counts`].
    run: RunCounts,
}

impl ExecutorCounters {
    pub(crate) fn new(name: &str) -> Self {
        ExecutorCounters {
            name: name.to_owned(),
            run: RunCounts::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Counts a finished job that ran for `run_time`.
    pub(crate) fn record(&self, run_time: Duration) {
        self.run.add(run_time);
    }

    /// Runs a job's function `run` (which must not unwind: callers catch panics inside it),
    /// counted as running here meanwhile; returns its result and run time. The job stops
    /// counting as running before the caller stores its result, so whoever sees the result
    /// sees the job no longer running.
    ///
    /// On a local worker running jobs back to back the run time also holds the pool's
    /// bookkeeping since the previous job (one clock read per job: see [`crate::clock`]).
    pub(crate) fn timed<T>(&self, run: impl FnOnce() -> T) -> (T, Duration) {
        self.run.started();
        let (output, run_time) = crate::clock::timed(run);
        self.run.stopped();
        (output, run_time)
    }

    /// Jobs running here now.
    pub(crate) fn running(&self) -> usize {
        self.run.running()
    }

    /// Average run time of the jobs counted so far (zero before the first).
    pub(crate) fn average(&self) -> Duration {
        self.run.average()
    }

    pub(crate) fn snapshot(&self) -> ExecutorStats {
        ExecutorStats {
            name: self.name.clone(),
            jobs: self.run.jobs(),
            job_time: self.run.total(),
        }
    }
}

/// What a completion of a job counts when its result is the one kept, before the result
/// becomes visible (so that whoever sees the result also sees it in the statistics): the
/// job's run time in its executor's row and, for a job a remote executor held, one job
/// fewer in flight.
#[derive(Clone, Copy)]
pub(crate) struct Tally<'a> {
    /// The executor's row.
    pub(crate) row: &'a ExecutorCounters,
    /// How long the job ran there.
    pub(crate) run_time: Duration,
    /// The server's count of jobs in remote executors' hands, for a remote completion.
    pub(crate) in_flight: Option<&'a AtomicUsize>,
}

impl Tally<'_> {
    /// Counts the kept completion of a job that ran: [`Tally::leave_flight`] and
    /// [`Tally::record`].
    pub(crate) fn count(&self) {
        self.leave_flight();
        self.record();
    }

    /// The job is no longer in a remote executor's hands (once per kept completion).
    pub(crate) fn leave_flight(&self) {
        if let Some(in_flight) = self.in_flight {
            in_flight.fetch_sub(1, Ordering::Release);
        }
    }

    /// Counts the job's run time in the row.
    pub(crate) fn record(&self) {
        self.row.record(self.run_time);
    }
}

/// A row of the statistics for one remote executor (a node), which the cluster client
/// keeps per node and passes to [`JobFeed::complete`](crate::remote::JobFeed::complete).
///
/// It keeps two times apart: the jobs' run times on the node's workers (the row of the
/// statistics), and the round trips from sending a job to its result (what the cluster
/// client's scheduling uses: it includes the transfer and the node's queue).
#[derive(Clone)]
pub struct ExecutorHandle {
    row: Arc<NodeRow>,
}

/// What an [`ExecutorHandle`] shares.
#[derive(Debug)]
struct NodeRow {
    counters: ExecutorCounters,
    round_trips: TimeSum,
}

impl ExecutorHandle {
    /// A row named `name` (a node's `host:port`), with no job yet.
    pub fn new(name: &str) -> Self {
        ExecutorHandle {
            row: Arc::new(NodeRow {
                counters: ExecutorCounters::new(name),
                round_trips: TimeSum::default(),
            }),
        }
    }

    /// The executor's name (a node's `host:port`).
    pub fn name(&self) -> &str {
        self.row.counters.name()
    }

    /// The row as [`Server::stats`](crate::Server::stats) shows it.
    pub fn stats(&self) -> ExecutorStats {
        self.row.counters.snapshot()
    }

    /// Average run time on the node's workers of the jobs counted so far (zero before the
    /// first).
    pub fn average(&self) -> Duration {
        self.row.counters.average()
    }

    /// Counts one job's round trip: from sending it to its result.
    pub fn record_round_trip(&self, round_trip: Duration) {
        self.row.round_trips.add(round_trip);
    }

    /// Average round trip of the jobs counted by [`record_round_trip`](Self::record_round_trip)
    /// so far (zero before the first).
    pub fn round_trip_average(&self) -> Duration {
        self.row.round_trips.average()
    }

    pub(crate) fn counters(&self) -> &ExecutorCounters {
        &self.row.counters
    }
}

impl fmt::Debug for ExecutorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorHandle")
            .field("name", &self.name())
            .finish()
    }
}

/// Server-wide counters, beside the per-executor rows.
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    /// Jobs taken by remote executors whose result is not stored yet (a job and its
    /// straggler's copy count once): counted by the queue when it hands a job out, and
    /// no longer when a completion of the job is kept, or the job goes back to the queue
    /// or fails there.
    pub(crate) in_flight: AtomicUsize,
    pub(crate) callback_panics: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    /// Jobs that ended `TimedOut` (after their last attempt).
    pub(crate) timed_out: AtomicU64,
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
    /// Sum of the jobs' run times there: the time each job's function ran (on a local
    /// worker, or on the node's worker as the node reports it), not the time it waited in
    /// a queue or travelled.
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
    /// Jobs running now: on a local worker, or sent to a node and not answered yet. A job
    /// whose result was read no longer counts.
    pub active_jobs: usize,
    /// Jobs waiting in the queue now.
    pub queued_jobs: usize,
    /// The local worker count.
    pub ncpus: usize,
    /// Cores available to this process.
    pub cores: usize,
    /// Callbacks that panicked (their jobs still count as finished).
    pub callback_panics: u64,
    /// Jobs that ended [`JobError::Cancelled`](crate::JobError::Cancelled): cancelled by a
    /// cancel call, or because the server shut down before they ran.
    pub cancelled_jobs: u64,
    /// Jobs that ended [`JobError::TimedOut`](crate::JobError::TimedOut): their last attempt
    /// ran past its time limit.
    pub timed_out_jobs: u64,
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
    /// Whether a session runs with the node ([`connection`](NodeStatus::connection) being
    /// [`NodeConnection::Connected`] or [`NodeConnection::PutAside`]).
    pub connected: bool,
    /// Where the client stands with the node: connected, connecting, or down.
    pub connection: NodeConnection,
    /// How many times a connection to the node was established (more than once: it
    /// rejoined after a loss).
    pub connections: u32,
    /// How many times the node was lost (silent past the liveness timeout, or its
    /// connection broke) while connected.
    pub losses: u32,
    /// Why the node last could not be used or was lost, if it ever was: while it is down,
    /// the reason it is down.
    pub last_failure: Option<NodeFailure>,
    /// When [`last_failure`](NodeStatus::last_failure) happened.
    pub last_failure_at: Option<SystemTime>,
    /// What the node runs (its target triple, architecture, OS, byte order and pointer
    /// width), as its hello said; `None` until it first answered.
    pub platform: Option<crate::Platform>,
    /// Its rank, when the node is a rank of a launcher run (`srun`, `mpirun`): then
    /// `print_stats()` calls it `rank N (host:port)`.
    pub rank: Option<u32>,
}

impl NodeStatus {
    /// Builds a status row of a node that was never lost and never failed: connected, or
    /// down.
    pub fn new(address: String, workers: u32, connected: bool) -> Self {
        NodeStatus {
            address,
            workers,
            connected,
            connection: if connected {
                NodeConnection::Connected
            } else {
                NodeConnection::Down
            },
            connections: u32::from(connected),
            losses: 0,
            last_failure: None,
            last_failure_at: None,
            platform: None,
            rank: None,
        }
    }

    /// The same row for rank `rank` of a launcher run.
    pub fn with_rank(mut self, rank: u32) -> Self {
        self.rank = Some(rank);
        self
    }

    /// What `print_stats()` calls the node: `node host:port`, or `rank N (host:port)`.
    pub fn label(&self) -> String {
        match self.rank {
            Some(rank) => format!("rank {rank} ({})", self.address),
            None => format!("node {}", self.address),
        }
    }

    /// The same row with its history: connections established and losses.
    pub fn with_history(mut self, connections: u32, losses: u32) -> Self {
        self.connections = connections;
        self.losses = losses;
        self
    }

    /// The same row in state `connection` (which also sets
    /// [`connected`](NodeStatus::connected)).
    pub fn with_connection(mut self, connection: NodeConnection) -> Self {
        self.connected = matches!(
            connection,
            NodeConnection::Connected | NodeConnection::PutAside { .. }
        );
        self.connection = connection;
        self
    }

    /// The same row with the last failure of the node and when it happened.
    pub fn with_last_failure(mut self, failure: NodeFailure, at: SystemTime) -> Self {
        self.last_failure = Some(failure);
        self.last_failure_at = Some(at);
        self
    }

    /// The same row with the node's platform, as its hello said.
    pub fn with_platform(mut self, platform: crate::Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    /// The node's state as `print_stats()` shows it: `connected`, `connecting` or `not
    /// connected`, with the last failure in parentheses.
    fn state_text(&self) -> String {
        let state = match self.connection {
            NodeConnection::Connected => "connected".to_owned(),
            NodeConnection::PutAside { crashes, until } => {
                let left = until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .as_secs_f64()
                    .ceil();
                format!("put aside after {crashes} worker crashes, for {left:.0} s more")
            }
            NodeConnection::Connecting => "connecting".to_owned(),
            NodeConnection::Down => "not connected".to_owned(),
        };
        match (&self.last_failure, self.connection) {
            (None, _) => state,
            (Some(failure), NodeConnection::Down) => format!("{state} ({failure})"),
            (Some(failure), _) => format!("{state} (last failure: {failure})"),
        }
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
            write!(f, "\n{} jobs cancelled", self.cancelled_jobs)?;
        }
        if self.timed_out_jobs > 0 {
            write!(
                f,
                "\n{} jobs timed out (ran past their time limit)",
                self.timed_out_jobs
            )?;
        }
        if self.rescheduled_jobs > 0 {
            write!(
                f,
                "\n{} jobs rescheduled after a lost node or a dead worker",
                self.rescheduled_jobs
            )?;
        }
        let troubled = |n: &&NodeStatus| {
            n.losses > 0
                || !n.connected
                || n.last_failure.is_some()
                || matches!(n.connection, NodeConnection::PutAside { .. })
        };
        // A node of another platform than this program's is worth a line: it runs
        // another build of the program.
        let this = crate::Platform::this();
        for node in &self.nodes {
            match &node.platform {
                Some(platform) if *platform != this => {
                    write!(f, "\n{} runs {platform}", node.label())?;
                }
                _ => {}
            }
        }
        for node in self.nodes.iter().filter(troubled) {
            write!(
                f,
                "\n{}: {}, lost {} times, connected {} times",
                node.label(),
                node.state_text(),
                node.losses,
                node.connections
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_with(nodes: Vec<NodeStatus>) -> Stats {
        Stats {
            executors: Vec::new(),
            elapsed: Duration::ZERO,
            active_jobs: 0,
            queued_jobs: 0,
            ncpus: 1,
            cores: 1,
            callback_panics: 0,
            cancelled_jobs: 0,
            timed_out_jobs: 0,
            rescheduled_jobs: 0,
            nodes,
        }
    }

    #[test]
    fn a_node_line_gives_the_reason_it_is_down() {
        let down = NodeStatus::new("127.0.0.1:60000".into(), 0, false)
            .with_last_failure(NodeFailure::AuthenticationFailed, SystemTime::now());
        let text = stats_with(vec![down]).to_string();
        assert!(
            text.ends_with(
                "node 127.0.0.1:60000: not connected (authentication failed: wrong secret?), \
                 lost 0 times, connected 0 times"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_node_back_after_a_loss_shows_its_last_failure() {
        let back = NodeStatus::new("10.0.0.5:60000".into(), 4, true)
            .with_history(2, 1)
            .with_last_failure(
                NodeFailure::Silent {
                    after: Duration::from_secs(3),
                },
                SystemTime::now(),
            );
        let connecting = NodeStatus::new("10.0.0.6:60000".into(), 0, false)
            .with_connection(NodeConnection::Connecting);
        let healthy = NodeStatus::new("10.0.0.7:60000".into(), 4, true);
        let text = stats_with(vec![back, connecting, healthy]).to_string();
        assert!(text.contains(
            "node 10.0.0.5:60000: connected (last failure: lost after 3s of silence), lost 1 \
             times, connected 2 times"
        ));
        assert!(
            text.contains("node 10.0.0.6:60000: connecting, lost 0 times"),
            "{text}"
        );
        assert!(
            !text.contains("10.0.0.7"),
            "a healthy node has no line: {text}"
        );
    }

    #[test]
    fn a_node_put_aside_says_why_and_for_how_long() {
        let until = SystemTime::now() + Duration::from_millis(9_500);
        let aside = NodeStatus::new("10.0.0.8:60000".into(), 1, true)
            .with_connection(NodeConnection::PutAside { crashes: 3, until });
        assert!(aside.connected, "its session still runs");
        let text = stats_with(vec![aside]).to_string();
        assert!(
            text.ends_with(
                "node 10.0.0.8:60000: put aside after 3 worker crashes, for 10 s more, lost 0 \
                 times, connected 1 times"
            ),
            "{text}"
        );
    }
}
