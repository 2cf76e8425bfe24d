//! The vocabulary of protocol version 5 (3: `ClientHello::forward_output`, `Output`, and
//! `JobReply::run_time`; 4: `JobRequest::timeout`, `Outcome::TimedOut` and `Cancel`; 5:
//! `ClientHello::builds`, `ServerHello::platform` and `ServerHello::build`): every message a
//! client and a node exchange.
//!
//! Messages are encoded by `pp_runtime::codec` (bincode 1, fixed-width little-endian): an
//! enum is a `u32` variant index followed by its fields in order, a `String` or byte vector
//! a `u64` length followed by its bytes. The variant order and field order *are* the wire
//! format: never reorder them; a new variant goes at the end, and any change to the
//! vocabulary comes with a new [`crate::PROTOCOL_VERSION`]. The golden-byte tests (in
//! `golden_tests`) fail if the encoding drifts.
//!
//! A session, in order: the client sends [`Message::ClientHello`]; the node answers
//! [`Message::ServerHello`] (or [`Message::Refused`]); if `need_upload`, the client sends
//! [`Message::UploadChunk`]s and [`Message::UploadDone`]; the node answers
//! [`Message::Ready`]. Then [`Message::Submit`] and [`Message::Results`] flow, each carrying
//! as many jobs as are queued, with [`Message::Heartbeat`]s to detect a silent peer (the
//! liveness policy is described once, where it is configured: pp-runtime's
//! `ClusterOptions::liveness_timeout`). [`Message::LaneRequest`],
//! [`Message::LaneOffer`] and [`Message::LaneEnded`] set up and end a lane (a direct
//! connection to a worker for lone jobs, which then carries `Submit`, `Results` and
//! `Output` only). [`Message::Output`] brings a job's printed output before its result.
//! [`Message::Cancel`] withdraws jobs the client no longer wants.

use pp_runtime::Platform;
use serde::{Deserialize, Serialize};

use super::job::{JobReply, JobRequest};
use super::output::JobOutput;

/// A build of the client's program for another target, as its hello offers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOffer {
    /// What the build runs on (read from its header).
    pub platform: Platform,
    /// SHA-256 of the build's file.
    pub program_sha256: [u8; 32],
    /// Its size in bytes.
    pub program_size: u64,
}

/// One message of protocol version 5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Client to node, first: which program the client is, so the node can run it.
    ClientHello {
        /// SHA-256 of the client's executable.
        program_sha256: [u8; 32],
        /// Size of the executable in bytes (what an upload would cost).
        program_size: u64,
        /// The target triple the executable was built for.
        target: String,
        /// Fingerprint of the client's task registry.
        registry_fingerprint: u64,
        /// Whether the node's workers catch what jobs print and send it back
        /// ([`Message::Output`]); when false it goes to the node's log.
        forward_output: bool,
        /// Builds of the same program for other targets (same task registry), for a node
        /// that cannot run the first one; numbered from 1 in [`Message::ServerHello`]'s
        /// `build`.
        builds: Vec<BuildOffer>,
    },
    /// Node to client: who the node is, what it runs, which build it takes and whether it
    /// needs it uploaded.
    ServerHello {
        /// The node's name for logs and statistics.
        node_name: String,
        /// Number of workers the node runs.
        workers: u32,
        /// True when the node has not cached the build it takes and needs it uploaded.
        need_upload: bool,
        /// What the node runs: its target triple, architecture, OS, byte order, pointer
        /// width.
        platform: Platform,
        /// The build the node runs: 0 the hello's first program, `i` its `builds[i - 1]`;
        /// `None` when it runs none of them (the node then closes the connection).
        build: Option<u32>,
    },
    /// Client to node: a piece of the executable.
    UploadChunk {
        /// Position of `bytes` in the executable.
        offset: u64,
        /// The piece.
        #[serde(with = "pp_runtime::codec::bytes")]
        bytes: Vec<u8>,
    },
    /// Client to node: the upload is complete (the node checks the hash).
    UploadDone,
    /// Node to client: workers are running the program; jobs may be submitted.
    Ready {
        /// Workers available to this client.
        workers: u32,
    },
    /// Client to node: jobs to run.
    Submit {
        /// The jobs, as many as the client had queued for this node.
        jobs: Vec<JobRequest>,
    },
    /// Node to client: finished jobs.
    Results {
        /// The outcomes, in the order the jobs finished.
        results: Vec<JobReply>,
    },
    /// Either way: are you there? Answered with [`Message::HeartbeatAck`].
    Heartbeat {
        /// Echoed in the answer.
        seq: u64,
    },
    /// Either way: the answer to [`Message::Heartbeat`]. A node that cannot read (its job
    /// queue for the client is full) repeats its last answer meanwhile, as a sign of life.
    HeartbeatAck {
        /// The `seq` of the heartbeat answered.
        seq: u64,
    },
    /// Node to client: the node will not serve this client (the connection then closes).
    Refused {
        /// Why, for the client's log.
        reason: String,
    },
    /// Client to node, once jobs flow: please open a lane (a direct connection to a worker
    /// of this session, for lone jobs). Answered with [`Message::LaneOffer`] (while the
    /// session's lane is in use, only after its [`Message::LaneEnded`]), or not at all by a
    /// node that has no lanes.
    LaneRequest,
    /// Node to client: the key of a lane the client may open now (see the `lane` module).
    LaneOffer {
        /// The lane's number in this session, as [`Message::LaneEnded`] names it.
        lane: u32,
        /// The lane's key: its handshake proves both ends hold it.
        key: [u8; 32],
    },
    /// Node to client: the worker process of a lane ended; a job it held failed.
    LaneEnded {
        /// The lane's number (from [`Message::LaneOffer`]).
        lane: u32,
        /// Whether the process died (a signal, a failure status) rather than ended: a lane
        /// whose client went away or did not complete its handshake did not crash.
        crashed: bool,
        /// How it ended, as the node saw it ("worker pid 7 was killed by signal 6").
        reason: String,
    },
    /// Node (or a lane worker) to client, before the job's result: what the job wrote on
    /// its standard output and error (only when the hello asked for it, and only when it
    /// wrote something).
    Output(JobOutput),
    /// Client to node: the client no longer wants these jobs (they were cancelled, or
    /// finished elsewhere) and ignores their replies. A job still queued on the node is
    /// dropped unanswered; one running has its worker killed and replaced, and the other
    /// jobs that worker held run on. Ids of jobs the node already answered are ignored.
    Cancel {
        /// The jobs' ids, as in their [`JobRequest`]s.
        job_ids: Vec<u64>,
    },
}

impl Message {
    /// The message's name, for errors and logs ("expected `Ready`, got `Submit`").
    pub fn kind(&self) -> &'static str {
        match self {
            Message::ClientHello { .. } => "`ClientHello`",
            Message::ServerHello { .. } => "`ServerHello`",
            Message::UploadChunk { .. } => "`UploadChunk`",
            Message::UploadDone => "`UploadDone`",
            Message::Ready { .. } => "`Ready`",
            Message::Submit { .. } => "`Submit`",
            Message::Results { .. } => "`Results`",
            Message::Heartbeat { .. } => "`Heartbeat`",
            Message::HeartbeatAck { .. } => "`HeartbeatAck`",
            Message::Refused { .. } => "`Refused`",
            Message::LaneRequest => "`LaneRequest`",
            Message::LaneOffer { .. } => "`LaneOffer`",
            Message::LaneEnded { .. } => "`LaneEnded`",
            Message::Output(_) => "`Output`",
            Message::Cancel { .. } => "`Cancel`",
        }
    }
}
