//! `ppserver` as a real process on 127.0.0.1, driven by a raw protocol client: it refuses
//! to start without a secret, rejects a wrong secret and keeps serving, receives this very
//! test binary, runs its jobs in worker processes (results, panics, a crashing worker),
//! caches the program for the next session, refuses what it cannot run, and leaves no
//! worker behind when a client leaves or the node stops.
//!
//! The node starts this test binary as its workers: the worker hook turns those processes
//! into workers before the test harness would run.

mod support;

use pp::codec::{decode, encode};
use pp_net::{JobRequest, Message, NetError, Outcome};
use support::raw::{
    block_on, expect_lane_ended, expect_refused, job, lane_opening, program, program_bytes, Client,
};
use support::{ppserver_command, wait_bounded, Node, SECRET};

/// Keeps the worker hook in this binary, whatever else the linker drops.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

#[pp::parallel]
fn square(x: u64) -> u64 {
    x * x
}

#[pp::parallel]
fn boom(message: String) -> u64 {
    panic!("{message}")
}

#[pp::parallel]
fn total(bytes: Vec<u8>) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// FNV-1a of the bytes and their length: any byte out of place changes it.
#[pp::parallel]
fn fingerprint(bytes: Vec<u8>) -> (u64, u64) {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash, bytes.len() as u64)
}

#[pp::parallel]
fn die() -> u64 {
    std::process::abort()
}

fn square_job(job_id: u64, x: u64) -> JobRequest {
    job(job_id, square, encode(&(x,)).unwrap())
}

#[test]
fn without_a_secret_ppserver_exits_2_and_says_how_to_give_one() {
    let mut child = ppserver_command(&["--port", "0", "--interface", "127.0.0.1"])
        .spawn()
        .expect("start ppserver");
    let log = support::collect_stderr(&mut child);
    let status = wait_bounded(&mut child);
    assert_eq!(status.code(), Some(2), "{}", log.text());
    log.wait_for(
        "ppserver: no secret given: pass --secret, --secret-file or set PP_SECRET \
         (every client needs the same secret)",
    );
}

#[test]
fn a_wrong_secret_fails_authentication_is_logged_and_the_node_keeps_serving() {
    let node = Node::start(1, &[]);
    let error = block_on(Client::connect(node.addr, "not the secret"))
        .err()
        .expect("a wrong secret must not authenticate");
    assert!(
        matches!(error, NetError::AuthenticationFailed { .. }),
        "{error}"
    );
    node.log.wait_for("authentication failed from 127.0.0.1:");

    block_on(async {
        let mut client = Client::connect(node.addr, SECRET)
            .await
            .expect("right secret");
        client.start_session().await;
        let outcomes = client.run(vec![square_job(1, 12)]).await;
        assert_eq!(outcomes[&1], Outcome::Ok(encode(&144u64).unwrap()));
    });
}

