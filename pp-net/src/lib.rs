//! The network half of pp: the wire protocol between a client program and `ppserver`
//! nodes, the cluster client, the node daemon, the worker host and the automatic discovery
//! of nodes.
//!
//! # Layers
//! Each layer uses only the ones below it:
//!
//! - **channel** (`src/channel/`): an authenticated, encrypted stream of byte messages over
//!   one connection: the [`preamble`], the Noise handshake from the cluster's [`Secret`],
//!   frames and their segments, and the two halves [`SecureReader`] and [`SecureWriter`].
//!   Bytes only: it knows no message, no job and no node memory (the node plugs its shared
//!   memory in through a seam, `channel::PlaintextArea`). Limits in [`ChannelConfig`], one
//!   error type [`NetError`].
//! - **protocol** (`src/protocol/`): what the bytes mean. Every [`Message`] and its
//!   encoding (by `pp_runtime::codec`, pinned by golden-byte tests), the job records
//!   ([`JobRequest`], [`JobReply`], [`Outcome`]), the `Submit` layout written out once for
//!   copy-free sending and in-place decoding, and `send`/`recv` of messages on the
//!   channel's halves.
//! - **Roles**, on top: the cluster client (`client`, reached through the program's hooks;
//!   it dials its nodes, or accepts nodes that join it), the node daemon ([`node`], which
//!   listens, or dials clients to join them), the worker host (`worker`: the hook that turns a program
//!   started by a node into a worker before `main`, the pipe protocol between node and
//!   worker, the lane worker), the isolated executor (`isolated`: local jobs in worker
//!   processes of the program itself, as a node runs them), lanes (`lane`: opening a lane
//!   and its handshake, both ends)
//!   and [`discovery`] (UDP, independent of the channel); `launcher` (`srun`/`mpirun` of
//!   one binary: rank 0 the client, the other ranks nodes, meeting in a shared directory). `program` identifies the running
//!   executable for both ends; [`program_set`] gathers the builds of the program for other
//!   targets a client offers (each node takes the one it runs); `area` is the node's shared memory for its workers;
//!   `kept_output` keeps what a worker's job prints where the worker's parent reads it if
//!   the worker dies; `source_windows` counts what each source address did lately, for the node's and
//!   discovery's limits per address.
//!
//! # The path of one job
//! 1. **Client** (`client`): a session task per node takes jobs from the server's queue,
//!    and sends them as one `Submit` (its large arguments sealed from where they are).
//! 2. **Node** ([`node`]): the session's reader decrypts the `Submit` (a large one into the
//!    session's shared argument area), decodes its jobs in place and queues them; a loop
//!    per worker process writes a job to its worker (over the pipe, or as a note of where
//!    the arguments lie in shared memory), and kills and replaces the worker whose running
//!    job passes its time limit or is withdrawn (`Cancel`).
//! 3. **Worker** (`worker`): the client's own program, started by the node in worker mode,
//!    reads the job from its pipe (its arguments from shared memory when large), runs the
//!    task through pp-runtime's registry and answers on the pipe.
//! 4. **Back**: the node's writer sends every reply ready at once as one `Results`; the
//!    client's session hands each outcome to the job's waiter.
//!
//! **Lanes**: when a client has a single job in flight on a node and nothing queued, it
//! sends the job on its lane instead (see `lane`): a connection the node hands to a lane
//! worker of the session, which answers on it directly, so the job skips the node's relay
//! both ways. The lane runs the same channel and protocol, with a key of its own.
//!
//! # Examples
//! ```no_run
//! # async fn demo() -> Result<(), pp_net::NetError> {
//! use pp_net::{accept_server, connect_client, ChannelConfig, Message, Secret};
//! let secret = Secret::new("a long random secret")?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:60000").await.unwrap();
//! let client = tokio::net::TcpStream::connect("127.0.0.1:60000").await.unwrap();
//! let (server, _) = listener.accept().await.unwrap();
//! let config = ChannelConfig::default();
//! let (client, server) = tokio::join!(
//!     connect_client(client, &secret, config),
//!     accept_server(server, &secret, config),
//! );
//! let ((_, mut to_server), (mut from_client, _)) = (client?, server?);
//! to_server.send(&Message::Heartbeat { seq: 1 }).await?;
//! assert_eq!(from_client.recv().await?, Message::Heartbeat { seq: 1 });
//! # Ok(()) }
//! ```

mod area;
mod channel;
mod exit_status;
#[cfg(unix)]
mod kept_output;
// Public for `HOOKS` only: the facade reaches the client through the program's hooks.
#[doc(hidden)]
pub mod client;
pub mod discovery;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
// Public for `HOOKS` only, as `client`.
#[doc(hidden)]
pub mod isolated;
mod lane;
#[cfg(unix)]
pub mod launcher;
pub mod node;
// Public for the facade's tests, which pose as a client.
#[doc(hidden)]
pub mod program;
pub mod program_set;
mod protocol;
mod source_windows;
#[cfg(test)]
mod test_channel;
// Public for the facade's tests and the fuzz targets, which keep the hook in their binaries
// and speak the pipe protocol; reached otherwise through `HOOKS`.
#[doc(hidden)]
pub mod worker;

pub use channel::preamble;
pub use channel::preamble::PROTOCOL_VERSION;
pub use channel::{
    accept_server, client_handshake, connect_client, server_handshake, ChannelConfig, NetError,
    Peer, Secret, SecureReader, SecureWriter, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE,
};
pub use protocol::{
    BuildOffer, JobOutput, JobReply, JobRequest, Message, Outcome, OUTPUT_BOUND, OUTPUT_PIECE,
};

/// The network half's entry points, referenced by every registered task (see
/// `pp_runtime::remote::ProgramHooks`). Not public API: for the facade's generated code.
#[doc(hidden)]
pub static HOOKS: pp_runtime::remote::ProgramHooks = pp_runtime::remote::ProgramHooks {
    connect: client::connect,
    isolate: isolated::start,
    launcher: launcher_cluster,
    worker_hook: &worker::WORKER_HOOK,
};

/// The nodes of a launcher run, for its rank 0 (see [`launcher`]).
fn launcher_cluster() -> Option<pp_runtime::remote::LauncherCluster> {
    #[cfg(unix)]
    return launcher::cluster();
    #[cfg(not(unix))]
    None
}
