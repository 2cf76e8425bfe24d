//! `dns:NAME[:PORT]` entries, as a Kubernetes headless Service is used: hosts in network
//! namespaces joined by a bridge (see `support/netns.rs`), a `ppserver` on four of them,
//! and a client in another whose hosts file (`/etc/netns/NS/hosts`, which `ip netns exec`
//! puts in place of `/etc/hosts`) maps one name to three node addresses. The client (this
//! test binary run again there, in the role of `dns_client_role`) uses all three; a
//! fourth address written into the file is used after the next resolution; an address
//! removed from it is dropped, and the slow jobs it held finish elsewhere; when it comes
//! back it is used again, in its old row.
//!
//! The refresh period comes from `PP_DNS_REFRESH`; a value that is not seconds above zero
//! is an error naming the variable (no namespace needed for that one).
//!
//! Needs root and `ip` (iproute2); without them the test says why and is skipped.

#[path = "support/netns.rs"]
mod netns;
mod support;

use netns::Lab;
use pp::Server;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::role::{as_role, role_command, run};
use support::{collect_stderr, temp_dir, Log, SECRET, WAIT};

#[pp::parallel]
fn add_one(x: u64) -> u64 {
    x + 1
}

#[pp::parallel]
fn slow_add_one(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(150));
    x + 1
}

/// The name the hosts file maps to the nodes.
const NAME: &str = "ppnodes";

/// The variable that gives the role the hosts file to change.
const HOSTS_ENV: &str = "PP_TEST_HOSTS";

/// A `ppserver` on a lab host, port 60000 of every address; killed and reaped on drop.
struct LabNode {
    child: Child,
    _log: Arc<Log>,
    cache_dir: PathBuf,
}

impl LabNode {
    fn start(lab: &Lab, host: &str) -> LabNode {
        let cache_dir = temp_dir("dns-cache");
        let mut child = lab
            .command(host, env!("CARGO_BIN_EXE_ppserver"))
            .args(["-w", "1", "--cache-dir"])
            .arg(&cache_dir)
            .env("PP_SECRET", SECRET)
            .env_remove("PP_WORKER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ppserver in a namespace");
        let log = collect_stderr(&mut child);
        log.wait_for("ppserver listening on 0.0.0.0:60000");
        LabNode {
            child,
            _log: log,
            cache_dir,
        }
    }
}

impl Drop for LabNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.cache_dir);
    }
}

/// `/etc/netns/NS/`, made for the test and removed on drop.
struct NetnsEtc(PathBuf);

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A hosts file mapping [`NAME`] to each of `ips`.
fn hosts_file(ips: &[String]) -> String {
    let mut text = String::from("127.0.0.1 localhost\n");
    for ip in ips {
        text.push_str(&format!("{ip} {NAME}\n"));
    }
    text
}