#[cfg(target_os = "linux")]
#[test]
fn a_session_runs_jobs_survives_panics_and_crashes_and_the_next_one_uploads_nothing() {
    let node = Node::start(2, &[]);
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        let (uploaded, workers) = client.start_session().await;
        assert!(uploaded, "a fresh node needs the program");
        assert_eq!(workers, 2);
        node.wait_children(2);

        let jobs = (1..=20).map(|x| square_job(x, x)).collect();
        let outcomes = client.run(jobs).await;
        for x in 1..=20u64 {
            match &outcomes[&x] {
                Outcome::Ok(bytes) => assert_eq!(decode::<u64>(bytes).unwrap(), x * x),
                other => panic!("job {x}: {other:?}"),
            }
        }

        // A task this program does not have fails by name; a large argument travels.
        let missing = JobRequest {
            job_id: 50,
            task: "nope::missing".into(),
            fingerprint: 1,
            timeout: None,
            args: Vec::new(),
        };
        let large = job(51, total, encode(&(vec![1u8; 4 << 20],)).unwrap());
        let outcomes = client.run(vec![missing, large]).await;
        match &outcomes[&50] {
            Outcome::Failed(reason) => assert!(reason.contains("nope::missing"), "{reason}"),
            other => panic!("an unknown task must fail by name: {other:?}"),
        }
        assert_eq!(outcomes[&51], Outcome::Ok(encode(&(4u64 << 20)).unwrap()));

        let outcomes = client
            .run(vec![job(
                100,
                boom,
                encode(&("remote kaboom".to_owned(),)).unwrap(),
            )])
            .await;
        assert_eq!(outcomes[&100], Outcome::Panicked("remote kaboom".into()));

        let outcomes = client.run(vec![job(200, die, encode(&()).unwrap())]).await;
        match &outcomes[&200] {
            Outcome::WorkerCrashed(report) => {
                assert!(report.contains("signal 6 (SIGABRT)"), "{report}");
                assert!(report.contains("worker pid "), "{report}");
            }
            other => panic!("an aborting job must crash its worker: {other:?}"),
        }
        node.log.wait_for("starting a new worker");

        // The node replaced the worker: both workers still run jobs.
        let outcomes = client
            .run((300..310).map(|x| square_job(x, 3)).collect())
            .await;
        assert!(outcomes
            .values()
            .all(|o| *o == Outcome::Ok(encode(&9u64).unwrap())));
        node.wait_children(2);

        // Heartbeats are answered.
        client.send(&Message::Heartbeat { seq: 77 }).await;
        assert_eq!(client.recv().await, Message::HeartbeatAck { seq: 77 });
    });
    // The client is gone: so are its workers.
    node.wait_children(0);

    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        let (uploaded, _) = client.start_session().await;
        assert!(
            !uploaded,
            "the second session of the same binary uploads nothing"
        );
        let outcomes = client.run(vec![square_job(1, 5)]).await;
        assert_eq!(outcomes[&1], Outcome::Ok(encode(&25u64).unwrap()));
    });
    node.log.wait_for("found in the cache (cache hit)");
    node.wait_children(0);
    node.signal("USR1");
    let stats = node.log.wait_for("statistics: ");
    for counter in [
        "connections=2",
        "uploads=1",
        "cache_hits=1",
        "worker_crashes=1",
        "jobs=34",
    ] {
        assert!(stats.contains(counter), "{counter} in {stats}");
    }
}

/// Arguments of `len` bytes that differ with `seed` and with every position.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

#[test]
fn large_arguments_arrive_intact_after_one_another_beside_small_jobs_and_a_crash() {
    // One worker, so that every job meets the same shared argument area.
    let node = Node::start(1, &[]);
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        client.start_session().await;
        let sizes = [(3 << 20) + 17, 2 << 20, 5 << 20, (1 << 20) + 1, 1 << 20];
        let large = |id: u64, len: usize| {
            let bytes = pattern(len, id as u8);
            let expected = fingerprint(bytes.clone());
            (job(id, fingerprint, encode(&(bytes,)).unwrap()), expected)
        };
        let check = |outcomes: &std::collections::HashMap<u64, Outcome>, id, expected| {
            assert_eq!(
                outcomes[&id],
                Outcome::Ok(encode(&expected).unwrap()),
                "job {id}"
            );
        };
        // Shrinking sizes after larger ones: a stale byte past the end would show.
        for round in 0..2u64 {
            let mut jobs = Vec::new();
            let mut expected = Vec::new();
            for (i, &len) in sizes.iter().enumerate() {
                let id = round * 100 + i as u64;
                let (request, sum) = large(id, len);
                jobs.push(request);
                expected.push((id, sum));
                jobs.push(square_job(id + 50, id));
            }
            let outcomes = client.run(jobs).await;
            for (id, sum) in expected {
                check(&outcomes, id, sum);
                assert_eq!(
                    outcomes[&(id + 50)],
                    Outcome::Ok(encode(&(id * id)).unwrap())
                );
            }
        }
        // Two large messages back to back: the second arrives while the first one's jobs
        // hold the session's area, so its arguments take the other ways to the worker.
        let mut expected = Vec::new();
        for (id, len) in [(200u64, 4 << 20), (201, 3 << 20)] {
            let (request, sum) = large(id, len);
            expected.push((id, sum));
            client
                .send(&Message::Submit {
                    jobs: vec![request],
                })
                .await;
        }
        let mut outcomes = std::collections::HashMap::new();
        while outcomes.len() < expected.len() {
            if let Message::Results { results } = client.recv().await {
                outcomes.extend(results.into_iter().map(|r| (r.job_id, r.outcome)));
            }
        }
        for (id, sum) in expected {
            check(&outcomes, id, sum);
        }
        // Tiny jobs make the node write many jobs at once: large ones among them still
        // take turns in the area, and a crash behind one leaves the next intact.
        client
            .run((0..200).map(|x| square_job(1000 + x, 2)).collect())
            .await;
        let (first, first_sum) = large(300, 3 << 20);
        let (second, second_sum) = large(301, 2 << 20);
        let outcomes = client
            .run(vec![
                first,
                job(302, die, encode(&()).unwrap()),
                second,
                square_job(303, 3),
            ])
            .await;
        check(&outcomes, 300, first_sum);
        assert!(
            matches!(outcomes[&302], Outcome::WorkerCrashed(_)),
            "{:?}",
            outcomes[&302]
        );
        check(&outcomes, 301, second_sum);
        assert_eq!(outcomes[&303], Outcome::Ok(encode(&9u64).unwrap()));
    });
    node.signal("USR1");
    let stats = node.log.wait_for("statistics: ");
    let shared: u64 = stats
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("shared_args="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no shared_args in {stats}"));
    // Which large job finds the area free depends on how many the node writes at once;
    // on Linux some do.
    if cfg!(target_os = "linux") {
        assert!(shared >= 1, "{stats}");
    } else {
        assert_eq!(shared, 0, "{stats}");
    }
}

