//! A raw client of the node protocol, message by message, for tests that drive a real
//! `ppserver` step by step (or break the protocol on purpose).

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;

use pp::codec::encode;
use pp_net::program::{current_program, Program};
use pp_net::{connect_client, ChannelConfig, JobRequest, Message, NetError, Outcome, Secret};
use pp_net::{SecureReader, SecureWriter};

use super::WAIT;

/// Runs `f` on a fresh runtime, failing the test if it takes longer than [`WAIT`].
pub fn block_on<T>(f: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(WAIT, f)
            .await
            .expect("the test hung: it did not finish within its time bound")
    })
}

/// This test binary, as the node receives it.
pub fn program() -> &'static Program {
    current_program().expect("this test binary can be read")
}

/// The bytes of this test binary.
pub fn program_bytes() -> Vec<u8> {
    let mut bytes = Vec::new();
    std::fs::File::open(&program().path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .expect("read this test binary");
    bytes
}

/// A raw client of the protocol.
pub struct Client {
    /// The receiving half.
    pub reader: SecureReader,
    /// The sending half.
    pub writer: SecureWriter,
}

impl Client {
    /// Connects and authenticates with `secret`.
    pub async fn connect(addr: SocketAddr, secret: &str) -> Result<Client, NetError> {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let secret = Secret::new(secret)?;
        let (reader, writer) = connect_client(stream, &secret, ChannelConfig::default()).await?;
        Ok(Client { reader, writer })
    }

    /// Sends `message`, panicking on failure.
    pub async fn send(&mut self, message: &Message) {
        self.writer.send(message).await.expect("send");
    }

    /// Receives the next message, panicking on failure.
    pub async fn recv(&mut self) -> Message {
        self.reader.recv().await.expect("receive")
    }

    /// This binary's hello.
    pub fn hello() -> Message {
        Client::hello_for(program().sha256, program().size)
    }

    /// A hello announcing another program (`sha256`, `size`) for this platform and
    /// this binary's task registry.
    pub fn hello_for(sha256: [u8; 32], size: u64) -> Message {
        Message::ClientHello {
            program_sha256: sha256,
            program_size: size,
            target: pp_net::node::this_target(),
            registry_fingerprint: pp::registry().fingerprint(),
            // What jobs print stays in the node's log: these tests read results only.
            forward_output: false,
            builds: Vec::new(),
        }
    }

    /// Sends `bytes` as the program, in 1 MiB chunks, then `UploadDone`.
    pub async fn upload(&mut self, bytes: &[u8]) {
        let mut offset = 0u64;
        for chunk in bytes.chunks(1 << 20) {
            self.send(&Message::UploadChunk {
                offset,
                bytes: chunk.to_vec(),
            })
            .await;
            offset += chunk.len() as u64;
        }
        self.send(&Message::UploadDone).await;
    }

    /// Hello, upload if asked, `Ready`: returns (need_upload, workers).
    pub async fn start_session(&mut self) -> (bool, u32) {
        self.send(&Client::hello()).await;
        let need_upload = match self.recv().await {
            Message::ServerHello { need_upload, .. } => need_upload,
            other => panic!("expected ServerHello, got {other:?}"),
        };
        if need_upload {
            self.upload(&program_bytes()).await;
        }
        match self.recv().await {
            Message::Ready { workers } => (need_upload, workers),
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    /// Submits `jobs` in one message and collects every outcome.
    pub async fn run(&mut self, jobs: Vec<JobRequest>) -> HashMap<u64, Outcome> {
        let expected = jobs.len();
        self.send(&Message::Submit { jobs }).await;
        let mut outcomes = HashMap::new();
        while outcomes.len() < expected {
            match self.recv().await {
                Message::Results { results } => {
                    for reply in results {
                        assert!(outcomes.insert(reply.job_id, reply.outcome).is_none());
                    }
                }
                Message::HeartbeatAck { .. } => {}
                other => panic!("expected Results, got {other:?}"),
            }
        }
        outcomes
    }
}

/// A job request for `task` with encoded `args`.
pub fn job<F>(job_id: u64, task: pp::Task<F>, args: Vec<u8>) -> JobRequest {
    JobRequest {
        job_id,
        task: task.id().to_owned(),
        fingerprint: task.fingerprint(),
        timeout: None,
        args,
    }
}

/// A job request whose arguments are `args`, encoded.
pub fn job_with<F, A: serde::Serialize>(job_id: u64, task: pp::Task<F>, args: &A) -> JobRequest {
    job(job_id, task, encode(args).expect("encodable arguments"))
}

/// The reason of a `Refused`, or a panic.
pub fn expect_refused(message: Message) -> String {
    match message {
        Message::Refused { reason } => reason,
        other => panic!("expected Refused, got {other:?}"),
    }
}

/// The first bytes of a lane with `key`: `PPLN`, the protocol version, two zero bytes, then
/// the first 16 bytes of `SHA-256("pp-net lane id v1\0" || key)`.
pub fn lane_opening(key: &[u8; 32]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut opening = pp_net::preamble::ours().to_vec();
    opening[..4].copy_from_slice(b"PPLN");
    let id = Sha256::new()
        .chain_update(b"pp-net lane id v1\0")
        .chain_update(key)
        .finalize();
    opening.extend_from_slice(&id[..16]);
    opening
}

/// Waits for the session's next message, which must be `LaneEnded` for `lane`; returns
/// whether the lane's worker crashed and why.
pub async fn expect_lane_ended(client: &mut Client, lane: u32) -> (bool, String) {
    match client.recv().await {
        Message::LaneEnded {
            lane: ended,
            crashed,
            reason,
        } => {
            assert_eq!(ended, lane);
            (crashed, reason)
        }
        other => panic!("expected LaneEnded, got {other:?}"),
    }
}
