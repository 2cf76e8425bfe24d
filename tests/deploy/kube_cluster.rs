//! The Kubernetes deployment played out without Kubernetes: three "pods" are network
//! namespaces (`support/netns.rs`), each running ppserver with the StatefulSet's command
//! line and environment (port 60000 of its own address, as in a pod), and the client Job
//! runs in a fourth with exactly the Job's environment, `PP_SERVERS=dns:` included; its
//! hosts file (`/etc/netns/NS/hosts`) maps the headless Service's name to the three
//! addresses, as cluster DNS would. The client must use every node.
//!
//! Needs root and `ip` (iproute2): skips with a line on stderr otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::kubernetes::{checked, NodePod};
use crate::manifests::documents;
use crate::netns::Lab;
use crate::node::{flag_value, relocate, relocate_path, write_secret};
use crate::support::role::{as_role, run};
use crate::support::{as_ppserver, temp_dir, Node, WAIT};

/// The variable that tells the client role which rows it must see used.
const NODES_ENV: &str = "PP_TEST_NODES";

/// A node pod: ppserver in a lab host, with the pod's volumes in a directory of its own
/// (removed on drop): a [`Node`] named by its lab address.
fn pod_node(lab: &Lab, host: &str, pod: &NodePod) -> Node {
    let root = temp_dir("pod");
    let moves = pod.volumes_in(&root);
    write_secret(relocate_path(&pod.secret_file, &moves).as_ref(), 0o400);
    let port: u16 = flag_value(&pod.args, "--port")
        .and_then(|p| p.parse().ok())
        .expect("--port");
    let mut command = lab.command(host, env!("CARGO_BIN_EXE_ppserver"));
    as_ppserver(&mut command)
        .args(relocate(&pod.args, &moves))
        .envs(pod.env.iter().map(|(k, v)| (k, relocate_path(v, &moves))));
    Node::spawn_at(&mut command, (lab.ip(host), port).into(), root)
}

#[test]
fn the_client_job_uses_every_node_pod_through_the_headless_service_name() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}; the Kubernetes play-through needs root and iproute2");
        return;
    }
    let Some(docs) = documents() else { return };
    let (pod, client_env) = checked(&docs);
    let servers = client_env.get("PP_SERVERS").expect("PP_SERVERS");
    let (name, port) = servers
        .strip_prefix("dns:")
        .and_then(|rest| rest.rsplit_once(':'))
        .expect("dns:NAME:PORT");

    let hosts = ["client", "pod0", "pod1", "pod2"];
    let lab = Lab::new("k8s", &hosts);
    let nodes: Vec<Node> = hosts[1..]
        .iter()
        .map(|host| pod_node(&lab, host, &pod))
        .collect();
    let etc = lab.etc("client");
    let mut hosts_file = String::from("127.0.0.1 localhost\n");
    for host in &hosts[1..] {
        hosts_file.push_str(&format!("{} {name}\n", lab.ip(host)));
    }
    etc.write("hosts", &hosts_file);

    // The client as the Job runs it: its environment, its secret file (mode 0440, as a
    // Secret volume with fsGroup makes it).
    let secret_dir = temp_dir("job-secret");
    let secret = PathBuf::from(client_env.get("PP_SECRET_FILE").expect("PP_SECRET_FILE"));
    let moves = [(
        secret.parent().expect("a directory").display().to_string(),
        secret_dir.clone(),
    )];
    let secret = relocate_path(&secret.display().to_string(), &moves);
    write_secret(secret.as_ref(), 0o440);
    let rows: Vec<String> = hosts[1..]
        .iter()
        .map(|host| format!("{}:{port}", lab.ip(host)))
        .collect();
    let mut command = lab.command("client", std::env::current_exe().unwrap().to_str().unwrap());
    as_role(&mut command, "kube_cluster::client_job_role")
        .envs(&client_env)
        .env("PP_SECRET_FILE", &secret)
        .env(NODES_ENV, rows.join(","));
    let ran = run(&mut command);
    let _ = std::fs::remove_dir_all(&secret_dir);
    let logs: Vec<String> = nodes.iter().map(|n| n.log.text()).collect();
    assert!(
        ran.status.success() && ran.stdout.contains("ROLE OK"),
        "the client Job failed: {}\nstdout:\n{}\nstderr:\n{}\nnodes:\n{}",
        ran.status,
        ran.stdout,
        ran.stderr,
        logs.join("\n---\n")
    );
    eprintln!("{}", ran.stdout.trim());
}

/// The client Job's program: a server from the environment alone (`Server::new`, as any
/// pp program), which must run jobs on every node the Service's name stands for.
#[test]
#[ignore = "a role, run by the_client_job_uses_every_node_pod_through_the_headless_service_name"]
fn client_job_role() {
    let Ok(rows) = std::env::var(NODES_ENV) else {
        eprintln!("not run as a role: nothing to do");
        return;
    };
    let server = pp::Server::new().expect("the client starts from its environment");
    let deadline = Instant::now() + WAIT;
    let mut jobs: BTreeMap<String, u64> = BTreeMap::new();
    while !rows
        .split(',')
        .all(|row| jobs.get(row).is_some_and(|&n| n > 0))
    {
        assert!(
            Instant::now() < deadline,
            "not every node ran jobs in time: {jobs:?}, nodes {:?}",
            server.active_nodes()
        );
        squares(&server);
        jobs = server
            .stats()
            .executors
            .iter()
            .map(|e| (e.name.clone(), e.jobs))
            .collect();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Jobs that found no usable node in their first 2 s (uploads of this large test binary
    // take a while) ran locally, as PP_NCPUS=0 allows; with the nodes up, none does.
    let local = jobs.get("local").copied().unwrap_or(0);
    squares(&server);
    let stats = server.stats();
    let now = stats
        .executors
        .iter()
        .find(|e| e.name == "local")
        .map_or(0, |e| e.jobs);
    assert_eq!(
        now, local,
        "PP_NCPUS=0: jobs ran locally with the nodes up\n{stats}"
    );
    println!("jobs per node: {jobs:?}");
    println!("ROLE OK");
}

/// Runs a batch of 30 jobs on `server` and checks their results.
fn squares(server: &pp::Server) {
    let batch: Vec<_> = (0..30u64)
        .map(|x| server.submit(crate::square, (x,)))
        .collect();
    for (x, job) in (0..30u64).zip(batch) {
        assert_eq!(job.result(), Ok(x * x));
    }
}
