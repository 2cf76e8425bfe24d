//! The vocabulary of protocol version 2: every message a client and a node exchange.
//!
//! Messages are encoded by `pp_runtime::codec` (bincode 1, fixed-width little-endian): an
//! enum is a `u32` variant index followed by its fields in order, a `String` or byte vector
//! a `u64` length followed by its bytes. The variant order and field order *are* the wire
//! format: never reorder them; a new variant goes at the end, and any change to the
//! vocabulary comes with a new [`crate::PROTOCOL_VERSION`]. The golden-byte tests below fail
//! if the encoding drifts.
//!
//! A session, in order: the client sends [`Message::ClientHello`]; the node answers
//! [`Message::ServerHello`] (or [`Message::Refused`]); if `need_upload`, the client sends
//! [`Message::UploadChunk`]s and [`Message::UploadDone`]; the node answers
//! [`Message::Ready`]. Then [`Message::Submit`] and [`Message::Results`] flow, each carrying
//! as many jobs as are queued, with [`Message::Heartbeat`]s to detect a silent peer: the
//! client sends one every heartbeat interval and takes a node from which no message at all
//! came for its liveness timeout for lost. [`Message::LaneRequest`],
//! [`Message::LaneOffer`] and [`Message::LaneEnded`] set up and end a lane (a direct
//! connection to a worker for lone jobs, which then carries `Submit` and `Results` only).

use crate::worker::{JobHead, JobView, WorkerOutcome};
use serde::{Deserialize, Serialize};

/// One message of protocol version 2.
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
    },
    /// Node to client: who the node is and whether it needs the program.
    ServerHello {
        /// The node's name for logs and statistics.
        node_name: String,
        /// Number of workers the node runs.
        workers: u32,
        /// True when the node has not cached the program and needs it uploaded.
        need_upload: bool,
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
    /// of this session, for lone jobs). Answered with [`Message::LaneOffer`], or not at all
    /// by a node that has no lanes.
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
        /// Whether the process died (a signal, a failure status) rather than ended.
        crashed: bool,
        /// How it ended, as the node saw it ("worker pid 7 was killed by signal 6").
        reason: String,
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
        }
    }
}

/// Arguments above this size travel from where they are (see [`SubmitEncoding`]).
const SEPARATE_ARGS: usize = 64 << 10;

/// The encoding of a [`Message::Submit`] as parts: the fields of its jobs gathered in one
/// buffer, large arguments left where they are. One after the other, the parts are the
/// bytes of `codec::encode(&Message::Submit { jobs })`, with no copy of large arguments.
pub(crate) struct SubmitEncoding<'a> {
    buffer: Vec<u8>,
    /// `(end of the buffer's part, the arguments that follow it)`.
    marks: Vec<(usize, &'a [u8])>,
}

impl<'a> SubmitEncoding<'a> {
    /// Encodes the message `Submit { jobs }`.
    pub(crate) fn new(jobs: &'a [JobRequest]) -> Result<Self, pp_runtime::codec::CodecError> {
        /// The start of a `Submit`: the variant's index, then the number of jobs.
        #[derive(Serialize)]
        struct Head {
            variant: u32,
            jobs: u64,
        }
        let mut buffer = pp_runtime::codec::encode(&Head {
            variant: SUBMIT_VARIANT,
            jobs: jobs.len() as u64,
        })?;
        let mut marks = Vec::new();
        for job in jobs {
            // A `JobRequest` has a worker job's layout: its head, then its arguments.
            buffer.extend_from_slice(&pp_runtime::codec::encode(&JobHead {
                job_id: job.job_id,
                task: &job.task,
                fingerprint: job.fingerprint,
                args_len: job.args.len() as u64,
            })?);
            if job.args.len() > SEPARATE_ARGS {
                marks.push((buffer.len(), job.args.as_slice()));
            } else {
                buffer.extend_from_slice(&job.args);
            }
        }
        Ok(SubmitEncoding { buffer, marks })
    }

    /// The parts, in order.
    pub(crate) fn parts(&self) -> Vec<&[u8]> {
        let mut parts = Vec::with_capacity(2 * self.marks.len() + 1);
        let mut start = 0;
        for &(end, args) in &self.marks {
            parts.push(&self.buffer[start..end]);
            parts.push(args);
            start = end;
        }
        parts.push(&self.buffer[start..]);
        parts
    }
}

/// Index of [`Message::Submit`] among the variants: its encoding starts with it.
const SUBMIT_VARIANT: u32 = 5;

