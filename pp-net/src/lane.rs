//! Lanes: a client's direct connection to one worker process of its session, for lone jobs.
//!
//! Through the session's connection a job crosses the node twice (socket to the worker's
//! pipe, pipe to socket): two more process wake-ups and two more copies than the network
//! itself needs. When a client has a single job in flight on a node and nothing queued,
//! the round trip is all that matters, so the client sends that job on its lane instead,
//! straight to a worker that holds the connection itself.
//!
//! ```text
//! client                                   node                     lane worker
//!   LaneRequest (session)          ->
//!                                  <-      LaneOffer { lane, key }   (session)
//!   new TCP connection:
//!   lane preamble, lane id         ->      finds the session by id,
//!                                          starts a worker with the connection,
//!                                          gives it the key          ->
//!                                  <-      preamble                  (from the worker)
//!   Noise NNpsk0, PSK from the key <->                               Noise, confirmation
//!   Submit { one job }             ->                                runs it
//!                                  <-                                Results
//!                                  <-      LaneEnded { .. } when the worker ends (session)
//! ```
//! The lane preamble is `b"PPLN"`, the protocol version and two zero bytes; the lane id is
//! the first 16 bytes of `SHA-256("pp-net lane id v1\0" || key)`, so it names the lane
//! without revealing its key. The key is 32 random bytes the node draws for the lane and
//! sends only on the authenticated, encrypted session; the lane's handshake is the session
//! handshake (see the `handshake` module) with a pre-shared key derived from it
//! ([`Secret::for_lane`]) and with the lane preamble, the id and the worker's preamble as
//! prologue. So only the client that got the offer can use the lane, a recorded lane
//! handshake replayed later fails, and the worker never learns the cluster's secret.
//!
//! A session has one lane at a time (one open offer, or one lane taken up until its worker
//! ends): the node answers a request made while the lane is in use only after that lane's
//! `LaneEnded`. The worker's side of the handshake ([`accept`]) runs on blocking sockets
//! there, so the worker bounds it by a deadline of its own rather than by the async timeout
//! around it.

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::channel::handshake;
use crate::channel::preamble::{self, PREAMBLE_LEN, PROTOCOL_VERSION};
use crate::channel::{prepare, ChannelConfig, NetError, Peer, Secret, SecureReader, SecureWriter};

/// The four bytes that open a lane, where a session's connection has `b"PPRS"`.
pub(crate) const LANE_MAGIC: [u8; 4] = *b"PPLN";

/// Length of a lane id.
pub(crate) const LANE_ID_LEN: usize = 16;

/// A lane id: names a lane without revealing its key.
pub(crate) type LaneId = [u8; LANE_ID_LEN];

/// Domain separation for the lane id.
const LANE_ID_CONTEXT: &[u8] = b"pp-net lane id v1\0";

/// A lone job's arguments up to this size go on the lane; larger ones take the session
/// (whose node puts them in shared memory for the worker).
pub(crate) const LANE_MAX_ARGS: usize = 64 << 10;

/// The preamble of a lane.
pub(crate) fn lane_preamble() -> [u8; PREAMBLE_LEN] {
    let mut bytes = preamble::encode(PROTOCOL_VERSION);
    bytes[..4].copy_from_slice(&LANE_MAGIC);
    bytes
}

/// The id of the lane with `key`.
pub(crate) fn lane_id(key: &[u8; 32]) -> LaneId {
    let mut hash = Sha256::new();
    hash.update(LANE_ID_CONTEXT);
    hash.update(key);
    let digest = hash.finalize();
    let mut id = [0u8; LANE_ID_LEN];
    id.copy_from_slice(&digest[..LANE_ID_LEN]);
    id
}

/// A fresh lane key from the system's random source.
pub(crate) fn new_key() -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no random bytes for a lane key: {e}"))?;
    Ok(key)
}

/// What both ends bind into the lane's handshake: what the client sent, then the worker's
/// preamble.
fn prologue(id: &LaneId, worker: &[u8; PREAMBLE_LEN]) -> Vec<u8> {
    [&lane_preamble()[..], id, worker].concat()
}

/// Opens the lane with `key` on `stream`, a new connection to the node: the client's side.
///
/// # Errors
/// As [`crate::client_handshake`]; [`NetError::AuthenticationFailed`] when the other end
/// does not hold the key (the node found no such lane and closed the connection).
pub(crate) async fn open(
    stream: TcpStream,
    key: &[u8; 32],
    config: ChannelConfig,
) -> Result<(SecureReader, SecureWriter), NetError> {
    let peer = prepare(&stream)?;
    let (mut reader, mut writer) = stream.into_split();
    let id = lane_id(key);
    let steps = async {
        let hello = [&lane_preamble()[..], &id].concat();
        writer
            .write_all(&hello)
            .await
            .map_err(|source| NetError::Io { peer, source })?;
        let theirs = preamble::read(&mut reader, peer).await?;
        preamble::check(peer, &theirs)?;
        let secret = Secret::for_lane(key);
        let prologue = prologue(&id, &theirs);
        handshake::initiate(reader, writer, peer, &secret, config, &prologue).await
    };
    handshake::bounded("lane client", peer, config, steps).await
}

