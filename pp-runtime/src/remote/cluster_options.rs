//! What a cluster client is asked for ([`ClusterSpec`]: nodes, secret, options) and how it
//! watches its nodes and retries jobs ([`ClusterOptions`], with their defaults). The
//! cluster policies (liveness, attempts, straggler copies, fallback, lanes, jobs' output) are explained
//! here, once, on the fields that configure them; the rest of pp links here.

use crate::error::Error;
use std::fmt;
use std::time::Duration;

/// Port of a node named without one (`PP_SERVERS=host`), as in PP.
pub const DEFAULT_PORT: u16 = 60000;

/// Default for [`ClusterOptions::heartbeat_interval`]: 500 ms.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// Default for [`ClusterOptions::fallback_wait`]: 2 seconds.
pub const DEFAULT_FALLBACK_WAIT: Duration = Duration::from_secs(2);

/// Default for [`ClusterOptions::liveness_timeout`]: 3 s.
pub const DEFAULT_LIVENESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Default for [`ClusterOptions::max_attempts`]: 3.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Default for [`ClusterOptions::duplicate_stragglers`]: on.
pub const DEFAULT_DUPLICATE_STRAGGLERS: bool = true;

/// Default for [`ClusterOptions::lanes`]: on.
pub const DEFAULT_LANES: bool = true;

/// Default for [`ClusterOptions::forward_output`]: on.
pub const DEFAULT_FORWARD_OUTPUT: bool = true;

/// Default for [`ClusterOptions::dns_refresh`]: 5 s.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);

/// How the cluster client watches its nodes and retries jobs; each field is set through
/// the [`ServerBuilder`](crate::ServerBuilder) method of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// How often the client sends a heartbeat on each node's connection. Default 500 ms.
    pub heartbeat_interval: Duration,
    /// The liveness policy. A node from which no message at all (results or heartbeat
    /// answers) came for this long is lost: its connection is closed, the jobs it held are
    /// rescheduled at the front of the queue (each up to
    /// [`max_attempts`](ClusterOptions::max_attempts)), and it is retried in the background
    /// with capped exponential backoff. The check runs with each heartbeat, so a silent
    /// node is lost between this and this plus one
    /// [`heartbeat_interval`](ClusterOptions::heartbeat_interval) after its last message; a
    /// node whose connection breaks, or that breaks the protocol, is lost at once. Time
    /// during which the client's network thread was itself held up does not count against
    /// the node. Default 3 s; it must exceed `heartbeat_interval`, and also the time one
    /// message (a job's arguments or result) takes to cross the network.
    pub liveness_timeout: Duration,
    /// Attempts a job gets on nodes: each lost node and each dead worker process while the
    /// job was in flight counts one; below the limit the job is rescheduled, at the limit
    /// it fails with [`JobError::NodeLost`](crate::JobError::NodeLost) naming the nodes,
    /// or [`JobError::WorkerCrashed`](crate::JobError::WorkerCrashed) if the last
    /// attempt's worker died. Default 3; at least 1.
    pub max_attempts: u32,
    /// The straggler policy: whether idle nodes run a second copy of a straggler. Default
    /// on.
    ///
    /// When a node has room for more jobs, the queue is empty, and a job has been in flight
    /// on another node for more than 3 times the average time jobs have taken from sending
    /// to result (and at least 50 ms), the idle node runs a copy of it. The first result
    /// wins, and the other copy is withdrawn from its node (dropped if queued there, its
    /// worker killed and replaced if running); its result, if it still comes, is dropped.
    /// The job's output is printed once, from the copy whose result is used. The job still
    /// completes once, its
    /// callback runs once, `wait` counts it once, and the statistics count it once, in the
    /// row of the node whose result won. A job has at most two copies at a time; a copy
    /// lost with its node while the other runs is dropped without counting an attempt, and
    /// if both fail the job is rescheduled as usual. `par!` chunks are never copied, and
    /// local workers do not run copies.
    ///
    /// It is on by default because it only uses capacity that would otherwise sit idle at
    /// the end of a run, and a node much slower than the rest (overloaded, swapping,
    /// stopped) then no longer holds the end of the run. But a copied job's function runs
    /// twice: turn it off when jobs have side effects that must not happen twice (files,
    /// network), or when long jobs of very unequal lengths make the average a poor guide (a
    /// long job among short ones would be copied). A job rescheduled after a node loss may
    /// run twice whatever this setting.
    pub duplicate_stragglers: bool,
    /// The fallback policy. With no local workers (`ncpus` 0): how long jobs wait while no
    /// node is usable before they run on local workers after all (one per core), with a
    /// warning, so that a job never waits forever for a node that does not come. The
    /// fallback workers last until a node is connected again: then they stop (each
    /// finishes the job in hand; queued jobs wait for the nodes), with a warning, and if
    /// every node goes again the same wait starts them again. Default 2 s.
    pub fallback_wait: Duration,
    /// Whether a lone job (the only one in flight on a node, with nothing else queued, and
    /// arguments up to 64 KiB) goes on a lane: a second connection the node hands to a
    /// worker process started for it, so that the job does not pass through the node
    /// process on its way there and back. Faster for one job at a time; everything else
    /// (retries, crashes, statistics) is as on the session's connection. Default on.
    pub lanes: bool,
    /// Whether what a job running on a node writes to its standard output and standard
    /// error comes back to this program's standard output and standard error, each line
    /// prefixed with the node (`[10.0.0.5:60000] text`), in order within a job (its
    /// standard output lines in order, its standard error lines in order), before the
    /// job's result. At most 1 MiB of one job's output comes back, then one line says how
    /// much was cut; output written by programs a job starts comes too when they inherit
    /// its standard streams; a job whose worker dies (or is killed past its time limit)
    /// prints what it wrote until then before its error. A straggler's job prints once,
    /// from the copy whose result is used. Local jobs print directly, as always. Off, a
    /// job's output on
    /// a node goes to the node's log. Default on; `PP_OUTPUT=off` turns it off.
    pub forward_output: bool,
    /// How often a `dns:NAME[:PORT]` entry of the node list is resolved again. Every
    /// address the name resolves to is a node; an address that appears is added at the
    /// next resolution, and one that is gone is dropped (its jobs in flight go back to the
    /// queue, without using an attempt, and its task ends). A resolution that fails
    /// changes nothing (a DNS outage does not drop every node). Default 5 s;
    /// `PP_DNS_REFRESH=SECONDS` sets it from the environment.
    pub dns_refresh: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            liveness_timeout: DEFAULT_LIVENESS_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            duplicate_stragglers: DEFAULT_DUPLICATE_STRAGGLERS,
            fallback_wait: DEFAULT_FALLBACK_WAIT,
            lanes: DEFAULT_LANES,
            forward_output: DEFAULT_FORWARD_OUTPUT,
            dns_refresh: DEFAULT_DNS_REFRESH,
        }
    }
}

