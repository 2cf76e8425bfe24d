//! Cluster mode from the environment alone: `PP_SERVERS`, `PP_SECRET_FILE` and `PP_NCPUS=0`
//! make `pp::Server::new()`, which the examples call, run every job on the nodes.
//!
//! One test in its own binary, because it sets the process's environment.

mod checks;
mod support;

use support::{temp_dir, wait_until, Node, SECRET};

#[test]
fn the_environment_turns_on_cluster_mode_for_unchanged_code() {
    let (a, b) = (Node::start(1, &[]), Node::start(1, &[]));
    let dir = temp_dir("secret");
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    // Single-threaded at this point: no other test runs in this binary.
    std::env::set_var("PP_SERVERS", format!("{}, {}", a.addr, b.addr));
    std::env::set_var("PP_SECRET_FILE", &secret_file);
    std::env::set_var("PP_NCPUS", "0");

    let server = pp::Server::new().expect("cluster mode from the environment");
    assert_eq!(server.ncpus(), 0);
    let nodes = server.active_nodes();
    assert_eq!(
        nodes.iter().map(|n| n.address.clone()).collect::<Vec<_>>(),
        [a.addr.to_string(), b.addr.to_string()]
    );
    // The environment gives no fallback wait: on a busy machine, jobs submitted before the
    // nodes are ready could fall back to local workers after 2 s.
    wait_until(&server, "both nodes connected", || {
        server.active_nodes().iter().all(|n| n.connected)
    });
    checks::sum_primes(&server);
    checks::callback(&server);
    let stats = server.stats();
    let remote: u64 = stats
        .executors
        .iter()
        .filter(|e| e.name != "local")
        .map(|e| e.jobs)
        .sum();
    assert_eq!(
        remote,
        stats.total_jobs(),
        "every job ran on a node:\n{stats}"
    );

    std::env::set_var("PP_SECRET", SECRET);
    let both = pp::Server::new().expect_err("PP_SECRET and PP_SECRET_FILE together");
    assert!(both.to_string().contains("set only one"), "{both}");
    std::env::remove_var("PP_SECRET");
    std::env::set_var("PP_NCPUS", "many");
    let bad = pp::Server::new().expect_err("PP_NCPUS must be a number");
    assert!(bad.to_string().contains("PP_NCPUS"), "{bad}");
}