#[test]
fn a_dns_entry_uses_every_address_and_follows_the_hosts_file() {
    if let Some(why) = Lab::unavailable() {
        eprintln!("skipped: {why}; the dns: entry test needs root and iproute2");
        return;
    }
    let lab = Lab::new("dns", &["client", "n1", "n2", "n3", "n4"]);
    let nodes: Vec<LabNode> = ["n1", "n2", "n3", "n4"]
        .iter()
        .map(|host| LabNode::start(&lab, host))
        .collect();
    let etc = NetnsEtc(PathBuf::from("/etc/netns").join(lab.ns("client")));
    std::fs::create_dir_all(&etc.0).expect("create /etc/netns/NS");
    let hosts = etc.0.join("hosts");
    let ips: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .map(|h| lab.ip(h).to_string())
        .collect();
    std::fs::write(&hosts, hosts_file(&ips)).expect("write the hosts file");

    let mut command = lab.command("client", std::env::current_exe().unwrap().to_str().unwrap());
    as_role(&mut command, "dns_client_role")
        .env("PP_SECRET", SECRET)
        .env("PP_DNS_REFRESH", "0.3")
        .env(HOSTS_ENV, &hosts)
        .env(
            "PP_TEST_IPS",
            ["n1", "n2", "n3", "n4"]
                .iter()
                .map(|h| lab.ip(h).to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    let ran = run(&mut command);
    assert!(
        ran.status.success() && ran.stdout.contains("ROLE OK"),
        "the client role failed: {}\nstdout:\n{}\nstderr:\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    eprintln!("{}", ran.stdout.trim());
    drop(nodes);
}

#[test]
fn a_bad_pp_dns_refresh_is_an_error_naming_it() {
    for bad in ["soon", "0", "-1"] {
        let ran = run(role_command("bad_dns_refresh_role").env("PP_DNS_REFRESH", bad));
        assert!(
            ran.status.success() && ran.stdout.contains("ROLE OK"),
            "{bad}: {}\nstdout:\n{}\nstderr:\n{}",
            ran.status,
            ran.stdout,
            ran.stderr
        );
        let said = format!("PP_DNS_REFRESH must be seconds above zero (`5`, `0.5`), not `{bad}`");
        assert!(ran.stdout.contains(&said), "{bad}: {}", ran.stdout);
    }
}

/// A client with `PP_DNS_REFRESH` from its environment: prints why it does not start.
#[test]
#[ignore = "a role, run by a_bad_pp_dns_refresh_is_an_error_naming_it"]
fn bad_dns_refresh_role() {
    if std::env::var_os("PP_DNS_REFRESH").is_none() {
        eprintln!("not run as a role: nothing to do");
        return;
    }
    let error = Server::builder()
        .from_env()
        .map(|_| ())
        .expect_err("a bad PP_DNS_REFRESH is an error");
    println!("{error}");
    println!("ROLE OK");
}

/// The client: `PP_SERVERS=dns:ppnodes:60000`, resolved every 300 ms (`PP_DNS_REFRESH`).
#[test]
#[ignore = "a role, run by a_dns_entry_uses_every_address_and_follows_the_hosts_file"]
fn dns_client_role() {
    let (Ok(hosts), Ok(ips)) = (std::env::var(HOSTS_ENV), std::env::var("PP_TEST_IPS")) else {
        eprintln!("not run as a role: nothing to do");
        return;
    };
    let ips: Vec<String> = ips.split(',').map(str::to_owned).collect();
    let name = |i: usize| format!("{}:60000", ips[i]);
    let server = Server::builder()
        .ppservers([format!("dns:{NAME}:60000")])
        .secret(SECRET)
        .ncpus(0)
        .fallback_wait(WAIT)
        .from_env()
        .expect("PP_DNS_REFRESH is seconds")
        .build()
        .expect("the client starts");
    let deadline = Instant::now() + WAIT;

    // All three addresses are nodes, and each runs jobs.
    let three: BTreeSet<String> = (0..3).map(name).collect();
    wait_for(&server, deadline, "the three nodes", || {
        connected(&server) == three
    });
    run_until(&server, deadline, &(0..3).map(name).collect::<Vec<_>>());
    println!("three nodes: {}", rows(&server));

    // A fourth address in the file is a node after the next resolution.
    std::fs::write(&hosts, hosts_file(&ips)).expect("rewrite the hosts file in place");
    let four: BTreeSet<String> = (0..4).map(name).collect();
    wait_for(&server, deadline, "the fourth node", || {
        connected(&server) == four
    });
    run_until(&server, deadline, &[name(3)]);
    println!("four nodes: {}", rows(&server));

    // The first address goes while it holds slow jobs: they finish elsewhere, and it is
    // no longer listed.
    let slow: Vec<_> = (0..12).map(|i| server.submit(slow_add_one, (i,))).collect();
    wait_for(&server, deadline, "a slow job on the first node", || {
        server.stats().active_jobs > 0
    });
    std::fs::write(&hosts, hosts_file(&ips[1..])).expect("rewrite the hosts file in place");
    for (i, job) in (0..12).zip(slow) {
        assert_eq!(job.result(), Ok(i + 1));
    }
    wait_for(&server, deadline, "the first node dropped", || {
        server.active_nodes().iter().all(|n| n.address != name(0))
    });
    let before = jobs_of(&server, &name(0));
    run_until(&server, deadline, &(1..4).map(name).collect::<Vec<_>>());
    assert_eq!(
        jobs_of(&server, &name(0)),
        before,
        "a dropped node gets no job"
    );
    println!("after the removal: {}", rows(&server));

    // The address comes back: the same row serves again.
    std::fs::write(&hosts, hosts_file(&ips)).expect("rewrite the hosts file in place");
    wait_for(&server, deadline, "the first node back", || {
        connected(&server) == four
    });
    run_until(&server, deadline, &[name(0)]);
    let stats = server.stats();
    let rows_of_first = stats.executors.iter().filter(|e| e.name == name(0)).count();
    assert_eq!(rows_of_first, 1, "one row per address: {}", rows(&server));
    println!("back again: {}", rows(&server));
    println!("ROLE OK");
}

fn connected(server: &Server) -> BTreeSet<String> {
    server
        .active_nodes()
        .into_iter()
        .filter(|n| n.connected)
        .map(|n| n.address)
        .collect()
}

fn jobs_of(server: &Server, row: &str) -> u64 {
    server
        .stats()
        .executors
        .iter()
        .find(|e| e.name == row)
        .map_or(0, |e| e.jobs)
}

fn rows(server: &Server) -> String {
    let stats = server.stats();
    let rows: Vec<String> = stats
        .executors
        .iter()
        .map(|e| format!("{}={}", e.name, e.jobs))
        .collect();
    rows.join(" ")
}

fn wait_for(server: &Server, deadline: Instant, what: &str, mut pred: impl FnMut() -> bool) {
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "not in time: {what}\nnodes: {:?}",
            server.active_nodes()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs batches of jobs until every row of `names` has run some.
fn run_until(server: &Server, deadline: Instant, names: &[String]) {
    let base: Vec<u64> = names.iter().map(|n| jobs_of(server, n)).collect();
    loop {
        let jobs: Vec<_> = (0..40u64).map(|i| server.submit(add_one, (i,))).collect();
        for (i, job) in (0..40u64).zip(jobs) {
            assert_eq!(job.result(), Ok(i + 1));
        }
        let all = names
            .iter()
            .zip(&base)
            .all(|(n, b)| jobs_of(server, n) > *b);
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every node ran jobs: {}",
            rows(server)
        );
    }
}
