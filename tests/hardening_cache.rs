//! The node's program cache against a hostile neighbour and a greedy client (issue 20,
//! rows 4 and 6; see SECURITY.md): a program planted in the cache directory is checked
//! (SHA-256, owner, mode) before it is run, and purged when it fails; a genuine cached
//! program is hashed once per node start, not once per session; uploads in progress
//! reserve their announced size against `--max-cache`.
//!
//! Each test starts its own `ppserver` on 127.0.0.1 with a cache directory prepared
//! beforehand. The node starts this test binary as its workers (the worker hook turns those
//! processes into workers before the harness would run).

#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use pp::codec::encode;
use pp_net::{Message, Outcome};
use sha2::{Digest, Sha256};
use support::raw::{block_on, expect_refused, job_with, program, program_bytes, Client};
use support::{temp_dir, Node, SECRET, WAIT};

/// Keeps the worker hook in this binary, whatever else the linker drops.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

#[pp::parallel]
fn square(x: u64) -> u64 {
    x * x
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(hash: &[u8; 32]) -> String {
    pp_net::program::hex(hash)
}

/// Writes `bytes` to `dir/<hex of hash>` with `mode`; returns the path.
fn plant(dir: &Path, hash: &[u8; 32], bytes: &[u8], mode: u32) -> PathBuf {
    let path = dir.join(hex(hash));
    fs::write(&path, bytes).expect("plant a file");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// Hello for (`hash`, `size`): whether the node asks for an upload, or its refusal.
async fn hello(client: &mut Client, hash: [u8; 32], size: u64) -> Result<bool, String> {
    client.send(&Client::hello_for(hash, size)).await;
    match client.recv().await {
        Message::ServerHello { need_upload, .. } => Ok(need_upload),
        Message::Refused { reason } => Err(reason),
        other => panic!("expected ServerHello or Refused, got {other:?}"),
    }
}

/// A session of this test binary: hello, upload if asked, `Ready`, one job. Returns
/// whether the node asked for the upload, or the node's refusal.
fn try_session_of_this_binary(addr: SocketAddr) -> Result<bool, String> {
    block_on(async {
        let mut client = Client::connect(addr, SECRET).await.expect("connect");
        let need_upload = hello(&mut client, program().sha256, program().size).await?;
        if need_upload {
            client.upload(&program_bytes()).await;
        }
        match client.recv().await {
            Message::Ready { .. } => {}
            Message::Refused { reason } => return Err(reason),
            other => panic!("expected Ready, got {other:?}"),
        }
        let outcomes = client.run(vec![job_with(1, square, &(12u64,))]).await;
        assert_eq!(outcomes[&1], Outcome::Ok(encode(&144u64).unwrap()));
        Ok(need_upload)
    })
}

/// As [`try_session_of_this_binary`], which must succeed.
fn session_of_this_binary(addr: SocketAddr) -> bool {
    try_session_of_this_binary(addr).unwrap_or_else(|reason| panic!("refused: {reason}"))
}

/// Announces `bytes` as a program; returns whether the node asked for them (uploading
/// them if so, after which the node refuses as they are no executable).
fn offer(addr: SocketAddr, bytes: &[u8]) -> bool {
    block_on(async {
        let mut client = Client::connect(addr, SECRET).await.expect("connect");
        let need = hello(&mut client, sha256(bytes), bytes.len() as u64)
            .await
            .expect("the node accepts the program's size");
        if need {
            client.upload(bytes).await;
        }
        let reason = expect_refused(client.recv().await);
        assert!(reason.contains("cannot run the program"), "{reason}");
        need
    })
}

/// Row 4: files planted under a program's name (wrong content, another owner, writable by
/// others) in a cache directory of mode 0777 are purged and uploaded afresh, never run;
/// the repaired directory mode is reported.
#[test]
fn planted_programs_are_purged_and_uploaded_instead_of_run() {
    let dir = temp_dir("planted-cache");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let marker = dir.with_extension("ran");
    let _ = fs::remove_file(&marker);

    // Under this binary's name: a script that leaves a marker if the node runs it.
    let script = format!("#!/bin/sh\ntouch '{}'\n", marker.display());
    plant(&dir, &program().sha256, script.as_bytes(), 0o700);
    // Genuine content, but owned by another user (the tests run as root on CI; elsewhere
    // that part is skipped, as only root can give a file away).
    let foreign = b"genuine bytes of a program owned by somebody else\n".to_vec();
    let foreign_path = plant(&dir, &sha256(&foreign), &foreign, 0o700);
    let foreign_owned = std::os::unix::fs::chown(&foreign_path, Some(65534), Some(65534)).is_ok();
    if !foreign_owned {
        eprintln!("not root: the foreign-owner case is skipped");
        fs::remove_file(&foreign_path).unwrap();
    }
    // Genuine content, owned by the node's user, but writable by everyone.
    let writable = b"genuine bytes of a program anyone may change\n".to_vec();
    plant(&dir, &sha256(&writable), &writable, 0o777);

    let node = Node::start_in(dir.clone(), 0, 1, &[]);
    let session = try_session_of_this_binary(node.addr);
    assert!(
        !marker.exists(),
        "the planted script was run; the session: {session:?}"
    );
    assert_eq!(
        session,
        Ok(true),
        "a planted file under this binary's SHA-256 must not be a cache hit"
    );
    let line = node.log.wait_for("the cache directory");
    assert!(
        line.contains("WARN") && line.contains("777") && line.contains("0700"),
        "the repaired mode is reported as a warning: {line}"
    );
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let line = node
        .log
        .wait_for(&format!("purged {}", program().sha256_hex()));
    assert!(line.contains("WARN") && line.contains("SHA-256"), "{line}");
    // What was uploaded is what is cached now.
    assert_eq!(
        sha256(&fs::read(dir.join(program().sha256_hex())).unwrap()),
        program().sha256
    );

    if foreign_owned {
        assert!(
            offer(node.addr, &foreign),
            "a foreign-owned file must not be a cache hit"
        );
        let line = node
            .log
            .wait_for(&format!("purged {}", hex(&sha256(&foreign))));
        assert!(line.contains("belongs to user 65534"), "{line}");
    }
    assert!(
        offer(node.addr, &writable),
        "a world-writable file must not be a cache hit"
    );
    let line = node
        .log
        .wait_for(&format!("purged {}", hex(&sha256(&writable))));
    assert!(line.contains("writable by group or others"), "{line}");

    // The uploaded binary is trusted from now on: a cache hit.
    assert!(!session_of_this_binary(node.addr));
    assert!(!marker.exists());
}

/// Row 4, the cost: a genuine program found in the cache is hashed on its first use after
/// the node starts, not again for each session.
#[test]
fn a_genuine_cached_program_is_verified_once_per_node_start() {
    let dir = temp_dir("genuine-cache");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    plant(&dir, &program().sha256, &program_bytes(), 0o700);
    let node = Node::start_in(dir.clone(), 0, 1, &[]);
    let verified = format!("program {} in the cache verified", program().sha256_hex());
    for session in 0..3 {
        assert!(
            !session_of_this_binary(node.addr),
            "session {session}: the genuine program is a cache hit"
        );
    }
    assert_eq!(
        node.log.count(&verified),
        1,
        "hashed once for three sessions; log:\n{}",
        node.log.text()
    );
    assert!(!node.log.contains("purged"), "{}", node.log.text());
    assert!(
        !node.log.contains("the cache directory"),
        "mode 0700 is fine"
    );
}

/// The bytes in files of `dir`.
fn bytes_on_disk(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Row 6: with `--max-cache 1M`, an announced upload reserves its size before the node
/// accepts it: of four sessions announcing 768 KiB only one is accepted, the others are
/// refused with a reason naming `--max-cache`; a program that cannot fit at all is refused;
/// the reservation goes when the upload ends, and unused programs are evicted to make room.
#[test]
fn uploads_in_progress_reserve_their_size_against_max_cache() {
    const BOUND: u64 = 1 << 20;
    const SIZE: u64 = 768 << 10;
    let dir = temp_dir("reserved-cache");
    let node = Node::start_in(dir.clone(), 0, 1, &["--max-cache", "1M"]);
    block_on(async {
        // Four sessions announce 768 KiB each: one reservation fits in 1 MiB.
        let mut clients = Vec::new();
        for i in 0..4u8 {
            let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
            client.send(&Client::hello_for([10 + i; 32], SIZE)).await;
            clients.push(client);
        }
        let mut accepted = Vec::new();
        for mut client in clients {
            match client.recv().await {
                Message::ServerHello { need_upload, .. } => {
                    assert!(need_upload);
                    accepted.push(client);
                }
                Message::Refused { reason } => {
                    assert!(reason.contains("--max-cache"), "{reason}")
                }
                other => panic!("expected ServerHello or Refused, got {other:?}"),
            }
        }
        assert_eq!(
            accepted.len(),
            1,
            "only one 768 KiB upload fits in --max-cache 1M at a time"
        );
        // The accepted one sends all but the last bytes, and the cache stays in its bound.
        let mut uploading = accepted.pop().unwrap();
        let sent = SIZE - 1024;
        uploading
            .send(&Message::UploadChunk {
                offset: 0,
                bytes: vec![0; sent as usize],
            })
            .await;
        let deadline = Instant::now() + WAIT;
        while bytes_on_disk(&node.cache_dir) < sent {
            assert!(Instant::now() < deadline, "the chunk is not on disk");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(bytes_on_disk(&node.cache_dir) <= BOUND);
        // Then it breaks the protocol, which ends its upload.
        uploading.send(&Message::Heartbeat { seq: 1 }).await;
        let reason = expect_refused(uploading.recv().await);
        assert!(reason.contains("expected UploadChunk"), "{reason}");
    });

    // The failed upload gave its reservation back: a real program of 768 KiB is accepted
    // (within the bound on every wait), uploaded, and stays in the cache unused.
    let first: Vec<u8> = b"not a program\n".repeat(SIZE as usize / 14);
    let deadline = Instant::now() + WAIT;
    loop {
        let accepted = block_on(async {
            let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
            match hello(&mut client, sha256(&first), first.len() as u64).await {
                Ok(need) => {
                    assert!(need);
                    client.upload(&first).await;
                    let reason = expect_refused(client.recv().await);
                    assert!(reason.contains("cannot run the program"), "{reason}");
                    true
                }
                Err(reason) => {
                    assert!(reason.contains("--max-cache"), "{reason}");
                    false
                }
            }
        });
        if accepted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reservation of the failed upload was not released within {WAIT:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let first_path = node.cache_dir.join(hex(&sha256(&first)));
    assert!(first_path.exists(), "the uploaded program is cached");

    // Another 768 KiB program: the unused one is evicted to make room.
    block_on(async {
        let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
        let need = hello(&mut client, [20; 32], SIZE)
            .await
            .expect("room is made by evicting the unused program");
        assert!(need);
        assert!(!first_path.exists(), "the unused program was evicted");

        // Larger than the whole cache: refused before any byte is sent.
        let mut client = Client::connect(node.addr, SECRET).await.expect("connect");
        let reason = hello(&mut client, [1; 32], 2 * BOUND)
            .await
            .expect_err("a program larger than --max-cache is refused");
        assert!(reason.contains("--max-cache"), "{reason}");
    });
}