#[test]
fn a_crash_among_pipelined_tiny_jobs_fails_only_the_job_that_crashed() {
    let node = Node::start(1, &[]);
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        client.start_session().await;
        // Tiny jobs teach the node to send several at once to its one worker...
        client
            .run((0..200).map(|x| square_job(x, 2)).collect())
            .await;
        // ...so this batch likely reaches the worker together: the abort in the middle
        // must fail that job alone, and the jobs behind it must still run.
        let mut jobs: Vec<_> = (1000..1010).map(|x| square_job(x, 7)).collect();
        jobs.push(job(2000, die, encode(&()).unwrap()));
        jobs.extend((3000..3010).map(|x| square_job(x, 7)));
        let outcomes = client.run(jobs).await;
        for (id, outcome) in &outcomes {
            if *id == 2000 {
                assert!(matches!(outcome, Outcome::WorkerCrashed(_)), "{outcome:?}");
            } else {
                assert_eq!(*outcome, Outcome::Ok(encode(&49u64).unwrap()), "job {id}");
            }
        }
    });
}

#[test]
fn refusals_are_clear_and_the_node_keeps_serving() {
    let node = Node::start(1, &["--max-upload", "1G"]);
    block_on(async {
        // Another platform.
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        let mut hello = Client::hello();
        if let Message::ClientHello { target, .. } = &mut hello {
            *target = "sparc-plan9".into();
        }
        client.send(&hello).await;
        // The node says what it runs and that it runs none of the client's builds.
        match client.recv().await {
            Message::ServerHello {
                platform, build, ..
            } => {
                assert_eq!(build, None);
                assert_eq!(platform, pp::Platform::this());
            }
            other => panic!("expected ServerHello, got {other:?}"),
        }

        // An upload whose bytes do not match the announced hash.
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        client.send(&Client::hello_for([7; 32], 4)).await;
        assert!(matches!(
            client.recv().await,
            Message::ServerHello {
                need_upload: true,
                ..
            }
        ));
        client.upload(b"evil").await;
        let reason = expect_refused(client.recv().await);
        assert!(reason.contains("SHA-256"), "{reason}");

        // A program above --max-upload.
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        client
            .send(&Client::hello_for(program().sha256, 2 << 30))
            .await;
        let reason = expect_refused(client.recv().await);
        assert!(reason.contains("--max-upload"), "{reason}");

        // A registry that differs from the program's.
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        let mut hello = Client::hello();
        if let Message::ClientHello {
            registry_fingerprint,
            ..
        } = &mut hello
        {
            *registry_fingerprint ^= 1;
        }
        client.send(&hello).await;
        assert!(matches!(client.recv().await, Message::ServerHello { .. }));
        client.upload(&program_bytes()).await;
        let reason = expect_refused(client.recv().await);
        assert!(reason.contains("task registry differs"), "{reason}");

        // After all that, a correct client is served (from the cache).
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        let (uploaded, _) = client.start_session().await;
        assert!(!uploaded);
        let outcomes = client.run(vec![square_job(9, 4)]).await;
        assert_eq!(outcomes[&9], Outcome::Ok(encode(&16u64).unwrap()));
    });
    // Only the verified program is in the cache: no temporary file was left behind.
    let names: Vec<_> = std::fs::read_dir(&node.cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![program().sha256_hex()]);
    node.log.wait_for("refused client 127.0.0.1:");
}

