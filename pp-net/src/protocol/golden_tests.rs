//! The wire format of every message, pinned byte by byte, and the hand-written `Submit`
//! encoding (in parts, decoded in place) checked against the codec's.

use std::time::Duration;

use pp_runtime::codec::{decode, encode};

use super::submit::{decode_submit, SubmitEncoding};
use super::*;

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
        timeout: (job_id % 2 == 0).then(|| Duration::from_millis(job_id)),
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
            timeout: Some(Duration::from_secs(1)),
            args: vec![1, 2, 3],
        },
        JobRequest {
            job_id: 2,
            task: String::new(),
            fingerprint: 0,
            timeout: None,
            args: vec![9; 100_000],
        },
    ];
    let bytes = encode(&Message::Submit { jobs: jobs.clone() }).unwrap();
    let views = decode_submit(&bytes, 1 << 20).unwrap().unwrap();
    assert_eq!(views.len(), jobs.len());
    for (view, job) in views.iter().zip(&jobs) {
        assert_eq!(
            (
                view.job_id,
                view.task,
                view.fingerprint,
                view.timeout,
                view.args
            ),
            (
                job.job_id,
                job.task.as_str(),
                job.fingerprint,
                job.timeout,
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
            timeout: Some(Duration::new(2, 1)),
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
        1,                                  // timeout (version 4): Some
        2, 0, 0, 0, 0, 0, 0, 0,             //   seconds
        1, 0, 0, 0,                         //   nanoseconds
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
                run_time: Duration::new(1, 2),
            },
            JobReply {
                job_id: 3,
                outcome: Outcome::Panicked("x".into()),
                run_time: Duration::from_nanos(0x0304),
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
        1, 0, 0, 0, 0, 0, 0, 0,             // run_time: seconds
        2, 0, 0, 0,                         // run_time: nanoseconds
        3, 0, 0, 0, 0, 0, 0, 0,             // job_id
        1, 0, 0, 0,                         // Outcome::Panicked
        1, 0, 0, 0, 0, 0, 0, 0, b'x',       // message
        0, 0, 0, 0, 0, 0, 0, 0,             // run_time: seconds
        4, 3, 0, 0,                         // run_time: nanoseconds
    ];
    golden(&message, &bytes);
}

fn platform() -> pp_runtime::Platform {
    pp_runtime::Platform {
        triple: "a-b".into(),
        arch: "a".into(),
        os: "b".into(),
        big_endian: false,
        pointer_width: 64,
    }
}

/// The bytes of [`platform`]: three strings, a bool, a byte.
#[rustfmt::skip]
const PLATFORM_BYTES: [u8; 3 * 8 + 5 + 2] = [
    3, 0, 0, 0, 0, 0, 0, 0, b'a', b'-', b'b', // triple
    1, 0, 0, 0, 0, 0, 0, 0, b'a',             // arch
    1, 0, 0, 0, 0, 0, 0, 0, b'b',             // os
    0,                                        // big_endian
    64,                                       // pointer_width
];

#[test]
fn golden_client_hello() {
    let message = Message::ClientHello {
        program_sha256: [0xAB; 32],
        program_size: 1 << 20,
        target: "t".into(),
        registry_fingerprint: 1,
        forward_output: true,
        builds: vec![crate::BuildOffer {
            platform: platform(),
            program_sha256: [0xCD; 32],
            program_size: 2,
        }],
    };
    let mut bytes = vec![0, 0, 0, 0]; // variant ClientHello
    bytes.extend_from_slice(&[0xAB; 32]); // a fixed array: no length
    bytes.extend_from_slice(&[0, 0, 0x10, 0, 0, 0, 0, 0]); // program_size
    bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, b't']); // target
    bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]); // registry_fingerprint
    bytes.push(1); // forward_output
    bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]); // one build
    bytes.extend_from_slice(&PLATFORM_BYTES);
    bytes.extend_from_slice(&[0xCD; 32]);
    bytes.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]); // program_size
    golden(&message, &bytes);
}

#[test]
fn golden_server_hello() {
    let message = Message::ServerHello {
        node_name: "n".into(),
        workers: 2,
        need_upload: true,
        platform: platform(),
        build: Some(1),
    };
    let mut bytes = vec![1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'n', 2, 0, 0, 0, 1];
    bytes.extend_from_slice(&PLATFORM_BYTES);
    bytes.extend_from_slice(&[1, 1, 0, 0, 0]); // Some(1u32)
    golden(&message, &bytes);
    let none = Message::ServerHello {
        node_name: "n".into(),
        workers: 2,
        need_upload: false,
        platform: platform(),
        build: None,
    };
    let mut bytes = vec![1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'n', 2, 0, 0, 0, 0];
    bytes.extend_from_slice(&PLATFORM_BYTES);
    bytes.push(0); // None
    golden(&none, &bytes);
}

#[test]
fn golden_output() {
    let message = Message::Output(JobOutput {
        job_id: 5,
        stdout: b"o\n".to_vec(),
        stderr: b"e".to_vec(),
        dropped: 7,
    });
    let mut bytes = vec![13, 0, 0, 0]; // variant Output
    bytes.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0]); // job_id
    bytes.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, b'o', b'\n']); // stdout
    bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, b'e']); // stderr
    bytes.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]); // dropped
    golden(&message, &bytes);
}

#[test]
fn golden_cancel() {
    #[rustfmt::skip]
    let bytes = [
        14, 0, 0, 0,                        // variant Cancel
        2, 0, 0, 0, 0, 0, 0, 0,             // job_ids.len()
        7, 0, 0, 0, 0, 0, 0, 0,
        0x09, 0x01, 0, 0, 0, 0, 0, 0,
    ];
    golden(
        &Message::Cancel {
            job_ids: vec![7, 0x0109],
        },
        &bytes,
    );
}

#[test]
fn golden_timed_out_reply() {
    let message = Message::Results {
        results: vec![JobReply {
            job_id: 4,
            outcome: Outcome::TimedOut(Duration::from_millis(300)),
            run_time: Duration::from_millis(300),
        }],
    };
    #[rustfmt::skip]
    let bytes = [
        6, 0, 0, 0,                         // variant Results
        1, 0, 0, 0, 0, 0, 0, 0,             // results.len()
        4, 0, 0, 0, 0, 0, 0, 0,             // job_id
        4, 0, 0, 0,                         // Outcome::TimedOut
        0, 0, 0, 0, 0, 0, 0, 0,             //   seconds
        0x00, 0xA3, 0xE1, 0x11,             //   nanoseconds (300 ms)
        0, 0, 0, 0, 0, 0, 0, 0,             // run_time: seconds
        0x00, 0xA3, 0xE1, 0x11,             // run_time: nanoseconds
    ];
    golden(&message, &bytes);
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
    assert!(decode::<Message>(&[15, 0, 0, 0]).is_err());
    // An UploadChunk claiming 2^60 bytes.
    let mut bomb = vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    bomb.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(pp_runtime::codec::decode_with_limit::<Message>(&bomb, 1 << 20).is_err());
}