/// Accepts the lane with `key` on the halves of a connection whose preamble and id the
/// node read: the worker's side.
///
/// # Errors
/// As [`crate::server_handshake`].
// Lane workers exist on Unix only.
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) async fn accept<R, W>(
    reader: R,
    mut writer: W,
    peer: Peer,
    key: &[u8; 32],
    config: ChannelConfig,
) -> Result<(SecureReader<R>, SecureWriter<W>), NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let steps = async {
        preamble::write(&mut writer, peer).await?;
        let secret = Secret::for_lane(key);
        let prologue = prologue(&lane_id(key), &preamble::ours());
        handshake::respond(reader, writer, peer, &secret, config, &prologue).await
    };
    handshake::bounded("lane worker", peer, config, steps).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobReply, JobRequest, Message, Outcome};
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_preamble_id_and_key_derivation_are_pinned() {
        assert_eq!(lane_preamble(), [b'P', b'P', b'L', b'N', 5, 0, 0, 0]);
        // SHA-256("pp-net lane id v1\0" || 32 zero bytes), first 16 bytes.
        assert_eq!(hex(&lane_id(&[0; 32])), "ada06c9ee8f922b75638afa30132f923");
        // SHA-256("pp-net lane psk v1\0" || 32 zero bytes).
        assert_eq!(
            hex(Secret::for_lane(&[0; 32]).psk()),
            "1b744a39733db033f84ae660395cd217a32e28929dad833ce63cc82ead15f5cd"
        );
        assert_ne!(new_key().unwrap(), new_key().unwrap());
    }

    /// The client's end of a lane with `client_key`, and the worker's with `worker_key`,
    /// the opening bytes read in between as the node does.
    #[allow(clippy::type_complexity)]
    async fn lane(
        client_key: [u8; 32],
        worker_key: [u8; 32],
    ) -> (
        Result<(SecureReader, SecureWriter), NetError>,
        Result<(SecureReader, SecureWriter), NetError>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = ChannelConfig::default();
        let client = async {
            let stream = TcpStream::connect(addr).await.unwrap();
            open(stream, &client_key, config).await
        };
        let worker = async {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut opening = [0u8; PREAMBLE_LEN + LANE_ID_LEN];
            stream.read_exact(&mut opening).await.unwrap();
            assert_eq!(opening[..PREAMBLE_LEN], lane_preamble());
            assert_eq!(opening[PREAMBLE_LEN..], lane_id(&client_key));
            let peer = prepare(&stream).unwrap();
            let (reader, writer) = stream.into_split();
            accept(reader, writer, peer, &worker_key, config).await
        };
        tokio::join!(client, worker)
    }

    #[tokio::test]
    async fn a_lane_opens_with_its_key_and_carries_jobs_and_results() {
        let key = new_key().unwrap();
        let (client, worker) = lane(key, key).await;
        let ((mut from_worker, mut to_worker), (mut from_client, mut to_client)) =
            (client.unwrap(), worker.unwrap());
        let job = JobRequest {
            job_id: 9,
            task: "m::f".into(),
            fingerprint: 3,
            timeout: None,
            args: vec![1, 2, 3],
        };
        to_worker
            .send_submit(std::slice::from_ref(&job))
            .await
            .unwrap();
        assert_eq!(
            from_client.recv().await.unwrap(),
            Message::Submit { jobs: vec![job] }
        );
        let results = vec![JobReply {
            job_id: 9,
            outcome: Outcome::Ok(vec![4]),
            run_time: Duration::from_micros(5),
        }];
        to_client
            .send(&Message::Results {
                results: results.clone(),
            })
            .await
            .unwrap();
        assert_eq!(
            from_worker.recv().await.unwrap(),
            Message::Results { results }
        );
    }

    #[tokio::test]
    async fn a_job_sent_at_once_from_a_thread_outside_the_runtime_arrives_whole() {
        let key = new_key().unwrap();
        let (client, worker) = lane(key, key).await;
        let ((_, to_worker), (mut from_client, _)) = (client.unwrap(), worker.unwrap());
        let jobs: Vec<JobRequest> = (1..=3)
            .map(|job_id| JobRequest {
                job_id,
                task: "m::f".into(),
                fingerprint: 3,
                timeout: None,
                args: vec![job_id as u8; 1000 * job_id as usize],
            })
            .collect();
        let sent = jobs.clone();
        let sender = std::thread::spawn(move || {
            let mut to_worker = to_worker;
            for job in &sent {
                to_worker
                    .send_submit_now(std::slice::from_ref(job))
                    .unwrap();
            }
        });
        for job in jobs {
            assert_eq!(
                from_client.recv().await.unwrap(),
                Message::Submit { jobs: vec![job] }
            );
        }
        sender.join().unwrap();
    }

    #[tokio::test]
    async fn a_lane_opened_with_another_key_fails_authentication() {
        let (client, worker) = lane(new_key().unwrap(), new_key().unwrap()).await;
        assert!(
            matches!(client, Err(NetError::AuthenticationFailed { .. })),
            "{client:?}"
        );
        assert!(
            matches!(worker, Err(NetError::AuthenticationFailed { .. })),
            "{worker:?}"
        );
    }
}
