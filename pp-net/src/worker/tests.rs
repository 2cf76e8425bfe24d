//! Tests of the pipe protocol's bytes and of the worker loop on buffers.

use super::*;
use crate::{JobOutput, JobReply, JobRequest, Outcome};
use pp_runtime::codec;
use pp_runtime::registry::registry;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

fn golden<T>(value: &T, bytes: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(
        codec::encode(value).unwrap(),
        bytes,
        "encoding of {value:?} drifted"
    );
    assert_eq!(&codec::decode::<T>(bytes).unwrap(), value);
}

#[test]
fn golden_hello() {
    let hello = WorkerHello {
        protocol: 1,
        registry_fingerprint: 0x0102,
        tasks: 3,
        pid: 0x0A0B,
    };
    #[rustfmt::skip]
    golden(&hello, &[
        1, 0,                           // protocol
        2, 1, 0, 0, 0, 0, 0, 0,         // registry_fingerprint
        3, 0, 0, 0,                     // tasks
        0x0B, 0x0A, 0, 0,               // pid
    ]);
}

#[test]
fn golden_job() {
    let job = WorkerInput::Job(JobRequest {
        job_id: 7,
        task: "m::f".into(),
        fingerprint: 0xAABB,
        timeout: Some(Duration::new(3, 4)),
        args: vec![5, 6],
    });
    #[rustfmt::skip]
    golden(&job, &[
        0, 0, 0, 0,                     // Job
        7, 0, 0, 0, 0, 0, 0, 0,         // job_id
        4, 0, 0, 0, 0, 0, 0, 0,         // task.len()
        b'm', b':', b':', b'f',
        0xBB, 0xAA, 0, 0, 0, 0, 0, 0,   // fingerprint
        1,                              // timeout (worker protocol 5): Some
        3, 0, 0, 0, 0, 0, 0, 0,         // seconds
        4, 0, 0, 0,                     // nanoseconds
        2, 0, 0, 0, 0, 0, 0, 0, 5, 6,   // args
    ]);
}

#[test]
fn golden_shared_job() {
    let job = WorkerInput::Shared(SharedJob {
        job_id: 7,
        task: "m::f".into(),
        fingerprint: 0xAABB,
        area: ArgsArea::Session,
        offset: 0x10,
        len: 0x0102,
    });
    #[rustfmt::skip]
    golden(&job, &[
        1, 0, 0, 0,                     // Shared
        7, 0, 0, 0, 0, 0, 0, 0,         // job_id
        4, 0, 0, 0, 0, 0, 0, 0,         // task.len()
        b'm', b':', b':', b'f',
        0xBB, 0xAA, 0, 0, 0, 0, 0, 0,   // fingerprint
        1, 0, 0, 0,                     // area: Session
        0x10, 0, 0, 0, 0, 0, 0, 0,      // offset
        2, 1, 0, 0, 0, 0, 0, 0,         // len
    ]);
    assert_eq!(
        encode_shared_job(
            7,
            "m::f",
            0xAABB,
            ArgsArea::Session,
            0x10,
            0x0102,
            DEFAULT_MAX_FRAME
        )
        .unwrap(),
        codec::encode(&job).unwrap()
    );
}

#[test]
fn a_job_head_and_its_arguments_are_a_worker_job() {
    let job = WorkerInput::Job(JobRequest {
        job_id: 9,
        task: "a::b".into(),
        fingerprint: 3,
        timeout: Some(Duration::from_millis(300)),
        args: vec![1, 2, 3],
    });
    let timeout = Some(Duration::from_millis(300));
    let mut body = encode_job_head(9, "a::b", 3, timeout, &[1, 2, 3], DEFAULT_MAX_FRAME).unwrap();
    body.extend_from_slice(&[1, 2, 3]);
    assert_eq!(body, codec::encode(&job).unwrap());
    assert!(matches!(
        encode_job_head(9, "a::b", 3, None, &[0; 64], 64),
        Err(WorkerError::TooLarge { .. })
    ));
}