impl ClusterOptions {
    /// Checks that the options make sense together.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero interval, a liveness timeout not above the interval, or
    /// zero attempts.
    pub fn check(&self) -> Result<(), Error> {
        if self.heartbeat_interval.is_zero() {
            return Err(Error::Config(
                "the heartbeat interval must be above zero".into(),
            ));
        }
        if self.liveness_timeout <= self.heartbeat_interval {
            return Err(Error::Config(format!(
                "the liveness timeout ({:?}) must exceed the heartbeat interval ({:?})",
                self.liveness_timeout, self.heartbeat_interval
            )));
        }
        if self.dns_refresh.is_zero() {
            return Err(Error::Config(
                "the DNS refresh interval must be above zero".into(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(Error::Config("max_attempts must be at least 1".into()));
        }
        Ok(())
    }
}

/// What the client of a cluster asked for: the nodes, the shared secret, the options.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ClusterSpec {
    /// Nodes as `host:port` or `host` (port [`DEFAULT_PORT`]), discovery entries (`*`)
    /// and `dns:NAME[:PORT]` entries.
    pub nodes: Vec<String>,
    /// The entries of `nodes` that are ranks of a launcher run (`srun`, `mpirun`), with
    /// their rank: pp's warnings and statistics call them `rank N (host:port)`.
    pub ranks: Vec<(String, u32)>,
    /// Where nodes that join the client connect (`PP_LISTEN=ADDR:PORT`), if anywhere.
    pub listen: Option<String>,
    /// The shared secret, if one was given.
    pub secret: Option<Vec<u8>>,
    /// Heartbeats, liveness and attempts.
    pub options: ClusterOptions,
    /// Builds of this program for other targets, offered to nodes that cannot run the
    /// running one ([`ServerBuilder::programs`](crate::ServerBuilder::programs),
    /// `PP_PROGRAMS`).
    pub programs: Vec<std::path::PathBuf>,
}

impl fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("nodes", &self.nodes)
            .field("ranks", &self.ranks)
            .field("listen", &self.listen)
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .field("options", &self.options)
            .field("programs", &self.programs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let default = ClusterOptions::default();
        assert!(default.check().is_ok());
        let bad = [
            ClusterOptions {
                liveness_timeout: default.heartbeat_interval,
                ..default
            },
            ClusterOptions {
                max_attempts: 0,
                ..default
            },
            ClusterOptions {
                heartbeat_interval: Duration::ZERO,
                ..default
            },
        ];
        for options in bad {
            assert!(
                matches!(options.check(), Err(Error::Config(_))),
                "{options:?}"
            );
        }
    }
}
