//! Property tests of the protocol's messages: every message comes back equal from its
//! encoding, through the codec and through a secure channel.

use pp_net::{JobReply, JobRequest, Message, Outcome};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..128)
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        bytes().prop_map(Outcome::Ok),
        ".{0,16}".prop_map(Outcome::Panicked),
        ".{0,16}".prop_map(Outcome::WorkerCrashed),
        ".{0,16}".prop_map(Outcome::Failed),
        (any::<u64>(), 0..1_000_000_000u32)
            .prop_map(|(secs, nanos)| Outcome::TimedOut(std::time::Duration::new(secs, nanos))),
    ]
}

fn platform() -> impl Strategy<Value = pp_runtime::Platform> {
    (".{0,24}", ".{0,8}", ".{0,8}", any::<bool>(), any::<u8>()).prop_map(
        |(triple, arch, os, big_endian, pointer_width)| pp_runtime::Platform {
            triple,
            arch,
            os,
            big_endian,
            pointer_width,
        },
    )
}

fn build_offer() -> impl Strategy<Value = pp_net::BuildOffer> {
    (platform(), any::<[u8; 32]>(), any::<u64>()).prop_map(
        |(platform, program_sha256, program_size)| pp_net::BuildOffer {
            platform,
            program_sha256,
            program_size,
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    let timeout = prop::option::of(any::<u64>().prop_map(std::time::Duration::from_nanos));
    let job = (any::<u64>(), ".{0,16}", any::<u64>(), timeout, bytes()).prop_map(
        |(job_id, task, fingerprint, timeout, args)| JobRequest {
            job_id,
            task,
            fingerprint,
            timeout,
            args,
        },
    );
    let reply = (any::<u64>(), outcome(), any::<u64>(), 0..1_000_000_000u32).prop_map(
        |(job_id, outcome, secs, nanos)| JobReply {
            job_id,
            outcome,
            run_time: std::time::Duration::new(secs, nanos),
        },
    );
    prop_oneof![
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            ".{0,16}",
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec(build_offer(), 0..3),
        )
            .prop_map(
                |(
                    program_sha256,
                    program_size,
                    target,
                    registry_fingerprint,
                    forward_output,
                    builds,
                )| {
                    Message::ClientHello {
                        program_sha256,
                        program_size,
                        target,
                        registry_fingerprint,
                        forward_output,
                        builds,
                    }
                }
            ),
        (
            ".{0,16}",
            any::<u32>(),
            any::<bool>(),
            platform(),
            prop::option::of(any::<u32>())
        )
            .prop_map(|(node_name, workers, need_upload, platform, build)| {
                Message::ServerHello {
                    node_name,
                    workers,
                    need_upload,
                    platform,
                    build,
                }
            }),
        (any::<u64>(), bytes()).prop_map(|(offset, bytes)| Message::UploadChunk { offset, bytes }),
        Just(Message::UploadDone),
        any::<u32>().prop_map(|workers| Message::Ready { workers }),
        prop::collection::vec(job, 0..8).prop_map(|jobs| Message::Submit { jobs }),
        prop::collection::vec(reply, 0..8).prop_map(|results| Message::Results { results }),
        any::<u64>().prop_map(|seq| Message::Heartbeat { seq }),
        any::<u64>().prop_map(|seq| Message::HeartbeatAck { seq }),
        ".{0,32}".prop_map(|reason| Message::Refused { reason }),
        (any::<u64>(), bytes(), bytes(), any::<u64>()).prop_map(
            |(job_id, stdout, stderr, dropped)| Message::Output(pp_net::JobOutput {
                job_id,
                stdout,
                stderr,
                dropped,
            })
        ),
        prop::collection::vec(any::<u64>(), 0..8).prop_map(|job_ids| Message::Cancel { job_ids }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips_through_the_codec(message in message()) {
        let bytes = pp_runtime::codec::encode(&message).unwrap();
        prop_assert_eq!(pp_runtime::codec::decode::<Message>(&bytes).unwrap(), message);
    }

    #[test]
    fn every_message_round_trips_through_a_secure_channel(messages in prop::collection::vec(message(), 1..6)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let secret = pp_net::Secret::new("proptest secret").unwrap();
            let (client, server) = tokio::io::duplex(1 << 16);
            let (client_read, client_write) = tokio::io::split(client);
            let (server_read, server_write) = tokio::io::split(server);
            let config = pp_net::ChannelConfig::default();
            let peer = pp_net::Peer(None);
            let (client, server) = tokio::join!(
                pp_net::client_handshake(client_read, client_write, peer, &secret, config),
                pp_net::server_handshake(server_read, server_write, peer, &secret, config),
            );
            let ((_, mut to_server), (mut from_client, _)) = (client.unwrap(), server.unwrap());
            for message in &messages {
                to_server.send(message).await.unwrap();
                assert_eq!(&from_client.recv().await.unwrap(), message);
            }
        });
    }
}