#[cfg(target_os = "linux")]
#[test]
fn sigterm_stops_the_node_and_its_workers_and_exits_0() {
    let pid_dir = support::temp_dir("pid");
    std::fs::create_dir_all(&pid_dir).unwrap();
    let pid_file = pid_dir.join("ppserver.pid");
    let mut node = Node::start(2, &["--pid-file", pid_file.to_str().unwrap()]);
    let written = std::fs::read_to_string(&pid_file).expect("the pid file is written");
    assert_eq!(written.trim(), node.pid().to_string());
    let workers = block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        client.start_session().await;
        let workers = node.wait_children(2);
        node.signal("TERM");
        // The node closes the connection as it stops.
        let end = client.reader.recv().await;
        assert!(end.is_err(), "{end:?}");
        workers
    });
    let status = node.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", node.log.text());
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    std::fs::remove_dir_all(&pid_dir).unwrap();
    for pid in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} outlived the node"
        );
    }
}

#[test]
fn the_idle_timeout_ends_a_node_without_clients() {
    let mut node = Node::start(1, &["--timeout", "0.3"]);
    let status = node.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", node.log.text());
    node.log.wait_for("idle timeout");
}

/// Reads what the node sends on `stream` until it closes it (bounded by `support::WAIT`).
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    tokio::time::timeout(support::WAIT, stream.read_to_end(&mut received))
        .await
        .expect("the node closes the connection in time")
        .expect("read");
    received
}

#[test]
fn a_lane_whose_client_never_finishes_its_handshake_ends_and_its_offer_is_used_once() {
    let node = Node::start(1, &["--handshake-timeout", "1"]);
    block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut client = Client::connect(node.addr, SECRET).await.unwrap();
        client.start_session().await;
        client.send(&Message::LaneRequest).await;
        let Message::LaneOffer { lane, key } = client.recv().await else {
            panic!("expected a lane offer");
        };
        let opening = lane_opening(&key);
        let mut silent = tokio::net::TcpStream::connect(node.addr).await.unwrap();
        silent.write_all(&opening).await.unwrap();
        // The lane's worker answers with its preamble, waits 1 s for the handshake that
        // never comes, and ends; the session is told.
        let answer = read_to_close(&mut silent).await;
        assert_eq!(
            answer,
            pp_net::preamble::ours(),
            "the worker's preamble only"
        );
        let (crashed, reason) = expect_lane_ended(&mut client, lane).await;
        assert!(
            !crashed,
            "a handshake its client never finished is no worker crash: {reason}"
        );
        assert!(
            reason.contains("did not complete the lane's handshake"),
            "{reason}"
        );
        node.log.wait_for("lane handshake");
        // The offer was taken: the same opening again finds nothing.
        let mut again = tokio::net::TcpStream::connect(node.addr).await.unwrap();
        again.write_all(&opening).await.unwrap();
        assert!(read_to_close(&mut again).await.is_empty(), "no answer");
        node.log.wait_for("names no open lane offer");
        // The session itself goes on.
        let outcomes = client.run(vec![square_job(1, 6)]).await;
        assert_eq!(outcomes[&1], Outcome::Ok(encode(&36u64).unwrap()));
    });
    let stats = node.statistics();
    for counter in [
        "lanes=1",
        "worker_crashes=0",
        "auth_failures=0",
        "incomplete_handshakes=1",
        "jobs=1",
    ] {
        assert!(stats.contains(counter), "{counter} in {stats}");
    }
}
