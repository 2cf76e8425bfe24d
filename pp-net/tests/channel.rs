//! The secure channel after the handshake, over real TCP on 127.0.0.1: every message kind
//! both ways, a 16 MiB payload, limits, and frames that are altered, oversized or cut.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bounded, connected, secret, tcp_pair, Tap, TapControl};
use pp_net::{
    accept_server, client_handshake, ChannelConfig, JobOutput, JobReply, JobRequest, Message,
    NetError, Outcome, Peer,
};
use tokio::io::AsyncWriteExt;

/// One message of every kind; the exhaustive match in `kind` makes a new variant fail to
/// compile here until it is added.
fn every_message() -> Vec<Message> {
    vec![
        Message::ClientHello {
            program_sha256: [7; 32],
            program_size: 12_345_678,
            target: "x86_64-unknown-linux-gnu".into(),
            registry_fingerprint: u64::MAX,
            forward_output: true,
            builds: vec![pp_net::BuildOffer {
                platform: pp_runtime::Platform::this(),
                program_sha256: [8; 32],
                program_size: 1,
            }],
        },
        Message::ServerHello {
            node_name: "node-1".into(),
            workers: 16,
            need_upload: true,
            platform: pp_runtime::Platform::this(),
            build: Some(1),
        },
        Message::UploadChunk {
            offset: 1 << 33,
            bytes: (0..100_000u32).map(|i| i as u8).collect(),
        },
        Message::UploadDone,
        Message::Ready { workers: 16 },
        Message::Submit {
            jobs: (0..3)
                .map(|i| JobRequest {
                    job_id: i,
                    task: format!("examples::sum_primes#{i}"),
                    fingerprint: 0xDEAD_BEEF,
                    timeout: None,
                    args: vec![i as u8; 9],
                })
                .collect(),
        },
        Message::Results {
            results: vec![
                JobReply {
                    job_id: 0,
                    outcome: Outcome::Ok(vec![1, 2, 3]),
                    run_time: Duration::from_micros(0),
                },
                JobReply {
                    job_id: 1,
                    outcome: Outcome::Panicked("index out of bounds".into()),
                    run_time: Duration::from_micros(1),
                },
                JobReply {
                    job_id: 2,
                    outcome: Outcome::WorkerCrashed("signal 11".into()),
                    run_time: Duration::from_micros(2),
                },
                JobReply {
                    job_id: 3,
                    outcome: Outcome::Failed("unknown task".into()),
                    run_time: Duration::from_micros(3),
                },
            ],
        },
        Message::Heartbeat { seq: 41 },
        Message::HeartbeatAck { seq: 41 },
        Message::Refused {
            reason: "cannot run x86_64 programs".into(),
        },
        Message::LaneRequest,
        Message::LaneOffer {
            lane: 7,
            key: [0xA5; 32],
        },
        Message::LaneEnded {
            lane: 7,
            crashed: true,
            reason: "worker pid 9 was killed by signal 6 (SIGABRT)".into(),
        },
        Message::Output(JobOutput {
            job_id: 3,
            stdout: b"a line\n".to_vec(),
            stderr: vec![0xFF; 5],
            dropped: 1 << 40,
        }),
        Message::Cancel {
            job_ids: vec![1, u64::MAX],
        },
    ]
}

fn kind(message: &Message) -> usize {
    match message {
        Message::ClientHello { .. } => 0,
        Message::ServerHello { .. } => 1,
        Message::UploadChunk { .. } => 2,
        Message::UploadDone => 3,
        Message::Ready { .. } => 4,
        Message::Submit { .. } => 5,
        Message::Results { .. } => 6,
        Message::Heartbeat { .. } => 7,
        Message::HeartbeatAck { .. } => 8,
        Message::Refused { .. } => 9,
        Message::LaneRequest => 10,
        Message::LaneOffer { .. } => 11,
        Message::LaneEnded { .. } => 12,
        Message::Output(_) => 13,
        Message::Cancel { .. } => 14,
    }
}

