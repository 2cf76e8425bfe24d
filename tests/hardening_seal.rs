//! Issue 20, row 3: a worker cannot resize the node's shared argument areas. A worker runs
//! the client's code; if it could shrink a memory file the node has mapped, the node's next
//! write there would die of SIGBUS and end every client's session. The areas are sealed at
//! their size (see pp-net's `area` module and SECURITY.md), so the attempt fails, the node
//! lives, and large jobs go on through the areas.

#![cfg(target_os = "linux")]

mod support;

use support::{client, jobs_of, Node};

/// Keeps the worker hook in this binary, whatever else the linker drops.
#[used]
static KEEP_WORKER_HOOK: &extern "C" fn() = &pp_net::worker::WORKER_HOOK;

/// In a node's worker: finds every shared argument area this process holds, opens each
/// again for writing (as a worker running as root can), and tries to grow it to `grow_to`
/// bytes and then shrink it to nothing. Returns the areas found and the resizes that worked.
#[pp::parallel]
fn resize_areas(grow_to: u64) -> (u32, u32) {
    let mut found = 0;
    let mut resized = 0;
    for entry in std::fs::read_dir("/proc/self/fd").expect("list descriptors") {
        let path = entry.expect("a descriptor").path();
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        if !target.to_string_lossy().contains("memfd:pp-worker-args") {
            continue;
        }
        found += 1;
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .or_else(|_| std::fs::File::open(&path))
            .expect("open the area again");
        // Grown first, then shrunk to nothing: the shrink is what would kill the node.
        for len in [grow_to, 0] {
            if file.set_len(len).is_ok() {
                resized += 1;
            }
        }
    }
    (found, resized)
}

#[pp::parallel]
fn total(bytes: Vec<u8>) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

#[test]
fn a_worker_that_tries_to_resize_the_shared_areas_fails_and_the_node_lives_on() {
    let node = Node::start(1, &[]);
    // No lanes: every job goes to the session's one worker, which holds both areas.
    let server = client(&[&node], |builder| builder.lanes(false));
    // A large job first, so that the areas have been used.
    let bytes = vec![1u8; 3 << 20];
    assert_eq!(server.submit(total, (bytes.clone(),)).result(), Ok(3 << 20));

    let (found, resized) = server
        .submit(resize_areas, (1 << 40,))
        .result()
        .expect("the attempt runs");
    assert_eq!(found, 2, "the worker holds its own area and the session's");
    assert_eq!(resized, 0, "neither area could be shrunk or grown");

    // Large jobs go on through the areas; the node is alive and ran them all.
    for _ in 0..3 {
        assert_eq!(server.submit(total, (bytes.clone(),)).result(), Ok(3 << 20));
    }
    assert_eq!(
        jobs_of(&server, &node.name()),
        5,
        "every job ran on the node"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{}", node.pid())).exists(),
        "the node process is alive"
    );
}
