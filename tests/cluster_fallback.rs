//! Cluster mode without a usable node: configuration errors are clear, and jobs never wait
//! forever. With local workers they run locally at once; with none (`ncpus(0)`, PP's
//! `ncpus=0`) they run locally after the documented wait.

use pp::{Error, Server};

#[pp::parallel]
fn triple(x: u64) -> u64 {
    3 * x
}

/// A loopback port with nothing listening: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

#[test]
fn cluster_mode_without_a_secret_is_a_clear_error() {
    let err = Server::builder()
        .ppservers(["127.0.0.1:60000"])
        .build()
        .expect_err("no secret");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("PP_SECRET"), "{err}");
}

#[test]
fn an_invalid_node_address_is_a_clear_error() {
    let err = Server::builder()
        .ppservers(["127.0.0.1:notaport"])
        .secret("s3cret")
        .build()
        .expect_err("bad address");
    assert!(err.to_string().contains("127.0.0.1:notaport"), "{err}");
}

#[test]
fn with_no_local_workers_jobs_fall_back_to_local_when_no_node_answers() {
    let node = format!("127.0.0.1:{}", closed_port());
    let server = Server::builder()
        .ppservers([node.as_str()])
        .secret("s3cret")
        .ncpus(0)
        .build()
        .expect("a node that is down is not an error");
    assert_eq!(server.ncpus(), 0);
    let jobs: Vec<_> = (0..20).map(|i| server.submit(triple, (i,))).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.result(), Ok(3 * i as u64));
    }
    assert!(
        server.ncpus() > 0,
        "local workers were started as the fallback"
    );
    let nodes = server.active_nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].address, node);
    assert!(!nodes[0].connected);
    let stats = server.stats();
    let row = |name: &str| {
        stats
            .executors
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.jobs)
    };
    assert_eq!(row("local"), Some(20));
    assert_eq!(row(&node), Some(0), "the node has its own row:\n{stats}");
}

#[test]
fn with_local_workers_a_down_node_does_not_delay_anything() {
    let node = format!("127.0.0.1:{}", closed_port());
    let server = Server::builder()
        .ppservers([node])
        .secret("s3cret")
        .ncpus(1)
        .build()
        .unwrap();
    assert_eq!(server.submit(triple, (5,)).result(), Ok(15));
    assert_eq!(server.ncpus(), 1, "no fallback needed");
}