/// Decodes `bytes` as a [`Message::Submit`] whose jobs borrow from them, with at most
/// `limit` bytes of claimed lengths; `Ok(None)` when they hold another message (to decode
/// as a [`Message`]).
///
/// # Errors
/// The bytes start as a `Submit` and are not a valid one.
pub(crate) fn decode_submit(
    bytes: &[u8],
    limit: u64,
) -> Result<Option<Vec<JobView<'_>>>, pp_runtime::codec::CodecError> {
    if bytes.first_chunk::<4>() != Some(&SUBMIT_VARIANT.to_le_bytes()) {
        return Ok(None);
    }
    // An enum variant is its index and then its fields, as this tuple is.
    let (_, jobs): (u32, Vec<JobView<'_>>) = pp_runtime::codec::decode_borrowed(bytes, limit)?;
    Ok(Some(jobs))
}

/// One job sent to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The client's id for the job, echoed in its [`JobReply`].
    pub job_id: u64,
    /// The task's stable id (module path and name).
    pub task: String,
    /// Fingerprint of the task's signature, so a worker with another version refuses it.
    pub fingerprint: u64,
    /// The arguments, already encoded by `pp_runtime::codec`.
    #[serde(with = "pp_runtime::codec::bytes")]
    pub args: Vec<u8>,
}

/// The outcome of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobReply {
    /// The `job_id` of the [`JobRequest`].
    pub job_id: u64,
    /// What happened.
    pub outcome: Outcome,
}

/// What became of a job on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The job returned; its result encoded by `pp_runtime::codec`.
    Ok(#[serde(with = "pp_runtime::codec::bytes")] Vec<u8>),
    /// The job panicked; the panic message.
    Panicked(String),
    /// The worker process running the job died; what the node knows about it.
    WorkerCrashed(String),
    /// The job could not be run (unknown task, bad arguments, ...); why.
    Failed(String),
}

impl From<WorkerOutcome> for Outcome {
    /// A worker's report of a job, as the client gets it.
    fn from(outcome: WorkerOutcome) -> Self {
        match outcome {
            WorkerOutcome::Ok(bytes) => Outcome::Ok(bytes),
            WorkerOutcome::Panicked(message) => Outcome::Panicked(message),
            WorkerOutcome::Failed(reason) => Outcome::Failed(reason),
        }
    }
}

/// Room left in a `Results` message for everything but the payloads.
pub(crate) const MESSAGE_SLACK: u32 = 1024;