#[test]
fn golden_replies() {
    #[rustfmt::skip]
    golden(&JobReply { job_id: 1, outcome: Outcome::Ok(vec![9]), run_time: Duration::new(2, 5) }, &[
        1, 0, 0, 0, 0, 0, 0, 0,         // job_id
        0, 0, 0, 0,                     // Ok
        1, 0, 0, 0, 0, 0, 0, 0, 9,
        2, 0, 0, 0, 0, 0, 0, 0,         // run_time (worker protocol 4): seconds
        5, 0, 0, 0,                     // and nanoseconds
    ]);
    #[rustfmt::skip]
    golden(&JobReply { job_id: 2, outcome: Outcome::Panicked("p".into()), run_time: Duration::ZERO }, &[
        2, 0, 0, 0, 0, 0, 0, 0,
        1, 0, 0, 0,                     // Panicked
        1, 0, 0, 0, 0, 0, 0, 0, b'p',
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    #[rustfmt::skip]
    golden(&JobReply { job_id: 3, outcome: Outcome::Failed("f".into()), run_time: Duration::ZERO }, &[
        3, 0, 0, 0, 0, 0, 0, 0,
        3, 0, 0, 0,                     // Failed (worker protocol 3: after WorkerCrashed)
        1, 0, 0, 0, 0, 0, 0, 0, b'f',
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
}

#[test]
fn golden_frames_from_a_worker() {
    let reply = FromWorker::Reply(JobReply {
        job_id: 1,
        outcome: Outcome::Ok(vec![9]),
        run_time: Duration::new(2, 5),
    });
    #[rustfmt::skip]
    golden(&reply, &[
        0, 0, 0, 0,                     // Reply
        1, 0, 0, 0, 0, 0, 0, 0,         // job_id
        0, 0, 0, 0,                     // Ok
        1, 0, 0, 0, 0, 0, 0, 0, 9,
        2, 0, 0, 0, 0, 0, 0, 0,         // run_time: seconds
        5, 0, 0, 0,                     // and nanoseconds
    ]);
    let output = FromWorker::Output(JobOutput {
        job_id: 1,
        stdout: b"o".to_vec(),
        stderr: Vec::new(),
        dropped: 2,
    });
    #[rustfmt::skip]
    golden(&output, &[
        1, 0, 0, 0,                     // Output
        1, 0, 0, 0, 0, 0, 0, 0,         // job_id
        1, 0, 0, 0, 0, 0, 0, 0, b'o',   // stdout
        0, 0, 0, 0, 0, 0, 0, 0,         // stderr
        2, 0, 0, 0, 0, 0, 0, 0,         // dropped
    ]);
}

/// The reply in a worker's frame body.
fn reply(frame: &[u8]) -> JobReply {
    match codec::decode::<FromWorker>(frame).unwrap() {
        FromWorker::Reply(reply) => reply,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn frame<T: Serialize>(value: &T) -> Vec<u8> {
    let body = encode_body(value, "test", DEFAULT_MAX_FRAME).unwrap();
    let mut out = frame_header(body.len()).to_vec();
    out.extend_from_slice(&body);
    out
}

/// Splits `bytes` into frame bodies.
fn frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let (mut out, mut buffer) = (Vec::new(), Vec::new());
    while let Some(len) =
        read_frame_into(&mut bytes, &mut buffer, "test", DEFAULT_MAX_FRAME).unwrap()
    {
        out.push(buffer[..len].to_vec());
    }
    out
}

#[test]
fn worker_says_hello_then_answers_each_job() {
    let job = WorkerInput::Job(JobRequest {
        job_id: 42,
        task: "no::such_task".into(),
        fingerprint: 1,
        timeout: None,
        args: vec![],
    });
    let input = [frame(&job), frame(&job)].concat();
    let mut output = Vec::new();
    run_worker(&input[..], &mut output, DEFAULT_MAX_FRAME).unwrap();
    let frames = frames(&output);
    assert_eq!(frames.len(), 3);
    let hello: WorkerHello = codec::decode(&frames[0]).unwrap();
    assert_eq!(hello.protocol, WORKER_PROTOCOL);
    assert_eq!(hello.pid, std::process::id());
    assert_eq!(hello.registry_fingerprint, registry().fingerprint());
    let reply = reply(&frames[1]);
    assert_eq!(reply.job_id, 42);
    assert!(
        matches!(&reply.outcome, Outcome::Failed(m) if m.contains("no::such_task")),
        "{reply:?}"
    );
}

#[test]
fn a_shared_job_without_an_area_fails_by_name_and_the_worker_goes_on() {
    let shared = WorkerInput::Shared(SharedJob {
        job_id: 5,
        task: "m::f".into(),
        fingerprint: 1,
        area: ArgsArea::Worker,
        offset: 0,
        len: 8,
    });
    let input = [frame(&shared), frame(&shared)].concat();
    let mut output = Vec::new();
    run_worker(&input[..], &mut output, DEFAULT_MAX_FRAME).unwrap();
    let frames = frames(&output);
    assert_eq!(frames.len(), 3, "hello and two replies");
    let reply = reply(&frames[2]);
    assert_eq!(reply.job_id, 5);
    match &reply.outcome {
        Outcome::Failed(why) => {
            assert!(why.contains("`m::f`") && why.contains("has none"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn a_shared_job_reads_its_arguments_from_the_area() {
    let path = std::env::temp_dir().join(format!("pp-worker-area-{}", std::process::id()));
    std::fs::write(&path, [0xEE; 64]).unwrap();
    let area = area_view::AreaView::new(std::fs::File::open(&path).unwrap());
    let job = |job_id, area, offset, len| {
        frame(&WorkerInput::Shared(SharedJob {
            job_id,
            task: "no::such_task".into(),
            fingerprint: 1,
            area,
            offset,
            len,
        }))
    };
    let input = [
        job(1, ArgsArea::Session, 8, 16),
        job(2, ArgsArea::Session, 60, 16),
        job(3, ArgsArea::Worker, 0, 1),
    ]
    .concat();
    let mut output = Vec::new();
    serve(
        &input[..],
        &mut output,
        DEFAULT_MAX_FRAME,
        &mut [None, Some(area)],
        None,
    )
    .unwrap();
    let frames = frames(&output);
    let reason = |frame: &[u8]| match reply(frame).outcome {
        Outcome::Failed(why) => why,
        other => panic!("{other:?}"),
    };
    // Arguments found: the task is what is missing. Outside the area: said so.
    assert!(
        reason(&frames[1]).contains("no::such_task"),
        "{}",
        reason(&frames[1])
    );
    assert!(
        reason(&frames[2]).contains("beyond the 64 bytes"),
        "{}",
        reason(&frames[2])
    );
    assert!(
        reason(&frames[3]).contains("(Worker)"),
        "{}",
        reason(&frames[3])
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn oversized_and_truncated_frames_are_errors() {
    let mut huge = frame_header(1 << 20).to_vec();
    huge.extend_from_slice(&[0; 16]);
    let err = run_worker(&huge[..], Vec::new(), 1024).unwrap_err();
    assert!(
        matches!(err, WorkerError::TooLarge { len, .. } if len == 1 << 20),
        "{err}"
    );

    let cut = &frame(&7u64)[..6];
    let err = run_worker(cut, Vec::new(), DEFAULT_MAX_FRAME).unwrap_err();
    assert!(matches!(err, WorkerError::Truncated { .. }), "{err}");
}

#[test]
fn without_the_variable_the_hook_returns() {
    // The test harness does not set PP_WORKER, so this must come back.
    assert!(std::env::var_os(WORKER_ENV).is_none());
    enter_worker_mode_if_requested();
    let _ = &WORKER_HOOK;
}