#[tokio::test]
async fn every_message_kind_round_trips_both_ways() {
    bounded(async {
        let messages = every_message();
        let mut kinds: Vec<usize> = messages.iter().map(kind).collect();
        kinds.dedup();
        assert_eq!(kinds, (0..15).collect::<Vec<_>>());

        let ((mut from_server, mut to_server), (mut from_client, mut to_client)) =
            connected().await;
        // Reader and writer of each side in different tasks, as a node will use them.
        let sent = messages.clone();
        let client_sends = tokio::spawn(async move {
            for m in &sent {
                to_server.send(m).await.unwrap();
            }
            to_server
        });
        let sent = messages.clone();
        let server_sends = tokio::spawn(async move {
            for m in &sent {
                to_client.send(m).await.unwrap();
            }
            to_client
        });
        for m in &messages {
            assert_eq!(&from_client.recv().await.unwrap(), m);
            assert_eq!(&from_server.recv().await.unwrap(), m);
        }
        client_sends.await.unwrap();
        server_sends.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn sixteen_mib_payload_round_trips() {
    bounded(async {
        let ((mut from_server, mut to_server), (mut from_client, mut to_client)) =
            connected().await;
        let payload: Vec<u8> = (0..16u32 << 20).map(|i| (i * 31 + i / 7) as u8).collect();
        let submit = Message::Submit {
            jobs: vec![JobRequest {
                job_id: 9,
                task: "big".into(),
                fingerprint: 1,
                timeout: None,
                args: payload.clone(),
            }],
        };
        let sending = tokio::spawn(async move {
            to_server.send(&submit).await.unwrap();
            (to_server, submit)
        });
        let received = from_client.recv().await.unwrap();
        let (_, submit) = sending.await.unwrap();
        assert_eq!(received, submit);

        let reply = Message::Results {
            results: vec![JobReply {
                job_id: 9,
                outcome: Outcome::Ok(payload),
                run_time: Duration::from_micros(9),
            }],
        };
        let sending = tokio::spawn(async move {
            to_client.send(&reply).await.unwrap();
            reply
        });
        let received = from_server.recv().await.unwrap();
        assert_eq!(received, sending.await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn raw_bytes_round_trip_including_empty() {
    bounded(async {
        let ((_, mut to_server), (mut from_client, _)) = connected().await;
        for len in [0usize, 1, 65_515, 65_516, 200_000] {
            let bytes = vec![0xA5; len];
            to_server.send_bytes(&bytes).await.unwrap();
            assert_eq!(from_client.recv_bytes().await.unwrap(), bytes);
        }
    })
    .await;
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    bounded(async {
        let ((_, mut to_server), (mut from_client, _)) = connected().await;
        let message = Message::UploadChunk {
            offset: 0,
            bytes: vec![3; 3 << 20],
        };
        let expected = message.clone();
        let sending = tokio::spawn(async move { to_server.send(&message).await.unwrap() });
        // Interrupt `recv` over and over while the frame arrives; nothing may be lost.
        let mut interruptions = 0u64;
        let received = loop {
            tokio::select! {
                m = from_client.recv() => break m.unwrap(),
                () = tokio::task::yield_now() => interruptions += 1,
            }
        };
        sending.await.unwrap();
        assert_eq!(received, expected);
        let _ = interruptions; // how many depends on scheduling: not asserted
    })
    .await;
}

#[tokio::test]
async fn oversized_message_is_not_sent_and_the_writer_stays_usable() {
    bounded(async {
        let mut config = ChannelConfig::default();
        config.max_message = 1024;
        let (client, server) = common::handshake(secret(), secret(), config, config).await;
        let ((_, mut to_server), (mut from_client, _)) = (client.unwrap(), server.unwrap());
        let err = to_server.send_bytes(&[0; 1025]).await.unwrap_err();
        assert!(
            matches!(
                err,
                NetError::MessageTooLarge {
                    len: 1025,
                    limit: 1024,
                    ..
                }
            ),
            "{err}"
        );
        to_server.send(&Message::UploadDone).await.unwrap();
        assert_eq!(from_client.recv().await.unwrap(), Message::UploadDone);
    })
    .await;
}

#[tokio::test]
async fn receiver_enforces_its_own_limit() {
    bounded(async {
        let mut small = ChannelConfig::default();
        small.max_message = 64 << 10;
        let (client, server) =
            common::handshake(secret(), secret(), ChannelConfig::default(), small).await;
        let ((_, mut to_server), (mut from_client, _)) = (client.unwrap(), server.unwrap());
        to_server.send_bytes(&vec![0; 512 << 10]).await.unwrap();
        let err = from_client.recv_bytes().await.unwrap_err();
        assert!(matches!(err, NetError::FrameTooLarge { .. }), "{err}");
    })
    .await;
}

#[tokio::test]
async fn clean_close_is_disconnected() {
    bounded(async {
        let ((_, mut to_server), (mut from_client, _)) = connected().await;
        to_server
            .send(&Message::Heartbeat { seq: 1 })
            .await
            .unwrap();
        to_server.shutdown().await.unwrap();
        assert_eq!(
            from_client.recv().await.unwrap(),
            Message::Heartbeat { seq: 1 }
        );
        let err = from_client.recv().await.unwrap_err();
        assert!(matches!(err, NetError::Disconnected { .. }), "{err}");
    })
    .await;
}

#[tokio::test]
async fn flipped_byte_in_a_frame_is_rejected() {
    bounded(async {
        let (client, server) = tcp_pair().await;
        let peer = Peer(client.peer_addr().ok());
        let (read_half, write_half) = client.into_split();
        let control = Arc::new(Mutex::new(TapControl::default()));
        let tap = Tap {
            inner: write_half,
            control: Arc::clone(&control),
        };
        let config = ChannelConfig::default();
        let (client, server) = tokio::join!(
            client_handshake(read_half, tap, peer, secret(), config),
            accept_server(server, secret(), config),
        );
        let ((_, mut to_server), (mut from_client, _)) = (client.unwrap(), server.unwrap());

        // Flip a bit of ciphertext in the next frame: past its 4-byte length and 2-byte
        // segment length.
        {
            let mut control = control.lock().unwrap();
            control.flip_at = Some(control.recorded.len() as u64 + 10);
        }
        to_server
            .send(&Message::Ready { workers: 4 })
            .await
            .unwrap();
        let err = from_client.recv().await.unwrap_err();
        assert!(matches!(err, NetError::FrameRejected { .. }), "{err}");
        assert!(err.to_string().contains("altered"), "{err}");
        // The session is over: nothing after a forged frame is trusted.
        to_server
            .send(&Message::Ready { workers: 4 })
            .await
            .unwrap();
        assert!(matches!(
            from_client.recv().await.unwrap_err(),
            NetError::Broken { .. }
        ));
    })
    .await;
}

/// Runs a real handshake from a client whose raw socket the test keeps, then hands the raw
/// writer back for bytes no honest client would send.
async fn authenticated_raw_client(
    config: ChannelConfig,
) -> (tokio::net::tcp::OwnedWriteHalf, pp_net::SecureReader) {
    let (client, server) = tcp_pair().await;
    let peer = Peer(client.peer_addr().ok());
    let (read_half, mut write_half) = client.into_split();
    let (client, server) = tokio::join!(
        client_handshake(read_half, &mut write_half, peer, secret(), config),
        accept_server(server, secret(), config),
    );
    drop(client.unwrap());
    let (from_client, _) = server.unwrap();
    (write_half, from_client)
}

#[tokio::test]
async fn four_gib_length_prefix_is_refused_before_allocating() {
    bounded(async {
        let (mut raw, mut from_client) = authenticated_raw_client(ChannelConfig::default()).await;
        raw.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let err = from_client.recv().await.unwrap_err();
        assert!(
            matches!(err, NetError::FrameTooLarge { len, .. } if len == u64::from(u32::MAX)),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn truncated_frame_is_an_error_not_a_hang() {
    bounded(async {
        let (mut raw, mut from_client) = authenticated_raw_client(ChannelConfig::default()).await;
        // A frame announcing 1000 bytes, of which 10 arrive before the connection closes:
        // one segment of 998 bytes is announced, so nothing is wrong until the end comes
        // early (the reader opens segments as they arrive, and would refuse a malformed
        // segment header at once).
        raw.write_all(&1000u32.to_le_bytes()).await.unwrap();
        let mut partial = [0u8; 10];
        partial[..2].copy_from_slice(&998u16.to_le_bytes());
        raw.write_all(&partial).await.unwrap();
        raw.shutdown().await.unwrap();
        let err = from_client.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Truncated {
                    during: "a frame",
                    ..
                }
            ),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn truncated_frame_header_is_an_error() {
    bounded(async {
        let (mut raw, mut from_client) = authenticated_raw_client(ChannelConfig::default()).await;
        raw.write_all(&[1, 0]).await.unwrap();
        raw.shutdown().await.unwrap();
        let err = from_client.recv().await.unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Truncated {
                    during: "a frame header",
                    ..
                }
            ),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn garbage_frame_is_rejected() {
    bounded(async {
        let (mut raw, mut from_client) = authenticated_raw_client(ChannelConfig::default()).await;
        let mut frame = 100u32.to_le_bytes().to_vec();
        frame.extend_from_slice(&98u16.to_le_bytes());
        frame.extend_from_slice(&[0x42; 98]);
        raw.write_all(&frame).await.unwrap();
        let err = from_client.recv().await.unwrap_err();
        assert!(matches!(err, NetError::FrameRejected { .. }), "{err}");
    })
    .await;
}