/// Encoded size of a reply, near enough to keep a batch under the message limit.
pub(crate) fn reply_size(reply: &JobReply) -> u64 {
    let payload = match &reply.outcome {
        Outcome::Ok(bytes) => bytes.len(),
        Outcome::Panicked(text) | Outcome::WorkerCrashed(text) | Outcome::Failed(text) => {
            text.len()
        }
    };
    payload as u64 + 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use pp_runtime::codec::{decode, encode};

    fn golden(message: &Message, bytes: &[u8]) {
        assert_eq!(
            encode(message).unwrap(),
            bytes,
            "encoding of {message:?} drifted"
        );
        assert_eq!(&decode::<Message>(bytes).unwrap(), message);
    }

    #[test]
    fn a_submit_in_parts_is_the_submit_message() {
        let job = |job_id, len: usize| JobRequest {
            job_id,
            task: format!("m::task{job_id}"),
            fingerprint: job_id * 3,
            args: (0..len).map(|i| i as u8).collect(),
        };
        for jobs in [
            vec![],
            vec![job(1, 0)],
            vec![job(1, 3), job(2, 200_000), job(3, 7), job(4, 70_000)],
            vec![job(5, 100_000)],
        ] {
            let parts = SubmitEncoding::new(&jobs).unwrap();
            let joined: Vec<u8> = parts.parts().concat();
            assert_eq!(joined, encode(&Message::Submit { jobs }).unwrap());
        }
    }

    #[test]
    fn a_submit_decoded_in_place_is_the_submit_message() {
        let jobs = vec![
            JobRequest {
                job_id: 1,
                task: "m::f".into(),
                fingerprint: 7,
                args: vec![1, 2, 3],
            },
            JobRequest {
                job_id: 2,
                task: String::new(),
                fingerprint: 0,
                args: vec![9; 100_000],
            },
        ];
        let bytes = encode(&Message::Submit { jobs: jobs.clone() }).unwrap();
        let views = decode_submit(&bytes, 1 << 20).unwrap().unwrap();
        assert_eq!(views.len(), jobs.len());
        for (view, job) in views.iter().zip(&jobs) {
            assert_eq!(
                (view.job_id, view.task, view.fingerprint, view.args),
                (
                    job.job_id,
                    job.task.as_str(),
                    job.fingerprint,
                    &job.args[..]
                )
            );
        }
        let heartbeat = encode(&Message::Heartbeat { seq: 5 }).unwrap();
        assert_eq!(decode_submit(&heartbeat, 1 << 20).unwrap(), None);
        assert!(decode_submit(&bytes[..bytes.len() - 1], 1 << 20).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_submit(&trailing, 1 << 20).is_err());
    }

    #[test]
    fn golden_heartbeat() {
        golden(
            &Message::Heartbeat { seq: 0x0102 },
            &[7, 0, 0, 0, 0x02, 0x01, 0, 0, 0, 0, 0, 0],
        );
    }

    #[test]
    fn golden_upload_done_and_ready() {
        golden(&Message::UploadDone, &[3, 0, 0, 0]);
        golden(&Message::Ready { workers: 4 }, &[4, 0, 0, 0, 4, 0, 0, 0]);
    }

    #[test]
    fn golden_refused() {
        golden(
            &Message::Refused {
                reason: "no".into(),
            },
            &[9, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, b'n', b'o'],
        );
    }

    #[test]
    fn golden_lane_messages() {
        golden(&Message::LaneRequest, &[10, 0, 0, 0]);
        let mut offer = vec![11, 0, 0, 0, 3, 0, 0, 0];
        offer.extend(1..=32u8);
        let key: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
        golden(&Message::LaneOffer { lane: 3, key }, &offer);
        #[rustfmt::skip]
        let ended = [
            12, 0, 0, 0,                        // variant LaneEnded
            3, 0, 0, 0,                         // lane
            1,                                  // crashed
            2, 0, 0, 0, 0, 0, 0, 0,             // reason.len()
            b'n', b'o',                         // reason
        ];
        golden(
            &Message::LaneEnded {
                lane: 3,
                crashed: true,
                reason: "no".into(),
            },
            &ended,
        );
    }

    #[test]
    fn golden_submit() {
        let message = Message::Submit {
            jobs: vec![JobRequest {
                job_id: 1,
                task: "m::f".into(),
                fingerprint: 0xAABB,
                args: vec![5, 6],
            }],
        };
        #[rustfmt::skip]
        let bytes = [
            5, 0, 0, 0,                         // variant Submit
            1, 0, 0, 0, 0, 0, 0, 0,             // jobs.len()
            1, 0, 0, 0, 0, 0, 0, 0,             // job_id
            4, 0, 0, 0, 0, 0, 0, 0,             // task.len()
            b'm', b':', b':', b'f',             // task
            0xBB, 0xAA, 0, 0, 0, 0, 0, 0,       // fingerprint
            2, 0, 0, 0, 0, 0, 0, 0,             // args.len()
            5, 6,                               // args
        ];
        golden(&message, &bytes);
    }

    #[test]
    fn golden_results() {
        let message = Message::Results {
            results: vec![
                JobReply {
                    job_id: 2,
                    outcome: Outcome::Ok(vec![9]),
                },
                JobReply {
                    job_id: 3,
                    outcome: Outcome::Panicked("x".into()),
                },
            ],
        };
        #[rustfmt::skip]
        let bytes = [
            6, 0, 0, 0,                         // variant Results
            2, 0, 0, 0, 0, 0, 0, 0,             // results.len()
            2, 0, 0, 0, 0, 0, 0, 0,             // job_id
            0, 0, 0, 0,                         // Outcome::Ok
            1, 0, 0, 0, 0, 0, 0, 0, 9,          // bytes
            3, 0, 0, 0, 0, 0, 0, 0,             // job_id
            1, 0, 0, 0,                         // Outcome::Panicked
            1, 0, 0, 0, 0, 0, 0, 0, b'x',       // message
        ];
        golden(&message, &bytes);
    }

    #[test]
    fn golden_client_hello() {
        let message = Message::ClientHello {
            program_sha256: [0xAB; 32],
            program_size: 1 << 20,
            target: "t".into(),
            registry_fingerprint: 1,
        };
        let mut bytes = vec![0, 0, 0, 0]; // variant ClientHello
        bytes.extend_from_slice(&[0xAB; 32]); // a fixed array: no length
        bytes.extend_from_slice(&[0, 0, 0x10, 0, 0, 0, 0, 0]); // program_size
        bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, b't']); // target
        bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]); // registry_fingerprint
        golden(&message, &bytes);
    }

    #[test]
    fn golden_server_hello() {
        let message = Message::ServerHello {
            node_name: "n".into(),
            workers: 2,
            need_upload: true,
        };
        golden(
            &message,
            &[1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'n', 2, 0, 0, 0, 1],
        );
    }

    #[test]
    fn byte_fields_encode_like_plain_vectors() {
        let chunk = Message::UploadChunk {
            offset: 3,
            bytes: vec![1, 2, 3],
        };
        let plain = encode(&(2u32, 3u64, vec![1u8, 2, 3])).unwrap();
        assert_eq!(encode(&chunk).unwrap(), plain);
    }

    #[test]
    fn unknown_variant_and_bombs_are_errors() {
        assert!(decode::<Message>(&[13, 0, 0, 0]).is_err());
        // An UploadChunk claiming 2^60 bytes.
        let mut bomb = vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        bomb.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(pp_runtime::codec::decode_with_limit::<Message>(&bomb, 1 << 20).is_err());
    }
}
