//! The node side of pp: the daemon that `ppserver` runs.
//!
//! A node listens for clients, authenticates each with the cluster's shared secret, gets
//! the client's program (from its cache, or by upload), starts `workers` processes of it in
//! worker mode (see `crate::worker`) and passes the client's jobs to them. Everything
//! one client does is bounded and isolated: a refused client, a crashed worker or a broken
//! connection is logged and the node goes on serving everyone else.
//!
//! A node may also join clients that listen ([`NodeConfig::join`], `ppserver --join`):
//! it dials them and serves each on the connection it opened, with the same session (the
//! `join` module); only the TCP direction changes. The name in its hello is its identity
//! for those clients (the `join_name` module).
//!
//! # The session, as the client sees it
//! 1. Connect and authenticate ([`crate::connect_client`]; on a connection the node
//!    opened, for a node that joins); a wrong secret ends here.
//! 2. Send [`Message::ClientHello`](crate::Message::ClientHello) with the SHA-256, size and
//!    [`this_target`] of the executable, its registry fingerprint, and the builds of the
//!    same program for other targets it offers. The node answers
//!    [`Message::ServerHello`](crate::Message::ServerHello) with its platform and the build
//!    it runs (none: the connection then closes), or
//!    [`Message::Refused`](crate::Message::Refused) (a program above
//!    [`NodeConfig::max_upload`], or one its program cache has no room for now, see
//!    [`NodeConfig::max_cache_bytes`]).
//! 3. If `need_upload`, send the executable as `UploadChunk`s with contiguous offsets from
//!    0, then `UploadDone`; a hash mismatch is refused. Each setup message must arrive
//!    within [`NodeConfig::setup_timeout`].
//! 4. The node starts its workers (each has [`NodeConfig::worker_start_timeout`] to say
//!    hello) and answers `Ready { workers }`, or `Refused` when the program cannot run here
//!    or its task registry differs.
//! 5. `Submit` jobs; `Results` come back as jobs finish, several per message when ready
//!    together. `Heartbeat { seq }` is answered with `HeartbeatAck { seq }`. A worker that
//!    dies fails its job with `Outcome::WorkerCrashed` (after an `Output` of what the job
//!    printed until then, when output is forwarded) and is replaced. A job with a time
//!    limit (`JobRequest::timeout`) that runs past it is answered `Outcome::TimedOut`, and
//!    its worker is killed and replaced (the worker's other jobs run on another). `Cancel
//!    { job_ids }` withdraws jobs: a queued one is dropped unanswered, a running one has its
//!    worker killed and replaced. Closing the connection stops this client's workers. When the hello's `forward_output` asks for
//!    it, what each job prints comes as `Output` pieces before its result.
//! 6. Optionally, `LaneRequest`: on Linux the node answers `LaneOffer { lane, key }`, and
//!    the client may open a lane with it, a direct connection to a worker started for it,
//!    for lone jobs (see the crate's `lane` module); `LaneEnded` says when that worker
//!    ended. A lane worker ends when its client closes the lane, even mid-job (that is how
//!    a client withdraws a lane's job); jobs with a time limit never go on a lane. A session has one lane at a time: a request while its lane is in use is
//!    answered after that lane's `LaneEnded`.
//!
//! # Examples
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pp_net::node::{serve, NodeConfig};
//! let mut config = NodeConfig::new(pp_net::Secret::new("a long random secret")?);
//! config.listen = "127.0.0.1:0".parse()?;
//! let (ready, addr) = tokio::sync::oneshot::channel();
//! let node = tokio::spawn(serve(config, Some(ready)));
//! println!("listening on {}", addr.await?);
//! let stats = node.await??; // after SIGTERM
//! println!("{stats}");
//! # Ok(()) }
//! ```

pub(crate) mod admission;
mod busy;
mod cache;
mod cancels;
mod config;
mod daemon;
mod error;
pub(crate) mod failure_log;
mod job_watch;
mod join;
mod join_name;
mod lanes;
mod outgoing;
mod output_queue;
mod process;
mod queued;
mod session;
mod session_jobs;
mod stats;
// The launcher's ranks use the host name and user id too.
pub(crate) mod sys;
mod worker_loop;

pub use config::{
    default_cache_dir, NodeConfig, DEFAULT_MAX_CACHE_BYTES, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_QUEUED_JOBS, DEFAULT_MAX_UPLOAD, DEFAULT_PORT, DEFAULT_SETUP_TIMEOUT,
    DEFAULT_WORKER_START_TIMEOUT, DEFAULT_WRITE_TIMEOUT,
};
pub use daemon::{serve, serve_until};
pub use error::NodeError;
pub use stats::NodeStats;

/// The platform this build runs on, as nodes and clients compare it (`"x86_64-linux"`):
/// the one definition, shared with the client.
pub use crate::program::this_target;

#[cfg(test)]
mod tests {
    #[test]
    fn target_names_arch_and_os() {
        let target = super::this_target();
        assert!(target.starts_with(std::env::consts::ARCH), "{target}");
        assert!(target.ends_with(std::env::consts::OS), "{target}");
    }
}
